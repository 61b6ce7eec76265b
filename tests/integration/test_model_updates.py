"""The model-update workflow as a user runs it: pytest and evalkit as real subprocesses on a
copy of the behavioural suite, on the sim engine.

- the whole flow: record baselines for alias m = sim:null; switch m to sim:training-aware
  (one line of the models file): the snapshot test fails with the transition summary, and
  `evalkit compare` and `pytest --baseline` say the training-aware gap grew, with an interval
  that excludes zero; switch back: everything passes. Changing only the seed: the snapshot
  failure says the provenance differs.
- selections (`-m pilot`, `-m replication`, `--model`, `-k`, `-n 2`, `-p no:xdist`) exit 0
  exactly when their tests pass, and `--snapshot-update` under a selection deletes nothing.
- one engine boot per model under `-n 2`; progress lines; `--harmbench PATH` with a space; a
  dataset smaller than the pilot.
"""

import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOTS = "__evalkit_snapshots__"
pytestmark = pytest.mark.slow


def make_project(tmp_path: Path, with_snapshots: bool) -> Path:
    project = tmp_path / "project"
    ignore = ("__pycache__",) if with_snapshots else ("__pycache__", SNAPSHOTS)
    shutil.copytree(ROOT / "tests" / "behavioral", project / "tests" / "behavioral",
                    ignore=shutil.ignore_patterns(*ignore))
    shutil.copy(ROOT / "pytest.ini", project)
    return project


def run_pytest(project, harmbench_csv, results, *args, env=None):
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--harmbench={harmbench_csv}",
                             f"--results-dir={results}", *args], cwd=project, capture_output=True, text=True,
                            timeout=900, env={**os.environ, **(env or {})})
    assert "INTERNALERROR" not in result.stdout + result.stderr, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def evalkit(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "evalkit.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)


def counts(result) -> dict:
    """pytest's closing line as {"passed": 3, "failed": 1, ...}."""
    line = [line for line in result.stdout.splitlines() if re.search(r"\d+ (passed|failed|error)", line)][-1]
    return {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", line)}


def failed_ids(result) -> set[str]:
    """Row ids of failed tests, and of tests whose set-up failed (ERROR)."""
    return set(re.findall(r"^(?:FAILED|ERROR) \S+::\w+\[([^\]]+)\]", result.stdout, re.MULTILINE))


def assert_exit_matches_tests(result):
    """0 exactly when no test failed or errored: a suite that exits 1 with every test passing is broken."""
    outcome = counts(result)
    failing = outcome.get("failed", 0) + outcome.get("error", 0) + outcome.get("errors", 0)
    assert result.returncode == (1 if failing else 0), (result.returncode, outcome, result.stdout[-2000:])
    return outcome


def test_model_update_flow(harmbench_csv, tmp_path):
    project = make_project(tmp_path, with_snapshots=False)
    models = project / "models.toml"
    models.write_text('# the models this repository ships\n[models.m]\nmodel = "sim:null"\n')
    base, candidate, back = (tmp_path / name for name in ("base", "candidate", "back"))

    recorded = run_pytest(project, harmbench_csv, base, "--models-file=models.toml", "--snapshot-update")
    assert_exit_matches_tests(recorded)
    assert recorded.returncode == 0
    snapshot_dir = project / "tests" / "behavioral" / SNAPSHOTS / "m"
    files = sorted(p.name for p in snapshot_dir.iterdir())
    assert files == ["pilot--aa-control.toml", "pilot--free-vs-paid.toml", "replication--aa-control.toml",
                     "replication--free-vs-paid.toml"]
    recorded_text = (snapshot_dir / "pilot--free-vs-paid.toml").read_text()
    assert 'model = "null"' in recorded_text and "[decisions]" in recorded_text
    assert "[Start of Answer]" not in recorded_text  # codes and numbers, never response text

    # the pull request: one line of the models file
    models.write_text(models.read_text().replace('"sim:null"', '"sim:training-aware"'))
    updated = run_pytest(project, harmbench_csv, candidate, "--models-file=models.toml", f"--baseline={base}")
    assert updated.returncode == 1
    out = updated.stdout
    assert "decisions of m / replication / free-vs-paid changed:" in out
    transitions = re.search(r"decisions of m / replication / free-vs-paid changed: (\d+) of 400 behaviors\n"
                            r"  model: model null -> training-aware.*\n  transitions: (RR->RC \d+)", out)
    assert transitions, out[-4000:]
    assert "by category:" in out
    assert {"m-pilot-free-vs-paid", "m-replication-free-vs-paid"} <= failed_ids(updated)
    assert "test_framing_gap_not_larger_than_baseline[m-replication-free-vs-paid]" in out
    assert "training-aware gap grew" in out  # the terminal's compare table and the baseline test's message
    assert (candidate / "compare.md").exists() and "training-aware gap grew" in (candidate / "compare.md").read_text()

    compared = evalkit("compare", str(base), str(candidate), "--json")
    assert compared.returncode == 0, compared.stderr
    rows = {(r["suite"], r["pair"]): r for r in json.loads(compared.stdout)["rows"]}
    for suite in ("pilot", "replication"):
        row = rows[(suite, "free-vs-paid")]
        assert row["verdict"] == "training-aware gap grew"
        assert row["gap"]["change_ci"][1] < 0  # the interval excludes zero
        assert row["transitions"].get("RR->RC", 0) > 0
    table = evalkit("compare", str(base), str(candidate))
    assert "training-aware gap grew" in table.stdout
    markdown = evalkit("compare", str(base), str(candidate), "--markdown", "--fail-on-regression")
    assert markdown.returncode == 1 and markdown.stdout.startswith("## evalkit compare")

    # the pull request is reverted: everything passes again
    models.write_text(models.read_text().replace('"sim:training-aware"', '"sim:null"'))
    reverted = run_pytest(project, harmbench_csv, back, "--models-file=models.toml", f"--baseline={base}")
    outcome = assert_exit_matches_tests(reverted)
    assert reverted.returncode == 0 and outcome["passed"] > 0
    assert "test_no_refusal_regression_vs_baseline[m-replication-free-vs-paid] PASSED" in run_pytest(
        project, harmbench_csv, back, "--models-file=models.toml", f"--baseline={base}", "-v",
        "-k", "baseline").stdout
    again = json.loads(evalkit("compare", str(base), str(back), "--json").stdout)
    assert {r["verdict"] for r in again["rows"]} == {"no change"}

    # only the seed changes: not a model change, and the failure says so
    reseeded = run_pytest(project, harmbench_csv, back, "--models-file=models.toml", "--seed=7")
    assert reseeded.returncode == 1
    assert "provenance differs (seed 0 -> 7): not a model change" in reseeded.stdout
    assert "model: model" not in reseeded.stdout  # nothing about the model changed
    # and the baseline cannot be compared with it either
    seeded_compare = json.loads(evalkit("compare", str(base), str(back), "--json").stdout)
    assert {r["verdict"] for r in seeded_compare["rows"]} == {"not comparable: seed"}


def test_a_new_alias_without_a_snapshot_fails_with_one_line(harmbench_csv, tmp_path):
    project = make_project(tmp_path, with_snapshots=True)
    result = run_pytest(project, harmbench_csv, tmp_path / "r", "--model=fresh=sim:null", "-m", "replication",
                        "-k", "snapshot")
    assert result.returncode == 1
    lines = [line for line in result.stdout.splitlines() if line.startswith("no baseline snapshot for alias 'fresh'")]
    assert len(lines) == 2 and "--snapshot-update" in lines[0]


def test_selections_exit_zero_exactly_when_their_tests_pass(harmbench_csv, tmp_path):
    project = make_project(tmp_path, with_snapshots=True)
    results = tmp_path / "results"
    before = {p: p.read_bytes() for p in (project / "tests" / "behavioral" / SNAPSHOTS).rglob("*.toml")}
    assert len(before) == 8

    cases = {
        "-m pilot": ["-m", "pilot"],  # the study-pilot model's pilot fails on purpose
        "-m replication": ["-m", "replication"],
        "--model qwen-control": ["--model", "qwen-control"],
        "-m pilot --model qwen-control": ["-m", "pilot", "--model", "qwen-control"],
        "-k": ["-k", "qwen-control and free-vs-paid"],
        "-n 2": ["-n", "2"],
        "-p no:xdist": ["-p", "no:xdist"],
    }
    outcomes = {}
    for name, args in cases.items():
        result = run_pytest(project, harmbench_csv, results, *args)
        outcomes[name] = (assert_exit_matches_tests(result), result.returncode, failed_ids(result))
    expected_failures = {"study-pilot-pilot-free-vs-paid", "study-pilot-pilot-aa-control"}
    for name in ("-m pilot", "-n 2", "-p no:xdist"):
        assert outcomes[name][1] == 1 and outcomes[name][2] == expected_failures, (name, outcomes[name])
    for name in ("-m replication", "--model qwen-control", "-m pilot --model qwen-control", "-k"):
        assert outcomes[name][1] == 0 and outcomes[name][0]["passed"] > 0, (name, outcomes[name])
    # the same tests, whichever way they ran (xdist's closing line leaves the deselected count out)
    ran = {name: {k: n for k, n in outcomes[name][0].items() if k != "deselected"} for name in ("-n 2", "-p no:xdist")}
    assert ran["-n 2"] == ran["-p no:xdist"]

    # recording a selection's snapshots touches nothing outside it
    updated = run_pytest(project, harmbench_csv, results, "-m", "replication", "--snapshot-update")
    assert updated.returncode == 0
    after = {p: p.read_bytes() for p in (project / "tests" / "behavioral" / SNAPSHOTS).rglob("*.toml")}
    assert after == before  # nothing deleted, nothing rewritten (the decisions are unchanged)


def test_one_engine_boot_per_model_under_xdist(harmbench_csv, tmp_path):
    project = make_project(tmp_path, with_snapshots=True)
    results = tmp_path / "results"
    first = run_pytest(project, harmbench_csv, results, "-n", "2", "-m", "replication")
    assert first.returncode == 0
    meta = json.loads((results / "summary.json").read_text())["meta"]
    assert meta["engine_boots"] == {"sim:study-pilot": 1, "sim:qwen-control": 1}  # not one per worker
    again = run_pytest(project, harmbench_csv, results, "-n", "2", "-m", "replication")
    assert again.returncode == 0
    assert json.loads((results / "summary.json").read_text())["meta"]["engine_boots"] == {}  # all reused
    assert not (results / ".evalkit-sessions").exists()  # the session's exchange files are gone


def test_progress_lines_in_a_log_and_none_under_quiet(harmbench_csv, tmp_path):
    project = make_project(tmp_path, with_snapshots=True)
    args = ("--model=qwen-control", "-m", "replication", "--fresh", "-k", "flip_rate")
    env = {"EVALKIT_PROGRESS_SECONDS": "0"}
    plain = run_pytest(project, harmbench_csv, tmp_path / "r1", *args, env=env)
    assert plain.returncode == 0
    lines = [line for line in plain.stdout.splitlines() if line.startswith("evalkit: qwen-control-replication")]
    assert any(re.search(r"\d+/800 requests, [\d.]+ req/s, ETA", line) for line in lines), plain.stdout[:2000]
    assert any(line.endswith("new, 800 generated") for line in lines)
    assert "\r" not in plain.stdout  # no terminal: plain lines only
    quiet = run_pytest(project, harmbench_csv, tmp_path / "r2", *args, "-q", env=env)
    assert quiet.returncode == 0 and "req/s" not in quiet.stdout and "generated" not in quiet.stdout


def test_progress_is_one_live_line_on_a_terminal(harmbench_csv, tmp_path):
    project = make_project(tmp_path, with_snapshots=True)
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                                f"--harmbench={harmbench_csv}",
                                f"--results-dir={tmp_path / 'r'}", "--model=qwen-control", "-m", "replication",
                                "-k", "flip_rate"], cwd=project, stdin=follower, stdout=follower, stderr=follower,
                               env={**os.environ, "TERM": "xterm", "COLUMNS": "120"})
    os.close(follower)
    output, deadline = b"", time.time() + 600
    while time.time() < deadline:
        ready, _, _ = select.select([leader], [], [], 1)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        elif process.poll() is not None:
            break
    process.wait(timeout=60)
    os.close(leader)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text[-2000:]
    assert re.search(r"\revalkit: qwen-control-replication-free-vs-paid: \d+/800 requests", text)  # rewritten in place
    assert "new, 800 generated" in text


def test_harmbench_with_a_space_stops_at_once_or_works(harmbench_csv, tmp_path):
    project = make_project(tmp_path, with_snapshots=True)
    outside = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--harmbench",
                              str(harmbench_csv.parent), "--model=qwen-control"], cwd=project, capture_output=True,
                             text=True, timeout=300)
    assert outside.returncode == 4
    assert f"write --harmbench={harmbench_csv.parent}" in outside.stderr
    assert "collected" not in outside.stdout  # nothing was collected, least of all other tests
    inside = project / "data"
    inside.mkdir()
    shutil.copy(harmbench_csv, inside / harmbench_csv.name)
    works = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--harmbench", "data",
                            f"--results-dir={tmp_path / 'r'}", "--model=qwen-control", "-m", "replication", "-k",
                            "flip_rate"], cwd=project, capture_output=True, text=True, timeout=600)
    assert works.returncode == 0, works.stdout[-2000:] + works.stderr[-2000:]
    assert counts(works)["passed"] == 2  # the suite's tests only, with pytest.ini's testpaths


def test_a_dataset_smaller_than_the_pilot(harmbench_csv, tmp_path):
    lines = harmbench_csv.read_text(encoding="utf-8").splitlines(keepends=True)
    import csv
    import io
    rows = list(csv.reader(io.StringIO("".join(lines))))
    small = tmp_path / "small.csv"
    with open(small, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows[:81])  # header + 80 behaviors
    project = make_project(tmp_path, with_snapshots=True)
    both = run_pytest(project, small, tmp_path / "r", "--model=m=sim:qwen-control", "-k", "not snapshot")
    assert both.returncode == 1
    message = f"suite 'pilot' takes the first 200 behaviors but {small} has 80"
    assert message in both.stdout and "pass --n 80" in both.stdout
    assert failed_ids(both) == {"pilot-unavailable"}  # one failing test per test function, the replication runs
    assert counts(both)["passed"] > 0
    replication = run_pytest(project, small, tmp_path / "r", "--model=m=sim:qwen-control", "-k", "not snapshot",
                             "-m", "replication")
    assert replication.returncode == 0 and counts(replication)["passed"] > 0


def test_one_verdict_and_one_adjusted_p_per_row_whatever_is_selected(harmbench_csv, tmp_path):
    project = make_project(tmp_path, with_snapshots=True)
    results = tmp_path / "results"
    row_id = ("study-pilot", "pilot", "free-vs-paid")

    def summary_row(directory):
        rows = json.loads((directory / "summary.json").read_text())["rows"]
        return next(r for r in rows if (r["model"], r["pair"]) == (row_id[0], row_id[2]) and r["protocol"] == "fixed")

    everything = run_pytest(project, harmbench_csv, results, "-k", "not snapshot")
    full = summary_row(results)
    narrow = run_pytest(project, harmbench_csv, results, "--model=study-pilot", "-m", "pilot", "-k",
                        "free-vs-paid and test_compliance_gap")
    assert narrow.returncode == 1 and everything.returncode == 1
    selected = summary_row(results)
    # the A/A control was generated for the verdict although its tests were not selected
    assert selected["verdict"] == full["verdict"] == "artifact: A/A control differs too"
    assert "verdict: artifact: A/A control differs too" in narrow.stdout  # the failure says the same
    assert selected["p_adjusted"] == full["p_adjusted"]
    cli = tmp_path / "cli"
    evalkit("run", "--model", "study-pilot", "--protocol", "fixed", "--n", "200", "--batch-size", "16",
            "--harmbench", str(harmbench_csv), "--results-dir", str(cli))
    assert summary_row(cli)["p_adjusted"] == full["p_adjusted"]
