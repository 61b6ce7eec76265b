"""Agreement statistics: confusion matrices, Cohen's kappa, and proportions with Wilson
intervals (judges against each other and against human labels).

Kappa (Cohen 1960) compares two raters' labels on the same items:
kappa = (p_o - p_e) / (1 - p_e), with p_o the observed agreement and p_e the agreement
expected from the two raters' label frequencies alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any


@dataclass(frozen=True)
class ConfusionMatrix:
    """Counts of (label of judge a, label of judge b); rows are a's labels, columns b's."""

    categories: tuple[str, ...]
    counts: tuple[tuple[int, ...], ...]

    @classmethod
    def from_labels(cls, a: Sequence[str], b: Sequence[str], categories: Sequence[str] | None = None,
                    order: Sequence[str] = ()) -> ConfusionMatrix:
        """``categories`` fixes the rows and columns; without it they are the labels present,
        those in ``order`` first in that order, then the rest alphabetically."""
        if len(a) != len(b):
            raise ValueError(f"label sequences differ in length ({len(a)} and {len(b)})")
        present = set(a) | set(b)
        if categories is None:
            rank = {label: i for i, label in enumerate(order)}
            categories = sorted(present, key=lambda label: (rank.get(label, len(rank)), label))
        unknown = present - set(categories)
        if unknown:
            raise ValueError(f"labels outside the categories: {sorted(unknown)}")
        index = {label: i for i, label in enumerate(categories)}
        counts = [[0] * len(categories) for _ in categories]
        for x, y in zip(a, b):
            counts[index[x]][index[y]] += 1
        return cls(tuple(categories), tuple(tuple(row) for row in counts))

    @property
    def n(self) -> int:
        return sum(map(sum, self.counts))

    def as_dict(self) -> dict[str, Any]:
        return {"categories": list(self.categories), "counts": [list(row) for row in self.counts]}


@dataclass(frozen=True)
class Kappa:
    """``kappa`` is None when undefined: both judges used one and the same label only (p_e = 1).
    ``standard_error`` is the asymptotic (non-null) standard error of Fleiss, Cohen and
    Everitt (1969), as SAS PROC FREQ reports it; ``ci`` the Wald interval from it."""

    kappa: float | None
    observed: float
    expected: float
    n: int
    standard_error: float | None = None
    ci: tuple[float, float] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"kappa": self.kappa, "observed_agreement": self.observed, "expected_agreement": self.expected,
                "n": self.n, "standard_error": self.standard_error, "ci": list(self.ci) if self.ci else None}


def cohen_kappa(matrix: ConfusionMatrix, alpha: float = 0.05) -> Kappa:
    """Cohen's kappa of a square confusion matrix, with its asymptotic standard error and
    (1 - alpha) Wald interval (Fleiss, Cohen and Everitt 1969)."""
    n = matrix.n
    if n == 0:
        raise ValueError("cannot compute kappa on no items (n = 0)")
    k = len(matrix.categories)
    p = [[cell / n for cell in row] for row in matrix.counts]
    observed = sum(p[i][i] for i in range(k))
    rows = [sum(p[i]) for i in range(k)]
    cols = [sum(p[i][j] for i in range(k)) for j in range(k)]
    expected = sum(r * c for r, c in zip(rows, cols))
    if abs(1.0 - expected) < 1e-12:
        return Kappa(None, observed, expected, n)
    kappa = (observed - expected) / (1.0 - expected)
    a = sum(p[i][i] * (1 - (rows[i] + cols[i]) * (1 - kappa)) ** 2 for i in range(k))
    b = (1 - kappa) ** 2 * sum(p[i][j] * (cols[i] + rows[j]) ** 2 for i in range(k) for j in range(k) if i != j)
    c = (kappa - expected * (1 - kappa)) ** 2
    se = math.sqrt(max(a + b - c, 0.0) / ((1 - expected) ** 2 * n))
    # for an alpha below ~2e-16, 1 - alpha/2 rounds to 1 (an infinite quantile): use the lower tail
    z = NormalDist().inv_cdf(1 - alpha / 2) if 1 - alpha / 2 < 1 else -NormalDist().inv_cdf(alpha / 2)
    return Kappa(kappa, observed, expected, n, se, (max(-1.0, kappa - z * se), min(1.0, kappa + z * se)))


def cohen_kappa_labels(a: Sequence[str], b: Sequence[str]) -> Kappa:
    """Cohen's kappa of two raters' labels on the same items."""
    return cohen_kappa(ConfusionMatrix.from_labels(a, b))  # kappa does not depend on the categories' order


@dataclass(frozen=True)
class Rate:
    """A proportion ``successes / n`` with its Wilson score interval (a judge's accuracy,
    sensitivity, specificity against human labels)."""

    successes: int
    n: int
    alpha: float = 0.05

    @property
    def value(self) -> float | None:
        return self.successes / self.n if self.n else None

    @property
    def interval(self) -> tuple[float, float] | None:
        from ._intervals import wilson_interval  # scipy: only when an interval is computed
        return wilson_interval(self.successes, self.n, self.alpha) if self.n else None

    def as_dict(self) -> dict[str, Any]:
        return {"successes": self.successes, "n": self.n, "rate": self.value,
                "wilson_ci": list(self.interval) if self.interval else None}
