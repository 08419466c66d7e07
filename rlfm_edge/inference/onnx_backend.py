"""ONNX Runtime backend: the exported GAT on a CPU (or CUDA/TensorRT EPs).

The export's S and A axes are dynamic, so each refresh is padded only to the statistics'
own size: a 109-state robot pays for 109 states, not for the export's maximum.

Also the one place that knows how exported ONNX files are laid out in a model directory
(``model.onnx``, ``model.int8.onnx`` and their ``.json`` export descriptions), so the
TensorRT backend reads and verifies them the same way.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from rlfm_edge.inference.base import PolicyEngine, refresh_threads, unpad_logits
from rlfm_edge.inference.memory import retain_freed_memory
from rlfm_edge.model.features import DYNAMIC_AXES, INPUT_NAMES, pad_features, padded_size
from rlfm_edge.model.io import DEFAULT_MODEL_DIR, ModelFileError, remake_command, remake_hint, verify_manifest
from rlfm_edge.stats import CountStats

log = logging.getLogger(__name__)

ONNX_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}


def spec_path(model_dir: Path, precision: str) -> Path:
    return Path(model_dir) / (ONNX_FILES[precision] + ".json")


def read_spec(model_dir: Path | str | None, precision: str) -> tuple[Path, dict]:
    """The verified, up-to-date ONNX file of ``precision`` in ``model_dir`` and its export description.

    Only that file and its description are checked against the manifest: a damaged file of
    another precision must not stop this one. Raises ModelFileError naming the file and the
    command that makes it when it is missing, corrupted, does not match the manifest, or
    was made from other weights (or, for int8, from another ``model.onnx``) than the
    directory now holds.
    """
    if precision not in ONNX_FILES:
        raise ValueError(f"precision: expected one of {sorted(ONNX_FILES)}, got {precision!r}")
    model_dir = Path(model_dir) if model_dir is not None else DEFAULT_MODEL_DIR
    path, sidecar = model_dir / ONNX_FILES[precision], spec_path(model_dir, precision)
    hint = remake_hint(model_dir, path.name)
    if not path.is_file():
        raise ModelFileError(f"{path}: no {precision} ONNX model in {model_dir}; {hint}")
    if not sidecar.is_file():
        raise ModelFileError(f"{sidecar}: export description missing for {path.name}; {hint}")
    files = verify_manifest(model_dir, required=(path.name, sidecar.name))["files"]
    try:
        spec = json.loads(sidecar.read_text())
        dims = {k: int(spec[k]) for k in ("max_states", "max_actions", "max_successors")}
        if min(dims.values()) < 1:
            raise ValueError("sizes must be positive")
    except (ValueError, KeyError, TypeError):
        raise ModelFileError(f"{sidecar}: unreadable export description; {hint}") from None
    if spec.get("sha256") != files[path.name]:
        raise ModelFileError(f"{sidecar}: describes another {path.name} (sha256 differs); {hint}")
    _check_fresh(model_dir, sidecar, spec, files)
    spec.update(dims)
    return path, spec


def _check_fresh(model_dir: Path, sidecar: Path, spec: dict, files: dict) -> None:
    """Refuse an export made from other weights, or an int8 model quantized from another
    ``model.onnx``, than the directory lists now: it would silently run another policy than
    torch does. A source absent from the manifest (an ONNX-only deployment) is not compared."""
    name, fp32 = sidecar.name.removesuffix(".json"), ONNX_FILES["fp32"]
    if _differs(spec, "weights_sha256", files, "weights.npz"):
        fix = " then ".join(remake_command(model_dir, f) for f in dict.fromkeys((fp32, name)))
        raise ModelFileError(f"{sidecar}: {name} was made from another weights.npz than the one in "
                             f"{model_dir} (a stale export); re-create it with {fix}")
    if _differs(spec, "source_sha256", files, fp32):
        raise ModelFileError(f"{sidecar}: {name} was quantized from another {fp32} than the one in "
                             f"{model_dir} (a stale calibration); {remake_hint(model_dir, name)}")


def _differs(spec: dict, field: str, files: dict, source: str) -> bool:
    return field in spec and source in files and spec[field] != files[source]


def _check_input_shapes(path: Path, shapes: dict[str, list], spec: dict) -> None:
    """Refuse, when loading, a model whose inputs are not laid out as the refreshes will feed
    them (symbolic batch, S and A; the fixed axes as its description gives): every refresh
    would fail, with an error that names neither file. An export of an older layout (static
    Smax, Amax) is refused here, saying to export again."""
    empty = pad_features([], 1, 1, spec["max_successors"])
    for name, array in empty.as_dict().items():
        n_dynamic = len(DYNAMIC_AXES[name])
        want = ["?"] * n_dynamic + list(array.shape[n_dynamic:])
        got = list(shapes[name])
        shown = ["?" if not isinstance(g, int) else g for g in got]
        if shown != want:
            raise ModelFileError(
                f"{path}: input {name} has shape {shown} (? for a dimension that follows the "
                f"statistics), but refreshes feed {want} (its export description says "
                f"K={spec['max_successors']}; an export from before dynamic S and A has fixed "
                f"sizes there); {remake_hint(path.parent, path.name)}")


# ONNX Runtime fusions that make this model slower on the CPU, measured against the graph
# without them: the fused SkipLayerNorm and BiasGelu kernels are slower on its short rows
# (hidden width 32), and in a Q/DQ model MatMul+Add fusion runs before the Q/DQ fusions,
# leaving quantized MatMuls to run in float between Quantize and Dequantize nodes.
SLOWER_FUSIONS = {"fp32": ("SkipLayerNormFusion", "BiasGeluFusion"),
                  "int8": ("SkipLayerNormFusion", "BiasGeluFusion", "MatMulAddFusion")}


def session_options(threads: int | None = None):
    """Low-latency CPU settings: all graph optimisations, a small fixed intra-op pool, no spinning.

    On a robot computer shared with a control loop, spinning threads steal the core the
    loop needs, so spin-wait is off and the pool leaves a core free (``refresh_threads``).
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads or refresh_threads()
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so


def inference_session(model: str | bytes, precision: str = "fp32", threads: int | None = None,
                      providers: list[str] | None = None):
    """An ONNX Runtime session of ``model`` (a path or serialized bytes, float or Q/DQ as
    ``precision`` says) with this project's CPU settings (``session_options``) and without
    the fusions SLOWER_FUSIONS lists for it."""
    import onnxruntime as ort

    return ort.InferenceSession(model, session_options(threads), providers=providers or default_providers(),
                                disabled_optimizers=list(SLOWER_FUSIONS[precision]))


def default_providers() -> list[str]:
    """TensorRT, then CUDA, then CPU: whichever this onnxruntime build offers."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    order = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
    return [p for p in order if p in have]


class OnnxRuntimeEngine(PolicyEngine):
    """Runs ``model.onnx`` (fp32) or ``model.int8.onnx`` (Q/DQ int8) of a model directory."""

    backend = "onnxruntime"

    def __init__(self, model: str | Path | None = None, precision: str = "fp32",
                 providers: list[str] | None = None, threads: int | None = None) -> None:
        if precision not in ONNX_FILES:
            raise ValueError(f"precision: the onnxruntime backend runs 'fp32' or 'int8', got {precision!r}")
        self.model_dir = Path(model) if model is not None else DEFAULT_MODEL_DIR
        self.path, self.spec = read_spec(self.model_dir, precision)
        self.precision = precision
        self.max_states = self.spec["max_states"]
        self.max_actions = self.spec["max_actions"]
        self.max_successors = self.spec["max_successors"]
        self.providers = list(providers) if providers else default_providers()
        retain_freed_memory()  # the padded feature arrays are re-allocated on every refresh
        try:
            self.session = inference_session(str(self.path), precision, threads, self.providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises several private types
            raise ModelFileError(f"{self.path}: ONNX Runtime cannot load it ({exc}); "
                                 f"{remake_hint(self.model_dir, self.path.name)}") from None
        inputs = self.session.get_inputs()
        names = tuple(i.name for i in inputs)
        if names != INPUT_NAMES:
            raise ModelFileError(f"{self.path}: inputs {names}, expected {INPUT_NAMES}; "
                                 f"{remake_hint(self.model_dir, self.path.name)}")
        _check_input_shapes(self.path, {i.name: i.shape for i in inputs}, self.spec)
        log.debug("onnxruntime %s model %s on %s", precision, self.path,
                  self.session.get_providers())

    def run_padded(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Model-only call on padded inputs (B, S, A, ...) -> logits (B, S, A)."""
        return self.session.run(None, inputs)[0]

    def policy(self, stats: CountStats, horizon: int) -> np.ndarray:
        return self.policy_batch([(stats, horizon)])[0]

    def policy_batch(self, batch: list[tuple[CountStats, int]]) -> list[np.ndarray]:
        """Logits for several statistics in one call, padded to the largest (S, A) among them."""
        if not batch:
            return []
        size = padded_size([(s.n_states, s.n_actions) for s, _ in batch])
        inputs = pad_features(self.features(batch), *size, self.max_successors)
        return unpad_logits(self.run_padded(inputs.as_dict()), batch)
