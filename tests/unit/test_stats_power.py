"""Exact power of the McNemar tests: published values, an approximation, and simulation."""

import functools
import itertools

import numpy as np
import pytest
from scipy import stats

from evalkit.stats import (
    mcnemar_chi2,
    mcnemar_exact_p,
    mcnemar_midp,
    mcnemar_power,
    min_detectable_gap,
    min_detectable_gap_over_noise,
)


def test_matches_mess_exact_power():
    # MESS::power_mcnemar_test(144, paid = 0.25, psi = 45/25, method = "exact",
    # alternative = "one.sided", sig.level = 0.025) has power 0.80 (to 2 decimals) in the
    # package's validated tests. That design is pd = 0.25 + 0.45, gap = 0.20; our
    # two-sided exact test at 0.05 rejects in that direction exactly when the one-sided
    # test at 0.025 does (the wrong-direction tail is negligible here).
    assert mcnemar_power(144, 0.70, 0.20, alpha=0.05, test="exact") == pytest.approx(0.80, abs=0.005)


def test_close_to_connor_sample_size_formula():
    # Connor (1987) Biometrics 43:207: n = [z_a sqrt(pd) + z_b sqrt(pd - gap^2)]^2 / gap^2.
    # For pd = 0.45, gap = 0.15, 80% power it gives 155 pairs. The formula is itself a
    # normal approximation, so the exact power of the asymptotic test is only near 0.80.
    pd, gap = 0.45, 0.15
    z_alpha, z_beta = stats.norm.ppf(0.975), stats.norm.ppf(0.8)
    n = int(np.ceil(((z_alpha * np.sqrt(pd) + z_beta * np.sqrt(pd - gap**2)) / gap) ** 2))
    assert n == 155
    assert mcnemar_power(n, pd, gap, test="asymptotic") == pytest.approx(0.80, abs=0.02)


_P_VALUE = {
    "midp": mcnemar_midp,
    "exact": mcnemar_exact_p,
    "asymptotic": lambda b, c: mcnemar_chi2(b, c, correction=False)[1],
}


@pytest.mark.parametrize("test", ["midp", "exact", "asymptotic"])
def test_agrees_with_monte_carlo(test):
    n, pd, gap, alpha, simulations = 60, 0.3, 0.12, 0.05, 40_000
    rng = np.random.default_rng(2024)
    p_free_only, p_paid_only = (pd - gap) / 2, (pd + gap) / 2
    draws = rng.multinomial(n, [p_free_only, p_paid_only, 1 - pd], size=simulations)
    pairs, frequency = np.unique(draws[:, :2], axis=0, return_counts=True)
    rejections = sum(
        count for (b, c), count in zip(pairs, frequency, strict=True) if _P_VALUE[test](int(b), int(c)) <= alpha
    )
    simulated = rejections / simulations
    exact = mcnemar_power(n, pd, gap, alpha, test)
    standard_error = np.sqrt(exact * (1 - exact) / simulations)
    assert abs(simulated - exact) < 4.5 * standard_error


def test_size_of_exact_test_never_exceeds_alpha():
    for n in (10, 37, 100, 250):
        for pd in (0.05, 0.3, 0.8):
            assert mcnemar_power(n, pd, 0.0, 0.05, "exact") <= 0.05


def test_power_rises_with_gap_and_with_n():
    gaps = np.linspace(0, 0.2, 21)
    powers = [mcnemar_power(120, 0.2, gap) for gap in gaps]
    assert all(later >= earlier - 1e-12 for earlier, later in itertools.pairwise(powers))
    assert mcnemar_power(400, 0.2, 0.08) > mcnemar_power(100, 0.2, 0.08)
    assert mcnemar_power(80, 0.2, -0.1) == pytest.approx(mcnemar_power(80, 0.2, 0.1))


def test_midp_is_more_powerful_than_exact():
    assert mcnemar_power(80, 0.25, 0.1, test="midp") > mcnemar_power(80, 0.25, 0.1, test="exact")


def test_min_detectable_gap_hits_the_target():
    gap = min_detectable_gap(200, 0.135, alpha=0.05, power=0.8)
    assert gap is not None and 0 < gap < 0.135
    assert mcnemar_power(200, 0.135, gap) == pytest.approx(0.8, abs=1e-6)
    assert mcnemar_power(200, 0.135, gap - 0.005) < 0.8


def test_min_detectable_gap_unreachable_is_none():
    # Ten behaviors with 10% discordance: at most a handful of flips, never 80% power.
    assert min_detectable_gap(10, 0.1) is None
    assert min_detectable_gap(100, 0.0) is None


def test_min_detectable_gap_covers_the_full_dataset():
    # (speed is measured in benchmarks/, not asserted here)
    for test in ("midp", "exact", "asymptotic"):
        gaps = [min_detectable_gap(400, pd, test=test) for pd in (0.02, 0.135, 0.5)]
        assert all(g is not None and 0 < g < 1 for g in gaps)
        assert gaps == sorted(gaps)  # more discordance, more noise: a larger detectable gap


def test_invalid_designs_are_refused():
    with pytest.raises(ValueError, match="cannot exceed"):
        mcnemar_power(100, 0.1, 0.2)
    with pytest.raises(ValueError, match="unknown test"):
        mcnemar_power(100, 0.1, 0.05, test="wald")
    with pytest.raises(ValueError):
        mcnemar_power(-5, 0.1, 0.05)
    with pytest.raises(ValueError):
        min_detectable_gap(100, 0.2, power=1.0)


def test_min_detectable_gap_over_noise_reaches_the_target_exactly_there():
    """At the returned gap, with its flips on top of the noise, exact power reaches 80%;
    just below it does not (checked with the independent mcnemar_power)."""
    for n, noise in ((200, 0.135), (400, 0.015), (400, 0.0)):
        gap = min_detectable_gap_over_noise(n, noise, alpha=0.05, power=0.8)
        assert mcnemar_power(n, noise + gap, gap, alpha=0.05) >= 0.8 - 1e-9
        assert mcnemar_power(n, noise + gap * 0.97, gap * 0.97, alpha=0.05) < 0.8
        assert gap >= min_detectable_gap(n, max(noise, 1e-9) + gap, alpha=0.05, power=0.8) - 1e-6


# ---------------------------------------------------------------- exact, in linear memory (issue 11)


@functools.cache
def _largest_rejecting_split(m: int, alpha: float, test: str) -> int:
    """Brute force: the largest smaller-cell count k whose split (k, m - k) rejects, or -1,
    by the published p-value functions, scanning down from the even split."""
    return next((k for k in range(m // 2, -1, -1) if m and _P_VALUE[test](k, m - k) <= alpha), -1)


def _power_by_full_enumeration(n: int, pd: float, gap: float, alpha: float, test: str) -> float:
    """Every m = 0..n and every split of it, with the published p-value functions."""
    share = (pd + abs(gap)) / (2 * pd)
    m = np.arange(n + 1)
    k = np.array([_largest_rejecting_split(int(count), alpha, test) for count in m])
    reject = np.where(k < 0, 0.0, stats.binom.cdf(k, m, share) + stats.binom.sf(m - k - 1, m, share))
    reject = np.where(2 * k >= m, 1.0, reject)
    return float(np.sum(stats.binom.pmf(m, n, pd) * reject))


@pytest.mark.parametrize("test", ["midp", "exact", "asymptotic"])
@pytest.mark.parametrize("n, pd, gap, alpha", [(1, 0.5, 0.2, 0.05), (7, 0.9, 0.5, 0.1), (30, 0.3, 0.12, 0.05),
                                               (144, 0.70, 0.20, 0.05), (151, 0.02, 0.015, 0.01),
                                               (400, 0.135, 0.05, 0.05)])
def test_power_equals_the_full_enumeration_over_every_discordant_count(test, n, pd, gap, alpha):
    assert mcnemar_power(n, pd, gap, alpha, test) == pytest.approx(
        _power_by_full_enumeration(n, pd, gap, alpha, test), abs=1e-12)


def test_the_power_search_needs_memory_linear_in_n():
    """The old search held an (n + 1) x (n/2 + 1) table: 16 MB per array at n = 2,000
    (1.7 GB of peak memory at n = 8,000). Now no array grows faster than n."""
    import tracemalloc

    from evalkit.stats import PairedTable, paired_analysis

    peaks = {}
    for n in (2_000, 6_000):
        tracemalloc.start()
        paired_analysis(PairedTable(n // 10, n // 20, n // 20, n - n // 5))
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks[2_000] < 2_000 * 400  # bytes: a few arrays of n float64s, not n^2 / 2
    assert peaks[6_000] < 6_000 * 400


@pytest.mark.parametrize("n, pd, gap", [(5_000, 0.01, 0.004), (20_000, 0.3, 0.02), (20_000, 0.0005, 0.0004)])
def test_summing_the_probable_discordant_counts_only_changes_nothing(monkeypatch, n, pd, gap):
    """Above a few thousand pairs the sum runs over the m holding all but 2e-17 of
    Binomial(n, pd); the sum over every m = 0..n (checked above against the published
    p-values) gives the same power to double precision."""
    from evalkit.stats import _power

    windowed = mcnemar_power(n, pd, gap)
    monkeypatch.setattr(_power, "_SUM_EVERY_M_UP_TO", 10**9)
    assert windowed == pytest.approx(mcnemar_power(n, pd, gap), abs=1e-15)
    assert 0 < windowed < 1
