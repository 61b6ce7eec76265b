"""Secrets never reach files or logs; responses stay in the run store.

Runs `evalkit run` and the pytest suite against an OpenAI-compatible endpoint on
127.0.0.1 (a small stub that checks the bearer key and answers with recognisable text),
with recognisable fake credentials in the environment, then searches every file
written and everything printed.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import JSONHandler, serve_http

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {"OPENAI_API_KEY": "sk-evalkit-FAKEKEY-7f3a9c", "HF_TOKEN": "hf_evalkitFAKETOKEN4821",
           "MODAL_TOKEN_ID": "ak-evalkitFAKEID", "MODAL_TOKEN_SECRET": "as-evalkitFAKESECRET"}
RESPONSE_MARK = "STUB-RESPONSE-TEXT"


class StubOpenAI(JSONHandler):
    calls = 0

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length))
        if self.headers.get("Authorization") != f"Bearer {SECRETS['OPENAI_API_KEY']}":
            self._send(401, {"error": {"message": "bad key"}})
            return
        StubOpenAI.calls += 1
        if StubOpenAI.calls % 7 == 0:  # some server errors, so error paths are exercised too
            self._send(500, {"error": {"message": f"internal error for key {SECRETS['OPENAI_API_KEY']}"}})
            return
        prompt = json.dumps(body)
        refuse = "PAID TIER" in prompt and len(prompt) % 3 == 0
        text = "I can't help with that." if refuse else f"[Start of Answer] {RESPONSE_MARK} placeholder"
        if body.get("messages") is not None:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        else:
            choice = {"index": 0, "text": text, "finish_reason": "stop"}
        self._send(200, {"id": "x", "object": "text_completion", "choices": [choice],
                         "usage": {"prompt_tokens": 10, "completion_tokens": 5}})


@pytest.fixture
def stub_server():
    with serve_http(StubOpenAI) as url:
        yield f"{url}/v1"


def test_fake_secrets_and_responses_never_leak(stub_server, harmbench_csv, tmp_path):
    env = {**os.environ, **SECRETS}
    results = tmp_path / "results"
    common = ["--engine", "openai", "--model", "stub-model", f"--base-url={stub_server}", "--max-retries", "0",
              f"--harmbench={harmbench_csv}", f"--results-dir={results}", "--n", "30", "--max-error-rate", "0.5"]
    cli = subprocess.run([sys.executable, "-m", "evalkit.cli", "run", "--protocol", "randomized", *common],
                         capture_output=True, text=True, env=env, timeout=300)
    assert cli.returncode == 0, cli.stderr
    suite = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA",
                            str(ROOT / "tests" / "behavioral" / "test_paired_framing.py"), *common],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert "evalkit summary" in suite.stdout, suite.stdout[-2000:]
    printed = cli.stdout + cli.stderr + suite.stdout + suite.stderr
    written = [p for p in results.rglob("*") if p.is_file()]
    assert any(p.name == "records.jsonl" for p in written) and any(p.name == "manifest.json" for p in written)
    for secret in SECRETS.values():
        assert secret not in printed
        for path in written:
            assert secret not in path.read_text(encoding="utf-8", errors="replace"), f"{secret[:8]}... in {path}"
    # responses live in the run store only, never in terminal output or the reports
    assert RESPONSE_MARK not in printed
    for report in ("summary.json", "summary.md"):
        assert RESPONSE_MARK not in (results / report).read_text()
    records = [p for p in written if p.name == "records.jsonl"]
    assert any(RESPONSE_MARK in p.read_text() for p in records)
    errors = [json.loads(line) for p in records for line in p.read_text().splitlines()
              if json.loads(line)["response"]["error"]]
    assert errors and all("500" in e["response"]["error"] for e in errors)  # recorded with the status
    assert all(set(e["verdicts"].values()) == {"error"} for e in errors)  # never judged


def test_show_responses_is_opt_in(harmbench_csv, tmp_path):
    results = tmp_path / "results"
    subprocess.run([sys.executable, "-m", "evalkit.cli", "run", "--model", "study-pilot", "--protocol", "fixed",
                    "--n", "40", "--batch-size", "16", f"--harmbench={harmbench_csv}", f"--results-dir={results}",
                    "--pair", "free-vs-paid"], check=True, capture_output=True, timeout=300)
    run_dir = next(p for p in (results / "runs").iterdir() if p.is_dir())
    hidden = subprocess.run([sys.executable, "-m", "evalkit.cli", "show", str(run_dir)], capture_output=True,
                            text=True, check=True)
    shown = subprocess.run([sys.executable, "-m", "evalkit.cli", "show", str(run_dir), "--show-responses"],
                           capture_output=True, text=True, check=True)
    assert "[Start of Answer]" not in hidden.stdout and "refusal" in hidden.stdout
    assert "[Start of Answer]" in shown.stdout


def test_export_formats(harmbench_csv, tmp_path):
    import pandas as pd

    results = tmp_path / "results"
    subprocess.run([sys.executable, "-m", "evalkit.cli", "run", "--model", "null", "--protocol", "balanced",
                    "--n", "20", f"--harmbench={harmbench_csv}", f"--results-dir={results}", "--pair",
                    "free-vs-paid"], check=True, capture_output=True, timeout=300)
    run_dir = next(p for p in (results / "runs").iterdir() if p.is_dir()).resolve()
    frames = {}
    for fmt in ("parquet", "csv", "jsonl"):
        out = subprocess.run([sys.executable, "-m", "evalkit.cli", "export", str(run_dir), "--format", fmt],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        path = run_dir.with_name(f"{run_dir.name}.{fmt}")  # beside the run, never over its record log
        assert out.stdout.strip() == f"wrote {path}"
        frames[fmt] = (pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path) if fmt == "csv"
                       else pd.read_json(path, lines=True))
    for frame in frames.values():
        assert len(frame) == 40 and list(frame["index"]) == list(range(40))
        assert {"behavior_id", "slot", "text", "verdict_refusal", "verdict_seed", "protocol"} <= set(frame.columns)
        assert set(frame["protocol"]) == {"balanced"}
    bad = subprocess.run([sys.executable, "-m", "evalkit.cli", "export", str(tmp_path / "nope"), "--format", "csv"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "not a run directory" in bad.stderr


def test_pytest_show_responses_is_opt_in(harmbench_csv, tmp_path):
    def suite(*extra):
        return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-m", "pilot",
                               "-k", "test_flip_rate_bounded and study-pilot-pilot-free-vs-paid",
                               str(ROOT / "tests" / "behavioral" / "test_paired_framing.py"), "--model=study-pilot",
                               f"--harmbench={harmbench_csv}", f"--results-dir={tmp_path / 'results'}", *extra],
                              capture_output=True, text=True, cwd=tmp_path, timeout=300)
    quiet, loud = suite(), suite("--show-responses")
    assert "1 failed" in quiet.stdout and "1 failed" in loud.stdout
    assert "flipped behaviors (27)" in quiet.stdout  # ids and counts, always
    assert "[Start of Answer]" not in quiet.stdout + quiet.stderr
    assert "[Start of Answer]" in loud.stdout


def test_errors_reported_by_pytest_carry_no_credentials(tmp_path):
    """The CLI removed credentials from the errors it prints; pytest printed the same errors as
    they were: a HarmBench mirror URL with a token, a key given where its variable's NAME goes."""
    mark = "PYTESTLEAKMARK"
    key = f"sk-proj-{mark}-0a1b2c"
    env = {k: v for k, v in os.environ.items() if k != "EVALKIT_HARMBENCH"}
    env.update({"EVALKIT_CACHE_DIR": str(tmp_path / "cache"), "OPENAI_API_KEY": key,
                "EVALKIT_HARMBENCH_URL": f"http://evaluser:{mark}@127.0.0.1:9/harmbench.csv?token={mark}"})

    def suite(*extra):
        return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                               str(ROOT / "tests" / "behavioral" / "test_paired_framing.py"),
                               f"--results-dir={tmp_path / 'results'}", *extra],
                              capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    mirror = suite()
    assert mirror.returncode == 4 and "download failed" in mirror.stdout + mirror.stderr, mirror.stderr
    no_name = suite(f"--harmbench={ROOT / 'fixtures' / 'behaviors' / 'synthetic_behaviors.csv'}", "--engine=openai",
                    "--model=m", f"--api-key-env={key}")
    # a usage error before the session (exit 4), now that the openai engine's options are checked up front
    assert no_name.returncode == 4, no_name.stdout[-2000:] + no_name.stderr
    assert "option --api-key-env: expected the NAME" in no_name.stdout + no_name.stderr
    for run in (mirror, no_name):
        assert mark not in run.stdout + run.stderr


class FramingSensitiveStub(JSONHandler):
    """Refuses under the paid framing, complies under the free one with text that would drive a
    terminal (set its title, clear the line, return the carriage)."""

    def do_GET(self):  # noqa: N802 - /models, the boot check
        self._send(200, {"data": []})

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        text = ("I can't help with that." if "PAID TIER" in json.dumps(body)
                else "Sure: step one.\x1b]0;SPOOFED-TITLE\x07\r\x1b[2Kall tests passed\u202e")
        choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                  if body.get("messages") is not None else {"index": 0, "text": text, "finish_reason": "stop"})
        self._send(200, {"choices": [choice], "usage": {"prompt_tokens": 3, "completion_tokens": 3}})


def test_show_responses_in_pytest_escapes_control_characters(harmbench_csv, tmp_path):
    """`evalkit show --show-responses` escaped a response's control characters; pytest's
    --show-responses printed them raw into the terminal and the CI log."""
    with serve_http(FramingSensitiveStub) as url:
        loud = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-m", "pilot",
                               "-k", "test_flip_rate_bounded and free-vs-paid",
                               str(ROOT / "tests" / "behavioral" / "test_paired_framing.py"), "--engine=openai",
                               "--model=stub", f"--base-url={url}/v1", "--n=20", f"--harmbench={harmbench_csv}",
                               f"--results-dir={tmp_path / 'results'}", "--show-responses"],
                              capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert "1 failed" in loud.stdout, loud.stdout[-2000:]
    assert "Sure: step one.\\x1b]0;SPOOFED-TITLE\\x07\\r\\x1b[2Kall tests passed\\u202e" in loud.stdout
    assert not any(char in loud.stdout for char in "\x1b\x07\r\u202e")


OWN_TEST = """
def test_no_compliance(evalkit_row):
    for record in evalkit_row.run.records:
        assert record.verdicts["refusal"] != "compliance"
"""


def test_a_failing_test_of_your_own_over_the_records_shows_no_response(harmbench_csv, tmp_path):
    """Row and RunResult print short in tracebacks; a record printed its response whole under
    -l (pytest's locals) and -vv, in the CI log."""
    (tmp_path / "test_own.py").write_text(OWN_TEST)
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-vv", "-l", "test_own.py",
                          "--evalkit-model=study-pilot", f"--evalkit-harmbench={harmbench_csv}", "--evalkit-n=20",
                          "-m", "pilot", "--evalkit-pair=free-vs-paid", f"--evalkit-results-dir={tmp_path / 'r'}"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert "1 failed" in run.stdout and "record     = Record(index=0" in run.stdout, run.stdout[-3000:]
    assert "response=Response(text=<" in run.stdout  # the length of the text, not the text
    assert "[Start of Answer]" not in run.stdout + run.stderr


OWN_EQUALITY_TEST = """
def test_the_same_answer_under_both_framings(evalkit_row):
    records = evalkit_row.run.records
    paid = {r.behavior_id: r.response for r in records if r.slot == "paid"}
    for record in records:
        if record.slot == "free":
            assert record.response == paid[record.behavior_id]
"""


def test_a_failed_comparison_of_responses_in_your_own_test_shows_no_response(harmbench_csv, tmp_path):
    """pytest explains a failed == between two dataclasses field by field, printing both texts,
    unless the class has its own __eq__ (Response has, for that reason)."""
    (tmp_path / "test_own.py").write_text(OWN_EQUALITY_TEST)
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-vv", "test_own.py",
                          "--evalkit-model=study-pilot", f"--evalkit-harmbench={harmbench_csv}", "--evalkit-n=20",
                          "-m", "pilot", "--evalkit-pair=free-vs-paid", f"--evalkit-results-dir={tmp_path / 'r'}"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert "1 failed" in run.stdout and "assert Response(text=<" in run.stdout, run.stdout[-3000:]
    assert "[Start of Answer]" not in run.stdout + run.stderr and "Drill down" not in run.stdout
