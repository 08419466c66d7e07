"""The same GAT on padded tensors: what is exported to ONNX and TensorRT.

PyG's GATConv relies on scatter-softmax, which exports poorly (pyg-team/pytorch_geometric
#728, #8415); this twin computes the very same function with gathers and masked softmax
over K successor slots and the actions of each state. tests/test_model.py pins the two.

The layout is chosen for CPU runtimes, where a refresh is bound by passes over the
(rows, K, ·) slot tensors rather than by arithmetic. Three choices keep those passes few:

- Everything linear after an attention sum is folded into one weight at construction.
  The two successor messages (GATConv's per-head ``lin_src`` slices, GraphConv's
  ``lin_rel``) and the part of the (s, a) MLP's first Linear that reads them compose into
  one ((1+H)·d, d) matrix; so do the own-action attention and the state MLP. A layer then
  gathers the d-wide state rows once, sums its slots with one batched MatMul (P̂ for the
  mean, α per head) and applies one MatMul to the sums.
- Attention logits are laid out (rows, heads, slots), so each softmax runs over the last,
  contiguous axis.
- Sizes are read from the inputs (batch, S, A): an export with dynamic S and A costs what
  the robot's own statistics need, not the padded maximum.

The folded weights are a snapshot of the network's parameters when the twin is built.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import GATConv

from rlfm_edge.model.gat import BackupLayer, PolicyGAT

_MASKED = -1e4  # added to masked attention scores: exp() underflows to 0, finite in fp16
PAD_LOGIT = -1e4  # logit of padded actions: exp() is exactly 0 in fp16 and fp32


def _score_weight(weight: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
    """(H*C, D) linear weight and (1, H, C) attention vector -> (D, H): x @ it = per-head score."""
    H, C = att.shape[-2:]
    return (weight.t().unflatten(-1, (H, C)) * att).sum(-1)


def _per_head_then(lin_src: torch.Tensor, heads: int, after: torch.Tensor) -> torch.Tensor:
    """GATConv's per-head message map followed by ``after``, the (out, H*C) slice of the next
    Linear that reads the concatenated heads: (H*D, out), row block h maps head h's sum."""
    C = lin_src.size(0) // heads
    return torch.cat([lin_src[h * C:(h + 1) * C].t() @ after[:, h * C:(h + 1) * C].t()
                      for h in range(heads)])


def _gelu(x: torch.Tensor) -> torch.Tensor:
    """nn.GELU (exact, erf). Exported as x * (1 + erf(x / sqrt 2)) * 0.5, the operand order
    ONNX Runtime fuses into one Gelu kernel (torch's own export of it stays five nodes)."""
    if torch.compiler.is_exporting():
        return x * (1 + torch.erf(x / math.sqrt(2))) * 0.5
    return F.gelu(x)


def _softmax(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis, written out: torch's own kernel is several times slower
    on rows as short as a state's actions or a pair's successor slots."""
    e = torch.exp(x - x.amax(dim=-1, keepdim=True))
    return e / e.sum(dim=-1, keepdim=True)


def _softmax_slots(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(rows, heads*K) head-major logits, K static -> (rows, heads, K), a softmax per head.
    Exported as exp, a max and MatMuls by 0/1 matrices, which ONNX Runtime runs faster than
    its Softmax kernel on rows this short."""
    R, HK = x.shape
    by_head = x.reshape(R, heads, HK // heads)
    if not torch.compiler.is_exporting():
        return _softmax(by_head)
    spread = torch.eye(heads, dtype=x.dtype, device=x.device).repeat_interleave(HK // heads, dim=1)
    e = torch.exp(x - by_head.amax(dim=-1) @ spread)
    return (e * ((1 / (e @ spread.t())) @ spread)).reshape(R, heads, HK // heads)


def _mlp(mlp: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """gat._mlp's Linear, GELU, Linear."""
    return mlp[2](_gelu(mlp[0](x)))


class _FoldedLayer(nn.Module):
    """One BackupLayer's weights, composed where a linear map follows another."""

    def __init__(self, layer: BackupLayer) -> None:
        super().__init__()
        succ: GATConv = layer.succ_att
        own: GATConv = layer.own_att
        mean = layer.succ_mean
        d = layer.sa_norm.normalized_shape[0]
        self.heads, self.slope = succ.heads, succ.negative_slope
        self.own_slope = own.negative_slope
        with torch.no_grad():
            w1 = layer.sa_mlp[0].weight                    # reads [h_sa | att | mean]
            w_sa, w_att, w_mean = w1[:, :d], w1[:, d:2 * d], w1[:, 2 * d:]
            self.register_buffer("succ_src", _score_weight(succ.lin_src.weight, succ.att_src), False)
            self.register_buffer("succ_dst", _score_weight(succ.lin_dst.weight, succ.att_dst), False)
            self.register_buffer("succ_edge", _score_weight(succ.lin_edge.weight, succ.att_edge), False)
            self.register_buffer("sa_msg", torch.cat([
                mean.lin_rel.weight.t() @ w_mean.t(),
                _per_head_then(succ.lin_src.weight, succ.heads, w_att)]), False)
            self.register_buffer("sa_root", w_sa.t() + mean.lin_root.weight.t() @ w_mean.t(), False)
            self.register_buffer("sa_bias", layer.sa_mlp[0].bias + succ.bias @ w_att.t()
                                 + mean.lin_rel.bias @ w_mean.t(), False)
            w1s = layer.s_mlp[0].weight                    # reads [h_s | own]
            self.register_buffer("own_src", _score_weight(own.lin_src.weight, own.att_src), False)
            self.register_buffer("own_dst", _score_weight(own.lin_dst.weight, own.att_dst), False)
            self.register_buffer("s_msg", _per_head_then(own.lin_src.weight, own.heads, w1s[:, d:]), False)
            self.register_buffer("s_root", w1s[:, :d].t().contiguous(), False)
            self.register_buffer("s_bias", layer.s_mlp[0].bias + own.bias @ w1s[:, d:].t(), False)


class DenseGAT(nn.Module):
    """Padded twin of PolicyGAT, computing its function from folded copies of its weights.

    Inputs as in rlfm_edge.model.features.DenseInputs, of any (batch, S, A); output
    logits (batch, S, A) with padded actions set to PAD_LOGIT.
    """

    def __init__(self, net: PolicyGAT) -> None:
        super().__init__()
        self.net = net
        self.folded = nn.ModuleList(_FoldedLayer(layer) for layer in net.layers)

    def _successors(self, layer: BackupLayer, f: _FoldedLayer, h_s, h_sa, rows, edge_hk, p, bias_hk):
        """(s, a) <- s': both messages and the (s, a) MLP; h_s (B*S, d), h_sa (B*M, d) -> h_sa."""
        BM, H = h_sa.size(0), f.heads
        K = rows.size(0) // BM
        d = h_s.size(-1)
        # Empty slots gather the zero row appended to the states, so a pair with no edges sums
        # to exactly 0 whatever its (uniform) attention weights.
        table = torch.cat([h_s, h_s.new_zeros(1, d)])
        gathered = table.index_select(0, rows).reshape(BM, K, d)
        # Logits (B*M, H*K), head-major: source score of each slot's state (scored on the
        # state rows, then gathered) + edge term + destination score (tiled over slots). The
        # mask goes in before LeakyReLU, which keeps a masked slot's score hopeless (about
        # -2000), and each sum is written "x @ W + c" so that ONNX Runtime fuses it into a Gemm.
        src = (table @ f.succ_src).index_select(0, rows).reshape(BM, K, H).transpose(1, 2).reshape(BM, H * K)
        edge = torch.kron(f.succ_edge, torch.eye(K, dtype=h_s.dtype, device=h_s.device))
        logits = h_sa @ f.succ_dst.repeat_interleave(K, dim=1) + (edge_hk @ edge + (src + bias_hk))
        alpha = _softmax_slots(F.leaky_relu(logits, f.slope), H)
        sums = (torch.cat([p, alpha], dim=1) @ gathered).reshape(BM, (1 + H) * d)
        pre = sums @ f.sa_msg + (h_sa @ f.sa_root + f.sa_bias)
        mlp = layer.sa_mlp
        return layer.sa_norm(h_sa + mlp[2](_gelu(pre)))

    def _actions(self, layer: BackupLayer, f: _FoldedLayer, h_s, h_sa, own_mask, own_bias):
        """s <- its actions (s, a): attention over the action slots and the state MLP -> h_s."""
        BS, d = h_s.shape
        H = f.heads
        A = h_sa.size(0) // BS
        src = (h_sa @ f.own_src).reshape(BS, A, H).transpose(1, 2)
        logits = F.leaky_relu(src + ((h_s @ f.own_dst).unsqueeze(-1) + own_bias), f.own_slope)
        # A is dynamic in the export, where ONNX's Softmax runs it.
        alpha = torch.softmax(logits, dim=-1) if torch.compiler.is_exporting() else _softmax(logits)
        alpha = alpha * own_mask
        sums = (alpha @ h_sa.reshape(BS, A, d)).reshape(BS, H * d)
        pre = sums @ f.s_msg + (h_s @ f.s_root + f.s_bias)
        mlp = layer.s_mlp
        return layer.s_norm(h_s + mlp[2](_gelu(pre)))

    def forward(self, state_x, sa_x, succ_index, succ_attr, succ_mask, sa_mask):
        net = self.net
        B, S, A, K = succ_index.shape
        H = net.config.heads
        # Gather rows into the (B*S, d) state table; the slot sum's P̂ weights and the mask's
        # score bias, laid out like the attention weights (rows B*M, then heads, then slots).
        offsets = (torch.arange(B, device=succ_index.device) * S).reshape(B, 1, 1, 1)
        rows = torch.where(succ_mask > 0, succ_index + offsets, B * S).reshape(-1)  # B*S: the zero row
        mask = succ_mask.reshape(-1, K)
        p = (succ_attr[..., 0].reshape(-1, K) * mask).unsqueeze(1)
        bias_hk = ((1 - mask) * _MASKED).repeat(1, H)
        n_edge = succ_attr.size(-1)
        edge_hk = succ_attr.reshape(-1, K, n_edge).transpose(1, 2).reshape(-1, K * n_edge)
        own_mask = sa_mask.reshape(B * S, 1, A)
        own_bias = (1 - own_mask) * _MASKED
        h_s = _mlp(net.state_in, state_x.reshape(B * S, -1))
        h_sa = _mlp(net.sa_in, sa_x.reshape(B * S * A, -1))
        for layer, f in zip(net.layers, self.folded, strict=True):
            h_sa = self._successors(layer, f, h_s, h_sa, rows, edge_hk, p, bias_hk)
            h_s = self._actions(layer, f, h_s, h_sa, own_mask, own_bias)
        first, last = net.head[0], net.head[2]
        d = h_s.size(-1)
        # The head's first Linear on [h_sa | owner state] splits; the state half runs on S rows.
        owner = (h_s @ first.weight[:, d:].t() + first.bias).unsqueeze(1)
        hidden = ((h_sa @ first.weight[:, :d].t()).reshape(B * S, A, d) + owner)
        logits = last(_gelu(hidden)).reshape(B, S, A)
        return logits * sa_mask + (1 - sa_mask) * PAD_LOGIT
