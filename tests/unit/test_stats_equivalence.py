"""Tango-score TOST: its decision is the (1 - 2 alpha) Tango interval's, by construction."""

import itertools

import numpy as np
import pytest

from evalkit.stats import (
    EQUIVALENT,
    INCONCLUSIVE,
    NOT_EQUIVALENT,
    PairedTable,
    equivalence_decision,
    tango_interval,
    tost_paired,
)


def _random_tables(count: int, seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        n = int(rng.integers(1, 250))
        yield PairedTable(*rng.multinomial(n, rng.dirichlet([2, 1, 1, 3])))


@pytest.mark.parametrize("alpha", [0.05, 0.10])
def test_tost_decision_equals_interval_inclusion(alpha):
    rng = np.random.default_rng(99)
    checked = 0
    for table in _random_tables(300, seed=int(alpha * 1000)):
        margin = float(rng.uniform(0.01, 0.4))
        low, high = tango_interval(table, alpha=2 * alpha)
        if min(abs(low + margin), abs(high - margin)) < 1e-7:
            continue  # a bound on the margin itself: either answer is a rounding choice
        inside = -margin < low and high < margin
        assert (tost_paired(table, margin, alpha) < alpha) == inside, (table, margin)
        checked += 1
    assert checked > 280


def test_tost_p_equals_alpha_when_margin_is_the_interval_bound():
    for table in _random_tables(40, seed=5):
        low, high = tango_interval(table, alpha=0.10)
        margin = max(-low, high)
        if not 0 < margin < 1:
            continue
        assert tost_paired(table, margin, 0.05) == pytest.approx(0.05, abs=1e-6)


def test_large_balanced_study_is_equivalent_and_small_one_is_not():
    # 400 behaviors with 4 flips each way: the gap is pinned near 0.
    assert tost_paired(PairedTable(20, 4, 4, 372), margin=0.05) < 0.01
    # The same proportions in 20 behaviors cannot rule out a 5-point gap.
    assert tost_paired(PairedTable(1, 1, 1, 17), margin=0.05) > 0.05


def test_tost_p_falls_as_margin_widens():
    table = PairedTable(16, 20, 7, 157)
    p_values = [tost_paired(table, margin) for margin in (0.05, 0.1, 0.15, 0.2)]
    assert all(later <= earlier for earlier, later in itertools.pairwise(p_values))


def test_invalid_margin_and_empty_table():
    table = PairedTable(1, 2, 3, 4)
    for margin in (0, -0.1, 1, 1.5, True, "0.1"):
        with pytest.raises(ValueError):
            tost_paired(table, margin)
    assert tost_paired(PairedTable(0, 0, 0, 0), 0.1) == 1.0


@pytest.mark.parametrize("alpha", [0.025, 0.05])
def test_three_way_decision_is_the_interval_against_the_region(alpha):
    rng = np.random.default_rng(7)
    seen = set()
    for table in _random_tables(300, seed=11):
        margin = float(rng.uniform(0.01, 0.3))
        low, high = tango_interval(table, alpha=2 * alpha)
        if min(abs(abs(low) - margin), abs(abs(high) - margin)) < 1e-7:
            continue
        expected = (EQUIVALENT if -margin < low and high < margin else
                    NOT_EQUIVALENT if low > margin or high < -margin else INCONCLUSIVE)
        assert equivalence_decision(table, margin, alpha) == expected, (table, margin)
        seen.add(expected)
    assert seen == {EQUIVALENT, NOT_EQUIVALENT, INCONCLUSIVE}


def published(cells):
    """The table whose gap (c - b)/n is the paper's p1 - p2 = (b - c)/n (as in test_stats_intervals)."""
    return PairedTable(*cells).transposed()


@pytest.mark.parametrize("cells, alpha, margin, expected", [
    # Tango (1998) Stat Med 17:891, second example: 90% interval (-0.096, 0.037), so at
    # alpha 0.05 a 10-point margin is shown, a 5-point one neither shown nor excluded.
    ((43, 0, 1, 0), 0.05, 0.10, EQUIVALENT),
    ((43, 0, 1, 0), 0.05, 0.05, INCONCLUSIVE),
    # Fagerland, Lydersen & Laake (2014) Stat Med 33:2850, Bentur et al.: 95% Tango
    # interval (-0.517, -0.026): at alpha 0.025 the gap is beyond a 2-point margin, and a
    # 3-point margin cannot be excluded.
    ((1, 1, 7, 12), 0.025, 0.02, NOT_EQUIVALENT),
    ((1, 1, 7, 12), 0.025, 0.03, INCONCLUSIVE),
])
def test_three_way_decision_on_published_intervals(cells, alpha, margin, expected):
    assert equivalence_decision(published(cells), margin, alpha) == expected
