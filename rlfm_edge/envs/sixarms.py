"""SixArms (Strehl & Littman 2008, "An analysis of model-based Interval Estimation for
Markov Decision Processes", JCSS 74(8)).

7 states (0 = hub, 1..6 = rooms), 6 actions, start in state 0, horizon H = 20 (our
choice; the paper is discounted).

- From the hub, action i (0..5) reaches room i + 1 with probability
  1, 0.15, 0.10, 0.05, 0.03, 0.01 and otherwise stays in the hub; reward 0.
- Room 1: actions {0, 1, 2, 3, 5} stay with reward 50; action 4 returns to the hub.
- Room i in 2..6: action i - 1 stays with reward 133, 300, 800, 1660, 6000 (rooms
  2..6); any other action returns to the hub with reward 0.

Rewards are divided by 6000 to lie in [0, 1] (a positive scaling: optimal policies
unchanged) and drawn as Bernoulli with those means.
"""

from __future__ import annotations

import numpy as np

from rlfm_edge.envs._validate import integer
from rlfm_edge.mdp import TabularMDP

HUB_SUCCESS = (1.0, 0.15, 0.10, 0.05, 0.03, 0.01)
ROOM_REWARDS = (50.0, 133.0, 300.0, 800.0, 1660.0, 6000.0)
REWARD_SCALE = 6000.0


def sixarms(horizon: int = 20) -> TabularMDP:
    """SixArms with horizon ``horizon``."""
    H = integer("horizon", horizon, 1)
    S, A = 7, 6
    P = np.zeros((S, A, S))
    R = np.zeros((S, A))
    for a, p in enumerate(HUB_SUCCESS):
        P[0, a, a + 1] += p
        P[0, a, 0] += 1.0 - p
    for room in range(1, S):
        stay = [0, 1, 2, 3, 5] if room == 1 else [room - 1]
        for a in range(A):
            if a in stay:
                P[room, a, room] = 1.0
                R[room, a] = ROOM_REWARDS[room - 1] / REWARD_SCALE
            else:
                P[room, a, 0] = 1.0
    mu0 = np.eye(S)[0]
    return TabularMDP(P, R, mu0, H, name="sixarms",
                      meta={"source": "Strehl & Littman 2008", "reward_scale": REWARD_SCALE})
