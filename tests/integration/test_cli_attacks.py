"""The `evalkit` command under attack (issue 11), as a real subprocess: bad values, broken
pipes, hostile behavior ids, damaged run directories. Every outcome is either the result
or one line on stderr with exit status 2: never a traceback, never a spoofed terminal."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from evalkit.datasets import Behavior
from evalkit.engines import EngineConfig
from evalkit.engines.sim import SimEngine
from evalkit.framings import load_framing_set
from evalkit.protocols import build_schedule
from evalkit.runs import MANIFEST, RECORDS, execute
from evalkit.suites import SessionConfig, prepare

ROOT = Path(__file__).resolve().parents[2]


def evalkit(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "evalkit.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300, **kwargs)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, (result.returncode, result.stdout[-500:], result.stderr[-2000:])
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, harmbench_csv):
    results = tmp_path_factory.mktemp("attacks") / "results"
    done = evalkit("run", "--model", "null", "--protocol", "randomized", "--n", "40", "--pair", "free-vs-paid",
                   "--harmbench", harmbench_csv, "--results-dir", results)
    assert done.returncode == 0, done.stderr
    return next(p for p in (results / "runs").iterdir() if p.is_dir())


def copy_run(run_dir, tmp_path):
    copy = tmp_path / "runs" / run_dir.name
    copy.mkdir(parents=True)
    for name in (MANIFEST, RECORDS):
        (copy / name).write_bytes((run_dir / name).read_bytes())
    return copy


# ---------------------------------------------------------------- 1


def test_export_jsonl_with_defaults_keeps_the_run_usable(run_dir, tmp_path):
    run = copy_run(run_dir, tmp_path)
    exported = evalkit("export", run, "--format", "jsonl")
    assert exported.returncode == 0, exported.stderr
    written = Path(exported.stdout.split("wrote ", 1)[1].strip())
    assert written.exists() and run.resolve() not in written.resolve().parents
    shown = evalkit("show", run)
    assert shown.returncode == 0 and "(complete, 80 records)" in shown.stdout, shown.stderr
    refused = evalkit("export", run, "--format", "jsonl", "--output", run / RECORDS)
    assert_one_line_error(refused, "--output", RECORDS)
    assert evalkit("show", run).returncode == 0


# ---------------------------------------------------------------- 8


@pytest.mark.parametrize("args, option", [
    (("stats", "paired", "--table", "1,2,3,4", "--alpha", "nan"), "--alpha"),
    (("stats", "paired", "--table", "1,2,3,4", "--margin", "nan"), "--margin"),
    (("stats", "paired", "--table", "1,2,3,4", "--margin", "inf"), "--margin"),
    (("stats", "crossover", "--free-first", "1,2,3,4", "--paid-first", "1,2,3,4", "--alpha", "nan"), "--alpha"),
    (("run", "--alpha", "nan"), "--alpha"),
    (("run", "--max-flip-rate", "nan"), "--max-flip-rate"),
    (("run", "--equivalence-margin", "nan"), "--equivalence-margin"),
    (("run", "--temperature", "nan"), "--temperature"),
    (("simulate", "--profile", "null", "--protocol", "fixed", "--alpha", "nan"), "--alpha"),
    (("run", "--model", "null\x1b[2J"), "--model"),
])
def test_nan_and_infinite_options_are_refused_by_name(args, option, tmp_path):
    result = evalkit(*args, "--results-dir", tmp_path / "r") if args[0] == "run" else evalkit(*args)
    assert_one_line_error(result, option)


def test_show_into_a_closed_pipe_exits_quietly(run_dir):
    process = subprocess.Popen([sys.executable, "-m", "evalkit.cli", "show", str(run_dir), "--show-responses"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # like `| head` that has already exited: every write hits a closed pipe
    stderr = process.stderr.read().decode()
    process.wait(timeout=120)
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    assert process.returncode != 0  # the output was not delivered; say so by the status, quietly


@pytest.mark.parametrize("damage, fragment", [
    ("manifest is a list", MANIFEST),
    ("records is a directory", RECORDS),
    ("verdict flipped", RECORDS),
    ("line deleted", RECORDS),
    ("log deleted", RECORDS),
])
def test_damaged_run_directories_are_one_line_errors(run_dir, tmp_path, damage, fragment):
    run = copy_run(run_dir, tmp_path)
    log = run / RECORDS
    if damage == "manifest is a list":
        (run / MANIFEST).write_text("[]")
    elif damage == "records is a directory":
        log.unlink()
        log.mkdir()
    elif damage == "verdict flipped":
        lines = log.read_text().splitlines(keepends=True)
        data = json.loads(lines[3])
        data["verdicts"]["refusal"] = "compliance" if data["verdicts"]["refusal"] == "refusal" else "refusal"
        lines[3] = json.dumps(data) + "\n"
        log.write_text("".join(lines))
    elif damage == "line deleted":
        lines = log.read_text().splitlines(keepends=True)
        log.write_text("".join(lines[:10] + lines[11:]))
    else:
        log.unlink()
    for command in (("show", run), ("export", run, "--format", "csv"), ("rerun", run)):
        assert_one_line_error(evalkit(*command), fragment)


# ---------------------------------------------------------------- 10


HOSTILE_IDS = ["plain_id", "two\nlines  99 fake_id free refusal", "esc\x1b[2Jclear", "osc\x1b]0;pwned\x07title",
               "rtl\u202eevil", "cr\rover", "bell\x07", "del\x7f", "c1\x9bcsi"]


def test_show_escapes_control_characters_in_behavior_ids(synthetic_csv, tmp_path):
    session = prepare(SessionConfig(models=("null",), harmbench=str(synthetic_csv), suites=("pilot",), n=4,
                                    pairs=("free-vs-paid",), results_dir=str(tmp_path / "results")))
    behaviors = [Behavior(b, f"behavior {i}", "standard", "cat") for i, b in enumerate(HOSTILE_IDS)]
    schedule = build_schedule(behaviors, load_framing_set("study-raw").pair("free-vs-paid"), "fixed", 0, 1)
    spec = dataclasses.replace(session.plans[0].spec, schedule_sha256=schedule.sha256(), n_requests=len(schedule),
                               n_behaviors=len(behaviors))
    run = execute(spec, schedule, session.store, lambda: SimEngine(EngineConfig(model="null")), session.judges)
    shown = evalkit("show", run.run_dir)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert out.count("\n") == len(schedule) + 1  # one line per record, no spoofed ones
    for bad in ("\x1b", "\x07", "\u202e", "\r", "\x7f", "\x9b"):
        assert bad not in out
    assert "plain_id" in out and "two\\nlines" in out


@pytest.mark.parametrize("bad_id", ["two\nlines", "esc\x1b[2J", "rtl\u202eevil", "nul\x00x", "tab\tid"])
def test_behavior_ids_with_control_characters_are_refused_at_load(bad_id, tmp_path):
    path = tmp_path / "behaviors.csv"
    quoted = '"' + bad_id.replace('"', '""') + '"'
    path.write_text("Behavior,FunctionalCategory,SemanticCategory,Tags,ContextString,BehaviorID\n"
                    "a,standard,s,,,first\n"
                    f"b,standard,s,,,{quoted}\n", encoding="utf-8")
    result = evalkit("run", "--harmbench", path, "--results-dir", tmp_path / "r")
    assert_one_line_error(result, "row 2", "BehaviorID")


def test_csv_errors_name_the_right_row(tmp_path):
    path = tmp_path / "behaviors.csv"
    path.write_text("Behavior,FunctionalCategory,SemanticCategory,Tags,ContextString,BehaviorID\n"
                    "a,standard,s,,,one\n"
                    "b,standard,s,,,two\n"
                    f"{'x' * 200_000},standard,s,,,three\n")  # the third data row is over the field limit
    result = evalkit("run", "--harmbench", path, "--results-dir", tmp_path / "r")
    assert_one_line_error(result, "row 3")


# ---------------------------------------------------------------- 11


def test_crossover_with_zero_variance_reports_the_risk_difference_as_undefined():
    result = evalkit("stats", "crossover", "--free-first", "0,0,3,0", "--paid-first", "0,0,3,0", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    rd = out["framing_risk_difference"]
    assert rd["p_value"] is None and rd["ci"] is None
    assert out["order_risk_difference"]["p_value"] is None
    # the exact tests are defined here, and agree: 2 x (1/20) = 0.100 (Fisher; Prescott)
    assert out["framing_odds_ratio"]["p_value"] == pytest.approx(0.1)
    assert out["prescott"]["exact_p"] == pytest.approx(0.1)


# ---------------------------------------------------------------- 7


def test_run_writes_the_sessions_settings_into_the_summary(harmbench_csv, tmp_path):
    results = tmp_path / "results"
    done = evalkit("run", "--model", "null", "--protocol", "fixed", "--n", "10", "--pair", "free-vs-paid",
                   "--seed", "3", "--harmbench", harmbench_csv, "--results-dir", results)
    assert done.returncode == 0, done.stderr
    meta = json.loads((results / "summary.json").read_text())["meta"]
    assert meta["engine"] == "sim" and meta["models"] == {"null": "null"} and meta["seed"] == 3
    assert meta["dataset_sha256"] and meta["alpha"] == 0.05


def test_a_randomized_run_with_one_order_only_prints_its_summary(harmbench_csv, tmp_path):
    # one behavior: only one of the two order sequences is filled, so there is no order
    # effect to estimate; the table says n/a instead of raising a TypeError
    done = evalkit("run", "--model", "null", "--protocol", "randomized", "--n", "1", "--pair", "free-vs-paid",
                   "--harmbench", harmbench_csv, "--results-dir", tmp_path / "r")
    assert done.returncode == 0, done.stderr
    assert "free-vs-paid" in done.stdout and "n/a" in done.stdout


@pytest.mark.parametrize("value", ["often", "every-0", "every-1s", "every--5ms", ""])
def test_a_bad_sync_cadence_is_refused_by_name_before_anything_is_written(value, tmp_path, harmbench_csv):
    result = evalkit("run", "--model", "null", "--n", "4", "--harmbench", harmbench_csv, "--sync", value,
                     "--results-dir", tmp_path / "r")
    assert_one_line_error(result, "option --sync", "every-batch, every-N")
    assert not (tmp_path / "r").exists()


def test_a_bad_sync_cadence_is_refused_by_rerun_and_pytest(run_dir, tmp_path, harmbench_csv):
    before = (run_dir / RECORDS).read_bytes()
    assert_one_line_error(evalkit("rerun", run_dir, "--sync", "hourly"), "option --sync")
    assert (run_dir / RECORDS).read_bytes() == before
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                             str(ROOT / "tests" / "behavioral"),
                             f"--harmbench={harmbench_csv}", f"--results-dir={tmp_path / 'results'}", "--sync=hourly"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 4 and "option --sync" in result.stdout + result.stderr
    assert not (tmp_path / "results" / "runs").exists()


def test_show_of_a_behavior_not_in_the_run_is_an_error(run_dir):
    # a mistyped id printed the run's header line and nothing else, with exit status 0
    shown = evalkit("show", run_dir, "--behavior", "no_such_behavior")
    assert_one_line_error(shown, "option --behavior", "'no_such_behavior' is not in this run")
    assert shown.stdout == ""


def test_export_never_replaces_the_results_summary(run_dir):
    # --output results/summary.json replaced the session's summary with the CSV
    summary = run_dir.parent.parent / "summary.json"
    before = summary.read_bytes()
    refused = evalkit("export", run_dir, "--format", "csv", "--output", summary)
    assert_one_line_error(refused, "--output", "summary.json")
    assert summary.read_bytes() == before and json.loads(before)["rows"]


@pytest.mark.parametrize("key, value", [("framings", 5), ("pair", ["free-vs-paid"]), ("protocol", None)])
def test_a_rerun_block_with_a_field_of_the_wrong_type_is_one_line(run_dir, tmp_path, key, value):
    # framings = 5 reached load_framing_set and crashed with a TypeError traceback
    run = copy_run(run_dir, tmp_path)
    manifest = json.loads((run / MANIFEST).read_text())
    manifest["rerun"][key] = value
    (run / MANIFEST).write_text(json.dumps(manifest))
    assert_one_line_error(evalkit("rerun", run), MANIFEST, "malformed rerun block", key)
