"""RiverSwim, in the version of Osband, Russo & Van Roy (2013, "(More) efficient
reinforcement learning via posterior sampling", arXiv 1306.0940).

A chain of ``n_states`` states (default 6), start in state 0, horizon H = 20.
Actions: 0 = left (swim with the current), 1 = right (against it).

- left is deterministic: s -> max(s - 1, 0).
- right in state 0: stay 0.4, forward 0.6.
- right in an interior state: back 0.05, stay 0.6, forward 0.35.
- right in the last state: back 0.4, stay 0.6.
- mean rewards: R(0, left) = 0.005, R(last, right) = 1, all others 0.

Rewards are Bernoulli with these means (the paper's rewards are already in [0, 1], no
rescaling). The Strehl & Littman (2008) original differs (rewards 5 and 10000, right
in the interior 0.3 forward / 0.6 stay / 0.1 back, start in state 1 or 2).
"""

from __future__ import annotations

import numpy as np

from rlfm_edge.envs._validate import integer
from rlfm_edge.mdp import TabularMDP

LEFT, RIGHT = 0, 1
R_LEFT_END = 0.005
R_RIGHT_END = 1.0


def riverswim(n_states: int = 6, horizon: int = 20) -> TabularMDP:
    """RiverSwim with ``n_states`` >= 2 states and horizon ``horizon``."""
    S = integer("n_states", n_states, 2)
    H = integer("horizon", horizon, 1)
    P = np.zeros((S, 2, S))
    for s in range(S):
        P[s, LEFT, max(s - 1, 0)] = 1.0
    P[0, RIGHT, 0], P[0, RIGHT, 1] = 0.4, 0.6
    for s in range(1, S - 1):
        P[s, RIGHT, s - 1], P[s, RIGHT, s], P[s, RIGHT, s + 1] = 0.05, 0.6, 0.35
    P[S - 1, RIGHT, S - 2] += 0.4
    P[S - 1, RIGHT, S - 1] += 0.6
    R = np.zeros((S, 2))
    R[0, LEFT] = R_LEFT_END
    R[S - 1, RIGHT] = R_RIGHT_END
    mu0 = np.eye(S)[0]
    return TabularMDP(P, R, mu0, H, name="riverswim",
                      meta={"source": "Osband, Russo & Van Roy 2013"})
