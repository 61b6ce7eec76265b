"""The few distribution functions the statistics need, on ``scipy.special`` alone.

``import scipy.stats`` costs seconds (it loads every distribution, linalg and more);
``evalkit stats paired`` and a pytest start-up must not pay that for a normal quantile
and a binomial tail. These stand-ins keep scipy.stats' names and edge cases (a count
below 0 or at n, a probability of 0 or 1) and are checked against scipy.stats in
tests/unit/test_stats_distributions.py. ``optimize.brentq`` is Brent's method written out as
scipy's (nothing loads scipy.optimize); ``scipy.special`` itself loads on the first computation, so a
session that takes every number from its analysis caches never loads scipy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt


class _OnFirstUse:
    """``scipy.special``, imported when one of its functions is first looked up."""

    def __getattr__(self, name: str) -> Any:
        from scipy import special as module

        globals()["special"] = module  # later look-ups go straight to the module
        return getattr(module, name)


special: ModuleType | Any = _OnFirstUse()

Floats = npt.NDArray[np.float64]
# what the elementwise functions return: an array for array arguments, a numpy scalar for
# scalars (``[()]`` turns a 0-d result into its scalar, as scipy.stats does)
ScalarOrArray = Floats | np.float64


def _counts(k: npt.ArrayLike, n: npt.ArrayLike) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Integer arrays, as special.bdtr requires (a float count is deprecated there)."""
    return np.floor(np.asarray(k, dtype=float)).astype(np.int64), np.asarray(n).astype(np.int64)


def _binom_cdf(k: npt.ArrayLike, n: npt.ArrayLike, p: npt.ArrayLike) -> ScalarOrArray:
    counts, trials = _counts(k, n)
    inside = special.bdtr(np.clip(counts, 0, np.maximum(trials, 0)), trials, p)
    out: ScalarOrArray = np.where(counts < 0, 0.0, np.where(counts >= trials, 1.0, inside))[()]
    return out


def _binom_sf(k: npt.ArrayLike, n: npt.ArrayLike, p: npt.ArrayLike) -> ScalarOrArray:
    counts, trials = _counts(k, n)
    inside = special.bdtrc(np.clip(counts, 0, np.maximum(trials, 0)), trials, p)
    out: ScalarOrArray = np.where(counts < 0, 1.0, np.where(counts >= trials, 0.0, inside))[()]
    return out


def _binom_logpmf(k: npt.ArrayLike, n: npt.ArrayLike, p: npt.ArrayLike) -> ScalarOrArray:
    ks, ns, ps = np.asarray(k, dtype=float), np.asarray(n, dtype=float), np.asarray(p, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_choose = special.gammaln(ns + 1) - special.gammaln(ks + 1) - special.gammaln(ns - ks + 1)
        # xlogy / xlog1py: 0 * log(0) = 0, so p = 0 or 1 gives the right point masses
        value = log_choose + special.xlogy(ks, ps) + special.xlog1py(ns - ks, -ps)
    out: ScalarOrArray = np.where((ks < 0) | (ks > ns) | (ks != np.floor(ks)), -np.inf, value)[()]
    return out


def _binom_pmf(k: npt.ArrayLike, n: npt.ArrayLike, p: npt.ArrayLike) -> ScalarOrArray:
    out: ScalarOrArray = np.exp(_binom_logpmf(k, n, p))[()]
    return out


def _quantile(q: float, low: int, pmf: Floats) -> float:
    """The smallest count whose cdf reaches q (scipy's definition) for a pmf over low, low+1, ...;
    a relative tolerance of 1e-10 keeps a cdf exactly equal to q (0.5 at a symmetric midpoint)
    at its count."""
    cumulative = np.cumsum(pmf)
    return float(low + min(int(np.searchsorted(cumulative, q * (1 - 1e-10), side="left")), pmf.size - 1))


def _binom_ppf(q: float, n: int, p: float) -> float:
    """Binomial quantile for scalar arguments, O(n)."""
    trials = int(n)
    return _quantile(q, 0, np.asarray(_binom_pmf(np.arange(trials + 1), trials, p)))


def _fisher_exact(table: npt.ArrayLike, alternative: str = "two-sided") -> tuple[float, float]:
    """Two-sided Fisher exact test of a 2x2 table: the probability, given the margins, of
    every table no more likely than the observed one (scipy's rule, relative tolerance 1e-7)."""
    if alternative != "two-sided":
        raise ValueError("only the two-sided Fisher test is provided")
    (a, b), (c, d) = np.asarray(table, dtype=np.int64).tolist()
    row, column, total = a + b, a + c, a + b + c + d
    if row in (0, total) or column in (0, total):
        return np.nan, 1.0
    low, high = max(0, row + column - total), min(row, column)
    support = np.arange(low, high + 1, dtype=float)
    log_pmf = (special.gammaln(column + 1) - special.gammaln(support + 1) - special.gammaln(column - support + 1)
               + special.gammaln(total - column + 1) - special.gammaln(row - support + 1)
               - special.gammaln(total - column - row + support + 1)
               - (special.gammaln(total + 1) - special.gammaln(row + 1) - special.gammaln(total - row + 1)))
    pmf = np.exp(log_pmf)
    observed = pmf[a - low]
    p_value = float(pmf[pmf <= observed * (1 + 1e-7)].sum())
    odds_ratio = (a * d) / (b * c) if b * c else np.inf
    return odds_ratio, min(1.0, p_value)


def _hypergeom_support(total: int, successes: int, draws: int) -> tuple[int, Floats]:
    """The lowest count and the pmf over the whole support of Hypergeometric(total, successes,
    draws) (scipy.stats' argument order M, n, N), from log binomial coefficients."""
    total, successes, draws = int(total), int(successes), int(draws)
    low, high = max(0, draws - (total - successes)), min(successes, draws)
    k = np.arange(low, high + 1, dtype=float)

    def log_choose(n: float | Floats, r: float | Floats) -> Floats:
        out: Floats = special.gammaln(n + 1) - special.gammaln(r + 1) - special.gammaln(n - r + 1)
        return out

    return low, np.exp(log_choose(successes, k) + log_choose(total - successes, draws - k) - log_choose(total, draws))


def _hypergeom_cdf(k: float, total: int, successes: int, draws: int) -> float:
    low, pmf = _hypergeom_support(total, successes, draws)
    index = int(np.floor(k)) - low
    if index < 0:
        return 0.0
    return 1.0 if index >= pmf.size - 1 else min(1.0, float(pmf[:index + 1].sum()))


def _hypergeom_ppf(q: float, total: int, successes: int, draws: int) -> float:
    return _quantile(q, *_hypergeom_support(total, successes, draws))


def _brentq(f: Callable[[float], float], a: float, b: float, xtol: float = 2e-12,
            rtol: float = 8.881784197001252e-16, maxiter: int = 100) -> float:
    """A root of ``f`` in [a, b] by Brent's method, step for step as ``scipy.optimize.brentq``
    takes them (the same bracket, interpolation and bisection rules and tolerances, so the same
    root to the last bit: tests/unit/test_stats_distributions.py compares them). Importing
    scipy.optimize costs half a second (it loads scipy.stats), more than every root a session
    finds; this loads nothing."""
    def value(x: float) -> float:
        fx = float(f(x))
        if math.isnan(fx):  # as scipy: a NaN stops the search
            raise ValueError(f"the function value at x={x} is NaN; solver cannot continue")
        return fx

    previous, current = float(a), float(b)
    f_previous, f_current = value(previous), value(current)
    if f_previous * f_current > 0:
        raise ValueError("f(a) and f(b) must have different signs")
    if f_previous == 0:
        return previous
    if f_current == 0:
        return current
    block = f_block = step_previous = step = 0.0
    for _ in range(maxiter):
        if f_previous != 0 and f_current != 0 and (f_previous < 0) != (f_current < 0):
            block, f_block = previous, f_previous  # the root lies between current and block
            step_previous = step = current - previous
        if abs(f_block) < abs(f_current):  # keep the best estimate in current
            previous, current, block = current, block, current
            f_previous, f_current, f_block = f_current, f_block, f_current
        delta = (xtol + rtol * abs(current)) / 2
        bisection = (block - current) / 2
        if f_current == 0 or abs(bisection) < delta:
            return current
        if abs(step_previous) > delta and abs(f_current) < abs(f_previous):
            if previous == block:  # secant
                trial = -f_current * (current - previous) / (f_current - f_previous)
            else:  # inverse quadratic interpolation
                slope_previous = (f_previous - f_current) / (previous - current)
                slope_block = (f_block - f_current) / (block - current)
                trial = -f_current * (f_block * slope_block - f_previous * slope_previous) / (
                    slope_block * slope_previous * (f_block - f_previous))
            if 2 * abs(trial) < min(abs(step_previous), 3 * abs(bisection) - delta):
                step_previous, step = step, trial
            else:
                step_previous = step = bisection
        else:
            step_previous = step = bisection
        previous, f_previous = current, f_current
        current += step if abs(step) > delta else (delta if bisection > 0 else -delta)
        f_current = value(current)
    raise RuntimeError(f"no root within {maxiter} iterations")


norm = SimpleNamespace(ppf=lambda q: special.ndtri(q), cdf=lambda x: special.ndtr(x), sf=lambda x: special.ndtr(-x))
binom = SimpleNamespace(cdf=_binom_cdf, sf=_binom_sf, pmf=_binom_pmf, logpmf=_binom_logpmf, ppf=_binom_ppf)
chi2 = SimpleNamespace(sf=lambda x, df: special.chdtrc(df, x))
t = SimpleNamespace(ppf=lambda q, df: special.stdtrit(df, q), sf=lambda x, df: special.stdtr(df, -np.asarray(x)))
hypergeom = SimpleNamespace(cdf=_hypergeom_cdf, ppf=_hypergeom_ppf)
stats = SimpleNamespace(norm=norm, binom=binom, chi2=chi2, t=t, hypergeom=hypergeom, fisher_exact=_fisher_exact)
optimize = SimpleNamespace(brentq=_brentq)
