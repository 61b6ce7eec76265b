"""Separating the framing effect from the order effect in a counterbalanced (AB/BA) run.

Each behavior is seen under both framings in one of two sequences: free-first (free in
period 1, paid in period 2) or paid-first. Both tables use the usual orientation
(a both, b free only, c paid only, d neither). With behavior effects conditioned away, the
logistic model logit P(refuse) = behavior + period + framing gives, among discordant pairs,

    free-first: log(c / b) estimates  order + framing   (paid sits in period 2)
    paid-first: log(b / c) estimates  order - framing   (free sits in period 2)

so half the log cross-product ratio of the discordant cells estimates each effect
(Mainland 1963; Gart 1969). The risk-difference version is the same decomposition on the
per-behavior period differences (period 2 minus period 1) with Hills & Armitage's t.
A fixed-order run fills one sequence only: framing and order are then confounded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _scipy
from ._checks import check_alpha
from ._scipy import stats
from ._serialise import fields_as_json
from ._table import PairedTable

Interval = tuple[float, float]


def confounded_crossover_message() -> str:
    """The explanation attached to a crossover result whose order was fixed."""
    return (
        "framing and order are confounded: every behavior saw the two framings in the same "
        "order, so a difference between framings cannot be separated from a difference "
        "between first and second position; run a counterbalanced (randomized-order) protocol "
        "to estimate the framing effect"
    )


@dataclass(frozen=True)
class EffectEstimate:
    """A point estimate, its confidence interval and the p-value of the test of no effect."""

    estimate: float
    ci: Interval | None
    p_value: float | None
    method: str


@dataclass(frozen=True)
class PrescottTest:
    """Prescott's (1981) test for a framing effect using all pairs.

    ``table`` rows are (free-first, paid-first); columns are behaviors refused in period 1
    only, concordant behaviors, and behaviors refused in period 2 only.
    """

    table: tuple[tuple[int, int, int], tuple[int, int, int]]
    z: float
    asymptotic_p: float
    exact_p: float


@dataclass(frozen=True)
class CrossoverResult:
    """Framing and order effects from the two sequences of a counterbalanced run.

    Odds ratios are conditional, within-behavior ratios: ``framing_odds_ratio`` is the
    odds of refusing under paid over the odds under free; ``period_odds_ratio`` the odds
    of refusing in period 2 over period 1. Risk differences are on the refusal-rate scale:
    ``framing_risk_difference`` is the order-adjusted dC. When ``confounded`` every
    estimate is None and ``message`` says why.
    """

    confounded: bool
    message: str | None
    alpha: float
    n_free_first: int
    n_paid_first: int
    gap_free_first: float | None
    gap_paid_first: float | None
    mainland_gart_table: tuple[tuple[int, int], tuple[int, int]] | None
    framing_odds_ratio: EffectEstimate | None
    period_odds_ratio: EffectEstimate | None
    prescott: PrescottTest | None
    framing_risk_difference: EffectEstimate | None
    order_risk_difference: EffectEstimate | None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (nested results become dicts, tuples become lists)."""
        return fields_as_json(self)


def crossover_analysis(free_first: PairedTable, paid_first: PairedTable, alpha: float = 0.05) -> CrossoverResult:
    """Mainland-Gart odds ratios (Woolf CIs, Fisher exact tests), Prescott's test and the
    risk-difference decomposition of a two-sequence (free-first / paid-first) run."""
    alpha = check_alpha(alpha)
    if not isinstance(free_first, PairedTable) or not isinstance(paid_first, PairedTable):
        raise ValueError("free_first and paid_first must be PairedTable instances")
    if free_first.n == 0 or paid_first.n == 0:
        return CrossoverResult(
            confounded=True,
            message=confounded_crossover_message(),
            alpha=alpha,
            n_free_first=free_first.n,
            n_paid_first=paid_first.n,
            gap_free_first=None,
            gap_paid_first=None,
            mainland_gart_table=None,
            framing_odds_ratio=None,
            period_odds_ratio=None,
            prescott=None,
            framing_risk_difference=None,
            order_risk_difference=None,
        )

    # Discordant pairs by the period in which the lone refusal happened.
    period1_only = (free_first.b, paid_first.c)
    period2_only = (free_first.c, paid_first.b)
    mainland_gart = (
        (period1_only[0], period2_only[0]),
        (period1_only[1], period2_only[1]),
    )
    # Two views of the same discordant pairs, rows (free-first, paid-first):
    # columns by period (period 2 only, period 1 only) have cross-product exp(2 * framing);
    # columns by framing (paid only, free only) have cross-product exp(2 * order).
    framing = _half_log_odds_ratio(
        aligned=((free_first.c, free_first.b), (paid_first.b, paid_first.c)),
        fisher_table=mainland_gart,
        alpha=alpha,
        method="Mainland-Gart: sqrt of the discordant cross-product ratio, Woolf CI, Fisher exact p",
    )
    period = _half_log_odds_ratio(
        aligned=((free_first.c, free_first.b), (paid_first.c, paid_first.b)),
        fisher_table=((free_first.c, free_first.b), (paid_first.c, paid_first.b)),
        alpha=alpha,
        method="Gart (1969) period effect: sqrt of the cross-product ratio by framing, Woolf CI, Fisher exact p",
    )
    framing_rd, order_rd = _risk_difference_decomposition(free_first, paid_first, alpha)
    return CrossoverResult(
        confounded=False,
        message=None,
        alpha=alpha,
        n_free_first=free_first.n,
        n_paid_first=paid_first.n,
        gap_free_first=free_first.gap,
        gap_paid_first=paid_first.gap,
        mainland_gart_table=mainland_gart,
        framing_odds_ratio=framing,
        period_odds_ratio=period,
        prescott=_prescott(free_first, paid_first),
        framing_risk_difference=framing_rd,
        order_risk_difference=order_rd,
    )


def _half_log_odds_ratio(
    aligned: tuple[tuple[int, int], tuple[int, int]],
    fisher_table: tuple[tuple[int, int], tuple[int, int]],
    alpha: float,
    method: str,
) -> EffectEstimate:
    """exp(log(cross-product ratio) / 2) with a Woolf interval on the same half scale.

    A zero cell would make the ratio 0 or infinite; then 1/2 is added to every cell
    (Haldane-Anscombe) for the estimate and interval. The Fisher p uses the raw counts.
    """
    cells = np.array(aligned, dtype=float)
    if np.any(cells == 0):
        cells = cells + 0.5
    half_log_ratio = 0.5 * math.log(cells[0, 0] * cells[1, 1] / (cells[0, 1] * cells[1, 0]))
    half_standard_error = 0.5 * math.sqrt(float(np.sum(1.0 / cells)))
    # for an alpha below ~2e-16, 1 - alpha/2 rounds to 1 (an infinite quantile): use the lower tail
    z = float(stats.norm.ppf(1.0 - alpha / 2.0) if 1.0 - alpha / 2.0 < 1.0 else -stats.norm.ppf(alpha / 2.0))
    ci = (
        math.exp(half_log_ratio - z * half_standard_error),
        math.exp(half_log_ratio + z * half_standard_error),
    )
    p_value = float(stats.fisher_exact(np.array(fisher_table), alternative="two-sided")[1])
    return EffectEstimate(math.exp(half_log_ratio), ci, min(1.0, p_value), method)


def _prescott(free_first: PairedTable, paid_first: PairedTable) -> PrescottTest:
    """Trend test on the sequence x (period-1-only, concordant, period-2-only) table with
    scores (+1, 0, -1), conditional on both margins: exact by enumeration, and normal."""
    free_first_row = (free_first.b, free_first.a + free_first.d, free_first.c)
    paid_first_row = (paid_first.c, paid_first.a + paid_first.d, paid_first.b)
    column_totals = [x + y for x, y in zip(free_first_row, paid_first_row, strict=True)]
    total = sum(column_totals)
    row_total = sum(free_first_row)
    period1_total, concordant_total, period2_total = column_totals

    observed = free_first_row[0] - free_first_row[2]
    expected = row_total * (period1_total - period2_total) / total
    variance = (
        row_total
        * (total - row_total)
        * ((period1_total + period2_total) * total - (period1_total - period2_total) ** 2)
        / (total * total * (total - 1))
        if total > 1
        else 0.0
    )
    if variance <= 0:
        # No discordant pair (or a single pair): the statistic cannot vary.
        z, asymptotic_p, exact_p = 0.0, 1.0, 1.0
    else:
        z = (observed - expected) / math.sqrt(variance)
        asymptotic_p = float(2.0 * stats.norm.sf(abs(z)))
        exact_p = _prescott_exact_p(row_total, period1_total, concordant_total, period2_total, observed, expected)
    return PrescottTest((free_first_row, paid_first_row), float(z), asymptotic_p, exact_p)


# Mass of a margin left out on each side: far below double precision near any p-value.
_NEGLIGIBLE_TAIL = 1e-17
_CELLS_PER_CHUNK = 1 << 15  # bound on the (period 1, period 2) cells held at once


def _prescott_exact_p(
    row_total: int,
    period1_total: int,
    concordant_total: int,
    period2_total: int,
    observed: int,
    expected: float,
) -> float:
    """Two-sided exact p: the multivariate-hypergeometric probability, given the margins,
    of a first row whose statistic is at least as far from its expectation as observed.

    The sum runs over the first rows' (period-1-only, period-2-only) counts, each within
    the range holding all but 1e-17 of its hypergeometric margin on either side: O(sqrt(n))
    values each, so O(n) cells, taken in chunks of bounded size (memory does not grow
    with n^2, as the full table did)."""
    # Integer statistics against a rational expectation: a small tolerance keeps ties tied.
    threshold = abs(observed - expected) - 1e-9
    if threshold <= 0:
        return 1.0
    total = period1_total + concordant_total + period2_total
    period1 = _hypergeometric_range(total, period1_total, row_total)
    period2 = _hypergeometric_range(total, period2_total, row_total)
    log_all = float(_log_choose(total, np.asarray(row_total)))
    probability = 0.0
    rows = max(1, _CELLS_PER_CHUNK // period2.size)
    for start in range(0, period1.size, rows):
        x1 = period1[start:start + rows, None]
        x3 = period2[None, :]
        concordant = row_total - x1 - x3
        as_extreme = (concordant >= 0) & (concordant <= concordant_total) & (np.abs(x1 - x3 - expected) >= threshold)
        if as_extreme.any():
            log_probability = (_log_choose(period1_total, x1) + _log_choose(concordant_total, concordant)
                               + _log_choose(period2_total, x3) - log_all)
            probability += float(np.exp(log_probability[as_extreme]).sum())
    return min(1.0, probability)


def _hypergeometric_range(total: int, successes: int, draws: int) -> np.ndarray:
    """The values of Hypergeometric(total, successes, draws) holding all but 2 x 1e-17 of
    it (the whole support if scipy's quantiles do not check out)."""
    support_low, support_high = max(0, draws - (total - successes)), min(successes, draws)
    low = int(stats.hypergeom.ppf(_NEGLIGIBLE_TAIL, total, successes, draws))
    high = draws - int(stats.hypergeom.ppf(_NEGLIGIBLE_TAIL, total, total - successes, draws))
    tails = (stats.hypergeom.cdf(low - 1, total, successes, draws)
             + stats.hypergeom.cdf(draws - high - 1, total, total - successes, draws))
    if not (support_low <= low <= high <= support_high) or not tails <= 4 * _NEGLIGIBLE_TAIL:
        low, high = support_low, support_high
    return np.arange(low, high + 1)


def _log_choose(n: int, k: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    with np.errstate(invalid="ignore"):  # cells outside the support are masked by the caller
        gammaln = _scipy.special.gammaln
        out: npt.NDArray[np.float64] = gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)
    return out


def _risk_difference_decomposition(
    free_first: PairedTable, paid_first: PairedTable, alpha: float
) -> tuple[EffectEstimate, EffectEstimate]:
    """Framing RD = (d_ff - d_pf) / 2 and order RD = (d_ff + d_pf) / 2, where d_s is the
    mean per-behavior (period 2 - period 1) refusal difference in sequence s; both with a
    pooled-variance two-sample t interval on the period differences (Hills & Armitage 1979).
    """
    # Period 2 minus period 1: +1 for a paid-only refusal in free-first, -1 for free-only;
    # the reverse in paid-first.
    mean_free_first = (free_first.c - free_first.b) / free_first.n
    mean_paid_first = (paid_first.b - paid_first.c) / paid_first.n
    within_sum_of_squares = (
        free_first.discordant
        - free_first.n * mean_free_first**2
        + paid_first.discordant
        - paid_first.n * mean_paid_first**2
    )
    degrees_of_freedom = free_first.n + paid_first.n - 2
    framing = (mean_free_first - mean_paid_first) / 2.0
    order = (mean_free_first + mean_paid_first) / 2.0
    method = "Hills-Armitage: half difference / half sum of sequence mean period differences, t CI"
    if degrees_of_freedom < 1:
        return (
            EffectEstimate(framing, None, None, method),
            EffectEstimate(order, None, None, method),
        )
    pooled_variance = max(0.0, within_sum_of_squares) / degrees_of_freedom
    standard_error = 0.5 * math.sqrt(pooled_variance * (1.0 / free_first.n + 1.0 / paid_first.n))
    critical = float(stats.t.ppf(1.0 - alpha / 2.0, degrees_of_freedom) if 1.0 - alpha / 2.0 < 1.0
                     else -stats.t.ppf(alpha / 2.0, degrees_of_freedom))  # as for z above

    def estimate(value: float) -> EffectEstimate:
        if standard_error == 0.0:
            # Every behavior's period difference equals its sequence mean: the t statistic is
            # undefined (0/0 or x/0), not "p = 0"; the exact tests (Fisher, Prescott) still apply.
            return EffectEstimate(value, None, None, method + "; undefined: no within-sequence variance "
                                  "(see the exact tests)")
        t_statistic = value / standard_error
        p_value = float(2.0 * stats.t.sf(abs(t_statistic), degrees_of_freedom))
        ci = (
            max(-1.0, value - critical * standard_error),
            min(1.0, value + critical * standard_error),
        )
        return EffectEstimate(value, ci, p_value, method)

    return estimate(framing), estimate(order)
