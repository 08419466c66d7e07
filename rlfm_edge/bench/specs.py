"""Benchmark environments named with their parameters: ``deepsea:size=20``, ``garnet:n_states=20,seed=3``.

A spec is an env name (``rlfm_edge.envs.names()``), optionally followed by ``:`` and
comma-separated ``key=value`` pairs, the builder's documented parameters. Values are read as
Python literals (``20``, ``0.3``, ``None``); anything else stays a string. The spec is the
env's label in results and tables, and what a worker process rebuilds the env from.
"""

from __future__ import annotations

import ast

from rlfm_edge.mdp import TabularMDP


def parse_value(text: str):
    """``"20"`` -> 20, ``"0.3"`` -> 0.3, ``"None"`` -> None; anything else is the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_env_spec(spec: str) -> tuple[str, dict]:
    """``"deepsea:size=20,seed=3"`` -> ("deepsea", {"size": 20, "seed": 3})."""
    name, _, params = spec.partition(":")
    kw: dict = {}
    for item in filter(None, (p.strip() for p in params.split(","))):
        key, eq, raw = item.partition("=")
        if not (eq and key.strip()):
            raise ValueError(f"envs: {spec!r}: expected NAME:KEY=VALUE[,KEY=VALUE...], got {item!r}")
        if key.strip() in kw:
            raise ValueError(f"envs: {spec!r}: {key.strip()} given twice")
        kw[key.strip()] = parse_value(raw.strip())
    return name.strip(), kw


def make_env(spec: str) -> TabularMDP:
    """The benchmark MDP a spec names; a ValueError names the spec and what is wrong with it."""
    from rlfm_edge import envs

    name, kw = parse_env_spec(spec)
    if name not in envs.names():
        raise ValueError(f"envs: unknown environment {name!r}; known: {', '.join(envs.names())}")
    try:
        return envs.make(name, **kw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"envs: {spec!r}: {exc}") from None


def split_env_list(text: str) -> list[str]:
    """Comma-separated specs -> specs: ``"riverswim,garnet:n_states=20,seed=3,chain"`` ->
    ["riverswim", "garnet:n_states=20,seed=3", "chain"]. An item ``key=value`` without a name
    before it continues the parameters of the spec before it."""
    specs: list[str] = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        continues = "=" in item and ":" not in item.partition("=")[0]
        if continues:
            if not specs or ":" not in specs[-1]:
                raise ValueError(f"envs: {item!r} is a parameter without an environment before it "
                                 "(write NAME:KEY=VALUE, e.g. deepsea:size=20)")
            specs[-1] += f",{item}"
        else:
            specs.append(item)
    return specs
