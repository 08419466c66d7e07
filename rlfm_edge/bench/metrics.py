"""Learning metrics computed from per-episode returns, and their spread over seeds.

Definitions (K episodes, returns G_1..G_K, V* = V*(mu0) of the MDP):

- Cumulative regret after k episodes: ``sum_{j<=k} (V* - G_j)``. This is the empirical
  regret. The ideal quantity, ``sum_j (V* - V^{pi_j}(mu0))``, needs the policy an agent
  followed in each episode, which the Agent protocol does not expose; both have the same
  expectation, and the empirical one adds the variance of the sampled rewards and
  transitions (it can even decrease from one episode to the next).
- Episodes to 90% of V*: the smallest k >= w such that the mean of G_{k-w+1}..G_k (a
  moving average over the last ``w`` episodes, w = 10 by default, w = K if K < w) is at
  least 0.9 V*; ``None`` if that never happens within K episodes.
- Final return: the mean of the last 10% of the episodes (at least one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

THRESHOLD_FRACTION = 0.9
THRESHOLD_WINDOW = 10
FINAL_FRACTION = 0.1


def _as_returns(returns) -> np.ndarray:
    arr = np.asarray(returns, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"returns: expected a non-empty 1-D array, got shape {arr.shape}")
    return arr


def cumulative_regret(returns, v_star: float) -> np.ndarray:
    """Empirical cumulative regret (K,): entry k-1 is sum_{j<=k} (V* - G_j)."""
    return np.cumsum(v_star - _as_returns(returns))


def moving_average(returns, window: int = THRESHOLD_WINDOW) -> np.ndarray:
    """Mean of the last ``min(window, k)`` returns at every episode k (same length as input)."""
    arr = _as_returns(returns)
    if window < 1:
        raise ValueError(f"window: expected a positive integer, got {window}")
    csum = np.concatenate(([0.0], np.cumsum(arr)))
    k = np.arange(1, arr.size + 1)
    start = np.maximum(k - window, 0)
    return (csum[k] - csum[start]) / (k - start)


def episodes_to_threshold(
    returns,
    v_star: float,
    fraction: float = THRESHOLD_FRACTION,
    window: int = THRESHOLD_WINDOW,
) -> int | None:
    """First episode count k >= w at which the w-episode moving average reaches fraction * V*."""
    arr = _as_returns(returns)
    w = min(window, arr.size)
    reached = np.nonzero(moving_average(arr, w)[w - 1 :] >= fraction * v_star - 1e-12)[0]
    return int(reached[0]) + w if reached.size else None


def final_return(returns, fraction: float = FINAL_FRACTION) -> float:
    """Mean return over the last ``fraction`` of the episodes (at least one episode)."""
    arr = _as_returns(returns)
    n = max(1, int(round(arr.size * fraction)))
    return float(arr[-n:].mean())


def mean_se(values) -> tuple[float, float, int]:
    """(mean, standard error, n); SE is NaN for one value, both NaN for none."""
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0:
        return math.nan, math.nan, 0
    se = float(arr.std(ddof=1) / math.sqrt(arr.size)) if arr.size > 1 else math.nan
    return float(arr.mean()), se, int(arr.size)


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its Student-t confidence interval (NaN with one value)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return math.nan, math.nan
    mean = float(arr.mean())
    if arr.size < 2:
        return mean, math.nan
    sem = float(arr.std(ddof=1)) / math.sqrt(arr.size)
    return mean, float(sps.t.ppf(0.5 + confidence / 2, arr.size - 1)) * sem


def band(curves: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and CI half-width of (seeds, episodes) curves (half-width 0 for 1 seed)."""
    curves = np.asarray(curves, dtype=np.float64)
    mean = curves.mean(axis=0)
    n = curves.shape[0]
    if n < 2:
        return mean, np.zeros_like(mean)
    sem = curves.std(axis=0, ddof=1) / math.sqrt(n)
    return mean, float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * sem
