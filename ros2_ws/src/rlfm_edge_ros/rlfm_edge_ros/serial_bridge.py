"""rlfm_serial_bridge: a microcontroller robot's serial link, as the rlfm_agent node's topics.

For robots that speak the rlfm-edge serial protocol (docs/serial-protocol.md) and want the
agent inside a ROS 2 graph (so it is managed, logged, and shares /diagnostics). The frames are
read by the serial-session rules `rlfm-edge serve` uses (``rlfm_edge.serial.session``): an
OBSERVATION becomes ``~/reward`` (unless it starts an episode) then ``~/observation`` on the
agent, and the agent's ``~/action`` goes back as the ACTION frame answering it. An EPISODE_END
frame at a time limit is answered with action -1 and followed by ``~/episode_end`` once the
agent has answered it; with TERMINAL it becomes ``~/terminal`` (``~/goal`` with GOAL) carrying
the last reward, answered with -1 at once. RESET ends an episode in progress first (an
``~/episode_end``); a REPEAT of the observation last answered gets the same action again
without reaching the agent, and one of the observation the agent is still answering is
answered when that answer comes; an observation that is not ``observation_dim`` finite values
gets an ERROR frame. One thread: the serial port is polled from a timer of the same executor.
"""

from __future__ import annotations

from collections import deque

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import Bool, Float32, Float32MultiArray, Int32

from rlfm_edge.serial import Action, Error, Observation
from rlfm_edge.serial.link import SerialLink
from rlfm_edge.serial.protocol import ERR_INVALID_OBSERVATION
from rlfm_edge.serial.session import NO_ACTION, SerialSession, Turn, invalid_observation
from rlfm_edge_ros.executor import spin
from rlfm_edge_ros.parameters import descriptor

# name -> (default, description, range (lo, hi) or None)
PARAMETERS: dict[str, tuple] = {
    "port": ("/dev/ttyACM0", "serial device of the robot", None),
    "baudrate": (115200, "baud rate of the serial port", (50, 12_000_000)),
    "agent": ("/rlfm_agent", "fully qualified name of the rlfm_agent node", None),
    "observation_dim": (2, "length of every observation vector (the agent's observation_dim)",
                        (1, 1024)),
    "poll_period_s": (0.001, "how often the serial port is read", (1e-4, 1.0)),
}


def _descriptor(name: str, default, description: str, spec) -> ParameterDescriptor:
    """Read-only: the bridge reads its parameters once, at start, so a later set would do nothing."""
    return descriptor(name, default, description, spec, read_only=True)


class SerialBridge(Node):
    def __init__(self) -> None:
        super().__init__("rlfm_serial_bridge")
        p = {name: self.declare_parameter(name, default, _descriptor(name, default, description, spec)).value
             for name, (default, description, spec) in PARAMETERS.items()}
        agent, self._dim = p["agent"], p["observation_dim"]
        self._link = SerialLink(p["port"], p["baudrate"], read_timeout_s=0.0)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self._obs_pub = self.create_publisher(Float32MultiArray, f"{agent}/observation", reliable)
        self._reward_pub = self.create_publisher(Float32, f"{agent}/reward", reliable)
        self._end_pub = self.create_publisher(Bool, f"{agent}/episode_end", reliable)
        self._terminal_pubs = {kind: self.create_publisher(Float32, f"{agent}/{topic}", reliable)
                               for kind, topic in ((None, "terminal"), ("goal", "goal"))}
        self.create_subscription(Int32, f"{agent}/action", self._on_action, reliable)
        self._session = SerialSession()
        self._waiting: deque[list] = deque()  # [seq, turn] sent to the agent, oldest first
        self.create_timer(p["poll_period_s"], self._poll)

    def _poll(self) -> None:
        if self._obs_pub.get_subscription_count() == 0:
            return  # no agent yet: leave the frames in the port (the robot repeats unanswered ones)
        for _ in range(32):  # a burst of frames, then let the executor run the action callback
            msg = self._link.receive(timeout=0.0)
            if msg is None:
                return
            if isinstance(msg, Observation):
                self._on_observation(msg)
            elif isinstance(msg, Error):
                self.get_logger().warning(f"robot error {msg.code} on frame {msg.ref_seq}: {msg.text}")

    def _on_observation(self, msg: Observation) -> None:
        turn = self._session.turn(msg)
        if turn.repeat_action is not None:
            self._link.send(Action(ack_seq=msg.seq, action=turn.repeat_action))
            return
        if turn.awaited:
            self._waiting[-1][0] = msg.seq  # the agent is still answering it: answer this copy
            return
        reason = invalid_observation(turn.observation, self._dim)
        if reason is not None:
            self._session.refused(turn)
            self._link.send(Error(ERR_INVALID_OBSERVATION, msg.seq, reason))
            return
        if turn.cut:
            self._end_pub.publish(Bool(data=True))
        if turn.end == "terminal":  # the absorbing state replaces the final observation
            self._terminal_pubs[turn.kind].publish(Float32(data=float(turn.reward or 0.0)))
            self._answer(msg.seq, turn, NO_ACTION)
            return
        if turn.reward is not None:
            self._reward_pub.publish(Float32(data=float(turn.reward)))
        self._waiting.append([msg.seq, turn])
        self._obs_pub.publish(Float32MultiArray(data=list(turn.observation)))

    def _on_action(self, msg: Int32) -> None:
        if not self._waiting:
            return  # an answer to someone else's observation
        seq, turn = self._waiting.popleft()
        self._answer(seq, turn, int(msg.data) if turn.end is None else NO_ACTION)
        if turn.end is not None:  # after the agent answered the final observation, not before
            self._end_pub.publish(Bool(data=True))

    def _answer(self, seq: int, turn: Turn, action: int) -> None:
        self._link.send(Action(ack_seq=seq, action=action))
        self._session.answered(turn, action)

    def close(self) -> None:
        self._link.close()


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    node = SerialBridge()
    try:
        spin(node)
    finally:
        node.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
