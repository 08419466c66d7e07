"""Drive an rlfm_agent node from another process: lifecycle, observations, services, diagnostics.

What a robot-side Python program, the tests and the latency benchmark all need. Not
thread-safe: one thread calls its methods, which spin the client's own node while they wait.

It is also ``rlfm_agent_ctl``, the command that does what the ``ros2`` CLI would where there is
none (the PyPI wheels of rclpy come without it):

    rlfm_agent_ctl up                       # configure, then activate
    rlfm_agent_ctl state | configure | activate | deactivate | cleanup | shutdown
    rlfm_agent_ctl save | load | reset      # the statistics services
    rlfm_agent_ctl diagnostics              # the node's next /diagnostics, one key per line
    rlfm_agent_ctl set mode:=greedy statistics.path:=/data/robot.npz
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import deque

import yaml
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import ParameterType
from rcl_interfaces.srv import DescribeParameters, SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter as RclpyParameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float32, Float32MultiArray, Int32, String
from std_srvs.srv import Trigger

TRANSITIONS = {"configure": Transition.TRANSITION_CONFIGURE,
               "activate": Transition.TRANSITION_ACTIVATE,
               "deactivate": Transition.TRANSITION_DEACTIVATE,
               "cleanup": Transition.TRANSITION_CLEANUP}
SHUTDOWN_FROM = {"unconfigured": Transition.TRANSITION_UNCONFIGURED_SHUTDOWN,
                 "inactive": Transition.TRANSITION_INACTIVE_SHUTDOWN,
                 "active": Transition.TRANSITION_ACTIVE_SHUTDOWN}


class AgentClient:
    """A plain node talking to the agent node ``agent`` (its fully qualified name)."""

    def __init__(self, context, agent: str = "/rlfm_agent", name: str = "rlfm_agent_client",
                 joint_state: bool = False) -> None:
        self.agent = agent
        self.node = Node(name, context=context)
        # Not the EventsExecutor the agent node uses: this client makes a service client per
        # call, and such a call's answer was seen never to arrive under it.
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.actions: deque[tuple[float, int]] = deque()  # (receive time, action)
        self.commands: deque[list[float]] = deque()
        self.summaries: deque[str] = deque()
        self.diagnostics: deque[dict[str, str]] = deque(maxlen=50)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        n = self.node
        self._obs_pub = n.create_publisher(JointState if joint_state else Float32MultiArray,
                                           f"{agent}/observation", reliable)
        self._reward_pub = n.create_publisher(Float32, f"{agent}/reward", reliable)
        self._end_pub = n.create_publisher(Bool, f"{agent}/episode_end", reliable)
        self._terminal_pubs = {goal: n.create_publisher(Float32, f"{agent}/{topic}", reliable)
                               for goal, topic in ((False, "terminal"), (True, "goal"))}
        n.create_subscription(Int32, f"{agent}/action",
                              lambda m: self.actions.append((time.perf_counter(), m.data)), 100)
        n.create_subscription(Float32MultiArray, f"{agent}/command",
                              lambda m: self.commands.append(list(m.data)), 100)
        n.create_subscription(String, f"{agent}/summary", lambda m: self.summaries.append(m.data), 10)
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        for status in msg.status:
            if status.name.startswith(self.agent.rsplit("/", 1)[-1] + ":"):
                self.diagnostics.append({kv.key: kv.value for kv in status.values}
                                        | {"_level": status.level[0] if isinstance(status.level, bytes)
                                           else int(status.level), "_message": status.message,
                                           "_stamp": stamp})

    # -- waiting ----------------------------------------------------------------------------
    def spin_until(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            self.executor.spin_once(timeout_sec=0.01)
        return True

    def _call(self, srv_type, name: str, request, timeout: float):
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise TimeoutError(f"service {name} not available after {timeout} s")
            future = client.call_async(request)
            if not self.spin_until(future.done, timeout):
                raise TimeoutError(f"service {name} did not answer in {timeout} s")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """True once the agent's subscriptions and action publisher are matched with ours."""
        def matched() -> bool:
            return (self._obs_pub.get_subscription_count() > 0
                    and self._reward_pub.get_subscription_count() > 0
                    and self._end_pub.get_subscription_count() > 0
                    and self.node.count_publishers(f"{self.agent}/action") > 0)
        return self.spin_until(matched, timeout)

    # -- lifecycle and services -------------------------------------------------------------
    def change_state(self, transition: str, timeout: float = 30.0) -> bool:
        """Request a transition by name ("shutdown" from whichever primary state it is in)."""
        req = ChangeState.Request()
        req.transition.id = (SHUTDOWN_FROM[self.get_state(timeout)] if transition == "shutdown"
                             else TRANSITIONS[transition])
        return self._call(ChangeState, f"{self.agent}/change_state", req, timeout).success

    def get_state(self, timeout: float = 10.0) -> str:
        return self._call(GetState, f"{self.agent}/get_state", GetState.Request(),
                          timeout).current_state.label

    def trigger(self, service: str, timeout: float = 10.0) -> Trigger.Response:
        return self._call(Trigger, f"{self.agent}/{service}", Trigger.Request(), timeout)

    def parameter_types(self, names: list[str], timeout: float = 10.0) -> list[int]:
        """The declared type (rcl_interfaces ParameterType) of each parameter."""
        res = self._call(DescribeParameters, f"{self.agent}/describe_parameters",
                         DescribeParameters.Request(names=names), timeout)
        return [d.type for d in res.descriptors]

    def set_parameters(self, timeout: float = 10.0, **values) -> list[tuple[bool, str]]:
        """Set each parameter; returns (successful, reason) per parameter."""
        req = SetParameters.Request(parameters=[RclpyParameter(name, value=value).to_parameter_msg()
                                                for name, value in values.items()])
        res = self._call(SetParameters, f"{self.agent}/set_parameters", req, timeout)
        return [(r.successful, r.reason) for r in res.results]

    # -- the control loop -------------------------------------------------------------------
    def publish_observation(self, observation) -> None:
        """A sequence of floats, or a ready message (JointState for a joint_state agent)."""
        if not isinstance(observation, (Float32MultiArray, JointState)):
            observation = Float32MultiArray(data=[float(v) for v in observation])
        self._obs_pub.publish(observation)

    def publish_reward(self, reward: float) -> None:
        self._reward_pub.publish(Float32(data=float(reward)))

    def publish_episode_end(self) -> None:
        self._end_pub.publish(Bool(data=True))

    def publish_terminal(self, reward: float, goal: bool = False) -> None:
        """End the episode in its absorbing state (``~/terminal``, or ``~/goal``), with the last reward."""
        self._terminal_pubs[goal].publish(Float32(data=float(reward)))

    def step(self, observation, reward: float | None = None, timeout: float = 5.0) -> int | None:
        """Publish (reward, observation) and wait for the one action; None if none came."""
        if reward is not None:
            self.publish_reward(reward)
        before = len(self.actions)
        self.publish_observation(observation)
        if not self.spin_until(lambda: len(self.actions) > before, timeout):
            return None
        return self.actions[-1][1]

    def latest_diagnostics(self, predicate=lambda d: True, timeout: float = 5.0) -> dict | None:
        """The first agent diagnostics published from now on that satisfies ``predicate`` (older
        ones still queued, while this client was not spinning, are passed over)."""
        self.diagnostics.clear()
        found: list[dict] = []
        since = self.node.get_clock().now().nanoseconds * 1e-9  # the node stamps with its clock

        def seen() -> bool:
            found.extend(d for d in self.diagnostics if d["_stamp"] >= since and predicate(d))
            self.diagnostics.clear()
            return bool(found)
        return found[0] if self.spin_until(seen, timeout) else None

    def destroy(self) -> None:
        self.executor.remove_node(self.node)
        self.node.destroy_node()


COMMANDS = ("up", "state", *TRANSITIONS, "shutdown", "save", "load", "reset", "diagnostics", "set")


def run_command(client: AgentClient, command: str, args: list[str], timeout: float) -> tuple[bool, str]:
    """(success, what to print) for one ``rlfm_agent_ctl`` command."""
    if command == "state":
        return True, client.get_state(timeout)
    if command == "up":
        steps = (["configure"] if client.get_state(timeout) == "unconfigured" else []) + ["activate"]
        for step in steps:
            if not client.change_state(step, timeout):
                return False, f"{step} failed (see the node's log or `rlfm_agent_ctl diagnostics`)"
        return True, client.get_state(timeout)
    if command in (*TRANSITIONS, "shutdown"):
        ok = client.change_state(command, timeout)
        return ok, (f"{command}: {'done' if ok else 'refused or failed'}; state "
                    f"{client.get_state(timeout) if command != 'shutdown' or not ok else 'finalized'}")
    if command in ("save", "load", "reset"):
        response = client.trigger(f"{command}_statistics", timeout)
        return response.success, response.message
    if command == "diagnostics":
        diag = client.latest_diagnostics(timeout=timeout)
        if diag is None:
            return False, f"no /diagnostics from {client.agent} in {timeout} s"
        return True, "\n".join(f"{k}: {v}" for k, v in diag.items() if k != "_stamp")
    values = {}
    for item in args:
        name, sep, text = item.partition(":=")
        if not sep:
            return False, f"set: expected NAME:=VALUE, got {item!r}"
        value = yaml.safe_load(text)
        values[name] = "null" if value is None else value  # rcl has no null: the string says it
    for (name, value), ptype in zip(values.items(), client.parameter_types(list(values), timeout),
                                    strict=True):
        if ptype == ParameterType.PARAMETER_DOUBLE and type(value) is int:
            values[name] = float(value)  # `temperature:=1` means 1.0
    results = client.set_parameters(timeout, **values)
    lines = [f"{name}: {'set' if ok else 'refused: ' + reason}" for name, (ok, reason) in
             zip(values, results, strict=True)]
    return all(ok for ok, _ in results), "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import rclpy
    from rclpy.context import Context

    p = argparse.ArgumentParser(prog="rlfm_agent_ctl", description=__doc__.split("\n\n")[2])
    p.add_argument("--agent", default="/rlfm_agent", help="the node's fully qualified name")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for an answer")
    p.add_argument("command", choices=COMMANDS)
    p.add_argument("values", nargs="*", metavar="NAME:=VALUE", help="for set")
    args = p.parse_args(argv)
    context = Context()
    rclpy.init(args=[], context=context)  # NAME:=VALUE is not a ROS remapping
    client = AgentClient(context, agent=args.agent, name="rlfm_agent_ctl")
    try:
        ok, text = run_command(client, args.command, args.values, args.timeout)
    except TimeoutError as exc:
        ok, text = False, f"{exc}: is {args.agent} running (rlfm_agent_node), in this ROS_DOMAIN_ID?"
    finally:
        client.destroy()
        rclpy.shutdown(context=context)
    print(text, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
