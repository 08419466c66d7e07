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

_MASKED = -1e4  # added to masked attention scores: exp() underflows to 0, finite in fp16
PAD_LOGIT = -1e4  # logit of padded actions: exp() is exactly 0 in fp16 and fp32


def _gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B, N, D), index (B, M, K) -> (B, M, K, D); one row gather (ONNX Gather)."""
    B, N, D = x.shape
    _, M, K = index.shape
    offsets = (torch.arange(B, device=x.device) * N).reshape(B, 1, 1)
    rows = x.reshape(B * N, D).index_select(0, (index + offsets).reshape(-1))
    return rows.reshape(B, M, K, D)


def _project(conv: GATConv, x_src: torch.Tensor) -> torch.Tensor:
    """[source projection | its attention score], computed once per node before gathering."""
    H, C = conv.heads, conv.out_channels
    src = conv.lin_src(x_src)
    score = (src.unflatten(-1, (H, C)) * conv.att_src).sum(-1)
    return torch.cat([src, score], dim=-1)


def _attend(conv: GATConv, projected: torch.Tensor, x_dst: torch.Tensor, mask: torch.Tensor,
            mask_bias: torch.Tensor, edge_attr: torch.Tensor | None) -> torch.Tensor:
    """GATConv for destinations x_dst (B, M, D) over K sources per destination.

    ``projected`` (B, M, K, H*C + H) is _project's output, gathered; ``mask`` and
    ``mask_bias`` (B, M, K, 1) are 1/0 and 0/_MASKED per slot. The edge term
    lin_edge -> att_edge is linear, so it is folded into one (E, H) matrix. The weighted
    sum over slots is a batched MatMul.
    """
    H, C = conv.heads, conv.out_channels
    B, M, K, _ = projected.shape
    src, src_score = projected[..., : H * C], projected[..., H * C:]
    dst_score = (conv.lin_dst(x_dst).unflatten(-1, (H, C)) * conv.att_dst).sum(-1)
    alpha = src_score + dst_score.unsqueeze(2)
    if edge_attr is not None:
        fold = (conv.lin_edge.weight.t().unflatten(-1, (H, C)) * conv.att_edge).sum(-1)
        alpha = alpha + edge_attr @ fold
    alpha = torch.softmax(F.leaky_relu(alpha, conv.negative_slope) + mask_bias, dim=2) * mask
    out = (alpha.unsqueeze(-1) * src.unflatten(-1, (H, C))).sum(2)
    return out.reshape(B, M, H * C) + conv.bias


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

    def _layer(self, layer: BackupLayer, h_s, h_sa, succ_index, succ_attr, succ_p, succ_mask,
               succ_bias, own_mask, own_bias):
        B, Smax, d = h_s.shape
        A = h_sa.size(1) // Smax
        # One gather brings each successor's embedding, projection and attention score.
        gathered = _gather_rows(torch.cat([h_s, _project(layer.succ_att, h_s)], dim=-1), succ_index)
        att = _attend(layer.succ_att, gathered[..., d:], h_sa, succ_mask, succ_bias, succ_attr)
        mean = _weighted_sum(layer.succ_mean, gathered[..., :d], h_sa, succ_p)
        h_sa = layer.sa_norm(h_sa + layer.sa_mlp(torch.cat([h_sa, att, mean], dim=-1)))
        own_src = _project(layer.own_att, h_sa).reshape(B, Smax, A, -1)
        own = _attend(layer.own_att, own_src, h_s, own_mask, own_bias, None)
        h_s = layer.s_norm(h_s + layer.s_mlp(torch.cat([h_s, own], dim=-1)))
        return h_s, h_sa

    def forward(self, state_x, sa_x, succ_index, succ_attr, succ_mask, sa_mask):
        net = self.net
        B, Smax, _ = state_x.shape
        A = sa_x.size(1) // Smax
        succ_mask4 = succ_mask.unsqueeze(-1)
        own_mask4 = sa_mask.reshape(B, Smax, A, 1)
        masks = (succ_attr[..., 0] * succ_mask, succ_mask4, (1 - succ_mask4) * _MASKED,
                 own_mask4, (1 - own_mask4) * _MASKED)
        h_s = net.state_in(state_x)
        h_sa = net.sa_in(sa_x)
        for layer in net.layers:
            h_s, h_sa = self._layer(layer, h_s, h_sa, succ_index, succ_attr, *masks)
        owner = h_s.unsqueeze(2).expand(B, Smax, A, h_s.size(-1)).reshape(B, Smax * A, -1)
        logits = net.head(torch.cat([h_sa, owner], dim=-1)).squeeze(-1)
        logits = logits * sa_mask + (1 - sa_mask) * PAD_LOGIT
        return logits.reshape(B, Smax, A)
