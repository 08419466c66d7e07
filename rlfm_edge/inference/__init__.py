"""Inference backends behind one PolicyEngine interface.

``make_engine(backend="auto" | "torch" | "planning", model=None, precision="fp32")``
builds one; ``available_backends()`` says which run here and, for the others, why not.
"""

from __future__ import annotations

import importlib
import logging

from rlfm_edge.inference.base import ModelLimitError, PolicyEngine

__all__ = ["PolicyEngine", "ModelLimitError", "make_engine", "available_backends"]

log = logging.getLogger(__name__)

# name -> (module, class, modules it needs); "auto" tries them in this order.
_BACKENDS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "torch": ("rlfm_edge.inference.torch_backend", "TorchEngine", ("torch", "torch_geometric")),
}
_MODEL_FREE = {"planning": ("rlfm_edge.inference.planning_engine", "PlanningEngine", ())}


def _reason_unavailable(modules: tuple[str, ...]) -> str | None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - any import failure means "not here"
            return f"cannot import {name} ({type(exc).__name__}: {exc})"
    return None


def available_backends() -> dict[str, str | None]:
    """Backend name -> None if usable here, else the reason it is not."""
    return {name: _reason_unavailable(spec[2]) for name, spec in {**_BACKENDS, **_MODEL_FREE}.items()}


def make_engine(backend: str = "auto", model=None, precision: str = "fp32", **kw) -> PolicyEngine:
    """Build a PolicyEngine; ``auto`` picks the first model backend that runs here."""
    specs = {**_BACKENDS, **_MODEL_FREE}
    if backend == "auto":
        reasons = {}
        for name, spec in _BACKENDS.items():
            reason = _reason_unavailable(spec[2])
            if reason is None:
                log.info("inference backend 'auto' chose %s", name)
                return make_engine(name, model=model, precision=precision, **kw)
            reasons[name] = reason
        raise RuntimeError(f"no inference backend can run here: {reasons}")
    if backend not in specs:
        raise ValueError(f"backend: expected 'auto' or one of {sorted(specs)}, got {backend!r}")
    module, cls, needs = specs[backend]
    reason = _reason_unavailable(needs)
    if reason is not None:
        raise RuntimeError(f"backend {backend!r} is unavailable here: {reason}")
    engine_cls = getattr(importlib.import_module(module), cls)
    if backend in _MODEL_FREE:
        return engine_cls(**kw)
    return engine_cls(model=model, precision=precision, **kw)
