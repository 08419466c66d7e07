"""`rlfm-edge calibrate`: INT8 Q/DQ ONNX (model.int8.onnx) from a calibration set of statistics."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_calibrate(args: argparse.Namespace) -> int:
    from calibration.calibset import build_calibration_set, load_calibration_set, save_calibration_set
    from calibration.quantize import quantize_int8
    from rlfm_edge.inference.onnx_backend import read_spec

    _, spec = read_spec(args.model, "fp32")
    dims = (spec["max_states"], spec["max_actions"], spec["max_successors"])
    if args.calibration_set and Path(args.calibration_set).is_file() and not (args.log or args.stats):
        samples, meta = load_calibration_set(args.calibration_set)
        if tuple(meta.get("dims", ())) != dims:
            raise ValueError(f"{args.calibration_set}: calibration set padded to {meta.get('dims')}, "
                             f"the export is {list(dims)}; delete it to rebuild")
        print(f"read {len(samples)} calibration samples from {args.calibration_set}")
    else:
        samples = build_calibration_set(*dims, n_prior=args.samples, seed=args.seed,
                                        logs=tuple(args.log), stats_files=tuple(args.stats),
                                        horizon=args.horizon)
        if args.calibration_set:
            save_calibration_set(args.calibration_set, samples,
                                 {"dims": list(dims), "seed": args.seed, "samples": args.samples,
                                  "logs": args.log, "stats": args.stats})
    if args.keep_float < 0:
        raise ValueError(f"--keep-float: expected a count >= 0, got {args.keep_float}")
    qspec = quantize_int8(args.model, samples, method=args.method)
    if args.keep_float:  # rank the layers of the all-INT8 model, then quantize again without the worst
        extra = _most_sensitive(args.model, args.keep_float, args.seed + 1)
        qspec = quantize_int8(args.model, samples, method=args.method, extra_float=extra)
        print(f"kept {len(extra)} more MatMuls in float: {', '.join(extra)}")
    print(f"wrote {Path(args.model) / qspec['file']} ({qspec['bytes'] / 1e6:.2f} MB, "
          f"{qspec['quantization']['qdq_nodes']} Q/DQ pairs, {len(samples)} calibration samples)")
    return 0


def _most_sensitive(model_dir, k: int, seed: int, n_mdps: int = 100) -> tuple[str, ...]:
    """The k INT8 MatMuls whose quantization alone costs most greedy agreement, ranked on
    prior statistics of ``seed`` (not the calibration samples' seed)."""
    import onnx

    from calibration.calibset import prior_features
    from calibration.sensitivity import layer_sensitivity
    from rlfm_edge.inference.onnx_backend import OnnxRuntimeEngine

    fp32 = OnnxRuntimeEngine(model_dir)
    int8_path = OnnxRuntimeEngine(model_dir, precision="int8").path
    feats = prior_features(n_mdps, seed, fp32.max_states, fp32.max_actions, fp32.max_successors)
    alone = layer_sensitivity(onnx.load(str(fp32.path)), onnx.load(str(int8_path)), fp32, feats)
    return tuple(sorted(alone, key=alone.get)[:k])


def register(subparsers) -> None:
    p = subparsers.add_parser("calibrate", help="INT8 (Q/DQ) ONNX of an exported model",
                              description=__doc__)
    p.add_argument("--model", required=True, help="model directory holding model.onnx (see `export`)")
    p.add_argument("--samples", type=int, default=128, help="calibration samples from the synthetic prior")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log", action="append", default=[], metavar="MCAP",
                   help="recorded robot log (rlfm-edge MCAP) to calibrate on too (repeatable)")
    p.add_argument("--stats", action="append", default=[], metavar="NPZ",
                   help="saved CountStats file to calibrate on too (repeatable; needs --horizon)")
    p.add_argument("--horizon", type=int, default=None, help="episode length for --stats files")
    p.add_argument("--method", default="minmax", choices=["minmax", "entropy", "percentile"],
                   help="activation range estimator")
    p.add_argument("--keep-float", type=int, default=0, metavar="K",
                   help="also keep the K most sensitive INT8 MatMuls in float (mixed precision; "
                        "benchmarks/int8_sensitivity.py shows what each K buys)")
    p.add_argument("--calibration-set", default=None, metavar="NPZ",
                   help="calibration cache: read if it exists (and no --log/--stats), else written")
    p.set_defaults(func=cmd_calibrate)
