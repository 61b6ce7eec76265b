"""The run store under real processes: SIGKILL and resume, a full disk, pytest-xdist."""

import filecmp
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evalkit.runs import read_records

ROOT = Path(__file__).resolve().parents[2]
SLOW = ROOT / "fixtures" / "profiles" / "slow.toml"
pytestmark = pytest.mark.slow


def run_args(harmbench_csv, results, *extra):
    return [sys.executable, "-m", "evalkit.cli", "run", "--model", str(SLOW), "--protocol", "randomized",
            "--n", "300", "--batch-size", "4", "--pair", "free-vs-paid", "--harmbench", str(harmbench_csv),
            "--results-dir", str(results), *extra]


def comparable(run_dir):
    return [(r.index, r.behavior_id, r.slot, r.batch, r.response.text, r.response.reasoning, r.verdicts)
            for r in read_records(Path(run_dir) / "records.jsonl")]


def only_run(results):
    runs = [p for p in (Path(results) / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 1
    return runs[0]


@pytest.fixture(scope="module")
def uninterrupted(harmbench_csv, tmp_path_factory):
    results = tmp_path_factory.mktemp("uninterrupted")
    subprocess.run(run_args(harmbench_csv, results), check=True, capture_output=True, timeout=300)
    return only_run(results)


@pytest.mark.parametrize("sync", ["every-batch", "every-64", "every-1000ms"])
def test_sigkill_midway_then_resume_matches_an_uninterrupted_run(harmbench_csv, tmp_path, uninterrupted, sync):
    killed = tmp_path / "killed"
    process = subprocess.Popen(run_args(harmbench_csv, killed, "--sync", sync), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.time() + 120
    log = None
    while time.time() < deadline:
        logs = list((killed / "runs").glob("*/records.jsonl")) if (killed / "runs").exists() else []
        if logs and logs[0].stat().st_size > 0 and len(logs[0].read_bytes().splitlines()) >= 150:
            log = logs[0]
            break
        time.sleep(0.02)
    assert log is not None, "the run never got going"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    partial = read_records(log)
    assert 150 <= len(partial) < 600
    manifest = json.loads((log.parent / "manifest.json").read_text())
    assert manifest["status"] == "running"
    resumed = subprocess.run(run_args(harmbench_csv, killed, "--sync", sync), capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at" in resumed.stderr
    final = comparable(log.parent)
    assert [r[0] for r in final] == list(range(600))  # no duplicates, no gaps
    assert final == comparable(uninterrupted)


@pytest.fixture
def tiny_disk(tmp_path):
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mount_point)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root): disk-full test not run")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=False)


def test_disk_full_stops_cleanly_with_completed_records_intact(harmbench_csv, tmp_path, tiny_disk):
    results = tiny_disk / "results"
    full = subprocess.run(run_args(harmbench_csv, results), capture_output=True, text=True, timeout=300)
    assert full.returncode == 2, full.stderr
    assert "disk full" in full.stderr and "Traceback" not in full.stderr
    run_dir = only_run(results)
    partial = read_records(run_dir / "records.jsonl")
    assert partial and [r.index for r in partial] == list(range(len(partial)))
    # move the results to a disk with room: the run resumes and completes as if never interrupted
    moved = tmp_path / "moved"
    shutil.copytree(results, moved)
    done = subprocess.run(run_args(harmbench_csv, moved), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    reference = tmp_path / "reference"
    subprocess.run(run_args(harmbench_csv, reference), check=True, capture_output=True, timeout=300)
    assert comparable(only_run(moved)) == comparable(only_run(reference))


def test_xdist_matches_serial_byte_for_byte(harmbench_csv, tmp_path):
    outputs = {}
    for workers in ("0", "4"):
        project = tmp_path / f"n{workers}"
        shutil.copytree(ROOT / "tests" / "behavioral", project / "tests" / "behavioral",
                        ignore=shutil.ignore_patterns("__evalkit_snapshots__", "__pycache__"))
        shutil.copy(ROOT / "pytest.ini", project)
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", workers, "--snapshot-update",
             f"--harmbench={harmbench_csv}", f"--results-dir={project / 'results'}", "--model=study-pilot",
             "--model=null"], cwd=project, capture_output=True, text=True, timeout=600)
        assert "evalkit summary" in result.stdout, result.stdout[-3000:] + result.stderr[-3000:]
        assert result.stdout.count("evalkit summary") == 1  # one table, not one per worker
        outputs[workers] = project
    a, b = outputs["0"], outputs["4"]
    assert (a / "results" / "summary.json").read_bytes() == (b / "results" / "summary.json").read_bytes()
    assert (a / "results" / "summary.md").read_bytes() == (b / "results" / "summary.md").read_bytes()
    snapshots_a = a / "tests" / "behavioral" / "__evalkit_snapshots__"
    snaps_a = sorted(p.relative_to(snapshots_a) for p in snapshots_a.rglob("*.toml"))
    assert len(snaps_a) == 8  # one file per alias, suite and pair
    for snap in snaps_a:
        assert filecmp.cmp(snapshots_a / snap, b / "tests" / "behavioral" / "__evalkit_snapshots__" / snap,
                           shallow=False)
    runs_a = sorted(p.name for p in (a / "results" / "runs").iterdir() if p.is_dir())
    runs_b = sorted(p.name for p in (b / "results" / "runs").iterdir() if p.is_dir())
    assert runs_a == runs_b and len(runs_a) == 8  # each (model, suite, pair) generated exactly once
    for name in runs_a:
        assert comparable(a / "results" / "runs" / name) == comparable(b / "results" / "runs" / name)
