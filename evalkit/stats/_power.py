"""Exact power of the McNemar tests for a planned number of behaviors.

The design is n pairs whose discordance probability is pd = p_free_only + p_paid_only and
whose gap is dC = p_paid_only - p_free_only. The number of discordant pairs is
m ~ Binomial(n, pd) and, given m, the paid-only count is c ~ Binomial(m, (pd + dC)/(2 pd)).
Power is the exact probability of landing in the test's rejection region, summed over m.
No simulation is involved. The sum leaves out only values of m whose total probability is
below 1e-16 (far below the resolution of a double near the power), so the work per
power evaluation is O(sqrt(n)), and each m's rejection region is found once, by bisection
on the binomial CDF: memory linear in n, time O(n log n) at worst.
"""

from __future__ import annotations

import functools
import math
import numbers

import numpy as np

from ._checks import check_alpha, check_count, check_probability
from ._scipy import optimize, stats

POWER_TESTS: tuple[str, ...] = ("midp", "exact", "asymptotic")


# Binomial(n, discordance) mass left out of the sum on each side. Far below double
# precision's resolution of a probability near the power, so the sum is the exact sum.
_NEGLIGIBLE_TAIL = 1e-17
_SUM_EVERY_M_UP_TO = 2_000  # below this, summing all of 0..n is cheaper than finding the window


def _p_values(k: np.ndarray, m: np.ndarray, test: str) -> np.ndarray:
    """Two-sided p-value of the split (k, m - k), k <= m/2, for each pair of entries."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if test == "exact":
            exact: np.ndarray = np.minimum(1.0, 2.0 * stats.binom.cdf(k, m, 0.5))
            return exact
        if test == "midp":
            point = stats.binom.pmf(k, m, 0.5)
            midp: np.ndarray = np.where(2 * k == m, 1.0 - 0.5 * point, 2.0 * stats.binom.cdf(k, m, 0.5) - point)
            return midp
        # asymptotic: uncorrected chi-square, the variant Fagerland et al. recommend
        statistic = np.where(m > 0, (m - 2.0 * k) ** 2 / np.maximum(m, 1), 0.0)
        asymptotic: np.ndarray = stats.chi2.sf(statistic, 1)
        return asymptotic


class _CriticalCounts:
    """For each number of discordant pairs m, the largest smaller-cell count k with
    p(k, m - k) <= alpha; -1 when no split of m rejects. The p-values of all three tests
    fall as the split moves away from m/2, so {min(b, c) <= k_m} is the whole rejection
    region, and k_m is found by bisection on k: O(log m) p-values per m, memory O(1) per m.
    Computed lazily for the m a power calculation needs, and kept (one int per m)."""

    def __init__(self, alpha: float, test: str) -> None:
        self.alpha, self.test = alpha, test
        self.values = np.full(0, -2, dtype=np.int64)  # -2: not computed yet

    def __call__(self, low: int, high: int) -> np.ndarray:
        if high >= self.values.size:
            grown = np.full(max(high + 1, 2 * self.values.size), -2, dtype=np.int64)
            grown[: self.values.size] = self.values
            self.values = grown
        window = self.values[low: high + 1]
        todo = np.flatnonzero(window == -2)
        if todo.size:
            window[todo] = self._bisect(todo + low)
        return window.copy()

    def _bisect(self, m: np.ndarray) -> np.ndarray:
        rejecting = np.full(m.size, -1, dtype=np.int64)  # invariant: rejects (or the virtual -1)
        accepting = m // 2 + 1  # invariant: does not reject (or the virtual m/2 + 1)
        while True:
            open_ = accepting - rejecting > 1
            if not open_.any():
                return np.where(m > 0, rejecting, -1)
            middle = (rejecting + accepting) // 2
            rejects = _p_values(middle[open_], m[open_], self.test) <= self.alpha
            index = np.flatnonzero(open_)
            rejecting[index[rejects]] = middle[open_][rejects]
            accepting[index[~rejects]] = middle[open_][~rejects]


@functools.lru_cache(maxsize=32)
def _critical_counts(alpha: float, test: str) -> _CriticalCounts:
    return _CriticalCounts(alpha, test)


def _validated_design(n: object, discordance: object, alpha: object, test: object) -> tuple[int, float, float, str]:
    if test not in POWER_TESTS:
        raise ValueError(f"unknown test {test!r}; choose one of {', '.join(POWER_TESTS)}")
    return (
        check_count(n, "n"),
        check_probability(discordance, "discordance"),
        check_alpha(alpha),
        str(test),
    )


def _window(n: int, p: float) -> tuple[int, int]:
    """[low, high] holding all but 2 x 1e-17 of Binomial(n, p). The upper end is found as
    the lower end of the mirrored distribution (scipy's isf loses the far upper tail), and
    both ends are checked; if a check fails, the whole range 0..n is used."""
    if n <= _SUM_EVERY_M_UP_TO:
        return 0, n
    low = int(stats.binom.ppf(_NEGLIGIBLE_TAIL, n, p))
    high = n - int(stats.binom.ppf(_NEGLIGIBLE_TAIL, n, 1.0 - p))
    tails = stats.binom.cdf(low - 1, n, p) + stats.binom.cdf(n - high - 1, n, 1.0 - p)
    if not (0 <= low <= high <= n) or not tails <= 4 * _NEGLIGIBLE_TAIL:
        return 0, n
    return low, high


def _power(n: int, discordance: float, gap: float, alpha: float, test: str) -> float:
    if n == 0 or discordance == 0.0:
        return 0.0  # no discordant pair can ever occur, so nothing is rejected
    # Only the m = number of discordant pairs that carry probability are summed: a window
    # of O(sqrt(n)) values around n * discordance, so memory and time do not grow with n^2.
    low, high = _window(n, discordance)
    m = np.arange(low, high + 1)
    critical = _critical_counts(alpha, test)(low, high)
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
