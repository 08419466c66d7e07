"""Which quantized layers cost INT8 its agreement with FP32: per-layer sensitivity.

Where greedy agreement falls short, the usual remedy is mixed precision: keep the most
sensitive layers in float. This measures what that would buy. ``dequantize_nodes``
returns the Q/DQ model with chosen MatMuls reading float inputs again (the activation's
Q/DQ pair bypassed, the weight's float initializer restored from the FP32 model), so no
candidate needs a recalibration (min-max ranges are measured on the float graph). It is
not what ``quantize_int8`` writes with those nodes excluded: ONNX Runtime's quantizer
replaces a weight shared with a node it does quantize by its quantized copy for every
consumer, so an excluded node can still read INT8 weights, and agrees less with FP32 than
the same nodes dequantized here (docs/history/benchmarks.md has the figures). ``keep_float``
is that remedy for `rlfm-edge calibrate --keep-float K`: the K most sensitive nodes
dequantized this way, the bypassed Q/DQ pairs dropped.
"""

from __future__ import annotations

import copy

import numpy as np

from rlfm_edge.calibration.quantize import QUANTIZED_OPS, greedy_agreement


def quantized_linear_nodes(model) -> list[str]:
    """Names of the MatMul/Gemm nodes of a Q/DQ model that read a DequantizeLinear output."""
    producer = {out: n for n in model.graph.node for out in n.output}
    return [n.name for n in model.graph.node if n.op_type in QUANTIZED_OPS
            and any(producer.get(i) is not None and producer[i].op_type == "DequantizeLinear"
                    for i in n.input)]


def dequantize_nodes(int8_model, fp32_model, names: set[str]):
    """A copy of ``int8_model`` whose nodes ``names`` compute in float (see the module docstring)."""
    model = copy.deepcopy(int8_model)
    graph = model.graph
    producer = {out: n for n in graph.node for out in n.output}
    float_weights = {t.name: t for t in fp32_model.graph.initializer}
    present = {t.name for t in graph.initializer}
    unknown = set(names) - {n.name for n in graph.node}
    if unknown:
        raise ValueError(f"no such nodes in the int8 model: {sorted(unknown)}")
    for node in graph.node:
        if node.name not in names:
            continue
        for k, name in enumerate(node.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producer.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":  # activation: read it unquantized
                node.input[k] = q.input[0]
                continue
            weight = dq.input[0].removesuffix("_quantized")  # ORT's name for a quantized initializer
            if weight not in float_weights:
                raise ValueError(f"{node.name}: no float initializer {weight!r} in the FP32 model")
            # A Gemm's quantized bias is dequantized under the float name itself: rename the copy.
            name = weight if weight not in producer else f"{weight}_float"
            if name not in present:
                tensor = copy.deepcopy(float_weights[weight])
                tensor.name = name
                graph.initializer.append(tensor)
                present.add(name)
            node.input[k] = name
    return drop_unread(model)


def drop_unread(model):
    """``model`` without the nodes and initializers nothing reads any more (the Q/DQ pairs
    that dequantize_nodes bypasses), so a mixed-precision file carries no dead INT8 copies."""
    graph = model.graph
    while True:
        read = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if not read.intersection(n.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    for tensor in [t for t in graph.initializer if t.name not in read]:
        graph.initializer.remove(tensor)
    return model


class SessionEngine:
    """The two things ``greedy_agreement`` needs of an engine, over an in-memory ONNX model."""

    def __init__(self, model, max_states: int, max_actions: int, max_successors: int) -> None:
        from rlfm_edge.inference.onnx_backend import inference_session

        self.session = inference_session(model.SerializeToString(), "int8",
                                         providers=["CPUExecutionProvider"])
        self.max_states, self.max_actions, self.max_successors = max_states, max_actions, max_successors

    def run_padded(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, inputs)[0]


def layer_sensitivity(fp32_model, int8_model, reference, feats, progress: bool = True) -> dict[str, float]:
    """Greedy agreement with FP32 when only one node is INT8 (everything else float), per node.

    ``reference``: an FP32 engine of the same model; lower agreement = more sensitive.
    """
    from tqdm import tqdm

    names = quantized_linear_nodes(int8_model)
    dims = (reference.max_states, reference.max_actions, reference.max_successors)
    out = {}
    for name in tqdm(names, desc="per-layer sensitivity", disable=not progress):
        engine = SessionEngine(dequantize_nodes(int8_model, fp32_model, set(names) - {name}), *dims)
        n = greedy_agreement(reference, engine, feats)
        out[name] = n["agree"] / n["total"]
    return out


def keep_float(model_dir, int8_model, qspec: dict, k: int, mdps: int = 100, seed: int = 1234,
               progress: bool = True) -> tuple:
    """``int8_model`` (of ``model_dir``'s verified ``model.onnx``, described by ``qspec``) with
    its ``k`` most sensitive MatMuls in float (mixed precision), ranked by ``layer_sensitivity``
    on ``mdps`` prior MDPs of ``seed``; returns the model and its description, unwritten."""
    import onnx

    from rlfm_edge.calibration.calibset import prior_features
    from rlfm_edge.inference.onnx_backend import OnnxRuntimeEngine

    n_quantized = len(quantized_linear_nodes(int8_model))
    if isinstance(k, bool) or not 0 <= k <= n_quantized:
        raise ValueError(f"keep float: expected 0 to {n_quantized} (the INT8 MatMuls of the "
                         f"model), got {k!r}")
    if mdps < 1:
        raise ValueError(f"keep float: ranking needs at least 1 prior MDP, got {mdps}")
    fp32 = OnnxRuntimeEngine(model_dir, providers=["CPUExecutionProvider"])  # as the candidates run
    fp32_model = onnx.load(str(fp32.path))
    feats = prior_features(mdps, seed, fp32.max_states, fp32.max_actions, fp32.max_successors)
    alone = layer_sensitivity(fp32_model, int8_model, fp32, feats, progress)
    kept = sorted(alone, key=alone.get)[:k]
    quantization = {**qspec["quantization"], "float_nodes": qspec["quantization"]["float_nodes"] + kept,
                    "mixed_precision": {"kept_float": kept, "ranked_on_prior_mdps": mdps, "seed": seed}}
    return dequantize_nodes(int8_model, fp32_model, set(kept)), {**qspec, "quantization": quantization}
