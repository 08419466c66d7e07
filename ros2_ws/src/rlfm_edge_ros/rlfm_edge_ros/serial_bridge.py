"""rlfm_serial_bridge: a microcontroller robot's serial link, as the rlfm_agent node's topics.

For robots that speak the rlfm-edge serial protocol (README, "Serial protocol") and want the
agent inside a ROS 2 graph (so it is managed, logged, and shares /diagnostics). Each
OBSERVATION frame becomes ``~/reward`` (unless it starts an episode) then ``~/observation`` on
the agent; the agent's ``~/action`` goes back as the ACTION frame answering it. An
EPISODE_END frame is answered with action -1 and followed by ``~/episode_end`` once the agent
has answered it; RESET ends an episode in progress first; a REPEAT of the observation last
answered gets the same action again without reaching the agent; an observation that is not
``observation_dim`` finite values gets an ERROR frame. ``rlfm-edge serve`` does the same
without ROS. One thread: the serial port is polled from a timer of the same executor.
"""

from __future__ import annotations

import math
from collections import deque

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import Bool, Float32, Float32MultiArray, Int32

from rlfm_edge.serial import Action, Error, Observation
from rlfm_edge.serial.link import SerialLink
from rlfm_edge.serial.protocol import ERR_INVALID_OBSERVATION
from rlfm_edge_ros.executor import spin
from rlfm_edge_ros.parameters import descriptor

NO_ACTION = -1  # the answer to an EPISODE_END observation, as `rlfm-edge serve` sends

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
        self.create_subscription(Int32, f"{agent}/action", self._on_action, reliable)
        self._waiting: deque[tuple[int, bool]] = deque()  # (seq, episode_end) sent to the agent
        self._in_episode = False
        self._last_key: tuple | None = None
        self._last_action = NO_ACTION
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
        key = (msg.observation, msg.reward, msg.episode_end, msg.terminal, msg.reset)
        if msg.repeat and key == self._last_key and not self._waiting:
            self._link.send(Action(ack_seq=msg.seq, action=self._last_action))
            return
        if len(msg.observation) != self._dim or not all(map(math.isfinite, msg.observation)):
            self._link.send(Error(ERR_INVALID_OBSERVATION, msg.seq,
                                  f"expected {self._dim} finite values"))
            return
        if msg.reset and self._in_episode:
            self._end_pub.publish(Bool(data=True))
        if self._in_episode and not msg.reset:
            self._reward_pub.publish(Float32(data=float(msg.reward)))
        self._in_episode = not msg.episode_end
        self._last_key = key
        self._waiting.append((msg.seq, msg.episode_end))
        self._obs_pub.publish(Float32MultiArray(data=list(msg.observation)))

    def _on_action(self, msg: Int32) -> None:
        if not self._waiting:
            return  # an answer to someone else's observation
        seq, episode_end = self._waiting.popleft()
        self._last_action = NO_ACTION if episode_end else int(msg.data)
        self._link.send(Action(ack_seq=seq, action=self._last_action))
        if episode_end:  # after the agent answered the final observation, not before
            self._end_pub.publish(Bool(data=True))

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
