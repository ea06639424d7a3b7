"""Declare parameters with descriptors and validate them once at start-up (fail fast)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor


class ConfigError(ValueError):
    """A node was started with an invalid parameter value; the process exits 1 with this text."""


def declare(node, name: str, default: Any, description: str, *, read_only: bool = False,
            range: tuple[float, float] | None = None, choices: Sequence[str] | None = None,
            dynamic_typing: bool = False) -> Any:
    """Declare ``name`` with a descriptor and return its value, validated.

    ``range`` becomes a FloatingPointRange/IntegerRange (enforced by rclpy on set) and is also
    checked here for the initial value; ``choices`` restricts string values.
    """
    desc = ParameterDescriptor(description=description, read_only=read_only,
                               dynamic_typing=dynamic_typing)
    if choices:
        desc.additional_constraints = f'one of: {", ".join(choices)}'
    if range is not None:
        lo, hi = range
        if isinstance(default, bool) or not isinstance(default, (int, float)):
            raise TypeError(f'range given for non-numeric parameter {name}')
        if isinstance(default, int):
            desc.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=0)]
        else:
            desc.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi),
                                                            step=0.0)]
    try:
        value = node.declare_parameter(name, default, desc).value
    except Exception as exc:
        raise ConfigError(f'parameter {name!r}: {exc}') from exc
    if range is not None and not (range[0] <= value <= range[1]):
        raise ConfigError(f'parameter {name!r} = {value!r} is outside [{range[0]}, {range[1]}]')
    if choices and value not in choices:
        raise ConfigError(f'parameter {name!r} = {value!r} is not one of {list(choices)}')
    return value
