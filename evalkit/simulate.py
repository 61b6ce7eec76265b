"""Operating characteristics: how often each behavioural test fails on a sim profile.

``simulate`` replays R independent replications of a protocol (replication r uses seed
``base_seed + r``: a fresh draw of the profile's latent propensities and of the order
randomization, as a new run with ``--seed`` would be). On a null profile the failure
rate of a test is its false-alarm rate; on an effect profile it is its detection rate.
This is how a user picks n and a protocol before spending GPU hours.

It is fast because it skips text: it asks the sim engine's own core (``sim.SimCore``) to
decide whole schedules at once, the decisions the engine renders into text request by
request. The tests
are the suite's own checks (``analysis.analyse``), so these rates are the rates of the
real behavioural tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import analysis
from .datasets import Behavior
from .engines.sim import SimCore, SimProfile, is_private, key64, seen_before
from .errors import ConfigError
from .framings import FramingPair
from .judges import COMPLIANCE, ERROR, REFUSAL
from .protocols import FREE_FIRST, PAID_FIRST, order_protocol
from .stats import wilson_interval

# test name -> the check it runs (for control pairs the gap/McNemar pair is the A/A test)
TESTS = ("gap_ci_contains_zero", "mcnemar_not_significant", "flip_rate_bounded", "equivalence", "no_order_effect",
         "error_rate_bounded")


@dataclass(frozen=True)
class SimulatedRun:
    """The paired outcomes of one simulated replication."""

    seed: int
    outcomes: analysis.PairedOutcomes


class ScheduleModel:
    """Everything about (behaviors, framing pair) that does not change between replications."""

    def __init__(self, behaviors: Sequence[Behavior], pair: FramingPair, profile: SimProfile) -> None:
        self.behaviors = list(behaviors)
        self.profile = profile
        self.behavior_ids = tuple(b.behavior_id for b in behaviors)
        self.behavior_keys = np.array([key64(b.behavior_id) for b in behaviors], dtype=np.uint64)
        self.offsets = np.array([profile.category_offsets.get(b.semantic_category, 0.0) for b in behaviors])
        texts = {slot: [framing.render(b).flat() for b in behaviors] for slot, framing in
                 (("free", pair.free), ("paid", pair.paid))}
        self.prompt_keys = {slot: np.array([key64(t) for t in texts[slot]], dtype=np.uint64) for slot in texts}
        self.private = {slot: np.array([is_private(profile, t) for t in texts[slot]]) for slot in texts}

    def run(self, protocol: str, seed: int, batch_size: int) -> SimulatedRun:
        n = len(self.behaviors)
        layout = order_protocol(protocol).layout(self.behaviors, seed)  # the same layout as build_schedule's
        order_behavior = np.array(layout.behavior, dtype=np.intp)
        order_is_free = np.array(layout.is_free, dtype=bool)
        free_first = np.array(layout.free_first, dtype=bool)
        prompt_keys = np.where(order_is_free, self.prompt_keys["free"][order_behavior],
                               self.prompt_keys["paid"][order_behavior])
        private = np.where(order_is_free, self.private["free"][order_behavior], self.private["paid"][order_behavior])
        batch = [index // batch_size for index in range(2 * n)]
        # a fresh run: nothing answered before it (the engine is reset between runs)
        seen = seen_before(layout.behavior, batch, self.profile.state_scope == "session", set())
        failed, refused = SimCore(self.profile, seed).decide(
            self.behavior_keys[order_behavior], self.offsets[order_behavior], private, seen, prompt_keys,
            np.arange(0, 2 * n, batch_size))
        labels = np.where(failed, ERROR, np.where(refused, REFUSAL, COMPLIANCE))
        free_labels = np.empty(n, dtype=object)
        paid_labels = np.empty(n, dtype=object)
        free_labels[order_behavior[order_is_free]] = labels[order_is_free]
        paid_labels[order_behavior[~order_is_free]] = labels[~order_is_free]
        sequences = tuple(FREE_FIRST if f else PAID_FIRST for f in free_first)
        outcomes = analysis.PairedOutcomes(self.behavior_ids, tuple(free_labels), tuple(paid_labels), sequences,
                                           2 * n, int(failed.sum()))
        return SimulatedRun(seed, outcomes)


def simulate(behaviors: Sequence[Behavior], pair: FramingPair, profile: SimProfile, protocol: str, reps: int,
             batch_size: int = 1, base_seed: int = 0,
             thresholds: analysis.Thresholds = analysis.Thresholds()) -> dict[str, Any]:
    """Failure rate (with a Wilson 95% interval) of each behavioural test over ``reps`` replications,
    how often it was skipped (an inconclusive equivalence test is reported, not failed), and how
    often the row as a whole failed (any of its tests: its cell in README's outcome matrix)."""
    order_protocol(protocol)  # unknown: ConfigError naming --protocol
    if reps < 1:
        raise ConfigError(f"must be at least 1, got {reps}", option="--reps")
    if batch_size < 1:
        raise ConfigError(f"must be at least 1, got {batch_size}", option="--batch-size")
    model = ScheduleModel(behaviors, pair, profile)
    order_varies = order_protocol(protocol).order_varies
    failures = {name: 0 for name in TESTS}
    skipped = {name: 0 for name in TESTS}  # None: not applicable, or (equivalence) inconclusive
    # the row's cell in README's outcome matrix: does any of its behavioural tests fail?
    # (control pairs run no equivalence test)
    row_tests = tuple(name for name in TESTS if not (pair.is_control and name == "equivalence"))
    row_failures = 0
    gaps = []
    for rep in range(reps):
        outcomes = model.run(protocol, base_seed + rep, batch_size).outcomes
        row = analysis.analyse(outcomes, thresholds, order_varies=order_varies, with_power=False)
        if row.result is not None:  # None: every pair lost to errors (the error test fails)
            gaps.append(row.result.gap)
        row_failed = False
        for name in TESTS:
            check_name = "aa_control_shows_no_gap" if pair.is_control and name in (
                "gap_ci_contains_zero", "mcnemar_not_significant") else name
            passed = row.checks[check_name].passed
            if passed is None:
                skipped[name] += 1
                continue
            failures[name] += not passed
            row_failed |= name in row_tests and not passed
        row_failures += row_failed
    tests = {}
    for name in TESTS:
        if skipped[name] == reps:
            continue  # e.g. no_order_effect under a fixed order: not applicable, not reported
        low, high = wilson_interval(failures[name], reps)
        tests[name] = {"fail_rate": failures[name] / reps, "fail_rate_ci": [low, high], "failures": failures[name],
                       "skipped": skipped[name], "reps": reps}
    low, high = wilson_interval(row_failures, reps)
    return {"profile": profile.id, "protocol": protocol, "pair": pair.id, "n": len(behaviors), "reps": reps,
            "batch_size": batch_size, "base_seed": base_seed,
            "mean_gap": float(np.mean(gaps)) if gaps else None,
            "sd_gap": float(np.std(gaps, ddof=1)) if len(gaps) > 1 else 0.0, "tests": tests,
            "row": {"tests": list(row_tests), "fail_rate": row_failures / reps, "fail_rate_ci": [low, high],
                    "failures": row_failures},
            "thresholds": {"alpha": thresholds.alpha, "max_flip_rate": thresholds.max_flip_rate,
                           "max_error_rate": thresholds.max_error_rate,
                           "equivalence_margin": thresholds.equivalence_margin, "ci_method": thresholds.ci_method,
                           "require_equivalence": thresholds.require_equivalence}}


# ---------------------------------------------------------------- judge error and the corrected gap


def population_gap(behaviors: Sequence[Behavior], pair: FramingPair, profile: SimProfile,
                   batch_size: int = 1) -> float:
    """The profile's true gap: the expected refusal probability under the paid framing minus
    under the free one, averaged over the behaviors (latent propensity and wording noise
    integrated out: each is normal, so P(refuse) = Phi(mean / sqrt(spread^2 + noise^2))).
    Defined for runs without state or batch artifacts, where that expectation is the estimand."""
    from scipy.stats import norm

    if (profile.state_shift and (profile.state_scope == "session" or batch_size > 1)) or \
            (profile.batch_noise and batch_size > 1):
        raise ConfigError(f"profile {profile.id!r} has state or batch artifacts at batch size {batch_size}: its "
                          "expected gap is not a property of the framing alone", option="--profile")
    model = ScheduleModel(behaviors, pair, profile)
    scale = float(np.hypot(profile.spread, profile.content_noise))
    rates = {slot: norm.cdf((profile.base + model.offsets + profile.framing_shift * model.private[slot]) / scale)
             for slot in ("free", "paid")}
    return float(np.mean(rates["paid"] - rates["free"]))


def misclassify(refused: np.ndarray, sensitivity: float, specificity: float, rng: np.random.Generator) -> np.ndarray:
    """A judge with known error rates: a refusal is called refusal with probability
    ``sensitivity``, anything else with probability 1 - ``specificity``, independently of the
    framing (non-differential errors)."""
    draws = rng.random(refused.shape)
    return np.where(refused, draws < sensitivity, draws >= specificity)


def simulate_corrected_gap(behaviors: Sequence[Behavior], pair: FramingPair, profile: SimProfile, protocol: str,
                           reps: int, sensitivity: float, specificity: float, validation: tuple[int, int],
                           batch_size: int = 1, base_seed: int = 0, alpha: float = 0.05,
                           ci_method: str = "newcombe") -> dict[str, Any]:
    """Coverage of the misclassification-corrected gap interval (and of the uncorrected one)
    for the profile's true gap, when a judge with the given error rates judges each
    replication and its rates are estimated from a fresh validation sample of
    ``validation`` = (human refusals, human compliant responses) per replication."""
    from .stats import PairedTable, corrected_gap

    order_protocol(protocol)  # unknown: ConfigError naming --protocol
    if reps < 1:
        raise ConfigError(f"must be at least 1, got {reps}", option="--reps")
    refusals, compliance = validation
    if refusals < 1 or compliance < 1:
        raise ConfigError(f"needs at least one of each, got {refusals},{compliance}", option="--validation-n")
    truth = population_gap(behaviors, pair, profile, batch_size)
    model = ScheduleModel(behaviors, pair, profile)
    covered = naive_covered = unbounded = 0
    corrected, observed, true_sample = [], [], []
    for rep in range(reps):
        seed = base_seed + rep
        outcomes = model.run(protocol, seed, batch_size).outcomes
        keep = outcomes.usable()
        free = np.array([outcomes.free_labels[i] == REFUSAL for i in keep])
        paid = np.array([outcomes.paid_labels[i] == REFUSAL for i in keep])
        rng = np.random.default_rng([seed, key64("judge-error") & 0xFFFFFFFF])
        table = PairedTable.from_verdicts(misclassify(free, sensitivity, specificity, rng),
                                          misclassify(paid, sensitivity, specificity, rng))
        found, kept = int(rng.binomial(refusals, sensitivity)), int(rng.binomial(compliance, specificity))
        result = corrected_gap(table, found, refusals, kept, compliance, ci_method, alpha)
        true_sample.append(float(paid.mean() - free.mean()))
        observed.append(result.observed_gap)
        naive_covered += result.observed_gap_ci[0] <= truth <= result.observed_gap_ci[1]
        if result.gap_ci is None:
            unbounded += 1  # an unbounded interval covers everything
            covered += 1
            continue
        corrected.append(result.gap)
        covered += result.gap_ci[0] <= truth <= result.gap_ci[1]

    def rate(count: int) -> dict[str, Any]:
        low, high = wilson_interval(count, reps)
        return {"rate": count / reps, "wilson_ci": [low, high], "count": count, "reps": reps}

    return {"profile": profile.id, "protocol": protocol, "pair": pair.id, "n": len(behaviors), "reps": reps,
            "batch_size": batch_size, "base_seed": base_seed, "true_gap": truth,
            "judge": {"sensitivity": sensitivity, "specificity": specificity, "youden": sensitivity + specificity - 1,
                      "validation_refusals": refusals, "validation_compliance": compliance},
            "mean_true_gap_in_sample": float(np.mean(true_sample)), "mean_observed_gap": float(np.mean(observed)),
            "mean_corrected_gap": float(np.mean(corrected)) if corrected else None,
            "coverage_corrected": rate(covered), "coverage_uncorrected": rate(naive_covered),
            "unbounded": unbounded, "alpha": alpha, "ci_method": ci_method}
