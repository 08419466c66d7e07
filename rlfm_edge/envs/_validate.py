"""Checks for the keyword arguments of the benchmark builders: clear errors, one place."""

from __future__ import annotations

import numbers


def integer(name: str, value, minimum: int) -> int:
    """An int >= minimum (bools refused), else ValueError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def probability(name: str, value) -> float:
    """A real number in [0, 1], else ValueError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"{name}: expected a probability in [0, 1], got {value!r}")
    return float(value)


def seed_int(name: str, value) -> int:
    """A non-negative int usable as a numpy seed."""
    return integer(name, value, 0)
