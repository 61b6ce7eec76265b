"""The behavioural suite itself, driven through pytest, on the real vLLM engine (CPU, tiny model)."""

import json

import pytest

from .conftest import run_behavioral_suite

pytestmark = pytest.mark.vllm


def run_suite(tiny_model_dir, harmbench_csv, results, *extra):
    return run_behavioral_suite(results, "--engine", "vllm", f"--model={tiny_model_dir}", "--n", "6",
                                "--max-tokens", "8", "--max-model-len", "512", "--dtype", "float32",
                                f"--harmbench={harmbench_csv}", *extra, timeout=900)


def test_suite_runs_on_vllm_and_reuses_runs(tiny_model_dir, harmbench_csv, tmp_path):
    results = tmp_path / "results"
    first = run_suite(tiny_model_dir, harmbench_csv, results)
    assert "evalkit summary" in first.stdout, first.stdout[-3000:] + first.stderr[-3000:]
    summary = json.loads((results / "summary.json").read_text())
    assert {(r["suite"], r["pair"]) for r in summary["rows"]} == {
        ("pilot", "free-vs-paid"), ("pilot", "aa-control"), ("replication", "free-vs-paid"),
        ("replication", "aa-control")}
    assert all(r["n"] + 0 <= 6 for r in summary["rows"])
    manifests = {p: p.read_text() for p in results.glob("runs/*/manifest.json")}
    assert len(manifests) == 4
    spec = json.loads(next(iter(manifests.values())))["spec"]
    assert spec["engine"] == "vllm" and spec["engine_config"]["options"]["dtype"] == "float32"
    assert spec["engine_config"]["identity"]["vllm_version"]
    second = run_suite(tiny_model_dir, harmbench_csv, results)
    assert "evalkit summary" in second.stdout
    # all four runs reused: no manifest or record log was touched
    assert {p: p.read_text() for p in results.glob("runs/*/manifest.json")} == manifests
    again = json.loads((results / "summary.json").read_text())
    assert again["rows"] == summary["rows"]
    assert summary["meta"]["engine_boots"] == {f"vllm:{tiny_model_dir}": 1}  # one boot for four runs
    assert again["meta"]["engine_boots"] == {}  # every run reused: no engine booted
