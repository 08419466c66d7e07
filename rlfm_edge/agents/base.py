"""The one interface every online agent implements, and the argument checks they share.

An episode is driven from outside: ``act(s, h)`` for h = 0 .. H-1, each followed by
``observe(s, a, r, s_next)``, then ``end_episode()``. The base class keeps the
experience in a :class:`~rlfm_edge.stats.CountStats` (``self.stats``) and remembers the
step of the last ``act`` so that step-indexed learners (Q-learning) know h in ``observe``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from rlfm_edge.stats import CountStats


def check_positive_int(name: str, value) -> int:
    """A positive integer argument, or ValueError naming it."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def check_positive_float(name: str, value, allow_zero: bool = False) -> float:
    """A finite positive (or non-negative) number, or ValueError naming it."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number, got {value!r}") from None
    if isinstance(value, bool) or not np.isfinite(x) or x < 0 or (x == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: expected a finite number {bound}, got {value!r}")
    return x


def check_probability(name: str, value) -> float:
    """A number strictly inside (0, 1), e.g. a confidence level delta."""
    x = check_positive_float(name, value)
    if x >= 1:
        raise ValueError(f"{name}: expected a number in (0, 1), got {value!r}")
    return x


def check_choice(name: str, value, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {choices}, got {value!r}")
    return value


def argmax_random_tie(q: np.ndarray, rng: np.random.Generator) -> int:
    """Index of the largest entry, ties broken uniformly: optimistic agents tie a lot early."""
    best = np.flatnonzero(q == q.max())
    return int(best[0] if best.size == 1 else rng.choice(best))


class Agent(ABC):
    """An episodic tabular agent. Rewards must lie in [0, 1], so values lie in [0, H - h]."""

    name: str = ""

    def __init__(self, n_states: int, n_actions: int, horizon: int, seed: int = 0) -> None:
        self.n_states = check_positive_int("n_states", n_states)
        self.n_actions = check_positive_int("n_actions", n_actions)
        self.horizon = check_positive_int("horizon", horizon)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.stats = CountStats(self.n_states, self.n_actions)
        self.episode = 0  # episodes finished
        self._h = 0  # step of the last act()

    def act(self, s: int, h: int) -> int:
        """The action to take in state s at step h (0-based, h < horizon)."""
        if not 0 <= s < self.n_states:
            raise ValueError(f"s: state {s} outside [0, {self.n_states})")
        if not 0 <= h < self.horizon:
            raise ValueError(f"h: step {h} outside [0, {self.horizon})")
        self._h = int(h)
        return int(self._act(int(s), self._h))

    def observe(self, s: int, a: int, r: float, s_next: int) -> None:
        """Record the transition that followed the last act()."""
        if not 0.0 <= r <= 1.0:
            raise ValueError(f"r: rewards must lie in [0, 1], got {r!r}")
        self.stats.update(int(s), int(a), float(r), int(s_next))
        self._observe(int(s), int(a), float(r), int(s_next), self._h)

    def end_episode(self) -> None:
        """Close the episode; model-based agents re-plan here, once per episode."""
        self.episode += 1
        self._end_episode()

    @abstractmethod
    def _act(self, s: int, h: int) -> int: ...

    def _observe(self, s: int, a: int, r: float, s_next: int, h: int) -> None:
        """Learner-specific update; the counts in self.stats are already updated."""
        return None

    def _end_episode(self) -> None:
        """Learner-specific end of episode."""
        return None

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(S={self.n_states}, A={self.n_actions}, "
                f"H={self.horizon}, seed={self.seed})")
