"""Explicit INT8: ONNX Runtime static quantization in QDQ format, for ORT and TensorRT alike.

Only the linear layers (MatMul/Gemm) are quantized: they hold nearly all the weights, and
TensorRT runs exactly the Q/DQ pairs it is given. Softmax, LayerNormalization, GELU's Erf
and the attention sums stay in float, where int8 would cost accuracy for no gain; so do
the MatMuls by a 0/1 matrix (the dense twin spreads masks and attention weights over
columns that way: their inputs are probabilities) and those of two activations (the slot
sums: attention weights and P̂ times the gathered state rows), the layers reading the raw features
(graph inputs, reshaped or not), whose columns (log counts, probabilities, flags) share no
scale, and the policy head (its last three MatMuls, whose output is the logits themselves:
keeping it in float raised greedy agreement on prior statistics, measured with
benchmarks/int8_agreement.py; docs/history/benchmarks.md has the figures). Scales
are symmetric (zero point 0), the only form TensorRT accepts. Each quantized input gets
its own Q/DQ pair and MatMul outputs are not quantized, so residual sums and LayerNorm see
float values. Per-tensor weight scales gave better greedy-action agreement than
per-channel on the quick model, hence the default.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from rlfm_edge.atomic import atomic_write_bytes
from rlfm_edge.inference.base import DEFAULT_TEMPERATURE, action_probabilities
from rlfm_edge.inference.onnx_backend import ONNX_FILES, read_spec
from rlfm_edge.model.io import sha256_file

QUANTIZED_OPS = ("MatMul", "Gemm")
MAX_INT8_BYTES = 2_000_000


class _Reader:
    """The CalibrationDataReader protocol of onnxruntime.quantization over a list of input dicts."""

    def __init__(self, samples: list[dict[str, np.ndarray]]) -> None:
        self._it = iter(samples)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def quantize_int8(model_dir: Path | str, samples: list[dict[str, np.ndarray]],
                  method: str = "minmax", per_channel: bool = False) -> dict:
    """Write ``model.int8.onnx`` (+ ``.json``) beside the verified ``model.onnx``; returns the spec."""
    return write_int8(model_dir, *quantize_qdq(model_dir, samples, method, per_channel))


def quantize_qdq(model_dir: Path | str, samples: list[dict[str, np.ndarray]],
                 method: str = "minmax", per_channel: bool = False) -> tuple:
    """The Q/DQ model of the verified ``model.onnx`` and its export description, in memory."""
    import onnx
    import onnxruntime
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise ValueError(f"method: expected one of {sorted(methods)}, got {method!r}")
    if not samples:
        raise ValueError("calibration set is empty")
    model_dir = Path(model_dir)
    src, spec = read_spec(model_dir, "fp32")
    out = model_dir / ONNX_FILES["int8"]
    graph = onnx.load(str(src)).graph
    exclude = float_linear_nodes(graph)
    root = logging.getLogger()
    level = root.level
    with tempfile.TemporaryDirectory() as tmp:
        tmp_out = Path(tmp) / out.name
        root.setLevel(logging.ERROR)  # ORT's "consider pre-processing" notice: not needed here
        try:
            quantize_static(
                str(src), str(tmp_out), _Reader(samples), quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(QUANTIZED_OPS), per_channel=per_channel,
                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                calibrate_method=methods[method], nodes_to_exclude=exclude,
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                               "DedicatedQDQPair": True,
                               "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS)},
            )
        finally:
            root.setLevel(level)
        model = unshare_quantized_activations(onnx.load(str(tmp_out)), set(exclude))
    qspec = {**spec, "precision": "int8", "source_sha256": spec["sha256"],
             "quantization": {"format": "QDQ", "ops": list(QUANTIZED_OPS), "method": method,
                              "per_channel": per_channel, "symmetric": True,
                              "samples": len(samples), "float_nodes": exclude,
                              "onnxruntime": onnxruntime.__version__}}
    qspec.pop("parity_max_abs_diff", None)
    return model, qspec


def write_int8(model_dir: Path, model, qspec: dict) -> dict:
    """Check a Q/DQ ``model``, hold it to the size budget, write it atomically as
    ``model.int8.onnx`` with its description ``qspec`` (completed here); returns the spec."""
    import onnx

    from rlfm_edge.training.export import write_spec

    onnx.checker.check_model(model)
    data = model.SerializeToString()
    out = Path(model_dir) / ONNX_FILES["int8"]
    if len(data) > MAX_INT8_BYTES:
        raise RuntimeError(f"{out}: the int8 model is {len(data) / 1e6:.2f} MB, over the "
                           f"{MAX_INT8_BYTES / 1e6:.0f} MB budget; export a smaller model")
    atomic_write_bytes(out, data)
    qspec = {**qspec, "file": out.name, "sha256": sha256_file(out), "bytes": len(data)}
    qspec["quantization"]["qdq_nodes"] = sum(n.op_type == "QuantizeLinear" for n in model.graph.node)
    write_spec(Path(model_dir), qspec)
    return qspec


def unshare_quantized_activations(model, float_nodes: set[str]):
    """``model`` with every node but the quantized MatMul/Gemm (``float_nodes`` are kept in
    float) reading the float activation itself where it read a quantized copy: ONNX
    Runtime's quantizer lets the other readers of an activation that a MatMul quantizes (the
    gather of the state rows, a reshape, an excluded MatMul) share its Q/DQ pair, which would
    put INT8 error where the module docstring keeps float."""
    graph = model.graph
    producer = {out: n for n in graph.node for out in n.output}
    for node in graph.node:
        if node.op_type in QUANTIZED_OPS and node.name not in float_nodes:
            continue
        for k, name in enumerate(node.input):
            dq = producer.get(name)
            q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[k] = q.input[0]
    return model


def float_linear_nodes(graph) -> list[str]:
    """Names of the MatMul/Gemm nodes kept in float (see the module docstring for why)."""
    import onnx

    raw = {i.name for i in graph.input}
    for node in graph.node:  # a Reshape/Transpose/Unsqueeze/Flatten of an input is still raw features
        if node.op_type in ("Reshape", "Transpose", "Unsqueeze", "Flatten") and node.input[0] in raw:
            raw.update(node.output)
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    zero_one = {name for name, w in weights.items() if np.isin(w, (0, 1)).all()}
    linear = [n for n in graph.node if n.op_type in QUANTIZED_OPS]  # in topological order
    keep = {n.name for n in linear
            if n.input[0] in raw or n.input[1] in zero_one or n.input[1] not in weights}
    keep.update(head_linear_nodes(graph))
    return [n.name for n in linear if n.name in keep]


def head_linear_nodes(graph) -> set[str]:
    """Names of the policy head's MatMul/Gemm nodes: the last Linear before the logits and
    those feeding its input (the first Linear, split into its (s, a) and state halves),
    found by walking back from the output through the other nodes."""
    producer = {out: n for n in graph.node for out in n.output}
    head: set[str] = set()
    frontier = [o.name for o in graph.output]
    for _ in range(2):  # two Linear layers deep
        found, seen = [], set()
        while frontier:
            node = producer.get(frontier.pop())
            if node is None or node.name in seen or node.op_type == "Shape":  # a shape is not a value
                continue
            seen.add(node.name)
            if node.op_type in QUANTIZED_OPS:
                found.append(node)
            else:
                frontier.extend(node.input)
        head.update(n.name for n in found)
        frontier = [i for n in found for i in n.input]
    return head


def greedy_agreement(reference, other, feats, clear_gap: float = 0.05,
                     temperature: float = DEFAULT_TEMPERATURE, pad_to: tuple[int, int] | None = None) -> dict:
    """How often ``other``'s greedy action is ``reference``'s, over the visited states of ``feats``.

    Both are engines of one model with ``run_padded`` (ONNX Runtime, torch, TensorRT), e.g.
    FP32 and INT8. Also counted apart: states where the reference's top-2 logits differ by
    at least ``clear_gap`` (near-ties flip under any noise); ``max_abs_diff`` is the largest
    logit difference on a visited state. The agent samples rather than takes the argmax, so
    ``mean_tv`` is what it feels: the total-variation distance between the two action
    distributions at ``temperature`` (the agent's before annealing), averaged over the visited states.
    Each example is padded to its own size (padding changes no logit, FP32 or INT8), or to
    ``pad_to`` (S, A) for an engine that runs one size only (a torch CUDA graph).
    """
    from rlfm_edge.calibration.calibset import calibration_inputs

    out = {"agree": 0, "total": 0, "clear_agree": 0, "clear_total": 0, "max_abs_diff": 0.0, "tv_sum": 0.0}
    for g in feats:
        (x,) = calibration_inputs([g], *(pad_to or (g.n_states, g.n_actions)), reference.max_successors)
        la = reference.run_padded(x)[0, :g.n_states, :g.n_actions]
        lb = other.run_padded(x)[0, :g.n_states, :g.n_actions]
        same = la.argmax(1) == lb.argmax(1)
        top2 = np.sort(la, axis=1)[:, -2:]
        visited = g.state_x[:, 2] > 0
        clear = visited & (top2[:, 1] - top2[:, 0] >= clear_gap)
        pa, pb = action_probabilities(la, temperature), action_probabilities(lb, temperature)
        tv = 0.5 * np.abs(pa - pb).sum(1)
        out["agree"] += int(same[visited].sum())
        out["total"] += int(visited.sum())
        out["clear_agree"] += int(same[clear].sum())
        out["clear_total"] += int(clear.sum())
        out["tv_sum"] += float(tv[visited].sum())
        out["max_abs_diff"] = max(out["max_abs_diff"], float(np.abs(la - lb)[visited].max(initial=0.0)))
    out["mean_tv"] = out.pop("tv_sum") / max(out["total"], 1)
    return out
