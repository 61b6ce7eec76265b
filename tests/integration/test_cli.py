"""The `evalkit` command, run as a real subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def evalkit(*args, env=None, check=False, **kwargs):
    full_env = {**os.environ, **(env or {})}
    result = subprocess.run([sys.executable, "-m", "evalkit.cli", *args], capture_output=True, text=True,
                            env=full_env, timeout=300, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def test_stats_paired_reproduces_the_study_pilot():
    out = json.loads(evalkit("stats", "paired", "--table", "16,20,7,157", "--json", check=True).stdout)
    assert (out["n"], out["a"], out["b"], out["c"], out["d"]) == (200, 16, 20, 7, 157)
    assert out["gap"] == pytest.approx(-0.065)
    assert out["refusal_free"] == pytest.approx(0.18) and out["refusal_paid"] == pytest.approx(0.115)
    assert out["mcnemar_chi2_cc"] == pytest.approx(16 / 3, abs=5e-4)  # (|20-7|-1)^2 / 27 = 5.333
    assert round(out["mcnemar_chi2_cc_p"], 4) == 0.0209
    assert out["flip_rate"] == pytest.approx(27 / 200)
    low, high = out["gap_ci"]
    assert low < -0.065 < high < 0
    for key in ("flip_rate_ci", "mcnemar_exact_p", "mcnemar_midp", "mcnemar_chi2", "mcnemar_chi2_p", "ci_method",
                "min_detectable_gap"):
        assert key in out


@pytest.mark.parametrize("table", ["1,2,3", "a,b,c,d", "0,0,0,0", "1,-2,3,4",
                                   # the exact power needs memory linear in n: 10^20 would ask for exabytes
                                   "99999999999999999999,1,1,1", "10000000,0,0,1"])
def test_stats_paired_rejects_bad_tables(table):
    result = evalkit("stats", "paired", "--table", table, "--json")
    assert result.returncode == 2 and "--table" in result.stderr and result.stdout == ""
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1


def test_run_writes_a_run_directory_and_prints_the_summary(harmbench_csv, tmp_path):
    results = tmp_path / "results"
    args = ("run", "--engine", "sim", "--model", "study-pilot", "--protocol", "fixed", "--n", "200",
            "--batch-size", "16", "--framings", "study-raw", "--seed", "0", "--results-dir", str(results),
            "--harmbench", str(harmbench_csv), "--pair", "free-vs-paid")
    first = evalkit(*args, check=True)
    assert "study-pilot" in first.stdout and "free-vs-paid" in first.stdout and "(new," in first.stderr
    runs = [p for p in (results / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 1 and (runs[0] / "manifest.json").exists()
    summary = json.loads((results / "summary.json").read_text())
    row = summary["rows"][0]
    assert (row["b"], row["c"], row["n"]) == (20, 7, 200)  # the study's pilot table, from the sim
    second = evalkit(*args, check=True)
    assert "(reused, 0 generated)" in second.stderr
    assert "[Start of Answer]" not in first.stdout + first.stderr + second.stdout  # no responses in the terminal


@pytest.mark.parametrize("args, fragment", [
    (("--engine", "warp"), "option --engine: unknown engine 'warp'"),
    (("--model", "gpt-5"), "option --model: unknown sim profile 'gpt-5'"),
    (("--protocol", "zigzag"), "option --protocol: unknown protocol 'zigzag'"),
    (("--framings", "nope"), "option --framings: unknown framing set 'nope'"),
    (("--n", "0"), "option --n: must be at least 1"),
    (("--n", "5000"), "asked for the first 5000 behaviors"),
    (("--batch-size", "0"), "option --batch-size: must be at least 1"),
    (("--max-tokens", "0"), "option --max-tokens: must be at least 1, got 0"),  # not the default 128
    (("--max-flip-rate", "1.5"), "option --max-flip-rate: 1.5 is outside [0.0, 1.0]"),
    (("--judge", "oracle"), "option --judge: unknown judge 'oracle'"),
    (("--base-url", "http://127.0.0.1:1/v1"), "option --base-url: applies to engine openai, not sim"),
    (("--dtype", "float32"), "option --dtype: applies to engine vllm or modal, not sim"),
    (("--pair", "nope"), "no framing pair 'nope'"),
    (("--framings", "FIXTURES/framings/broken.toml"), "broken.toml: invalid TOML"),
    (("--harmbench", "FIXTURES/behaviors/duplicate_id.csv"), "duplicate_id.csv, row 4, column 'BehaviorID'"),
    (("--engine", "openai"), "option --model: --model is required with --engine openai"),
    # an empty value (an unset variable in a CI script) silently ran the default sim models
    (("--model", ""), "option --model: expected a model, ALIAS=MODEL or ALIAS=ENGINE:MODEL, got an empty value"),
    (("--engine", ""), "option --engine: empty value"),
    (("--judge", ""), "option --judge: empty value"),
    (("--framings", ""), "option --framings: empty value"),
    (("--models-file", ""), "option --models-file: empty value"),
    # checked at boot, after the run's lock file was written; nan was accepted
    (("--engine", "openai", "--model", "m", "--base-url", "http://127.0.0.1:1/v1", "--concurrency", "0"),
     "option --concurrency: must be at least 1, got 0"),
    (("--engine", "openai", "--model", "m", "--base-url", "http://127.0.0.1:1/v1", "--request-timeout", "nan"),
     "option --request-timeout: expected a finite number, got nan"),
    (("--engine", "openai", "--model", "m", "--base-url", "http://127.0.0.1:1/v1", "--retry-backoff", "inf"),
     "option --retry-backoff: expected a finite number, got inf"),
])
def test_run_rejects_bad_input_before_anything_is_written(args, fragment, harmbench_csv, tmp_path):
    results = tmp_path / "results"
    args = tuple(a.replace("FIXTURES", str(ROOT / "fixtures")) for a in args)
    if "--harmbench" not in args:
        args = ("--harmbench", str(harmbench_csv), *args)
    result = evalkit("run", "--results-dir", str(results), *args)
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr and "Traceback" not in result.stderr
    assert not results.exists()  # not even an empty results/runs/ (--n 5000 left one)


def test_run_refuses_a_second_model_instead_of_running_only_the_last(harmbench_csv, tmp_path):
    # `--model null --model training-aware` ran training-aware alone, silently
    result = evalkit("run", "--model", "null", "--model", "training-aware", "--harmbench", str(harmbench_csv),
                     "--results-dir", str(tmp_path / "results"))
    assert result.returncode == 2 and "argument --model: given twice" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "results").exists()


def test_results_dir_that_is_a_file_is_refused(harmbench_csv, tmp_path):
    blocker = tmp_path / "taken"
    blocker.write_text("a file")
    result = evalkit("run", "--results-dir", str(blocker / "results"), "--harmbench", str(harmbench_csv))
    assert result.returncode == 2 and "is not writable" in result.stderr


def test_pytest_suite_refuses_bad_options_before_running(tmp_path, harmbench_csv):
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                             str(ROOT / "tests" / "behavioral"), "--model=gpt-5", f"--harmbench={harmbench_csv}",
                             f"--results-dir={tmp_path / 'results'}"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 4
    assert "unknown sim profile 'gpt-5'" in result.stdout + result.stderr
    assert not (tmp_path / "results" / "runs").exists() or not any((tmp_path / "results" / "runs").iterdir())


def test_a_run_whose_every_request_failed_reports_errors_not_statistics(harmbench_csv, tmp_path):
    results = tmp_path / "results"
    out = evalkit("run", "--model", str(ROOT / "fixtures" / "profiles" / "down.toml"), "--protocol", "randomized",
                  "--n", "10", "--pair", "free-vs-paid", "--harmbench", str(harmbench_csv),
                  "--results-dir", str(results), check=True)
    row = json.loads((results / "summary.json").read_text())["rows"][0]
    assert (row["n"], row["errors"]) == (0, 20)
    assert row["verdict"] == "errors: too many failed requests"
    assert row["checks"]["error_rate_bounded"] is False and "gap" not in row
    assert "errors: too many failed requests" in out.stdout


def test_rerun_from_the_manifest_alone_and_refuse_a_changed_spec(harmbench_csv, tmp_path):
    framings = tmp_path / "my-framings.toml"
    framings.write_text((ROOT / "evalkit" / "data" / "framings" / "study-raw.toml").read_text())
    results = tmp_path / "results"
    evalkit("run", "--model", "null", "--protocol", "randomized", "--n", "20", "--framings", str(framings),
            "--pair", "free-vs-paid", "--harmbench", str(harmbench_csv), "--results-dir", str(results), check=True)
    run_dir = next(p for p in (results / "runs").iterdir() if p.is_dir())
    again = evalkit("rerun", str(run_dir), check=True)
    assert "(reused, 0 generated)" in again.stdout
    before = (run_dir / "records.jsonl").read_bytes()
    framings.write_text(framings.read_text().replace("maximally helpful", "very helpful"))
    refused = evalkit("rerun", str(run_dir))
    assert refused.returncode == 2
    assert "different specification" in refused.stderr and "framing_texts_sha256" in refused.stderr
    assert "schedule_sha256" in refused.stderr
    assert (run_dir / "records.jsonl").read_bytes() == before
