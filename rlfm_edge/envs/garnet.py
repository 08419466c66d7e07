"""Random Garnet MDPs (Archibald, McKinnon & Thomas 1995, "On the generation of Markov
decision processes", JORS 46(3)), Garnet(S, A, b).

For every (s, a): ``branching`` b distinct successor states drawn uniformly without
replacement; their probabilities are the gaps between b - 1 sorted Uniform(0, 1) cuts
of [0, 1]. Sparse rewards (our choice, documented): ``max(1, round(reward_fraction * S))``
states, drawn uniformly, are rewarding; for them R(s, a) ~ Uniform(0, 1) independently
per action; every other mean reward is 0. Rewards are Bernoulli with these means.
Start in state 0. Defaults: S = 10, A = 3, b = 3, reward_fraction = 0.2, H = 20,
seed = 0; everything random comes from ``np.random.default_rng(seed)``.
"""

from __future__ import annotations

import numpy as np

from rlfm_edge.envs._validate import integer, probability, seed_int
from rlfm_edge.mdp import TabularMDP


def garnet(n_states: int = 10, n_actions: int = 3, branching: int = 3,
           reward_fraction: float = 0.2, horizon: int = 20, seed: int = 0) -> TabularMDP:
    """A Garnet(n_states, n_actions, branching) MDP drawn from ``seed``."""
    S = integer("n_states", n_states, 1)
    A = integer("n_actions", n_actions, 1)
    b = integer("branching", branching, 1)
    if b > S:
        raise ValueError(f"branching: expected at most n_states={S} successors, got {b}")
    frac = probability("reward_fraction", reward_fraction)
    H = integer("horizon", horizon, 1)
    rng = np.random.default_rng(seed_int("seed", seed))
    P = np.zeros((S, A, S))
    for s in range(S):
        for a in range(A):
            successors = rng.choice(S, size=b, replace=False)
            cuts = np.sort(rng.random(b - 1))
            P[s, a, successors] = np.diff(np.concatenate(([0.0], cuts, [1.0])))
    R = np.zeros((S, A))
    rewarding = rng.choice(S, size=max(1, round(frac * S)), replace=False)
    R[rewarding] = rng.random((len(rewarding), A))
    mu0 = np.eye(S)[0]
    return TabularMDP(P, R, mu0, H, name="garnet",
                      meta={"source": "Archibald et al. 1995", "seed": seed,
                            "branching": b, "rewarding_states": np.sort(rewarding)})
