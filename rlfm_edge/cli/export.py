"""`rlfm-edge export`: the dense GAT of a model directory to ONNX (static Smax/Amax, dynamic batch)."""

from __future__ import annotations

import argparse


def cmd_export(args: argparse.Namespace) -> int:
    from rlfm_edge.training.export import export_onnx

    spec = export_onnx(args.model, args.out, args.max_states, args.max_actions, args.opset)
    out = args.out or args.model
    print(f"wrote {out}/{spec['file']} ({spec['bytes'] / 1e6:.2f} MB, Smax={spec['max_states']}, "
          f"Amax={spec['max_actions']}, K={spec['max_successors']}, opset {spec['opset']}); "
          f"ONNX Runtime vs torch max |logit diff| {spec['parity_max_abs_diff']:.1e}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="export a model directory to ONNX",
                              description=__doc__)
    p.add_argument("--model", required=True, help="model directory (weights.npz, config.json, manifest)")
    p.add_argument("--out", default=None,
                   help="output model directory (default: write model.onnx into --model)")
    p.add_argument("--max-states", type=int, default=None,
                   help="padded state count Smax (default: the model config's, 256)")
    p.add_argument("--max-actions", type=int, default=None,
                   help="padded action count Amax (default: the model config's, 8)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (17..21)")
    p.set_defaults(func=cmd_export)
