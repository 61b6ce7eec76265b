"""Change between two versions of a model on the same behaviors: refusal rates and the framing gap.

Each behavior is judged four times: under the free and the paid framing, by the baseline
and by the candidate version. Its four refusal verdicts (free_b, paid_b, free_c, paid_c)
fall into one of 16 cells; everything here is paired across versions and framings.

- A framing's refusal change (candidate minus baseline) is a paired difference of two
  proportions: Newcombe's method 10 interval and the McNemar mid-p, as for the framing gap.
- The change of the gap, D = gap_c - gap_b with gap = refusal_paid - refusal_free, is the
  difference of two correlated paired differences. Its interval is the MOVER combination
  (Zou & Donner 2008, Stat Med 27:1693; the square-and-add rule Newcombe 1998 used for his
  method 10) of the two versions' Newcombe gap intervals, with their correlation estimated
  from the behaviors: corr(gap_c, gap_b) = corr over behaviors of (paid_c - free_c) and
  (paid_b - free_b). ``mover_difference`` reproduces Newcombe's published independent and
  paired intervals when given his component intervals and correlations
  (tests/unit/test_stats_change.py), and the interval's coverage on sim profiles is measured
  in tests/integration/test_gap_change_coverage.py. Unlike a Wald interval on the 16-cell
  multinomial, it does not collapse to zero width when few behaviors change, and it respects
  the [-2, 2] range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._checks import check_alpha
from ._intervals import Interval, newcombe_interval
from ._mcnemar import mcnemar_midp
from ._serialise import fields_as_json
from ._table import PairedTable


def mover_difference(estimate_1: float, interval_1: Interval, estimate_2: float, interval_2: Interval,
                     correlation: float = 0.0) -> Interval:
    """MOVER interval for theta_1 - theta_2 from each parameter's own interval and the
    correlation of the two estimates (Zou & Donner 2008): the distance from the estimate to
    each limit is recovered from the component limits, then squared and added."""
    if not -1.0 <= correlation <= 1.0 or math.isnan(correlation):
        raise ValueError(f"correlation must be in [-1, 1], got {correlation!r}")
    (low_1, high_1), (low_2, high_2) = interval_1, interval_2
    difference = estimate_1 - estimate_2
    down_1, up_2 = estimate_1 - low_1, high_2 - estimate_2
    up_1, down_2 = high_1 - estimate_1, estimate_2 - low_2
    lower = difference - math.sqrt(max(0.0, down_1**2 + up_2**2 - 2 * correlation * down_1 * up_2))
    upper = difference + math.sqrt(max(0.0, up_1**2 + down_2**2 - 2 * correlation * up_1 * down_2))
    return lower, upper


@dataclass(frozen=True)
class RefusalChange:
    """One framing's refusal rate, baseline and candidate, paired over behaviors."""

    n: int
    baseline: float
    candidate: float
    change: float  # candidate - baseline
    change_ci: Interval
    dropped: int  # refused by the baseline, not by the candidate
    rose: int  # refused by the candidate only
    mcnemar_midp: float


@dataclass(frozen=True)
class GapChange:
    """The framing gap of each version and its change, on the same behaviors."""

    n: int
    baseline_gap: float
    baseline_gap_ci: Interval
    candidate_gap: float
    candidate_gap_ci: Interval
    change: float  # candidate_gap - baseline_gap
    change_ci: Interval
    correlation: float  # of the two gap estimates, over behaviors
    method: str = "MOVER (Newcombe method 10 components)"

    def as_dict(self) -> dict[str, Any]:
        return fields_as_json(self)


def _verdicts(values: Sequence[bool], name: str) -> np.ndarray:
    array = np.asarray(values, dtype=bool)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one verdict per behavior")
    return array


def refusal_change(baseline: Sequence[bool], candidate: Sequence[bool], alpha: float = 0.05) -> RefusalChange:
    """Paired change of one framing's refusal rate across versions (True = refused)."""
    check_alpha(alpha)
    table = PairedTable.from_verdicts(_verdicts(baseline, "baseline"), _verdicts(candidate, "candidate"))
    if table.n == 0:
        raise ValueError("no behavior is shared by the two versions")
    # PairedTable's "free" is the baseline here: its gap is candidate - baseline
    return RefusalChange(table.n, table.refusal_free, table.refusal_paid, table.gap,
                         newcombe_interval(table, alpha), table.b, table.c, mcnemar_midp(table.b, table.c))


def gap_change(free_baseline: Sequence[bool], paid_baseline: Sequence[bool], free_candidate: Sequence[bool],
               paid_candidate: Sequence[bool], alpha: float = 0.05) -> GapChange:
    """Change of the framing gap (paid - free refusal) from baseline to candidate, paired over
    behaviors; the four sequences hold one refusal verdict per shared behavior, in one order."""
    check_alpha(alpha)
    cells = [_verdicts(v, name) for v, name in ((free_baseline, "free_baseline"), (paid_baseline, "paid_baseline"),
                                                (free_candidate, "free_candidate"), (paid_candidate, "paid_candidate"))]
    if len({c.size for c in cells}) != 1:
        raise ValueError("the four verdict sequences must have one verdict per behavior each")
    free_b, paid_b, free_c, paid_c = cells
    n = free_b.size
    if n == 0:
        raise ValueError("no behavior is shared by the two versions")
    table_b = PairedTable.from_verdicts(free_b, paid_b)
    table_c = PairedTable.from_verdicts(free_c, paid_c)
    per_behavior_b = paid_b.astype(float) - free_b
    per_behavior_c = paid_c.astype(float) - free_c
    spread_b, spread_c = per_behavior_b.std(), per_behavior_c.std()
    correlation = 0.0
    if spread_b > 0 and spread_c > 0:
        correlation = float(np.clip(np.mean((per_behavior_b - per_behavior_b.mean()) *
                                            (per_behavior_c - per_behavior_c.mean())) / (spread_b * spread_c), -1, 1))
    ci_b, ci_c = newcombe_interval(table_b, alpha), newcombe_interval(table_c, alpha)
    low, high = mover_difference(table_c.gap, ci_c, table_b.gap, ci_b, correlation)
    return GapChange(n, table_b.gap, ci_b, table_c.gap, ci_c, table_c.gap - table_b.gap,
                     (max(-2.0, low), min(2.0, high)), correlation)
