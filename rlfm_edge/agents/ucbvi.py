"""UCB-VI: optimistic value iteration on the empirical model (Azar, Osband, Munos 2017).

arXiv 1703.05449, Algorithms 1-4. Before every episode k (the policy is recomputed once
per episode, as in the paper) run backward induction on the empirical model,

    Q_h(s, a) = min(H - h, R̂(s, a) + P̂(.|s, a) V_{h+1} + b_h(s, a)),   V_h = max_a Q_h,

and act greedily (ties broken at random). A pair never tried has Q_h = H - h, the
largest possible value (the paper's "Q = H if N = 0"). Steps h are 0-based, so H - h is
the value range left; the paper clips at H, which is looser and changes nothing else.

Bonuses, with N = N(s, a) and L = ln(5 S A T / delta), T = H * (k + 1) after k finished
episodes (an anytime T), or the paper's total T = H K when ``n_episodes=K`` is given:

* ``bonus="hoeffding"`` (UCBVI-CH): b = c (H - h) sqrt(2 L / N). The paper's bonus is
  7 H L sqrt(1/N), i.e. c = 7 sqrt(L / 2) (~19 for RiverSwim at 300 episodes) with H
  instead of H - h; it makes the agent behave like a uniformly random one for
  hundreds of episodes. The form (H - h) sqrt(2 L / N) is the textbook one (twice
  the Hoeffding half-width (H - h) sqrt(L / 2N) of a mean of N values in [0, H - h]).
* ``bonus="bernstein"`` (UCBVI-BF, Algorithm 4): the empirical-Bernstein part of the
  paper's bonus, b = c (sqrt(8 L Var_{P̂}(V_{h+1}) / N) + 14 (H - h) L / (3 N)). The
  paper's third term, sqrt(8 sum_y P̂(y) min(100^2 H^3 S^2 A L^2 / N'_{h+1}(y), H^2) / N)
  (Algorithm 4; N'_{h+1}(y) the visits to y at step h + 1), corrects for V_{h+1} being
  an estimate; it stays at its cap H sqrt(8 / N) for any realistic N and is left out, as
  in practical versions (rlberry uses a "simplified Bernstein" bonus of the same shape).

The reward is estimated (the paper assumes it known): the same bonus covers it, since
one step's reward is part of the (H - h)-range return the bonus bounds.

Default scale (``bonus_scale``): c = 0.02 for Hoeffding and 0.01 for Bernstein, with
delta = 0.1. Chosen on RiverSwim-6 (H = 20), Garnet(10, 3, 3) (H = 15) and a 5-armed
Bernoulli MDP with close means (H = 10): regret fell steadily from c = 1 (like uniform
random over 300 episodes) to c ~ 0.01-0.03 on all three, and c = 0 (no bonus, only the
optimistic untried pairs) never found the far bank of RiverSwim in 3 of 5 seeds. At c = 0.02 the
Hoeffding bonus at h = 0, H = 20, L ~ 15 is ~ 2.2 / sqrt(N).
The paper's minimum with the previous episode's Q (monotone values, for the proof)
is not applied: with a scaled-down bonus it would freeze early optimistic errors.

``paper=True`` (registered as ``ucbvi_paper``) is UCBVI-CH exactly as published, for
comparisons with independent implementations: b = c 7 H L sqrt(1/N) with c = ``bonus_scale``
= 1 by default, Q_h = min(Q_{k-1,h}, H, R̂ + P̂ V_{h+1} + b) (clipped at H, and never above
the previous episode's Q, which starts at H), untried pairs Q_h = H. Pass ``n_episodes``
(the bench passes its episode count) for the paper's T = K H. It acts like a
uniformly random agent for hundreds of episodes (see the Hoeffding note above). The paper's
Bernstein bonus is not implemented (its third term needs per-step visit counts
N'_{h+1}(y)), so ``bonus="bernstein"`` with ``paper=True`` is refused.
"""

from __future__ import annotations

import numpy as np

from rlfm_edge.agents.base import (
    Agent,
    argmax_random_tie,
    check_choice,
    check_positive_float,
    check_positive_int,
    check_probability,
)
from rlfm_edge.planning import backward_induction

BONUSES = ("hoeffding", "bernstein")
DEFAULT_SCALE = {"hoeffding": 0.02, "bernstein": 0.01}
PAPER_SCALE = 1.0  # the paper's constants, unscaled


class UCBVIAgent(Agent):
    """UCB-VI with a Hoeffding (UCBVI-CH) or empirical-Bernstein (UCBVI-BF) bonus."""

    name = "ucbvi"

    def __init__(self, n_states: int, n_actions: int, horizon: int, seed: int = 0,
                 bonus: str = "hoeffding", bonus_scale: float | None = None,
                 delta: float = 0.1, paper: bool = False, n_episodes: int | None = None) -> None:
        super().__init__(n_states, n_actions, horizon, seed)
        self.bonus = check_choice("bonus", bonus, BONUSES)
        if not isinstance(paper, bool):
            raise ValueError(f"paper: expected True or False, got {paper!r}")
        if paper and bonus == "bernstein":
            raise ValueError("paper=True needs bonus='hoeffding': the paper's Bernstein bonus "
                             "(Algorithm 4) is not implemented, its third term needs the "
                             "per-step visit counts N'_{h+1}(y)")
        self.paper = paper
        default_scale = PAPER_SCALE if paper else DEFAULT_SCALE[bonus]
        self.bonus_scale = (default_scale if bonus_scale is None
                            else check_positive_float("bonus_scale", bonus_scale, allow_zero=True))
        self.delta = check_probability("delta", delta)
        self.n_episodes = (None if n_episodes is None
                           else check_positive_int("n_episodes", n_episodes))
        # Q_0 = H: the start of paper mode's running minimum; otherwise overwritten by _plan.
        self.Q = np.full((self.horizon, self.n_states, self.n_actions), float(self.horizon))
        self._plan()

    def log_term(self) -> float:
        """L = ln(5 S A T / delta), T = H * n_episodes if given, else H * (episodes so far + 1)."""
        T = self.horizon * (self.n_episodes or self.episode + 1)
        return float(np.log(5 * self.n_states * self.n_actions * T / self.delta))

    def cap(self, h: int) -> int:
        """The largest Q_h: the paper's H in paper mode, else the H - h steps left."""
        return self.horizon if self.paper else self.horizon - h

    def bonuses(self, V_next: np.ndarray | None = None, h: int = 0) -> np.ndarray:
        """b_h (S, A) for step h; the Bernstein bonus needs V_{h+1} (S,)."""
        H, L, c = self.horizon, self.log_term(), self.bonus_scale
        n = np.maximum(self.stats.n_sa, 1)
        if self.paper:
            b = c * 7 * H * L * np.sqrt(1 / n)
        elif self.bonus == "hoeffding":
            b = c * (H - h) * np.sqrt(2 * L / n)
        else:
            P = self.stats.P_hat()
            mean = P @ V_next
            var = np.maximum(P @ V_next**2 - mean**2, 0.0)
            b = c * (np.sqrt(8 * L * var / n) + 14 * (H - h) * L / (3 * n))
        return np.where(self.stats.n_sa == 0, self.cap(h), b)

    def _plan(self) -> None:
        R, P = self.stats.R_hat(), self.stats.P_hat()
        if self.bonus == "hoeffding" and not self.paper:
            bonus = np.stack([self.bonuses(h=h) for h in range(self.horizon)])
            self.Q, _ = backward_induction(P, R, self.horizon, bonus=bonus, v_max=1.0)
            return
        # The variance bonus depends on V_{h+1}, and paper mode's minimum with the previous
        # episode's Q_h feeds into V_h: one backward step at a time.
        V = np.zeros(self.n_states)
        for h in range(self.horizon - 1, -1, -1):
            q = R + P @ V + self.bonuses(V, h)
            if self.paper:
                q = np.minimum(q, self.Q[h])
            self.Q[h] = np.minimum(q, self.cap(h))
            V = self.Q[h].max(axis=1)

    def _act(self, s: int, h: int) -> int:
        return argmax_random_tie(self.Q[h, s], self.rng)

    def _end_episode(self) -> None:
        self._plan()
