"""Confidence intervals for one proportion and for the paired compliance gap.

Every gap interval is for dC = p_paid - p_free = (c - b) / n in evalkit's orientation
(b = refused under free only, c = refused under paid only). Papers usually publish
p1 - p2 = (b - c) / n; the interval for that is ours for ``table.transposed()``, which is the
negated, swapped interval for ``table``. Every method is symmetric in that sense.

An empty table (n = 0) carries no information, so every gap interval is then the whole
parameter space (-1, 1), as ``wilson_interval`` returns (0, 1) for n = 0.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

from ._checks import check_alpha, check_count
from ._scipy import optimize, stats
from ._table import PairedTable

Interval = tuple[float, float]

CI_METHODS: tuple[str, ...] = ("newcombe", "tango", "wald", "agresti-min", "bonett-price")

_WHOLE_GAP_RANGE: Interval = (-1.0, 1.0)


def _z(alpha: float) -> float:
    return _z_of(check_alpha(alpha))


# the normal quantile of the usual alphas, as scipy computes it (tests/unit/test_stats_intervals.py checks
# them against scipy): the judges' accuracy intervals in every summary then load no scipy
KNOWN_Z = {0.05: 1.959963984540054, 0.10: 1.6448536269514722}


@functools.lru_cache(maxsize=64)
def _z_of(alpha: float) -> float:
    # one normal quantile per alpha, not one per interval (a scipy call costs ~100 us)
    known = KNOWN_Z.get(alpha)
    return known if known is not None else float(stats.norm.ppf(1.0 - alpha / 2.0))


def _clip_gap(low: float, high: float) -> Interval:
    return max(-1.0, float(low)), min(1.0, float(high))


def wilson_interval(successes: int, n: int, alpha: float = 0.05) -> Interval:
    """Wilson (1927) score interval for a binomial proportion: the p whose score test accepts."""
    successes, n = check_count(successes, "successes"), check_count(n, "n")
    if successes > n:
        raise ValueError(f"successes ({successes}) cannot exceed n ({n})")
    z = _z(alpha)
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half_width = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # At 0 or n successes the exact limit is 0 or 1; rounding would leave a 1e-17 residue.
    low = 0.0 if successes == 0 else max(0.0, centre - half_width)
    high = 1.0 if successes == n else min(1.0, centre + half_width)
    return low, high


def newcombe_interval(table: PairedTable, alpha: float = 0.05) -> Interval:
    """Newcombe (1998, method 10): square-and-add of the two marginal Wilson intervals,
    with the correlation phi (continuity-corrected when ad > bc) between them."""
    check_alpha(alpha)  # validated even when the table is empty, like the other methods
    n = table.n
    if n == 0:
        return _WHOLE_GAP_RANGE
    paid, free = table.a + table.c, table.a + table.b
    p_paid, p_free = paid / n, free / n
    low_paid, high_paid = wilson_interval(paid, n, alpha)
    low_free, high_free = wilson_interval(free, n, alpha)
    phi = _newcombe_phi(table)
    gap = p_paid - p_free
    # Lower limit: paid could be lower (down to its Wilson low) while free is higher.
    down_paid, up_free = p_paid - low_paid, high_free - p_free
    up_paid, down_free = high_paid - p_paid, p_free - low_free
    lower_radicand = down_paid**2 - 2 * phi * down_paid * up_free + up_free**2
    upper_radicand = up_paid**2 - 2 * phi * up_paid * down_free + down_free**2
    return _clip_gap(gap - math.sqrt(max(0.0, lower_radicand)), gap + math.sqrt(max(0.0, upper_radicand)))


def _newcombe_phi(table: PairedTable) -> float:
    """Newcombe's estimate of the correlation between the two marginal proportions.

    When ad > bc he shrinks the numerator by n/2 (never below 0): the uncorrected phi
    overstates positive correlation in small tables and makes the interval too narrow.
    """
    a, b, c, d, n = table.a, table.b, table.c, table.d, table.n
    margins_product = (a + b) * (c + d) * (a + c) * (b + d)
    if margins_product == 0:
        return 0.0
    numerator = float(a * d - b * c)
    if numerator > 0:
        numerator = max(numerator - n / 2.0, 0.0)
    return numerator / math.sqrt(margins_product)


def tango_score(table: PairedTable, gap: float) -> float:
    """Tango's (1998) score statistic for H0: dC = ``gap``, in evalkit's orientation.

    Positive when the observed gap exceeds ``gap``. The nuisance probability of the
    free-only cell is its maximum-likelihood estimate under the null (Tango's closed form).
    """
    n = table.n
    if n == 0:
        return 0.0
    toward_paid, toward_free = table.c, table.b  # discordant counts moving dC up / down
    numerator = toward_paid - toward_free - n * gap
    variance = n * (2.0 * _tango_constrained_free_only(table, gap) + gap * (1.0 - gap))
    if variance <= 0.0:
        # Only at gap = +-1 (or gap = 0 with no discordant pairs): the statistic is
        # 0 when the data sit exactly on the null, otherwise infinitely far from it.
        return 0.0 if numerator == 0 else math.copysign(math.inf, numerator)
    return numerator / math.sqrt(variance)


def _tango_constrained_free_only(table: PairedTable, gap: float) -> float:
    """Constrained MLE of P(refused under free only) given p_paid_only - p_free_only = gap.

    Root of 2n q^2 + B q + C = 0, Tango's (1998) closed form with his cells mapped to ours.
    The root is computed in the cancellation-free form for either sign of B.
    """
    n, toward_paid, toward_free = table.n, table.c, table.b
    quadratic = 2.0 * n
    linear = -toward_paid - toward_free + (2.0 * n - toward_paid + toward_free) * gap
    constant = -toward_free * gap * (1.0 - gap)
    root_of_discriminant = math.sqrt(max(0.0, linear * linear - 4.0 * quadratic * constant))
    if linear > 0:
        return -2.0 * constant / (linear + root_of_discriminant)
    return (root_of_discriminant - linear) / (2.0 * quadratic)


def tango_interval(table: PairedTable, alpha: float = 0.05) -> Interval:
    """Tango (1998) asymptotic score interval: every gap whose score test is not rejected,
    found by root finding on the (monotone) score statistic."""
    z = _z(alpha)
    n = table.n
    if n == 0:
        return _WHOLE_GAP_RANGE
    estimate = table.gap
    # The score is +inf at gap = -1 and -inf at gap = +1 unless every pair sits there.
    finite_cap = 1e12

    def excess_over(critical: float) -> Callable[[float], float]:
        return lambda gap: max(-finite_cap, min(finite_cap, tango_score(table, gap))) - critical

    low = -1.0
    if estimate > -1.0 and tango_score(table, -1.0) > z:
        low = optimize.brentq(excess_over(z), -1.0, estimate, xtol=1e-13, rtol=1e-13)
    high = 1.0
    if estimate < 1.0 and tango_score(table, 1.0) < -z:
        high = optimize.brentq(excess_over(-z), estimate, 1.0, xtol=1e-13, rtol=1e-13)
    return _clip_gap(low, high)


def wald_interval(table: PairedTable, alpha: float = 0.05) -> Interval:
    """Wald interval: gap +- z * sqrt((b + c)/n - gap^2) / sqrt(n), truncated to [-1, 1]
    (zero width when there are no discordant pairs, a known defect kept for comparison)."""
    z = _z(alpha)
    n = table.n
    if n == 0:
        return _WHOLE_GAP_RANGE
    gap = table.gap
    variance = max(0.0, (table.discordant / n - gap * gap) / n)
    half_width = z * math.sqrt(variance)
    return _clip_gap(gap - half_width, gap + half_width)


def agresti_min_interval(table: PairedTable, alpha: float = 0.05) -> Interval:
    """Agresti & Min (2005) "Wald+2": the Wald interval after adding 1/2 to each of the
    four cells, so its centre is (c - b) / (n + 2)."""
    z = _z(alpha)
    n = table.n
    if n == 0:
        return _WHOLE_GAP_RANGE
    adjusted_n = n + 2.0
    centre = (table.c - table.b) / adjusted_n
    standard_error = math.sqrt(max(0.0, table.discordant + 1.0 - (table.c - table.b) ** 2 / adjusted_n)) / adjusted_n
    return _clip_gap(centre - z * standard_error, centre + z * standard_error)


def bonett_price_interval(table: PairedTable, alpha: float = 0.05) -> Interval:
    """Bonett & Price (2012) adjusted Wald: Laplace estimates (count + 1)/(n + 2) for the
    two discordant cells, variance evaluated at those estimates with n + 2 pairs."""
    z = _z(alpha)
    n = table.n
    if n == 0:
        return _WHOLE_GAP_RANGE
    adjusted_n = n + 2.0
    p_paid_only = (table.c + 1.0) / adjusted_n
    p_free_only = (table.b + 1.0) / adjusted_n
    centre = p_paid_only - p_free_only
    standard_error = math.sqrt(max(0.0, (p_paid_only + p_free_only - centre * centre) / adjusted_n))
    return _clip_gap(centre - z * standard_error, centre + z * standard_error)


_GAP_INTERVALS: dict[str, Callable[[PairedTable, float], Interval]] = {
    "newcombe": newcombe_interval,
    "tango": tango_interval,
    "wald": wald_interval,
    "agresti-min": agresti_min_interval,
    "bonett-price": bonett_price_interval,
}


def gap_interval(table: PairedTable, method: str = "newcombe", alpha: float = 0.05) -> Interval:
    """Confidence interval for dC = (c - b)/n by the named method (one of ``CI_METHODS``)."""
    try:
        interval = _GAP_INTERVALS[method]
    except (KeyError, TypeError):
        raise ValueError(f"unknown gap interval method {method!r}; choose one of {', '.join(CI_METHODS)}") from None
    return interval(table, alpha)
