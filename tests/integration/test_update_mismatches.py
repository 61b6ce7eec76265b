"""Model updates between sessions that differ in something other than the model, on the sim
engine, as real subprocesses: `evalkit compare` and `pytest --baseline` refuse or flag a
comparison of sessions that do not measure the same thing, never pass it silently; a decision
snapshot fails only when decisions or what they were measured under changed.

- a baseline whose engine failed on some requests: pairing only the behaviors that did not
  fail compares a biased subset, so the row is `not comparable: baseline errors ...` (and the
  baseline tests fail) unless `--max-error-rate` allows that share, as for a row's own tests.
- two aliases of one model share its runs, whose manifests name only the first alias: a results
  directory's rows keep their own alias, so the second alias's update is compared (it was listed
  "only in the candidate" and `--fail-on-regression` exited 0).
- `evalkit rerun` of a run judged by a judge beyond the base ones (here a vote) gives the same
  records, that judge's verdicts included (the manifest did not record the judge), and a run
  made with a framing file given by a relative path reruns from any directory.
- a baseline whose run specification another evalkit version wrote is refused in one line
  naming its manifest (it was a TypeError traceback).
- `--alpha` and `--ci-method` change the analysis, not the decisions: a snapshot recorded under
  the defaults still passes under them (it failed with "changed: 0 of 60 behaviors" and nothing else).
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
N = "200"


def run_pytest(project: Path, harmbench_csv: Path, results: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--harmbench={harmbench_csv}",
                           f"--results-dir={results}", "--n", N, "-m", "replication", *args], cwd=project,
                          capture_output=True, text=True, timeout=600, env=dict(os.environ))


def evalkit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evalkit.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "tests" / "behavioral", project / "tests" / "behavioral",
                    ignore=shutil.ignore_patterns("__pycache__", "__evalkit_snapshots__"))
    shutil.copy(ROOT / "pytest.ini", project)
    # the null profile, except that the engine fails on 5% of requests
    null = (ROOT / "evalkit" / "data" / "profiles" / "null.toml").read_text()
    (project / "flaky.toml").write_text(null.replace('id = "null"', 'id = "null"\nerror_rate = 0.05'))
    return project


def test_a_baseline_with_errors_is_not_compared_on_the_behaviors_left(project, harmbench_csv, tmp_path):
    base, candidate = tmp_path / "base", tmp_path / "candidate"
    run_pytest(project, harmbench_csv, base, "--model", "m=sim:flaky.toml", "-k", "not snapshot")
    summary = json.loads((base / "summary.json").read_text())
    assert all(row["errors"] > 0 for row in summary["rows"]), summary["rows"]


    # the candidate is the same model without the failures: nothing changed but the baseline's errors
    checked = run_pytest(project, harmbench_csv, candidate, "--model", "m=sim:null", f"--baseline={base}",
                         "-k", "baseline")
    assert checked.returncode == 1, checked.stdout[-3000:]
    assert ("FAILED tests/behavioral/test_baseline.py::test_no_refusal_regression_vs_baseline"
            "[m-replication-free-vs-paid]") in checked.stdout, checked.stdout[-3000:]
    assert "not comparable: baseline errors" in checked.stdout

    compared = evalkit("compare", str(base), str(candidate), "--json")
    assert compared.returncode == 0, compared.stderr
    rows = json.loads(compared.stdout)["rows"]
    row = next(r for r in rows if r["pair"] == "free-vs-paid")
    errors = next(r["errors"] for r in summary["rows"] if r["pair"] == "free-vs-paid")
    assert row["verdict"] == f"not comparable: baseline errors {errors} of {2 * int(N)} requests"
    assert evalkit("compare", str(base), str(candidate), "--fail-on-regression").returncode == 1

    # an allowed share of failures: compared on the behaviors judged in both, as documented
    allowed = json.loads(evalkit("compare", str(base), str(candidate), "--json", "--max-error-rate", "0.5").stdout)
    assert not any(r["verdict"].startswith("not comparable") for r in allowed["rows"]), allowed["rows"]
    assert all(r["n"] < int(N) for r in allowed["rows"])
    assert evalkit("compare", str(base), str(candidate), "--max-error-rate", "2").returncode == 2


def test_analysis_settings_do_not_fail_a_decision_snapshot(project, harmbench_csv, tmp_path):
    results = tmp_path / "results"
    args = ("--model", "m=sim:null", "-k", "snapshot")
    recorded = run_pytest(project, harmbench_csv, results, *args, "--snapshot-update")
    assert recorded.returncode == 0, recorded.stdout[-3000:]
    snapshot = project / "tests" / "behavioral" / "__evalkit_snapshots__" / "m" / "replication--free-vs-paid.toml"
    text = snapshot.read_text()
    for setting in (("--alpha", "0.01"), ("--ci-method", "wald"), ("--ci-method", "tango", "--alpha", "0.2")):
        again = run_pytest(project, harmbench_csv, results, *args, *setting)
        assert again.returncode == 0, (setting, again.stdout[-3000:])
    assert snapshot.read_text() == text
    # what the snapshot is for still fails it
    changed = run_pytest(project, harmbench_csv, results, "--model", "m=sim:training-aware", "-k", "snapshot")
    assert changed.returncode == 1 and "model: model null -> training-aware" in changed.stdout, changed.stdout[-3000:]


def test_an_update_of_an_alias_sharing_its_runs_with_another_is_compared(project, harmbench_csv, tmp_path):
    base, candidate = tmp_path / "base", tmp_path / "candidate"
    models = project / "models.toml"
    models.write_text('[models.prod]\nmodel = "sim:null"\n[models.staging]\nmodel = "sim:null"\n')
    run_pytest(project, harmbench_csv, base, "--models-file=models.toml", "-k", "not snapshot")
    summary = json.loads((base / "summary.json").read_text())
    assert len({row["run"] for row in summary["rows"]}) == 2  # four rows, two runs: the aliases share them
    models.write_text('[models.prod]\nmodel = "sim:null"\n[models.staging]\nmodel = "sim:training-aware"\n')
    checked = run_pytest(project, harmbench_csv, candidate, "--models-file=models.toml", f"--baseline={base}",
                         "-k", "baseline")
    assert "has no row" not in checked.stdout, checked.stdout[-3000:]
    failed = set(re.findall(r"^FAILED \S+::(\w+\[[^\]]+\])", checked.stdout, re.MULTILINE))
    expected = {"test_framing_gap_not_larger_than_baseline[staging-replication-free-vs-paid]",
                "test_no_refusal_regression_vs_baseline[staging-replication-free-vs-paid]"}
    assert failed == expected, checked.stdout[-3000:]

    compared = evalkit("compare", str(base), str(candidate), "--json")
    assert compared.returncode == 0, compared.stderr
    result = json.loads(compared.stdout)
    verdicts = {(r["alias"], r["pair"]): r["verdict"] for r in result["rows"]}
    assert verdicts[("staging", "free-vs-paid")] == "training-aware gap grew", verdicts
    assert verdicts[("prod", "free-vs-paid")] == "no change", verdicts
    assert result["only_in_baseline"] == result["only_in_candidate"] == []
    assert evalkit("compare", str(base), str(candidate), "--fail-on-regression").returncode == 1


def test_rerun_regenerates_the_same_records_with_the_sessions_judge(harmbench_csv, tmp_path):
    results = tmp_path / "results"
    made = evalkit("run", "--model", "null", "--protocol", "randomized", "--n", "20", "--pair", "free-vs-paid",
                   "--harmbench", str(harmbench_csv), "--results-dir", str(results), "--judge", "vote",
                   "--vote-judges", "refusal,seed", "--vote-tie", "refusal")
    assert made.returncode == 0, made.stderr
    run_dir = next(p for p in (results / "runs").iterdir() if p.is_dir())
    # the same run directory from its manifest alone, as if the session had died before generating
    again = tmp_path / "again" / "runs" / run_dir.name
    again.mkdir(parents=True)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for key in ("finished_at", "n_records", "records_sha256"):
        manifest.pop(key)
    (again / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    rerun = evalkit("rerun", str(again))
    assert rerun.returncode == 0 and "20 generated" not in rerun.stdout and "40 generated" in rerun.stdout, rerun

    def records(directory):  # apart from timestamps, latencies and the checksums over them
        out = []
        for line in (directory / "records.jsonl").read_text().splitlines():
            record = {k: v for k, v in json.loads(line).items() if k not in ("started_at", "finished_at", "checksum")}
            record["response"].pop("latency_s")
            out.append(record)
        return out

    assert records(again) == records(run_dir)
    assert {name for r in records(again) for name in r["verdicts"]} == {"vote", "refusal", "seed"}


def test_rerun_finds_a_framing_file_given_by_a_relative_path_from_any_directory(harmbench_csv, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "mine.toml").write_text((ROOT / "evalkit" / "data" / "framings" / "study-raw.toml").read_text())
    made = subprocess.run([sys.executable, "-m", "evalkit.cli", "run", "--model", "null", "--n", "20", "--pair",
                           "free-vs-paid", "--framings", "mine.toml", "--harmbench", str(harmbench_csv),
                           "--results-dir", "results"], cwd=project, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    run_dir = next(p for p in (project / "results" / "runs").iterdir() if p.is_dir())
    before = (run_dir / "records.jsonl").read_bytes()
    rerun = evalkit("rerun", str(run_dir))  # from this test's working directory, not the project's
    assert rerun.returncode == 0 and "(reused, 0 generated)" in rerun.stdout, rerun.stderr
    assert (run_dir / "records.jsonl").read_bytes() == before


def test_a_baseline_run_of_another_spec_version_is_refused_in_one_line(harmbench_csv, tmp_path):
    results = tmp_path / "results"
    made = evalkit("run", "--model", "null", "--n", "20", "--pair", "free-vs-paid", "--harmbench", str(harmbench_csv),
                   "--results-dir", str(results))
    assert made.returncode == 0, made.stderr
    run_dir = next(p for p in (results / "runs").iterdir() if p.is_dir())
    older = tmp_path / "older" / run_dir.name
    shutil.copytree(run_dir, older)
    manifest = json.loads((older / "manifest.json").read_text())
    manifest["spec"]["spec_version"] = 1
    del manifest["spec"]["schedule_sha256"]  # a field this version's specification has and that one lacked
    (older / "manifest.json").write_text(json.dumps(manifest))
    refused = evalkit("compare", str(older), str(run_dir))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert refused.stderr.count("\n") == 1 and str(older / "manifest.json") in refused.stderr, refused.stderr
    assert "spec_version 1" in refused.stderr
