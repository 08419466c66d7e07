"""`rlfm-edge train`: generate synthetic-MDP data and train the policy GAT from a YAML config.

Host side; needs the ``train`` extra. Data shards and checkpoints are reused and resumed, and
the result is a model directory (weights, config, manifest, training record) that ``export``
turns into ONNX. ``--pipeline`` runs every round of a pipeline file in order (the shipped model:
training/pipeline.yaml), then exports and calibrates its last model. The recipes are in
docs/training.md.
"""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train the policy GAT on synthetic MDPs",
                              description=__doc__.split("\n\n")[0])
    what = p.add_mutually_exclusive_group()
    what.add_argument("--config", default="training/configs/default.yaml",
                      help="training YAML (training/configs/quick.yaml checks the pipeline in "
                      "seconds; see docs/training.md)")
    what.add_argument("--pipeline", default=None,
                      help="pipeline file: every round in order, resumable (training/pipeline.yaml "
                      "rebuilds the shipped model from nothing)")
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        from training.train import main
    except ImportError as exc:
        raise RuntimeError(f"training needs the 'train' extra (pip install -e .[train]): {exc}") from None
    return main(["--pipeline", args.pipeline] if args.pipeline else ["--config", args.config])
