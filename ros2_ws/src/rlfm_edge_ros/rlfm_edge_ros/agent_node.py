"""rlfm_agent: the lifecycle node that puts an rlfm_edge OnlineAgent on ROS 2 topics.

A thin adapter: discretizing, counting, acting, refreshing the policy and saving the
statistics all happen in ``rlfm_edge.runtime.OnlineAgent``. This node maps messages to
``step(observation, reward)`` / ``end_episode()`` calls and reports what the agent did.

Lifecycle: configure loads the discretizer, the statistics and the engine (a failure is
logged, shown in /diagnostics, and leaves the node unconfigured); activate starts answering
observations; deactivate stops and saves; cleanup and shutdown save and release; after
shutdown the process exits with code 0. Parameters take effect at the next configure. An
invalid value is refused with the reason, logged and shown in /diagnostics; one given at
launch leaves the default in place instead of stopping the node.

Message order callers keep: a reward refers to the action before it and arrives before the
next observation; ``~/episode_end`` comes after the episode's last reward and before the
next observation. Send the episode's final observation after its last reward (its action
may be ignored) so the last transition is recorded, as the serial protocol does. Every
valid observation is answered by exactly one ``~/action``, published from the callback.

Kept to the rclpy API common to Humble and Jazzy.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float32, Float32MultiArray, Int32, String
from std_srvs.srv import Trigger

from rlfm_edge.discretize import Discretizer
from rlfm_edge.inference import make_engine
from rlfm_edge.inference.base import DEFAULT_ANNEAL_VISITS
from rlfm_edge.runtime import InvalidObservation, OnlineAgent, StatsPersistence
from rlfm_edge.runtime.online_agent import MODES
from rlfm_edge_ros.executor import spin
from rlfm_edge_ros.parameters import descriptor

NODE_NAME = "rlfm_agent"
BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt", "planning")
PRECISIONS = ("fp32", "fp16", "int8")
OBSERVATION_TYPES = ("float32_multi_array", "joint_state")
JOINT_STATE_FIELDS = ("position", "velocity", "effort")
RELIABILITIES = ("best_effort", "reliable")

# name -> (default, description, range (lo, hi) or allowed values or None)
PARAMETERS: dict[str, tuple] = {
    "model_file_path": ("", "model directory or ONNX file; empty = the shipped default model", None),
    "engine_file_path": ("", "TensorRT engine cache file; empty = next to the model", None),
    "force_engine_update": (False, "rebuild the TensorRT engine even if the cache matches", None),
    "backend": ("auto", "inference backend", BACKENDS),
    "precision": ("fp32", "inference precision", PRECISIONS),
    "control_rate_hz": (100.0, "expected observation rate; one tick is the deadline", (0.1, 10000.0)),
    "statistics_path": ("", "statistics file; empty = $ROS_HOME/rlfm_edge/<node>_statistics.npz",
                        None),
    "require_statistics_file": (False, "fail configure when the statistics file is missing", None),
    "save_period_s": (60.0, "save the statistics this often while running; 0 = only on "
                      "deactivate, cleanup, shutdown and save_statistics", (0.0, 86400.0)),
    "discretizer_config": ("", "discretizer YAML; empty = uniform bins over "
                           "[observation_low, observation_high]", None),
    "observation_low": (-1.0, "uniform discretizer: lower bound of every dimension", (-1e9, 1e9)),
    "observation_high": (1.0, "uniform discretizer: upper bound of every dimension", (-1e9, 1e9)),
    "bins_per_dimension": (4, "uniform discretizer: bins per dimension", (1, 4096)),
    "observation_dim": (2, "length of every observation vector", (1, 1024)),
    "observation_type": ("float32_multi_array", "message type on ~/observation", OBSERVATION_TYPES),
    "joint_state_fields": (["position"], "JointState fields concatenated into the observation",
                           JOINT_STATE_FIELDS),
    "action_mode": ("sample", "sample from the policy (explores) or act greedily", MODES),
    "temperature": (0.3, "softmax temperature of the sampled policy", (1e-3, 1e3)),
    "anneal_visits": (float(DEFAULT_ANNEAL_VISITS or 0.0), "cool a state's temperature as "
                      "temperature / sqrt(1 + visits / anneal_visits); 0 = fixed", (0.0, 1e9)),
    "horizon": (20, "episode horizon given to the policy engine", (1, 100000)),
    "n_actions": (4, "size of the discrete action space", (1, 1024)),
    "safe_action": (-1, "action before the first policy exists; -1 = uniform random",
                    (-1, 1023)),
    "refresh_every": (10, "refresh the policy after this many new transitions", (1, 1000000)),
    "refresh_niceness": (10, "niceness of the refresh thread above the control loop's (Linux)",
                         (0, 19)),
    "seed": (0, "seed of the action sampling", (0, 2**31 - 1)),
    "observation_qos_depth": (5, "QoS history depth of ~/observation", (1, 1000)),
    "observation_reliability": ("best_effort", "QoS reliability of ~/observation", RELIABILITIES),
    "action_qos_depth": (1, "QoS history depth of ~/action and ~/command", (1, 1000)),
    "action_reliability": ("reliable", "QoS reliability of ~/action and ~/command", RELIABILITIES),
    "action_command_dim": (0, "length of the continuous command per action; 0 = no ~/command",
                           (0, 64)),
    "action_command_table": ([0.0], "row-major n_actions x action_command_dim table; "
                             "~/command carries row [action]", None),
    "reward_timeout_s": (0.01, "how long an observation waits for the previous action's reward "
                         "(topics are not ordered against each other); 0 = not at all",
                         (0.0, 1.0)),
    "diagnostics_period_s": (1.0, "period of /diagnostics (at most 1 s)", (0.05, 1.0)),
    "summary_period_s": (5.0, "period of ~/summary (JSON); 0 = off", (0.0, 3600.0)),
}


def default_statistics_path(node_name: str) -> Path:
    """Where statistics go when ``statistics_path`` is empty: under $ROS_HOME (~/.ros)."""
    ros_home = os.environ.get("ROS_HOME") or os.path.join(os.path.expanduser("~"), ".ros")
    return Path(ros_home) / "rlfm_edge" / f"{node_name}_statistics.npz"


def check_parameter(name: str, value) -> str | None:
    """Why ``value`` is not acceptable for parameter ``name``, or None if it is."""
    if name not in PARAMETERS:
        return None
    spec = PARAMETERS[name][2]
    if isinstance(spec, tuple) and isinstance(spec[0], str):
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if not values:
            return f"{name}: expected at least one of {list(spec)}"
        bad = [v for v in values if v not in spec]
        if bad:
            return f"{name}: expected one of {list(spec)}, got {bad[0]!r}"
    elif spec is not None and not spec[0] <= value <= spec[1]:
        return f"{name}: expected a value in [{spec[0]}, {spec[1]}], got {value!r}"
    if name == "action_command_table" and not all(math.isfinite(v) for v in value):
        return "action_command_table: values must be finite"
    return None


class AgentNode(LifecycleNode):
    """The managed node: one OnlineAgent per configure, answered observations while active."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self._rejected: dict[str, str] = {}  # parameter -> why its last requested value was refused
        # registered before declaring, so invalid overrides from a launch file are refused too
        self.add_on_set_parameters_callback(self._on_set_parameters)
        for name, (default, description, spec) in PARAMETERS.items():
            self._declare(name, default, description, spec)
        self.finished = False  # set by the shutdown transition; main() then exits
        self._agent: OnlineAgent | None = None
        self._active = False
        self._last_error = ""
        self._model_version = ""
        self._stats_path: Path | None = None
        self._command_table: np.ndarray | None = None
        self._entities: list = []  # publishers and subscriptions made at configure
        self._reset_io_state()
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(self._param("diagnostics_period_s"),
                                             self._publish_diagnostics)
        self._summary_timer = self._reward_timer = None
        for name, handler in (("reset_statistics", self._srv_reset), ("save_statistics", self._srv_save),
                              ("load_statistics", self._srv_load)):
            self.create_service(Trigger, f"~/{name}", handler)

    # -- parameters -------------------------------------------------------------------------
    def _param(self, name: str):
        return self.get_parameter(name).value

    def _declare(self, name: str, default, description: str, spec) -> None:
        """Declare one parameter; an invalid launch override is refused and reported, not fatal."""
        try:
            self.declare_parameter(name, default, descriptor(name, default, description, spec))
        except (InvalidParameterValueException, InvalidParameterTypeException) as exc:
            reason = str(exc).removesuffix(f": {name}")  # rclpy appends the name
            self._note_rejection([name], f"{reason}; using the default {default!r}")
            self.declare_parameter(name, default, descriptor(name, default, description, spec),
                                   ignore_override=True)

    def _on_set_parameters(self, params) -> SetParametersResult:
        for p in params:
            reason = check_parameter(p.name, p.value)
            if reason is not None:
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def set_parameters_atomically(self, parameter_list) -> SetParametersResult:
        """The parameter services set through here: record refusals, the descriptors' ones included."""
        result = super().set_parameters_atomically(parameter_list)
        names = [p.name for p in parameter_list]
        if result.successful:
            for name in names:
                self._rejected.pop(name, None)
        else:
            self._note_rejection(names, result.reason)
        return result

    def _note_rejection(self, names: list[str], reason: str) -> None:
        """Log a refused value and keep the reason for /diagnostics until a valid one is set."""
        for name in names:
            self._rejected[name] = reason if reason.startswith(name) else f"{name}: {reason}"
        self.get_logger().warning(f"rejected parameter {', '.join(names)}: {reason}")

    # -- lifecycle --------------------------------------------------------------------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            self._agent = self._build_agent()
            self._check_command_table()
            self._make_entities()
        except Exception as exc:  # noqa: BLE001 - any failure: report it, stay unconfigured
            self._last_error = f"configure failed: {type(exc).__name__}: {exc}"
            self.get_logger().error(self._last_error)
            self._release(save=False)
            return TransitionCallbackReturn.FAILURE
        self._last_error = ""
        a = self._agent
        self.get_logger().info(
            f"configured: {a.discretizer!r}, {a.n_actions} actions, backend {a.engine.backend} "
            f"({a.engine.precision}), model {self._model_version}, statistics {self._stats_path} "
            f"({a.stats.n_transitions} transitions)")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._reset_io_state()
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

    def _build_agent(self, stats=None, persistence: StatsPersistence | None = None) -> OnlineAgent:
        p = self._param
        dim = p("observation_dim")
        if p("discretizer_config"):
            discretizer = Discretizer.load(p("discretizer_config"))
        else:
            discretizer = Discretizer.uniform([p("observation_low")] * dim,
                                              [p("observation_high")] * dim,
                                              p("bins_per_dimension"))
        if discretizer.n_dims != dim:
            raise ValueError(f"observation_dim: {dim} differs from the {discretizer.n_dims} "
                             f"dimensions of the discretizer")
        if persistence is None:
            path = Path(p("statistics_path") or default_statistics_path(self.get_name()))
            if p("require_statistics_file") and not path.exists():
                raise FileNotFoundError(f"statistics_path: {path} not found "
                                        f"(require_statistics_file is true)")
            persistence = StatsPersistence(path, every_s=p("save_period_s") or None)
        self._stats_path = persistence.path
        engine = (self._agent.engine if self._agent is not None
                  else self._make_engine((discretizer.n_states, p("n_actions"))))
        safe = p("safe_action")
        return OnlineAgent(
            discretizer, engine, p("horizon"), p("n_actions"), mode=p("action_mode"),
            temperature=p("temperature"), anneal_visits=p("anneal_visits") or None,
            refresh_every=p("refresh_every"),
            refresh_niceness=p("refresh_niceness"), deadline_s=1.0 / p("control_rate_hz"),
            safe_action=None if safe < 0 else safe, seed=p("seed"), stats=stats,
            persistence=persistence)

    def _make_engine(self, size: tuple[int, int]):
        """The engine; ``auto`` ranks the backends by a refresh at ``size`` (S, A), the robot's."""
        p = self._param
        model = p("model_file_path") or None
        if p("backend") == "planning":  # model-free
            model = None
        elif model is not None and not Path(model).exists():
            raise FileNotFoundError(f"model_file_path: {model} not found")
        kw = {}
        if p("backend") == "tensorrt":
            kw = {"engine_file_path": p("engine_file_path") or None,
                  "force_engine_update": p("force_engine_update")}
        engine = make_engine(p("backend"), model=model, precision=p("precision"), probe_size=size, **kw)
        self._model_version = _model_version(engine, model)
        return engine

    def _check_command_table(self) -> None:
        dim, table = self._param("action_command_dim"), self._param("action_command_table")
        self._command_table = None
        if dim == 0:
            return
        n = self._agent.n_actions
        if len(table) != n * dim:
            raise ValueError(f"action_command_table: expected n_actions x action_command_dim = "
                             f"{n} x {dim} = {n * dim} values, got {len(table)}")
        self._command_table = np.asarray(table, np.float32).reshape(n, dim)

    def _make_entities(self) -> None:
        p = self._param
        obs_qos, act_qos = qos_profiles(p)
        self._action_pub = self.create_lifecycle_publisher(Int32, "~/action", act_qos)
        self._command_pub = (self.create_lifecycle_publisher(Float32MultiArray, "~/command", act_qos)
                             if self._command_table is not None else None)
        self._summary_pub = self.create_lifecycle_publisher(String, "~/summary", 10)
        obs_type = JointState if p("observation_type") == "joint_state" else Float32MultiArray
        self._joint_fields = list(p("joint_state_fields"))
        # reward and episode_end first: messages ready in the same wait run in this order
        self._entities = [
            self.create_subscription(Float32, "~/reward", self._on_reward, 10),
            self.create_subscription(Bool, "~/episode_end", self._on_episode_end, 10),
            self.create_subscription(obs_type, "~/observation", self._on_observation, obs_qos),
        ]
        self._reward_wait_s = p("reward_timeout_s")
        self._reward_timer = self.create_timer(max(self._reward_wait_s, 1e-3), self._on_reward_timeout)
        self._reward_timer.cancel()
        if p("summary_period_s") > 0:
            self._summary_timer = self.create_timer(p("summary_period_s"), self._publish_summary)

    def _release(self, save: bool) -> None:
        """Close the agent (saving its statistics) and drop what configure made."""
        self._active = False
        if self._agent is not None:
            self._agent.close(save=save)
            self._agent = None
        for sub in self._entities:
            self.destroy_subscription(sub)
        self._entities = []
        for name in ("_action_pub", "_command_pub", "_summary_pub"):
            pub = getattr(self, name, None)
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
            setattr(self, name, None)
        for name in ("_summary_timer", "_reward_timer"):
            timer = getattr(self, name, None)
            if timer is not None:
                self.destroy_timer(timer)
            setattr(self, name, None)

    def release(self) -> None:
        """Save and release whatever is held (on Ctrl-C or an external shutdown)."""
        self._release(save=True)

    # -- messages ---------------------------------------------------------------------------
    def _reset_io_state(self) -> None:
        self._pending_reward: float | None = None
        self._awaiting_reward = False  # an action went out and its reward has not come
        self._held: np.ndarray | None = None  # an observation waiting for its reward
        self._io = {"observations": 0, "dropped_observations": 0, "dropped_rewards": 0,
                    "missing_rewards": 0, "ignored_inactive": 0}
        self._last_drop = ""
        self._rate_count, self._rate_t0, self._loop_rate = 0, time.monotonic(), 0.0

    def _drop(self, key: str, reason: str) -> None:
        self._io[key] += 1
        self._last_drop = reason
        self.get_logger().warning(f"{key.replace('_', ' ')}: {reason}", throttle_duration_sec=1.0)

    def _on_reward(self, msg: Float32) -> None:
        if not self._active:
            self._io["ignored_inactive"] += 1
            return
        r = float(msg.data)
        if not math.isfinite(r):
            self._drop("dropped_rewards", f"reward {r} is not finite")
        elif not self._awaiting_reward:
            self._drop("dropped_rewards", "reward with no action before it (before any "
                       "observation, after episode_end, or a second reward for one action)")
        else:
            self._pending_reward = r
            self._awaiting_reward = False
            if self._held is not None:  # its observation overtook it on the way here
                self._act(self._take_held())

    def _on_episode_end(self, msg: Bool) -> None:
        if not self._active or not msg.data:
            return
        if self._pending_reward is not None:
            self._drop("dropped_rewards", "episode ended with a reward and no observation after "
                       "it; publish the final observation to record the last transition")
        self._pending_reward = None
        self._awaiting_reward = False
        self._agent.end_episode()
        if self._held is not None:  # the next episode's first observation overtook episode_end
            self._act(self._take_held())

    def _on_observation(self, msg) -> None:
        if not self._active:
            self._io["ignored_inactive"] += 1
            return
        if isinstance(msg, JointState):
            obs = np.concatenate([np.asarray(getattr(msg, f), np.float64) for f in self._joint_fields])
        else:
            obs = np.asarray(msg.data, np.float64)
        dim = self._agent.discretizer.n_dims
        if obs.shape != (dim,) or not np.all(np.isfinite(obs)):
            self._drop("dropped_observations", f"observation: expected {dim} finite values, got "
                       f"{obs.size} ({'finite' if np.all(np.isfinite(obs)) else 'with NaN/inf'})")
            return  # a pending reward stays for the next valid observation
        if self._held is not None:
            self._on_reward_timeout()
        if self._awaiting_reward and self._reward_wait_s > 0:
            # DDS orders messages per topic only: the reward sent before this observation may
            # still be on its way. Hold the observation until it comes, or reward_timeout_s.
            self._held = obs
            self._reward_timer.reset()
            return
        self._act(obs)

    def _take_held(self) -> np.ndarray:
        obs, self._held = self._held, None
        self._reward_timer.cancel()
        return obs

    def _on_reward_timeout(self) -> None:
        self._reward_timer.cancel()
        if self._held is not None:
            obs = self._take_held()
            if self._active:
                self._act(obs)

    def _act(self, obs: np.ndarray) -> None:
        agent, reward = self._agent, self._pending_reward
        if reward is None and self._awaiting_reward:
            # the reward of the last action never came: that transition is unknowable, so this
            # observation starts a new stretch of experience instead of stalling the robot
            self._drop("missing_rewards", "observation with no reward for the previous action")
            agent.end_episode()
        try:
            action = agent.step(obs, reward)
        except InvalidObservation as exc:  # checked before; kept for whatever the agent refuses
            self._drop("dropped_observations", str(exc))
            return
        self._action_pub.publish(Int32(data=action))
        if self._command_pub is not None:
            self._command_pub.publish(Float32MultiArray(data=self._command_table[action].tolist()))
        self._pending_reward = None
        self._awaiting_reward = True
        self._io["observations"] += 1
        self._rate_count += 1

    # -- services ---------------------------------------------------------------------------
    def _srv_reset(self, request, response):
        if self._agent is None:
            return _answer(response, False, "not configured")
        self._agent.reset_statistics()
        self._pending_reward, self._awaiting_reward = None, False
        return _answer(response, True, "statistics reset")

    def _srv_save(self, request, response):
        if self._agent is None:
            return _answer(response, False, "not configured")
        ok = self._agent.save_statistics()
        return _answer(response, ok, f"saved to {self._stats_path}" if ok else
                       f"could not save to {self._stats_path}: "
                       f"{self._agent.persistence.counters.last_save_error}")

    def _srv_load(self, request, response):
        """Replace the live statistics by those saved at statistics_path."""
        if self._agent is None:
            return _answer(response, False, "not configured")
        old = self._agent
        persistence = StatsPersistence(old.persistence.path, every_s=old.persistence.every_s)
        if not persistence.path.exists() and not persistence.prev_path.exists():
            return _answer(response, False, f"no statistics file at {persistence.path}")
        try:
            stats = persistence.load_or_new(old.stats.n_states, old.n_actions)
            new = self._build_agent(stats=stats, persistence=persistence)
        except Exception as exc:  # noqa: BLE001 - a bad file must not take the node down
            return _answer(response, False, f"{type(exc).__name__}: {exc}")
        old.close(save=False)
        self._agent = new
        self._pending_reward, self._awaiting_reward = None, False
        return _answer(response, True, f"loaded {stats.n_transitions} transitions from "
                                       f"{persistence.loaded_from}")

    # -- reporting --------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        if now > self._rate_t0:
            self._loop_rate = self._rate_count / (now - self._rate_t0)
        self._rate_count, self._rate_t0 = 0, now
        status = DiagnosticStatus(name=f"{self.get_name()}: agent", hardware_id="rlfm_edge")
        values = {"state": "active" if self._active else
                  ("inactive" if self._agent is not None else "unconfigured"),
                  "last_error": self._last_error, "last_drop_reason": self._last_drop,
                  "rejected_parameters": "; ".join(self._rejected.values()),
                  "loop_rate_hz": f"{self._loop_rate:.1f}", **self._io}
        a = self._agent
        if a is not None:
            c = a.counters
            values.update({
                "backend": a.engine.backend, "precision": a.engine.precision,
                "model_version": self._model_version, "statistics_path": str(self._stats_path),
                "n_states": a.stats.n_states, "n_actions": a.n_actions,
                "visited_states": a.stats.visited_states, "transitions": a.stats.n_transitions,
                "episodes": c.episodes, "steps": c.steps,
                "deadline_misses": c.late_refreshes + c.step_overruns,
                "late_refreshes": c.late_refreshes, "step_overruns": c.step_overruns,
                "refreshes": c.refreshes, "refresh_failures": c.refresh_failures,
                "safe_actions": c.safe_actions, "clipped_values": c.clipped_values,
                "last_refresh_latency_ms": f"{c.last_refresh_latency_s * 1e3:.3f}",
                "last_step_latency_ms": f"{c.last_step_latency_s * 1e3:.3f}",
                "saves": c.saves, "save_failures": c.save_failures,
            })
        if self._last_error:
            status.level, status.message = DiagnosticStatus.ERROR, self._last_error
        elif self._rejected:
            status.level = DiagnosticStatus.WARN
            status.message = f"rejected parameters: {', '.join(self._rejected)}"
        elif not self._active:
            status.level, status.message = DiagnosticStatus.WARN, f"not acting ({values['state']})"
        elif self._io["dropped_observations"] or self._io["dropped_rewards"]:
            status.level, status.message = DiagnosticStatus.WARN, f"dropping input: {self._last_drop}"
        else:
            status.level, status.message = DiagnosticStatus.OK, "acting"
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)

    def _publish_summary(self) -> None:
        a = self._agent
        if a is None or not self._active:
            return
        s = a.stats
        n = s.n_transitions
        summary = {"transitions": n, "episodes": a.counters.episodes,
                   "visited_states": s.visited_states, "n_states": s.n_states,
                   "action_counts": s.n_sa.sum(axis=0).tolist(),
                   "mean_reward": float(s.reward_sum.sum() / n) if n else None,
                   "policy_stats_version": a.counters.policy_stats_version,
                   "has_policy": a.has_policy}
        self._summary_pub.publish(String(data=json.dumps(summary)))


def _reliability(name: str) -> ReliabilityPolicy:
    return ReliabilityPolicy.RELIABLE if name == "reliable" else ReliabilityPolicy.BEST_EFFORT


def qos_profiles(param=lambda name: PARAMETERS[name][0]) -> tuple[QoSProfile, QoSProfile]:
    """(~/observation QoS, ~/action and ~/command QoS) from the parameters (default: defaults)."""
    observation = QoSProfile(depth=param("observation_qos_depth"),
                             reliability=_reliability(param("observation_reliability")),
                             durability=qos_profile_sensor_data.durability)
    action = QoSProfile(depth=param("action_qos_depth"),
                        reliability=_reliability(param("action_reliability")))
    return observation, action


def _answer(response, success: bool, message: str):
    response.success, response.message = success, message
    return response


def _model_version(engine, model: str | None) -> str:
    """A short id of the weights: the engine's own, else the manifest's weights sha256."""
    engine = getattr(engine, "engine", engine)  # "auto" wraps the backend it chose
    version = getattr(engine, "model_version", None)
    if version:
        return str(version)
    model_dir = getattr(engine, "model_dir", None) or model
    if model_dir is None:
        return f"{engine.backend} (no model)"
    try:
        files = json.loads((Path(model_dir) / "manifest.json").read_text())["files"]
        return f"{Path(model_dir).name}@{files['weights.npz'][:12]}"
    except (OSError, ValueError, KeyError, TypeError):
        return str(model_dir)


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
