"""The paired gap corrected for the judge's misclassification.

A judge that does not see the framing errs the same way under both framings
(non-differential misclassification): with sensitivity Se (refusals called refusal) and
specificity Sp (non-refusals not called refusal), an observed refusal rate is
p_obs = Se p + (1 - Sp)(1 - p), so the true rate is Rogan and Gladen's (1978)

    p = (p_obs + Sp - 1) / (Se + Sp - 1) = (p_obs + Sp - 1) / J,     J = Youden's index,

and, the same J dividing both framings, the true gap is the observed gap over J:
dC = dC_obs / J. Judge errors pull the observed gap toward zero by the factor J (and add
discordant pairs, raising the flip rate).

The interval carries two independent uncertainties, the sampling of the paired table
(behaviors) and the estimation of Se and Sp (a separate, human-labelled validation
sample). It is MOVER-R (Donner & Zou 2012; Newcombe 2016, for a numerator of either
sign), the method of variance estimates recovery for a ratio of independently estimated
quantities, applied to dC_obs / J:

- the numerator's limits are the paired gap's own interval (Newcombe's hybrid score
  interval by default), so with Se and Sp known exactly the corrected interval is that
  interval divided by J, with that interval's coverage;
- the denominator's limits are Newcombe's (1998, method 10) hybrid score interval for
  J = Se - (1 - Sp), a difference of two independent binomial proportions;
- the limits for the ratio are the r where MOVER's interval for dC_obs - r J has 0 at
  an end (a generalisation of Fieller's theorem, which it equals when both component
  intervals are symmetric Wald intervals).

Why not the delta method: it is symmetric and inherits the Wald interval's poor coverage
for the few discordant pairs these tables have; MOVER keeps the score intervals' behaviour
and is closed-form and deterministic (no bootstrap seed). Coverage is checked by
simulation (``evalkit simulate --judge-sensitivity``; tests/integration/test_corrected_gap.py).
When J's lower limit is not above 0 the judge cannot be told from a coin and the interval
is unbounded: None, never a made-up number.

The corrected refusal rates use Rogan and Gladen's estimator with their delta-method
variance, which adds the variance of Se and Sp: Var = [p_obs(1 - p_obs)/n + p^2 Se(1 - Se)/m1
+ (1 - p)^2 Sp(1 - Sp)/m0] / J^2; estimates and limits are truncated to [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._change import mover_difference
from ._checks import check_alpha, check_count, check_probability
from ._intervals import Interval, gap_interval, wilson_interval
from ._scipy import optimize, stats
from ._serialise import fields_as_json
from ._table import PairedTable


def rogan_gladen(apparent: float, sensitivity: float, specificity: float) -> float:
    """Rogan and Gladen's (1978) true prevalence from an apparent one (not truncated)."""
    apparent = check_probability(apparent, "apparent")
    sensitivity = check_probability(sensitivity, "sensitivity")
    specificity = check_probability(specificity, "specificity")
    youden = sensitivity + specificity - 1.0
    if youden <= 0.0:
        raise ValueError(f"sensitivity + specificity must exceed 1 (Youden's J = {youden:.4g} <= 0)")
    return (apparent + specificity - 1.0) / youden


def newcombe_difference_interval(x1: int, n1: int, x2: int, n2: int, alpha: float = 0.05) -> Interval:
    """Newcombe's (1998, method 10) hybrid score interval for p1 - p2 of two independent
    binomial proportions: square-and-add of the two Wilson intervals."""
    for name, value in (("x1", x1), ("n1", n1), ("x2", x2), ("n2", n2)):
        check_count(value, name)
    if n1 == 0 or n2 == 0:
        raise ValueError("both samples need at least one observation")
    low, high = mover_difference(x1 / n1, wilson_interval(x1, n1, alpha), x2 / n2, wilson_interval(x2, n2, alpha))
    return max(-1.0, low), min(1.0, high)


def youden_interval(sensitivity_successes: int, refusals: int, specificity_successes: int, compliance: int,
                    alpha: float = 0.05) -> tuple[float, Interval]:
    """(J, its interval): J = Se - (1 - Sp), a difference of independent proportions."""
    _check_validation_counts(sensitivity_successes, refusals, specificity_successes, compliance)
    estimate = sensitivity_successes / refusals + specificity_successes / compliance - 1.0
    return estimate, newcombe_difference_interval(sensitivity_successes, refusals,
                                                  compliance - specificity_successes, compliance, alpha)


def _check_validation_counts(sensitivity_successes: int, refusals: int, specificity_successes: int,
                             compliance: int) -> None:
    for name, value in (("sensitivity_successes", sensitivity_successes), ("refusals", refusals),
                        ("specificity_successes", specificity_successes), ("compliance", compliance)):
        check_count(value, name)
    if refusals == 0 or compliance == 0:
        raise ValueError("the judge's error rates need at least one human refusal and one human compliance")
    if sensitivity_successes > refusals or specificity_successes > compliance:
        raise ValueError("successes cannot exceed the validation counts")


def mover_ratio_interval(numerator: float, numerator_ci: Interval, denominator: float,
                         denominator_ci: Interval) -> Interval | None:
    """MOVER-R limits for numerator / denominator, independently estimated, the denominator
    positive; the numerator and its limits may take either sign (Newcombe 2016). None when
    the denominator's lower limit is not above 0 (the ratio is unbounded)."""
    l1, u1 = numerator_ci
    l2, u2 = denominator_ci
    if not (l1 <= numerator <= u1 and l2 <= denominator <= u2):
        raise ValueError("each estimate must lie within its interval")
    if l2 <= 0.0:
        return None
    if l2 == u2:  # a known denominator: the numerator's interval, rescaled
        return l1 / denominator, u1 / denominator

    def lower_limit_of_difference(r: float) -> float:
        # MOVER for D(r) = numerator - r * denominator: its lower limit; r * denominator's upper
        # limit is r * u2 for r >= 0 and r * l2 below 0
        spread = (u2 - denominator) if r >= 0 else (denominator - l2)
        return numerator - r * denominator - math.hypot(numerator - l1, r * spread)

    def upper_limit_of_difference(r: float) -> float:
        spread = (denominator - l2) if r >= 0 else (u2 - denominator)
        return numerator - r * denominator + math.hypot(u1 - numerator, r * spread)

    estimate = numerator / denominator
    scale = max(1.0, abs(estimate), abs(l1), abs(u1)) / l2
    low = _root_below(lower_limit_of_difference, estimate, scale)
    high = _root_above(upper_limit_of_difference, estimate, scale)
    return low, high


def _root_below(f: Callable[[float], float], start: float, scale: float) -> float:
    """The root of the decreasing-through-zero f below ``start`` (f(start) <= 0)."""
    if f(start) >= 0.0:
        return start
    step = scale
    while f(start - step) <= 0.0:
        step *= 2.0
    return float(optimize.brentq(f, start - step, start, xtol=1e-14, rtol=1e-13))


def _root_above(f: Callable[[float], float], start: float, scale: float) -> float:
    if f(start) <= 0.0:
        return start
    step = scale
    while f(start + step) >= 0.0:
        step *= 2.0
    return float(optimize.brentq(f, start, start + step, xtol=1e-14, rtol=1e-13))


def rogan_gladen_interval(positives: int, n: int, sensitivity_successes: int, refusals: int,
                          specificity_successes: int, compliance: int, alpha: float = 0.05
                          ) -> tuple[float, Interval]:
    """Rogan-Gladen estimate and delta-method interval (their 1978 variance, adding the
    variances of Se and Sp estimated from ``refusals`` and ``compliance`` validation items),
    truncated to [0, 1]."""
    _check_validation_counts(sensitivity_successes, refusals, specificity_successes, compliance)
    if check_count(n, "n") == 0 or check_count(positives, "positives") > n:
        raise ValueError(f"positives must be between 0 and n, and n at least 1: got {positives} of {n}")
    z = float(stats.norm.ppf(1.0 - check_alpha(alpha) / 2.0))
    apparent = positives / n
    se, sp = sensitivity_successes / refusals, specificity_successes / compliance
    youden = se + sp - 1.0
    estimate = rogan_gladen(apparent, se, sp)
    variance = (apparent * (1 - apparent) / n + estimate ** 2 * se * (1 - se) / refusals
                + (1 - estimate) ** 2 * sp * (1 - sp) / compliance) / youden ** 2
    half = z * math.sqrt(variance)

    def clip(v: float) -> float:
        return min(1.0, max(0.0, v))

    return clip(estimate), (clip(estimate - half), clip(estimate + half))


@dataclass(frozen=True)
class CorrectedGap:
    """The paired refusal rates and gap corrected for the judge's error rates.

    ``gap_ci`` is None when the judge's Youden index is not bounded away from 0 (the
    correction is then unbounded). ``attenuation`` is J: the factor by which judge errors
    shrink a true gap."""

    sensitivity: float
    specificity: float
    youden: float
    youden_ci: Interval
    validation_refusals: int
    validation_compliance: int
    refusal_free: float | None
    refusal_free_ci: Interval | None
    refusal_paid: float | None
    refusal_paid_ci: Interval | None
    observed_gap: float
    observed_gap_ci: Interval
    gap: float | None
    gap_ci: Interval | None
    ci_method: str
    method: str = "MOVER-R: observed gap interval / Newcombe hybrid score interval of Youden's J"

    @property
    def attenuation(self) -> float:
        return self.youden

    def as_dict(self) -> dict[str, Any]:
        return fields_as_json(self)


def _within_gap_range(value: float) -> float:
    return max(-1.0, min(1.0, value))


def corrected_gap(table: PairedTable, sensitivity_successes: int, refusals: int, specificity_successes: int,
                  compliance: int, ci_method: str = "newcombe", alpha: float = 0.05) -> CorrectedGap:
    """Correct the paired table's refusal rates and gap for a judge whose sensitivity and
    specificity were measured on ``refusals`` and ``compliance`` human-labelled responses
    (``*_successes`` of them judged right). See the module docstring."""
    _check_validation_counts(sensitivity_successes, refusals, specificity_successes, compliance)
    if table.n == 0:
        raise ValueError("cannot correct an empty paired table (n = 0)")
    alpha = check_alpha(alpha)
    se, sp = sensitivity_successes / refusals, specificity_successes / compliance
    youden, youden_ci = youden_interval(sensitivity_successes, refusals, specificity_successes, compliance, alpha)
    observed_ci = gap_interval(table, ci_method, alpha)
    gap = gap_ci = None
    rates: dict[str, tuple[float, Interval] | tuple[None, None]] = {"free": (None, None), "paid": (None, None)}
    if youden > 0.0:
        gap = _within_gap_range(table.gap / youden)
        interval = mover_ratio_interval(table.gap, observed_ci, youden, youden_ci)
        # each limit truncated into [-1, 1], as the estimate is: an interval wholly beyond a bound (an
        # observed gap larger than J allows) becomes that bound, never an inverted interval
        gap_ci = None if interval is None else (_within_gap_range(interval[0]), _within_gap_range(interval[1]))
        for slot, positives in (("free", table.a + table.b), ("paid", table.a + table.c)):
            rates[slot] = rogan_gladen_interval(positives, table.n, sensitivity_successes, refusals,
                                                specificity_successes, compliance, alpha)
    return CorrectedGap(se, sp, youden, youden_ci, refusals, compliance, rates["free"][0], rates["free"][1],
                        rates["paid"][0], rates["paid"][1], table.gap, observed_ci, gap, gap_ci, ci_method)
