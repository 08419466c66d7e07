"""The foundation model as an online agent: read the policy off the statistics, in context.

No per-task training: after every episode (or every step, ``refresh="step"``) the
agent hands its CountStats to a PolicyEngine and gets logits for every state. Acting
samples an action from softmax(logits / temperature) at every step; as DPT (Lee et al.
2023) found, sampling from a model trained to predict optimal actions explores like
posterior sampling, while greedy use (``mode="greedy"``) under-explores. The default
temperature 0.3 sharpens the policy, and each state's temperature cools as it is visited,
0.3 / sqrt(1 + N(s) / 30) (``anneal_visits``; ``state_temperatures`` says why). Both were
chosen on held-out MDPs of the training prior (benchmarks/heldout_prior.py), never on the
public benchmarks; BENCHMARKS.md, "Learning online", has the runs that chose them.

``sampling="episode"`` draws one uniform number per state per episode and inverts it
through that state's current CDF, so a state gets the same action all episode long (a
sampled policy, committed to as posterior sampling commits to its sampled MDP), where the
default ``"step"`` draws afresh at every step. Committing lost on held-out prior MDPs, most
on grids, where a committed wrong move repeats until the episode ends, so step sampling
stays the default.

Offline (``extract_policy(..., method="rlfm")``) the same logits read off the dataset's
statistics, once per step at that step's steps left, are the scores, and the policy is their
argmax over the actions the data supports (``offline_scores``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from rlfm_edge.agents.base import Agent, check_choice, check_positive_float
from rlfm_edge.inference import PolicyEngine, make_engine
from rlfm_edge.inference.base import (
    DEFAULT_ANNEAL_VISITS,
    DEFAULT_TEMPERATURE,
    action_probabilities,
    state_temperatures,
)
from rlfm_edge.offline import OfflineData, register_method


class RLFMAgent(Agent):
    name = "rlfm"

    def __init__(self, n_states: int, n_actions: int, horizon: int, seed: int = 0,
                 engine: PolicyEngine | None = None, backend: str = "auto", model=None,
                 precision: str = "fp32", mode: str = "sample", temperature: float = DEFAULT_TEMPERATURE,
                 refresh: str = "episode",
                 anneal_visits: float | None = DEFAULT_ANNEAL_VISITS, sampling: str = "step") -> None:
        super().__init__(n_states, n_actions, horizon, seed)
        self.mode = check_choice("mode", mode, ("sample", "greedy"))
        self.sampling = check_choice("sampling", sampling, ("step", "episode"))
        self._draws = self.rng.random(n_states) if self.sampling == "episode" else None
        self.refresh = check_choice("refresh", refresh, ("episode", "step"))
        self.temperature = check_positive_float("temperature", temperature)
        self.anneal_visits = (None if anneal_visits is None
                              else check_positive_float("anneal_visits", anneal_visits))
        self.engine = (engine if engine is not None
                       else make_engine(backend, model, precision, probe_size=(n_states, n_actions)))
        self.engine.check_fits(self.stats)
        self._refresh()

    def _refresh(self) -> None:
        self.logits = self.engine.policy(self.stats, self.horizon)
        temperatures = state_temperatures(self.temperature, self.stats.n_sa.sum(axis=1),
                                          self.anneal_visits)
        self.cdf = np.cumsum(action_probabilities(self.logits, temperatures), axis=1)

    def _act(self, s: int, h: int) -> int:
        if self.mode == "greedy":
            q = self.logits[s]
            best = np.flatnonzero(q == q.max())
            return int(best[0] if best.size == 1 else self.rng.choice(best))
        u = self._draws[s] if self.sampling == "episode" else self.rng.random()
        return int(min(np.searchsorted(self.cdf[s], u, side="right"), self.n_actions - 1))

    def _observe(self, s: int, a: int, r: float, s_next: int, h: int) -> None:
        if self.refresh == "step":
            self._refresh()

    def _end_episode(self) -> None:
        self._refresh()
        if self.sampling == "episode":  # step sampling keeps its random stream as it was
            self._draws = self.rng.random(self.n_states)


@lru_cache(maxsize=4)
def _cached_engine(backend: str, model, precision: str) -> PolicyEngine:
    return make_engine(backend, model, precision)


OFFLINE_SUPPORTS = ("all", "tried", "bcq")  # offline_scores' support rules


def offline_scores(data: OfflineData, horizon: int, engine: PolicyEngine | None = None,
                   backend: str = "auto", model=None, precision: str = "fp32",
                   support: str = "bcq", bcq_threshold: float = 0.3,
                   per_step: bool = True) -> np.ndarray:
    """The model's logits (S, A) for the dataset's statistics: the offline method "rlfm".

    The model was trained to act well online, where an action rarely or never tried may be
    worth trying. Offline nothing is learned from acting, so the policy keeps to what the
    data's behaviour did. By default (``support="bcq"``, discrete BCQ: Fujimoto, Conti,
    Ghavamzadeh, Pineau 2019, "Benchmarking batch deep RL algorithms") only actions whose
    estimated behaviour probability N(s, a) / N(s) is at least ``bcq_threshold`` (the
    paper's tau = 0.3) times that of the state's most taken action; ``"tried"`` allows
    every action the data holds; ``"all"`` lets the model choose freely. In a state with
    no data the model always decides. "bcq" was chosen on held-out prior MDPs (BENCHMARKS.md,
    "Learning offline"): it gains on epsilon-optimal data, where it beats VI-LCB, and loses a
    little on uniform data.

    The model's policy is the first step's of an H-step episode. With ``per_step`` (the
    default) the scores are (H, S, A): step h reads the model at the H - h steps left, as an
    optimal finite-horizon policy may change its mind near the end (H model calls; False:
    the first step's policy at every step), chosen on the same held-out MDPs.
    """
    check_choice("support", support, OFFLINE_SUPPORTS)
    if not 0.0 <= bcq_threshold <= 1.0:
        raise ValueError(f"bcq_threshold: expected a value in [0, 1], got {bcq_threshold!r}")
    engine = engine if engine is not None else _cached_engine(backend, model, precision)
    logits = (np.stack([engine.policy(data.stats, horizon - h) for h in range(horizon)])
              if per_step else engine.policy(data.stats, horizon))
    if support != "all":
        n = data.stats.n_sa
        most = n.max(axis=1, keepdims=True)
        allowed = (n > 0) & (n >= bcq_threshold * most) if support == "bcq" else n > 0
        logits = np.where(allowed | (most == 0), logits, -np.inf)
    return logits


register_method("rlfm", offline_scores)
