"""The same GAT on padded, static-shape tensors: what is exported to ONNX and TensorRT.

PyG's GATConv relies on scatter-softmax, which exports poorly (pyg-team/pytorch_geometric
#728, #8415); this twin reads the very same parameters and computes each layer with
gathers and masked softmax over fixed K successor slots and Amax actions.
tests/test_model.py pins the two together.

The layout is chosen for CPU runtimes, where the cost is elementwise passes over the
(B, Smax*Amax, K, ·) slot tensors, not FLOPs (ONNX Runtime spent 70% of a refresh in
broadcast Mul/Add/Split there). So the attention scores are computed on the Smax state
rows before the gather, attention logits live in one flat (…, K*H) row built by MatMuls
with tiled weights (no broadcasting over small inner dimensions), and a layer gathers the
d-wide state rows once and sums its slots with one batched MatMul before any linear map.
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


def _score_weight(weight: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
    """(H*C, D) linear weight and (1, H, C) attention vector -> (D, H): x @ it = per-head score."""
    H, C = att.shape[-2:]
    return (weight.t().unflatten(-1, (H, C)) * att).sum(-1)


def _spread(heads: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """(heads, heads*width) 0/1 matrix (``like``'s dtype and device): weights per head @ it =
    the same weight on each of its columns."""
    return torch.eye(heads, dtype=like.dtype, device=like.device).repeat_interleave(width, dim=1)


def _softmax_slots(logits: torch.Tensor, mask: torch.Tensor, heads: int) -> torch.Tensor:
    """Masked softmax over slots of flat (..., slots*heads) logits and 0/1 mask -> (..., slots, heads)."""
    logits = (logits + (1 - mask) * _MASKED).unflatten(-1, (-1, heads))
    return torch.softmax(logits, dim=-2) * mask.unflatten(-1, (-1, heads))


def _per_head(mask: torch.Tensor, heads: int) -> torch.Tensor:
    """(..., slots) 0/1 mask -> (..., slots*heads), a MatMul (an Expand over a small inner
    dimension is several times slower in ONNX Runtime)."""
    return mask @ _spread(mask.size(-1), heads, mask)


class DenseGAT(nn.Module):
    """Padded twin of PolicyGAT sharing its parameters.

    Any padded size works (Smax and Amax are read from the input shapes). Inputs as in
    rlfm_edge.model.features.DenseInputs; output logits (B, Smax, Amax) with padded
    actions set to PAD_LOGIT.
    """

    def __init__(self, net: PolicyGAT) -> None:
        super().__init__()
        self.net = net

    def _successors(self, layer: BackupLayer, h_s, h_sa, succ_index, succ_attr_flat, slot_p,
                    slot_mask):
        """Both (s, a) <- s' messages: GATConv attention and the P̂-weighted GraphConv sum."""
        att: GATConv = layer.succ_att
        mean: GraphConv = layer.succ_mean
        B, M, K = succ_index.shape
        H, C = att.heads, att.out_channels
        d = h_s.size(-1)
        # Logits (B, M, K*H): source score (per state, gathered) + destination (tiled over
        # slots) + edge term (block-diagonal).
        src_score = _gather_rows(h_s @ _score_weight(att.lin_src.weight, att.att_src), succ_index)
        w_dst = _score_weight(att.lin_dst.weight, att.att_dst).repeat(1, K)
        w_edge = torch.block_diag(*[_score_weight(att.lin_edge.weight, att.att_edge)] * K)
        logits = src_score.reshape(B, M, K * H) + h_sa @ w_dst + succ_attr_flat @ w_edge
        alpha = _softmax_slots(F.leaky_relu(logits, att.negative_slope), slot_mask, H)
        # Both messages are linear in the successor rows, so the slots are summed first (P̂
        # for the mean, α_h per head: one small batched MatMul over the gathered rows) and
        # the linear maps run once on the sums: lin_rel on the first, head h's slice of
        # lin_src on the others (a block-diagonal weight).
        weights = torch.cat([slot_p.unsqueeze(-1), alpha], dim=-1)          # (B, M, K, 1+H)
        sums = weights.transpose(-1, -2) @ _gather_rows(h_s, succ_index)   # (B, M, 1+H, d)
        per_head = att.lin_src.weight.unflatten(0, (H, C))
        maps = torch.block_diag(mean.lin_rel.weight.t(), *(w.t() for w in per_head))
        out = sums.reshape(B, M, (1 + H) * d) @ maps
        mean_out = out[..., :d] + mean.lin_rel.bias + mean.lin_root(h_sa)
        return out[..., d:] + att.bias, mean_out

    def _actions(self, layer: BackupLayer, h_s, h_sa, own_mask):
        """s <- its actions (s, a): GATConv attention over the Amax action slots."""
        att: GATConv = layer.own_att
        B, S, d = h_s.shape
        H, C = att.heads, att.out_channels
        A = h_sa.size(1) // S
        src = (h_sa @ att.lin_src.weight.t()).reshape(B, S, A, H * C)
        src_score = (h_sa @ _score_weight(att.lin_src.weight, att.att_src)).reshape(B, S, A * H)
        logits = src_score + h_s @ _score_weight(att.lin_dst.weight, att.att_dst).repeat(1, A)
        alpha = _softmax_slots(F.leaky_relu(logits, att.negative_slope), own_mask, H)
        return ((alpha @ _spread(H, C, h_s)) * src).sum(2) + att.bias

    def forward(self, state_x, sa_x, succ_index, succ_attr, succ_mask, sa_mask):
        net = self.net
        B, Smax, _ = state_x.shape
        M, K = succ_index.shape[1:]
        A = M // Smax
        H = net.layers[0].succ_att.heads
        slot_mask = _per_head(succ_mask, H)                       # (B, M, K*H)
        own_mask = _per_head(sa_mask.reshape(B, Smax, A), H)      # (B, Smax, A*H)
        slot_p = succ_attr[..., 0] * succ_mask
        succ_attr_flat = succ_attr.reshape(B, M, -1)
        h_s = net.state_in(state_x)
        h_sa = net.sa_in(sa_x)
        for layer in net.layers:
            att, mean = self._successors(layer, h_s, h_sa, succ_index, succ_attr_flat, slot_p,
                                         slot_mask)
            h_sa = layer.sa_norm(h_sa + layer.sa_mlp(torch.cat([h_sa, att, mean], dim=-1)))
            own = self._actions(layer, h_s, h_sa, own_mask)
            h_s = layer.s_norm(h_s + layer.s_mlp(torch.cat([h_s, own], dim=-1)))
        first, rest = net.head[0], net.head[1:]
        d = h_s.size(-1)
        # The head's first Linear on [h_sa | owner state] splits; the state half runs on Smax rows.
        owner = (h_s @ first.weight[:, d:].t()).unsqueeze(2).expand(B, Smax, A, -1).reshape(B, M, -1)
        logits = rest(h_sa @ first.weight[:, :d].t() + owner + first.bias).squeeze(-1)
        logits = logits * sa_mask + (1 - sa_mask) * PAD_LOGIT
        return logits.reshape(B, Smax, A)
