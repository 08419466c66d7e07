"""`rlfm-edge build-engine`: the TensorRT engine of a model, built on the machine that runs it.

Engines are cached by ONNX sha256, precision, TensorRT version and GPU; a cached engine
that does not match is rebuilt, with a log line saying why.
"""

from __future__ import annotations

import argparse


def cmd_build_engine(args: argparse.Namespace) -> int:
    from rlfm_edge.interrupt import Interrupted

    try:
        return _build_engine(args)
    except Interrupted as stop:
        raise stop.saying("no engine was written (engines are written whole, at the end): the "
                          "cache is as it was; run the command again") from None


def _build_engine(args: argparse.Namespace) -> int:
    from rlfm_edge.inference.tensorrt_backend import ensure_engine, unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"cannot build a TensorRT engine here: {reason}; build it on the robot")
    from pathlib import Path

    plan, data, _ = ensure_engine(Path(args.model), args.precision,
                                  Path(args.cache_dir) if args.cache_dir else None,
                                  args.engine_file_path, args.force_engine_update,
                                  progress=not args.no_progress)
    print(f"engine ready: {plan} ({len(data) / 1e6:.1f} MB)")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("build-engine", help="build (or reuse) the TensorRT engine on this GPU",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model directory with model.onnx / model.int8.onnx")
    p.add_argument("--precision", default="int8", choices=["fp32", "fp16", "int8"],
                   help="int8 builds the Q/DQ ONNX strongly typed; fp16 needs TensorRT 10")
    p.add_argument("--cache-dir", default=None,
                   help="engine cache folder (default $RLFM_EDGE_ENGINE_CACHE or ~/.cache/rlfm_edge/engines)")
    p.add_argument("--engine-file-path", default=None,
                   help="write/read this engine file instead of the cache")
    p.add_argument("--force-engine-update", action="store_true",
                   help="rebuild even if a matching engine exists")
    p.add_argument("--no-progress", action="store_true", help="no build progress lines")
    p.set_defaults(func=cmd_build_engine)
