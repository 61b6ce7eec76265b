"""Argument checks shared by the statistics modules.

Every public function validates its inputs here so that a bad call fails loudly with a
``ValueError`` naming the argument, instead of returning a NaN that travels into a report.
"""

from __future__ import annotations

import math
import numbers


def check_count(value: object, name: str) -> int:
    """Return ``value`` as a Python int if it is a non-negative integer (bools refused)."""
    # bool is an int subclass; a True where a count belongs is almost always a caller bug.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def check_alpha(alpha: object, name: str = "alpha") -> float:
    """Return ``alpha`` as a float if it lies strictly between 0 and 1."""
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise ValueError(f"{name} must be a number in (0, 1), got {alpha!r}")
    alpha = float(alpha)
    if not (0.0 < alpha < 1.0):
        raise ValueError(f"{name} must be in (0, 1), got {alpha!r}")
    return alpha


def check_probability(value: object, name: str) -> float:
    """Return ``value`` as a float if it lies in the closed interval [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    value = float(value)
    if math.isnan(value) or not (0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return value
