"""INT8 (Q/DQ) vs FP32 greedy-action agreement of the shipped model on prior statistics.

    python benchmarks/int8_agreement.py --mdps 60 --seed 987654 --record
"""

from __future__ import annotations

import argparse
import sys

from rlfm_edge.bench.report import print_and_record
from rlfm_edge.calibration.calibset import prior_features
from rlfm_edge.calibration.quantize import greedy_agreement
from rlfm_edge.inference.base import DEFAULT_TEMPERATURE
from rlfm_edge.inference.onnx_backend import OnnxRuntimeEngine


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the shipped one)")
    parser.add_argument("--mdps", type=int, default=60)
    parser.add_argument("--seed", type=int, default=987654)
    parser.add_argument("--record", nargs="?", const="BENCHMARKS.md", default=None)
    args = parser.parse_args()
    fp32 = OnnxRuntimeEngine(args.model)
    int8 = OnnxRuntimeEngine(args.model, precision="int8")
    feats = prior_features(args.mdps, args.seed, fp32.max_states, fp32.max_actions,
                           fp32.max_successors)
    n = greedy_agreement(fp32, int8, feats)
    body = "\n".join([
        f"Visited states of {args.mdps} MDPs of the prior (seed {args.seed}), ONNX Runtime CPU.", "",
        "| states | greedy actions equal | agreement | target |", "|---|---|---|---|",
        f"| all visited | {n['agree']} / {n['total']} | {n['agree'] / n['total']:.1%} | >= 99% |",
        f"| FP32 top-2 gap >= 0.05 | {n['clear_agree']} / {n['clear_total']} | "
        f"{n['clear_agree'] / n['clear_total']:.1%} | - |", "",
        f"Mean total-variation distance between the FP32 and INT8 action distributions at the "
        f"agent's temperature {DEFAULT_TEMPERATURE} (before annealing), over all visited states: "
        f"{n['mean_tv']:.4f}; largest logit difference {n['max_abs_diff']:.3f}."])
    print_and_record(body, args.record, "INT8 vs FP32 greedy-action agreement", __file__, sys.argv[1:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
