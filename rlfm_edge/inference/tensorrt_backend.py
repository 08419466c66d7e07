"""TensorRT backend: an engine built on this device from the exported ONNX, run with execute_async_v3.

Precisions: ``int8`` builds the Q/DQ model (``model.int8.onnx``) as a strongly typed
network, the only INT8 path TensorRT 11 keeps; ``fp32`` builds ``model.onnx`` with TF32
off (so it matches torch to 1e-4); ``fp16`` uses the builder flag of TensorRT 10 on
``model.onnx`` (TensorRT 11 removed it: there, use int8 or fp32).

Device memory and the stream are torch CUDA tensors (torch is already the training and
fallback runtime, so no cuda-python dependency); with ``cuda_graph=True`` the enqueue is
captured once in a CUDA graph and replayed, which removes the per-call launch overhead
that dominates at this model size.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np

from rlfm_edge.inference.base import PolicyEngine, unpad_logits
from rlfm_edge.inference.engine_cache import (
    EngineKey,
    default_cache_dir,
    load_plan,
    plan_path,
    prune_superseded,
    store_plan,
)
from rlfm_edge.inference.onnx_backend import ONNX_FILES, read_spec
from rlfm_edge.model.features import INPUT_NAMES, OUTPUT_NAMES, pad_features
from rlfm_edge.model.io import DEFAULT_MODEL_DIR, ModelFileError, remake_hint
from rlfm_edge.stats import CountStats

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")


def trt_major(trt) -> int:
    return int(trt.__version__.split(".")[0])


def unavailable_reason() -> str | None:
    """None if TensorRT can build and run engines here, else why not."""
    try:
        import tensorrt as trt
    except Exception as exc:  # noqa: BLE001 - any import failure means "not here"
        return f"cannot import tensorrt ({type(exc).__name__}: {exc}); install the `jetson` extra or JetPack"
    if trt_major(trt) < 10:
        return f"TensorRT {trt.__version__} is too old: execute_async_v3 and strong typing need >= 10"
    try:
        import torch
    except Exception as exc:  # noqa: BLE001
        return f"cannot import torch ({exc}); the TensorRT backend keeps device memory in torch tensors"
    if not torch.cuda.is_available():
        return "no CUDA GPU visible (torch.cuda.is_available() is False)"
    return None


class _Progress:
    """Prints TensorRT build phases to stderr (IProgressMonitor, TensorRT >= 10)."""

    def __init__(self, trt) -> None:
        trt.IProgressMonitor.__init__(self)
        self._depth: dict[str, int] = {}

    def phase_start(self, phase_name, parent_phase, num_steps) -> None:
        self._depth[phase_name] = self._depth.get(parent_phase, -1) + 1 if parent_phase else 0
        print(f"{'  ' * self._depth[phase_name]}[build] {phase_name} ({num_steps} steps)",
              file=sys.stderr, flush=True)

    def step_complete(self, phase_name, step) -> bool:
        return True  # never cancel

    def phase_finish(self, phase_name) -> None:
        self._depth.pop(phase_name, None)


def build_plan(onnx_path: Path, precision: str, max_batch: int = 1, progress: bool = True) -> bytes:
    """Serialized engine for ``onnx_path`` built on this GPU; errors name the file and the fix."""
    import tensorrt as trt

    major = trt_major(trt)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if precision == "int8" and major < 11:  # TensorRT 11 networks are always strongly typed
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelFileError(f"{onnx_path}: TensorRT {trt.__version__} cannot parse it ({errors}); "
                             f"{remake_hint(Path(onnx_path).parent, Path(onnx_path).name)}")
    config = builder.create_builder_config()
    if precision == "fp16":
        if not hasattr(trt.BuilderFlag, "FP16"):
            raise RuntimeError(f"TensorRT {trt.__version__} has no FP16 builder flag (removed in 11); "
                               f"build precision int8 (Q/DQ) or fp32 instead")
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        rest = tuple(tensor.shape)[1:]
        profile.set_shape(tensor.name, (1, *rest), (1, *rest), (max_batch, *rest))
    config.add_optimization_profile(profile)
    if progress and hasattr(trt, "IProgressMonitor"):
        monitor = type("ProgressMonitor", (_Progress, trt.IProgressMonitor), {})(trt)
        config.progress_monitor = monitor
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"TensorRT {trt.__version__} failed to build a {precision} engine from "
                           f"{onnx_path} (see the TensorRT log above)")
    return bytes(plan)


def engine_key(onnx_sha256: str, precision: str, max_batch: int = 1) -> EngineKey:
    import tensorrt as trt
    import torch

    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    gpu = f"{props.name} (sm_{props.major}{props.minor})"
    return EngineKey(onnx_sha256, precision, trt.__version__, gpu, max_batch)


def ensure_engine(model_dir: Path, precision: str, cache_dir: Path | None = None,
                  engine_file_path: Path | None = None, force_engine_update: bool = False,
                  max_batch: int = 1, progress: bool = True) -> tuple[Path, bytes, dict]:
    """The engine for ``model_dir`` at ``precision``: from the cache if it matches, else built and stored."""
    onnx_precision = "int8" if precision == "int8" else "fp32"
    onnx_path, spec = read_spec(model_dir, onnx_precision)
    key = engine_key(spec["sha256"], precision, max_batch)
    source = str(Path(onnx_path).resolve())
    plan = Path(engine_file_path) if engine_file_path else plan_path(cache_dir or default_cache_dir(), key)
    data = None if force_engine_update else load_plan(plan, key, source)
    if data is None:
        log.info("building a TensorRT %s %s engine from %s on %s (can take minutes on a Jetson)",
                 key.trt_version, precision, onnx_path, key.gpu)
        data = build_plan(onnx_path, precision, max_batch, progress)
        store_plan(plan, key, data, source)
        log.info("wrote TensorRT engine %s (%.1f MB)", plan, len(data) / 1e6)
        if not engine_file_path:  # a file the caller named is theirs; the cache is ours to tidy
            prune_superseded(plan, key, source)
    return plan, data, spec


class TensorRTEngine(PolicyEngine):
    """Builds (or loads from the engine cache) and runs the policy engine on this GPU."""

    backend = "tensorrt"

    def __init__(self, model: str | Path | None = None, precision: str = "fp32",
                 cache_dir: str | Path | None = None, engine_file_path: str | Path | None = None,
                 force_engine_update: bool = False, cuda_graph: bool = False, progress: bool = True) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision: the tensorrt backend runs {PRECISIONS}, got {precision!r}")
        reason = unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"backend 'tensorrt' is unavailable here: {reason}")
        import tensorrt as trt
        import torch

        self.model_dir = Path(model) if model is not None else DEFAULT_MODEL_DIR
        self.precision = precision
        cache = Path(cache_dir) if cache_dir is not None else None
        self.plan, data, spec = ensure_engine(self.model_dir, precision, cache, engine_file_path,
                                              force_engine_update, progress=progress)
        self.max_states, self.max_actions = spec["max_states"], spec["max_actions"]
        self.max_successors = spec["max_successors"]
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:  # intact bytes, but not loadable by this TensorRT: rebuild once
            log.warning("TensorRT %s cannot deserialize %s: rebuilding", trt.__version__, self.plan)
            self.plan, data, _ = ensure_engine(self.model_dir, precision, cache, engine_file_path,
                                               force_engine_update=True, progress=progress)
            self._engine = self._runtime.deserialize_cuda_engine(data)
            if self._engine is None:
                raise RuntimeError(f"{self.plan}: TensorRT {trt.__version__} cannot load the engine it "
                                   f"just built from {ONNX_FILES.get(precision, 'model.onnx')}")
        self._context = self._engine.create_execution_context()
        dtypes = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int64: torch.int64,
                  trt.int32: torch.int32, trt.bool: torch.bool}
        self._stream = torch.cuda.Stream()
        self._buffers = {}
        for name in (*INPUT_NAMES, *OUTPUT_NAMES):
            if name in INPUT_NAMES:
                shape = (1, *tuple(self._engine.get_tensor_shape(name))[1:])
                self._context.set_input_shape(name, shape)
            shape = tuple(self._context.get_tensor_shape(name))
            buf = torch.empty(shape, dtype=dtypes[self._engine.get_tensor_dtype(name)], device="cuda")
            self._context.set_tensor_address(name, buf.data_ptr())
            self._buffers[name] = buf
        self._graph = None
        if cuda_graph:
            self._capture()

    def _enqueue(self) -> None:
        if not self._context.execute_async_v3(self._stream.cuda_stream):
            raise RuntimeError(f"TensorRT execute_async_v3 failed for {self.plan}")

    def _capture(self) -> None:
        import torch

        with torch.cuda.stream(self._stream):
            self._enqueue()  # TensorRT allocates lazily on the first enqueue: not inside the capture
        self._stream.synchronize()
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph, stream=self._stream):
            self._enqueue()

    def run_padded(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Model-only call on padded batch-of-one inputs -> logits (1, Smax, Amax)."""
        import torch

        with torch.cuda.stream(self._stream):
            for name in INPUT_NAMES:
                buf = self._buffers[name]
                buf.copy_(torch.from_numpy(inputs[name]).to(buf.dtype), non_blocking=False)
            if self._graph is not None:
                self._graph.replay()
            else:
                self._enqueue()
            out = self._buffers[OUTPUT_NAMES[0]].float().cpu()
        return out.numpy()

    def policy(self, stats: CountStats, horizon: int) -> np.ndarray:
        batch = [(stats, horizon)]
        inputs = pad_features(self.features(batch), self.max_states, self.max_actions, self.max_successors)
        return unpad_logits(self.run_padded(inputs.as_dict()), batch)[0]
