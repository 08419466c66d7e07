"""Offline datasets: episodes of a behaviour policy on a known MDP, as (s, a, r, s') tuples.

Behaviours (a spec string, as on the command line):

- ``uniform``: every action uniformly at random.
- ``optimal``: greedy with respect to Q* of the true MDP (ties to the lowest action).
- ``eps_optimal[:EPS]``: epsilon-greedy w.r.t. Q*: a uniformly random action with
  probability EPS (default 0.1, so the optimal action has probability 1 - EPS + EPS/A),
  else the greedy one. Covers the optimal policy well and the rest thinly: the regime
  where pessimism (VI-LCB) should pay off.
- ``mixture[:P]``: each whole episode is collected by the optimal policy with probability
  P (default 0.5), otherwise by the uniform policy (the mixture of experts and random
  play of Rashidinejad et al. 2021's experiments; P sets single-policy concentrability).

Datasets are sized in transitions and made of whole episodes of horizon H from mu0,
except that the last episode is cut short when the size is not a multiple of H.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlfm_edge.bench.online import check_count
from rlfm_edge.mdp import TabularMDP
from rlfm_edge.planning import optimal_value, policy_value, value_iteration

BEHAVIOURS = ("uniform", "optimal", "eps_optimal", "mixture")
DEFAULT_EPS = 0.1
DEFAULT_MIXTURE = 0.5

Transition = tuple[int, int, float, int]


@dataclass(frozen=True)
class Behaviour:
    """A parsed behaviour spec: ``kind`` in BEHAVIOURS and its parameter (EPS or P)."""

    kind: str
    param: float | None = None

    @property
    def spec(self) -> str:
        return self.kind if self.param is None else f"{self.kind}:{self.param:g}"

    def _greedy(self, mdp: TabularMDP) -> np.ndarray:
        Q, _ = value_iteration(mdp)
        return np.eye(mdp.n_actions)[Q.argmax(axis=2)]

    def _uniform(self, mdp: TabularMDP) -> np.ndarray:
        return np.full((mdp.horizon, mdp.n_states, mdp.n_actions), 1.0 / mdp.n_actions)

    def policies(self, mdp: TabularMDP) -> tuple[list[np.ndarray], list[float]]:
        """Per-episode policies (H, S, A) and the probability of each being used."""
        if self.kind == "uniform":
            return [self._uniform(mdp)], [1.0]
        if self.kind == "optimal":
            return [self._greedy(mdp)], [1.0]
        if self.kind == "eps_optimal":
            eps = self.param
            return [(1 - eps) * self._greedy(mdp) + eps * self._uniform(mdp)], [1.0]
        return [self._greedy(mdp), self._uniform(mdp)], [self.param, 1 - self.param]

    def value(self, mdp: TabularMDP) -> float:
        """Exact expected return V^beta(mu0) of the behaviour."""
        if self.kind == "optimal":
            return optimal_value(mdp)
        pols, weights = self.policies(mdp)
        return float(sum(w * policy_value(mdp, p) for p, w in zip(pols, weights, strict=True)))


def parse_behaviour(spec: str) -> Behaviour:
    """``uniform`` | ``optimal`` | ``eps_optimal[:EPS]`` | ``mixture[:P]``, or ValueError."""
    kind, _, raw = str(spec).strip().partition(":")
    if kind not in BEHAVIOURS:
        raise ValueError(f"behaviour: unknown {spec!r}; expected one of {', '.join(BEHAVIOURS)}")
    if kind in ("uniform", "optimal"):
        if raw:
            raise ValueError(f"behaviour: {kind!r} takes no parameter, got {spec!r}")
        return Behaviour(kind)
    default = DEFAULT_EPS if kind == "eps_optimal" else DEFAULT_MIXTURE
    try:
        param = float(raw) if raw else default
    except ValueError:
        raise ValueError(f"behaviour: parameter of {spec!r} must be a number in [0, 1]") from None
    if not 0.0 <= param <= 1.0:
        raise ValueError(f"behaviour: parameter of {spec!r} must lie in [0, 1], got {param}")
    return Behaviour(kind, param)


def generate_dataset(
    mdp: TabularMDP, behaviour: str | Behaviour, n_transitions: int, seed: int = 0
) -> list[Transition]:
    """``n_transitions`` transitions (s, a, r, s') collected by ``behaviour`` on ``mdp``."""
    if not isinstance(behaviour, Behaviour):
        behaviour = parse_behaviour(behaviour)
    n_transitions = check_count("n_transitions", n_transitions)
    rng = np.random.default_rng(np.random.SeedSequence(check_count("seed", seed, 0)))
    pols, weights = behaviour.policies(mdp)
    cdfs = [np.cumsum(p, axis=2) for p in pols]
    for cdf in cdfs:
        cdf[..., -1] = 1.0
    data: list[Transition] = []
    while len(data) < n_transitions:
        cdf = cdfs[rng.choice(len(cdfs), p=weights)] if len(cdfs) > 1 else cdfs[0]
        s = mdp.reset(rng)
        for h in range(min(mdp.horizon, n_transitions - len(data))):
            a = int(np.searchsorted(cdf[h, s], rng.random(), side="right"))
            r, s_next = mdp.step(s, a, rng)
            data.append((s, a, r, s_next))
            s = s_next
    return data
