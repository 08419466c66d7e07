"""The same GAT on padded, static-shape tensors: what is exported to ONNX and TensorRT.

PyG's GATConv relies on scatter-softmax, which exports poorly (pyg-team/pytorch_geometric
#728, #8415); this twin reads the very same parameters and computes each layer with
gathers and masked softmax over fixed K successor slots and Amax actions.
tests/test_model_dense.py pins the two together.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import GATConv, GraphConv

from rlfm_edge.model.gat import BackupLayer, PolicyGAT

_MASKED = -1e9
PAD_LOGIT = -1e4  # logit of padded actions: exp() is exactly 0 in fp16 and fp32


def _gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B, N, D), index (B, M, K) -> (B, M, K, D); one row gather (ONNX Gather)."""
    B, N, D = x.shape
    _, M, K = index.shape
    offsets = (torch.arange(B, device=x.device) * N).reshape(B, 1, 1)
    rows = x.reshape(B * N, D).index_select(0, (index + offsets).reshape(-1))
    return rows.reshape(B, M, K, D)


def _project(conv: GATConv, x_src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Source projection and its attention score, computed once per node before gathering."""
    H, C = conv.heads, conv.out_channels
    src = conv.lin_src(x_src)
    score = (src.unflatten(-1, (H, C)) * conv.att_src).sum(-1)
    return src, score


def _attend(conv: GATConv, src: torch.Tensor, src_score: torch.Tensor, x_dst: torch.Tensor,
            mask: torch.Tensor, edge_attr: torch.Tensor | None) -> torch.Tensor:
    """GATConv for destinations x_dst (B, M, D) over K projected sources per destination.

    src (B, M, K, H*C) and src_score (B, M, K, H) come from _project, then a gather.
    The edge term lin_edge -> att_edge is linear, so it is folded into one (E, H) matrix.
    """
    H, C = conv.heads, conv.out_channels
    B, M, K, _ = src.shape
    dst_score = (conv.lin_dst(x_dst).unflatten(-1, (H, C)) * conv.att_dst).sum(-1)
    alpha = src_score + dst_score.unsqueeze(2)
    if edge_attr is not None:
        fold = (conv.lin_edge.weight.t().unflatten(-1, (H, C)) * conv.att_edge).sum(-1)
        alpha = alpha + edge_attr @ fold
    alpha = F.leaky_relu(alpha, conv.negative_slope)
    m = mask.unsqueeze(-1)
    alpha = torch.softmax(alpha.masked_fill(m == 0, _MASKED), dim=2) * m
    out = (alpha.unsqueeze(-1) * src.unflatten(-1, (H, C))).sum(2).reshape(B, M, H * C)
    return out + conv.bias


def _weighted_sum(conv: GraphConv, x_src: torch.Tensor, x_dst: torch.Tensor,
                  weight: torch.Tensor) -> torch.Tensor:
    """GraphConv with aggr='add': lin_rel(sum_k w_k x_k) + lin_root(x_dst)."""
    agg = (weight.unsqueeze(-1) * x_src).sum(2)
    return conv.lin_rel(agg) + conv.lin_root(x_dst)


class DenseGAT(nn.Module):
    """Padded twin of PolicyGAT sharing its parameters.

    Any padded size works (Smax and Amax are read from the input shapes). Inputs as in
    rlfm_edge.model.features.DenseInputs; output logits (B, Smax, Amax) with padded
    actions set to PAD_LOGIT.
    """

    def __init__(self, net: PolicyGAT) -> None:
        super().__init__()
        self.net = net

    def _layer(self, layer: BackupLayer, h_s, h_sa, succ_index, succ_attr, succ_mask, sa_mask):
        B, Smax, d = h_s.shape
        A = h_sa.size(1) // Smax
        src, score = _project(layer.succ_att, h_s)
        att = _attend(layer.succ_att, _gather_rows(src, succ_index),
                      _gather_rows(score, succ_index), h_sa, succ_mask, succ_attr)
        mean = _weighted_sum(layer.succ_mean, _gather_rows(h_s, succ_index), h_sa,
                             succ_attr[..., 0] * succ_mask)
        h_sa = layer.sa_norm(h_sa + layer.sa_mlp(torch.cat([h_sa, att, mean], dim=-1)))
        src, score = _project(layer.own_att, h_sa)
        own = _attend(layer.own_att, src.reshape(B, Smax, A, -1), score.reshape(B, Smax, A, -1),
                      h_s, sa_mask.reshape(B, Smax, A), None)
        h_s = layer.s_norm(h_s + layer.s_mlp(torch.cat([h_s, own], dim=-1)))
        return h_s, h_sa

    def forward(self, state_x, sa_x, succ_index, succ_attr, succ_mask, sa_mask):
        net = self.net
        B, Smax, _ = state_x.shape
        A = sa_x.size(1) // Smax
        h_s = net.state_in(state_x)
        h_sa = net.sa_in(sa_x)
        for layer in net.layers:
            h_s, h_sa = self._layer(layer, h_s, h_sa, succ_index, succ_attr, succ_mask, sa_mask)
        owner = h_s.unsqueeze(2).expand(B, Smax, A, h_s.size(-1)).reshape(B, Smax * A, -1)
        logits = net.head(torch.cat([h_sa, owner], dim=-1)).squeeze(-1)
        logits = torch.where(sa_mask > 0, logits, torch.full_like(logits, PAD_LOGIT))
        return logits.reshape(B, Smax, A)
