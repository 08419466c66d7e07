"""PyTorch backend: the dense GAT in eager mode (CPU), or on CUDA in fp32/fp16 replayed from a CUDA graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rlfm_edge.inference.base import PolicyEngine, refresh_threads, unpad_logits
from rlfm_edge.inference.memory import retain_freed_memory
from rlfm_edge.model.dense import DenseGAT
from rlfm_edge.model.features import pad_features, padded_size
from rlfm_edge.model.io import DEFAULT_MODEL_DIR, load_model
from rlfm_edge.stats import CountStats


class TorchEngine(PolicyEngine):
    """Runs the shipped (or a given) model directory with torch.

    On the CPU, statistics are padded only up to their own S and A (the network is size-
    agnostic), so a small MDP costs little. On CUDA the forward pass is a few hundred tiny
    kernels whose launches cost more than their work, so by default (``cuda_graph=None``) it is
    captured once at the export's static shape (Smax, Amax) and replayed.
    ``max_states``/``max_actions`` are the export sizes. On the CPU, ``threads`` (default
    ``refresh_threads()``, which leaves a core to the control loop) sets torch's intra-op
    threads, which are process-wide: in a robot process the engine is torch's only user. On the
    CPU it also keeps freed heap memory in the process (rlfm_edge.inference.memory): without
    that, each refresh page-faults its temporaries in again."""

    backend = "torch"
    # its sizes come from the weights' config.json, not from an export
    larger_model_hint = ("this torch model's sizes are max_states / max_actions in its config.json, set "
                         "when it was trained; `rlfm-edge export --max-states N --max-actions M` makes "
                         "a larger ONNX export for the onnxruntime and tensorrt backends")

    def __init__(self, model: str | Path | None = None, precision: str = "fp32",
                 device: str | None = None, cuda_graph: bool | None = None,
                 threads: int | None = None) -> None:
        if precision not in ("fp32", "fp16"):
            raise ValueError(f"precision: the torch backend runs 'fp32' or 'fp16', got {precision!r}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if precision == "fp16" and self.device.type != "cuda":
            raise ValueError("precision: fp16 needs a CUDA device for the torch backend")
        if cuda_graph and self.device.type != "cuda":
            raise ValueError("cuda_graph: CUDA graphs need a CUDA device for the torch backend")
        if self.device.type == "cpu":
            torch.set_num_threads(threads or refresh_threads())
            retain_freed_memory()
        self.model_dir = Path(model) if model is not None else DEFAULT_MODEL_DIR
        self.net = load_model(self.model_dir)
        self.config = self.net.config
        self.dense = DenseGAT(self.net).to(self.device).eval()
        if precision == "fp16":
            self.dense.half()
        self.precision = precision
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.max_states = self.config.max_states
        self.max_actions = self.config.max_actions
        self.max_successors = self.config.max_successors
        self.cuda_graph = self.device.type == "cuda" if cuda_graph is None else cuda_graph
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static_inputs: list[torch.Tensor] = []
        self._static_logits: torch.Tensor | None = None

    def to_device(self, inputs: dict[str, np.ndarray]) -> list[torch.Tensor]:
        tensors = [torch.from_numpy(v).to(self.device) for v in inputs.values()]
        return [t.to(self.dtype) if t.is_floating_point() else t for t in tensors]

    def _capture(self, tensors: list[torch.Tensor]) -> None:
        """Record the forward pass once; warm-up runs on a side stream, as CUDA graph capture needs."""
        self._static_inputs = [t.clone() for t in tensors]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                self.dense(*self._static_inputs)
        torch.cuda.current_stream().wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._static_logits = self.dense(*self._static_inputs)

    @torch.inference_mode()
    def run_padded(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Logits (batch, S, A) for inputs padded by ``pad_features`` (to Smax, Amax under a CUDA graph)."""
        if not self.cuda_graph:
            return self.dense(*self.to_device(inputs)).float().cpu().numpy()
        if self._graph is None:
            self._capture(self.to_device(inputs))
        arrays = list(inputs.values())
        if arrays[0].shape != tuple(self._static_inputs[0].shape):
            raise ValueError(f"inputs: the CUDA graph was captured for state_x of shape "
                             f"{tuple(self._static_inputs[0].shape)}, got {arrays[0].shape}")
        for static, array in zip(self._static_inputs, arrays, strict=True):
            static.copy_(torch.from_numpy(array))  # one host-to-device copy, cast on the way
        self._graph.replay()
        return self._static_logits.float().cpu().numpy()

    def policy(self, stats: CountStats, horizon: int) -> np.ndarray:
        return self._forward([(stats, horizon)])[0]

    def policy_batch(self, batch: list[tuple[CountStats, int]]) -> list[np.ndarray]:
        """One forward pass for the whole batch, padded to its largest S and A; a CUDA graph is
        captured for a batch of one, so under one (or for an empty batch) it loops."""
        if self.cuda_graph or not batch:
            return super().policy_batch(batch)
        return self._forward(batch)

    def _forward(self, batch: list[tuple[CountStats, int]]) -> list[np.ndarray]:
        size = ((self.max_states, self.max_actions) if self.cuda_graph
                else padded_size([(s.n_states, s.n_actions) for s, _ in batch]))
        inputs = pad_features(self.features(batch), *size, self.max_successors)
        return unpad_logits(self.run_padded(inputs.as_dict()), batch)
