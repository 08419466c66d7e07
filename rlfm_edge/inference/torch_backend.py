"""PyTorch backend: the dense GAT in eager mode (CPU, or CUDA in fp16/fp32)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rlfm_edge.inference.base import PolicyEngine
from rlfm_edge.model.dense import DenseGAT
from rlfm_edge.model.features import build_features, pad_features
from rlfm_edge.model.io import DEFAULT_MODEL_DIR, load_model
from rlfm_edge.stats import CountStats


class TorchEngine(PolicyEngine):
    """Runs the shipped (or a given) model directory with torch.

    Statistics are padded only up to their own S (the network is size-agnostic), so a
    small MDP costs little; ``max_states``/``max_actions`` are the model's export sizes.
    """

    backend = "torch"

    def __init__(self, model: str | Path | None = None, precision: str = "fp32",
                 device: str | None = None) -> None:
        if precision not in ("fp32", "fp16"):
            raise ValueError(f"precision: the torch backend runs 'fp32' or 'fp16', got {precision!r}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if precision == "fp16" and self.device.type != "cuda":
            raise ValueError("precision: fp16 needs a CUDA device for the torch backend")
        self.model_dir = Path(model) if model is not None else DEFAULT_MODEL_DIR
        self.net = load_model(self.model_dir)
        self.config = self.net.config
        self.dense = DenseGAT(self.net).to(self.device).eval()
        if precision == "fp16":
            self.dense.half()
        self.precision = precision
        self.max_states = self.config.max_states
        self.max_actions = self.config.max_actions

    @torch.inference_mode()
    def policy(self, stats: CountStats, horizon: int) -> np.ndarray:
        self.check_fits(stats)
        feats = build_features(stats, horizon, self.config.max_successors)
        inputs = pad_features([feats], stats.n_states, self.max_actions, self.config.max_successors)
        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        tensors = [torch.from_numpy(v).to(self.device) for v in inputs.as_dict().values()]
        tensors = [t.to(dtype) if t.is_floating_point() else t for t in tensors]
        logits = self.dense(*tensors)[0, :, : stats.n_actions]
        return logits.float().cpu().numpy()
