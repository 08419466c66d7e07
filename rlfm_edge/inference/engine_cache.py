"""TensorRT engine cache: one serialized engine per (ONNX sha256, precision, TensorRT, GPU, profile).

Engines are specific to the GPU and the TensorRT version that built them, so the key
holds both; the plan file sits beside a small JSON record of its key and its own
sha256, and the ONNX file it was built from. A lookup that finds a plan for another key,
or a plan whose bytes no longer match the record (a half-written or corrupted file), logs
why and reports a miss, so the caller rebuilds instead of failing. A lookup that finds no
plan says which cached plan of the same model and precision it would have used and what
changed (TensorRT, GPU, ONNX), and once the new plan is stored, the plans it supersedes
are deleted. Plans are written atomically (temporary file, fsync, rename) and the record
last, so a power cut never leaves a record pointing at a partial plan.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from rlfm_edge.atomic import atomic_write_bytes

log = logging.getLogger(__name__)

ENV_CACHE_DIR = "RLFM_EDGE_ENGINE_CACHE"


@dataclass(frozen=True)
class EngineKey:
    onnx_sha256: str
    precision: str
    trt_version: str
    gpu: str
    max_batch: int = 1
    opt_states: int = 0   # the optimization profile's (S, A) the kernels are tuned for; 0 in
    opt_actions: int = 0  # records from before dynamic S and A

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


def default_cache_dir() -> Path:
    """$RLFM_EDGE_ENGINE_CACHE, else ~/.cache/rlfm_edge/engines."""
    env = os.environ.get(ENV_CACHE_DIR)
    return Path(env) if env else Path.home() / ".cache" / "rlfm_edge" / "engines"


def record_path(plan: Path) -> Path:
    return plan.with_name(plan.name + ".json")


def plan_path(cache_dir: Path, key: EngineKey) -> Path:
    return Path(cache_dir) / f"policy-{key.precision}-{key.digest()[:16]}.plan"


_LABELS = {"onnx_sha256": "ONNX", "precision": "precision", "trt_version": "TensorRT", "gpu": "GPU",
           "max_batch": "max batch", "opt_states": "profile S", "opt_actions": "profile A"}


def describe_change(old: EngineKey, new: EngineKey) -> str:
    """What differs between two keys, e.g. "TensorRT '10.3.0' -> '10.7.0', GPU ... -> ..."."""
    changed = [k for k, v in asdict(old).items() if getattr(new, k) != v]
    return ", ".join(f"{_LABELS[k]} {_short(getattr(old, k))!r} -> {_short(getattr(new, k))!r}"
                     for k in changed)


def _short(value):
    return value[:12] if isinstance(value, str) and len(value) == 64 else value  # a sha256


def load_plan(plan: Path, key: EngineKey, source: str | None = None) -> bytes | None:
    """The plan's bytes if it was built for ``key`` and is intact; else log why and return None.

    ``source`` (the ONNX file's path) lets a miss say what changed since the plans cached
    for the same model were built.
    """
    plan = Path(plan)
    record = record_path(plan)
    if not plan.is_file():
        log.info("no cached TensorRT engine at %s: building one (%s)", plan, _miss_reason(plan, key, source))
        return None
    try:
        meta = json.loads(record.read_text())
        built_for = EngineKey(**meta["key"])
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("TensorRT engine %s has no readable record %s: rebuilding", plan, record.name)
        return None
    if built_for != key:
        log.warning("TensorRT engine %s was built for another setup (%s): rebuilding", plan,
                    describe_change(built_for, key))
        return None
    data = plan.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta.get("plan_sha256"):
        log.warning("TensorRT engine %s is corrupted (sha256 differs from %s): rebuilding",
                    plan, record.name)
        return None
    return data


def _miss_reason(plan: Path, key: EngineKey, source: str | None) -> str:
    related = related_plans(plan.parent, key, source)
    if not related:
        return "none cached for this model and precision"
    return "; ".join(f"cached {other.name} was built for another setup: {describe_change(built, key)}"
                     for other, built in related)


def related_plans(cache_dir: Path, key: EngineKey, source: str | None) -> list[tuple[Path, EngineKey]]:
    """(plan, key) of the cached plans of the same model (ONNX file or content) and precision
    as ``key``, built for another key. Plans without a readable record are not looked at."""
    found = []
    for record in sorted(Path(cache_dir).glob("*.plan.json")):
        try:
            meta = json.loads(record.read_text())
            built = EngineKey(**meta["key"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        same_model = (built.onnx_sha256 == key.onnx_sha256
                      or (source is not None and meta.get("source") == source))
        if same_model and built.precision == key.precision and built != key:
            found.append((record.with_name(record.name.removesuffix(".json")), built))
    return found


def prune_superseded(plan: Path, key: EngineKey, source: str | None) -> list[Path]:
    """Delete the cached plans that ``plan`` (built for ``key``, the one in use) supersedes:
    same model, precision, GPU, max batch and profile (or a plan from before profiles), older
    TensorRT or ONNX. Plans for another GPU or profile stay (a cache may be shared). The
    record goes first, so a crash in between leaves a plan no lookup trusts, never a record
    without its plan's bytes."""
    pruned = []
    for other, built in related_plans(plan.parent, key, source):
        profile = (built.opt_states, built.opt_actions)
        same_setup = (built.gpu, built.max_batch) == (key.gpu, key.max_batch) and profile in (
            (key.opt_states, key.opt_actions), (0, 0))
        if other == plan or not same_setup:
            continue
        record_path(other).unlink(missing_ok=True)
        other.unlink(missing_ok=True)
        log.info("deleted TensorRT engine %s, superseded (%s)", other, describe_change(built, key))
        pruned.append(other)
    return pruned


def store_plan(plan: Path, key: EngineKey, data: bytes, source: str | None = None) -> Path:
    """Write the plan, then its record (key, plan sha256, ONNX file it was built from), each atomically."""
    plan = Path(plan)
    atomic_write_bytes(plan, data)
    meta = {"key": asdict(key), "plan_sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
            "source": source}
    atomic_write_bytes(record_path(plan), json.dumps(meta, indent=1).encode())
    return plan
