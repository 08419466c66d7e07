"""rlfm_agent: the lifecycle node that puts an rlfm_edge OnlineAgent on ROS 2 topics.

ROS plumbing only. The settings are the robot configuration's (``parameters.py``), the engine
comes from the same function `rlfm-edge serve` uses, and the pairing of rewards, observations
and episode ends into agent calls is ``rlfm_edge.runtime.message_pairing``, tested without DDS.

Lifecycle: configure builds the agent from the parameters (a failure is logged, shown in
/diagnostics, and leaves the node unconfigured); activate starts answering observations;
deactivate stops and saves; cleanup and shutdown save and release; after shutdown the process
exits with code 0. Parameters take effect at the next configure. The interface is documented
in docs/ros2.md. Kept to the rclpy API common to Humble and Jazzy.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float32, Float32MultiArray, Int32, String
from std_srvs.srv import Trigger

from rlfm_edge.runtime.engine import model_version
from rlfm_edge.runtime.message_pairing import MessagePairing
from rlfm_edge_ros.executor import spin
from rlfm_edge_ros.parameters import ConfigParameters, qos_profiles

NODE_NAME = "rlfm_agent"


def default_statistics_path(node_name: str) -> Path:
    """Where statistics go when ``statistics.path`` is not set: under $ROS_HOME (~/.ros)."""
    ros_home = os.environ.get("ROS_HOME") or os.path.join(os.path.expanduser("~"), ".ros")
    return Path(ros_home) / "rlfm_edge" / f"{node_name}_statistics.npz"


class AgentNode(ConfigParameters, LifecycleNode):
    """The managed node: one OnlineAgent per configure, answered observations while active."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self.declare_config_parameters()
        self.finished = False  # set by the shutdown transition; main() then exits
        self._agent = self._pairing = self._command_table = None
        self._active = False
        self._last_error = self._model_version = ""
        self._entities: list = []  # publishers, subscriptions and timers made at configure
        self._ignored_inactive, self._rate_count, self._rate_t0, self._loop_rate = 0, 0, time.monotonic(), 0.0
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(self.param("diagnostics_period_s"), self._publish_diagnostics)
        for name in ("reset_statistics", "save_statistics", "load_statistics"):
            self.create_service(Trigger, f"~/{name}", getattr(self, f"_srv_{name}"))
        fqn = self.get_fully_qualified_name()
        self.get_logger().info(
            f"{fqn} is unconfigured: configure and activate it with `rlfm_agent_ctl --agent {fqn} "
            f"up` (or `ros2 lifecycle set {fqn} configure`, then `activate`); parameters and "
            f"services: docs/ros2.md")

    # -- lifecycle --------------------------------------------------------------------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            config = self.robot_config()
            if config.stats_path is None:
                config = config.updated({"statistics.path": str(default_statistics_path(self.get_name()))})
            self._agent = config.make_agent()  # statistics loaded before the engine is built
            self._model_version = model_version(self._agent.engine, config.model_file_path)
            self._check_command_table()
            self._make_entities()
        except Exception as exc:  # noqa: BLE001 - any failure: report it, stay unconfigured
            self._last_error = f"configure failed: {type(exc).__name__}: {exc}"
            self.get_logger().error(self._last_error)
            self._release(save=False)
            return TransitionCallbackReturn.FAILURE
        self._last_error = ""
        a, c = self._agent, self._agent.counters
        self.get_logger().info(
            f"configured: {a.discretizer!r}, {a.n_actions} actions, terminal states "
            f"{list(a.terminal_indices) or 'none'}, backend {a.engine.backend} ({a.engine.precision}), "
            f"model {self._model_version}, statistics {a.persistence.path} ({c.stats_transitions} "
            f"transitions); activate to start acting")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._pairing.forget()
        self._active = True
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._active = False
        if self._agent is not None:
            self._agent.save_statistics()
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release(save=True)
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._release(save=True)
        self.finished = True
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: State) -> TransitionCallbackReturn:
        self._last_error = f"error in state {state.label}; released the agent"
        self.get_logger().error(self._last_error)
        self._release(save=True)
        return TransitionCallbackReturn.SUCCESS

    def _check_command_table(self) -> None:
        dim, table = self.param("action_command_dim"), self.param("action_command_table")
        if dim == 0:
            return
        n = self._agent.n_actions
        if len(table) != n * dim:
            raise ValueError(f"action_command_table: expected n_actions x action_command_dim = "
                             f"{n} x {dim} = {n * dim} values, got {len(table)}")
        self._command_table = np.asarray(table, np.float32).reshape(n, dim)

    def _make_entities(self) -> None:
        obs_qos, act_qos = qos_profiles(self.param)
        self._action_pub = self.create_lifecycle_publisher(Int32, "~/action", act_qos)
        self._command_pub = (self.create_lifecycle_publisher(Float32MultiArray, "~/command", act_qos)
                             if self._command_table is not None else None)
        self._summary_pub = self.create_lifecycle_publisher(String, "~/summary", 10)
        obs_type = JointState if self.param("observation_type") == "joint_state" else Float32MultiArray
        wait = self.param("reward_timeout_s")
        self._pairing = pairing = MessagePairing(self._agent, self._publish_action, wait, self._on_drop)
        self._reward_timer = self.create_timer(max(wait, 1e-3), self._on_reward_timeout)
        self._reward_timer.cancel()
        on = self._when_active
        # rewards and episode ends first: messages ready in the same wait run in this order
        self._entities = [
            self.create_subscription(Float32, "~/reward", on(lambda m: pairing.reward(m.data)), 10),
            self.create_subscription(Bool, "~/episode_end", on(self._on_episode_end), 10),
            self.create_subscription(Float32, "~/terminal", on(lambda m: pairing.terminal(m.data)), 10),
            self.create_subscription(Float32, "~/goal", on(lambda m: pairing.terminal(m.data, "goal")), 10),
            self.create_subscription(obs_type, "~/observation", on(self._on_observation), obs_qos),
            self._reward_timer]
        if self.param("summary_period_s") > 0:
            self._entities.append(self.create_timer(self.param("summary_period_s"), self._publish_summary))

    def _release(self, save: bool) -> None:
        """Close the agent (saving its statistics) and drop what configure made."""
        self._active = False
        if self._agent is not None:
            self._agent.close(save=save)
        self._agent = self._pairing = self._command_table = None
        for entity in self._entities:
            (self.destroy_timer if hasattr(entity, "cancel") else self.destroy_subscription)(entity)
        self._entities = []
        for name in ("_action_pub", "_command_pub", "_summary_pub"):
            if getattr(self, name, None) is not None:
                self.destroy_lifecycle_publisher(getattr(self, name))
            setattr(self, name, None)

    def release(self) -> None:
        """Save and release whatever is held (on Ctrl-C or an external shutdown)."""
        self._release(save=True)

    # -- messages ---------------------------------------------------------------------------
    def _when_active(self, callback):
        def guarded(msg) -> None:
            if self._active:
                callback(msg)
            else:
                self._ignored_inactive += 1
        return guarded

    def _on_episode_end(self, msg: Bool) -> None:
        if msg.data:
            self._pairing.episode_end()

    def _on_observation(self, msg) -> None:
        if isinstance(msg, JointState):
            obs = [v for f in self.param("joint_state_fields") for v in getattr(msg, f)]
        else:
            obs = list(msg.data)
        if self._pairing.observation(obs):
            self._reward_timer.reset()  # held for its reward

    def _on_reward_timeout(self) -> None:
        self._reward_timer.cancel()
        if self._active:
            self._pairing.timeout()

    def _publish_action(self, action: int) -> None:
        self._reward_timer.cancel()
        self._action_pub.publish(Int32(data=action))
        if self._command_pub is not None:
            self._command_pub.publish(Float32MultiArray(data=self._command_table[action].tolist()))
        self._rate_count += 1

    def _on_drop(self, key: str, reason: str) -> None:
        self.get_logger().warning(f"{key.replace('_', ' ')}: {reason}", throttle_duration_sec=1.0)

    # -- services ---------------------------------------------------------------------------
    def _srv_reset_statistics(self, request, response):
        if self._agent is None:
            return _answer(response, False, "not configured")
        self._agent.reset_statistics()
        self._pairing.forget()
        return _answer(response, True, "statistics reset")

    def _srv_save_statistics(self, request, response):
        if self._agent is None:
            return _answer(response, False, "not configured")
        p = self._agent.persistence
        ok = self._agent.save_statistics()
        return _answer(response, ok, f"saved to {p.path}" if ok else
                       f"could not save to {p.path}: {p.counters.last_save_error}")

    def _srv_load_statistics(self, request, response):
        """Replace the live statistics by those saved at statistics.path."""
        if self._agent is None:
            return _answer(response, False, "not configured")
        try:
            n, used = self._agent.load_statistics()
        except Exception as exc:  # noqa: BLE001 - a bad file must not take the node down
            return _answer(response, False, f"{type(exc).__name__}: {exc}")
        self._pairing.forget()
        return _answer(response, True, f"loaded {n} transitions from {used}")

    # -- reporting --------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        """Counters only (O(1)): this runs on the thread that answers observations."""
        now = time.monotonic()
        self._loop_rate = self._rate_count / max(now - self._rate_t0, 1e-9)
        self._rate_count, self._rate_t0 = 0, now
        a, pairing = self._agent, self._pairing
        state = "active" if self._active else "inactive" if a is not None else "unconfigured"
        values = {"state": state, "last_error": self._last_error,
                  "last_drop_reason": pairing.last_drop if pairing else "",
                  "rejected_parameters": "; ".join(self.rejected.values()),
                  "loop_rate_hz": f"{self._loop_rate:.1f}", "ignored_inactive": self._ignored_inactive,
                  **(pairing.counts if pairing else {})}
        if a is not None:
            c = a.counters
            values.update({
                "backend": a.engine.backend, "precision": a.engine.precision,
                "model_version": self._model_version, "statistics_path": str(a.persistence.path),
                "log": str(a.transition_log.path) if a.transition_log else "",
                "terminal_states": ",".join(a.terminal_indices), "n_states": a.n_states,
                "n_actions": a.n_actions, "visited_states": c.visited_states,
                "transitions": c.stats_transitions, "episodes": c.episodes, "steps": c.steps,
                "deadline_misses": c.late_refreshes + c.step_overruns,
                "late_refreshes": c.late_refreshes, "step_overruns": c.step_overruns,
                "policy_waits": c.policy_waits, "refreshes": c.refreshes,
                "refresh_failures": c.refresh_failures, "safe_actions": c.safe_actions,
                "clipped_values": c.clipped_values,
                "last_refresh_latency_ms": f"{c.last_refresh_latency_s * 1e3:.3f}",
                "last_step_latency_ms": f"{c.last_step_latency_s * 1e3:.3f}",
                "saves": c.saves, "save_failures": c.save_failures, "log_failures": c.log_failures})
        dropping = pairing is not None and any(n for k, n in pairing.counts.items() if k != "observations")
        level, message = (
            (DiagnosticStatus.ERROR, self._last_error) if self._last_error else
            (DiagnosticStatus.WARN, f"rejected parameters: {', '.join(self.rejected)}") if self.rejected else
            (DiagnosticStatus.WARN, f"not acting ({state})") if not self._active else
            (DiagnosticStatus.WARN, f"dropping input: {pairing.last_drop}") if dropping else
            (DiagnosticStatus.OK, "acting"))
        status = DiagnosticStatus(name=f"{self.get_name()}: agent", hardware_id="rlfm_edge",
                                  level=level, message=message,
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)

    def _publish_summary(self) -> None:
        a = self._agent
        if a is None or not self._active:
            return
        summary = {**a.statistics_summary(), "episodes": a.counters.episodes,
                   "policy_stats_version": a.counters.policy_stats_version, "has_policy": a.has_policy}
        self._summary_pub.publish(String(data=json.dumps(summary)))


def _answer(response, success: bool, message: str):
    response.success, response.message = success, message
    return response


def main(args: list[str] | None = None) -> int:
    """Spin until the SHUTDOWN transition (exit 0) or Ctrl-C / SIGTERM (save, exit 0)."""
    rclpy.init(args=args)
    node = AgentNode()
    try:
        spin(node, done=lambda: node.finished)
    finally:
        node.release()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
