"""Type checks of a config mapping against a dataclass's field types, before any work starts.

A training run spends many minutes making data before it first uses most settings; a value
of the wrong type (``epochs: one``) must fail at load, naming the field, not then.
Understands the annotations these configs use: int, float, str, bool, bare list/dict/tuple,
``list[X]``, ``tuple[X, ...]``, ``dict[K, V]`` and ``X | None``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing


def check_fields(cls, raw, where: str = "") -> dict:
    """``raw`` (a mapping of some of ``cls``'s fields) checked: a mapping, no unknown field,
    each value of its field's type. Returns ``raw``; a ValueError names the first problem."""
    prefix = f"{where}." if where else ""
    if not isinstance(raw, dict):
        raise ValueError(f"{where or 'config'}: expected a mapping of fields, got "
                         f"{type(raw).__name__} {raw!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(map(str, set(raw) - known))
    if unknown:
        raise ValueError(f"{where or 'config'}: unknown field(s) {unknown}; known {sorted(known)}")
    hints = typing.get_type_hints(cls)
    for name, value in raw.items():
        problem = _mismatch(hints[name], value)
        if problem:
            raise ValueError(f"{prefix}{name}: expected {problem}, got {value!r}")
    return raw


def _mismatch(kind, value) -> str:
    """What ``value`` should have been, or "" when it is of type ``kind``."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return ""
        wanted = [a for a in args if a is not type(None)]
        problems = [_mismatch(a, value) for a in wanted]
        return "" if "" in problems else " or ".join(problems) + (
            " or null" if type(None) in args else "")
    if kind is bool:
        return "" if isinstance(value, bool) else "true or false"
    if kind is int:
        return "" if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return "" if ok else "a finite number"
    if kind is str:
        return "" if isinstance(value, str) else "a string"
    container = origin or kind
    if container in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return "a list"
        item = args[0] if args else None
        for i, v in enumerate(value):
            problem = _mismatch(item, v) if item is not None else ""
            if problem:
                return f"a list whose item {i} is {problem}"
        return ""
    if container is dict:
        if not isinstance(value, dict):
            return "a mapping"
        if args:
            for k, v in value.items():
                problem = _mismatch(args[0], k) or _mismatch(args[1], v)
                if problem:
                    return f"a mapping whose entry {k!r} is {problem}"
        return ""
    return ""
