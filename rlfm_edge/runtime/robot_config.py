"""The one configuration of the online agent: every runtime setting once, with its name,
default, meaning and validation.

Every route is a view of it, with the same names: the robot YAML (`rlfm-edge serve`,
`demo`), the `--set NAME=VALUE` flags of those commands, the ROS 2 node's parameters (a
nested name such as ``statistics.path`` is the ROS parameter ``statistics.path``), and the
keyword arguments of ``OnlineAgent``. A setting that is not set is ``null`` (None) on every
route; a bad value is refused with the field named and the value expected.

```yaml
version: 1
discretizer: {dimensions: [{name: pole_angle, low: -0.21, high: 0.21, bins: 6}, ...]}  # or a path
n_actions: 2
horizon: 40
terminal_state: failure   # false, failure (or true), goal, or both
mode: sample              # or greedy
max_policy_lag: 10        # a step waits for a refresh requested this many transitions ago
control_period_s: 0.01    # the robot's tick
statistics: {path: stats/robot.npz, save_every_s: 30}
log: null                 # folder of MCAP transition logs, one segment per start
backend: auto             # and precision, model_file_path, engine_file_path, ...
```

``SETTINGS`` lists them all (``describe()`` prints the table). Relative paths are relative to
the current directory, as on the command line.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from rlfm_edge.discretize import Discretizer, load_yaml
from rlfm_edge.inference.base import DEFAULT_ANNEAL_VISITS, DEFAULT_TEMPERATURE
from rlfm_edge.runtime.persistence import StatsPersistence

CONFIG_VERSION = 1
MODES = ("sample", "greedy")
TERMINAL_KINDS = {"failure": 0.0, "goal": 1.0}  # absorbing state -> its reward per step
BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt", "planning")
PRECISIONS = ("fp32", "fp16", "int8")
# Names other routes used before there was one configuration: a clear error, not silence.
RENAMED = {"deadline_s": "control_period_s", "control_rate_hz": "control_period_s (= 1 / rate)",
           "action_mode": "mode", "statistics_path": "statistics.path",
           "save_period_s": "statistics.save_every_s", "discretizer_config": "discretizer",
           "require_statistics_file": "statistics.require_file", "model": "model_file_path"}
_REQUIRED = dataclasses.MISSING


def terminal_kinds(terminal_state: bool | str | None) -> tuple[str, ...]:
    """The absorbing states a ``terminal_state`` setting asks for, in state-index order.

    False/None: none; True or "failure": a failure state; "goal": a goal state; "both": both.
    The first is the kind a termination enters when the robot does not say which.
    """
    if terminal_state is None or terminal_state is False:
        return ()
    if terminal_state is True:
        return ("failure",)
    if terminal_state == "both":
        return tuple(TERMINAL_KINDS)
    if isinstance(terminal_state, str) and terminal_state in TERMINAL_KINDS:
        return (terminal_state,)
    raise ValueError(f"terminal_state: expected false, true, 'failure', 'goal' or 'both', got "
                     f"{terminal_state!r}")


@dataclass(frozen=True)
class Setting:
    """One setting: ``name`` on every route (YAML, flags, ROS), ``attr`` on RobotConfig.

    ``kind``: int, float (finite, > 0), bool, choice (one of ``choices``), path (a file or a
    folder; an empty string is null), terminal (``terminal_kinds``), discretizer (a mapping or
    a path).
    """

    name: str
    attr: str
    kind: str
    help: str
    default: object = _REQUIRED
    nullable: bool = False
    low: int | None = None
    high: int | None = None
    choices: tuple[str, ...] = ()
    agent: bool = False  # an OnlineAgent keyword argument

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def expected(self) -> str:
        """What a valid value looks like, for error messages and descriptions."""
        if self.kind == "int":
            what = ("an integer" if self.low is None else f"an integer >= {self.low}" if self.high
                    is None else f"an integer in [{self.low}, {self.high}]")
        elif self.kind == "float":
            what = "a number > 0 (finite)"
        elif self.kind == "choice":
            what = " or ".join(repr(c) for c in self.choices)
        else:
            what = {"bool": "true or false", "path": "a path",
                    "terminal": "false, true, 'failure', 'goal' or 'both'",
                    "discretizer": "a mapping with 'dimensions' or a discretizer file path"}[self.kind]
        return f"null or {what}" if self.nullable else what

    def check(self, value):
        """The value in its canonical type; ValueError naming the setting otherwise."""
        if self.kind == "path" and value == "":
            value = None
        if value is None and self.nullable:
            return None
        if self.kind == "discretizer":
            return _discretizer(value)
        if self.kind == "terminal":
            if isinstance(value, (bool, str)):
                terminal_kinds(value)
                return value
        elif self.kind == "int":
            if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and (
                    self.low is None or value >= self.low) and (self.high is None or value <= self.high):
                return int(value)
        elif self.kind == "float":
            if isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) \
                    and 0 < value < math.inf:
                return float(value)
        elif self.kind == "bool":
            if isinstance(value, bool):
                return value
        elif self.kind == "choice":
            if value in self.choices:
                return value
        elif self.kind == "path" and isinstance(value, (str, os.PathLike)):
            return Path(value)
        raise ValueError(f"{self.name}: expected {self.expected()}, got {value!r}")


def _setting(kind: str, help: str, default=_REQUIRED, *, name: str | None = None, agent: bool = False,
             **spec):
    """A RobotConfig field described by a Setting (completed with its attribute name below)."""
    meta = {"setting": dict(kind=kind, help=help, default=default, name=name, agent=agent, **spec)}
    if default is _REQUIRED:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


def _discretizer(value) -> Discretizer:
    if isinstance(value, Discretizer):
        return value
    if isinstance(value, (str, os.PathLike)) and str(value):
        try:
            return Discretizer.load(value)
        except ValueError as exc:
            raise ValueError(f"discretizer: {exc}") from None
    return Discretizer.from_config(value, source="discretizer")


@dataclass(frozen=True)
class RobotConfig:
    """Everything the online agent needs to know about one robot, validated when built."""

    discretizer: Discretizer = _setting(
        "discretizer", "observation vector -> state: a mapping of `dimensions` (name, low, high, "
        "bins or edges) or the path of a discretizer YAML")
    n_actions: int = _setting("int", "the robot's discrete actions", low=1)
    horizon: int = _setting("int", "the planning horizon given to the model (the shipped one was "
                            "trained on 5..100), receding: act well for the next H steps",
                            low=1, high=256)
    terminal_state: bool | str = _setting(
        "terminal", "absorbing end states: false, failure (or true; worth 0 per step), goal (worth "
        "1 per step) or both; the first is the kind a terminal end enters unless it says",
        False, agent=True)
    mode: str = _setting("choice", "sample from softmax(logits / temperature) (explores) or act "
                         "greedily", "sample", choices=MODES, agent=True)
    temperature: float = _setting("float", "softmax temperature of the sampled policy",
                                  DEFAULT_TEMPERATURE, agent=True)
    anneal_visits: float | None = _setting(
        "float", "cool each state's temperature to temperature / sqrt(1 + visits / anneal_visits); "
        "null keeps it fixed", DEFAULT_ANNEAL_VISITS, nullable=True, agent=True)
    refresh_every: int = _setting("int", "new transitions between background policy refreshes",
                                  10, low=1, agent=True)
    max_policy_lag: int | None = _setting(
        "int", "a step waits for a refresh requested this many transitions ago (0: every step "
        "acts on a policy of all it has seen, as a simulated-time benchmark needs); null never "
        "waits", 10, nullable=True, low=0, agent=True)
    refresh_on_new_pair: bool = _setting("bool", "also refresh when a (state, action) pair is "
                                         "tried for the first time", True, agent=True)
    refresh_on_episode_end: bool = _setting("bool", "also refresh at each episode end", True,
                                            agent=True)
    refresh_niceness: int = _setting("int", "niceness of the refresh thread above the control "
                                     "loop's (Linux), so the loop wins a contended core", 10,
                                     low=0, high=19, agent=True)
    control_period_s: float = _setting("float", "the robot's tick: refreshes and steps slower "
                                       "than this are counted as deadline misses", 0.01, agent=True)
    safe_action: int | None = _setting("int", "action before the first policy; null: uniformly "
                                       "random", None, nullable=True, low=0, agent=True)
    seed: int = _setting("int", "seed of the action sampling", 0, low=0, agent=True)
    stats_path: Path | None = _setting(
        "path", "statistics file, saved atomically and reloaded at the next start; null: none "
        "(the ROS node then uses $ROS_HOME/rlfm_edge/<node>_statistics.npz)", None,
        name="statistics.path", nullable=True)
    save_every_s: float | None = _setting("float", "save the statistics this often; null: only "
                                          "at exit and on request", 30.0,
                                          name="statistics.save_every_s", nullable=True)
    save_every_steps: int | None = _setting("int", "also save after this many new transitions",
                                            None, name="statistics.save_every_steps",
                                            nullable=True, low=1)
    stats_required: bool = _setting("bool", "refuse to start without a statistics file", False,
                                    name="statistics.require_file")
    log_path: Path | None = _setting(
        "path", "folder of MCAP transition logs: each start writes a new segment file there, "
        "never overwriting one (ros2 bag and Foxglove open each); null: none", None, name="log",
        nullable=True)
    backend: str = _setting("choice", "inference backend (planning: model-free optimistic "
                            "planning on the counts)", "auto", choices=BACKENDS)
    precision: str = _setting("choice", "inference precision, backend permitting", "fp32",
                              choices=PRECISIONS)
    model_file_path: Path | None = _setting("path", "model directory; null: the shipped default "
                                            "model", None, nullable=True)
    engine_file_path: Path | None = _setting("path", "TensorRT engine cache file; null: the "
                                             "engine cache", None, nullable=True)
    force_engine_update: bool = _setting("bool", "rebuild the TensorRT engine even if the cache "
                                         "matches", False)

    def __post_init__(self) -> None:
        for s in SETTINGS:
            object.__setattr__(self, s.attr, s.check(getattr(self, s.attr)))
        if self.safe_action is not None and self.safe_action >= self.n_actions:
            raise ValueError(f"safe_action: expected null or an integer in [0, {self.n_actions}), "
                             f"got {self.safe_action!r}")
        if self.backend == "planning" and self.model_file_path is not None:
            raise ValueError("model_file_path: the planning backend uses no model; set it to null")

    # -- views ------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike) -> RobotConfig:
        path = Path(path)
        return cls.from_dict(load_yaml(path, "robot config"), source=str(path))

    @classmethod
    def from_dict(cls, raw, source: str = "robot config") -> RobotConfig:
        """From YAML-shaped values: nested (``statistics: {path: ...}``) or dotted names."""
        if not isinstance(raw, dict):
            raise ValueError(f"{source}: expected a mapping of fields, got {type(raw).__name__}")
        values = _flatten(raw, source)
        version = values.pop("version", CONFIG_VERSION)
        if type(version) is not int or version != CONFIG_VERSION:  # true == 1.0 == 1 in Python
            raise ValueError(f"{source}: version: expected {CONFIG_VERSION}, got {version!r}")
        unknown = sorted(set(values) - set(BY_NAME))
        if unknown:
            raise ValueError(f"{source}: {unknown_message(unknown)}")
        missing = [s.name for s in SETTINGS if s.required and s.name not in values]
        if missing:
            raise ValueError(f"{source}: {missing[0]}: required field missing")
        try:
            return cls(**{BY_NAME[name].attr: value for name, value in values.items()})
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None

    def values(self) -> dict[str, object]:
        """Setting name -> value (the inverse of ``from_dict``)."""
        return {s.name: getattr(self, s.attr) for s in SETTINGS}

    def updated(self, values: dict[str, object], source: str = "override") -> RobotConfig:
        """A copy with some settings (by name, dotted or nested) replaced, validated again."""
        return RobotConfig.from_dict({**self.values(), **_flatten(values, source)}, source)

    @property
    def n_states(self) -> int:
        """States the model sees: the discretizer's, plus the terminal states if any."""
        return self.discretizer.n_states + len(terminal_kinds(self.terminal_state))

    def agent_settings(self) -> dict[str, object]:
        """The OnlineAgent keyword arguments of this configuration."""
        return {s.attr: getattr(self, s.attr) for s in SETTINGS if s.agent}

    def persistence(self) -> StatsPersistence | None:
        """Where the statistics live and when they are saved (None without ``statistics.path``);
        reads and writes nothing."""
        if self.stats_path is None:
            return None
        return StatsPersistence(self.stats_path, every_s=self.save_every_s,
                                every_steps=self.save_every_steps, log_folder=self.log_path)

    def make_agent(self, engine=None, stats=None):
        """The OnlineAgent this configuration describes, with its statistics and log
        (``OnlineAgent.from_config``: the engine, if not given, is made after the statistics
        load, so a start that fails writes nothing)."""
        from rlfm_edge.runtime.online_agent import OnlineAgent

        return OnlineAgent.from_config(self, engine, stats=stats)


SETTINGS: tuple[Setting, ...] = tuple(
    Setting(**{**f.metadata["setting"], "name": f.metadata["setting"]["name"] or f.name, "attr": f.name})
    for f in fields(RobotConfig))
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
AGENT_SETTINGS: dict[str, Setting] = {s.attr: s for s in SETTINGS if s.agent}


def unknown_message(names: list[str], expected=None) -> str:
    """"unknown field(s) [...]" with the renamed ones' new names, and the ``expected`` names
    (default: every setting)."""
    hints = "; ".join(f"{n} is now {RENAMED[n]}" for n in names if n in RENAMED)
    return (f"unknown field(s) {names}" + (f" ({hints})" if hints else "")
            + f"; expected some of {sorted(BY_NAME if expected is None else expected)}")


def _flatten(raw: dict, source: str) -> dict[str, object]:
    """``{"statistics": {"path": p}}`` -> ``{"statistics.path": p}``; ``statistics: null`` -> no
    statistics file. Keys that are not strings (YAML reads ``yes:`` as True) are unknown fields."""
    out: dict[str, object] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            raise ValueError(f"{source}: {unknown_message([str(key)])}")
        if key == "statistics" and value is None:
            out["statistics.path"] = None
        elif key == "statistics":
            if not isinstance(value, dict):
                raise ValueError(f"{source}: statistics: expected a mapping of "
                                 f"{sorted(n.split('.')[1] for n in BY_NAME if n.startswith('statistics.'))}"
                                 f" or null, got {value!r}")
            for sub, v in value.items():
                if f"statistics.{sub}" not in BY_NAME:
                    raise ValueError(f"{source}: statistics: unknown field(s) {[str(sub)]}")
                out[f"statistics.{sub}"] = v
        else:
            out[key] = value
    return out


def describe() -> str:
    """The settings as a markdown table (name, default, expected values, meaning)."""
    rows = ["| setting | default | values | meaning |", "|---|---|---|---|"]
    for s in SETTINGS:
        default = ("required" if s.required else "null" if s.default is None else
                   str(s.default).lower() if isinstance(s.default, bool) else f"`{s.default}`")
        rows.append(f"| `{s.name}` | {default} | {s.expected()} | {s.help} |")
    return "\n".join(rows)
