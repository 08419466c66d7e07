"""Benchmark MDPs by name: ``names()`` lists them, ``make(name, **kw)`` builds one.

Each family lives in its own module whose docstring gives its source, every constant
and any reward rescaling. Every builder returns a validated ``TabularMDP``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from rlfm_edge.envs.chain import chain
from rlfm_edge.envs.deepsea import deepsea
from rlfm_edge.envs.garnet import garnet
from rlfm_edge.envs.riverswim import riverswim
from rlfm_edge.envs.sixarms import sixarms
from rlfm_edge.envs.toy_text import cliffwalking, frozenlake4x4, frozenlake8x8
from rlfm_edge.mdp import TabularMDP

_BUILDERS: dict[str, Callable[..., TabularMDP]] = {
    "riverswim": riverswim,
    "sixarms": sixarms,
    "chain": chain,
    "deepsea": deepsea,
    "garnet": garnet,
    "frozenlake4x4": frozenlake4x4,
    "frozenlake8x8": frozenlake8x8,
    "cliffwalking": cliffwalking,
}


def names() -> list[str]:
    """Names accepted by :func:`make`."""
    return list(_BUILDERS)


def make(name: str, **kw) -> TabularMDP:
    """Build the benchmark ``name``; ``kw`` are its documented parameters (e.g. horizon)."""
    try:
        builder = _BUILDERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown env {name!r}; known: {', '.join(_BUILDERS)}") from None
    accepted = list(inspect.signature(builder).parameters)
    unknown = sorted(set(kw) - set(accepted))
    if unknown:
        raise ValueError(f"{name}: unknown argument(s) {', '.join(unknown)}; "
                         f"accepted: {', '.join(accepted)}")
    return builder(**kw)


__all__ = ["make", "names"]
