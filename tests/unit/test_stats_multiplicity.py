"""Holm and Benjamini-Hochberg adjustments against R's p.adjust and the BH (1995) example."""

import pytest

from evalkit.stats import adjust, benjamini_hochberg, holm

# Documentation examples of stdlib's padjust, which reproduces R's p.adjust.


def test_holm_matches_padjust_example():
    assert holm([0.319, 0.201, 0.4, 0.374, 0.113]) == pytest.approx([0.957, 0.804, 0.957, 0.957, 0.565])


def test_bh_matches_padjust_examples():
    assert benjamini_hochberg([0.319, 0.201, 0.4, 0.374, 0.113]) == pytest.approx([0.4] * 5)
    assert benjamini_hochberg([0.008, 0.03, 0.123, 0.6, 0.2]) == pytest.approx([0.04, 0.075, 0.205, 0.6, 0.25])


# Benjamini & Hochberg (1995) JRSS-B 57:289, section 4: of these 15 p-values the FDR
# procedure at q = 0.05 rejects the four smallest. [Quoted from memory of the paper; not
# re-checked against it here. The count also follows by hand: p(4) = 0.0095 <= 4/15 * 0.05
# while no later p(k) is <= k/15 * 0.05.]
BH_1995 = [
    0.0001,
    0.0004,
    0.0019,
    0.0095,
    0.0201,
    0.0278,
    0.0298,
    0.0344,
    0.0459,
    0.3240,
    0.4262,
    0.5719,
    0.6528,
    0.7590,
    1.0000,
]


def test_bh_1995_example_rejects_four():
    assert sum(p <= 0.05 for p in benjamini_hochberg(BH_1995)) == 4


def test_holm_is_more_conservative_on_the_bh_example():
    # Holm's step-down by hand: 0.0015, 0.0056, 0.0247, then 0.0095 * 12 = 0.114 stops it.
    adjusted = holm(BH_1995)
    assert adjusted[:4] == pytest.approx([0.0015, 0.0056, 0.0247, 0.114])
    assert sum(p <= 0.05 for p in adjusted) == 3


def test_order_is_preserved_and_results_are_monotone_and_capped():
    raw = [0.04, 0.001, 0.9, 0.03, 0.5]
    for adjusted in (holm(raw), benjamini_hochberg(raw)):
        assert all(a >= p for a, p in zip(adjusted, raw, strict=True))
        assert max(adjusted) <= 1.0
        ranked = sorted(range(len(raw)), key=raw.__getitem__)
        in_rank_order = [adjusted[i] for i in ranked]
        assert in_rank_order == sorted(in_rank_order)


def test_dispatch_edges_and_validation():
    assert adjust([0.01, 0.02], "holm") == holm([0.01, 0.02])
    assert adjust([0.01, 0.02], "bh") == benjamini_hochberg([0.01, 0.02])
    assert holm([]) == [] and benjamini_hochberg([]) == []
    assert holm([0.03]) == [0.03]
    with pytest.raises(ValueError, match="unknown method"):
        adjust([0.1], "bonferroni")
    with pytest.raises(ValueError):
        holm([0.1, 1.2])
    with pytest.raises(ValueError):
        benjamini_hochberg([float("nan")])
