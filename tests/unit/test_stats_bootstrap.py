"""Cluster bootstrap of the gap: reproducible, seed-driven, and consistent with theory."""

import numpy as np
import pytest

from evalkit.stats import PairedTable, cluster_bootstrap_gap, wald_interval


def _verdicts(table: PairedTable) -> tuple[list[bool], list[bool]]:
    free = [True] * table.a + [True] * table.b + [False] * table.c + [False] * table.d
    paid = [True] * table.a + [False] * table.b + [True] * table.c + [False] * table.d
    return free, paid


def test_same_seed_same_interval_different_seed_different_interval():
    free, paid = _verdicts(PairedTable(16, 20, 7, 157))
    first = cluster_bootstrap_gap(free, paid, reps=500, seed=3)
    assert cluster_bootstrap_gap(free, paid, reps=500, seed=3) == first
    assert cluster_bootstrap_gap(free, paid, reps=500, seed=4) != first


def test_does_not_touch_global_random_state():
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    free, paid = _verdicts(PairedTable(5, 5, 5, 5))
    cluster_bootstrap_gap(free, paid, reps=100, seed=0)
    assert np.random.random() == expected


def test_agrees_with_wald_for_a_large_study():
    # With 400 behaviors the percentile bootstrap and the Wald interval estimate the same
    # sampling distribution of a mean of {-1, 0, 1} differences.
    table = PairedTable(30, 40, 20, 310)
    bootstrap = cluster_bootstrap_gap(*_verdicts(table), reps=4000, seed=1)
    wald = wald_interval(table)
    assert bootstrap[0] == pytest.approx(wald[0], abs=0.006)
    assert bootstrap[1] == pytest.approx(wald[1], abs=0.006)


def test_clusters_can_carry_refusal_proportions():
    # Three samples per behavior: a behavior's value is its refusal proportion.
    free = [1.0, 2 / 3, 0.0, 1 / 3]
    paid = [1.0, 0.0, 0.0, 1 / 3]
    low, high = cluster_bootstrap_gap(free, paid, reps=2000, seed=0)
    assert -2 / 3 <= low <= high <= 0.0  # every resampled mean lies in [-2/3, 0]


def test_no_discordance_gives_a_point():
    assert cluster_bootstrap_gap([True, False], [True, False], reps=50) == (0.0, 0.0)


def test_invalid_inputs_are_refused():
    with pytest.raises(ValueError, match="one value per behavior"):
        cluster_bootstrap_gap([True], [True, False])
    with pytest.raises(ValueError, match="empty"):
        cluster_bootstrap_gap([], [])
    with pytest.raises(ValueError):
        cluster_bootstrap_gap([1.5], [0.0])
    with pytest.raises(ValueError):
        cluster_bootstrap_gap([1.0], [0.0], reps=0)
