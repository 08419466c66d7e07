"""robot.yaml: everything `rlfm-edge serve` needs to know about one robot, validated up front.

A bad field fails at load time with the file and field named, not minutes into a run.

```yaml
version: 1
discretizer: {dimensions: [{name: pole_angle, low: -0.21, high: 0.21, bins: 6}, ...]}
n_actions: 2
horizon: 40            # the horizon given to the model (trained on 5..60)
terminal_state: failure # absorbing end states: false, failure (or true), goal, or both
mode: sample           # or greedy
temperature: 0.3
anneal_visits: 30      # cool a state's temperature as it is visited; null keeps it fixed
refresh_every: 10
max_policy_lag: 10     # a step waits for a refresh requested this many transitions ago; null: never
refresh_niceness: 10   # the refresh thread's niceness above the control loop's (0..19)
control_period_s: 0.01 # the robot's tick: refreshes/steps slower than this are counted
safe_action: null      # action before the first policy; null = uniform random
seed: 0
statistics: {path: stats/robot.npz, save_every_s: 30, save_every_steps: null}  # or null
log: null              # folder of MCAP transition logs (one segment per start), or null
```

Relative paths are relative to the current directory, as on the command line.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from rlfm_edge.discretize import Discretizer, load_yaml
from rlfm_edge.inference.base import DEFAULT_ANNEAL_VISITS, DEFAULT_TEMPERATURE, PolicyEngine
from rlfm_edge.logs import TransitionLogger
from rlfm_edge.runtime.online_agent import OnlineAgent, terminal_kinds
from rlfm_edge.runtime.persistence import StatsPersistence
from rlfm_edge.stats import CountStats

CONFIG_VERSION = 1
HORIZON_RANGE = (1, 256)
_FIELDS = {"version", "discretizer", "n_actions", "horizon", "terminal_state", "mode",
           "temperature", "anneal_visits", "refresh_every", "max_policy_lag", "refresh_niceness",
           "control_period_s", "safe_action", "seed", "statistics", "log"}
_STATS_FIELDS = {"path", "save_every_s", "save_every_steps"}


@dataclass
class RobotConfig:
    discretizer: Discretizer
    n_actions: int
    horizon: int
    terminal_state: bool | str = False
    mode: str = "sample"
    temperature: float = DEFAULT_TEMPERATURE
    anneal_visits: float | None = DEFAULT_ANNEAL_VISITS
    refresh_every: int = 10
    max_policy_lag: int | None = 10
    refresh_niceness: int = 10
    control_period_s: float = 0.01
    safe_action: int | None = None
    seed: int = 0
    stats_path: Path | None = None
    save_every_s: float | None = 30.0
    save_every_steps: int | None = None
    log_path: Path | None = None

    @property
    def n_states(self) -> int:
        """States the model sees: the discretizer's, plus the terminal state if any."""
        return self.discretizer.n_states + len(terminal_kinds(self.terminal_state))

    @classmethod
    def load(cls, path: str | os.PathLike) -> RobotConfig:
        path = Path(path)
        return cls.from_dict(load_yaml(path, "robot config"), source=str(path))

    @classmethod
    def from_dict(cls, raw, source: str = "robot config") -> RobotConfig:
        if not isinstance(raw, dict):
            raise ValueError(f"{source}: expected a mapping of fields, got {type(raw).__name__}")
        unknown = set(raw) - _FIELDS
        if unknown:
            raise ValueError(f"{source}: unknown field(s) {sorted(map(str, unknown))}; expected some of "
                             f"{sorted(_FIELDS)}")
        version = raw.get("version", CONFIG_VERSION)
        if type(version) is not int or version != CONFIG_VERSION:  # true == 1.0 == 1 in Python
            raise ValueError(f"{source}: version: expected {CONFIG_VERSION}, got "
                             f"{raw.get('version')!r}")
        for key in ("discretizer", "n_actions", "horizon"):
            if key not in raw:
                raise ValueError(f"{source}: {key}: required field missing")
        disc = Discretizer.from_config(raw["discretizer"], source=f"{source}: discretizer")
        cfg = cls(
            discretizer=disc,
            n_actions=_int(source, raw, "n_actions", 1),
            horizon=_int(source, raw, "horizon", HORIZON_RANGE[0]),
            terminal_state=_terminal(source, raw),
            mode=raw.get("mode", "sample"),
            temperature=_float(source, raw, "temperature", 0.3),
            anneal_visits=_optional_float(source, raw, "anneal_visits", DEFAULT_ANNEAL_VISITS),
            refresh_every=_int(source, raw, "refresh_every", 1, default=10),
            max_policy_lag=(None if raw.get("max_policy_lag", 10) is None
                            else _int(source, raw, "max_policy_lag", 0, default=10)),
            refresh_niceness=_int(source, raw, "refresh_niceness", 0, default=10),
            control_period_s=_float(source, raw, "control_period_s", 0.01),
            seed=_int(source, raw, "seed", 0, default=0),
        )
        if cfg.horizon > HORIZON_RANGE[1]:
            raise ValueError(f"{source}: horizon: expected at most {HORIZON_RANGE[1]}, got "
                             f"{cfg.horizon}")
        if cfg.refresh_niceness > 19:
            raise ValueError(f"{source}: refresh_niceness: expected an integer in [0, 19], got "
                             f"{cfg.refresh_niceness}")
        if cfg.mode not in ("sample", "greedy"):
            raise ValueError(f"{source}: mode: expected 'sample' or 'greedy', got {cfg.mode!r}")
        safe = raw.get("safe_action")
        if safe is not None:
            if isinstance(safe, bool) or not isinstance(safe, int) or not 0 <= safe < cfg.n_actions:
                raise ValueError(f"{source}: safe_action: expected null or an integer in "
                                 f"[0, {cfg.n_actions}), got {safe!r}")
            cfg.safe_action = safe
        stats = raw.get("statistics")
        if stats is not None:
            where = f"{source}: statistics"
            if not isinstance(stats, dict) or "path" not in stats:
                raise ValueError(f"{where}: expected a mapping with 'path' (or null)")
            unknown = set(stats) - _STATS_FIELDS
            if unknown:
                raise ValueError(f"{where}: unknown field(s) {sorted(map(str, unknown))}")
            cfg.stats_path = _path(where, stats, "path")
            cfg.save_every_s = _optional_float(where, stats, "save_every_s", 30.0)
            every = stats.get("save_every_steps")
            cfg.save_every_steps = None if every is None else _int(where, stats,
                                                                   "save_every_steps", 1)
        if raw.get("log") is not None:
            cfg.log_path = _path(source, raw, "log")
        return cfg

    def persistence(self) -> StatsPersistence | None:
        """Where the statistics live (None without a statistics path); reads nothing."""
        if self.stats_path is None:
            return None
        return StatsPersistence(self.stats_path, every_s=self.save_every_s,
                                every_steps=self.save_every_steps, log_folder=self.log_path)

    def make_agent(self, engine: PolicyEngine, stats: CountStats | None = None,
                   persistence: StatsPersistence | None = None) -> OnlineAgent:
        """The OnlineAgent this config describes, with its persistence and log.

        ``stats`` and ``persistence``: statistics already loaded through ``persistence()``
        (a start loads them before building the engine, so a bad file stops it first).
        The log segment is created by the agent's first step, never before.
        """
        self.discretizer.check_fits(engine.max_states - len(terminal_kinds(self.terminal_state)))
        if persistence is None:
            persistence = self.persistence()
        logger = (TransitionLogger.new_segment(
            self.log_path, self.n_states, self.n_actions, self.horizon,
            yaml.safe_dump(self.discretizer.to_config(), sort_keys=False))
            if self.log_path is not None else None)
        return OnlineAgent(self.discretizer, engine, self.horizon, self.n_actions,
                           mode=self.mode, temperature=self.temperature,
                           anneal_visits=self.anneal_visits,
                           refresh_every=self.refresh_every,
                           max_policy_lag=self.max_policy_lag,
                           refresh_niceness=self.refresh_niceness,
                           deadline_s=self.control_period_s, safe_action=self.safe_action,
                           terminal_state=self.terminal_state, seed=self.seed, stats=stats,
                           persistence=persistence, transition_log=logger)


def _int(source: str, raw: dict, key: str, minimum: int, default: int | None = None) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{source}: {key}: expected an integer >= {minimum}, got {value!r}")
    return value


def _float(source: str, raw: dict, key: str, default: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"{source}: {key}: expected a number > 0 (finite), got {value!r}")
    return float(value)


def _optional_float(source: str, raw: dict, key: str, default: float | None) -> float | None:
    if raw.get(key, default) is None:
        return None
    return _float(source, raw, key, default)


def _terminal(source: str, raw: dict) -> bool | str:
    value = raw.get("terminal_state", False)
    try:
        terminal_kinds(value if isinstance(value, (bool, str)) else object())
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None
    return value


def _path(source: str, raw: dict, key: str) -> Path:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{source}: {key}: expected a file path, got {value!r}")
    return Path(value)
