"""A model-free PolicyEngine: optimistic certainty-equivalence planning on the counts.

For robots with no model, and as the engine the runtime is tested with. The logits are
Q_0 of backward induction on the empirical MDP (R_hat, P_hat) plus a UCB-VI style bonus
``bonus_scale * (H - h) / sqrt(max(1, N(s, a)))`` per step, each Q_h clipped to the steps
left; untried pairs get the full bonus, so the greedy policy tries them first.
"""

from __future__ import annotations

import numpy as np

from rlfm_edge.inference.base import PolicyEngine
from rlfm_edge.planning import backward_induction
from rlfm_edge.stats import CountStats


class PlanningEngine(PolicyEngine):
    """Logits = optimistic Q_0(s, a) / temperature for every state.

    ``bonus_scale`` 0 gives plain certainty equivalence; rewards are assumed to lie in
    [reward_min, reward_max], which also scales the bonus and the logits.
    """

    backend = "planning"
    precision = "fp64"

    def __init__(self, bonus_scale: float = 0.1, reward_min: float = 0.0, reward_max: float = 1.0,
                 temperature: float = 1.0, max_states: int = 4096, max_actions: int = 64) -> None:
        if not bonus_scale >= 0:
            raise ValueError(f"bonus_scale: expected >= 0, got {bonus_scale}")
        if not reward_max > reward_min:
            raise ValueError(f"reward_max: expected > reward_min, got [{reward_min}, {reward_max}]")
        if not temperature > 0:
            raise ValueError(f"temperature: expected > 0, got {temperature}")
        self.bonus_scale = float(bonus_scale)
        self.reward_min = float(reward_min)
        self.reward_max = float(reward_max)
        self.temperature = float(temperature)
        self.max_states = int(max_states)
        self.max_actions = int(max_actions)

    def policy(self, stats: CountStats, horizon: int) -> np.ndarray:
        self.check_fits(stats)
        if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
            raise ValueError(f"horizon: expected a positive integer, got {horizon!r}")
        steps_left = np.arange(horizon, 0, -1, dtype=np.float64)[:, None, None]
        span = self.reward_max - self.reward_min
        bonus = (self.bonus_scale * span * steps_left
                 / np.sqrt(np.maximum(stats.n_sa, 1))[None])
        Q, _ = backward_induction(stats.P_hat(), stats.R_hat(), horizon, bonus=bonus,
                                  v_max=self.reward_max, v_min=self.reward_min)
        return Q[0] / (self.temperature * span)
