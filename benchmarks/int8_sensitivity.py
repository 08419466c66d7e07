"""INT8 per-layer sensitivity of the shipped model, and what keeping layers in float buys.

    python benchmarks/int8_sensitivity.py --mdps 100 --seed 1234 --check-mdps 300 --check-seed 987654 --record

Ranks the quantized MatMuls by the greedy agreement with FP32 when each alone is INT8
(on prior statistics of ``--seed``), then keeps the k most sensitive in float and
measures the agreement on a second set (``--check-seed``, the one int8_agreement.py
records), so the ranking is not judged on the data that made it.
"""

from __future__ import annotations

import argparse
import sys

from rlfm_edge.bench.report import print_and_record
from rlfm_edge.calibration.calibset import prior_features
from rlfm_edge.calibration.quantize import greedy_agreement
from rlfm_edge.calibration.sensitivity import (
    SessionEngine,
    dequantize_nodes,
    layer_sensitivity,
    quantized_linear_nodes,
)
from rlfm_edge.inference.onnx_backend import OnnxRuntimeEngine, read_spec


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the shipped one)")
    parser.add_argument("--mdps", type=int, default=100, help="prior MDPs that rank the layers")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--check-mdps", type=int, default=300, help="prior MDPs that check the ranking")
    parser.add_argument("--check-seed", type=int, default=987654)
    parser.add_argument("--steps", type=int, default=4, help="float layers added per row of the curve")
    parser.add_argument("--record", nargs="?", const="BENCHMARKS.md", default=None)
    args = parser.parse_args()
    import onnx

    fp32 = OnnxRuntimeEngine(args.model, providers=["CPUExecutionProvider"])  # as SessionEngine runs
    int8_path, _ = read_spec(args.model, "int8")  # the file only: the surgery below builds the sessions
    fp32_model, int8_model = onnx.load(str(fp32.path)), onnx.load(str(int8_path))
    dims = (fp32.max_states, fp32.max_actions, fp32.max_successors)
    rank_feats = prior_features(args.mdps, args.seed, *dims)
    check_feats = prior_features(args.check_mdps, args.check_seed, *dims)
    alone = layer_sensitivity(fp32_model, int8_model, fp32, rank_feats)
    order = sorted(alone, key=alone.get)
    n_quantized = len(quantized_linear_nodes(int8_model))
    lines = [f"{n_quantized} MatMuls are INT8 in the shipped Q/DQ model. Ranked on the visited states "
             f"of {args.mdps} prior MDPs (seed {args.seed}) by the greedy agreement with FP32 when "
             "each alone is INT8 (the rest float); the ten most sensitive:", "",
             "| node | agreement, only it INT8 |", "|---|---|"]
    lines += [f"| {name} | {alone[name]:.1%} |" for name in order[:10]]
    insensitive = sum(v == 1.0 for v in alone.values())
    lines += ["", f"{insensitive} of {n_quantized} change no greedy action alone.", "",
              f"Keeping the k most sensitive in float, on {args.check_mdps} other prior MDPs "
              f"(seed {args.check_seed}):", "",
              "| k in float | INT8 MatMuls left | agreement, all visited | mean TV distance |",
              "|---|---|---|---|"]
    for k in sorted({*range(0, n_quantized, args.steps), n_quantized}):  # the last row: all float
        engine = SessionEngine(dequantize_nodes(int8_model, fp32_model, set(order[:k])), *dims)
        n = greedy_agreement(fp32, engine, check_feats)
        lines.append(f"| {k} | {n_quantized - k} | {n['agree']} / {n['total']} = "
                     f"{n['agree'] / n['total']:.1%} | {n['mean_tv']:.4f} |")
        print(lines[-1], flush=True)
    print_and_record("\n".join(lines), args.record, "INT8 per-layer sensitivity", __file__, sys.argv[1:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
