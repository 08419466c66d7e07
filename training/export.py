"""Export the dense GAT to ONNX: dynamic batch, state count S and action count A; static K.

The export is what ONNX Runtime runs on a CPU and what TensorRT builds engines from, so
it is checked twice before it is written: ``onnx.checker`` (full check, shape inference)
and a parity run of ONNX Runtime against torch on random statistics, at batch sizes 1
and 2 and at a smaller (S, A) than the export's maximum. The dynamo exporter
(``torch.export``) is used: the legacy TorchScript tracer bakes sizes into Reshapes
(``B * S`` is a Python int when traced), while ``torch.export`` keeps them symbolic and
gives a graph of Gather, MatMul, Softmax and LayerNormalization nodes that ONNX Runtime
and TensorRT both parse. S and A are dynamic so that a robot's refresh costs what its own
statistics need; ``max_states`` / ``max_actions`` in the description are the largest
sizes the export serves (TensorRT's optimization profile ends there).

The output directory becomes a complete model directory: the weights and config are
copied beside ``model.onnx`` when it differs from the input, the export description
goes to ``model.onnx.json`` and the sha256 manifest is rewritten to cover the model files.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np

from rlfm_edge.atomic import atomic_write_bytes
from rlfm_edge.inference.onnx_backend import ONNX_FILES, spec_path
from rlfm_edge.model.features import (
    DYNAMIC_AXES,
    INPUT_NAMES,
    OUTPUT_NAMES,
    build_features,
    pad_features,
)
from rlfm_edge.model.io import (
    MANIFEST,
    load_model,
    sha256_file,
    write_manifest,
)
from rlfm_edge.stats import CountStats

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
PARITY_TOLERANCE = 1e-4
_MODEL_FILES = ("weights.npz", "config.json", "training_record.json")


def random_stats(rng: np.random.Generator, n_states: int, n_actions: int, transitions: int) -> CountStats:
    """Statistics of uniformly random transitions with skewed successors (many > K per (s, a))."""
    stats = CountStats(n_states, n_actions)
    if transitions:
        s = rng.integers(0, n_states, transitions)
        a = rng.integers(0, n_actions, transitions)
        s_next = np.minimum(rng.geometric(0.3, transitions) - 1 + s, n_states - 1)
        stats.update_batch(s, a, rng.random(transitions), s_next)
    return stats


def valid_logit_diff(a: np.ndarray, b: np.ndarray, n_states: int, n_actions: int) -> float:
    """Max abs difference of (B, Smax, Amax) logits over the real (s, a) entries only."""
    return float(np.abs(a[:, :n_states, :n_actions] - b[:, :n_states, :n_actions]).max())


def _sample_inputs(net, max_states: int, max_actions: int, seed: int):
    """A batch of two padded examples of different sizes, with edges, untried pairs and padding."""
    rng = np.random.default_rng(seed)
    k = net.config.max_successors
    sizes = [(max_states, max_actions), (max(2, max_states // 3), max(2, max_actions - 1))]
    feats = [build_features(random_stats(rng, S, A, 20 * S * A), 10, k) for S, A in sizes]
    return pad_features(feats, max_states, max_actions, k), sizes


def _to_onnx_bytes(dense, inputs, opset: int, max_states: int, max_actions: int) -> bytes:
    import torch

    args = tuple(torch.from_numpy(v) for v in inputs.as_dict().values())
    dims = {"batch": torch.export.Dim("batch", min=1, max=4096),
            "states": torch.export.Dim("states", min=1, max=max_states),
            "actions": torch.export.Dim("actions", min=1, max=max_actions)}
    shapes = tuple({axis: dims[dim] for axis, dim in enumerate(DYNAMIC_AXES[name])} for name in INPUT_NAMES)
    quiet = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript", "onnx_ir")]
    levels = [q.level for q in quiet]
    try:
        for q in quiet:
            q.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                dense, args, input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                dynamic_shapes=shapes, opset_version=opset,
                dynamo=True, optimize=True, verbose=False)
    finally:
        for q, level in zip(quiet, levels, strict=True):
            q.setLevel(level)
    return program.model_proto.SerializeToString()


def check_parity(onnx_bytes: bytes, dense, inputs, sizes) -> float:
    """Max abs logit difference ONNX Runtime (CPU) vs torch over the valid entries: the
    batch of two, its second example alone, and that example at its own (S, A)."""
    import torch

    from rlfm_edge.inference.onnx_backend import inference_session

    session = inference_session(onnx_bytes, providers=["CPUExecutionProvider"])
    feed = inputs.as_dict()
    with torch.inference_mode():
        want = dense(*(torch.from_numpy(v) for v in feed.values())).numpy()
    S, A = sizes[-1]
    cut = {k: v[-1:, :S, :A] if k != "state_x" else v[-1:, :S] for k, v in feed.items()}
    diffs = []
    for batch in (feed, {k: v[1:] for k, v in feed.items()}, cut):  # batch, S and A are dynamic
        got = session.run(None, batch)[0]
        offset = len(want) - len(got)
        diffs += [valid_logit_diff(got[b:b + 1], want[offset + b:offset + b + 1], *sizes[offset + b])
                  for b in range(len(got))]
    return max(diffs)


def export_onnx(model_dir: Path | str, out_dir: Path | str | None = None, max_states: int | None = None,
                max_actions: int | None = None, opset: int = DEFAULT_OPSET, seed: int = 0) -> dict:
    """Write ``model.onnx`` (+ ``model.onnx.json``) for the model in ``model_dir``; returns the spec."""
    import onnx
    import torch

    from rlfm_edge.model.dense import DenseGAT

    model_dir = Path(model_dir)
    out_dir = Path(out_dir) if out_dir is not None else model_dir
    net = load_model(model_dir)
    cfg = net.config
    max_states = cfg.max_states if max_states is None else max_states
    max_actions = cfg.max_actions if max_actions is None else max_actions
    for name, v in (("max_states", max_states), ("max_actions", max_actions)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 2:
            raise ValueError(f"{name}: expected an integer >= 2, got {v!r}")
    if not 17 <= opset <= 21:
        raise ValueError(f"opset: expected 17..21 (LayerNormalization needs 17), got {opset}")

    dense = DenseGAT(net).eval()
    inputs, sizes = _sample_inputs(net, max_states, max_actions, seed)
    with torch.inference_mode():
        data = _to_onnx_bytes(dense, inputs, opset, max_states, max_actions)
    model = onnx.load_from_string(data)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise RuntimeError(f"export: the ONNX graph failed onnx.checker: {exc}") from None
    diff = check_parity(data, dense, inputs, sizes)
    if not diff <= PARITY_TOLERANCE:
        raise RuntimeError(f"export: ONNX Runtime and torch disagree by {diff:.2e} "
                           f"(> {PARITY_TOLERANCE:g}) on the logits; the export is not written")

    out_dir.mkdir(parents=True, exist_ok=True)
    copied = ()
    if out_dir.resolve() != model_dir.resolve():
        copied = tuple(name for name in _MODEL_FILES if (model_dir / name).is_file())
        for name in copied:
            shutil.copyfile(model_dir / name, out_dir / name)
    path = out_dir / ONNX_FILES["fp32"]
    atomic_write_bytes(path, data)
    spec = {
        "file": path.name,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "precision": "fp32",
        "max_states": max_states,
        "max_actions": max_actions,
        "max_successors": cfg.max_successors,
        "opset": opset,
        "inputs": {k: [*DYNAMIC_AXES[k], *v.shape[len(DYNAMIC_AXES[k]):]]
                   for k, v in inputs.as_dict().items()},
        "outputs": {"logits": ["batch", "states", "actions"]},
        "weights_sha256": sha256_file(model_dir / "weights.npz"),
        "model_config": cfg.to_dict(),
        "parity_max_abs_diff": diff,
        "exporter": f"torch {torch.__version__} (torch.export), onnx {onnx.__version__}",
    }
    write_spec(out_dir, spec, also_written=copied)
    if (out_dir / ONNX_FILES["int8"]).is_file() and _int8_source(out_dir) != spec["sha256"]:
        log.warning("%s was calibrated from the previous export and is refused until you rerun "
                    "`rlfm-edge calibrate --model %s`", out_dir / ONNX_FILES["int8"], out_dir)
    return spec


def _int8_source(model_dir: Path) -> str | None:
    """sha256 of the model.onnx that the directory's INT8 file was calibrated from, if it says."""
    try:
        return json.loads(spec_path(model_dir, "int8").read_text()).get("source_sha256")
    except (OSError, ValueError, AttributeError):
        return None


def write_spec(model_dir: Path, spec: dict, also_written: tuple[str, ...] = ()) -> None:
    """Write the export description beside its ONNX file and refresh the directory manifest.

    Only the files written now (the ONNX file, its description, ``also_written``) are hashed
    anew: the manifest keeps vouching for the others only as far as it did before.
    """
    sidecar = spec_path(model_dir, spec["precision"])
    atomic_write_bytes(sidecar, json.dumps(spec, indent=1).encode())
    extra = {}
    manifest = model_dir / MANIFEST
    if manifest.is_file():
        try:
            extra = {k: v for k, v in json.loads(manifest.read_text()).items() if k != "files"}
        except ValueError:
            extra = {}
    write_manifest(model_dir, extra, written=(spec["file"], sidecar.name, *also_written))
