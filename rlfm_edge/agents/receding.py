"""Receding-horizon PSRL and UCB-VI, for robots' long or open-ended episodes.

The episodic agents (psrl.py, ucbvi.py) plan once per episode of exactly H steps and follow
the step-indexed policy Q_h. A robot's episode runs until a fall, a goal or a time limit,
often far longer than the planning horizon H, and a non-stationary Q_h means nothing once
the episode has outlived it. These agents keep the same posterior (PSRL) or the same
optimistic model (UCB-VI) and the same H-step backward induction, but:

* they plan at the start of every episode and again every H steps within it (a planning
  window: ``act(s, h)`` takes h = steps since the window opened, 0..H-1; the window that an
  episode start opens counts from 0 again);
* they act greedily on Q_0 in every step of the window: a stationary policy that "acts well
  for the next H steps" (receding horizon), as the model does with its horizon.

``psrl_rh``: Osband, Russo, Van Roy 2013 (arXiv 1306.0940), Algorithm 1, with the posterior of
psrl.py (Dirichlet(1/S + N) transitions, Beta(1 + sum r, 1 + N - sum r) rewards). Departure:
a new MDP is sampled per planning window instead of per episode (the paper's episodes have
length H; here a window is those H steps), and the policy is Q_0's, not Q_h's.

``ucbvi_rh``: Azar, Osband, Munos 2017 (arXiv 1703.05449), UCBVI-CH with the project's bonus
and constant (ucbvi.py: b_h = c (H - h) sqrt(2 L / N), c = 0.02, delta = 0.1, untried pairs at
the cap H - h). Departures beyond ucbvi.py's: replanned per window, acts on Q_0, and the
anytime T in L = ln(5 S A T / delta) is the number of transitions seen plus H (ucbvi.py's
H * (episodes + 1) is the same quantity when every episode lasts H steps).

Terminal (absorbing) states need no special case: the runtime records a termination as a
transition into the absorbing state plus one self-loop per action at its worth, and these
agents learn them from the counts like any other transition.
"""

from __future__ import annotations

import numpy as np

from rlfm_edge.agents.base import argmax_random_tie
from rlfm_edge.agents.psrl import PSRLAgent
from rlfm_edge.agents.ucbvi import UCBVIAgent


class _RecedingHorizon:
    """Mixin: plan when a planning window opens (h == 0) after new data; act on Q_0."""

    _stale = False

    def _observe(self, s: int, a: int, r: float, s_next: int, h: int) -> None:
        self._stale = True

    def _act(self, s: int, h: int) -> int:
        if h == 0 and self._stale:
            self._plan()
        return argmax_random_tie(self.Q[0, s], self.rng)

    def _end_episode(self) -> None:
        """Nothing now: the next episode's first step opens a window and plans."""

    def _plan(self) -> None:
        super()._plan()
        self._stale = False


class RecedingPSRLAgent(_RecedingHorizon, PSRLAgent):
    """PSRL resampled every planning window, greedy on the sample's Q_0."""

    name = "psrl_rh"


class RecedingUCBVIAgent(_RecedingHorizon, UCBVIAgent):
    """UCB-VI (Hoeffding) replanned every planning window, greedy on Q_0."""

    name = "ucbvi_rh"

    def __init__(self, n_states: int, n_actions: int, horizon: int, seed: int = 0,
                 bonus_scale: float | None = None, delta: float = 0.1) -> None:
        super().__init__(n_states, n_actions, horizon, seed, bonus="hoeffding",
                         bonus_scale=bonus_scale, delta=delta)

    def log_term(self) -> float:
        """L = ln(5 S A T / delta) with T = transitions seen + H (anytime)."""
        T = self.stats.n_transitions + self.horizon
        return float(np.log(5 * self.n_states * self.n_actions * T / self.delta))
