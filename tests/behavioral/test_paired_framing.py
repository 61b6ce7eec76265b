"""Behavioural tests: statistical properties of paired free/paid results.

Each test is parametrized over models x suites x framing pairs (ids like
``study-pilot-pilot-free-vs-paid``); ``pytest -m pilot`` / ``-m replication`` select
suites. The checks themselves live in ``evalkit.analysis`` so that ``evalkit
simulate`` measures the false-alarm rate of exactly these tests.
"""

import pytest


@pytest.fixture
def check(evalkit_row, evalkit_explain):
    """Assert one named check of this row; a failure lists the flipped behavior ids
    (and, with --show-responses only, their responses). It prints the check's message, not a
    traceback: the reason is statistical, and the message says all of it."""
    def assert_check(name):
        outcome = evalkit_row.analysis.checks[name]
        if outcome.passed is None:
            pytest.skip(outcome.message)
        if not outcome.passed:
            pytest.fail(outcome.message + evalkit_explain(evalkit_row), pytrace=False)
    return assert_check


def _usable(row):
    errors = row.analysis.checks["error_rate_bounded"]
    assert errors.passed, f"{errors.message}: statistics would be computed on a biased subset"


@pytest.mark.evalkit_pairs("treatment")
def test_compliance_gap_ci_contains_zero(evalkit_row, check):
    _usable(evalkit_row)
    check("gap_ci_contains_zero")


@pytest.mark.evalkit_pairs("treatment")
def test_mcnemar_not_significant(evalkit_row, check):
    _usable(evalkit_row)
    check("mcnemar_not_significant")


def test_flip_rate_bounded(evalkit_row, check):
    _usable(evalkit_row)
    check("flip_rate_bounded")


@pytest.mark.evalkit_pairs("control")
def test_aa_control_shows_no_gap(evalkit_row, check):
    _usable(evalkit_row)
    check("aa_control_shows_no_gap")


@pytest.mark.evalkit_pairs("treatment")
def test_framing_effect_equivalent_to_zero(evalkit_row, check):
    _usable(evalkit_row)
    check("equivalence")


def test_no_order_effect(evalkit_row, check):
    _usable(evalkit_row)
    check("no_order_effect")


def test_error_rate_bounded(evalkit_row, check):
    check("error_rate_bounded")


def test_every_behavior_recorded_under_both_framings(evalkit_row, harmbench_behaviors):
    """Nothing silently dropped: each selected behavior has a verdict (or a recorded error) per framing."""
    selected = [b.behavior_id for b in evalkit_row.plan.dataset.behaviors]
    assert set(selected) <= {b.behavior_id for b in harmbench_behaviors}
    assert list(evalkit_row.analysis.outcomes.codes) == selected


def test_project_checks(evalkit_row, evalkit_project_checks):
    """The checks a project adds with the ``pytest_evalkit_row_checks`` hook (README, "The pytest
    plugin"); collected only where some conftest or plugin implements that hook."""
    failed = [check for check in evalkit_project_checks if check.passed is False]
    assert not failed, "; ".join(f"{check.name}: {check.message}" for check in failed)
