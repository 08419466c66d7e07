"""Refresh timing shared by ``make_engine("auto")``'s probe and `rlfm-edge bench latency`,
so that the backend `auto` keeps is the one the benchmark would rank first."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from rlfm_edge.stats import CountStats


def refresh_stats(rng: np.random.Generator, n_states: int, n_actions: int) -> CountStats:
    """Statistics after 20 visits per (s, a) on average, successors near s (chain-like, many > K)."""
    n = 20 * n_states * n_actions
    s, a = rng.integers(0, n_states, n), rng.integers(0, n_actions, n)
    s_next = np.clip(s + rng.integers(-6, 7, n), 0, n_states - 1)
    stats = CountStats(n_states, n_actions)
    stats.update_batch(s, a, rng.random(n), s_next)
    return stats


def time_calls_ms(fn: Callable[[], object], repeats: int, warmup: int) -> np.ndarray:
    """Wall time of ``repeats`` calls of ``fn`` in ms, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    out = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - start
    return out * 1e3
