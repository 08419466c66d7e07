"""Online evaluation: an agent learns on a tabular MDP for K episodes; we record the returns."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from rlfm_edge.mdp import TabularMDP


class Agent(Protocol):
    def act(self, s: int, h: int) -> int: ...
    def observe(self, s: int, a: int, r: float, s_next: int) -> None: ...
    def end_episode(self) -> None: ...


def check_count(name: str, value, minimum: int = 1) -> int:
    """An integer option >= minimum, or a ValueError naming it."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


def derive_seeds(seed: int) -> tuple[np.random.Generator, int]:
    """The MDP's sampling RNG and the agent's seed, both derived from one run seed.

    Distinct run seeds give independent streams (np.random.SeedSequence.spawn); the same
    run seed gives every agent the same environment stream (common random numbers).
    """
    env_ss, agent_ss = np.random.SeedSequence(check_count("seed", seed, 0)).spawn(2)
    return np.random.default_rng(env_ss), int(agent_ss.generate_state(1)[0])


def run_episodes(
    mdp: TabularMDP, agent: Agent, episodes: int, rng: np.random.Generator
) -> np.ndarray:
    """Let ``agent`` act for ``episodes`` episodes of mdp.horizon steps; returns (episodes,)."""
    episodes = check_count("episodes", episodes)
    n_actions, horizon = mdp.n_actions, mdp.horizon
    returns = np.zeros(episodes)
    for k in range(episodes):
        s = mdp.reset(rng)
        total = 0.0
        for h in range(horizon):
            a = agent.act(s, h)
            if not 0 <= a < n_actions:
                raise RuntimeError(
                    f"{type(agent).__name__}.act returned action {a!r}, outside [0, {n_actions})"
                )
            r, s_next = mdp.step(s, int(a), rng)
            agent.observe(s, int(a), r, s_next)
            total += r
            s = s_next
        agent.end_episode()
        returns[k] = total
    return returns


def check_agent_name(agent_name: str) -> None:
    """ValueError unless ``agent_name`` is a known agent that can run here."""
    from rlfm_edge.agents import agent_names, unavailable_agents

    unavailable = unavailable_agents()
    if agent_name in unavailable:
        raise ValueError(f"agent: {agent_name!r} is unavailable here: {unavailable[agent_name]}")
    if agent_name not in agent_names():
        raise ValueError(f"agent: unknown agent {agent_name!r}; known: {', '.join(agent_names())}")


def run_online(
    mdp: TabularMDP, agent_name: str, episodes: int, seed: int = 0, **agent_kw
) -> np.ndarray:
    """Returns (episodes,) of agent ``agent_name`` learning from scratch on ``mdp``.

    A return is the sum of the sampled rewards of one episode. ``seed`` fixes both the
    MDP's sampling and the agent's own randomness (see :func:`derive_seeds`).
    """
    from rlfm_edge.agents import TAKES_EPISODE_COUNT, make_agent

    if not isinstance(mdp, TabularMDP):
        raise ValueError(f"mdp: expected a TabularMDP, got {type(mdp).__name__}")
    episodes = check_count("episodes", episodes)
    check_agent_name(agent_name)
    rng, agent_seed = derive_seeds(seed)
    if agent_name in TAKES_EPISODE_COUNT:
        agent_kw = {"n_episodes": episodes, **agent_kw}
    agent = make_agent(
        agent_name, mdp.n_states, mdp.n_actions, mdp.horizon, seed=agent_seed, **agent_kw
    )
    return run_episodes(mdp, agent, episodes, rng)
