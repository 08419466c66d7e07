"""DeepSea (Osband et al. 2019, "Behaviour Suite for Reinforcement Learning", bsuite's
``deep_sea.py``; deterministic version).

An N x N grid (``size`` N, default 10), start in the top-left cell (row 0, column 0).
Every step moves one row down and one column left or right (clipped to the grid); the
episode lasts H = N steps. Which action (0 or 1) means "right" is drawn per cell as
``np.random.RandomState(seed).binomial(1, 0.5, (N, N))`` exactly as bsuite draws it
from ``mapping_seed`` (default ``seed=0``), so the same seed gives bsuite's mapping.

Raw rewards (bsuite): -0.01 / N for every right move, plus +1 for a right move in the
last column (reachable only on the last step, at the bottom right). Optimal raw return
0.99, "always left" 0.

Rescaling to [0, 1]: r' = r + 0.01 / N, i.e. (r - r_min) / (r_max - r_min) with
r_min = -0.01 / N and r_max = 1 - 0.01 / N (so r_max - r_min = 1). It is applied to
every step, including the absorbing state: a left move earns 0.01 / N, a right move
0, the treasure 1. Every episode has exactly H steps, so all returns shift by the same
H * 0.01 / N and optimal policies are unchanged. Optimal rescaled return: 1 (when
H = N); always left: 0.01.

States: s = row * N + column for the N * N cells (cells with column > row are
unreachable but kept so the index matches bsuite's grid), plus an absorbing state
N * N entered after the last row, so horizons longer than N stay well defined.
Rewards are deterministic (``reward_dist="deterministic"``), as in bsuite.
"""

from __future__ import annotations

import numpy as np

from rlfm_edge.envs._validate import integer, seed_int
from rlfm_edge.mdp import TabularMDP

MOVE_COST = 0.01  # bsuite's unscaled_move_cost, divided by N per right move
TREASURE = 1.0


def deepsea(size: int = 10, seed: int = 0, horizon: int | None = None) -> TabularMDP:
    """DeepSea of size ``size`` >= 2; ``seed`` draws the action mapping; H defaults to N."""
    N = integer("size", size, 2)
    mapping_seed = seed_int("seed", seed)
    H = N if horizon is None else integer("horizon", horizon, 1)
    right_action = np.random.RandomState(mapping_seed).binomial(1, 0.5, (N, N))
    cost = MOVE_COST / N
    terminal = N * N
    S = N * N + 1
    P = np.zeros((S, 2, S))
    R_raw = np.zeros((S, 2))
    for row in range(N):
        for col in range(N):
            s = row * N + col
            for a in range(2):
                go_right = a == right_action[row, col]
                new_col = min(col + 1, N - 1) if go_right else max(col - 1, 0)
                nxt = terminal if row == N - 1 else (row + 1) * N + new_col
                P[s, a, nxt] = 1.0
                if go_right:
                    R_raw[s, a] = -cost + (TREASURE if col == N - 1 else 0.0)
    P[terminal, :, terminal] = 1.0
    r_min, r_max = -cost, TREASURE - cost
    R = (R_raw - r_min) / (r_max - r_min)
    mu0 = np.eye(S)[0]
    return TabularMDP(P, R, mu0, H, name="deepsea", reward_dist="deterministic",
                      meta={"source": "bsuite deep_sea (Osband et al. 2019)",
                            "reward_affine": (r_min, r_max - r_min),
                            "right_action": right_action})
