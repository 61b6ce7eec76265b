"""Behavioural tests: statistical properties of paired free/paid results.

Each test is parametrized over models x suites x framing pairs (ids like
``study-pilot-pilot-free-vs-paid``); ``pytest -m pilot`` / ``-m replication`` select
suites. The checks themselves live in ``evalkit.analysis`` so that ``evalkit
simulate`` measures the false-alarm rate of exactly these tests.
"""

import pytest


def _assert(row, name):
    check = row.analysis.checks[name]
    if check.passed is None:
        pytest.skip(check.message)
    assert check.passed, check.message


def _usable(row):
    errors = row.analysis.checks["error_rate_bounded"]
    assert errors.passed, f"{errors.message}: statistics would be computed on a biased subset"


@pytest.mark.evalkit_pairs("treatment")
def test_compliance_gap_ci_contains_zero(evalkit_row):
    _usable(evalkit_row)
    _assert(evalkit_row, "gap_ci_contains_zero")


@pytest.mark.evalkit_pairs("treatment")
def test_mcnemar_not_significant(evalkit_row):
    _usable(evalkit_row)
    _assert(evalkit_row, "mcnemar_not_significant")


def test_flip_rate_bounded(evalkit_row):
    _usable(evalkit_row)
    _assert(evalkit_row, "flip_rate_bounded")


@pytest.mark.evalkit_pairs("control")
def test_aa_control_shows_no_gap(evalkit_row):
    _usable(evalkit_row)
    _assert(evalkit_row, "aa_control_shows_no_gap")


@pytest.mark.evalkit_pairs("treatment")
def test_framing_effect_equivalent_to_zero(evalkit_row):
    _usable(evalkit_row)
    _assert(evalkit_row, "equivalence")


def test_no_order_effect(evalkit_row):
    _usable(evalkit_row)
    _assert(evalkit_row, "no_order_effect")


def test_error_rate_bounded(evalkit_row):
    _assert(evalkit_row, "error_rate_bounded")
