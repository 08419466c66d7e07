"""A ``TabularMDP`` as a ``gymnasium.Env``, so the benchmarks work with familiar tools.

Observations and actions are ``Discrete``; an episode is truncated (never terminated)
after the MDP's horizon, since terminal states are already absorbing in the MDP.
Importing this module registers every benchmark as ``rlfm_edge/<name>-v0``, e.g.
``gymnasium.make("rlfm_edge/riverswim-v0")``; ``gymnasium.make(
"rlfm_edge.gym_env:rlfm_edge/riverswim-v0")`` imports it on the fly. Keyword arguments
of ``make`` go to the env builder (``horizon``, ``seed``, ...).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from rlfm_edge import envs
from rlfm_edge.mdp import TabularMDP


class TabularEnv(gym.Env):
    """Gymnasium view of a TabularMDP: obs = state index, reward drawn by ``mdp.step``."""

    metadata = {"render_modes": []}

    def __init__(self, mdp: TabularMDP, render_mode: str | None = None) -> None:
        if not isinstance(mdp, TabularMDP):
            raise TypeError(f"mdp: expected a TabularMDP, got {type(mdp).__name__}")
        if render_mode is not None:
            raise ValueError(f"render_mode: TabularEnv does not render, got {render_mode!r}")
        self.mdp = mdp
        self.render_mode = None
        self.observation_space = gym.spaces.Discrete(mdp.n_states)
        self.action_space = gym.spaces.Discrete(mdp.n_actions)
        self._state: int | None = None
        self._step = 0

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[int, dict]:
        super().reset(seed=seed)
        self._state = self.mdp.reset(self.np_random)
        self._step = 0
        return self._state, {"step": 0}

    def step(self, action) -> tuple[int, float, bool, bool, dict]:
        if self._state is None or self._step >= self.mdp.horizon:
            raise RuntimeError("step: the episode is over or was never started; call reset()")
        if not self.action_space.contains(action):
            raise ValueError(f"action: expected an integer in [0, {self.mdp.n_actions}), "
                             f"got {action!r}")
        reward, self._state = self.mdp.step(self._state, int(action), self.np_random)
        self._step += 1
        truncated = self._step >= self.mdp.horizon
        return self._state, float(reward), False, truncated, {"step": self._step}


def make_env(name: str, render_mode: str | None = None, **kw) -> TabularEnv:
    """Entry point used by the gymnasium registry: ``envs.make(name, **kw)`` wrapped."""
    return TabularEnv(envs.make(name, **kw), render_mode=render_mode)


def gym_id(name: str) -> str:
    """The gymnasium id registered for benchmark ``name``."""
    return f"rlfm_edge/{name}-v0"


for _name in envs.names():
    if gym_id(_name) not in gym.registry:
        gym.register(id=gym_id(_name), entry_point="rlfm_edge.gym_env:make_env",
                     kwargs={"name": _name}, disable_env_checker=False)

__all__ = ["TabularEnv", "gym_id", "make_env"]
