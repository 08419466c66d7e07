"""`rlfm-edge calibrate`: INT8 Q/DQ ONNX (model.int8.onnx) from a calibration set of statistics.

With no options it remakes the shipped model's mixed-precision INT8 file byte for byte: 128
prior samples (seed 0), min-max ranges, and the 24 MatMuls whose INT8 costs the most greedy
agreement (ranked on 100 prior MDPs, seed 1234) kept in float. ``--keep-float 0`` gives the
all-INT8 file. BENCHMARKS.md ("INT8 per-layer sensitivity") shows what each count buys.
"""

from __future__ import annotations

import argparse
from pathlib import Path

# The shipped INT8 file keeps this many MatMuls in float, read off the sensitivity curve
# against the 99% greedy-agreement target (BENCHMARKS.md: "INT8 per-layer sensitivity" for
# the export before dynamic sizes, "Policy refresh near the CPU's limit (issue 28)" for this one).
SHIPPED_KEEP_FLOAT = 24


def cmd_calibrate(args: argparse.Namespace) -> int:
    from rlfm_edge.interrupt import Interrupted

    try:
        return _calibrate(args)
    except Interrupted as stop:
        cache = args.calibration_set
        kept = (f"; the calibration set in {cache} is kept if it was written, and reused"
                if cache else "")
        raise stop.saying(f"{Path(args.model) / 'model.int8.onnx'} is as it was (written only "
                          f"at the end, atomically){kept}; run the command again") from None


def _calibrate(args: argparse.Namespace) -> int:
    from rlfm_edge.calibration.calibset import (
        build_calibration_set,
        load_calibration_set,
        save_calibration_set,
    )
    from rlfm_edge.calibration.quantize import quantize_qdq, write_int8
    from rlfm_edge.inference.onnx_backend import read_spec
    from rlfm_edge.model.io import DEFAULT_MODEL_DIR

    if args.model is None:
        args.model = str(DEFAULT_MODEL_DIR)
    _, spec = read_spec(args.model, "fp32")
    if args.keep_float < 0:
        raise ValueError(f"--keep-float: expected a count >= 0, got {args.keep_float}")
    if args.keep_float and args.rank_mdps < 1:
        raise ValueError(f"--rank-mdps: expected at least 1, got {args.rank_mdps}")
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
    model, qspec = quantize_qdq(args.model, samples, method=args.method)
    if args.keep_float:  # one write at the end: a failed ranking leaves the previous file as it was
        from rlfm_edge.calibration.sensitivity import keep_float

        model, qspec = keep_float(args.model, model, qspec, args.keep_float, mdps=args.rank_mdps,
                                  seed=args.rank_seed)
        print(f"kept the {args.keep_float} most sensitive INT8 MatMuls in float: "
              + ", ".join(qspec["quantization"]["mixed_precision"]["kept_float"]))
    qspec = write_int8(args.model, model, qspec)
    print(f"wrote {Path(args.model) / qspec['file']} ({qspec['bytes'] / 1e6:.2f} MB, "
          f"{qspec['quantization']['qdq_nodes']} Q/DQ pairs, {len(samples)} calibration samples)")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("calibrate", help="INT8 (Q/DQ) ONNX of an exported model",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None,
                   help="model directory holding model.onnx (see `export`); default: the "
                   "shipped model")
    p.add_argument("--samples", type=int, default=128, help="calibration samples from the synthetic prior")
    p.add_argument("--seed", type=int, default=0, help="seed of the prior's calibration samples")
    p.add_argument("--log", action="append", default=[], metavar="MCAP",
                   help="recorded robot log to calibrate on too: an rlfm-edge MCAP file or a "
                        "folder of its segments (repeatable)")
    p.add_argument("--stats", action="append", default=[], metavar="NPZ",
                   help="saved CountStats file to calibrate on too (repeatable; needs --horizon)")
    p.add_argument("--horizon", type=int, default=None, help="episode length for --stats files")
    p.add_argument("--method", default="minmax", choices=["minmax", "entropy", "percentile"],
                   help="activation range estimator")
    p.add_argument("--keep-float", type=int, default=SHIPPED_KEEP_FLOAT, metavar="K",
                   help="mixed precision: keep the K MatMuls whose INT8 costs the most greedy "
                   "agreement in float; 0 quantizes every one")
    p.add_argument("--rank-mdps", type=int, default=100,
                   help="prior MDPs that rank the layers for --keep-float")
    p.add_argument("--rank-seed", type=int, default=1234,
                   help="their seed (keep it apart from --seed and from the seed agreement is judged on)")
    p.add_argument("--calibration-set", default=None, metavar="NPZ",
                   help="calibration cache: read if it exists (and no --log/--stats), else written")
    p.set_defaults(func=cmd_calibrate)
