"""Change between model versions: MOVER intervals, checked on Newcombe's published examples."""

import numpy as np
import pytest

from evalkit.stats import PairedTable, gap_change, mover_difference, refusal_change, wilson_interval
from evalkit.stats._intervals import _newcombe_phi

# Newcombe (1998) Stat Med 17:873, Table II, method 10 (score intervals, square-and-add):
# the MOVER rule on two independent Wilson intervals (correlation 0).
NEWCOMBE_1998_INDEPENDENT = [
    ((56, 70, 48, 80), (0.0524, 0.3339)),
    ((9, 10, 3, 10), (0.1705, 0.8090)),
    ((6, 7, 2, 7), (0.0582, 0.8062)),
    ((5, 56, 0, 29), (-0.0381, 0.1926)),
    ((0, 10, 0, 10), (-0.2775, 0.2775)),
    ((10, 10, 0, 20), (0.6791, 1.0000)),
]


@pytest.mark.parametrize("counts, expected", NEWCOMBE_1998_INDEPENDENT)
def test_mover_reproduces_newcombe_1998_independent(counts, expected):
    x1, n1, x2, n2 = counts
    low, high = mover_difference(x1 / n1, wilson_interval(x1, n1), x2 / n2, wilson_interval(x2, n2), 0.0)
    assert (round(low, 4), round(high, 4)) == expected


def test_mover_reproduces_newcombe_paired_method_10_on_bentur():
    # Fagerland, Lydersen & Laake (2014) Stat Med 33:2850, Bentur et al.: Newcombe's paired
    # interval (-0.507, -0.026) for p1 - p2 = (b - c)/n with (a, b, c, d) = (1, 1, 7, 12) is the
    # MOVER rule on the two marginal Wilson intervals with his corrected phi as correlation.
    a, b, c, d = 1, 1, 7, 12
    n = a + b + c + d
    low, high = mover_difference((a + b) / n, wilson_interval(a + b, n), (a + c) / n, wilson_interval(a + c, n),
                                 _newcombe_phi(PairedTable(a, b, c, d)))
    assert (round(low, 3), round(high, 3)) == (-0.507, -0.026)


def test_mover_rejects_a_correlation_outside_minus_one_one():
    with pytest.raises(ValueError):
        mover_difference(0.1, (0.0, 0.2), 0.1, (0.0, 0.2), 1.5)


def _versions(seed, n=300, flip_b=0.03, flip_c=0.08):
    """Baseline and candidate verdicts sharing a behavior-level propensity (correlated versions)."""
    rng = np.random.default_rng(seed)
    base = rng.random(n) < 0.3
    free_b = base ^ (rng.random(n) < 0.01)
    paid_b = base & ~(rng.random(n) < flip_b)
    free_c = base ^ (rng.random(n) < 0.01)
    paid_c = base & ~(rng.random(n) < flip_c)
    return free_b, paid_b, free_c, paid_c


def test_identical_versions_show_no_change_with_a_narrow_interval():
    free, paid, _, _ = _versions(1)
    change = gap_change(free, paid, free, paid)
    assert change.change == 0 and change.correlation == pytest.approx(1.0)
    low, high = change.change_ci
    assert low <= 0 <= high and high - low < 0.02


def test_swapping_versions_negates_the_change():
    free_b, paid_b, free_c, paid_c = _versions(2)
    forward = gap_change(free_b, paid_b, free_c, paid_c)
    backward = gap_change(free_c, paid_c, free_b, paid_b)
    assert backward.change == pytest.approx(-forward.change)
    assert backward.change_ci[0] == pytest.approx(-forward.change_ci[1])
    assert backward.change_ci[1] == pytest.approx(-forward.change_ci[0])


def test_gap_change_matches_the_two_gaps_and_stays_in_range():
    free_b, paid_b, free_c, paid_c = _versions(3)
    change = gap_change(free_b, paid_b, free_c, paid_c)
    assert change.baseline_gap == pytest.approx(np.mean(paid_b.astype(float) - free_b))
    assert change.candidate_gap == pytest.approx(np.mean(paid_c.astype(float) - free_c))
    assert change.change == pytest.approx(change.candidate_gap - change.baseline_gap)
    assert change.change_ci[0] < change.change < change.change_ci[1]
    all_flip = gap_change([True] * 5, [False] * 5, [False] * 5, [True] * 5)
    assert all_flip.change == 2.0 and all_flip.change_ci[1] <= 2.0


def test_a_version_without_discordant_pairs_still_has_an_interval():
    # Wald on the 16 cells would give zero width here; MOVER keeps the baseline's uncertainty.
    n = 200
    change = gap_change([False] * n, [False] * n, [False] * n, [False] * n)
    low, high = change.change_ci
    assert change.change == 0 and low < 0 < high


def test_refusal_change_is_newcombes_paired_interval_across_versions():
    baseline = [True] * 16 + [True] * 20 + [False] * 7 + [False] * 157
    candidate = [True] * 16 + [False] * 20 + [True] * 7 + [False] * 157
    change = refusal_change(baseline, candidate)
    assert (change.dropped, change.rose, change.n) == (20, 7, 200)
    assert change.change == pytest.approx(-0.065)
    # the same table as the study's pilot, read as baseline -> candidate
    assert change.change_ci == pytest.approx((-0.1183, -0.0137), abs=5e-5)
    with pytest.raises(ValueError):
        refusal_change([], [])
