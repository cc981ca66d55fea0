"""Validation of numeric settings (step sizes, decays, counts), shared by the core and everything on it."""
from __future__ import annotations

import math
import numbers


def check_number(value, name: str, *, low: float | None = 0.0, low_open: bool = True, high: float | None = None,
                 high_open: bool = False, integer: bool = False) -> float | int:
    """``value`` as a finite float (an int with ``integer``) in the interval ``low < value <= high``
    (``low <= value`` when not ``low_open``, ``value < high`` with ``high_open``; no bound where None),
    else a ValueError/TypeError that names the argument, the allowed range and what it got."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral if integer else numbers.Real):
        raise TypeError(f"{name} must be {kind}, got {type(value).__name__} {value!r}")
    value = int(value) if integer else float(value)
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if not math.isfinite(value) or below or above:
        bounds = [] if low is None else [f"{'>' if low_open else '>='} {low:g}"]
        bounds += [] if high is None else [f"{'<' if high_open else '<='} {high:g}"]
        raise ValueError(f"{name} must be a finite {'integer' if integer else 'number'}"
                         f"{' ' + ' and '.join(bounds) if bounds else ''}, got {value}")
    return value
