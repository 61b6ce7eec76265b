"""The light distribution functions (scipy.special only) agree with scipy.stats.

evalkit.stats uses them so that a CLI call or a pytest start-up does not import
scipy.stats; here they are compared with scipy.stats itself, edge cases included.
"""

import math

import numpy as np
import pytest
from scipy import stats as reference

from evalkit.stats._scipy import stats


def test_normal_quantiles_and_tails():
    q = np.array([1e-10, 0.025, 0.05, 0.5, 0.9, 0.975, 1 - 1e-10])
    assert np.allclose(stats.norm.ppf(q), reference.norm.ppf(q), rtol=1e-12, atol=0)
    x = np.linspace(-9, 9, 37)
    assert np.allclose(stats.norm.cdf(x), reference.norm.cdf(x), rtol=1e-12, atol=1e-300)
    assert np.allclose(stats.norm.sf(x), reference.norm.sf(x), rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("n", [0, 1, 7, 40, 401, 20_000])
@pytest.mark.parametrize("p", [0.0, 0.5, 0.037, 1.0])
def test_binomial_cdf_sf_pmf_including_counts_outside_the_support(n, p):
    k = np.arange(-2, n + 3)
    # below 1e-250 scipy.stats itself underflows to 0 where scipy.special does not
    assert np.allclose(stats.binom.cdf(k, n, p), reference.binom.cdf(k, n, p), rtol=1e-10, atol=1e-250)
    assert np.allclose(stats.binom.sf(k, n, p), reference.binom.sf(k, n, p), rtol=1e-10, atol=1e-250)
    assert np.allclose(stats.binom.pmf(k, n, p), reference.binom.pmf(k, n, p), rtol=1e-8, atol=1e-250)


def test_binomial_broadcasts_like_scipy():
    k, m = np.arange(6)[None, :], np.arange(11)[:, None]
    assert np.allclose(stats.binom.cdf(k, m, 0.5), reference.binom.cdf(k, m, 0.5), rtol=1e-12)
    assert np.allclose(stats.binom.pmf(k, m, 0.5), reference.binom.pmf(k, m, 0.5), rtol=1e-10)


def test_chi_square_and_t():
    x = np.array([0.0, 0.5, 3.841458820694124, 16 / 3, 40.0])
    assert np.allclose(stats.chi2.sf(x, 1), reference.chi2.sf(x, 1), rtol=1e-12)
    for df in (1, 5, 198, 10_000):
        assert stats.t.ppf(0.975, df) == pytest.approx(reference.t.ppf(0.975, df), rel=1e-12)
        assert stats.t.sf(2.1, df) == pytest.approx(reference.t.sf(2.1, df), rel=1e-12)


@pytest.mark.parametrize("table", [[[3, 1], [1, 3]], [[10, 2], [3, 15]], [[0, 5], [5, 0]], [[12, 0], [0, 0]],
                                   [[1, 9], [11, 3]], [[40, 160], [60, 140]], [[2, 2], [2, 2]]])
def test_fisher_exact_two_sided(table):
    # includes Fisher's tea-tasting table [[3, 1], [1, 3]] (p = 0.4857) and degenerate margins
    assert stats.fisher_exact(table)[1] == pytest.approx(reference.fisher_exact(table)[1], rel=1e-10)


@pytest.mark.parametrize("total,successes,draws", [(10, 4, 3), (60, 25, 30), (400, 36, 200), (8_000, 700, 4_000),
                                                   (50, 50, 10), (50, 0, 10)])
def test_hypergeometric_cdf_and_quantiles(total, successes, draws):
    # the exact crossover test trims each margin to the counts holding all but 1e-17 of it
    for k in range(max(0, draws - (total - successes)) - 1, min(successes, draws) + 2):
        assert stats.hypergeom.cdf(k, total, successes, draws) == pytest.approx(
            reference.hypergeom.cdf(k, total, successes, draws), rel=1e-9, abs=1e-250)
    for q in (1e-17, 1e-9, 0.025, 0.5, 0.975):
        assert stats.hypergeom.ppf(q, total, successes, draws) == reference.hypergeom.ppf(q, total, successes, draws)


@pytest.mark.parametrize("n,p", [(10, 0.5), (401, 0.037), (5_000, 0.01), (20_000, 0.3), (20_000, 0.0005),
                                 (100_000, 0.02)])
def test_binomial_quantiles(n, p):
    # the power search trims each binomial to the counts holding all but 1e-17 of it
    for q in (1e-17, 1e-9, 0.025, 0.5, 0.975):
        assert stats.binom.ppf(q, n, p) == reference.binom.ppf(q, n, p)


def _bracketed_functions():
    """Monotone and non-monotone functions with one root in [-1, 1], of several shapes."""
    rng = np.random.default_rng(7)
    for index in range(400):
        centre, scale, power = rng.uniform(-0.9, 0.9), rng.uniform(0.1, 10.0), int(rng.choice([1, 3, 5]))
        yield [lambda x, c=centre, k=power: (x - c) ** k,
               lambda x, c=centre, s=scale: math.tanh(s * (x - c)),
               lambda x, c=centre, s=scale: math.exp(s * (x - c)) - 1.0,
               lambda x, c=centre, s=scale: math.atan(s * (x - c)) + 0.1 * (x - c) ** 3][index % 4]


@pytest.mark.parametrize("tolerances", [{}, {"xtol": 1e-13, "rtol": 1e-13}, {"xtol": 1e-14, "rtol": 1e-13},
                                        {"xtol": 1e-9}])
def test_brents_method_finds_scipys_root_to_the_last_bit(tolerances):
    from scipy import optimize as scipy_optimize

    from evalkit.stats._scipy import optimize

    def outcome(solver, f):
        try:
            return solver(f, -1.0, 1.0, **tolerances)
        except (ValueError, RuntimeError) as exc:
            return type(exc).__name__
    same = [outcome(optimize.brentq, f) == outcome(scipy_optimize.brentq, f) for f in _bracketed_functions()]
    assert all(same), f"{same.count(False)} of {len(same)} roots differ"


def test_brents_method_refuses_what_scipy_refuses():
    from evalkit.stats._scipy import optimize

    assert optimize.brentq(lambda x: x, 0.0, 1.0) == 0.0  # a root at an end
    with pytest.raises(ValueError, match="different signs"):
        optimize.brentq(lambda x: x * x + 1.0, -1.0, 1.0)
    with pytest.raises(ValueError, match="NaN"):
        optimize.brentq(lambda x: math.nan if x > 0.2 else x - 0.5, -1.0, 1.0)
    with pytest.raises(RuntimeError):
        optimize.brentq(lambda x: x - 0.3, -1.0, 1.0, maxiter=2)
