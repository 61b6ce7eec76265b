"""Cluster bootstrap of the compliance gap, resampling behaviors rather than responses."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._checks import check_alpha, check_count

# Bound on the index matrix held at once (reps x n int64), so a large run stays in memory.
_MAX_INDICES_PER_CHUNK = 2_000_000


def _per_behavior(values: Sequence[float], name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a one-dimensional sequence, one value per behavior")
    if np.any(np.isnan(array)) or np.any((array < 0) | (array > 1)):
        raise ValueError(f"{name} values must be refusal indicators or proportions in [0, 1]")
    return array


def cluster_bootstrap_gap(
    free_refused: Sequence[float],
    paid_refused: Sequence[float],
    reps: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile interval for dC from resampling whole behaviors (clusters) with
    replacement, so every response of a behavior moves together; seeded and reproducible.

    Each entry is one behavior's refusal verdict (bool) or, with repeated samples, its
    refusal proportion. The random stream comes only from ``numpy.random.default_rng(seed)``.
    """
    free = _per_behavior(free_refused, "free_refused")
    paid = _per_behavior(paid_refused, "paid_refused")
    if free.shape != paid.shape:
        raise ValueError(f"free_refused and paid_refused need one value per behavior: got {free.size} and {paid.size}")
    if free.size == 0:
        raise ValueError("cannot bootstrap an empty set of behaviors")
    reps = check_count(reps, "reps")
    if reps < 1:
        raise ValueError("reps must be at least 1")
    alpha = check_alpha(alpha)
    check_count(seed, "seed")

    per_behavior_gap = paid - free
    n = per_behavior_gap.size
    rng = np.random.default_rng(seed)
    replicate_gaps = np.empty(reps)
    chunk = max(1, _MAX_INDICES_PER_CHUNK // n)
    for start in range(0, reps, chunk):
        stop = min(reps, start + chunk)
        resampled = rng.integers(0, n, size=(stop - start, n))
        replicate_gaps[start:stop] = per_behavior_gap[resampled].mean(axis=1)
    low, high = np.quantile(replicate_gaps, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)
