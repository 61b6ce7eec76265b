"""The run store under attack: nothing lost, nothing duplicated, nothing silently trusted.

Each test is one attack from issue 11, asserting its outcome: a run file is never
overwritten by an export, a second writer through a symlink waits for the first, an
OSError or a malformed store file is a one-line error naming the file (with no temp
file left), and a record log edited, truncated or duplicated after completion is
refused by every reader.
"""

import builtins
import errno
import json
import os
import re
import threading

import pytest

from evalkit import analysis, runs
from evalkit.engines import EngineConfig, Response
from evalkit.engines.sim import SimEngine
from evalkit.errors import InputError, RunStoreError
from evalkit.export import export_run
from evalkit.runs import LOCK, MANIFEST, RECORDS, Record, execute, load_run, read_records
from evalkit.suites import SessionConfig, prepare

pytestmark = pytest.mark.unit


@pytest.fixture
def session(synthetic_csv, tmp_path):
    return prepare(SessionConfig(models=("study-pilot",), harmbench=str(synthetic_csv), suites=("pilot",),
                                 pairs=("free-vs-paid",), n=8, batch_size=4, results_dir=str(tmp_path / "results")))


def sim():
    return SimEngine(EngineConfig(model="study-pilot"))


def finished(session):
    plan = session.plans[0]
    return execute(plan.spec, plan.schedule, session.store, sim, session.judges)


def store_files(root):
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def one_line(message: str) -> bool:
    return "\n" not in message and "Traceback" not in message


# ---------------------------------------------------------------- 1. export never overwrites the run


def test_default_export_lands_outside_the_run_and_the_run_stays_readable(session):
    run = finished(session)
    before = store_files(run.run_dir)
    for fmt in ("jsonl", "csv"):
        target = export_run(run.run_dir, fmt)
        assert run.run_dir.resolve() not in target.resolve().parents
        assert target.exists()
    assert store_files(run.run_dir) == before
    manifest, records = load_run(run.run_dir)  # still trusted
    assert manifest["status"] == "complete" and len(records) == 16


@pytest.mark.parametrize("victim", [RECORDS, MANIFEST, "LOCK"])
def test_export_refuses_to_write_over_a_run_file(session, tmp_path, victim):
    run = finished(session)
    target = run.run_dir.with_name(run.run_dir.name + LOCK) if victim == "LOCK" else run.run_dir / victim
    link = tmp_path / "link-to-run"
    link.symlink_to(run.run_dir, target_is_directory=True)
    before = store_files(session.store.runs_dir)
    for output in (target, link / victim if victim != "LOCK" else target):
        with pytest.raises(InputError, match="--output") as info:
            export_run(run.run_dir, "jsonl", output)
        assert one_line(str(info.value))
    assert store_files(session.store.runs_dir) == before
    # an explicit path inside the run directory that is not a run file is the user's choice
    mine = export_run(run.run_dir, "csv", run.run_dir / "mine.csv")
    assert mine.exists() and load_run(run.run_dir)[0]["status"] == "complete"


# ---------------------------------------------------------------- 4. one lock per real directory


class BlockingEngine(SimEngine):
    """Holds the run (and its lock) in its first batch until released."""

    def __init__(self, started, release):
        super().__init__(EngineConfig(model="study-pilot"))
        self.started, self.release = started, release

    def generate(self, requests):
        self.started.set()
        assert self.release.wait(30)
        return super().generate(requests)


def test_a_second_writer_through_a_symlink_waits_and_duplicates_nothing(session, tmp_path):
    plan = session.plans[0]
    real = session.store.run_dir(plan.spec)
    link = tmp_path / "via-link"
    real.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(real, target_is_directory=True)  # dangling until the first writer creates the run
    started, release, second_booted = threading.Event(), threading.Event(), threading.Event()
    results, errors = {}, []

    def first():
        try:
            results["first"] = execute(plan.spec, plan.schedule, session.store,
                                       lambda: BlockingEngine(started, release), session.judges)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def second():
        def provider():
            second_booted.set()
            return sim()
        try:
            results["second"] = execute(plan.spec, plan.schedule, session.store, provider, session.judges,
                                        run_dir=link)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    writer = threading.Thread(target=first)
    writer.start()
    assert started.wait(30)
    rival = threading.Thread(target=second)
    rival.start()
    # while the first writer holds the run, the second must not even boot an engine
    assert not second_booted.wait(3), "the second writer did not wait for the run's lock"
    release.set()
    writer.join(60)
    rival.join(60)
    assert not errors, errors
    assert results["second"].reused and not second_booted.is_set()
    lines = (real / RECORDS).read_text().splitlines()
    assert len(lines) == len(plan.schedule)
    assert [r.index for r in load_run(link)[1]] == list(range(len(plan.schedule)))


# ---------------------------------------------------------------- 8. OSErrors and malformed files


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_disk_full_at_the_final_manifest_write_is_an_error_and_leaves_no_temp_file(session, monkeypatch, failing):
    plan = session.plans[0]
    armed = {"on": False}

    def progress(done, total):
        armed["on"] = done == total  # every record is durable; the manifest write comes next

    real = getattr(os, failing)

    def disk_full(*args, **kwargs):
        if armed["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(os, failing, disk_full)
    with pytest.raises(RunStoreError) as info:
        execute(plan.spec, plan.schedule, session.store, sim, session.judges, progress=progress)
    monkeypatch.undo()
    assert MANIFEST in str(info.value) and "No space left" in str(info.value) and one_line(str(info.value))
    leftovers = [p.name for p in session.store.results_dir.rglob("*") if "tmp" in p.name]
    assert leftovers == []
    again = execute(plan.spec, plan.schedule, session.store, sim, session.judges)  # space is back: it completes
    assert again.generated == 0 and load_run(again.run_dir)[0]["status"] == "complete"


def test_a_torn_tail_that_cannot_be_repaired_is_an_error_naming_the_file(session, monkeypatch):
    run = finished(session)
    manifest = json.loads((run.run_dir / MANIFEST).read_text())
    manifest["status"] = "running"
    (run.run_dir / MANIFEST).write_text(json.dumps(manifest))
    log = run.run_dir / RECORDS
    log.write_bytes(log.read_bytes()[:-40])  # a torn last line
    real_open = builtins.open

    def read_only(file, mode="r", *args, **kwargs):
        if str(file).endswith(RECORDS) and any(flag in mode for flag in "wa+"):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", read_only)
    with pytest.raises(RunStoreError) as info:
        execute(session.plans[0].spec, session.plans[0].schedule, session.store, sim, session.judges)
    assert RECORDS in str(info.value) and "Permission denied" in str(info.value) and one_line(str(info.value))


def _damage(run_dir, how):
    manifest_path, log = run_dir / MANIFEST, run_dir / RECORDS
    if how == "manifest is a list":
        manifest_path.write_text("[1, 2, 3]\n")
    elif how == "manifest is not JSON":
        manifest_path.write_text("{\"spec\": ")
    elif how == "manifest spec is a string":
        manifest = json.loads(manifest_path.read_text())
        manifest["spec"] = "x"
        manifest_path.write_text(json.dumps(manifest))
    elif how == "manifest is a directory":
        manifest_path.unlink()
        manifest_path.mkdir()
    elif how == "records is a directory":
        log.unlink()
        log.mkdir()
    elif how == "records are not UTF-8":
        log.write_bytes(b"\xff\xfe" + log.read_bytes())


@pytest.mark.parametrize("how", ["manifest is a list", "manifest is not JSON", "manifest spec is a string",
                                 "manifest is a directory", "records is a directory", "records are not UTF-8"])
def test_malformed_store_files_are_one_line_errors_naming_the_file(session, how):
    run = finished(session)
    _damage(run.run_dir, how)
    plan = session.plans[0]
    for read in (lambda: load_run(run.run_dir),
                 lambda: execute(plan.spec, plan.schedule, session.store, sim, session.judges)):
        with pytest.raises(RunStoreError) as info:
            read()
        message = str(info.value)
        assert (MANIFEST in message or RECORDS in message) and one_line(message), message


# ---------------------------------------------------------------- 9. integrity on read


def _edit_lines(log, edit):
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(edit(lines)))


def _flip(line):
    data = json.loads(line)
    verdict = data["verdicts"]["refusal"]
    data["verdicts"]["refusal"] = "compliance" if verdict == "refusal" else "refusal"
    return json.dumps(data, ensure_ascii=False) + "\n"


def test_hand_edited_verdicts_are_refused_by_every_reader(session):
    run = finished(session)
    _edit_lines(run.run_dir / RECORDS, lambda lines: [_flip(line) if i in (1, 4, 9) else line
                                                      for i, line in enumerate(lines)])
    plan = session.plans[0]
    for read in (lambda: load_run(run.run_dir), lambda: export_run(run.run_dir, "csv"),
                 lambda: execute(plan.spec, plan.schedule, session.store, sim, session.judges)):
        with pytest.raises(RunStoreError, match="cannot be trusted") as info:
            read()
        assert RECORDS in str(info.value) and one_line(str(info.value))


def test_an_unknown_verdict_label_is_an_error_not_a_non_refusal(session):
    run = finished(session)

    def banana(lines):
        data = json.loads(lines[0])
        data["verdicts"]["refusal"] = "banana"
        return [json.dumps(data) + "\n"] + lines[1:]

    _edit_lines(run.run_dir / RECORDS, banana)
    with pytest.raises(RunStoreError, match="cannot be trusted"):
        load_run(run.run_dir)
    # a well-formed line (its checksum holds) with an unknown label is refused for the label
    lines = (run.run_dir / RECORDS).read_bytes().splitlines(keepends=True)
    data = json.loads(lines[0])
    data.pop("checksum", None)
    (run.run_dir / RECORDS).write_bytes(runs.encode_line(data) + b"".join(lines[1:]))
    with pytest.raises(RunStoreError, match="unknown verdict label 'banana'"):
        read_records(run.run_dir / RECORDS)
    # the statistics refuse it too, whoever hands them the records
    record = Record(0, "b", "free", "free", 0, 0, "", "", Response("x"), {"refusal": "banana"})
    twin = Record(1, "b", "paid", "paid", 1, 0, "", "", Response("x"), {"refusal": "refusal"})
    with pytest.raises(ValueError, match="banana"):
        analysis.paired_outcomes([record, twin], "refusal")


@pytest.mark.parametrize("how", ["delete a line", "duplicate a line", "delete the log", "empty the log",
                                 "append a valid record"])
def test_a_finished_run_with_missing_or_extra_records_is_refused(session, how):
    run = finished(session)
    log = run.run_dir / RECORDS
    if how == "delete a line":
        _edit_lines(log, lambda lines: lines[:5] + lines[6:])
    elif how == "duplicate a line":
        _edit_lines(log, lambda lines: lines[:5] + [lines[5]] + lines[5:])
    elif how == "delete the log":
        log.unlink()
    elif how == "empty the log":
        log.write_text("")
    else:
        _edit_lines(log, lambda lines: lines + [lines[-1]])
    with pytest.raises(RunStoreError, match="cannot be trusted") as info:
        load_run(run.run_dir)
    assert RECORDS in str(info.value) and one_line(str(info.value))
    plan = session.plans[0]
    with pytest.raises(RunStoreError):
        execute(plan.spec, plan.schedule, session.store, sim, session.judges)


# ---------------------------------------------------------------- 10. the disk-full message tells the truth


def test_disk_full_mid_run_reports_exactly_the_records_that_survive(session, monkeypatch):
    plan = session.plans[0]
    real_open = builtins.open
    writes = {"n": 0}

    class FillsUp:
        """A record log on a disk that fills up during the third batch's write (half a batch lands)."""

        def __init__(self, handle):
            self.handle = handle

        def write(self, text):
            writes["n"] += 1
            if writes["n"] == 3:
                self.handle.write(text[: len(text) // 2])
                self.handle.flush()
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.handle.write(text)

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.handle.__exit__(*exc)

    def opener(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        return FillsUp(handle) if str(file).endswith(RECORDS) and "a" in mode else handle

    monkeypatch.setattr(builtins, "open", opener)
    with pytest.raises(RunStoreError) as info:
        execute(plan.spec, plan.schedule, session.store, sim, session.judges)
    monkeypatch.undo()
    survivors = read_records(session.store.run_dir(plan.spec) / RECORDS)
    claimed = int(re.search(r"(\d+) (?:completed )?records", str(info.value)).group(1))
    assert claimed == len(survivors) == 8


def test_a_run_stored_before_checksums_is_refused_with_a_clear_error(session):
    run = finished(session)
    manifest = json.loads((run.run_dir / MANIFEST).read_text())
    for key in ("record_format", "records_sha256"):
        del manifest[key]
    manifest["spec"]["spec_version"] = 1
    (run.run_dir / MANIFEST).write_text(json.dumps(manifest))
    lines = [json.loads(line) for line in (run.run_dir / RECORDS).read_text().splitlines()]
    (run.run_dir / RECORDS).write_text("".join(json.dumps({k: v for k, v in line.items() if k != "checksum"}) + "\n"
                                               for line in lines))
    with pytest.raises(RunStoreError, match="record format 1, without the checksums") as info:
        load_run(run.run_dir)
    assert one_line(str(info.value))
    assert session.plans[0].spec.spec_version == 2  # sessions look for a new run instead of this one
