"""A model update against its baseline: run with ``pytest --baseline DIR`` (without it these
tests are not collected). DIR is the results directory of the baseline version (or a run
directory). Both tests are equivalence-style (non-inferiority): they pass only when the
data exclude a regression larger than ``--regression-margin``, so a small n cannot make
them pass. See README, "Model updates in CI".
"""

import pytest


@pytest.mark.evalkit_pairs("treatment")
def test_no_refusal_regression_vs_baseline(evalkit_row, evalkit_baseline):
    outcome = evalkit_baseline(evalkit_row, "no_refusal_regression")
    if not outcome.passed:
        pytest.fail(outcome.message, pytrace=False)


@pytest.mark.evalkit_pairs("treatment")
def test_framing_gap_not_larger_than_baseline(evalkit_row, evalkit_baseline):
    outcome = evalkit_baseline(evalkit_row, "gap_not_larger")
    if not outcome.passed:
        pytest.fail(outcome.message, pytrace=False)
