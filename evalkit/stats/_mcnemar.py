"""McNemar's test of equal refusal rates under the two framings, from the discordant pairs.

Given m = b + c discordant pairs, under the null each is equally likely to be a
free-only or a paid-only refusal, so c ~ Binomial(m, 1/2). With no discordant pairs
every version returns p = 1 (and statistic 0): the data say nothing against the null.
"""

from __future__ import annotations

from ._checks import check_count
from ._scipy import stats


def _discordant_counts(b: int, c: int) -> tuple[int, int, int]:
    b, c = check_count(b, "b"), check_count(c, "c")
    return b, c, b + c


def mcnemar_exact_p(b: int, c: int) -> float:
    """Exact conditional McNemar test: two-sided p = min(1, 2 * P(X <= min(b, c))),
    X ~ Binomial(b + c, 1/2)."""
    b, c, m = _discordant_counts(b, c)
    if m == 0:
        return 1.0
    return min(1.0, 2.0 * float(stats.binom.cdf(min(b, c), m, 0.5)))


def mcnemar_midp(b: int, c: int) -> float:
    """Mid-p McNemar test (Fagerland, Lydersen & Laake 2013): probability of outcomes
    strictly more extreme than observed plus half the probability of those as extreme."""
    b, c, m = _discordant_counts(b, c)
    if m == 0:
        return 1.0
    smaller = min(b, c)
    point = float(stats.binom.pmf(smaller, m, 0.5))
    if b == c:
        # The observed split is the only one "as extreme"; all others are more extreme.
        return 1.0 - 0.5 * point
    return 2.0 * float(stats.binom.cdf(smaller, m, 0.5)) - point


def mcnemar_chi2(b: int, c: int, correction: bool) -> tuple[float, float]:
    """Asymptotic McNemar test: statistic (|b - c| - k)^2 / (b + c) on 1 df, with Edwards'
    continuity correction k = 1 when ``correction`` (never past zero) and k = 0 otherwise."""
    b, c, m = _discordant_counts(b, c)
    if m == 0:
        return 0.0, 1.0
    distance = abs(b - c)
    if correction:
        # R's mcnemar.test would give (0 - 1)^2 / m > 0 when b == c; a correction that
        # makes a perfectly balanced table look less balanced is not a correction.
        distance = max(distance - 1, 0)
    statistic = distance * distance / m
    return float(statistic), float(stats.chi2.sf(statistic, 1))
