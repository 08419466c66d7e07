"""The policy GAT on variable-size graphs (PyTorch Geometric), used for training.

Each layer is one soft value-iteration backup on a bipartite graph:
  (s, a) <- successor states s'  GATConv attention (edge features P̂, log N) and a
                                 P̂-weighted sum (GraphConv), the expectation in VI;
  s      <- its actions (s, a)   GATConv attention: a learned soft max over actions.
A linear head reads policy logits from the (s, a) embeddings.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch_geometric.data import HeteroData
from torch_geometric.nn import GATConv, GraphConv

from rlfm_edge.model.config import ModelConfig
from rlfm_edge.model.features import EDGE_FEATURES, SA_FEATURES, STATE_FEATURES, GraphFeatures

SUCC = ("state", "succ", "sa")
OWN = ("sa", "own", "state")


def _mlp(d_in: int, d: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d), nn.GELU(), nn.Linear(d, d))


class BackupLayer(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        c = d // heads
        self.succ_att = GATConv((d, d), c, heads=heads, edge_dim=EDGE_FEATURES,
                                add_self_loops=False)
        self.succ_mean = GraphConv((d, d), d, aggr="add")
        self.sa_mlp = _mlp(3 * d, d)
        self.sa_norm = nn.LayerNorm(d)
        self.own_att = GATConv((d, d), c, heads=heads, add_self_loops=False)
        self.s_mlp = _mlp(2 * d, d)
        self.s_norm = nn.LayerNorm(d)

    def forward(self, h_s, h_sa, succ_index, succ_attr, succ_p, own_index):
        n_s, n_sa = h_s.size(0), h_sa.size(0)
        att = self.succ_att((h_s, h_sa), succ_index, succ_attr, size=(n_s, n_sa))
        mean = self.succ_mean((h_s, h_sa), succ_index, succ_p, size=(n_s, n_sa))
        h_sa = self.sa_norm(h_sa + self.sa_mlp(torch.cat([h_sa, att, mean], dim=-1)))
        own = self.own_att((h_sa, h_s), own_index, size=(n_sa, n_s))
        h_s = self.s_norm(h_s + self.s_mlp(torch.cat([h_s, own], dim=-1)))
        return h_s, h_sa


class PolicyGAT(nn.Module):
    """Statistics graph -> one policy logit per (s, a) node."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        d = config.hidden
        self.state_in = _mlp(STATE_FEATURES, d)
        self.sa_in = _mlp(SA_FEATURES, d)
        self.layers = nn.ModuleList(BackupLayer(d, config.heads) for _ in range(config.layers))
        self.head = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, 1))

    def forward(self, data: HeteroData) -> torch.Tensor:
        h_s = self.state_in(data["state"].x)
        h_sa = self.sa_in(data["sa"].x)
        succ = data[SUCC]
        own_index = data[OWN].edge_index
        for layer in self.layers:
            h_s, h_sa = layer(h_s, h_sa, succ.edge_index, succ.edge_attr, succ.edge_attr[:, 0],
                              own_index)
        owner = own_index[1]  # own edges are listed in (s, a) node order
        return self.head(torch.cat([h_sa, h_s[owner]], dim=-1)).squeeze(-1)


def to_graph(g: GraphFeatures) -> HeteroData:
    """A PyG graph of one MDP's features; batch with torch_geometric.data.Batch."""
    data = HeteroData()
    S, A = g.n_states, g.n_actions
    data["state"].x = torch.from_numpy(g.state_x)
    data["sa"].x = torch.from_numpy(g.sa_x)
    data[SUCC].edge_index = torch.from_numpy(np.stack([g.edge_state, g.edge_sa]))
    data[SUCC].edge_attr = torch.from_numpy(g.edge_attr)
    sa_ids = torch.arange(S * A)
    data[OWN].edge_index = torch.stack([sa_ids, sa_ids // A])
    data.n_actions = A
    return data
