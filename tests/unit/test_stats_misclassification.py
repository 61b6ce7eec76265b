"""The misclassification-corrected gap (``evalkit.stats._misclassification``), checked against
published worked examples and against independent formulas:

- Rogan & Gladen (1978) estimator and its normal interval with known Se/Sp: the worked
  example of R package RSurveillance, ``tp(x = 20, n = 120, se = 0.9, sp = 0.99)``, whose
  documented output is est 0.17603, "normal" [0.1011094, 0.2509506], "wilson" [0.1129887,
  0.2623065] (the Wilson limits of the apparent prevalence, corrected);
- Newcombe (1998), "Interval estimation for the difference between independent proportions:
  comparison of eleven methods", Stat Med 17:873-890, Table II, method 10 (the hybrid score
  interval, used here for Youden's J = Se - (1 - Sp));
- MOVER-R (Donner & Zou 2012; Newcombe 2016) equals Fieller's (1954) interval when both
  component intervals are symmetric (Wald) ones, computed here from Fieller's quadratic;
- known Se and Sp reduce the corrected interval to the observed gap's interval divided by J.
The coverage of the corrected interval is checked by simulation in
tests/integration/test_corrected_gap.py.
"""

import math

import pytest
from scipy import stats as scipy_stats

from evalkit.stats import (
    PairedTable,
    corrected_gap,
    mover_ratio_interval,
    newcombe_difference_interval,
    newcombe_interval,
    rogan_gladen,
    rogan_gladen_interval,
    wilson_interval,
    youden_interval,
)

pytestmark = pytest.mark.unit
HUGE = 10**12  # a validation sample so large that Se and Sp are known


def test_rogan_gladen_rsurveillance_worked_example():
    assert rogan_gladen(20 / 120, 0.9, 0.99) == pytest.approx(0.17603, abs=5e-6)
    estimate, interval = rogan_gladen_interval(20, 120, 9 * HUGE // 10, HUGE, 99 * HUGE // 100, HUGE)
    assert estimate == pytest.approx(0.17603, abs=5e-6)
    assert interval == pytest.approx((0.1011094, 0.2509506), abs=5e-7)  # "normal"
    low, high = wilson_interval(20, 120)
    assert (rogan_gladen(low, 0.9, 0.99), rogan_gladen(high, 0.9, 0.99)) == pytest.approx(
        (0.1129887, 0.2623065), abs=5e-7)  # "wilson"


def test_rogan_gladen_widens_when_se_and_sp_are_estimated():
    _, known = rogan_gladen_interval(20, 120, 9 * HUGE // 10, HUGE, 99 * HUGE // 100, HUGE)
    _, estimated = rogan_gladen_interval(20, 120, 45, 50, 99, 100)
    assert estimated[0] < known[0] and estimated[1] > known[1]
    # Rogan & Gladen's variance by hand: [p(1-p)/n + t^2 Se(1-Se)/m1 + (1-t)^2 Sp(1-Sp)/m0] / J^2
    p, se, sp = 20 / 120, 0.9, 0.99
    t = (p + sp - 1) / (se + sp - 1)
    variance = (p * (1 - p) / 120 + t * t * se * (1 - se) / 50
                + (1 - t) ** 2 * sp * (1 - sp) / 100) / (se + sp - 1) ** 2
    z = scipy_stats.norm.ppf(0.975)
    assert estimated == pytest.approx((t - z * math.sqrt(variance), t + z * math.sqrt(variance)))


def test_rogan_gladen_needs_a_judge_better_than_chance():
    with pytest.raises(ValueError, match="Youden"):
        rogan_gladen(0.3, 0.5, 0.5)


@pytest.mark.parametrize("x1, n1, x2, n2, expected", [
    (56, 70, 48, 80, (0.0524, 0.3339)),
    (9, 10, 3, 10, (0.1705, 0.8090)),
    (6, 7, 2, 7, (0.0582, 0.8062)),
    (5, 56, 0, 29, (-0.0381, 0.1926)),
    (0, 10, 0, 20, (-0.1611, 0.2775)),
    (0, 10, 0, 10, (-0.2775, 0.2775)),
    (10, 10, 0, 20, (0.6791, 1.0000)),
    (10, 10, 0, 10, (0.6075, 1.0000)),
])
def test_newcombe_1998_table_ii_method_10(x1, n1, x2, n2, expected):
    assert newcombe_difference_interval(x1, n1, x2, n2) == pytest.approx(expected, abs=5e-5)


def test_youden_interval_is_the_difference_of_se_and_the_false_refusal_rate():
    estimate, interval = youden_interval(87, 88, 259, 266)
    assert estimate == pytest.approx(87 / 88 + 259 / 266 - 1)
    assert interval == newcombe_difference_interval(87, 88, 266 - 259, 266)


def _fieller(theta1, s1, theta2, s2, z):
    """Fieller's (1954) limits for theta1/theta2, independent estimates with standard errors
    s1, s2: the roots of (theta1 - r theta2)^2 = z^2 (s1^2 + r^2 s2^2)."""
    a = theta2 ** 2 - z * z * s2 * s2
    b = -2 * theta1 * theta2
    c = theta1 ** 2 - z * z * s1 * s1
    root = math.sqrt(b * b - 4 * a * c)
    return sorted(((-b - root) / (2 * a), (-b + root) / (2 * a)))


@pytest.mark.parametrize("theta1, s1, theta2, s2", [
    (-0.04, 0.015, 0.85, 0.04), (0.03, 0.02, 0.6, 0.1), (0.005, 0.02, 0.9, 0.02), (-0.2, 0.05, 0.4, 0.12),
])
def test_mover_r_with_symmetric_limits_is_fiellers_interval(theta1, s1, theta2, s2):
    z = scipy_stats.norm.ppf(0.975)
    interval = mover_ratio_interval(theta1, (theta1 - z * s1, theta1 + z * s1), theta2,
                                    (theta2 - z * s2, theta2 + z * s2))
    assert interval == pytest.approx(_fieller(theta1, s1, theta2, s2, z), abs=1e-10)


def test_mover_r_known_denominator_and_unbounded_cases():
    assert mover_ratio_interval(-0.04, (-0.07, -0.01), 0.8, (0.8, 0.8)) == pytest.approx((-0.0875, -0.0125))
    assert mover_ratio_interval(-0.04, (-0.07, -0.01), 0.2, (-0.05, 0.4)) is None  # J could be 0
    with pytest.raises(ValueError, match="within its interval"):
        mover_ratio_interval(0.5, (0.0, 0.4), 0.8, (0.7, 0.9))


def test_known_error_rates_give_the_observed_interval_over_j():
    table = PairedTable(100, 30, 14, 256)
    result = corrected_gap(table, 9 * HUGE // 10, HUGE, 95 * HUGE // 100, HUGE)
    youden = 0.85
    assert result.youden == pytest.approx(youden)
    assert result.gap == pytest.approx(table.gap / youden)
    low, high = newcombe_interval(table)
    assert result.gap_ci == pytest.approx((low / youden, high / youden), abs=1e-9)
    assert result.refusal_paid - result.refusal_free == pytest.approx(result.gap)


def test_estimated_error_rates_widen_the_interval_and_undo_the_attenuation():
    table = PairedTable(100, 30, 14, 256)
    known = corrected_gap(table, 9 * HUGE // 10, HUGE, 95 * HUGE // 100, HUGE)
    estimated = corrected_gap(table, 90, 100, 95, 100)  # the same rates from a small validation set
    assert estimated.gap == pytest.approx(known.gap)
    assert abs(estimated.gap) > abs(table.gap)  # errors pull the observed gap toward zero
    assert estimated.gap_ci[0] < known.gap_ci[0] and estimated.gap_ci[1] > known.gap_ci[1]


def test_orientation_is_symmetric():
    table = PairedTable(40, 12, 25, 123)
    forward = corrected_gap(table, 70, 76, 75, 80)
    backward = corrected_gap(table.transposed(), 70, 76, 75, 80)
    assert backward.gap == pytest.approx(-forward.gap)
    assert backward.gap_ci == pytest.approx((-forward.gap_ci[1], -forward.gap_ci[0]))


def test_a_judge_no_better_than_chance_gives_no_correction():
    result = corrected_gap(PairedTable(40, 12, 25, 123), 10, 20, 10, 20)
    assert result.youden == 0 and result.gap is None and result.gap_ci is None and result.refusal_free is None
    weak = corrected_gap(PairedTable(40, 12, 25, 123), 7, 10, 5, 10)  # J = 0.2, its interval reaches 0
    assert weak.gap is not None and weak.gap_ci is None


@pytest.mark.parametrize("table", [PairedTable(5, 0, 30, 5), PairedTable(5, 30, 0, 5)], ids=["up", "down"])
def test_an_interval_wholly_beyond_a_bound_is_truncated_not_inverted(table):
    # Se = Sp = 0.65 from 200 + 200 labels (J = 0.3, interval about [0.20, 0.39]), and 30 of 40
    # behaviors flip one way: an observed gap of 0.75, more than a J of 0.3 lets a true gap produce.
    # The raw MOVER-R limits (Newcombe 2016) lie wholly beyond +-1 (about 1.69 to 3.5); truncating
    # them into the parameter space, as Rogan & Gladen (1978) truncate an estimate outside it (and
    # as the corrected rates here are), gives the bound, never low > high (it gave [1.69, 1.0]).
    result = corrected_gap(table, 130, 200, 130, 200)
    bound = math.copysign(1.0, table.gap)
    assert result.gap == bound
    assert result.gap_ci == (bound, bound)
    low, high = mover_ratio_interval(table.gap, result.observed_gap_ci, result.youden, result.youden_ci)
    assert min(abs(low), abs(high)) > 1.5  # the raw interval really is beyond the bound


@pytest.mark.parametrize("args, fragment", [
    ((PairedTable(1, 0, 0, 1), 5, 4, 3, 3), "cannot exceed"),
    ((PairedTable(1, 0, 0, 1), 0, 0, 3, 3), "at least one"),
    ((PairedTable(0, 0, 0, 0), 3, 4, 3, 3), "empty"),
    ((PairedTable(1, 0, 0, 1), -1, 4, 3, 3), "non-negative"),
])
def test_bad_arguments(args, fragment):
    with pytest.raises(ValueError, match=fragment):
        corrected_gap(*args)


@pytest.mark.parametrize("call, fragment", [
    (lambda: rogan_gladen(float("nan"), 0.9, 0.99), "apparent"),  # returned nan
    (lambda: rogan_gladen(0.2, 1.5, 0.99), "sensitivity"),  # returned a number for Se = 1.5
    (lambda: youden_interval(1, 0, 3, 3), "at least one"),  # ZeroDivisionError
    (lambda: rogan_gladen_interval(20, 0, 9, 10, 9, 10), "at least 1"),  # ZeroDivisionError
    (lambda: rogan_gladen_interval(121, 120, 9, 10, 9, 10), "between 0 and n"),  # "math domain error"
    (lambda: rogan_gladen_interval(20, 120, 11, 10, 9, 10), "cannot exceed"),
])
def test_the_public_corrections_refuse_bad_arguments_by_name(call, fragment):
    with pytest.raises(ValueError, match=fragment):
        call()


def test_serialises():
    payload = corrected_gap(PairedTable(40, 12, 25, 123), 70, 76, 75, 80).as_dict()
    assert set(payload) >= {"gap", "gap_ci", "youden", "youden_ci", "refusal_free_ci", "observed_gap_ci"}
    assert isinstance(payload["gap_ci"], list)
