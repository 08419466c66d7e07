"""The robot's data survives: logs and statistics across crashes, restarts and failed starts.

Real processes and real files: `rlfm-edge serve` SIGKILLed against the simulated pty robot
(through benchmarks/kill9_loss.py, whose 25-kill run is the figure in BENCHMARKS.md), starts
that fail leaving every file as it was, a port that never appears, logs read as folders.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from rlfm_edge import cli
from rlfm_edge.discretize import Discretizer
from rlfm_edge.inference.planning_engine import PlanningEngine
from rlfm_edge.logs import TransitionLogger, read_info, read_statistics, read_steps, segments
from rlfm_edge.runtime import OnlineAgent, RobotConfig, StatsPersistence
from rlfm_edge.serial.link import SerialLink
from rlfm_edge.sim_robot import CARTPOLE_CONFIG
from rlfm_edge.stats import CountStats, StatsFileError

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(300)


def _tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder``: relative path -> sha256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _agent(config: RobotConfig) -> OnlineAgent:
    return config.make_agent(PlanningEngine())


def _drive(agent: OnlineAgent, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for t in range(n):
        agent.step(rng.uniform(-0.2, 0.2, 4), None if t % 20 == 0 else 1.0)
        if t % 20 == 19:
            agent.end_episode()


def _config(tmp_path: Path, **extra) -> RobotConfig:
    return RobotConfig.from_dict({**CARTPOLE_CONFIG, "statistics": {
        "path": str(tmp_path / "stats.npz"), "save_every_s": None}, "log": str(tmp_path / "logs"),
        **extra})


# -- logs: one segment per start, never truncated, read as a folder --------------------------------
def test_each_start_adds_a_segment_and_the_folder_replays_to_the_statistics(tmp_path):
    config = _config(tmp_path)
    first = _agent(config)
    _drive(first, 300, seed=1)
    first.close()
    (segment,) = segments(tmp_path / "logs")
    kept = segment.read_bytes()
    second = _agent(config)  # carries on from the saved statistics
    _drive(second, 200, seed=2)
    second.close()
    assert len(segments(tmp_path / "logs")) == 2
    assert segment.read_bytes() == kept  # the first run's log is never rewritten
    assert read_statistics(tmp_path / "logs") == CountStats.load(tmp_path / "stats.npz")
    assert read_statistics(segments(tmp_path / "logs")) == read_statistics(tmp_path / "logs")
    assert read_info(tmp_path / "logs")["n_states"] == config.n_states


def test_an_agent_that_never_steps_writes_no_segment_and_no_statistics(tmp_path):
    agent = _agent(_config(tmp_path))
    agent.close()
    assert not (tmp_path / "logs").exists() and not (tmp_path / "stats.npz").exists()


def test_a_segment_is_never_overwritten(tmp_path):
    path = tmp_path / "run.mcap"
    path.write_bytes(b"an older log")
    with pytest.raises(ValueError, match="never overwritten"):
        TransitionLogger(path, 4, 2, 10)
    assert path.read_bytes() == b"an older log"


def test_a_log_setting_that_names_a_file_is_refused(tmp_path):
    (tmp_path / "run.mcap").write_bytes(b"")
    with pytest.raises(ValueError, match="is a file.*names a folder"):
        _agent(_config(tmp_path, log=str(tmp_path / "run.mcap")))


def test_steps_reach_the_disk_within_the_flush_bound_while_the_robot_is_idle(tmp_path):
    """What kill -9 leaves is what the OS has: copy the file while the writer still runs."""
    disc = Discretizer.uniform([0.0], [1.0], 4)
    log = TransitionLogger(tmp_path / "run.mcap", 4, 2, 5, flush_every_s=0.2)
    agent = OnlineAgent(disc, PlanningEngine(), horizon=5, n_actions=2, transition_log=log)
    for t in range(30):
        agent.step([(t % 4 + 0.5) / 4], None if t == 0 else 0.5)
    time.sleep(0.5)  # no step since: the bookkeeper flushes on its own
    shutil.copy(tmp_path / "run.mcap", tmp_path / "killed.mcap")
    assert [r.step for r in read_steps(tmp_path / "killed.mcap")] == list(range(1, 31))
    agent.close()


def test_a_zero_filled_tail_from_a_power_cut_reads_as_cut_short(tmp_path, caplog):
    with TransitionLogger(tmp_path / "run.mcap", 4, 2, 5) as log:
        for t in range(10):
            log.write(0, t, [0.1], t % 4, 1, 0.5, -1 if t == 0 else (t - 1) % 4, 1, 100)
        log.flush()
        data = (tmp_path / "run.mcap").read_bytes()
    (tmp_path / "cut.mcap").write_bytes(data + bytes(4096))
    with caplog.at_level(logging.WARNING, logger="rlfm_edge.logs"):
        assert len(list(read_steps(tmp_path / "cut.mcap"))) == 10
    assert "cut short" in caplog.text
    (tmp_path / "junk.mcap").write_bytes(data + b"\xee" * 64)  # no opcode, not zeros: refused
    with pytest.raises(ValueError, match="junk.mcap"):
        list(read_steps(tmp_path / "junk.mcap"))


def test_logs_of_another_discretizer_are_not_mixed(tmp_path):
    for name, yaml_text in (("a.mcap", "dimensions: [a]"), ("b.mcap", "dimensions: [b]")):
        with TransitionLogger(tmp_path / name, 4, 2, 5, yaml_text) as log:
            log.write(0, 0, [0.1], 0, 1, 0.0, -1, -1, 0)
    with pytest.raises(ValueError, match="b.mcap: discretizer_yaml differs"):
        read_statistics(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no log segments"):
        read_statistics(tmp_path / "empty")


def test_replay_and_calibrate_bins_read_a_folder_and_several_logs(tmp_path, capsys):
    config = _config(tmp_path)
    for seed in (1, 2):
        agent = _agent(config)
        _drive(agent, 200, seed=seed)
        agent.close()
    out = tmp_path / "rebuilt.npz"
    assert cli.main(["replay", str(tmp_path / "logs"), "--out", str(out)]) == 0
    assert "2 log segment(s)" in capsys.readouterr().out
    assert CountStats.load(out) == CountStats.load(tmp_path / "stats.npz")
    files = [str(p) for p in segments(tmp_path / "logs")]
    assert cli.main(["replay", *files, "--out", str(tmp_path / "again.npz")]) == 0
    assert CountStats.load(tmp_path / "again.npz") == CountStats.load(out)
    assert cli.main(["calibrate-bins", *files, "--bins", "3", "--out", str(tmp_path / "d.yaml")]) == 0


# -- statistics: never empty in silence -----------------------------------------------------------
def _both_copies_corrupt(tmp_path: Path) -> Path:
    path = tmp_path / "stats.npz"
    for t in range(2):
        stats = CountStats(4, 2)
        stats.update(0, 1, 1.0, t)
        stats.save(path)
    for p in (path, path.with_name("stats.npz.prev")):
        p.write_bytes(p.read_bytes()[:300])
    return path


def test_both_copies_unreadable_are_moved_aside_and_the_message_gives_the_replay_command(tmp_path):
    path = _both_copies_corrupt(tmp_path)
    before = sorted(_tree(tmp_path).values())
    persistence = StatsPersistence(path, log_folder=tmp_path / "logs")
    with pytest.raises(StatsFileError) as err:
        persistence.load_or_new(4, 2)
    message = str(err.value)
    moved = [tmp_path / "stats.npz.corrupt", tmp_path / "stats.npz.prev.corrupt"]
    for p in moved:
        assert str(p) in message and p.exists()
    assert f"rlfm-edge replay {tmp_path / 'logs'} --out {path}" in message
    assert sorted(_tree(tmp_path).values()) == before  # every byte kept, under the names given
    # The next start does not take the missing file for a first start.
    with pytest.raises(StatsFileError, match="rlfm-edge replay .* or, to start from empty counts"):
        StatsPersistence(path).load_or_new(4, 2)
    CountStats(4, 2).save(path)  # what replay writes
    assert StatsPersistence(path).load_or_new(4, 2).n_transitions == 0
    for p in moved:  # a second damage does not overwrite the first one's copies
        p.unlink()
    _both_copies_corrupt(tmp_path)
    (tmp_path / "stats.npz.corrupt").write_bytes(b"older damage")
    with pytest.raises(StatsFileError, match=r"stats\.npz\.corrupt\.1"):
        StatsPersistence(path).load_or_new(4, 2)
    assert (tmp_path / "stats.npz.corrupt").read_bytes() == b"older damage"


def test_a_run_with_nothing_new_leaves_the_statistics_files_as_they_were(tmp_path):
    config = _config(tmp_path)
    agent = _agent(config)
    _drive(agent, 100)
    agent.close()
    agent = _agent(config)  # saves again: stats.npz.prev now differs from stats.npz
    _drive(agent, 50, seed=3)
    agent.close()
    before = _tree(tmp_path)
    agent = _agent(config)
    agent.close()  # nothing learned: no save, so .prev still holds the older copy
    assert _tree(tmp_path) == before


# -- serve: failed starts and a port that never appears -------------------------------------------
def _serve(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rlfm_edge", "serve", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def robot_folder(tmp_path):
    """A robot config and the files of an earlier run: statistics, their last good copy, a log."""
    config = _config(tmp_path)
    for seed in (1, 2):
        agent = _agent(config)
        _drive(agent, 100, seed=seed)
        agent.close()
    (tmp_path / "robot.yaml").write_text(yaml.safe_dump({
        **CARTPOLE_CONFIG, "statistics": {"path": "stats.npz"}, "log": "logs"}))
    return tmp_path


@pytest.mark.slow
def test_failed_starts_leave_every_file_byte_identical(robot_folder):
    base = ["--port", str(robot_folder / "ttyNONE"), "--duration", "30"]
    bad = robot_folder / "bad.yaml"
    bad.write_text((robot_folder / "robot.yaml").read_text().replace("horizon: 40", "horizon: forty"))
    before = _tree(robot_folder)
    done = _serve(robot_folder, *base, "--config", "bad.yaml", "--backend", "planning")
    assert done.returncode == 2 and "horizon: expected an integer" in done.stderr
    done = _serve(robot_folder, *base, "--config", "robot.yaml", "--backend", "planning",
                  "--model", "nowhere")  # fails after the statistics loaded, before the engine
    assert done.returncode == 2 and "--model" in done.stderr
    assert _tree(robot_folder) == before

    stats = robot_folder / "stats.npz"
    for p in (stats, stats.with_name("stats.npz.prev")):
        p.write_bytes(p.read_bytes()[:500])
    before = _tree(robot_folder)
    done = _serve(robot_folder, *base, "--config", "robot.yaml", "--backend", "planning")
    assert done.returncode == 2
    assert "rlfm-edge replay logs --out stats.npz" in done.stderr and "Moved the damaged" in done.stderr
    after = _tree(robot_folder)
    assert sorted(after.values()) == sorted(before.values())  # every byte kept
    assert {k: v for k, v in after.items() if not k.startswith("stats")} == \
        {k: v for k, v in before.items() if not k.startswith("stats")}  # logs untouched


@pytest.mark.slow
def test_serve_on_a_port_that_never_appears_says_so_and_exits_1(robot_folder):
    before = _tree(robot_folder)
    done = _serve(robot_folder, "--port", str(robot_folder / "ttyUSB9"), "--config", "robot.yaml",
                  "--backend", "planning", "--duration", "1.5")
    assert done.returncode == 1
    assert "never connected to" in done.stderr and "cannot open" in done.stderr
    assert _tree(robot_folder) == before  # no segment, no save


def test_a_port_that_stays_away_is_reported_at_a_steady_interval(tmp_path, caplog):
    link = SerialLink(str(tmp_path / "ttyNONE"), backoff_initial_s=0.01, backoff_max_s=0.02,
                      warn_every_s=0.25)
    with caplog.at_level(logging.WARNING, logger="rlfm_edge.serial.link"):
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.2:
            link.receive(timeout=0.05)
    reports = [r for r in caplog.records if "cannot open" in r.getMessage()]
    assert 3 <= len(reports) <= 6 and "never connected" in reports[-1].getMessage()
    assert all(b.created - a.created >= 0.24 for a, b in zip(reports, reports[1:], strict=False))
    assert link.counters.connect_failures > len(reports)  # the attempts in between stay quiet


# -- kill -9, repeatedly ---------------------------------------------------------------------------
@pytest.mark.slow
def test_serve_killed_9_at_random_moments_keeps_its_statistics_and_its_log(tmp_path):
    """Four SIGKILLs of a real `rlfm-edge serve` at random moments: after each, the statistics
    load and hold at least what was on disk before the kill, and the run's log segment holds
    every step older than the crash-loss bound (0.3 s of slack for thread scheduling on a
    loaded 2-core CI machine)."""
    out = tmp_path / "kill9.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "kill9_loss.py"), "--kills", "4", "--alive",
         "0.3", "2.5", "--seed", "3", "--slack-s", "0.3", "--workdir", str(tmp_path / "w"),
         "--json", str(out)], capture_output=True, text=True, timeout=240,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    runs = result["runs"]
    assert len(runs) == 4 and all(r["ok_stats"] and r["ok_log"] for r in runs)
    assert all(r["stats_after"] >= r["stats_before"] for r in runs)
    assert all(r["logged"] >= r["accepted_older_than_bound"] for r in runs)
    assert sum(r["accepted_older_than_bound"] for r in runs) > 0  # some runs outlived the bound
    assert len(segments(tmp_path / "w" / "logs")) == 4  # one per start, each readable
    read_statistics(tmp_path / "w" / "logs")


# -- Ctrl-C and SIGTERM during long commands -------------------------------------------------------
def _stop_when(proc: subprocess.Popen, err: Path, ready, sig: int, group: bool,
               timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while not ready(err.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, err.read_text()[-3000:]
        time.sleep(0.05)
    if group:  # Ctrl-C: the terminal signals the whole process group
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    proc.wait(timeout=60)
    return err.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("sig, group", [(signal.SIGINT, True), (signal.SIGTERM, False)])
def test_bench_online_stopped_writes_the_runs_that_finished(tmp_path, sig, group):
    import re

    err = tmp_path / "err"
    with open(err, "w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rlfm_edge", "bench", "online", "--envs", "riverswim",
             "--agents", "random,qlearning", "--episodes", "300", "--seeds", "200", "--workers",
             "2", "--out", str(tmp_path / "out")], stdout=subprocess.DEVNULL, stderr=stderr,
            start_new_session=True)
    text = _stop_when(proc, err, lambda t: re.search(r" ([3-9]|\d\d+)/400 ", t), sig, group)
    assert proc.returncode == 128 + sig
    assert "Traceback" not in text
    last = text.strip().splitlines()[-1]
    assert last.startswith(f"rlfm-edge bench: stopped by {'Ctrl-C' if group else 'SIGTERM'}")
    assert "runs that finished" in last
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    finished = results["partial"]["finished_runs"]
    assert 3 <= finished < 400 and results["partial"]["runs"] == 400
    seeds = sum(len(v) for v in results["envs"]["riverswim"]["returns"].values())
    assert seeds == finished
    assert (tmp_path / "out" / "results.md").read_text().startswith("Interrupted:")


@pytest.mark.slow
def test_train_stopped_during_data_generation_keeps_the_finished_shards(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "out_dir": str(tmp_path / "run"), "data_dir": str(tmp_path / "d"),
        "val_dir": str(tmp_path / "v"), "n_examples": 200_000, "n_val": 16, "workers": 1,
        "model": {"hidden": 8, "heads": 2, "layers": 1},
        "prior": {"s_max": 6, "a_max": 3, "h_max": 10}, "data": {"max_episodes": 10}}))
    err = tmp_path / "err"
    with open(err, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "rlfm_edge", "train", "--config", str(config)],
                                stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    text = _stop_when(proc, err, lambda t: "generate:" in t, signal.SIGINT, True)  # workers starting
    assert proc.returncode == 130 and "Traceback" not in text, text[-3000:]
    last = text.strip().splitlines()[-1]
    assert "train: stopped by Ctrl-C (SIGINT); kept the 0 of 40 finished data shards" in last
    assert f"rlfm-edge train --config {config}" in last
    assert not list((tmp_path / "d").glob("*.tmp"))


@pytest.mark.slow
def test_train_stopped_after_two_epochs_says_how_to_resume(tmp_path, monkeypatch, capsys):
    import training.train as T
    from rlfm_edge.interrupt import Interrupted

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "out_dir": str(tmp_path / "run"), "data_dir": str(tmp_path / "d"),
        "val_dir": str(tmp_path / "v"), "n_examples": 64, "n_val": 16, "epochs": 3,
        "batch_size": 32, "workers": 1, "model": {"hidden": 8, "heads": 2, "layers": 1},
        "prior": {"s_max": 6, "a_max": 3, "h_max": 10}, "data": {"max_episodes": 10}}))
    save = T._save_checkpoint

    def stop_after_epoch_2(path, net, opt, sched, epoch, history):
        save(path, net, opt, sched, epoch, history)
        if epoch == 2:
            raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr(T, "_save_checkpoint", stop_after_epoch_2)
    assert T.main(["--config", str(config)]) == 143
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == (f"train: stopped by SIGTERM; {tmp_path / 'run' / 'checkpoint.pt'} holds 2 of "
                    f"3 epochs; the same command resumes from epoch 3 "
                    f"(rlfm-edge train --config {config})")


# -- configuration files checked whole before any work --------------------------------------------
@pytest.mark.parametrize("text, field", [
    ("epochs: one", "epochs: expected an integer, got 'one'"),
    ("lr: fast", "lr: expected a finite number"),
    ("prior: {s_max: x}", "prior.s_max: expected an integer"),
    ("prior: {weights: {garnet: one}}", "prior.weights: expected a mapping whose entry 'garnet'"),
    ("data: {behaviour_weights: [1, 2, a, 0, 0]}", "data.behaviour_weights: expected a list whose item 2"),
    ("model: {hiden: 3}", "model: unknown field"),
    ("data: {max_successors: 4}", "data.max_successors=4 must equal model.max_successors=8"),
    ("init_from: nowhere", "init_from: nowhere"),
    ("replay_dirs: [nowhere/*.npz]", "replay_dirs: no shards match nowhere"),
    ("batch_size: 0", "batch_size: expected an integer >= 1"),
])
def test_a_bad_training_config_fails_at_load_naming_the_field(tmp_path, capsys, text, field):
    config = tmp_path / "bad.yaml"
    config.write_text(f"data_dir: {tmp_path / 'd'}\nval_dir: {tmp_path / 'v'}\n{text}\n")
    assert cli.main(["train", "--config", str(config)]) == 2
    assert field in capsys.readouterr().err
    assert not (tmp_path / "d").exists()  # no data made


def test_every_shipped_training_config_passes_its_type_checks():
    from training.train import TrainConfig

    for path in sorted((ROOT / "training" / "configs").glob("*.yaml")):
        try:
            TrainConfig.from_yaml(path)
        except ValueError as exc:  # only the files a config names may be missing here
            assert any(f"{key}:" in str(exc) for key in ("init_from", "replay_dirs",
                                                         "data.model_dir")), exc
