"""Exact power of the McNemar tests for a planned number of behaviors.

The design is n pairs whose discordance probability is pd = p_free_only + p_paid_only and
whose gap is dC = p_paid_only - p_free_only. The number of discordant pairs is
m ~ Binomial(n, pd) and, given m, the paid-only count is c ~ Binomial(m, (pd + dC)/(2 pd)).
Power is the exact probability of landing in the test's rejection region, summed over m.
No simulation is involved.
"""

from __future__ import annotations

import functools
import math
import numbers

import numpy as np

from ._checks import check_alpha, check_count, check_probability
from ._scipy import optimize, stats

POWER_TESTS: tuple[str, ...] = ("midp", "exact", "asymptotic")


@functools.lru_cache(maxsize=64)
def _critical_counts(n: int, alpha: float, test: str) -> np.ndarray:
    """For each m = 0..n, the largest smaller-cell count k with p(k, m - k) <= alpha.

    -1 means no split of m discordant pairs rejects. The p-values of all three tests fall
    as the split moves away from m/2, so {min(b, c) <= k_m} is the whole rejection region.
    """
    m = np.arange(n + 1)[:, None]
    k = np.arange(n // 2 + 1)[None, :]
    valid = 2 * k <= m
    with np.errstate(divide="ignore", invalid="ignore"):
        if test == "exact":
            p_values = np.minimum(1.0, 2.0 * stats.binom.cdf(k, m, 0.5))
        elif test == "midp":
            point = stats.binom.pmf(k, m, 0.5)
            p_values = np.where(2 * k == m, 1.0 - 0.5 * point, 2.0 * stats.binom.cdf(k, m, 0.5) - point)
        else:  # asymptotic: uncorrected chi-square, the variant Fagerland et al. recommend
            statistic = np.where(m > 0, (m - 2.0 * k) ** 2 / np.maximum(m, 1), 0.0)
            p_values = stats.chi2.sf(statistic, 1)
    rejects = valid & (m > 0) & (p_values <= alpha)
    # Largest rejecting k per row; rows with no rejection get -1.
    largest = np.where(rejects, k, -1).max(axis=1)
    largest.setflags(write=False)
    return largest


def _validated_design(n: object, discordance: object, alpha: object, test: object) -> tuple[int, float, float, str]:
    if test not in POWER_TESTS:
        raise ValueError(f"unknown test {test!r}; choose one of {', '.join(POWER_TESTS)}")
    return (
        check_count(n, "n"),
        check_probability(discordance, "discordance"),
        check_alpha(alpha),
        str(test),
    )


def _power(n: int, discordance: float, gap: float, alpha: float, test: str) -> float:
    if n == 0 or discordance == 0.0:
        return 0.0  # no discordant pair can ever occur, so nothing is rejected
    critical = _critical_counts(n, alpha, test)
    m = np.arange(n + 1)
    paid_share = min(1.0, max(0.0, (discordance + abs(gap)) / (2.0 * discordance)))
    lower_tail = stats.binom.cdf(critical, m, paid_share)
    upper_tail = stats.binom.sf(m - critical - 1, m, paid_share)
    rejection = np.where(critical >= 0, lower_tail + upper_tail, 0.0)
    # If the two tails met (only possible for absurd alpha) the whole line rejects.
    rejection = np.where(2 * critical >= m, 1.0, rejection)
    weights = stats.binom.pmf(m, n, discordance)
    return float(min(1.0, np.dot(weights, rejection)))


def mcnemar_power(n: int, discordance: float, gap: float, alpha: float = 0.05, test: str = "midp") -> float:
    """Exact unconditional power of the two-sided McNemar ``test`` ("midp", "exact" or
    "asymptotic"), summing the exact rejection probability over m ~ Binomial(n, discordance)."""
    n, discordance, alpha, test = _validated_design(n, discordance, alpha, test)
    if isinstance(gap, bool) or not isinstance(gap, numbers.Real) or math.isnan(gap):
        raise ValueError(f"gap must be a number, got {gap!r}")
    if abs(gap) > discordance + 1e-12:
        raise ValueError(
            f"|gap| ({abs(gap)}) cannot exceed the discordance ({discordance}): "
            "the gap is a difference of two parts of the discordant pairs"
        )
    return _power(n, discordance, float(gap), alpha, test)


def min_detectable_gap(
    n: int,
    discordance: float,
    alpha: float = 0.05,
    power: float = 0.8,
    test: str = "midp",
) -> float | None:
    """Smallest |dC| the design detects with at least ``power``, by bisection on the exact
    power (which rises monotonically with |dC| at fixed discordance).

    Returns None when even the largest possible gap (|dC| = discordance, every discordant
    pair in one direction) does not reach the target.
    """
    n, discordance, alpha, test = _validated_design(n, discordance, alpha, test)
    target = check_alpha(power, "power")
    if _power(n, discordance, discordance, alpha, test) < target:
        return None
    if _power(n, discordance, 0.0, alpha, test) >= target:
        return 0.0
    return float(
        optimize.brentq(
            lambda gap: _power(n, discordance, gap, alpha, test) - target,
            0.0,
            discordance,
            xtol=1e-9,
        )
    )


def min_detectable_gap_over_noise(
    n: int,
    noise_discordance: float,
    alpha: float = 0.05,
    power: float = 0.8,
    test: str = "midp",
) -> float | None:
    """Smallest |dC| detected with at least ``power`` when a framing effect adds |dC| of
    one-directional flips on top of the noise flips already seen (discordance =
    noise + |dC|): what a run with this much noise could have detected. None when even
    |dC| = 1 - noise is not detected."""
    n, noise_discordance, alpha, test = _validated_design(n, noise_discordance, alpha, test)
    target = check_alpha(power, "power")

    def shortfall(gap: float) -> float:
        return _power(n, min(1.0, noise_discordance + gap), gap, alpha, test) - target

    largest = 1.0 - noise_discordance
    if largest <= 0 or shortfall(largest) < 0:
        return None
    # power is not monotone on a fine scale (the test is discrete), so scan a grid for the
    # first gap that reaches the target, then refine inside that step
    grid = [largest * k / 400 for k in range(1, 401)]
    previous = 0.0
    for gap in grid:
        if shortfall(gap) >= 0:
            low, high = previous, gap
            for _ in range(40):
                middle = (low + high) / 2
                low, high = (low, middle) if shortfall(middle) >= 0 else (middle, high)
            return float(high)
        previous = gap
    return float(largest)
