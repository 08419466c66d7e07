"""Inference backends behind one PolicyEngine interface.

``make_engine(backend="auto" | "tensorrt" | "onnxruntime" | "torch" | "planning", model=None,
precision="fp32")`` builds one; ``available_backends()`` says which run here and, for the
others, why not. ``auto`` starts every backend that can run here, times a few refreshes
of each on statistics of ``probe_size`` (S, A): the robot's size where the caller knows it
(every backend runs at the statistics' own size, but fixed per-call costs weigh more at small
S, so the ranking depends on it; TensorRT also tunes its engine for that size), else the
model's full size. It keeps the fastest (which one wins depends on the machine and on S),
logs the timings and its choice, and wraps it so that a backend failing at run time hands
over to the next fastest with a logged warning instead of stopping the robot.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable

import numpy as np

from rlfm_edge.inference.base import ModelLimitError, PolicyEngine
from rlfm_edge.inference.timing import refresh_stats, time_calls_ms
from rlfm_edge.stats import CountStats

__all__ = ["PolicyEngine", "ModelLimitError", "FallbackEngine", "make_engine", "available_backends",
           "format_backends"]

log = logging.getLogger(__name__)

# name -> (module, class, modules it needs, precisions); "auto" times each that runs here.
_BACKENDS: dict[str, tuple[str, str, tuple[str, ...], tuple[str, ...]]] = {
    "tensorrt": ("rlfm_edge.inference.tensorrt_backend", "TensorRTEngine", ("tensorrt", "torch"),
                 ("fp32", "fp16", "int8")),
    "onnxruntime": ("rlfm_edge.inference.onnx_backend", "OnnxRuntimeEngine", ("onnxruntime",),
                    ("fp32", "int8")),
    "torch": ("rlfm_edge.inference.torch_backend", "TorchEngine", ("torch", "torch_geometric"),
              ("fp32", "fp16")),
}
_MODEL_FREE = {"planning": ("rlfm_edge.inference.planning_engine", "PlanningEngine", (), ())}


def _reason_unavailable(name: str) -> str | None:
    if name == "tensorrt":
        from rlfm_edge.inference.tensorrt_backend import unavailable_reason

        return unavailable_reason()
    for module in {**_BACKENDS, **_MODEL_FREE}[name][2]:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any import failure means "not here"
            return f"cannot import {module} ({type(exc).__name__}: {exc})"
    return None


def available_backends() -> dict[str, str | None]:
    """Backend name -> None if usable here, else the reason it is not."""
    return {name: _reason_unavailable(name) for name in {**_BACKENDS, **_MODEL_FREE}}


def format_backends(reasons: dict[str, str | None]) -> str:
    """One line per backend, "  torch        available" or "  tensorrt     unavailable: why":
    how `rlfm-edge info` and a failed engine start show ``available_backends()``-style dicts."""
    return "\n".join(f"  {name:12s} {'available' if why is None else 'unavailable: ' + why}"
                     for name, why in reasons.items())


class FallbackEngine(PolicyEngine):
    """A chain of engines: runs the first that starts; on a run-time failure, moves to the next.

    Errors in the caller's input (ValueError, ModelLimitError) are raised as they are:
    every backend would reject them. ``backend``/``precision`` follow the engine in use.
    """

    def __init__(self, factories: list[tuple[str, Callable[[], PolicyEngine]]]) -> None:
        self._factories = list(factories)
        self._failures: list[str] = []
        self._switch()

    def _switch(self) -> None:
        while self._factories:
            label, factory = self._factories.pop(0)
            try:
                engine = factory()
            except Exception as exc:  # noqa: BLE001 - any failure to start means "try the next"
                self._failures.append(f"{label}: {exc}")
                log.warning("inference backend %s cannot start (%s); trying the next", label, exc)
                continue
            self.engine = engine
            self.backend, self.precision = engine.backend, engine.precision
            self.max_states, self.max_actions = engine.max_states, engine.max_actions
            return
        raise RuntimeError("no inference backend could run the model: " + "; ".join(self._failures))

    def policy(self, stats: CountStats, horizon: int) -> np.ndarray:
        return self._run(lambda engine: engine.policy(stats, horizon))

    def policy_batch(self, batch: list[tuple[CountStats, int]]) -> list[np.ndarray]:
        return self._run(lambda engine: engine.policy_batch(batch))

    def _run(self, call: Callable[[PolicyEngine], object]):
        """``call`` on the engine in use, moving down the chain while it fails at run time."""
        while True:
            try:
                return call(self.engine)
            except ValueError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep the robot acting on the next backend
                self._failures.append(f"{self.backend}/{self.precision}: {exc}")
                log.warning("inference backend %s/%s failed at run time (%s: %s); falling back to "
                            "the next", self.backend, self.precision, type(exc).__name__, exc)
                self._switch()


def probe_ms(engine: PolicyEngine, size: tuple[int, int], calls: int = 3) -> float:
    """Median refresh time of ``engine`` on statistics of ``size`` (S, A), after one warm-up."""
    stats = refresh_stats(np.random.default_rng(0), *size)
    return float(np.median(time_calls_ms(lambda: engine.policy(stats, 20), calls, warmup=1)))


def _auto(model, precision: str, probe_size: tuple[int, int] | None, **kw) -> PolicyEngine:
    """The fastest backend that starts here, measured; later failures fall back to the next fastest."""
    timed, reasons = [], {}
    for name, spec in _BACKENDS.items():
        reason = _reason_unavailable(name)
        if reason is not None:
            reasons[name] = reason
            continue
        p = precision if precision in spec[3] else "fp32"
        tuned = {"opt_size": probe_size} if name == "tensorrt" and probe_size else {}
        try:
            engine = make_engine(name, model, p, **kw, **tuned)
            size = probe_size or (engine.max_states, engine.max_actions)
            engine.check_fits(CountStats(*size))
            timed.append((probe_ms(engine, size), f"{name}/{p}", engine,
                          lambda n=name, p=p, t=tuned: make_engine(n, model, p, **kw, **t)))
        except ModelLimitError:
            raise  # the caller's size, not the backend, is wrong
        except Exception as exc:  # noqa: BLE001 - any failure to start or run means "try the next"
            reasons[name] = str(exc)
            log.warning("inference backend %s/%s cannot start (%s); trying the next", name, p, exc)
    if not timed:
        raise RuntimeError("no inference backend can run here:\n" + format_backends(reasons))
    timed.sort(key=lambda t: t[0])
    best = timed[0][2]
    # The winner is kept; the others are rebuilt only if it fails, so their memory is freed now.
    chain = [(timed[0][1], lambda: best)] + [(label, factory) for _, label, _, factory in timed[1:]]
    engine = FallbackEngine(chain)
    size = probe_size or (engine.max_states, engine.max_actions)
    log.info("inference backend 'auto' chose %s/%s (refresh at S=%d, A=%d: %s)", engine.backend,
             engine.precision, *size, ", ".join(f"{label} {ms:.2f} ms" for ms, label, _, _ in timed))
    return engine


def make_engine(backend: str = "auto", model=None, precision: str = "fp32",
                probe_size: tuple[int, int] | None = None, **kw) -> PolicyEngine:
    """Build a PolicyEngine; see the module docstring for ``auto`` and ``probe_size``."""
    specs = {**_BACKENDS, **_MODEL_FREE}
    if backend == "auto":
        return _auto(model, precision, probe_size, **kw)
    if backend not in specs:
        raise ValueError(f"backend: expected 'auto' or one of {sorted(specs)}, got {backend!r}")
    module, cls, _, precisions = specs[backend]
    if precisions and precision not in precisions:
        raise ValueError(f"precision: the {backend} backend runs {list(precisions)}, got {precision!r}")
    reason = _reason_unavailable(backend)
    if reason is not None:
        raise RuntimeError(f"backend {backend!r} is unavailable here: {reason}")
    engine_cls = getattr(importlib.import_module(module), cls)
    if backend in _MODEL_FREE:
        return engine_cls(**kw)
    return engine_cls(model=model, precision=precision, **kw)
