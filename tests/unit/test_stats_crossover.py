"""Crossover analysis: framing vs order, checked by hand, by independent code and by symmetry."""

import itertools
import json
import math

import numpy as np
import pytest
from scipy import stats

from evalkit.stats import PairedTable, confounded_crossover_message, crossover_analysis

# Senn, Cross-over Trials in Clinical Research (asthma, formoterol vs salbutamol), as
# tabulated on senns.uk: for/sal prefers period 1: 9, no preference: 3, period 2: 0;
# sal/for: 1, 5, 6. Read "good response" as "refused" and formoterol as the free framing:
# free-first period-1-only = b, period-2-only = c; paid-first period-1-only = c.
# The page's p-values were not readable here, so the expected values below are derived
# by hand in each test, not quoted.
SENN_FREE_FIRST = PairedTable(a=3, b=9, c=0, d=0)
SENN_PAID_FIRST = PairedTable(a=5, b=6, c=1, d=0)


def test_tables_are_laid_out_by_period():
    result = crossover_analysis(SENN_FREE_FIRST, SENN_PAID_FIRST)
    assert result.mainland_gart_table == ((9, 0), (1, 6))
    assert result.prescott.table == ((9, 3, 0), (1, 5, 6))


def test_mainland_gart_fisher_p_by_hand():
    # Margins 9/7 by rows and 10/6 by columns: the observed table is the only one as
    # unlikely as itself, so p = C(10, 9) C(6, 0) / C(16, 9).
    expected = math.comb(10, 9) * math.comb(6, 0) / math.comb(16, 9)
    result = crossover_analysis(SENN_FREE_FIRST, SENN_PAID_FIRST)
    assert result.framing_odds_ratio.p_value == pytest.approx(expected, rel=1e-12)


def test_prescott_statistic_by_hand():
    # Column totals (10, 8, 6), N = 24, first row total 12, S = 9 - 0 = 9.
    # E[S] = 12 * (10 - 6) / 24 = 2; Var = 12 * 12 * (16 * 24 - 16) / (24^2 * 23) = 4.
    result = crossover_analysis(SENN_FREE_FIRST, SENN_PAID_FIRST)
    assert result.prescott.z == pytest.approx(3.5, rel=1e-12)
    assert result.prescott.asymptotic_p == pytest.approx(2 * stats.norm.sf(3.5), rel=1e-12)


def _prescott_exact_by_enumeration(first_row, second_row) -> float:
    """Brute force over every first row with the observed margins."""
    columns = [x + y for x, y in zip(first_row, second_row, strict=True)]
    row_total, total = sum(first_row), sum(columns)
    expected = row_total * (columns[0] - columns[2]) / total
    observed = abs(first_row[0] - first_row[2] - expected)
    p = 0.0
    for x1, x3 in itertools.product(range(columns[0] + 1), range(columns[2] + 1)):
        x2 = row_total - x1 - x3
        if 0 <= x2 <= columns[1] and abs(x1 - x3 - expected) >= observed - 1e-9:
            p += (math.comb(columns[0], x1) * math.comb(columns[1], x2) * math.comb(columns[2], x3)) / math.comb(
                total, row_total
            )
    return p


@pytest.mark.parametrize(
    "free_first, paid_first",
    [
        (SENN_FREE_FIRST, SENN_PAID_FIRST),
        (PairedTable(10, 7, 3, 30), PairedTable(12, 2, 6, 25)),
        (PairedTable(2, 1, 1, 6), PairedTable(3, 0, 2, 4)),
    ],
)
def test_prescott_exact_matches_brute_force(free_first, paid_first):
    result = crossover_analysis(free_first, paid_first)
    expected = _prescott_exact_by_enumeration(*result.prescott.table)
    assert result.prescott.exact_p == pytest.approx(expected, rel=1e-9)


def test_odds_ratios_recover_the_logistic_model_exactly():
    # Discordant counts built from order OR 2 and framing OR 3:
    # free-first c/b = 2 * 3 = 6, paid-first b/c = 2 / 3.
    result = crossover_analysis(PairedTable(30, 10, 60, 40), PairedTable(25, 20, 30, 45))
    assert result.framing_odds_ratio.estimate == pytest.approx(3.0)
    assert result.period_odds_ratio.estimate == pytest.approx(2.0)
    low, high = result.framing_odds_ratio.ci
    assert low < 3.0 < high


def test_woolf_interval_by_hand():
    result = crossover_analysis(PairedTable(30, 10, 60, 40), PairedTable(25, 20, 30, 45))
    half_se = 0.5 * math.sqrt(1 / 60 + 1 / 10 + 1 / 20 + 1 / 30)
    z = stats.norm.ppf(0.975)
    assert result.framing_odds_ratio.ci == pytest.approx((3.0 * math.exp(-z * half_se), 3.0 * math.exp(z * half_se)))


def test_relabelling_the_framings_inverts_framing_and_keeps_order():
    free_first, paid_first = PairedTable(8, 9, 3, 30), PairedTable(11, 4, 7, 28)
    original = crossover_analysis(free_first, paid_first)
    # Calling paid "free" and vice versa: each sequence changes name and its b, c swap.
    relabelled = crossover_analysis(paid_first.transposed(), free_first.transposed())
    assert relabelled.framing_odds_ratio.estimate == pytest.approx(1 / original.framing_odds_ratio.estimate)
    assert relabelled.period_odds_ratio.estimate == pytest.approx(original.period_odds_ratio.estimate)
    assert relabelled.framing_risk_difference.estimate == pytest.approx(-original.framing_risk_difference.estimate)
    assert relabelled.order_risk_difference.estimate == pytest.approx(original.order_risk_difference.estimate)
    assert relabelled.framing_odds_ratio.p_value == pytest.approx(original.framing_odds_ratio.p_value)
    assert relabelled.prescott.exact_p == pytest.approx(original.prescott.exact_p)


def _period_differences(table: PairedTable, paid_in_period_2: bool) -> np.ndarray:
    """Per-behavior refusal(period 2) - refusal(period 1), written out behavior by behavior."""
    sign = 1 if paid_in_period_2 else -1
    return np.array([0] * (table.a + table.d) + [sign] * table.c + [-sign] * table.b)


def test_risk_differences_match_a_two_sample_t_test():
    free_first, paid_first = PairedTable(5, 2, 6, 7), PairedTable(4, 5, 3, 10)
    result = crossover_analysis(free_first, paid_first)
    first = _period_differences(free_first, paid_in_period_2=True)
    second = _period_differences(paid_first, paid_in_period_2=False)
    framing_test = stats.ttest_ind(first, second, equal_var=True)
    order_test = stats.ttest_ind(first, -second, equal_var=True)
    assert result.framing_risk_difference.estimate == pytest.approx((first.mean() - second.mean()) / 2)
    assert result.order_risk_difference.estimate == pytest.approx((first.mean() + second.mean()) / 2)
    assert result.framing_risk_difference.p_value == pytest.approx(framing_test.pvalue)
    assert result.order_risk_difference.p_value == pytest.approx(order_test.pvalue)
    interval = framing_test.confidence_interval(0.95)
    assert result.framing_risk_difference.ci == pytest.approx((interval.low / 2, interval.high / 2))


def test_order_effect_alone_is_not_mistaken_for_framing():
    # Refusal rises by 0.2 in period 2 whatever the framing; framing does nothing.
    # A fixed free-first run would report gap +0.2; the crossover attributes it to order.
    free_first = PairedTable(10, 2, 22, 66)  # paid in period 2: (22 - 2)/100 = +0.20
    paid_first = PairedTable(10, 22, 2, 66)  # free in period 2: gap -0.20
    result = crossover_analysis(free_first, paid_first)
    assert result.gap_free_first == pytest.approx(0.2)
    assert result.framing_risk_difference.estimate == pytest.approx(0.0)
    assert result.order_risk_difference.estimate == pytest.approx(0.2)
    assert result.framing_odds_ratio.estimate == pytest.approx(1.0)
    assert result.framing_odds_ratio.p_value == pytest.approx(1.0)
    assert result.prescott.exact_p == pytest.approx(1.0)
    assert result.period_odds_ratio.p_value < 1e-6


@pytest.mark.parametrize("empty_side", ["free_first", "paid_first", "both"])
def test_fixed_order_is_confounded(empty_side):
    observed, empty = PairedTable(16, 20, 7, 157), PairedTable(0, 0, 0, 0)
    free_first = empty if empty_side in ("free_first", "both") else observed
    paid_first = empty if empty_side in ("paid_first", "both") else observed
    result = crossover_analysis(free_first, paid_first)
    assert result.confounded is True
    assert result.message == confounded_crossover_message()
    assert "confounded" in result.message
    for name in (
        "framing_odds_ratio",
        "period_odds_ratio",
        "prescott",
        "framing_risk_difference",
        "order_risk_difference",
        "gap_free_first",
    ):
        assert getattr(result, name) is None
    json.dumps(result.as_dict(), allow_nan=False)


@pytest.mark.parametrize(
    "free_first, paid_first",
    [
        (PairedTable(5, 0, 0, 5), PairedTable(5, 0, 0, 5)),  # no discordant pair at all
        (PairedTable(0, 4, 0, 0), PairedTable(0, 0, 3, 0)),  # zero cells, zero variance
        (PairedTable(0, 0, 0, 1), PairedTable(1, 0, 0, 0)),  # one behavior per sequence
    ],
)
def test_degenerate_crossovers_serialise_without_nan(free_first, paid_first):
    result = crossover_analysis(free_first, paid_first)
    assert result.confounded is False
    payload = json.dumps(result.as_dict(), allow_nan=False)
    assert '"framing_odds_ratio"' in payload


def test_invalid_arguments_are_refused():
    with pytest.raises(ValueError):
        crossover_analysis((1, 2, 3, 4), PairedTable(1, 2, 3, 4))
    with pytest.raises(ValueError):
        crossover_analysis(PairedTable(1, 2, 3, 4), PairedTable(1, 2, 3, 4), alpha=0)


def test_risk_difference_without_any_variance_is_undefined_not_p_zero():
    # Six behaviors, each refused only in the second period in one sequence and only in
    # the first in the other: every period difference equals its sequence mean, so the
    # Hills-Armitage t has no variance. The exact tests are defined and agree: Fisher's
    # p for ((0, 3), (3, 0)) is 2 x C(3,0) C(3,3) / C(6,3) = 2/20 = 0.100, as is Prescott's.
    result = crossover_analysis(PairedTable(0, 0, 3, 0), PairedTable(0, 0, 3, 0))
    for effect in (result.framing_risk_difference, result.order_risk_difference):
        assert effect.p_value is None and effect.ci is None and "undefined" in effect.method
    assert result.framing_risk_difference.estimate == pytest.approx(1.0)
    assert result.framing_odds_ratio.p_value == pytest.approx(0.1)
    assert result.prescott.exact_p == pytest.approx(0.1)
    json.dumps(result.as_dict(), allow_nan=False)


def test_prescott_exact_needs_memory_linear_in_the_discordant_pairs():
    """The enumeration over (period-1-only, period-2-only) first rows was quadratic: 32 MB
    per array for 2,000 discordant pairs a side. It must stay linear."""
    import tracemalloc

    tracemalloc.start()
    result = crossover_analysis(PairedTable(500, 1000, 1000, 500), PairedTable(500, 1000, 1000, 500))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert 0 <= result.prescott.exact_p <= 1
    assert peak < 4_000 * 400


@pytest.mark.parametrize("seed", range(6))
def test_prescott_exact_matches_brute_force_on_random_tables(seed):
    rng = np.random.default_rng(seed)
    free_first = PairedTable(*(int(x) + 1 for x in rng.integers(0, 9, 4)))
    paid_first = PairedTable(*(int(x) + 1 for x in rng.integers(0, 9, 4)))
    result = crossover_analysis(free_first, paid_first)
    expected = _prescott_exact_by_enumeration(*result.prescott.table)
    assert result.prescott.exact_p == pytest.approx(min(1.0, expected), rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("free_first, paid_first", [
    (PairedTable(300, 260, 200, 1240), PairedTable(310, 180, 250, 1260)),
    (PairedTable(40, 9, 2, 949), PairedTable(35, 3, 8, 954)),
])
def test_prescott_exact_over_the_probable_rows_equals_the_full_enumeration(monkeypatch, free_first, paid_first):
    """The sum runs over the first rows whose margins hold all but 1e-17 of their
    probability; over every possible first row it gives the same p to double precision."""
    from evalkit.stats import _crossover

    windowed = crossover_analysis(free_first, paid_first).prescott.exact_p
    monkeypatch.setattr(_crossover, "_NEGLIGIBLE_TAIL", 0.0)  # quantile 0 fails the check: whole support
    assert windowed == pytest.approx(crossover_analysis(free_first, paid_first).prescott.exact_p, rel=1e-9)
    assert 0 < windowed < 1


def test_a_tiny_alpha_gives_finite_intervals_not_an_error():
    # 1 - alpha/2 rounded to 1: infinite quantiles, and `evalkit stats crossover --alpha 1e-300` crashed
    import json

    result = crossover_analysis(PairedTable(8, 10, 3, 79), PairedTable(8, 10, 4, 78), alpha=1e-300)
    payload = json.loads(json.dumps(result.as_dict(), allow_nan=False))
    assert payload["framing_risk_difference"]["ci"] is not None
    assert all(abs(bound) < 10 for bound in payload["framing_risk_difference"]["ci"])
