"""Vectorised episode rollouts: many episodes of a fixed policy at once, into CountStats."""

from __future__ import annotations

import numpy as np

from rlfm_edge.mdp import TabularMDP
from rlfm_edge.stats import CountStats


def rollout(mdp: TabularMDP, policy: np.ndarray, episodes: int, rng: np.random.Generator,
            stats: CountStats | None = None) -> CountStats:
    """Run ``episodes`` independent episodes of ``policy`` (H, S, A) action probabilities; in
    the MDP's own system when it has one (``meta["binned_system"]``, the robot family)."""
    stats = stats if stats is not None else CountStats(mdp.n_states, mdp.n_actions)
    if episodes <= 0:
        return stats
    if "binned_system" in mdp.meta:
        mdp.meta["binned_system"].rollout(policy, episodes, rng, stats)
        return stats
    S, A, H = mdp.n_states, mdp.n_actions, mdp.horizon
    cdf_p = np.cumsum(mdp.P, axis=2)
    cdf_pi = np.cumsum(policy, axis=2)
    s = np.searchsorted(np.cumsum(mdp.mu0), rng.random(episodes), side="right").clip(0, S - 1)
    for h in range(H):
        a = (cdf_pi[h, s] < rng.random((episodes, 1))).sum(axis=1).clip(0, A - 1)
        mean = mdp.R[s, a]
        r = (rng.random(episodes) < mean).astype(float) if mdp.reward_dist == "bernoulli" else mean
        s_next = (cdf_p[s, a] < rng.random((episodes, 1))).sum(axis=1).clip(0, S - 1)
        stats.update_batch(s, a, r, s_next)
        s = s_next
    return stats
