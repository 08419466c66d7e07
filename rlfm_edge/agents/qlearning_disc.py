"""Discounted Q-learning with UCB exploration, for robots' long or open-ended episodes.

Dong, Wang, Chen, Wang, "Q-learning with UCB exploration is sample efficient for
infinite-horizon MDPs" (ICLR 2020, arXiv 1901.09311), Algorithm 1: one table Q(s, a) for a
discounted task, no step index, so it needs no episode of a fixed length. With the effective
horizon H = 1 / (1 - gamma) (``horizon`` is the H given, gamma = 1 - 1/H):

    Q(s, a) = Q_hat(s, a) = 1 / (1 - gamma) initially (optimistic: the largest value)
    act greedily on Q_hat (ties at random); on (s, a, r, s') with t = N(s, a) after the visit:
    alpha_t = (H + 1) / (H + t),  b_t = c / (1 - gamma) sqrt(H iota / t),  iota = ln(S A (t + 1)(t + 2) / p)
    Q(s, a) <- (1 - alpha_t) Q(s, a) + alpha_t (r + b_t + gamma max_a' Q_hat(s', a'))
    Q_hat(s, a) <- min(Q_hat(s, a), Q(s, a))

(The formulas follow the paper's Algorithm 1 as its authors' and others' implementations
write it; the search available when this was written did not return the paper's own text,
so check the iota term against it.)

Departures from the paper: its H is ln(1 / ((1 - gamma) eps)) / ln(1 / gamma), a proof
device for an eps-accurate policy; here H = 1 / (1 - gamma), the horizon the other agents plan
over. Its constant c = 4 sqrt(2) keeps every value at its optimistic start for far longer than
a benchmark runs, as Jin et al.'s does in qlearning.py; c defaults to that module's tuned
constant 0.001, and with 1 / (1 - gamma) = H the bonus c H sqrt(H iota / t) = c sqrt(H^3 iota / t)
is exactly qlearning.py's bonus shape, so the constant carries over unweakened.

Absorbing states (``absorbing``: state -> reward per step, as the runtime's terminal states:
a failure worth 0, a goal worth 1) are valued exactly, worth / (1 - gamma), and never updated:
an absorbing state's value is known, not learned.
"""

from __future__ import annotations

import math

import numpy as np

from rlfm_edge.agents.base import Agent, argmax_random_tie, check_positive_float, check_probability

DEFAULT_BONUS_SCALE = 0.001  # qlearning.py's tuned constant; see the module docstring


class DiscountedUCBQLearningAgent(Agent):
    """Q-learning with UCB exploration for a discounted task (Dong et al. 2019)."""

    name = "qlearning_disc"

    def __init__(self, n_states: int, n_actions: int, horizon: int, seed: int = 0,
                 bonus_scale: float = DEFAULT_BONUS_SCALE, p: float = 0.1,
                 absorbing: dict[int, float] | None = None) -> None:
        super().__init__(n_states, n_actions, horizon, seed)
        self.bonus_scale = check_positive_float("bonus_scale", bonus_scale, allow_zero=True)
        self.p = check_probability("p", p)
        self.gamma = 1.0 - 1.0 / self.horizon
        v_max = float(self.horizon)  # 1 / (1 - gamma)
        self.Q = np.full((self.n_states, self.n_actions), v_max)
        self.Q_hat = self.Q.copy()
        self.absorbing = dict(absorbing or {})
        for s, worth in self.absorbing.items():
            if not 0 <= s < self.n_states:
                raise ValueError(f"absorbing: state {s} outside [0, {self.n_states})")
            if not 0.0 <= worth <= 1.0:
                raise ValueError(f"absorbing: state {s}'s reward per step must lie in [0, 1], got {worth}")
            self.Q[s] = self.Q_hat[s] = worth * v_max
        self.n = np.zeros((self.n_states, self.n_actions), dtype=np.int64)

    def _act(self, s: int, h: int) -> int:
        return argmax_random_tie(self.Q_hat[s], self.rng)

    def _observe(self, s: int, a: int, r: float, s_next: int, h: int) -> None:
        if s in self.absorbing:
            return
        self.n[s, a] += 1
        t = int(self.n[s, a])
        H = self.horizon
        iota = math.log(self.n_states * self.n_actions * (t + 1) * (t + 2) / self.p)
        bonus = self.bonus_scale * H * math.sqrt(H * iota / t)
        alpha = (H + 1) / (H + t)
        target = r + bonus + self.gamma * self.Q_hat[s_next].max()
        self.Q[s, a] = (1 - alpha) * self.Q[s, a] + alpha * target
        self.Q_hat[s, a] = min(self.Q_hat[s, a], self.Q[s, a])
