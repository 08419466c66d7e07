"""Held-out validation: how good is the greedy policy the model reads off partial statistics?

For each validation example the MDP is re-drawn from its seed, and the model's greedy
policy is scored by its exact value relative to V*(mu0) (1.0 = optimal). RiverSwim is
scored the same way from the statistics of 20 uniformly random episodes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from rlfm_edge import envs
from rlfm_edge.mdp import TabularMDP
from rlfm_edge.model.features import build_features
from rlfm_edge.model.gat import to_graph
from rlfm_edge.planning import optimal_value, policy_value
from rlfm_edge.training.data import load_shard
from rlfm_edge.training.prior import PriorConfig, sample_mdp
from rlfm_edge.training.rollout import rollout


def _normalized_value(mdp: TabularMDP, logits: np.ndarray) -> float:
    """Value of the greedy policy, ties shared equally: in a state the data never reached,
    the actions look alike and get equal logits, and an argmax would always pick action 0."""
    v_star = optimal_value(mdp)
    best = logits >= logits.max(axis=1, keepdims=True)
    greedy = best / best.sum(axis=1, keepdims=True)
    return policy_value(mdp, greedy) / v_star if v_star > 0 else 1.0


@torch.no_grad()
def greedy_logits(net, feats) -> np.ndarray:
    return net(to_graph(feats)).numpy().reshape(feats.n_states, feats.n_actions)


@torch.no_grad()
def validate(net, val_shards: list[Path], max_successors: int, limit: int = 300) -> dict:
    cfg = json.loads((val_shards[0].parent / "config.json").read_text())
    prior = PriorConfig(**cfg["prior"])
    with np.load(val_shards[0], allow_pickle=False) as z:
        seeds = z["seed"][:limit]
    items = load_shard(val_shards[0])[:limit]
    scores = []
    for seed, (feats, _) in zip(seeds, items, strict=True):
        mdp = sample_mdp(np.random.default_rng(int(seed)), prior)
        scores.append(_normalized_value(mdp, greedy_logits(net, feats)))
    river = envs.make("riverswim")
    rng = np.random.default_rng(0)
    uniform = np.full((river.horizon, river.n_states, river.n_actions), 0.5)
    stats = rollout(river, uniform, 20, rng)
    river_score = _normalized_value(
        river, greedy_logits(net, build_features(stats, river.horizon, max_successors)))
    return {"val_normalized_value": float(np.mean(scores)), "riverswim_normalized_value": river_score}
