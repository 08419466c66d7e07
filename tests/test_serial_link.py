"""The link over real pseudo-terminals: the test plays the robot on the master side."""

import logging
import os
import select
import time
import tty
from types import SimpleNamespace

import pytest

from rlfm_edge.discretize import Discretizer
from rlfm_edge.inference.planning_engine import PlanningEngine
from rlfm_edge.runtime import OnlineAgent
from rlfm_edge.runtime.serial_loop import RandomActor, SerialAgentLoop
from rlfm_edge.serial.link import SerialLink
from rlfm_edge.serial.protocol import Action, FrameDecoder, Heartbeat, Observation, encode_frame


class Robot:
    """The far end of a pty pair, reachable at a stable symlink like /dev/ttyUSB0."""

    def __init__(self, link_path):
        self.master, slave = os.openpty()
        tty.setraw(slave)  # no echo before the link opens the port
        if os.path.lexists(link_path):
            os.unlink(link_path)
        os.symlink(os.ttyname(slave), link_path)
        os.close(slave)
        self.decoder = FrameDecoder()
        self.seq = 0

    def send(self, msg):
        os.write(self.master, encode_frame(msg.__class__(**{**msg.__dict__, "seq": self.seq})))
        self.seq += 1

    def receive(self, timeout=2.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.master], [], [], 0.05)
            if r:
                out = self.decoder.feed(os.read(self.master, 4096))
                if out:
                    return out
        return []

    def unplug(self):
        os.close(self.master)


def _receive(link, kind, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = link.receive(timeout=0.05)
        if isinstance(msg, kind):
            return msg
    return None


@pytest.fixture
def port(tmp_path):
    return str(tmp_path / "ttyROBOT")


def test_observation_in_action_out_over_a_pty(port):
    robot = Robot(port)
    with SerialLink(port, heartbeat_s=0) as link:
        robot.send(Observation((0.25, -1.5), 1.0, episode_end=True))
        msg = _receive(link, Observation)
        assert msg.observation == (0.25, -1.5) and msg.reward == 1.0 and msg.episode_end
        assert link.send(Action(ack_seq=msg.seq, action=3))
        (action,) = robot.receive()
        assert (action.ack_seq, action.action) == (msg.seq, 3)
    robot.unplug()


def test_garbage_on_the_wire_is_counted_and_the_link_keeps_working(port):
    robot = Robot(port)
    with SerialLink(port, heartbeat_s=0) as link:
        os.write(robot.master, b"\x07\xff\x12garbage\x00\x01\x02\x00")
        robot.send(Observation((1.0,), 0.5))
        assert _receive(link, Observation).observation == (1.0,)
        assert link.decoder.counters.dropped >= 1
    robot.unplug()


def test_idle_link_sends_heartbeats_and_counts_the_peers(port):
    robot = Robot(port)
    with SerialLink(port, heartbeat_s=0.05) as link:
        robot.send(Heartbeat(123))
        deadline = time.monotonic() + 3
        while link.counters.heartbeats_received < 1 and time.monotonic() < deadline:
            link.receive(timeout=0.05)
        seen = robot.receive(timeout=1.0)
        assert link.counters.heartbeats_received == 1
        assert link.counters.heartbeats_sent >= 1
        assert any(isinstance(m, Heartbeat) for m in seen)
    robot.unplug()


def test_unplugged_port_is_reopened_with_backoff_when_it_comes_back(port):
    robot = Robot(port)
    link = SerialLink(port, heartbeat_s=0.05, backoff_initial_s=0.01, backoff_max_s=0.1)
    assert link.connect()
    robot.send(Observation((1.0,), 0.0))
    assert _receive(link, Observation) is not None

    robot.unplug()  # the pty disappears, as a USB adapter pulled out
    deadline = time.monotonic() + 3
    while link.connected and time.monotonic() < deadline:
        link.receive(timeout=0.05)
    assert not link.connected and link.counters.disconnects == 1
    assert not link.send(Action(0, 1))  # a dead port: counted, no exception

    link.receive(timeout=0.3)  # keeps retrying while the port is missing
    assert link.counters.connect_failures >= 2

    robot = Robot(port)  # plugged back in at the same path
    msg = None
    for _ in range(30):  # the port flushes its input when opened: a robot repeats until heard
        robot.send(Observation((2.0,), 0.5, reset=True))
        msg = _receive(link, Observation, timeout=0.1)
        if msg is not None:
            break
    assert msg is not None and msg.observation == (2.0,)
    assert link.counters.connects == 2
    assert link.send(Action(msg.seq, 1))
    seen = []  # heartbeats can arrive in a read of their own before the ACTION (pty buffering)
    while not any(isinstance(m, Action) for m in seen) and (batch := robot.receive()):
        seen += batch
    assert any(isinstance(m, Action) for m in seen)
    link.close()
    robot.unplug()


def test_backoff_grows_to_its_cap_while_the_port_is_missing(port):
    link = SerialLink(port, backoff_initial_s=0.01, backoff_max_s=0.04)
    t0 = time.monotonic()
    assert link.receive(timeout=0.5) is None
    attempts = link.counters.connect_failures
    # 0.01 + 0.02 + 0.04 + 0.04 ... : far fewer attempts than with no backoff
    assert 4 <= attempts <= 0.5 / 0.04 + 4
    assert time.monotonic() - t0 >= 0.5


def test_a_reset_frame_received_twice_is_answered_once_and_starts_one_episode(port):
    """The duplicate used to restart the episode: a second ACTION for seq 0, a spurious cut
    episode, and the next transition credited to the second action instead of the one sent."""
    agent = OnlineAgent(Discretizer.uniform([0.0], [1.0], 4), PlanningEngine(), horizon=5,
                        n_actions=2)
    robot = Robot(port)
    with SerialLink(port, heartbeat_s=0) as link:
        loop = SerialAgentLoop(link, agent)
        reset = encode_frame(Observation((0.1,), 0.0, reset=True, seq=0))
        os.write(robot.master, reset + reset + encode_frame(Observation((0.6,), 1.0, seq=1)))
        actions, deadline = [], time.monotonic() + 5
        while not any(a.ack_seq == 1 for a in actions) and time.monotonic() < deadline:
            loop.run(duration_s=0.05)
            actions += robot.receive(timeout=0.05)
    robot.unplug()
    agent.close(save=False)
    assert [a.ack_seq for a in actions] == [0, 1]
    assert loop.counters.resets == 1 and loop.episodes == []
    assert link.decoder.counters.duplicates == 1
    stats = agent.stats
    assert stats.n_transitions == 1 and stats.n_sa[0, actions[0].action] == 1


def test_dropped_frames_are_logged_per_cause_at_most_once_per_interval(port, caplog):
    robot = Robot(port)
    with caplog.at_level(logging.WARNING, logger="rlfm_edge.serial.protocol"), \
            SerialLink(port, heartbeat_s=0) as link:
        os.write(robot.master, b"\x07\xff\x12garbage\x00" * 3)
        robot.send(Observation((1.0,), 0.5))
        assert _receive(link, Observation) is not None
    robot.unplug()
    assert link.decoder.counters.bad_cobs == 3
    (record,) = [r for r in caplog.records if "bad_cobs" in r.getMessage()]
    assert "serial: dropped a frame" in record.getMessage() and "bad_cobs: 1 so far" in record.getMessage()


def test_refused_observations_are_logged_with_their_count_at_most_once_per_interval(caplog):
    sent = []
    link = SimpleNamespace(send=lambda msg: sent.append(msg) or True)  # handle() only sends
    loop = SerialAgentLoop(link, RandomActor(n_actions=2, n_dims=1), warn_every_s=60)
    with caplog.at_level(logging.WARNING, logger="rlfm_edge.runtime.serial_loop"):
        for seq in range(3):
            loop.handle(Observation((float("nan"),), 0.0, seq=seq))
    assert loop.counters.invalid_observations == 3 and [m.ref_seq for m in sent] == [0, 1, 2]
    (record,) = caplog.records
    assert record.getMessage().startswith("refused observation 0: observation:")
    assert record.getMessage().endswith("(invalid_observations: 1 so far)")
