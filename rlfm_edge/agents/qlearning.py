"""Tabular Q-learning for finite horizons: UCB-Hoeffding (Jin et al. 2018) and epsilon-greedy.

Both keep one table per step, Q_h(s, a), as the finite-horizon problem needs, and the
step-indexed counts t = N_h(s, a) (CountStats keeps N(s, a) pooled over steps, which is
not what these rules use). Steps h are 0-based and the value range left at step h is
H - h; the paper writes H for it, a looser bound.

``qlearning`` -- Jin, Allen-Zhu, Bubeck, Jordan, "Is Q-learning provably efficient?"
(NeurIPS 2018, arXiv 1807.03765), Algorithm 1 (UCB-Hoeffding):

    Q_h init H - h (optimistic);  on (s, a, r, s') at step h with t = N_h(s, a) after the visit:
    alpha_t = (H + 1) / (H + t),  b_t = c sqrt(H^3 iota / t),  iota = ln(S A T / p),
    Q_h(s, a) <- (1 - alpha_t) Q_h(s, a) + alpha_t (r + V_{h+1}(s') + b_t)
    V_h(s) <- min(H - h, max_a Q_h(s, a)),   V_H = 0.

The paper leaves c as "an absolute constant" (its proof needs c of order 1, which
keeps every V_h at its cap H - h for thousands of episodes). The default is c = 0.001
(p = 0.1), i.e. b_t ~ 0.35 / sqrt(t) at H = 20: on RiverSwim-6 and Garnet(10, 3, 3)
regret over 300 episodes rose steadily with c from 0 to 0.05, where it matches a
uniformly random agent; the (H + 1) / (H + t) step size keeps the optimistic initial
values alive long enough to explore on its own. T = H * (episodes so far + 1)
(anytime), or the paper's total T = H K when ``n_episodes=K`` is given.

``paper=True`` (registered as ``qlearning_paper``) is Algorithm 1 as published, for
comparisons with independent implementations: Q_h and V_h start at H and V_h is capped at H
(not H - h), and c = 1 by default: the paper fixes no value of c, so c = 1 is our choice for
"paper mode", not a value from the paper. Pass ``n_episodes`` (the bench passes its episode
count) for the paper's T = K H.

``qlearning_eps`` -- plain Q-learning with optimistic initial values Q_h = H - h,
epsilon-greedy actions with a constant epsilon = 0.1 (``epsilon``), and the same
step size alpha_t = (H + 1) / (H + t) (``step_size="jin"``; ``"1/t"`` gives the
classical 1 / N_h(s, a)). The target is r + max_a Q_{h+1}(s', a), no bonus.
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

STEP_SIZES = ("jin", "1/t")
DEFAULT_BONUS_SCALE = 0.001
PAPER_BONUS_SCALE = 1.0


class _StepQAgent(Agent):
    """Shared state: optimistic step-indexed tables Q_h, V_h and counts N_h(s, a).

    Q_h and V_h start at their cap: H - h, or H at every step h < H with ``cap_at_horizon``
    (the paper's looser bound).
    """

    def __init__(self, n_states: int, n_actions: int, horizon: int, seed: int = 0,
                 cap_at_horizon: bool = False) -> None:
        super().__init__(n_states, n_actions, horizon, seed)
        H, S, A = self.horizon, self.n_states, self.n_actions
        cap = (H - np.arange(H + 1, dtype=np.float64))  # H - h, and 0 at h = H
        if cap_at_horizon:
            cap[:H] = H
        self._cap = cap
        self.Q = np.broadcast_to(cap[:H, None, None], (H, S, A)).copy()
        self.V = np.broadcast_to(cap[:, None], (H + 1, S)).copy()
        self.V[H] = 0.0
        self.n_h = np.zeros((H, S, A), dtype=np.int64)

    def _alpha(self, t: int, step_size: str = "jin") -> float:
        return (self.horizon + 1) / (self.horizon + t) if step_size == "jin" else 1.0 / t

    def _act(self, s: int, h: int) -> int:
        return argmax_random_tie(self.Q[h, s], self.rng)


class UCBQLearningAgent(_StepQAgent):
    """Q-learning with UCB-Hoeffding exploration (Jin et al. 2018, Algorithm 1)."""

    name = "qlearning"

    def __init__(self, n_states: int, n_actions: int, horizon: int, seed: int = 0,
                 bonus_scale: float | None = None, p: float = 0.1, paper: bool = False,
                 n_episodes: int | None = None) -> None:
        if not isinstance(paper, bool):
            raise ValueError(f"paper: expected True or False, got {paper!r}")
        super().__init__(n_states, n_actions, horizon, seed, cap_at_horizon=paper)
        self.paper = paper
        if bonus_scale is None:
            bonus_scale = PAPER_BONUS_SCALE if paper else DEFAULT_BONUS_SCALE
        self.bonus_scale = check_positive_float("bonus_scale", bonus_scale, allow_zero=True)
        self.p = check_probability("p", p)
        self.n_episodes = (None if n_episodes is None
                           else check_positive_int("n_episodes", n_episodes))

    def _observe(self, s: int, a: int, r: float, s_next: int, h: int) -> None:
        H = self.horizon
        self.n_h[h, s, a] += 1
        t = int(self.n_h[h, s, a])
        T = H * (self.n_episodes or self.episode + 1)
        iota = np.log(self.n_states * self.n_actions * T / self.p)
        bonus = self.bonus_scale * np.sqrt(H**3 * iota / t)
        alpha = self._alpha(t)
        target = r + self.V[h + 1, s_next] + bonus
        self.Q[h, s, a] = (1 - alpha) * self.Q[h, s, a] + alpha * target
        self.V[h, s] = min(self._cap[h], self.Q[h, s].max())


class EpsGreedyQLearningAgent(_StepQAgent):
    """Optimistically initialised epsilon-greedy Q-learning, the classical baseline."""

    name = "qlearning_eps"

    def __init__(self, n_states: int, n_actions: int, horizon: int, seed: int = 0,
                 epsilon: float = 0.1, step_size: str = "jin") -> None:
        super().__init__(n_states, n_actions, horizon, seed)
        self.epsilon = check_positive_float("epsilon", epsilon, allow_zero=True)
        if self.epsilon > 1:
            raise ValueError(f"epsilon: expected a probability in [0, 1], got {epsilon!r}")
        self.step_size = check_choice("step_size", step_size, STEP_SIZES)

    def _act(self, s: int, h: int) -> int:
        if self.rng.random() < self.epsilon:
            return int(self.rng.integers(self.n_actions))
        return super()._act(s, h)

    def _observe(self, s: int, a: int, r: float, s_next: int, h: int) -> None:
        self.n_h[h, s, a] += 1
        alpha = self._alpha(int(self.n_h[h, s, a]), self.step_size)
        target = r + self.V[h + 1, s_next]
        self.Q[h, s, a] += alpha * (target - self.Q[h, s, a])
        self.V[h, s] = self.Q[h, s].max()
