"""`rlfm-edge train`: train the policy GAT from a YAML config (host side, needs the train extra)."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train the policy GAT on synthetic MDPs")
    p.add_argument("--config", default="training/configs/default.yaml",
                   help="training YAML (see training/configs/)")
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        from rlfm_edge.training.train import main
    except ImportError as exc:
        raise RuntimeError(f"training needs the 'train' extra (pip install -e .[train]): {exc}") from None
    return main(["--config", args.config])
