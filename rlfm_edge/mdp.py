"""Finite-horizon tabular MDPs: the common currency of benchmarks, prior and agents."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

REWARD_DISTRIBUTIONS = ("bernoulli", "deterministic")
_ROW_TOL = 1e-6


def _as_float_array(name: str, value, ndim: int) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected a numeric array, got {type(value).__name__}") from exc
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or inf")
    return arr


@dataclass(eq=False)
class TabularMDP:
    """An episodic MDP with stationary transitions P (S, A, S) and mean rewards R (S, A).

    Rewards are drawn by :meth:`step` as Bernoulli(R[s, a]) (the default) or returned
    exactly (``reward_dist="deterministic"``). Episodes last ``horizon`` steps; terminal
    states are modelled as absorbing states with zero reward.
    """

    P: np.ndarray
    R: np.ndarray
    mu0: np.ndarray
    horizon: int
    name: str = ""
    reward_dist: str = "bernoulli"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.P = _as_float_array("P", self.P, 3)
        self.R = _as_float_array("R", self.R, 2)
        self.mu0 = _as_float_array("mu0", self.mu0, 1)
        S, A, S2 = self.P.shape
        if S == 0 or A == 0:
            raise ValueError(f"P: needs at least one state and one action, got shape {self.P.shape}")
        if S2 != S:
            raise ValueError(f"P: expected shape (S, A, S), got {self.P.shape}")
        if self.R.shape != (S, A):
            raise ValueError(f"R: expected shape {(S, A)} to match P, got {self.R.shape}")
        if self.mu0.shape != (S,):
            raise ValueError(f"mu0: expected shape {(S,)} to match P, got {self.mu0.shape}")
        if np.any(self.P < 0):
            raise ValueError("P: has negative probabilities")
        bad = np.abs(self.P.sum(axis=2) - 1.0) > _ROW_TOL
        if np.any(bad):
            s, a = np.argwhere(bad)[0]
            raise ValueError(f"P: row P[{s}, {a}, :] sums to {self.P[s, a].sum():.6g}, not 1")
        if np.any(self.R < 0) or np.any(self.R > 1):
            raise ValueError(
                f"R: mean rewards must lie in [0, 1], got range [{self.R.min():.4g}, {self.R.max():.4g}]"
            )
        if np.any(self.mu0 < 0) or abs(self.mu0.sum() - 1.0) > _ROW_TOL:
            raise ValueError(f"mu0: must be a probability vector, sums to {self.mu0.sum():.6g}")
        if isinstance(self.horizon, bool) or int(self.horizon) != self.horizon or self.horizon < 1:
            raise ValueError(f"horizon: must be a positive integer, got {self.horizon!r}")
        self.horizon = int(self.horizon)
        if self.reward_dist not in REWARD_DISTRIBUTIONS:
            raise ValueError(
                f"reward_dist: expected one of {REWARD_DISTRIBUTIONS}, got {self.reward_dist!r}"
            )
        # Renormalise away float round-off so samplers never see rows summing to 1 - 1e-12.
        self.P = self.P / self.P.sum(axis=2, keepdims=True)
        self.mu0 = self.mu0 / self.mu0.sum()
        self._cdf = np.cumsum(self.P, axis=2)
        self._cdf[..., -1] = 1.0
        self._mu0_cdf = np.cumsum(self.mu0)
        self._mu0_cdf[-1] = 1.0

    @property
    def n_states(self) -> int:
        return self.P.shape[0]

    @property
    def n_actions(self) -> int:
        return self.P.shape[1]

    def reset(self, rng: np.random.Generator) -> int:
        """Draw an initial state from mu0."""
        return int(np.searchsorted(self._mu0_cdf, rng.random(), side="right"))

    def step(self, s: int, a: int, rng: np.random.Generator) -> tuple[float, int]:
        """Sample (reward, next state) for taking action a in state s."""
        mean = self.R[s, a]
        if self.reward_dist == "bernoulli":
            r = 1.0 if rng.random() < mean else 0.0
        else:
            r = float(mean)
        s_next = int(np.searchsorted(self._cdf[s, a], rng.random(), side="right"))
        return r, s_next

    def __repr__(self) -> str:
        return (
            f"TabularMDP(name={self.name!r}, S={self.n_states}, A={self.n_actions}, "
            f"H={self.horizon}, reward_dist={self.reward_dist!r})"
        )
