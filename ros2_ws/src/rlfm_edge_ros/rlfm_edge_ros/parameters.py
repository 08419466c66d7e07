"""The agent node's parameters, and the descriptors the serial bridge shares.

Two kinds: the robot configuration's settings (``rlfm_edge.runtime.robot_config.SETTINGS``: the
robot YAML's names, ``statistics.path`` for ``statistics: {path: ...}``, one default and one
validation), and the node's own ROS plumbing (``NODE_PARAMETERS``: topics, QoS, the uniform
discretizer, reporting). ``robot_config`` takes a whole robot YAML; parameters given on the
command line, in a params file or set later override its fields.

rcl has no null: the string ``null`` means null (not set), as ``""`` does for a path. A
setting without a default (``n_actions``, ``horizon``) or whose null is meaningful is
dynamically typed; the config's validation checks it when set.
"""

from __future__ import annotations

import math

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from rlfm_edge.discretize import Discretizer, load_yaml
from rlfm_edge.runtime.robot_config import BY_NAME, RENAMED, SETTINGS, RobotConfig, Setting

_STR, _INT, _DBL, _BOOL = (ParameterType.PARAMETER_STRING, ParameterType.PARAMETER_INTEGER,
                           ParameterType.PARAMETER_DOUBLE, ParameterType.PARAMETER_BOOL)
_STR_ARRAY, _DBL_ARRAY = ParameterType.PARAMETER_STRING_ARRAY, ParameterType.PARAMETER_DOUBLE_ARRAY
NULLS = ("null", "~")
OBSERVATION_TYPES = ("float32_multi_array", "joint_state")
JOINT_STATE_FIELDS = ("position", "velocity", "effort")
RELIABILITIES = ("best_effort", "reliable")

# The node's own: name -> (default, description, range (lo, hi) or allowed values or None)
NODE_PARAMETERS: dict[str, tuple] = {
    "robot_config": ("", "robot YAML (the `rlfm-edge serve` format) giving every setting at once; "
                     "parameters set explicitly override its fields", None),
    "observation_dim": (2, "length of every observation vector (with a discretizer file or "
                        "robot_config: its dimensions unless set)", (1, 1024)),
    "observation_low": (-1.0, "uniform discretizer (no `discretizer`): lower bound of every "
                        "dimension", (-1e9, 1e9)),
    "observation_high": (1.0, "uniform discretizer: upper bound of every dimension", (-1e9, 1e9)),
    "bins_per_dimension": (4, "uniform discretizer: bins per dimension", (1, 4096)),
    "observation_type": ("float32_multi_array", "message type on ~/observation", OBSERVATION_TYPES),
    "joint_state_fields": (["position"], "JointState fields concatenated into the observation",
                           JOINT_STATE_FIELDS),
    "observation_qos_depth": (5, "QoS history depth of ~/observation", (1, 1000)),
    "observation_reliability": ("best_effort", "QoS reliability of ~/observation", RELIABILITIES),
    "action_qos_depth": (1, "QoS history depth of ~/action and ~/command", (1, 1000)),
    "action_reliability": ("reliable", "QoS reliability of ~/action and ~/command", RELIABILITIES),
    "action_command_dim": (0, "length of the continuous command per action; 0 = no ~/command",
                           (0, 64)),
    "action_command_table": ([0.0], "row-major n_actions x action_command_dim table; "
                             "~/command carries row [action]", None),
    "reward_timeout_s": (0.01, "how long an observation waits for the previous action's reward "
                         "(topics are not ordered against each other); 0 = not at all", (0.0, 1.0)),
    "diagnostics_period_s": (1.0, "period of /diagnostics (at most 1 s)", (0.05, 1.0)),
    "summary_period_s": (5.0, "period of ~/summary (JSON); 0 = off", (0.0, 3600.0)),
}


def descriptor(name: str, default, description: str, spec, read_only: bool = False) -> ParameterDescriptor:
    """The descriptor of one parameter: its type, and its range or allowed values from ``spec``."""
    kinds = {bool: _BOOL, int: _INT, float: _DBL, str: _STR}
    ptype = (_STR_ARRAY if isinstance(default[0], str) else _DBL_ARRAY) \
        if isinstance(default, list) else kinds[type(default)]
    d = ParameterDescriptor(name=name, type=ptype, description=description, read_only=read_only)
    if isinstance(spec, tuple) and isinstance(spec[0], str):
        d.additional_constraints = f"one of {', '.join(spec)}"
    elif spec is not None and ptype == _INT:
        d.integer_range = [IntegerRange(from_value=spec[0], to_value=spec[1], step=0)]
    elif spec is not None and ptype == _DBL:
        d.floating_point_range = [FloatingPointRange(from_value=spec[0], to_value=spec[1], step=0.0)]
    return d


def _dynamic(s: Setting) -> bool:
    return s.required or s.kind == "terminal" or (s.nullable and s.kind not in ("path",))


def _declared_default(s: Setting):
    """The value a setting is declared with: its default, "" for a path or discretizer."""
    if s.kind in ("path", "discretizer"):
        return ""
    return None if s.required else s.default


def setting_descriptor(s: Setting) -> ParameterDescriptor:
    d = ParameterDescriptor(name=s.name, description=s.help, additional_constraints=s.expected(),
                            dynamic_typing=_dynamic(s))
    if not d.dynamic_typing:
        d.type = {str: _STR, bool: _BOOL, int: _INT, float: _DBL}[type(_declared_default(s))]
        if s.kind == "int" and s.low is not None and s.high is not None:
            d.integer_range = [IntegerRange(from_value=s.low, to_value=s.high, step=0)]
    return d


def from_ros(s: Setting, value):
    """A parameter's value as the configuration reads it (``null`` -> None)."""
    if value is None or (isinstance(value, str) and value in NULLS and (s.nullable or s.required)):
        return None
    return list(value) if isinstance(value, (list, tuple)) else value


def check_parameter(name: str, value) -> str | None:
    """Why ``value`` is not acceptable for parameter ``name``, or None if it is."""
    if name in BY_NAME:
        s = BY_NAME[name]
        value = from_ros(s, value)
        if value is None or s.kind == "discretizer":
            return None  # null is checked at configure (required); a file when it is read
        try:
            s.check(value)
        except ValueError as exc:
            return str(exc)
        return None
    if name not in NODE_PARAMETERS:
        return None
    spec = NODE_PARAMETERS[name][2]
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


class ConfigParameters:
    """Mixin for the agent node: declares every parameter, refuses bad values with the reason
    (kept for /diagnostics until a valid value is set), and builds the RobotConfig."""

    def declare_config_parameters(self) -> None:
        self.rejected: dict[str, str] = {}  # parameter -> why its last requested value was refused
        overrides = getattr(self, "_parameter_overrides", {})  # -p and params files, by name
        self.explicit: set[str] = set()
        # registered before declaring, so invalid overrides from a launch file are refused too
        self.add_on_set_parameters_callback(self._on_set_parameters)
        for s in SETTINGS:
            self._declare(s.name, _declared_default(s), setting_descriptor(s))
        for name, (default, description, spec) in NODE_PARAMETERS.items():
            self._declare(name, default, descriptor(name, default, description, spec))
        self.explicit = {name for name in overrides if name not in self.rejected}
        for name in sorted(set(overrides) - set(BY_NAME) - set(NODE_PARAMETERS)):
            self._note_rejection([name], "not a parameter of this node" + (
                f" ({name} is now {RENAMED[name]})" if name in RENAMED else "")
                + "; `ros2 param list` or docs/ros2.md list them")

    def _declare(self, name: str, default, descriptor: ParameterDescriptor) -> None:
        """Declare one parameter; an invalid launch override is refused and reported, not fatal."""
        try:
            self.declare_parameter(name, default, descriptor)
        except (InvalidParameterValueException, InvalidParameterTypeException) as exc:
            reason = str(exc).removesuffix(f": {name}")  # rclpy appends the name
            self._note_rejection([name], f"{reason}; using the default {default!r}")
            self.declare_parameter(name, default, descriptor, ignore_override=True)

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
                self.rejected.pop(name, None)
            self.explicit.update(names)
        else:
            self._note_rejection(names, result.reason)
        return result

    def _note_rejection(self, names: list[str], reason: str) -> None:
        """Log a refused value and keep the reason for /diagnostics until a valid one is set."""
        for name in names:
            self.rejected[name] = reason if reason.startswith(name) else f"{name}: {reason}"
        self.get_logger().warning(f"rejected parameter {', '.join(names)}: {reason}")

    def param(self, name: str):
        return self.get_parameter(name).value

    def robot_config(self) -> RobotConfig:
        """The configuration: ``robot_config``'s fields, then the settings set explicitly, then
        (without a discretizer) the uniform one; ``observation_dim`` checked against it."""
        path = self.param("robot_config")
        raw = dict(load_yaml_mapping(path)) if path else {}
        raw.update({name: from_ros(BY_NAME[name], self.param(name))
                    for name in sorted(self.explicit) if name in BY_NAME})
        dim = self.param("observation_dim")
        if not raw.get("discretizer"):
            raw["discretizer"] = Discretizer.uniform([self.param("observation_low")] * dim,
                                                     [self.param("observation_high")] * dim,
                                                     self.param("bins_per_dimension"))
        config = RobotConfig.from_dict(raw, source=f"{path} and parameters" if path else "parameters")
        n_dims = config.discretizer.n_dims
        if "observation_dim" in self.explicit and dim != n_dims:
            raise ValueError(f"observation_dim: {dim} differs from the {n_dims} dimensions of the "
                             f"discretizer")
        return config


def _reliability(name: str) -> ReliabilityPolicy:
    return ReliabilityPolicy.RELIABLE if name == "reliable" else ReliabilityPolicy.BEST_EFFORT


def qos_profiles(param=lambda name: NODE_PARAMETERS[name][0]) -> tuple[QoSProfile, QoSProfile]:
    """(~/observation QoS, ~/action and ~/command QoS) from the parameters (default: defaults)."""
    observation = QoSProfile(depth=param("observation_qos_depth"),
                             reliability=_reliability(param("observation_reliability")),
                             durability=qos_profile_sensor_data.durability)
    action = QoSProfile(depth=param("action_qos_depth"),
                        reliability=_reliability(param("action_reliability")))
    return observation, action


def load_yaml_mapping(path: str) -> dict:
    from pathlib import Path

    raw = load_yaml(Path(path), "robot_config")
    if not isinstance(raw, dict):
        raise ValueError(f"robot_config: {path}: expected a mapping of settings")
    return raw
