"""Chain / NChain (Dearden, Friedman & Russell 1998, "Bayesian Q-learning"; gym's
``nchain.py``).

``n`` states (default 5), 2 actions, start in state 0, horizon H = 20 (our choice; the
source is discounted). With probability ``slip`` (default 0.2) the other action is
taken instead of the chosen one. The taken action decides:

- forward (action 0): move one state up the chain, reward 0; in the last state stay
  and receive the large reward 10.
- back (action 1): return to state 0 and receive the small reward 2.

Rewards are divided by 10 (large -> 1, small -> 0.2; positive scaling keeps optimal
policies) and drawn as Bernoulli with the resulting means
R(s, a) = (1 - slip) r(s, a) + slip r(s, other action).
"""

from __future__ import annotations

import numpy as np

from rlfm_edge.envs._validate import integer, probability
from rlfm_edge.mdp import TabularMDP

FORWARD, BACK = 0, 1
LARGE, SMALL = 10.0, 2.0
REWARD_SCALE = 10.0


def chain(n: int = 5, slip: float = 0.2, horizon: int = 20) -> TabularMDP:
    """NChain with ``n`` >= 2 states, slip probability ``slip`` and horizon ``horizon``."""
    S = integer("n", n, 2)
    slip = probability("slip", slip)
    H = integer("horizon", horizon, 1)
    # Effect of each *taken* action: next state and raw reward.
    P_taken = np.zeros((S, 2, S))
    R_taken = np.zeros((S, 2))
    for s in range(S):
        P_taken[s, FORWARD, min(s + 1, S - 1)] = 1.0
        R_taken[s, FORWARD] = LARGE if s == S - 1 else 0.0
        P_taken[s, BACK, 0] = 1.0
        R_taken[s, BACK] = SMALL
    swapped = [BACK, FORWARD]
    P = (1 - slip) * P_taken + slip * P_taken[:, swapped]
    R = ((1 - slip) * R_taken + slip * R_taken[:, swapped]) / REWARD_SCALE
    mu0 = np.eye(S)[0]
    return TabularMDP(P, R, mu0, H, name="chain",
                      meta={"source": "Dearden et al. 1998", "reward_scale": REWARD_SCALE})
