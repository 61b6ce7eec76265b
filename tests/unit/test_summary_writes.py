"""summary.json and summary.md are one pair: written under a lock, switched together.

Attacks from issue 11: concurrent sessions writing summaries into one results directory
while a reader reads them, and a kill at any step of a write.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evalkit import report

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def row(model: str) -> dict:
    return {"model": model, "suite": "s", "pair": "p", "n": 0, "errors": 0, "verdict": "v", "checks": {},
            "run": "r"}


def visible_pair(directory: Path) -> tuple[str, str]:
    """The model named by summary.json, and by summary.md (which also must not name another)."""
    payload = json.loads((directory / "summary.json").read_text())
    md = (directory / "summary.md").read_text()
    models = [m for m in ("first", "second", "A", "B", "C") if f" {m} " in md]
    return payload["rows"][0]["model"], ",".join(models)


WRITER = """
import sys
from evalkit import report
name, directory = sys.argv[1], sys.argv[2]
for i in range(40):
    report.write_summary([{"model": name, "suite": "s", "pair": "p", "n": 0, "errors": 0, "verdict": "v",
                           "checks": {}, "run": "r"}], directory, meta={"writer": name, "i": i})
"""


def test_concurrent_writers_never_fail_and_readers_never_see_a_broken_file(tmp_path):
    report.write_summary([row("first")], tmp_path, meta={})
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, name, str(tmp_path)], stderr=subprocess.PIPE,
                                text=True, cwd=ROOT) for name in ("A", "B", "C")]
    reads = 0
    while any(w.poll() is None for w in writers):
        text = (tmp_path / "summary.json").read_text()
        payload = json.loads(text)  # never empty, never half-written
        assert payload["rows"][0]["model"] in ("first", "A", "B", "C")
        reads += 1
        time.sleep(0.001)
    errors = [w.stderr.read() for w in writers]
    assert [w.returncode for w in writers] == [0, 0, 0], errors
    assert reads > 0
    json_model, md_models = visible_pair(tmp_path)
    assert md_models == json_model  # the last writer's pair, whole
    leftovers = [p.name for p in tmp_path.rglob("*") if "tmp" in p.name]
    assert leftovers == []


class Killed(BaseException):
    """A kill: nothing after it runs (not even except-Exception handlers)."""


STEPS = ("replace", "rename", "symlink", "unlink", "rmdir", "mkdir", "fsync", "write")


@pytest.mark.parametrize("kill_at", range(1, 25))
def test_a_kill_at_any_step_leaves_one_sessions_pair(tmp_path, monkeypatch, kill_at):
    report.write_summary([row("first")], tmp_path, meta={})
    calls = {"n": 0}

    def deadly(name):
        real = getattr(os, name)

        def step(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == kill_at:
                raise Killed(name)
            return real(*args, **kwargs)
        return step

    for name in STEPS:
        monkeypatch.setattr(os, name, deadly(name))
    real_write_text = Path.write_text

    def write_text(self, *args, **kwargs):  # writes through pathlib count as steps too
        calls["n"] += 1
        if calls["n"] == kill_at:
            raise Killed("write_text")
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    try:
        report.write_summary([row("second")], tmp_path, meta={})
    except Killed:
        pass
    monkeypatch.undo()
    json_model, md_models = visible_pair(tmp_path)
    assert md_models == json_model, f"killed at step {kill_at}: json says {json_model}, md says {md_models}"
    # and the next session's write is whole again
    report.write_summary([row("second")], tmp_path, meta={})
    assert visible_pair(tmp_path) == ("second", "second")


@pytest.mark.parametrize("failing", ["write", "fsync"])
def test_disk_full_during_a_summary_write_is_one_line_and_keeps_the_last_pair(tmp_path, monkeypatch, failing):
    import builtins
    import errno
    import io

    from evalkit.errors import RunStoreError

    report.write_summary([row("first")], tmp_path, meta={})
    before = {p.relative_to(tmp_path) for p in tmp_path.rglob("*")}

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    real_open = builtins.open

    class Full(io.StringIO):
        def write(self, text):
            disk_full()

    def opener(file, mode="r", *args, **kwargs):
        if "w" in mode and "summary" in str(file):
            real_open(file, mode, *args, **kwargs).close()  # the file is created, then the disk is full
            return Full()
        return real_open(file, mode, *args, **kwargs)

    if failing == "fsync":
        monkeypatch.setattr(os, "fsync", disk_full)
    else:
        monkeypatch.setattr(builtins, "open", opener)
        monkeypatch.setattr(io, "open", opener)
    with pytest.raises(RunStoreError) as info:
        report.write_summary([row("second")], tmp_path, meta={})
    monkeypatch.undo()
    message = str(info.value)
    assert "disk full" in message and "\n" not in message and str(tmp_path) in message
    assert visible_pair(tmp_path) == ("first", "first")
    assert {p.relative_to(tmp_path) for p in tmp_path.rglob("*")} == before  # nothing half-written left
