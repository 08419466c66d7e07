"""PSRL: posterior sampling for reinforcement learning (Osband, Russo, Van Roy 2013).

arXiv 1306.0940, Algorithm 1. At the start of every episode sample one MDP from the
posterior, solve it by backward induction, and follow its optimal policy for H steps.

Posterior, independent per (s, a):
* transitions P(.|s, a) ~ Dirichlet(alpha0 + N(s, a, .)). Default alpha0 = 1/S
  (``prior_transitions``): prior mass 1 spread over the successors, so a single
  observed transition dominates the prior and an untried pair's sampled successor is
  a random state. alpha0 = 1 (uniform over the simplex) is the other common choice;
  with S = 6 it is close, for larger S it spreads mass over states never reached.
* mean reward R(s, a) ~ Beta(1 + sum r, 1 + N - sum r): the Beta(1, 1) prior on a
  Bernoulli reward; a reward in [0, 1] counts as a fractional success, the usual
  trick that keeps the Beta-Bernoulli update exact for 0/1 rewards.
"""

from __future__ import annotations

import numpy as np

from rlfm_edge.agents.base import Agent, argmax_random_tie, check_positive_float
from rlfm_edge.planning import backward_induction


class PSRLAgent(Agent):
    """Thompson sampling over MDPs, one sample per episode."""

    name = "psrl"

    def __init__(self, n_states: int, n_actions: int, horizon: int, seed: int = 0,
                 prior_transitions: float | None = None, prior_reward: float = 1.0) -> None:
        super().__init__(n_states, n_actions, horizon, seed)
        self.prior_transitions = (1.0 / self.n_states if prior_transitions is None
                                  else check_positive_float("prior_transitions",
                                                            prior_transitions))
        self.prior_reward = check_positive_float("prior_reward", prior_reward)
        self._plan()

    def sample_mdp(self) -> tuple[np.ndarray, np.ndarray]:
        """One draw (P (S, A, S), R (S, A)) from the posterior."""
        st = self.stats
        g = self.rng.gamma(self.prior_transitions + st.n_sas)
        total = g.sum(axis=2, keepdims=True)
        # A Dirichlet with tiny parameters can underflow to all zeros: fall back to uniform.
        P = np.where(total > 0, g / np.where(total > 0, total, 1.0), 1.0 / self.n_states)
        successes = np.clip(st.reward_sum, 0.0, st.n_sa)
        R = self.rng.beta(self.prior_reward + successes,
                          self.prior_reward + st.n_sa - successes)
        return P, R

    def _plan(self) -> None:
        P, R = self.sample_mdp()
        self.Q, _ = backward_induction(P, R, self.horizon)

    def _act(self, s: int, h: int) -> int:
        return argmax_random_tie(self.Q[h, s], self.rng)

    def _end_episode(self) -> None:
        self._plan()
