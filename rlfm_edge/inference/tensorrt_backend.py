"""TensorRT backend: an engine built on this device from the exported ONNX, run with execute_async_v3.

Precisions: ``int8`` builds the Q/DQ model (``model.int8.onnx``) as a strongly typed
network, the only INT8 path TensorRT 11 keeps; ``fp32`` builds ``model.onnx`` with TF32
off (so it matches torch to 1e-4); ``fp16`` uses the builder flag of TensorRT 10 on
``model.onnx`` (TensorRT 11 removed it: there, use int8 or fp32).

The export's batch, S and A axes are dynamic; the engine's optimization profile spans
S in 1..Smax and A in 1..Amax, tuned for ``opt_size`` (the robot's own size where the
caller knows it, else the export's maximum), and each refresh runs at the statistics' own
size.

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
from rlfm_edge.model.features import DYNAMIC_AXES, INPUT_NAMES, OUTPUT_NAMES, pad_features
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


def profile_shapes(spec: dict, max_batch: int = 1,
                   opt_size: tuple[int, int] | None = None) -> dict[str, tuple[tuple[int, ...], ...]]:
    """Input name -> (min, opt, max) shapes of the optimization profile for an export
    described by ``spec``: batch 1..max_batch, S 1..Smax, A 1..Amax, opt at batch 1 and
    ``opt_size`` (default the export's maximum)."""
    S, A = spec["max_states"], spec["max_actions"]
    opt_s, opt_a = opt_size or (S, A)
    if not (1 <= opt_s <= S and 1 <= opt_a <= A):
        raise ValueError(f"opt_size: expected (S, A) within the export's (1..{S}, 1..{A}), got {opt_size}")
    out = {}
    for name, array in pad_features([], 1, 1, spec["max_successors"]).as_dict().items():
        n = len(DYNAMIC_AXES[name])
        fixed = array.shape[n:]
        out[name] = tuple((*dims[:n], *fixed) for dims in ((1, 1, 1), (1, opt_s, opt_a), (max_batch, S, A)))
    return out


def build_plan(onnx_path: Path, precision: str, profile: dict[str, tuple], progress: bool = True) -> bytes:
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
    shapes = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        name = network.get_input(i).name
        shapes.set_shape(name, *profile[name])
    config.add_optimization_profile(shapes)
    if progress and hasattr(trt, "IProgressMonitor"):
        monitor = type("ProgressMonitor", (_Progress, trt.IProgressMonitor), {})(trt)
        config.progress_monitor = monitor
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"TensorRT {trt.__version__} failed to build a {precision} engine from "
                           f"{onnx_path} (see the TensorRT log above)")
    return bytes(plan)


def engine_key(onnx_sha256: str, precision: str, max_batch: int, opt_size: tuple[int, int]) -> EngineKey:
    import tensorrt as trt
    import torch

    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    gpu = f"{props.name} (sm_{props.major}{props.minor})"
    return EngineKey(onnx_sha256, precision, trt.__version__, gpu, max_batch, *opt_size)


def ensure_engine(model_dir: Path, precision: str, cache_dir: Path | None = None,
                  engine_file_path: Path | None = None, force_engine_update: bool = False,
                  max_batch: int = 1, progress: bool = True,
                  opt_size: tuple[int, int] | None = None) -> tuple[Path, bytes, dict]:
    """The engine for ``model_dir`` at ``precision``: from the cache if it matches, else built and stored."""
    onnx_precision = "int8" if precision == "int8" else "fp32"
    onnx_path, spec = read_spec(model_dir, onnx_precision)
    profile = profile_shapes(spec, max_batch, opt_size)
    key = engine_key(spec["sha256"], precision, max_batch, profile["sa_mask"][1][1:3])
    source = str(Path(onnx_path).resolve())
    plan = Path(engine_file_path) if engine_file_path else plan_path(cache_dir or default_cache_dir(), key)
    data = None if force_engine_update else load_plan(plan, key, source)
    if data is None:
        log.info("building a TensorRT %s %s engine from %s on %s (can take minutes on a Jetson)",
                 key.trt_version, precision, onnx_path, key.gpu)
        data = build_plan(onnx_path, precision, profile, progress)
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
                 force_engine_update: bool = False, cuda_graph: bool = False, progress: bool = True,
                 opt_size: tuple[int, int] | None = None) -> None:
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
        build = dict(cache_dir=cache, engine_file_path=engine_file_path, progress=progress, opt_size=opt_size)
        self.plan, data, spec = ensure_engine(self.model_dir, precision,
                                              force_engine_update=force_engine_update, **build)
        self.max_states, self.max_actions = spec["max_states"], spec["max_actions"]
        self.max_successors = spec["max_successors"]
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:  # intact bytes, but not loadable by this TensorRT: rebuild once
            log.warning("TensorRT %s cannot deserialize %s: rebuilding", trt.__version__, self.plan)
            self.plan, data, _ = ensure_engine(self.model_dir, precision, force_engine_update=True, **build)
            self._engine = self._runtime.deserialize_cuda_engine(data)
            if self._engine is None:
                raise RuntimeError(f"{self.plan}: TensorRT {trt.__version__} cannot load the engine it "
                                   f"just built from {ONNX_FILES.get(precision, 'model.onnx')}")
        self._context = self._engine.create_execution_context()
        dtypes = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int64: torch.int64,
                  trt.int32: torch.int32, trt.bool: torch.bool}
        self._stream = torch.cuda.Stream()
        # Buffers of the largest batch-of-one shape; a smaller refresh uses their leading part.
        largest = {name: (1, *shapes[2][1:]) for name, shapes in profile_shapes(spec).items()}
        for name, shape in largest.items():
            self._context.set_input_shape(name, shape)
        self._buffers = {}
        for name in (*INPUT_NAMES, *OUTPUT_NAMES):
            shape = largest.get(name) or tuple(self._context.get_tensor_shape(name))
            buf = torch.empty(shape, dtype=dtypes[self._engine.get_tensor_dtype(name)], device="cuda")
            self._context.set_tensor_address(name, buf.data_ptr())
            self._buffers[name] = buf
        self._shape: tuple[int, int] | None = None  # the (S, A) the context's input shapes are set for
        self.cuda_graph = cuda_graph
        self._graphs: dict[tuple[int, int], object] = {}  # one CUDA graph per (S, A) seen

    def _enqueue(self) -> None:
        if not self._context.execute_async_v3(self._stream.cuda_stream):
            raise RuntimeError(f"TensorRT execute_async_v3 failed for {self.plan}")

    def _replay(self, size: tuple[int, int]) -> None:
        """Run the engine at ``size`` from the CUDA graph captured for it (captured on first use)."""
        import torch

        graph = self._graphs.get(size)
        if graph is None:
            self._enqueue()  # TensorRT allocates lazily on the first enqueue: not inside the capture
            self._stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self._stream):
                self._enqueue()
            self._graphs[size] = graph
        graph.replay()

    def run_padded(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Model-only call on padded batch-of-one inputs (1, S, A, ...) -> logits (1, S, A)."""
        import torch

        batch, *size = inputs["sa_mask"].shape
        size = tuple(size)
        if batch != 1:
            raise ValueError(f"inputs: the tensorrt backend runs a batch of one, got {batch}")
        with torch.cuda.stream(self._stream):
            for name in INPUT_NAMES:
                buf = self._buffers[name].view(-1)
                array = inputs[name]
                buf[:array.size].copy_(torch.from_numpy(array).reshape(-1).to(buf.dtype))
            if size != self._shape:
                for name in INPUT_NAMES:
                    self._context.set_input_shape(name, inputs[name].shape)
                self._shape = size
            if self.cuda_graph:
                self._replay(size)
            else:
                self._enqueue()
            shape = (1, *size)
            out = self._buffers[OUTPUT_NAMES[0]].view(-1)[:int(np.prod(shape))].view(shape).float().cpu()
        return out.numpy()

    def policy(self, stats: CountStats, horizon: int) -> np.ndarray:
        batch = [(stats, horizon)]
        inputs = pad_features(self.features(batch), stats.n_states, stats.n_actions, self.max_successors)
        return unpad_logits(self.run_padded(inputs.as_dict()), batch)[0]
