"""The PolicyEngine interface every inference backend implements."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod

import numpy as np

from rlfm_edge.model.features import GraphFeatures, build_features
from rlfm_edge.stats import CountStats


def refresh_threads() -> int:
    """Intra-op threads for a CPU refresh: one core is left to the control loop (at most 2).

    A second refresh thread buys little speed and costs the control loop its tail latency when
    the two share the cores (docs/history/benchmarks.md). A positive ``OMP_NUM_THREADS`` wins:
    it is how a user, or the benchmark's worker processes (one per core already), ask for a
    thread count."""
    requested = os.environ.get("OMP_NUM_THREADS", "")
    if requested.isdigit() and int(requested) > 0:
        return int(requested)
    return max(1, min(2, (os.cpu_count() or 1) - 1))


def action_probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(logits / temperature) over the last axis: the policy an agent samples from."""
    z = logits / temperature
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    return p / p.sum(axis=-1, keepdims=True)


DEFAULT_TEMPERATURE = 0.3  # before annealing; chosen on held-out prior MDPs (agents/rlfm.py)
DEFAULT_ANNEAL_VISITS: float | None = 30.0  # chosen on held-out prior MDPs (agents/rlfm.py)


def state_temperatures(temperature: float, visits: np.ndarray, anneal_visits: float | None) -> np.ndarray:
    """Per-state sampling temperatures (S, 1): ``temperature / sqrt(1 + N(s) / anneal_visits)``.

    The model imitates a Boltzmann policy over Q*, which stays soft even when the
    statistics leave no doubt, so sampling from it at a fixed temperature keeps paying for
    exploration forever. Cooling each state as its visits N(s) grow makes the agent greedy
    in the limit where the data has settled the choice, and keeps it exploring where it
    has not. ``anneal_visits=None`` keeps the temperature fixed.
    """
    visits = np.asarray(visits, dtype=np.float64).reshape(-1, 1)
    if anneal_visits is None:
        return np.full_like(visits, float(temperature))
    return temperature / np.sqrt(1.0 + visits / anneal_visits)


def unpad_logits(logits: np.ndarray, batch: list[tuple[CountStats, int]]) -> list[np.ndarray]:
    """Each entry's logits, cut from the padded (B, S, A) batch to its own S and A.

    Refused with a ValueError unless all finite: features that fit float32 but are huge (a
    mean reward of 1e38) overflow inside the network, which would otherwise hand the agent
    NaN logits without an error.
    """
    out = []
    for b, (stats, _) in enumerate(batch):
        entry = logits[b, : stats.n_states, : stats.n_actions]
        if not np.isfinite(entry).all():
            raise ValueError(f"logits: the model returned NaN or inf: its arithmetic overflowed on "
                             f"these statistics (largest |mean reward| {np.abs(stats.R_hat()).max():.3g}; "
                             f"the model is trained on rewards in [0, 1])")
        out.append(entry)
    return out


class ModelLimitError(ValueError):
    """Statistics larger than the model was exported for."""


class PolicyEngine(ABC):
    """Maps count statistics and a horizon to policy logits for every state.

    Attributes: ``backend`` ("torch", "onnxruntime", "tensorrt"), ``precision``
    ("fp32", "fp16", "int8"), ``max_states`` and ``max_actions`` (the padded sizes the
    model serves).
    """

    backend: str
    precision: str
    max_states: int
    max_actions: int
    max_successors: int
    # how to serve larger statistics: the exported backends take their sizes from the export
    larger_model_hint = "export a larger model with `rlfm-edge export --max-states N --max-actions M`"

    def check_fits(self, stats: CountStats) -> None:
        """Raise ModelLimitError when the statistics exceed the model's padded sizes."""
        if stats.n_states > self.max_states or stats.n_actions > self.max_actions:
            raise ModelLimitError(
                f"statistics have S={stats.n_states}, A={stats.n_actions} but this {self.backend} "
                f"model serves at most S={self.max_states}, A={self.max_actions}; {self.larger_model_hint}"
            )

    def features(self, batch: list[tuple[CountStats, int]]) -> list[GraphFeatures]:
        """The model's features of each (statistics, horizon) pair, once its size is checked."""
        out = []
        for stats, horizon in batch:
            self.check_fits(stats)
            out.append(build_features(stats, horizon, self.max_successors))
        return out

    @abstractmethod
    def policy(self, stats: CountStats, horizon: int) -> np.ndarray:
        """Logits (n_states, n_actions) of the policy for the statistics given."""

    def policy_batch(self, batch: list[tuple[CountStats, int]]) -> list[np.ndarray]:
        """``policy`` of each (statistics, horizon) pair; backends that batch natively override
        this one-at-a-time loop, so every engine (``auto``'s included) takes a batch."""
        return [self.policy(stats, horizon) for stats, horizon in batch]
