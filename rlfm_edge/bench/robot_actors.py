"""The robot benchmark's discrete-state agents, all behind OnlineAgent's robot interface.

Every agent here sees the same stream: observation -> the robot config's Discretizer -> state
index, reward in [0, 1], and a termination as an absorbing state of the config's kind
(``absorbing_transitions``, the runtime's own rule). ``rlfm`` and ``planning`` are the
OnlineAgent that `serve` runs, built from the robot config, with the shipped model or the
model-free PlanningEngine; the tabular baselines are wrapped by ``TabularActor`` so that they
are driven by exactly the calls the OnlineAgent gets: ``step(observation, reward)``,
``terminate(reward, observation, kind)``, ``end_episode()``.

Simulated time: the OnlineAgent is run with ``max_policy_lag=0`` (every step waits for the
refresh it asked for, so a refresh takes no simulated time and a run is deterministic), no
statistics file, no log, and a control period long enough that no wait ever times out.
"""

from __future__ import annotations

import dataclasses

from rlfm_edge.agents import make_agent
from rlfm_edge.agents.base import Agent
from rlfm_edge.discretize import Discretizer
from rlfm_edge.runtime.online_agent import (
    TERMINAL_KINDS,
    InvalidObservation,
    absorbing_transitions,
    terminal_kinds,
)
from rlfm_edge.runtime.robot_config import RobotConfig

ONLINE_AGENTS = ("rlfm", "planning")
# the benchmark's name -> the registered receding-horizon / discounted agent (rlfm_edge.agents)
TABULAR_AGENTS = {"psrl": "psrl_rh", "ucbvi": "ucbvi_rh", "qlearning": "qlearning_disc",
                  "random": "random"}
SIMULATED_CONTROL_PERIOD_S = 3600.0  # a policy wait times out after 100 periods: never, here


class TabularActor:
    """A tabular ``Agent`` driven like an OnlineAgent (step / terminate / end_episode).

    ``step`` closes the previous transition with its reward and asks the agent for the next
    action at h = steps since the episode began, modulo the agent's horizon (the receding
    agents' planning window). A termination enters the absorbing state of its kind, which
    follow the discretizer's states in ``terminal_kinds`` order, as in OnlineAgent.
    """

    def __init__(self, discretizer: Discretizer, agent: Agent, terminal_state: bool | str) -> None:
        kinds = terminal_kinds(terminal_state)
        if agent.n_states != discretizer.n_states + len(kinds):
            raise ValueError(f"agent: {agent.n_states} states, expected the discretizer's "
                             f"{discretizer.n_states} + {len(kinds)} terminal")
        self.discretizer = discretizer
        self.agent = agent
        self.terminal_indices = {k: discretizer.n_states + i for i, k in enumerate(kinds)}
        self._prev: tuple[int, int] | None = None
        self._t = 0

    def step(self, observation, reward: float | None) -> int:
        try:
            s = self.discretizer.state(observation)
        except ValueError as exc:
            raise InvalidObservation(str(exc)) from None
        if self._prev is not None:
            self.agent.observe(*self._prev, float(reward), s)
        a = self.agent.act(s, self._t % self.agent.horizon)
        self._prev = (s, a)
        self._t += 1
        return a

    def terminate(self, reward: float, observation=None, kind: str | None = None) -> None:
        if not self.terminal_indices:
            raise ValueError("terminate: this agent has no terminal state")
        kind = kind or next(iter(self.terminal_indices))
        if kind not in self.terminal_indices:
            raise ValueError(f"terminate: kind {kind!r} is not one of {tuple(self.terminal_indices)}")
        if self._prev is not None:
            for transition in absorbing_transitions(*self._prev, float(reward),
                                                    self.terminal_indices[kind],
                                                    TERMINAL_KINDS[kind], self.agent.n_actions):
                self.agent.observe(*transition)
        self.end_episode()

    def end_episode(self) -> None:
        self._prev = None
        self._t = 0
        self.agent.end_episode()

    def close(self) -> None:
        return None


def simulated_time(config: RobotConfig, seed: int) -> RobotConfig:
    """The config as the benchmark runs it: synchronous refreshes, no files, this run's seed."""
    return dataclasses.replace(config, max_policy_lag=0, stats_path=None, log_path=None,
                               refresh_niceness=0, control_period_s=SIMULATED_CONTROL_PERIOD_S,
                               seed=seed)


def make_engine_for(agent: str, backend: str = "torch", model: str | None = None):
    """The PolicyEngine of an online agent: the model on one CPU thread, or PlanningEngine."""
    from rlfm_edge.inference import make_engine

    if agent == "planning":
        return make_engine("planning")
    if backend == "auto":
        raise ValueError("--backend: 'auto' times the backends at start-up and may pick a different "
                         "one from run to run; name one (torch, onnxruntime)")
    kw = {"threads": 1} if backend in ("torch", "onnxruntime") else {}
    return make_engine(backend, model=model, **kw)


def make_actor(agent: str, config: RobotConfig, seed: int, backend: str = "torch",
               model: str | None = None):
    """The actor called ``agent`` for one run, built from the robot config."""
    if agent in ONLINE_AGENTS:
        return simulated_time(config, seed).make_agent(make_engine_for(agent, backend, model))
    if agent not in TABULAR_AGENTS:
        raise ValueError(f"agents: {agent!r} is not a discrete-state agent; expected one of "
                         f"{[*ONLINE_AGENTS, *TABULAR_AGENTS]}")
    kinds = terminal_kinds(config.terminal_state)
    n_states = config.discretizer.n_states + len(kinds)
    kw = {}
    if agent == "qlearning":  # its absorbing states are valued exactly (qlearning_disc.py)
        kw["absorbing"] = {config.discretizer.n_states + i: TERMINAL_KINDS[k]
                           for i, k in enumerate(kinds)}
    tabular = make_agent(TABULAR_AGENTS[agent], n_states, config.n_actions, config.horizon,
                         seed=seed, **kw)
    return TabularActor(config.discretizer, tabular, config.terminal_state)
