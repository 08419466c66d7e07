"""Faults a robot meets in the field, injected for real where this machine allows it.

Each test shows that nothing already saved is lost and that the control loop keeps acting
(on its last good policy, or the safe action). The serial cable pulled and plugged back in
mid-run is tests/test_hil.py::test_unplugged_port_is_reopened_and_the_robot_reset_starts_a_new_episode;
a monkeypatched full disk is in test_hil.py and test_online_agent.py, a real one here.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from rlfm_edge.discretize import Discretizer
from rlfm_edge.inference.planning_engine import PlanningEngine
from rlfm_edge.logs import TransitionLogger, read_statistics
from rlfm_edge.runtime import OnlineAgent, StatsPersistence
from rlfm_edge.runtime.serial_loop import SerialAgentLoop
from rlfm_edge.serial.protocol import Action, Error, Observation
from rlfm_edge.stats import CountStats

pytestmark = pytest.mark.timeout(120)

# -- kill -9 in the middle of saving ---------------------------------------------------------------
S, A, BATCH = 8, 4, 50
SAVER = f"""
import sys
import numpy as np
from rlfm_edge.stats import CountStats, StatsFileError

def batch(i):
    rng = np.random.default_rng(i)
    return (rng.integers(0, {S}, {BATCH}), rng.integers(0, {A}, {BATCH}), rng.random({BATCH}),
            rng.integers(0, {S}, {BATCH}))

path = sys.argv[1]
try:
    stats = CountStats.load_with_fallback(path)[0]
except StatsFileError:
    stats = CountStats({S}, {A})
print("ready", flush=True)
while True:
    stats.update_batch(*batch(stats.n_transitions // {BATCH}))
    stats.save(path)
    print(stats.n_transitions, flush=True)
"""


def _expected(n_batches: int) -> CountStats:
    stats = CountStats(S, A)
    for i in range(n_batches):
        rng = np.random.default_rng(i)
        stats.update_batch(rng.integers(0, S, BATCH), rng.integers(0, A, BATCH), rng.random(BATCH),
                           rng.integers(0, S, BATCH))
    return stats


def test_kill_9_during_repeated_saves_always_leaves_the_old_or_the_new_complete_file(tmp_path):
    path = tmp_path / "stats.npz"
    rng = np.random.default_rng(7)
    saved_before = 0
    fell_back = 0
    for _ in range(30):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.0, 0.08)))
        proc.send_signal(signal.SIGKILL)
        reported = [int(line) for line in proc.stdout.read().split()]
        proc.wait()
        last_reported = max(reported, default=saved_before)

        loaded, used = CountStats.load_with_fallback(path)
        fell_back += used != path
        n = loaded.n_transitions
        # nothing a completed save() reported is lost; at most the save in flight is missing
        assert last_reported <= n <= last_reported + BATCH and n % BATCH == 0
        assert loaded == _expected(n // BATCH)  # the complete version, checksum and all
        saved_before = n
    assert saved_before > 30 * BATCH  # the loop really was saving when it was killed
    StatsPersistence(path).load_or_new(S, A)  # and a restart cleans up what the kills left
    assert not list(tmp_path.glob("*.tmp"))


# -- a real full disk ------------------------------------------------------------------------------
@pytest.fixture
def tiny_fs(tmp_path):
    """A 64 KiB tmpfs (needs root and mount); skipped where it cannot be mounted."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; the monkeypatched full disk is in test_hil")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\xff" * 1024)
    return filler


def test_a_really_full_disk_fails_the_save_keeps_the_old_file_and_the_agent_acting(tiny_fs):
    path = tiny_fs / "stats.npz"
    persistence = StatsPersistence(path, every_s=None)
    disc = Discretizer.uniform([0.0], [1.0], 15)
    agent = OnlineAgent(disc, PlanningEngine(), horizon=5, n_actions=4, persistence=persistence,
                        refresh_every=5, mode="greedy")
    for t in range(100):
        agent.step([(t % 15 + 0.5) / 15], 0.5 if t else None)
    assert agent.save_statistics()
    saved = CountStats.load(path)

    filler = _fill(tiny_fs)
    with pytest.raises(OSError) as err:
        filler.with_name("probe").write_bytes(b"x" * 4096)
    assert err.value.errno == errno.ENOSPC
    for t in range(100, 200):
        agent.step([(t % 15 + 0.5) / 15], 0.5)
    assert not agent.save_statistics()  # refused, counted, the loop carries on
    assert agent.counters.save_failures >= 1 and agent.counters.steps == 200
    assert CountStats.load(path) == saved
    assert not list(tiny_fs.glob("*.tmp"))

    filler.unlink()
    assert agent.save_statistics()
    assert CountStats.load(path) == agent.stats
    agent.close()


# -- the policy thread raising or hanging ----------------------------------------------------------
class HangingEngine(PlanningEngine):
    """Answers once, then hangs in every later call until ``release`` is set."""

    def __init__(self):
        super().__init__()
        self.calls = 0
        self.release = threading.Event()

    def policy(self, stats, horizon):
        self.calls += 1
        if self.calls > 1:
            self.release.wait()
        return super().policy(stats, horizon)


def test_a_hung_engine_leaves_the_agent_acting_on_its_last_good_policy():
    engine = HangingEngine()
    disc = Discretizer.uniform([0.0], [1.0], 4)
    agent = OnlineAgent(disc, engine, horizon=5, n_actions=2, mode="greedy", refresh_every=1,
                        max_policy_lag=None, deadline_s=0.01, seed=0)
    assert agent.wait_refreshed(timeout=10)
    policy = agent._policy
    first_actions = {s: agent.step([(s + 0.5) / 4], None if s == 0 else 0.0) for s in range(4)}
    time.sleep(0.05)  # the second refresh is now stuck in the engine
    assert engine.calls >= 2
    for t in range(400):  # none of these waits for the engine
        s = t % 4
        assert agent.step([(s + 0.5) / 4], 1.0) == first_actions[s]
    assert agent._policy is policy
    assert agent.counters.late_refreshes >= 1 and agent.counters.steps == 404
    t0 = time.monotonic()
    agent.close()  # gives up on the hung thread instead of hanging with it
    assert time.monotonic() - t0 < 30
    engine.release.set()


def test_a_hung_engine_costs_a_lag_bound_agent_one_bounded_wait():
    engine = HangingEngine()
    agent = OnlineAgent(Discretizer.uniform([0.0], [1.0], 4), engine, horizon=5, n_actions=2,
                        mode="greedy", refresh_every=1, max_policy_lag=2, deadline_s=0.005)
    assert agent.wait_refreshed(timeout=10)
    t0 = time.monotonic()
    for t in range(200):
        agent.step([(t % 4 + 0.5) / 4], None if t == 0 else 1.0)
    elapsed = time.monotonic() - t0
    assert agent.counters.policy_waits == 1 and 1.0 <= elapsed < 10
    engine.release.set()
    agent.close()


class RaisingEngine(PlanningEngine):
    def policy(self, stats, horizon):
        raise MemoryError("out of device memory")


def test_an_engine_that_never_answers_leaves_the_agent_on_the_safe_action():
    agent = OnlineAgent(Discretizer.uniform([0.0], [1.0], 4), RaisingEngine(), horizon=5,
                        n_actions=3, safe_action=2, refresh_every=1)
    actions = [agent.step([0.3], None if t == 0 else 0.0) for t in range(100)]
    agent.wait_refreshed(timeout=10)
    actions += [agent.step([0.3], 0.0) for _ in range(100)]
    agent.close()
    assert set(actions) == {2} and agent.counters.refresh_failures >= 1
    assert agent.stats.n_transitions == 199


# -- truncated model files -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported_model(tmp_path_factory) -> Path:
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from rlfm_edge.model import ModelConfig
    from rlfm_edge.model.gat import PolicyGAT
    from rlfm_edge.model.io import save_model
    from training.export import export_onnx

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model")
    save_model(PolicyGAT(ModelConfig(hidden=8, heads=2, layers=2, max_successors=3, max_states=10,
                                     max_actions=4)), path)
    export_onnx(path)
    return path


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    return Path(shutil.copytree(src, dst))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def test_a_truncated_onnx_is_refused_and_auto_falls_back_to_the_next_backend(exported_model, tmp_path):
    from rlfm_edge.inference import make_engine
    from rlfm_edge.inference.onnx_backend import OnnxRuntimeEngine
    from rlfm_edge.model.io import ModelFileError, sha256_file, write_manifest

    d = _copy(exported_model, tmp_path / "m")
    _truncate(d / "model.onnx")
    with pytest.raises(ModelFileError, match=r"model\.onnx: sha256 does not match"):
        OnnxRuntimeEngine(d)
    # the same truncation with a manifest and description rewritten to match it
    spec = json.loads((d / "model.onnx.json").read_text())
    (d / "model.onnx.json").write_text(json.dumps({**spec, "sha256": sha256_file(d / "model.onnx")}))
    write_manifest(d)
    with pytest.raises(ModelFileError, match="ONNX Runtime cannot load it"):
        OnnxRuntimeEngine(d)
    engine = make_engine("auto", model=d)
    assert engine.backend == "torch"
    stats = CountStats(5, 3)
    stats.update(0, 1, 1.0, 2)
    assert engine.policy(stats, 6).shape == (5, 3)


def test_truncated_weights_are_a_model_file_error(exported_model, tmp_path):
    from rlfm_edge.model.io import ModelFileError, load_model, write_manifest

    d = _copy(exported_model, tmp_path / "m")
    _truncate(d / "weights.npz")
    with pytest.raises(ModelFileError, match=r"weights\.npz: sha256 does not match"):
        load_model(d)
    write_manifest(d)
    with pytest.raises(ModelFileError, match=r"weights\.npz"):
        load_model(d)


# -- the wall clock jumping ------------------------------------------------------------------------
class ScriptedLink:
    """A link whose robot sends ``n`` observations of a 4-state chain, one per receive()."""

    def __init__(self, n: int, pace_s: float = 0.0) -> None:
        self.left = n
        self.pace_s = pace_s  # between observations, so periodic saves find new transitions
        self.seq = itertools.count()
        self.sent: list[Action] = []

    def receive(self, timeout: float):
        if self.left == 0:
            time.sleep(timeout)
            return None
        self.left -= 1
        time.sleep(self.pace_s)
        seq = next(self.seq)
        return Observation(((seq % 4 + 0.5) / 4,), 0.5, episode_end=seq % 40 == 39, seq=seq,
                           reset=seq == 0)

    def send(self, msg) -> bool:
        self.sent.append(msg)
        return True


def test_wall_clock_jumps_do_not_disturb_periods_deadlines_or_saves(tmp_path, monkeypatch):
    real_time, real_ns = time.time, time.time_ns
    jumps = itertools.cycle([-3600.0, 86400.0, -1e9, 0.0])
    monkeypatch.setattr(time, "time", lambda: real_time() + next(jumps))
    monkeypatch.setattr(time, "time_ns", lambda: real_ns() + int(next(jumps) * 1e9))

    persistence = StatsPersistence(tmp_path / "s.npz", every_s=0.05)
    log = TransitionLogger(tmp_path / "run.mcap", 4, 2, 5)
    agent = OnlineAgent(Discretizer.uniform([0.0], [1.0], 4), PlanningEngine(), horizon=5,
                        n_actions=2, persistence=persistence, transition_log=log, refresh_every=5)
    link = ScriptedLink(400, pace_s=0.001)
    loop = SerialAgentLoop(link, agent)
    t0 = time.monotonic()
    loop.run(duration_s=1.0)
    elapsed = time.monotonic() - t0
    agent.close()
    assert 0.9 <= elapsed < 20  # duration_s measured on the monotonic clock
    assert loop.counters.observations == 400 and len(link.sent) == 400
    assert persistence.counters.saves >= 2  # the periodic save kept its period
    assert CountStats.load(tmp_path / "s.npz") == agent.stats
    assert read_statistics(tmp_path / "run.mcap") == agent.stats  # stamps jump, content does not


# -- a terminal frame repeated with a NaN (a lost ACTION, then a corrupted repeat) -----------------
def test_a_nan_repeat_of_a_terminal_frame_is_refused_and_counts_no_episode():
    """Seen under CPU load in the hardware-in-the-loop test: the robot's repeat of an answered
    terminal EPISODE_END frame got a NaN; its key differed, so it was taken as a new one-frame
    episode (terminate() did not check the observation) and counted as an extra episode."""
    agent = OnlineAgent(Discretizer.uniform([0.0], [1.0], 4), PlanningEngine(), horizon=5,
                        n_actions=2, terminal_state=True)
    link = ScriptedLink(0)  # frames are handed to the loop directly; it records the answers
    loop = SerialAgentLoop(link, agent)
    frames = [Observation((0.1,), 0.0, seq=0, reset=True),
              Observation((0.6,), 1.0, seq=1),
              Observation((0.9,), 1.0, seq=2, episode_end=True, terminal=True),
              Observation((float("nan"),), 1.0, seq=3, episode_end=True, terminal=True, repeat=True),
              Observation((0.9,), 1.0, seq=4, episode_end=True, terminal=True, repeat=True)]
    for frame in frames:
        loop.handle(frame)
    agent.close(save=False)
    assert loop.counters.episodes == 1 and loop.counters.invalid_observations == 1
    assert loop.counters.repeats_answered == 1 and agent.counters.episodes == 1
    assert isinstance(link.sent[3], Error) and link.sent[4].action == -1
