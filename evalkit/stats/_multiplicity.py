"""Adjusting p-values when several framing pairs or models are tested together."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MULTIPLICITY_METHODS: tuple[str, ...] = ("holm", "bh")


def _as_pvalues(pvalues: Sequence[float]) -> np.ndarray:
    array = np.asarray(pvalues, dtype=float)
    if array.ndim != 1:
        raise ValueError("pvalues must be a one-dimensional sequence")
    if np.any(np.isnan(array)) or np.any((array < 0) | (array > 1)):
        raise ValueError("every p-value must be a number in [0, 1]")
    return array


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm (1979) step-down adjustment: the i-th smallest p times (m - i + 1), made
    non-decreasing and capped at 1; controls the family-wise error rate."""
    p = _as_pvalues(pvalues)
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = (m - np.arange(m)) * p[order]
    adjusted_sorted = np.minimum(1.0, np.maximum.accumulate(scaled))
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    return [float(value) for value in adjusted]


def benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    """Benjamini & Hochberg (1995) step-up adjustment: the i-th smallest p times m / i,
    made non-decreasing from the largest down and capped at 1; controls the FDR."""
    p = _as_pvalues(pvalues)
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted_sorted = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    return [float(value) for value in adjusted]


def adjust(pvalues: Sequence[float], method: str = "holm") -> list[float]:
    """Adjusted p-values by ``method``: "holm" (family-wise) or "bh" (false discovery rate)."""
    if method == "holm":
        return holm(pvalues)
    if method == "bh":
        return benjamini_hochberg(pvalues)
    raise ValueError(f"unknown method {method!r}; choose one of {', '.join(MULTIPLICITY_METHODS)}")
