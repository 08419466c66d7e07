"""GPU backends vs torch CPU fp32: max logit difference and greedy agreement on prior statistics.

    python benchmarks/gpu_parity.py --mdps 60 --seed 987654 --record

Compares every GPU configuration that runs here (torch CUDA fp32/fp16, and TensorRT
fp32/fp16/int8 where TensorRT is installed) with the CPU reference on the visited states
of statistics drawn from the training prior. Run it on the GPU machine; on a CPU-only
machine it says so and exits 1.
"""

from __future__ import annotations

import argparse
import sys

from rlfm_edge.bench.report import print_and_record
from rlfm_edge.calibration.calibset import prior_features
from rlfm_edge.calibration.quantize import greedy_agreement
from rlfm_edge.inference.tensorrt_backend import unavailable_reason
from rlfm_edge.inference.torch_backend import TorchEngine


def candidates(model) -> tuple[list[tuple[str, object]], list[str]]:
    """(label, engine) per GPU configuration that starts here, and notes for the rest."""
    found, notes = [], []
    for precision in ("fp32", "fp16"):
        for graph in (False, True):
            engine = TorchEngine(model, precision=precision, device="cuda", cuda_graph=graph)
            found.append((f"torch CUDA {precision}{' CUDA graph' if graph else ' eager'}", engine))
    reason = unavailable_reason()
    if reason is not None:
        notes.append(f"TensorRT not run: {reason}.")
        return found, notes
    from rlfm_edge.inference.tensorrt_backend import TensorRTEngine

    for precision in ("fp32", "fp16", "int8"):
        try:
            engine = TensorRTEngine(model, precision=precision)
        except (RuntimeError, ValueError) as exc:
            notes.append(f"TensorRT {precision} not run: {exc}.")
            continue
        found.append((f"TensorRT {precision}", engine))
    return found, notes


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the shipped one)")
    parser.add_argument("--mdps", type=int, default=60)
    parser.add_argument("--seed", type=int, default=987654)
    parser.add_argument("--record", nargs="?", const="BENCHMARKS.md", default=None)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA GPU visible: run this on the GPU machine", file=sys.stderr)
        return 1
    reference = TorchEngine(args.model, device="cpu")
    feats = prior_features(args.mdps, args.seed, reference.max_states, reference.max_actions,
                           reference.max_successors)
    found, notes = candidates(args.model)
    lines = [f"Visited states of {args.mdps} MDPs of the prior (seed {args.seed}); "
             f"reference: torch CPU fp32. GPU: {torch.cuda.get_device_name()}.", "",
             "| configuration | max abs logit diff | greedy actions equal | agreement |", "|---|---|---|---|"]
    for label, engine in found:
        # Padded to (Smax, Amax): the torch CUDA graphs run that size only.
        n = greedy_agreement(reference, engine, feats, pad_to=(reference.max_states, reference.max_actions))
        lines.append(f"| {label} | {n['max_abs_diff']:.2e} | {n['agree']} / {n['total']} | "
                     f"{n['agree'] / n['total']:.1%} |")
    body = "\n".join(lines + [""] + notes)
    print_and_record(body, args.record, f"GPU parity ({torch.cuda.get_device_name()})", __file__,
                     sys.argv[1:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
