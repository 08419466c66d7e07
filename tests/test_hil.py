"""Hardware in the loop: a simulated CartPole robot process on the far end of a real pty pair,
the host's serial loop (as `rlfm-edge serve` runs it) on the other, at a fixed control rate.

Learning is asserted with the model-free planning engine (fast and always available); the
shipped model is exercised when it is present.
"""

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rlfm_edge import cli
from rlfm_edge.inference import make_engine
from rlfm_edge.inference.planning_engine import PlanningEngine
from rlfm_edge.logs import read_statistics
from rlfm_edge.model.io import DEFAULT_MODEL_DIR
from rlfm_edge.runtime import RobotConfig
from rlfm_edge.sim_robot import CARTPOLE_CONFIG, Faults, serve_sim, spawn
from rlfm_edge.stats import CountStats

RATE_HZ = 400.0
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _agent(engine=None, **settings):
    config = RobotConfig.from_dict({**CARTPOLE_CONFIG, "control_period_s": 1 / RATE_HZ, **settings})
    return config.make_agent(engine or PlanningEngine())


def _assert_exactly_once(session, agent):
    """Every dynamics step the robot took is one transition on the host, none twice."""
    assert agent.counters.transitions == session.robot["actions_applied"]
    host = [e.ret for e in session.episodes if not e.cut]
    assert host == session.robot["returns"]


def test_agent_learns_to_balance_the_pole_over_a_pty(tmp_path):
    agent = _agent()
    session = serve_sim(agent, tmp_path, episodes=40, rate_hz=RATE_HZ, max_episode_steps=200,
                        seed=0)
    agent.close()
    returns = np.array([e.ret for e in session.episodes])
    assert len(returns) == 40 and all(e.terminated or e.steps == 200 for e in session.episodes)
    first, last = returns[:10].mean(), returns[-10:].mean()
    assert last > 1.5 * first, (first, last, returns)
    assert agent.counters.refreshes > 10
    _assert_exactly_once(session, agent)


def test_wire_faults_are_counted_and_nothing_is_counted_twice(tmp_path):
    faults = Faults(garbage_every=7, corrupt_every=11, duplicate_every=13, stale_every=17,
                    nan_every=19, drop_action_every=23)
    agent = _agent()
    session = serve_sim(agent, tmp_path, episodes=8, rate_hz=RATE_HZ, max_episode_steps=60,
                        seed=1, faults=faults)
    agent.close()
    d, lc = session.link.decoder.counters, session.loop.counters
    assert lc.episodes == 8
    assert d.bad_crc + d.bad_cobs + d.bad_length >= 2  # garbage and corrupted frames
    assert d.duplicates >= 1 and d.out_of_order >= 1
    assert lc.invalid_observations >= 1 and session.robot["errors_received"] >= 1  # NaN
    assert lc.repeats_answered >= 1  # a lost ACTION, answered again without recounting
    assert agent.counters.rejected_observations == lc.invalid_observations
    _assert_exactly_once(session, agent)


def test_unplugged_port_is_reopened_and_the_robot_reset_starts_a_new_episode(tmp_path):
    agent = _agent()
    session = serve_sim(agent, tmp_path, episodes=5, rate_hz=RATE_HZ, max_episode_steps=60,
                        seed=2, faults=Faults(unplug_at=40, unplug_for_s=0.3))
    agent.close()
    link, lc = session.link.counters, session.loop.counters
    assert link.disconnects >= 1 and link.connects >= 2
    assert lc.resets >= 1 and lc.episodes == 5
    # The robot cut one episode; the host saw it cut unless the cable came out just as that
    # episode's first frame was on the wire (then the host never saw the episode at all).
    assert session.robot["cut_episodes"] == 1 and sum(e.cut for e in session.episodes) <= 1
    # at most the one step in flight when the cable came out is lost
    assert 0 <= session.robot["actions_applied"] - agent.counters.transitions <= 1


def test_full_disk_while_saving_never_loses_the_statistics_already_saved(tmp_path, monkeypatch):
    path = tmp_path / "stats.npz"
    agent = _agent(statistics={"path": str(path), "save_every_s": None, "save_every_steps": 40})
    state = {}

    def fill_disk(ep):
        if ep.index == 2 and agent.counters.saves >= 1:
            state["saved"] = CountStats.load(path)

            def full(fd):
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr(os, "fsync", full)

    session = serve_sim(agent, tmp_path / "run", episodes=6, rate_hz=RATE_HZ,
                        max_episode_steps=60, seed=3, on_episode=fill_disk)
    agent.close()  # its final save fails too
    assert "saved" in state, "no periodic save happened before the disk filled"
    assert agent.counters.save_failures >= 1 and session.loop.counters.episodes == 6
    on_disk = CountStats.load(path)
    assert on_disk.n_transitions >= state["saved"].n_transitions > 0
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()  # space again: the live statistics were never lost
    assert agent.save_statistics()
    assert CountStats.load(path) == agent.stats


def test_serve_command_drives_the_robot_and_its_log_replays(tmp_path, monkeypatch, capsys):
    config = tmp_path / "robot.yaml"
    config.write_text((EXAMPLES / "cartpole_robot.yaml").read_text().replace(
        "control_period_s: 0.01", f"control_period_s: {1 / RATE_HZ}"))
    port, stats, log = tmp_path / "ttyUSB0", tmp_path / "s.npz", tmp_path / "logs"
    robot = spawn(port, episodes=3, rate_hz=RATE_HZ, max_episode_steps=50, seed=4)
    try:
        rc = cli.main(["serve", "--port", str(port), "--config", str(config), "--backend",
                       "planning", "--stats", str(stats), "--log", str(log), "--episodes", "3"])
    finally:
        robot.kill()
        robot.wait()
    assert rc == 0
    assert "3 episodes" in capsys.readouterr().out
    saved = CountStats.load(stats)
    assert saved.n_transitions > 0 and saved.n_states == 109
    assert read_statistics(log) == saved


def test_serve_stopped_by_sigterm_saves_its_statistics_and_closes_its_log(tmp_path):
    config = tmp_path / "robot.yaml"
    config.write_text((EXAMPLES / "cartpole_robot.yaml").read_text().replace(
        "control_period_s: 0.01", f"control_period_s: {1 / RATE_HZ}"))
    port, stats, log, err = (tmp_path / "ttyUSB0", tmp_path / "s.npz", tmp_path / "logs",
                             tmp_path / "serve.err")
    robot = spawn(port, episodes=100_000, rate_hz=RATE_HZ, max_episode_steps=50, seed=6)
    try:
        with open(err, "w") as stderr:
            serve = subprocess.Popen(
                [sys.executable, "-m", "rlfm_edge", "serve", "--port", str(port), "--config",
                 str(config), "--backend", "planning", "--stats", str(stats), "--log", str(log)],
                stdout=subprocess.PIPE, stderr=stderr, text=True)
        try:
            deadline = time.monotonic() + 60
            while "episode 1:" not in err.read_text():  # the loop is serving
                assert serve.poll() is None and time.monotonic() < deadline, err.read_text()
                time.sleep(0.05)
            serve.send_signal(signal.SIGTERM)
            out = serve.communicate(timeout=60)[0]
        finally:
            if serve.poll() is None:
                serve.kill()
                serve.communicate()
    finally:
        robot.kill()
        robot.wait()
    assert serve.returncode == 0, err.read_text()
    assert "stopped by SIGTERM" in out
    saved = CountStats.load(stats)  # the final save: the config's periodic one is every 30 s
    assert saved.n_transitions > 0
    assert read_statistics(log) == saved  # the log was finished, not cut short


@pytest.mark.skipif(not (DEFAULT_MODEL_DIR / "manifest.json").exists(),
                    reason=f"the shipped default model is not in {DEFAULT_MODEL_DIR} yet")
def test_shipped_model_drives_the_robot(tmp_path):
    agent = _agent(make_engine("auto"))
    session = serve_sim(agent, tmp_path, episodes=3, rate_hz=100.0, max_episode_steps=50, seed=5)
    agent.close()
    assert session.loop.counters.episodes == 3 and agent.counters.refreshes >= 1
    assert agent.counters.refresh_failures == 0
    _assert_exactly_once(session, agent)
