"""The rlfm_agent lifecycle node through real rclpy and real DDS on loopback.

Each test starts the node in its own process (``python -m rlfm_edge_ros.agent_node``) and
drives it from a test node with lifecycle_msgs service calls, as a launch system would.
DDS stays on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, and ROS_LOCALHOST_ONLY=1
where a sourced Humble ignores the former) in a domain of its own.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from unittest.mock import ANY

import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed: pip install the `ros` extra")

ROOT = Path(__file__).resolve().parent.parent
PKG_SRC = ROOT / "ros2_ws" / "src" / "rlfm_edge_ros"
DEFAULT_MODEL = ROOT / "rlfm_edge" / "models" / "default"
if str(PKG_SRC) not in sys.path:
    sys.path.insert(0, str(PKG_SRC))

import rclpy  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.qos import ReliabilityPolicy  # noqa: E402
from rlfm_edge_ros.client import AgentClient  # noqa: E402
from rlfm_edge_ros.parameters import qos_profiles  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402

from rlfm_edge.stats import CountStats  # noqa: E402

NO_ACTION_WAIT_S = 0.5  # valid observations are answered in milliseconds
REQUIRED = {"n_actions": 4, "horizon": 20}  # the settings without a default, unless a test sets them
# distros that ignore ROS_AUTOMATIC_DISCOVERY_RANGE (it came with Iron); Jazzy warns on ROS_LOCALHOST_ONLY
PRE_IRON_DISTROS = ("foxy", "galactic", "humble")


@pytest.fixture(scope="module")
def ros_env():
    """DDS on loopback in a domain of this module's own, set before any rclpy context starts."""
    keys = ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID", "ROS_LOCALHOST_ONLY")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ["ROS_DOMAIN_ID"] = str(10 + os.getpid() % 40)
    if os.environ.get("ROS_DISTRO") in PRE_IRON_DISTROS:
        os.environ["ROS_LOCALHOST_ONLY"] = "1"
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def ros_context(ros_env):
    context = Context()
    rclpy.init(context=context)
    yield context
    rclpy.shutdown(context=context)


@pytest.fixture
def start_agent(ros_context, tmp_path, request):
    """Start the node as its own process; returns (client, process, ROS_HOME)."""
    procs, clients = [], []
    ros_home = tmp_path / "ros_home"

    def start(*params: str, joint_state: bool = False):
        name = f"rlfm_agent_{request.node.name[:40]}".replace("[", "_").replace("]", "_")
        args = [sys.executable, "-m", "rlfm_edge_ros.agent_node", "--ros-args",
                "-r", f"__node:={name}", "-p", "diagnostics_period_s:=0.2"]
        given = {p.split(":=")[0] for p in params}
        for p in [*params, *(f"{k}:={v}" for k, v in REQUIRED.items() if k not in given)]:
            args += ["-p", p]
        env = {**os.environ, "ROS_HOME": str(ros_home),
               "PYTHONPATH": os.pathsep.join([str(PKG_SRC), os.environ.get("PYTHONPATH", "")])}
        log = open(tmp_path / "node.log", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append((proc, log))
        client = AgentClient(ros_context, agent=f"/{name}", name=f"test_client_{len(clients)}",
                             joint_state=joint_state)
        clients.append(client)
        assert _wait_up(client, proc) == "unconfigured", _log(tmp_path)
        return client, proc, ros_home

    yield start
    for client in clients:
        client.destroy()
    for proc, log in procs:
        if proc.poll() is None:
            _stop(proc)
        log.close()


def _wait_up(client: AgentClient, proc: subprocess.Popen, timeout: float = 30.0) -> str | None:
    """The node's lifecycle state once it answers; None if the process died first."""
    for _ in range(int(timeout)):
        if proc.poll() is not None:
            return None
        try:
            return client.get_state(timeout=1.0)
        except TimeoutError:
            continue
    return None


def _log(tmp_path: Path) -> str:
    return (tmp_path / "node.log").read_text()


def _bring_up(client: AgentClient) -> None:
    assert client.change_state("configure")
    assert client.get_state() == "inactive"
    assert client.wait_connected()
    assert client.change_state("activate")
    assert client.get_state() == "active"


def _episode(client: AgentClient, n_steps: int, n_actions: int) -> list[int]:
    """One episode: first observation without reward, then (reward, observation) pairs."""
    actions = []
    for t in range(n_steps):
        a = client.step([(t % 7) / 7.0 - 0.5, 0.3], reward=None if t == 0 else 1.0 - 0.1 * t)
        assert a is not None and 0 <= a < n_actions, f"step {t}: action {a}"
        actions.append(a)
    client.publish_episode_end()
    return actions


def test_node_answers_each_observation_once_runs_its_services_and_saves_on_deactivate(start_agent):
    table = [0.0, 0.0, 0.5, -0.5, 1.0, 0.25]
    client, proc, ros_home = start_agent(
        "backend:=planning", "observation_dim:=2", "n_actions:=3", "action_command_dim:=2",
        f"action_command_table:={table}")
    _bring_up(client)
    actions = [a for _ in range(3) for a in _episode(client, 10, 3)]
    client.spin_until(lambda: False, NO_ACTION_WAIT_S)
    assert [a for _, a in client.actions] == actions  # exactly one action per observation
    assert client.commands and len(client.commands) == len(actions)
    assert [pytest.approx(c) for c in client.commands] == [table[2 * a: 2 * a + 2] for a in actions]

    diag = client.latest_diagnostics(lambda d: d.get("episodes") == "3")
    assert diag is not None
    assert diag["state"] == "active" and diag["backend"] == "planning"
    assert diag["transitions"] == "27" and diag["steps"] == "30"
    assert int(diag["visited_states"]) >= 2 and diag["dropped_observations"] == "0"
    assert diag["model_version"] and float(diag["loop_rate_hz"]) >= 0
    assert {"deadline_misses", "n_states", "last_refresh_latency_ms"} <= set(diag)

    saved = ros_home / "rlfm_edge" / f"{client.agent[1:]}_statistics.npz"  # default path, created
    response = client.trigger("save_statistics")
    assert response.success, response.message
    assert CountStats.load(saved).n_transitions == 27
    assert client.trigger("reset_statistics").success
    assert client.latest_diagnostics(lambda d: d.get("transitions") == "0") is not None
    response = client.trigger("load_statistics")
    assert response.success and "27 transitions" in response.message
    assert client.latest_diagnostics(lambda d: d.get("transitions") == "27") is not None

    _episode(client, 5, 3)
    assert client.change_state("deactivate")
    assert CountStats.load(saved).n_transitions == 31
    before = len(client.actions)
    client.publish_observation([0.1, 0.1])  # inactive: not answered
    client.spin_until(lambda: False, NO_ACTION_WAIT_S)
    assert len(client.actions) == before
    assert client.change_state("cleanup")
    assert client.get_state() == "unconfigured"
    assert not client.trigger("save_statistics").success  # nothing to save once released
    assert client.change_state("shutdown")
    assert proc.wait(15) == 0


def test_malformed_input_is_dropped_counted_and_reported_while_the_node_keeps_acting(start_agent,
                                                                                      tmp_path):
    stats_file = tmp_path / "stats" / "agent.npz"
    client, proc, _ = start_agent("backend:=planning", "observation_dim:=2",
                                  f"statistics.path:={stats_file}")
    _bring_up(client)
    client.publish_reward(1.0)  # before any observation: refers to no action
    assert client.step([0.0, 0.0]) is not None
    for bad in ([0.1], [0.1, 0.2, 0.3], [float("nan"), 0.0], [0.0, float("inf")]):
        assert client.step(bad, timeout=NO_ACTION_WAIT_S) is None, bad
    client.publish_reward(float("nan"))
    assert client.step([0.5, 0.5], reward=0.5) is not None  # the node still acts
    assert client.step([0.2, 0.2]) is not None  # its reward never comes: answered after the wait

    diag = client.latest_diagnostics(lambda d: d.get("steps") == "3")
    assert diag is not None, _log(tmp_path)
    assert diag["state"] == "active"
    assert diag["dropped_observations"] == "4" and diag["dropped_rewards"] == "2"
    assert diag["transitions"] == "1"  # the valid reward closed the first action's transition
    assert diag["missing_rewards"] == "1"
    assert diag["_level"] == 1 and "dropping input" in diag["_message"]
    assert "no reward for the previous action" in diag["last_drop_reason"]
    assert "reward with no action before it" in _log(tmp_path)

    proc.send_signal(signal.SIGINT)  # Ctrl-C: saves and exits cleanly
    assert proc.wait(15) == 0
    assert CountStats.load(stats_file).n_transitions == 1


def test_configure_fails_with_the_reason_and_the_node_stays_up(start_agent, tmp_path):
    client, proc, _ = start_agent("backend:=torch", "model_file_path:=/nonexistent/model",
                                  "observation_dim:=2")
    assert not client.change_state("configure")
    assert client.get_state() == "unconfigured"
    diag = client.latest_diagnostics(lambda d: d["last_error"] != "")
    assert diag["_level"] == 2 and "model_file_path" in diag["last_error"]
    assert "/nonexistent/model" in diag["last_error"]

    missing = tmp_path / "missing.npz"
    assert all(ok for ok, _ in client.set_parameters(**{
        "backend": "planning", "model_file_path": "", "statistics.path": str(missing),
        "statistics.require_file": True}))
    assert not client.change_state("configure")
    assert client.latest_diagnostics(lambda d: "missing.npz" in d["last_error"]) is not None

    CountStats(5, 2).save(missing)  # statistics of another robot: wrong shape
    assert not client.change_state("configure")
    assert client.latest_diagnostics(lambda d: "S=5" in d["last_error"]) is not None

    discretizer = PKG_SRC / "config" / "discretizer.yaml"
    assert all(ok for ok, _ in client.set_parameters(**{
        "statistics.path": str(tmp_path / "fresh.npz"), "statistics.require_file": False,
        "discretizer": str(discretizer), "observation_dim": 3}))
    assert not client.change_state("configure")
    assert client.latest_diagnostics(lambda d: "observation_dim" in d["last_error"]) is not None

    assert all(ok for ok, _ in client.set_parameters(observation_dim=2))
    assert client.change_state("configure")
    assert client.latest_diagnostics(lambda d: d["last_error"] == "" and d["n_states"] == "256")
    assert proc.poll() is None


def test_invalid_parameters_are_rejected_at_set_time_with_the_reason(start_agent):
    client, _, _ = start_agent("backend:=planning")
    results = client.set_parameters(backend="cuda", precision="int4", temperature=0.0,
                                    anneal_visits=-1.0, control_period_s=-5.0, observation_dim=0,
                                    joint_state_fields=["position", "torque"],
                                    action_command_table=[0.0, float("nan")],
                                    observation_reliability="sometimes", max_policy_lag=-1,
                                    terminal_state="fall", horizon="long", n_actions=0)
    for (ok, reason), word in zip(results, ("backend", "precision", "temperature", "anneal_visits",
                                            "control_period_s", "observation_dim",
                                            "joint_state_fields", "action_command_table",
                                            "observation_reliability", "max_policy_lag",
                                            "terminal_state", "horizon", "n_actions"),
                                  strict=True):
        assert not ok and reason, word
        assert word in reason or "range" in reason, reason
    ok, reason = client.set_parameters(refresh_every="often")[0]
    assert not ok and "type" in reason.lower()
    assert client.set_parameters(temperature=0.5, mode="greedy", anneal_visits="null",
                                 max_policy_lag="null") == [(True, "")] * 4
    assert client.change_state("configure")  # the rejected values never took effect


def test_invalid_parameters_at_launch_are_refused_and_reported_while_the_node_stays_up(start_agent,
                                                                                       tmp_path):
    # a value the node refuses, one out of the descriptor's range, one of the wrong type, and
    # names that are not parameters (one renamed since)
    client, proc, _ = start_agent("backend:=cuda", "observation_dim:=0", "refresh_every:=often",
                                  "control_rate_hz:=50.0", "colour:=red")
    diag = client.latest_diagnostics(lambda d: d["rejected_parameters"] != "")
    assert diag is not None, _log(tmp_path)
    rejected = diag["rejected_parameters"]
    assert "'cuda'" in rejected and "observation_dim" in rejected and "refresh_every" in rejected, rejected
    assert "control_rate_hz is now control_period_s" in rejected and "colour" in rejected, rejected
    assert diag["_level"] == 1 and "backend" in diag["_message"]
    assert "rejected parameter backend" in _log(tmp_path)

    assert client.set_parameters(precision="int4", n_actions=0) == [(False, ANY), (False, ANY)]
    diag = client.latest_diagnostics(lambda d: "int4" in d["rejected_parameters"])
    assert diag is not None and "n_actions" in diag["rejected_parameters"]

    assert all(ok for ok, _ in client.set_parameters(backend="planning", precision="fp32", n_actions=3))
    assert client.change_state("configure")  # with the defaults of the refused launch values
    diag = client.latest_diagnostics(lambda d: d["state"] == "inactive")
    assert diag["backend"] == "planning" and diag["n_states"] == "16" and diag["n_actions"] == "3"
    standing = diag["rejected_parameters"]  # cleared for those set to a valid value since
    assert "observation_dim" in standing and "refresh_every" in standing, standing
    assert not any(word in standing for word in ("cuda", "int4", "n_actions")), standing
    assert proc.poll() is None


def _reliability(client: AgentClient, topic: str, publisher: bool) -> ReliabilityPolicy | None:
    """The reliability of the agent's endpoint on ``topic`` as the graph shows it now (None: no endpoint).

    Only the reliability: DDS discovery does not carry the history depth, so the graph reports 0.
    """
    n, name = client.node, f"{client.agent}/{topic}"
    infos = n.get_publishers_info_by_topic(name) if publisher else n.get_subscriptions_info_by_topic(name)
    return next((i.qos_profile.reliability for i in infos if i.node_name == client.agent[1:]), None)


def _shows(client: AgentClient, topic: str, publisher: bool, reliability: ReliabilityPolicy) -> bool:
    return client.spin_until(lambda: _reliability(client, topic, publisher) == reliability, 10)


def test_qos_follows_the_parameters_at_each_configure_and_a_summary_comes_each_period(start_agent):
    params = {"observation_qos_depth": 7, "observation_reliability": "reliable",
              "action_qos_depth": 3, "action_reliability": "best_effort"}
    observation, action = qos_profiles(params.__getitem__)
    assert (observation.depth, action.depth) == (7, 3)
    client, _, _ = start_agent("backend:=planning", "summary_period_s:=0.25",
                               *(f"{k}:={v}" for k, v in params.items()))
    assert client.change_state("configure")
    assert _shows(client, "action", True, ReliabilityPolicy.BEST_EFFORT)
    assert _shows(client, "observation", False, ReliabilityPolicy.RELIABLE)
    assert client.change_state("cleanup")
    assert client.set_parameters(action_reliability="reliable") == [(True, "")]
    assert client.change_state("configure")
    assert _shows(client, "action", True, ReliabilityPolicy.RELIABLE)
    assert not client.summaries  # only while active

    assert client.change_state("activate")
    assert client.wait_connected()
    _episode(client, 10, 4)
    client.summaries.clear()
    client.spin_until(lambda: False, 1.0)
    assert 2 <= len(client.summaries) <= 6  # every 0.25 s, not per observation
    summary = json.loads(client.summaries[-1])
    assert summary["transitions"] == 9 and summary["episodes"] == 1 and summary["n_states"] == 16
    assert len(summary["action_counts"]) == 4 and sum(summary["action_counts"]) == 9
    assert 1 <= summary["visited_states"] <= 16 and isinstance(summary["has_policy"], bool)
    assert math.isclose(summary["mean_reward"], 0.5, abs_tol=1e-5)  # rewards 0.9, 0.8, ..., 0.1


def test_joint_state_observations_concatenate_the_selected_fields(start_agent):
    client, _, _ = start_agent("backend:=planning", "observation_type:=joint_state",
                               "observation_dim:=4", "joint_state_fields:=[position, velocity]",
                               joint_state=True)
    _bring_up(client)
    assert client.step(JointState(position=[0.1, 0.2], velocity=[0.0, -0.3])) is not None
    assert client.step(JointState(position=[0.1, 0.2]), reward=1.0, timeout=NO_ACTION_WAIT_S) is None
    assert client.step(JointState(position=[0.3, 0.2], velocity=[0.5, 0.5]), reward=1.0) is not None
    diag = client.latest_diagnostics(lambda d: d.get("steps") == "2")
    assert diag["dropped_observations"] == "1" and diag["transitions"] == "1"


def test_torch_backend_serves_the_shipped_model(start_agent):
    pytest.importorskip("torch", reason="torch is not installed (the `train` extra)")
    client, _, _ = start_agent("backend:=torch", f"model_file_path:={DEFAULT_MODEL}",
                               "observation_dim:=2", "bins_per_dimension:=16", "n_actions:=4")
    _bring_up(client)
    _episode(client, 10, 4)
    diag = client.latest_diagnostics(lambda d: d.get("steps") == "10" and d.get("refreshes") != "0")
    assert diag is not None
    assert diag["backend"] == "torch" and diag["n_states"] == "256"
    assert diag["model_version"].startswith("default@") and diag["refresh_failures"] == "0"


class _PtyRobot:
    """The robot's end of a pseudo-terminal: writes OBSERVATION frames, reads the answers."""

    def __init__(self) -> None:
        import tty

        from rlfm_edge.serial import FrameDecoder

        self.fd, self._device = os.openpty()
        tty.setraw(self._device)
        self.port = os.ttyname(self._device)
        self.decoder = FrameDecoder()
        self.heard: list = []

    def wait_for(self, predicate, timeout: float, spin=None) -> bool:
        """Read frames until ``predicate(frames heard)``; ``spin(s)`` runs a ROS client meanwhile."""
        import select
        import time

        deadline = time.monotonic() + timeout
        while not predicate(self.heard):
            if time.monotonic() > deadline:
                return False
            if spin is not None:
                spin(0.002)
            while select.select([self.fd], [], [], 0 if spin else 0.01)[0]:
                self.heard.extend(self.decoder.feed(os.read(self.fd, 4096)))
        return True

    def exchange(self, msg, spin=None, timeout: float = 10.0):
        """Send ``msg``; the ACTION or ERROR answering it, None if none came in ``timeout``."""
        from rlfm_edge.serial import Action, Error, encode_frame

        def answer(frames):
            return next((m for m in frames if (isinstance(m, Action) and m.ack_seq == msg.seq)
                         or (isinstance(m, Error) and m.ref_seq == msg.seq)), None)
        self.heard.clear()
        os.write(self.fd, encode_frame(msg))
        self.wait_for(answer, timeout, spin)
        return answer(self.heard)

    def wait_connected(self, spin=None) -> bool:
        """The host's first HEARTBEAT: its end of the port is open."""
        return self.wait_for(lambda frames: any(type(m).__name__ == "Heartbeat" for m in frames), 30, spin)

    def close(self) -> None:
        os.close(self.fd)
        os.close(self._device)


def _spin(client: AgentClient):
    return lambda seconds: client.executor.spin_once(timeout_sec=seconds)


def _start_bridge(client: AgentClient, robot: _PtyRobot, dim: int, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PKG_SRC), os.environ.get("PYTHONPATH", "")])}
    bridge = subprocess.Popen(
        [sys.executable, "-m", "rlfm_edge_ros.serial_bridge", "--ros-args", "-p", f"port:={robot.port}",
         "-p", f"agent:={client.agent}", "-p", f"observation_dim:={dim}"],
        env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
    n = client.node
    assert client.spin_until(lambda: n.count_subscribers(f"{client.agent}/action") > 1
                             and n.count_publishers(f"{client.agent}/observation") > 1
                             and n.count_publishers(f"{client.agent}/terminal") > 1, 30)
    assert robot.wait_connected(_spin(client)), log_path.read_text()
    client.spin_until(lambda: False, 0.5)  # the agent's side of the matching
    return bridge


def _stop(proc: subprocess.Popen) -> int | None:
    """SIGINT, as Ctrl-C; the exit code (None if it had to be killed: a hung process must not
    outlive the test)."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def test_serial_bridge_answers_robot_frames_through_the_agent_node(start_agent, tmp_path):
    pytest.importorskip("serial", reason="pyserial is not installed (the `serial` extra)")
    from rlfm_edge.serial import Action, Observation

    client, _, _ = start_agent("backend:=planning", "observation_dim:=2")
    _bring_up(client)
    robot = _PtyRobot()
    bridge = _start_bridge(client, robot, 2, tmp_path / "bridge.log")
    try:
        answers = [robot.exchange(Observation((0.1 * seq, -0.2), 0.5, episode_end=seq == 4, seq=seq),
                                  _spin(client)) for seq in range(5)]
        assert all(isinstance(a, Action) for a in answers), answers
        assert all(0 <= a.action < 4 for a in answers[:4]) and answers[4].action == -1
        assert robot.exchange(Observation((0.0, 0.0), 0.0, seq=5), _spin(client)).ack_seq == 5
        diag = client.latest_diagnostics(lambda d: d.get("steps") == "6" and d.get("episodes") == "1")
        assert diag is not None, (tmp_path / "bridge.log").read_text()
        assert diag["transitions"] == "4" and diag["dropped_rewards"] == "0"
        assert diag["missing_rewards"] == "0"
    finally:
        code = _stop(bridge)
        robot.close()
    assert code == 0, f"the bridge did not stop on SIGINT (exit code {code})"


def _recorded_episodes(seed: int = 0) -> list:
    """OBSERVATION frames of CartPole episodes driven by random actions, recorded: falls (half
    of them sent as goals), time limits, a RESET that cuts an episode, REPEATs of answered frames."""
    import gymnasium as gym
    import numpy as np

    from rlfm_edge.serial import Observation

    env = gym.make("CartPole-v1", max_episode_steps=30)
    rng = np.random.default_rng(seed)
    frames = []
    for episode in range(10):
        x, _ = env.reset(seed=seed + episode)
        frames.append(dict(observation=tuple(map(float, x)), reward=0.0, reset=episode in (0, 6)))
        for t in range(1000):
            x, r, term, trunc, _ = env.step(int(rng.integers(2)))
            end = term or trunc or (episode == 5 and t == 6)  # episode 5 is cut by episode 6's RESET
            frames.append(dict(observation=tuple(map(float, x)), reward=float(r) * rng.uniform(0.5, 1),
                               episode_end=end and episode != 5, terminal=term,
                               goal=term and episode % 2 == 1))
            if t % 7 == 3:
                frames.append({**frames[-1], "repeat": True})
            if end:
                break
    return [Observation(seq=seq, **f) for seq, f in enumerate(frames)]


@pytest.mark.slow
def test_serve_and_the_bridge_with_the_node_learn_the_same_statistics_from_the_same_episodes(
        start_agent, tmp_path):
    """The parity of the routes: one recorded sequence of robot frames, fed through `rlfm-edge
    serve` over a pty and through rlfm_serial_bridge + the agent node over DDS, with the same
    robot YAML (planning backend, every step acting on all it has seen, the same seed), gives
    the same actions and equal statistics."""
    pytest.importorskip("serial", reason="pyserial is not installed (the `serial` extra)")
    from rlfm_edge.serial import Action
    from rlfm_edge.sim_robot import CARTPOLE_CONFIG

    config = tmp_path / "robot.yaml"
    config.write_text(json.dumps({**CARTPOLE_CONFIG, "terminal_state": "both", "max_policy_lag": 0,
                                  "seed": 3, "backend": "planning"}))
    frames = _recorded_episodes()
    assert {"goal", "failure", "truncated", "cut", "repeat"} <= {
        "goal" if f.goal else "failure" if f.terminal else "truncated" if f.episode_end else
        "cut" if f.reset and f.seq else "repeat" if f.repeat else "" for f in frames}

    robot = _PtyRobot()
    serve = subprocess.Popen([sys.executable, "-m", "rlfm_edge", "serve", "--port", robot.port,
                              "--config", str(config), "--stats", str(tmp_path / "serve.npz")],
                             stdout=open(tmp_path / "serve.log", "w"),  # noqa: SIM115
                             stderr=subprocess.STDOUT)
    try:
        assert robot.wait_connected(), (tmp_path / "serve.log").read_text()
        served = [robot.exchange(f) for f in frames]
    finally:
        assert _stop(serve) == 0, (tmp_path / "serve.log").read_text()
        robot.close()

    client, _, _ = start_agent(f"robot_config:={config}", f"statistics.path:={tmp_path / 'ros.npz'}",
                               "observation_reliability:=reliable", "reward_timeout_s:=1.0",
                               "n_actions:=2", "horizon:=40")
    _bring_up(client)
    robot = _PtyRobot()
    bridge = _start_bridge(client, robot, 4, tmp_path / "bridge.log")
    try:
        bridged = [robot.exchange(f, _spin(client)) for f in frames]
        assert client.trigger("save_statistics").success
        diag = client.latest_diagnostics()
    finally:
        _stop(bridge)
        robot.close()

    assert all(isinstance(a, Action) for a in served) and all(isinstance(a, Action) for a in bridged)
    assert [a.action for a in bridged] == [a.action for a in served]
    serve_stats, ros_stats = CountStats.load(tmp_path / "serve.npz"), CountStats.load(tmp_path / "ros.npz")
    assert ros_stats == serve_stats
    assert serve_stats.n_sas[:, :, 108:].sum() >= 4  # both terminal states were entered
    for key in ("dropped_observations", "dropped_rewards", "missing_rewards", "dropped_terminals"):
        assert diag[key] == "0", (key, diag)


def test_executor_is_the_events_executor_where_rclpy_has_it_and_single_threaded_on_humble(ros_env,
                                                                                         monkeypatch):
    from rclpy.executors import SingleThreadedExecutor
    from rlfm_edge_ros.executor import executor_class, make_executor

    context = Context()
    rclpy.init(context=context)
    try:
        try:
            from rclpy.experimental import EventsExecutor  # noqa: F401
            expected = "EventsExecutor"
        except ImportError:
            expected = "SingleThreadedExecutor"
        assert type(make_executor(context)).__name__ == executor_class().__name__ == expected
        monkeypatch.setitem(sys.modules, "rclpy.experimental", None)  # as on Humble: no such module
        assert isinstance(make_executor(context), SingleThreadedExecutor)
    finally:
        rclpy.shutdown(context=context)


def test_terminal_and_goal_end_episodes_in_their_absorbing_states(start_agent, tmp_path):
    stats_file = tmp_path / "stats.npz"
    client, proc, _ = start_agent("backend:=planning", "observation_dim:=2", "n_actions:=2",
                                  "terminal_state:=both", f"statistics.path:={stats_file}")
    _bring_up(client)
    for end in ("terminal", "goal", "episode_end"):
        for t in range(3):
            assert client.step([0.1 * t, -0.3], reward=None if t == 0 else 0.5) is not None
        if end == "episode_end":
            client.publish_episode_end()
        else:  # the absorbing state replaces the final observation; the message carries the reward
            client.publish_terminal(0.25, goal=end == "goal")
    diag = client.latest_diagnostics(lambda d: d.get("episodes") == "3")
    assert diag is not None, _log(tmp_path)
    assert diag["terminal_states"] == "failure,goal" and diag["n_states"] == "18"
    assert diag["dropped_terminals"] == "0" and diag["dropped_rewards"] == "0"
    assert client.trigger("save_statistics").success
    stats = CountStats.load(stats_file)
    failure, goal = 16, 17
    for state, worth in ((failure, 0.0), (goal, 1.0)):
        assert stats.n_sas[:failure, :, state].sum() == 1  # the last transition entered it
        assert stats.n_sas[state, :, state].tolist() == [1, 1]  # absorbing, at its worth
        assert stats.reward_sum[state].tolist() == [worth, worth]
    assert stats.n_transitions == 3 * 2 + 2 * (1 + 2)
    assert math.isclose(stats.reward_sum[:failure].sum(), 6 * 0.5 + 2 * 0.25)  # with its reward

    client.publish_terminal(float("nan"))  # refused, counted, the node acts on
    assert client.step([0.0, 0.0]) is not None
    diag = client.latest_diagnostics(lambda d: d.get("dropped_terminals") == "1")
    assert diag is not None and "not finite" in diag["last_drop_reason"]
    assert proc.poll() is None


def test_the_node_takes_a_robot_yaml_whose_fields_explicit_parameters_override(start_agent, tmp_path):
    from rlfm_edge.logs import read_statistics

    robot = ROOT / "examples" / "cartpole_robot.yaml"
    stats_file, log_folder = tmp_path / "cartpole.npz", tmp_path / "logs"
    client, proc, _ = start_agent("backend:=planning", f"robot_config:={robot}", "mode:=greedy",
                                  f"statistics.path:={stats_file}", f"log:={log_folder}",
                                  "n_actions:=2", "horizon:=40")
    _bring_up(client)  # observation_dim comes from the robot's 4-dimensional discretizer
    for t in range(5):
        assert client.step([0.0, 0.1, 0.02 * t, -0.1], reward=None if t == 0 else 1.0) is not None
    client.publish_terminal(1.0)  # the example robot's terminal_state: a fall
    diag = client.latest_diagnostics(lambda d: d.get("episodes") == "1")
    assert diag is not None, _log(tmp_path)
    assert diag["n_states"] == "109" and diag["terminal_states"] == "failure"
    assert diag["statistics_path"] == str(stats_file)
    assert Path(diag["log"]).parent == log_folder and diag["log"].endswith(".mcap")  # its segment
    assert client.change_state("shutdown")
    assert proc.wait(15) == 0
    saved = CountStats.load(stats_file)
    assert saved.n_transitions == 4 + 1 + 2
    assert read_statistics(log_folder) == saved  # the MCAP log holds every transition


def test_rlfm_agent_ctl_drives_the_node_without_the_ros2_cli(start_agent, tmp_path):
    client, proc, _ = start_agent("backend:=planning", "observation_dim:=2")
    assert "is unconfigured: configure and activate it with `rlfm_agent_ctl" in _log(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PKG_SRC), os.environ.get("PYTHONPATH", "")])}

    def ctl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "rlfm_edge_ros.client", "--agent", client.agent,
                               "--timeout", "20", *args], env=env, capture_output=True, text=True,
                              timeout=120)

    out = ctl("set", "mode:=greedy", "safe_action:=null", "temperature:=-1")
    assert out.returncode == 1 and "mode: set" in out.stdout + out.stderr
    assert "temperature: refused: temperature: expected a number > 0" in out.stderr
    assert ctl("up").stdout.strip() == "active"
    out = ctl("diagnostics")
    assert out.returncode == 0 and "state: active" in out.stdout and "backend: planning" in out.stdout
    out = ctl("save")
    assert out.returncode == 0 and "saved to" in out.stdout
    assert ctl("state").stdout.strip() == "active"
    assert ctl("shutdown").returncode == 0
    assert proc.wait(15) == 0
