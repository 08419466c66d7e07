"""Online agents by name: the classical baselines here, the GAT ("rlfm") loaded lazily.

``make_agent(name, n_states, n_actions, horizon, seed=0, **kw)`` builds one;
``agent_names()`` lists every name; ``unavailable_agents()`` says which cannot run here
and why. "rlfm" lives in ``rlfm_edge.agents.rlfm`` (it needs torch and the model
weights), which must define ``RLFMAgent`` with the same constructor signature; it is
imported only when asked for, so the baselines work without torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import partial

from rlfm_edge.agents.base import Agent
from rlfm_edge.agents.psrl import PSRLAgent
from rlfm_edge.agents.qlearning import EpsGreedyQLearningAgent, UCBQLearningAgent
from rlfm_edge.agents.qlearning_disc import DiscountedUCBQLearningAgent
from rlfm_edge.agents.random_agent import RandomAgent
from rlfm_edge.agents.receding import RecedingPSRLAgent, RecedingUCBVIAgent
from rlfm_edge.agents.ucbvi import UCBVIAgent

__all__ = ["Agent", "make_agent", "agent_names", "unavailable_agents"]

# Agents whose algorithm uses the total number of episodes K (the papers' T = K H): the
# bench gives them its episode count as ``n_episodes`` unless told otherwise.
TAKES_EPISODE_COUNT = frozenset({"ucbvi_paper", "qlearning_paper"})

_BUILTIN: dict[str, Callable[..., Agent]] = {
    "ucbvi": UCBVIAgent,
    "ucbvi_bernstein": partial(UCBVIAgent, bonus="bernstein"),
    "ucbvi_paper": partial(UCBVIAgent, paper=True),
    "qlearning": UCBQLearningAgent,
    "qlearning_paper": partial(UCBQLearningAgent, paper=True),
    "qlearning_eps": EpsGreedyQLearningAgent,
    "psrl": PSRLAgent,
    # receding-horizon and discounted forms, for robots' long or open-ended episodes
    "psrl_rh": RecedingPSRLAgent,
    "ucbvi_rh": RecedingUCBVIAgent,
    "qlearning_disc": DiscountedUCBQLearningAgent,
    "random": RandomAgent,
}
# name -> (module, attribute): agents whose import may fail on a machine without their deps.
_LAZY: dict[str, tuple[str, str]] = {"rlfm": ("rlfm_edge.agents.rlfm", "RLFMAgent")}


def agent_names() -> list[str]:
    """Every agent name, available here or not (see unavailable_agents)."""
    return [*_BUILTIN, *_LAZY]


def _load_lazy(name: str) -> Callable[..., Agent]:
    module_name, attr = _LAZY[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise RuntimeError(f"agent {name!r} is unavailable: {module_name} is not "
                               f"installed in this build") from exc
        raise RuntimeError(f"agent {name!r} is unavailable: it needs the module "
                           f"{exc.name!r} ({exc}); install rlfm_edge[train]") from exc
    except Exception as exc:  # any import failure (bad weights, bad build) makes it unavailable
        raise RuntimeError(f"agent {name!r} is unavailable: importing {module_name} failed "
                           f"({type(exc).__name__}: {exc})") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise RuntimeError(f"agent {name!r} is unavailable: {module_name} defines no "
                           f"{attr}") from None


def unavailable_agents() -> dict[str, str]:
    """Agents that cannot be built here, each with the reason."""
    out = {}
    for name in _LAZY:
        try:
            _load_lazy(name)
        except RuntimeError as exc:
            out[name] = str(exc)
    return out


def make_agent(name: str, n_states: int, n_actions: int, horizon: int, seed: int = 0,
               **kw) -> Agent:
    """Build the agent called ``name``; keyword arguments go to its constructor."""
    if name in _BUILTIN:
        factory = _BUILTIN[name]
    elif name in _LAZY:
        factory = _load_lazy(name)
    else:
        raise ValueError(f"agent: unknown name {name!r}; expected one of {agent_names()}")
    try:
        return factory(n_states, n_actions, horizon, seed=seed, **kw)
    except TypeError as exc:
        raise ValueError(f"agent {name!r}: bad arguments {sorted(kw)} ({exc})") from None
