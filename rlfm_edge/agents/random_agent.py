"""The uniformly random agent: the floor every learner must beat."""

from __future__ import annotations

from rlfm_edge.agents.base import Agent


class RandomAgent(Agent):
    """Takes a uniformly random action at every step; learns nothing."""

    name = "random"

    def _act(self, s: int, h: int) -> int:
        return int(self.rng.integers(self.n_actions))
