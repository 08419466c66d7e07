"""Parameter descriptors shared by the agent node and the serial bridge.

A parameter is described by its default (which fixes its type), a description, and a spec:
a (lo, hi) range for numbers, a tuple of allowed strings, or None.
"""

from __future__ import annotations

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

_STR, _INT, _DBL, _BOOL = (ParameterType.PARAMETER_STRING, ParameterType.PARAMETER_INTEGER,
                           ParameterType.PARAMETER_DOUBLE, ParameterType.PARAMETER_BOOL)
_STR_ARRAY, _DBL_ARRAY = ParameterType.PARAMETER_STRING_ARRAY, ParameterType.PARAMETER_DOUBLE_ARRAY


def descriptor(name: str, default, description: str, spec, read_only: bool = False) -> ParameterDescriptor:
    """The descriptor of one parameter: its type, and its range or allowed values from ``spec``."""
    kinds = {bool: _BOOL, int: _INT, float: _DBL, str: _STR}
    ptype = (_STR_ARRAY if isinstance(default[0], str) else _DBL_ARRAY) \
        if isinstance(default, list) else kinds[type(default)]
    d = ParameterDescriptor(name=name, type=ptype, description=description, read_only=read_only)
    if isinstance(spec, tuple) and isinstance(spec[0], str):
        d.additional_constraints = f"one of {', '.join(spec)}"
    elif spec is not None and ptype == _INT:
        d.integer_range = [IntegerRange(from_value=spec[0], to_value=spec[1], step=0)]
    elif spec is not None and ptype == _DBL:
        d.floating_point_range = [FloatingPointRange(from_value=spec[0], to_value=spec[1], step=0.0)]
    return d
