"""Saving and loading model weights without pickle, checked against a sha256 manifest.

A model directory holds ``weights.npz`` (the state dict as plain arrays), ``config.json``
(ModelConfig), ``manifest.json`` (sha256 of each model file in it) and, for shipped models,
``training_record.json`` and the ONNX exports. Nothing is half-loaded: every file a reader
needs is verified before it is read. A reader checks only the files it needs, so a damaged
optional file (an int8 export, say) stops neither the other backends nor the command that
re-creates it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from rlfm_edge.atomic import atomic_write_bytes
from rlfm_edge.model.config import ModelConfig
from rlfm_edge.npz import NpzFormatError, read_npz

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "default"
MANIFEST = "manifest.json"
# Far above the shipped model (hidden 32, 4 layers, Smax 256, Amax 8); a config beyond these
# is a corrupted or hostile file, refused before anything is built from it.
CONFIG_LIMITS = {"hidden": 4096, "heads": 256, "layers": 64, "max_successors": 1024,
                 "max_states": 1 << 16, "max_actions": 1024}


_RETRAIN = "`rlfm-edge train`, or copy the model directory again"
_EXPORT, _CALIBRATE = "`rlfm-edge export --model DIR`", "`rlfm-edge calibrate --model DIR`"
# The files a model directory may hold (what its manifest covers) -> the command that makes each.
_REMAKE = {"weights.npz": _RETRAIN, "config.json": _RETRAIN, "training_record.json": _RETRAIN,
           "model.onnx": _EXPORT, "model.onnx.json": _EXPORT,
           "model.int8.onnx": _CALIBRATE, "model.int8.onnx.json": _CALIBRATE}
MODEL_FILES = tuple(_REMAKE)


class ModelFileError(ValueError):
    """A model directory is missing files, or a file does not match its manifest."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def remake_hint(model_dir: Path, name: str) -> str:
    """What to do about a missing or bad model file ``name`` of ``model_dir``."""
    return f"re-create it with {remake_command(model_dir, name)}"


def remake_command(model_dir: Path, name: str) -> str:
    """The command that (re-)creates the model file ``name`` of ``model_dir``."""
    return _REMAKE.get(name, _RETRAIN).replace("DIR", str(model_dir))


def write_manifest(model_dir: Path, extra: dict | None = None,
                   written: tuple[str, ...] | None = None) -> dict:
    """Record the sha256 of the model files (MODEL_FILES) present in model_dir.

    Stray files (notes, leftovers, a calibration set) are not model files and are left out.
    With ``written``, only those files are hashed anew; the others keep the digest the old
    manifest gave them, so a command re-creating one file never vouches for another it did
    not check (a corrupted int8 export stays detected after a re-export).
    """
    old = {} if written is None else _listed_files(model_dir)
    files = {name: old[name] if name in old and name not in written else sha256_file(model_dir / name)
             for name in MODEL_FILES if (model_dir / name).is_file()}
    manifest = {"files": files, **(extra or {})}
    atomic_write_bytes(model_dir / MANIFEST, json.dumps(manifest, indent=1).encode())
    return manifest


def _listed_files(model_dir: Path) -> dict:
    """The old manifest's files, or none where it is missing or unreadable."""
    try:
        files = json.loads((model_dir / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return {}
    return {k: v for k, v in files.items() if isinstance(v, str)} if isinstance(files, dict) else {}


def verify_manifest(model_dir: Path, required: tuple[str, ...] | None = None) -> dict:
    """Check the ``required`` files (default: all listed) against the manifest; raise
    ModelFileError naming the first mismatch and the command that re-creates the file.

    Names must be plain file names inside ``model_dir`` (no folders, no ``..``): a manifest
    cannot make the loader read, or vouch for, a file elsewhere. Older manifests listing
    other files stay readable: entries a caller does not require are not checked.
    """
    path = model_dir / MANIFEST
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
    except FileNotFoundError:
        raise ModelFileError(f"{path}: manifest not found; is {model_dir} a model directory?") from None
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        raise ModelFileError(f"{path}: unreadable manifest") from None
    if not isinstance(files, dict) or not all(
            isinstance(name, str) and _is_plain_name(name) and isinstance(digest, str)
            for name, digest in files.items()):
        raise ModelFileError(f"{path}: 'files' must map plain file names in {model_dir} to sha256 "
                             f"strings")
    for name in files if required is None else required:
        if name not in files:
            raise ModelFileError(f"{path}: does not list the required file {name}")
        f = model_dir / name
        if not f.is_file():
            raise ModelFileError(f"{f}: listed in the manifest but missing; {remake_hint(model_dir, name)}")
        if sha256_file(f) != files[name]:
            raise ModelFileError(f"{f}: sha256 does not match the manifest (corrupted or replaced); "
                                 f"{remake_hint(model_dir, name)}")
    return manifest


def _is_plain_name(name: str) -> bool:
    return name not in ("", ".", "..") and "/" not in name and "\\" not in name and "\0" not in name


def save_model(net, model_dir: Path, record: dict | None = None) -> None:
    """Write weights, config and (optionally) a training record, then the manifest."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    import io

    buf = io.BytesIO()
    np.savez(buf, **{k: v.detach().cpu().numpy() for k, v in net.state_dict().items()})
    atomic_write_bytes(model_dir / "weights.npz", buf.getvalue())
    atomic_write_bytes(model_dir / "config.json", json.dumps(net.config.to_dict(), indent=1).encode())
    written = ("weights.npz", "config.json")
    if record is not None:
        atomic_write_bytes(model_dir / "training_record.json", json.dumps(record, indent=1).encode())
        written += ("training_record.json",)
    write_manifest(model_dir, written=written)


def load_config(model_dir: Path) -> ModelConfig:
    """The verified directory's config.json, refused when far beyond any network we build."""
    path = Path(model_dir) / "config.json"
    try:
        config = ModelConfig.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, RecursionError) as exc:
        raise ModelFileError(f"{path}: not a valid model config ({exc})") from None
    for name, limit in CONFIG_LIMITS.items():
        if getattr(config, name) > limit:
            raise ModelFileError(f"{path}: {name}={getattr(config, name)} is above the limit {limit}")
    return config


def read_weights(model_dir: Path) -> tuple[ModelConfig, dict[str, np.ndarray]]:
    """The verified directory's config and raw weight arrays (shapes not checked against it)."""
    verify_manifest(model_dir, required=("weights.npz", "config.json"))
    config = load_config(model_dir)
    weights = Path(model_dir) / "weights.npz"
    try:
        return config, read_npz(weights)
    except (OSError, NpzFormatError) as exc:
        raise ModelFileError(f"{weights}: not a readable weights file ({exc})") from None


def load_model(model_dir: Path | str | None = None):
    """The PolicyGAT stored in model_dir (default: the shipped model), verified first.

    The weights are read without pickle and must have exactly the shapes the config gives
    (checked on a meta-device twin) before the network itself is allocated.
    """
    import torch

    from rlfm_edge.model.gat import PolicyGAT

    model_dir = Path(model_dir) if model_dir is not None else DEFAULT_MODEL_DIR
    config, arrays = read_weights(model_dir)
    weights = model_dir / "weights.npz"
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in PolicyGAT(config).state_dict().items()}
    missing, unexpected = set(expected) - set(arrays), set(arrays) - set(expected)
    if missing or unexpected:
        raise ModelFileError(f"{weights}: weights do not fit the config "
                             f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
    wrong = [k for k, v in arrays.items() if v.shape != expected[k] or v.dtype.kind != "f"]
    if wrong:
        raise ModelFileError(f"{weights}: {wrong[0]} has shape {arrays[wrong[0]].shape} and dtype "
                             f"{arrays[wrong[0]].dtype}; the config needs float {expected[wrong[0]]}")
    net = PolicyGAT(config)
    try:
        net.load_state_dict({k: torch.from_numpy(v.astype(np.float32)) for k, v in arrays.items()})
    except RuntimeError as exc:
        raise ModelFileError(f"{weights}: weights do not fit the config: {exc}") from None
    return net.eval()
