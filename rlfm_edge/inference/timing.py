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
    return time_interleaved_ms({"fn": fn}, repeats, warmup)["fn"]


def time_interleaved_ms(fns: dict[str, Callable[[], object]], repeats: int,
                        warmup: int) -> dict[str, np.ndarray]:
    """Like time_calls_ms for several functions, called in turn within each repeat: on a
    shared machine, timing them one after the other would let a slow spell land on one."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    out = {name: np.empty(repeats) for name in fns}
    for i in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            out[name][i] = time.perf_counter() - start
    return {name: t * 1e3 for name, t in out.items()}
