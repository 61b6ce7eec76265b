"""`evalkit simulate`: the operating characteristics of the behavioural tests."""

import json
import subprocess
import sys

import pytest


def simulate(harmbench_csv, *args):
    out = subprocess.run([sys.executable, "-m", "evalkit.cli", "simulate", "--harmbench", str(harmbench_csv),
                          "--json", *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_json_shape(harmbench_csv):
    result = simulate(harmbench_csv, "--profile", "null", "--protocol", "randomized", "--n", "100", "--reps", "20")
    assert (result["profile"], result["protocol"], result["n"], result["reps"]) == ("null", "randomized", 100, 20)
    for name in ("gap_ci_contains_zero", "mcnemar_not_significant", "flip_rate_bounded", "equivalence",
                 "no_order_effect"):
        rate = result["tests"][name]
        low, high = rate["fail_rate_ci"]
        assert 0 <= low <= rate["fail_rate"] <= high <= 1
    fixed = simulate(harmbench_csv, "--profile", "null", "--protocol", "fixed", "--n", "100", "--reps", "5")
    assert "no_order_effect" not in fixed["tests"]  # orders do not vary: not applicable


@pytest.mark.parametrize("args", [("--protocol", "fixed", "--n", "20"), ("--suite", "pilot")])
def test_batch_size_zero_is_refused_by_name(harmbench_csv, args):
    # 0 silently became the suite's batch size (or 1) and the simulation ran
    out = subprocess.run([sys.executable, "-m", "evalkit.cli", "simulate", "--harmbench", str(harmbench_csv),
                          "--profile", "null", "--reps", "1", "--batch-size", "0", *args],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == "evalkit: error: option --batch-size: must be at least 1, got 0\n"


@pytest.mark.slow
def test_operating_characteristics(harmbench_csv):
    null = simulate(harmbench_csv, "--profile", "null", "--protocol", "randomized", "--reps", "200")
    for name in ("gap_ci_contains_zero", "mcnemar_not_significant"):
        assert null["tests"][name]["fail_rate_ci"][0] <= 0.05  # false alarms at most 5% + simulation error
    pilot = simulate(harmbench_csv, "--profile", "study-pilot", "--protocol", "fixed", "--n", "200",
                     "--batch-size", "16", "--reps", "200")
    assert pilot["tests"]["gap_ci_contains_zero"]["fail_rate"] > 0.5  # the fixed order raises a false alarm
    assert pilot["tests"]["mcnemar_not_significant"]["fail_rate"] > 0.5
    for batch_size in ("1", "16"):
        randomized = simulate(harmbench_csv, "--profile", "study-pilot", "--protocol", "randomized",
                              "--batch-size", batch_size, "--reps", "200")
        assert randomized["tests"]["gap_ci_contains_zero"]["fail_rate_ci"][0] <= 0.05  # randomized: no bias
    aware = simulate(harmbench_csv, "--profile", "training-aware", "--protocol", "randomized", "--n", "400",
                     "--reps", "200")
    assert aware["tests"]["gap_ci_contains_zero"]["fail_rate"] >= 0.8  # detected in at least 80% of runs
    assert aware["tests"]["mcnemar_not_significant"]["fail_rate"] >= 0.8
