"""TensorRT engine cache: one serialized engine per (ONNX sha256, precision, TensorRT, GPU).

Engines are specific to the GPU and the TensorRT version that built them, so the key
holds both; the plan file sits beside a small JSON record of its key and its own
sha256. A lookup that finds a plan for another key, or a plan whose bytes no longer
match the record (a half-written or corrupted file), logs why and reports a miss, so
the caller rebuilds instead of failing. Plans are written atomically (temporary file,
fsync, rename) and the record last, so a power cut never leaves a record pointing at a
partial plan.
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


def load_plan(plan: Path, key: EngineKey) -> bytes | None:
    """The plan's bytes if it was built for ``key`` and is intact; else log why and return None."""
    plan = Path(plan)
    record = record_path(plan)
    if not plan.is_file():
        log.info("no cached TensorRT engine at %s: building one", plan)
        return None
    try:
        meta = json.loads(record.read_text())
        built_for = EngineKey(**meta["key"])
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("TensorRT engine %s has no readable record %s: rebuilding", plan, record.name)
        return None
    if built_for != key:
        diff = {k: (v, getattr(key, k)) for k, v in asdict(built_for).items() if getattr(key, k) != v}
        why = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in diff.items())
        log.warning("TensorRT engine %s was built for another setup (%s): rebuilding", plan, why)
        return None
    data = plan.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta.get("plan_sha256"):
        log.warning("TensorRT engine %s is corrupted (sha256 differs from %s): rebuilding",
                    plan, record.name)
        return None
    return data


def store_plan(plan: Path, key: EngineKey, data: bytes) -> Path:
    """Write the plan, then its record, each atomically."""
    plan = Path(plan)
    atomic_write_bytes(plan, data)
    meta = {"key": asdict(key), "plan_sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    atomic_write_bytes(record_path(plan), json.dumps(meta, indent=1).encode())
    return plan
