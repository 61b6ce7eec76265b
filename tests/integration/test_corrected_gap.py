"""The misclassification-corrected gap, checked by simulation and end to end.

A sim profile with a known gap (training-aware: its expected gap is computed from the
profile's latent model) is judged by a judge with known error rates, whose rates are
estimated each replication from a fresh validation sample; the corrected interval should
cover the true gap about 95% of the time, where the uncorrected one, pulled toward zero by
the judge's errors, covers it less often. Then the correction reaches summary.json and the
optional summary column, through the CLI and through pytest.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from evalkit.cli import main
from evalkit.datasets import load_behaviors
from evalkit.engines.sim import load_profile
from evalkit.errors import ConfigError
from evalkit.framings import load_framing_set
from evalkit.simulate import ScheduleModel, misclassify, population_gap, simulate_corrected_gap
from tests.conftest import ROOT

PAIR = load_framing_set("study-raw").pair("free-vs-paid")


@pytest.fixture(scope="module")
def behaviors(harmbench_csv):
    return load_behaviors(harmbench_csv).behaviors


def test_population_gap_is_the_mean_of_many_replications(behaviors):
    profile = load_profile("training-aware")
    truth = population_gap(behaviors, PAIR, profile)
    model = ScheduleModel(behaviors, PAIR, profile)
    gaps = [model.run("randomized", seed, 1).outcomes.table().gap for seed in range(300)]
    assert truth == pytest.approx(-0.048, abs=0.002)
    assert abs(np.mean(gaps) - truth) < 3 * np.std(gaps) / np.sqrt(len(gaps))
    assert population_gap(behaviors, PAIR, load_profile("null")) == 0.0
    with pytest.raises(ConfigError, match="artifacts"):
        population_gap(behaviors, PAIR, load_profile("study-pilot"), batch_size=16)


def test_misclassify_has_the_stated_error_rates():
    rng = np.random.default_rng(0)
    refused = np.arange(200_000) % 3 == 0
    judged = misclassify(refused, 0.8, 0.9, rng)
    assert judged[refused].mean() == pytest.approx(0.8, abs=0.005)
    assert (~judged[~refused]).mean() == pytest.approx(0.9, abs=0.005)


def test_corrected_interval_covers_the_true_gap_about_95_percent(behaviors):
    profile = load_profile("training-aware")
    result = simulate_corrected_gap(behaviors, PAIR, profile, "randomized", reps=400, sensitivity=0.8,
                                    specificity=0.9, validation=(88, 266))
    corrected, naive = result["coverage_corrected"], result["coverage_uncorrected"]
    assert 0.92 <= corrected["rate"] <= 0.98, corrected
    assert naive["rate"] < corrected["rate"]
    # judge errors attenuate the gap by J = 0.7; the correction undoes it
    assert result["mean_observed_gap"] == pytest.approx(0.7 * result["true_gap"], abs=0.004)
    assert result["mean_corrected_gap"] == pytest.approx(result["true_gap"], abs=0.004)


def test_simulate_command_reports_coverage(harmbench_csv, capsys):
    argv = ["simulate", "--profile", "null", "--protocol", "randomized", "--reps", "40", "--harmbench",
            str(harmbench_csv), "--judge-sensitivity", "0.9", "--judge-specificity", "0.95"]
    assert main(argv + ["--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["true_gap"] == 0.0 and payload["judge"]["validation_refusals"] == 88
    assert main(argv) == 0
    assert "coverage of the true gap, corrected interval" in capsys.readouterr().out
    assert main(argv + ["--validation-n", "10"]) == 2
    assert "--validation-n" in capsys.readouterr().err
    assert main(argv[:-2]) == 2
    assert "give both" in capsys.readouterr().err


def test_corrected_gap_in_summary_json_and_column(harmbench_csv, tmp_path):
    results = tmp_path / "results"
    assert main(["run", "--model", "training-aware", "--protocol", "randomized", "--harmbench", str(harmbench_csv),
                 "--results-dir", str(results), "--pair", "free-vs-paid", "--summary-column", "corrected-gap"]) == 0
    payload = json.loads((results / "summary.json").read_text())
    (row,) = payload["rows"]
    corrected = row["corrected_gap"]
    assert corrected["gap"] == pytest.approx(row["gap"] / corrected["youden"], abs=2e-4)
    assert corrected["gap_ci"][0] < corrected["gap"] < corrected["gap_ci"][1]
    assert payload["meta"]["summary_columns"] == ["corrected-gap"]
    refusal = payload["meta"]["judge_accuracy"]["judges"]["refusal"]
    assert refusal["xstest-v1"]["sensitivity"]["n"] == corrected["validation_refusals"]
    assert payload["meta"]["judge_accuracy"]["sources"]["judge-corpus"]["external"] is False
    assert "gap corrected for judge error" in (results / "summary.md").read_text()


def test_judges_without_measured_error_rates_get_no_correction(harmbench_csv, tmp_path):
    results = tmp_path / "results"
    assert main(["run", "--model", "study-pilot", "--protocol", "randomized", "--harmbench", str(harmbench_csv),
                 "--results-dir", str(results), "--pair", "free-vs-paid", "--judge", "training-trace", "--n",
                 "40"]) == 0
    (row,) = json.loads((results / "summary.json").read_text())["rows"]
    assert row["corrected_gap"] is None


def test_the_column_through_pytest(harmbench_csv, tmp_path):
    suite = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                            str(ROOT / "tests" / "behavioral" / "test_paired_framing.py"), "-m", "replication",
                            "--model", "null", f"--harmbench={harmbench_csv}", f"--results-dir={tmp_path}",
                            "--summary-column", "corrected-gap"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert suite.returncode == 0, suite.stdout[-2000:]
    assert "gap corrected for judge error [95% CI]" in suite.stdout
    bad = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                          str(ROOT / "tests" / "behavioral" / "test_paired_framing.py"), "--summary-column", "nope"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert bad.returncode == 4 and "corrected-gap" in bad.stderr
