"""Cross-entropy between per-state Boltzmann targets and per-state policy logits on PyG batches."""

from __future__ import annotations

import torch
from torch_geometric.utils import scatter


def group_log_softmax(x: torch.Tensor, group: torch.Tensor, n_groups: int) -> torch.Tensor:
    """log softmax of x within each group (here: the actions of one state)."""
    m = scatter(x, group, dim=0, dim_size=n_groups, reduce="max").detach()
    z = x - m[group]
    lse = torch.log(scatter(z.exp(), group, dim=0, dim_size=n_groups, reduce="sum"))
    return z - lse[group]


def boltzmann_cross_entropy(logits: torch.Tensor, q_scaled: torch.Tensor, group: torch.Tensor,
                            n_groups: int, tau: float,
                            group_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over states of H(softmax(q/tau), softmax(logits)), or its weighted sum when
    group_weight gives each state's weight (weights summing to 1)."""
    target = group_log_softmax(q_scaled / tau, group, n_groups).exp()
    logp = group_log_softmax(logits, group, n_groups)
    if group_weight is None:
        return -(target * logp).sum() / n_groups
    per_state = scatter(target * logp, group, dim=0, dim_size=n_groups, reduce="sum")
    return -(per_state * group_weight).sum()
