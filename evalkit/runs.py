"""Executing a run, step by step: reuse, resume, retry, generate, judge.

``execute`` makes sure the run of a specification is complete in the store and returns its
records. Under the run's lock it takes one path: **reuse** a complete run (judging stored
responses for judges added or changed since: ``evalkit.rejudge``), **retry** the batches of a
complete run whose requests failed, or **resume** an unfinished (or new) run from its first
incomplete batch; the **generate** step appends batches to the record log at the ``SyncPolicy``'s
cadence. The store itself (records, manifests, checksums, the lock) is ``evalkit.runs_store``;
its names are importable from here too, where the rest of evalkit has always found them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .engines import Engine, engine_requests
from .errors import RunStoreError
from .judges import ERROR, Judge, judge_all, unjudgeable
from .protocols import Request, Schedule
from .rejudge import ensure_verdicts, judge_identity, judge_key, stale_judges
from .runs_store import (
    CHECKSUM,
    COMPLETE,
    DEFAULT_SYNC,
    LOCK,
    MANIFEST,
    RECORD_CLOCK,
    RECORD_FORMAT,
    RECORDS,
    RUNNING,
    SPEC_VERSION,
    UNTRUSTED,
    VERDICTS_DIR,
    Record,
    RunResult,
    RunSpec,
    RunStore,
    SyncPolicy,
    atomic_write,
    canonical_json,
    decode_line,
    encode_line,
    file_sha256,
    git_revision,
    is_store_file,
    load_manifest,
    load_run,
    now_iso,
    read_records,
    read_run_records,
    run_lock,
    run_locked,
    write_manifest,
)
from .safety import redact_error

__all__ = ["CHECKSUM", "COMPLETE", "DEFAULT_SYNC", "LOCK", "MANIFEST", "RECORDS", "RECORD_FORMAT", "RUNNING",
           "SPEC_VERSION", "UNTRUSTED", "VERDICTS_DIR", "EngineProvider", "Record", "RunResult", "RunSpec", "RunStore",
           "SyncPolicy", "canonical_json", "decode_line", "encode_line", "execute", "file_sha256", "is_store_file",
           "judge_identity", "judge_key", "load_manifest", "load_run", "read_records", "read_run_records", "run_lock"]

EngineProvider = Callable[[], Engine]
Progress = Callable[[int, int], None]
Manifest = dict[str, Any]
RETRYING = "retrying"  # in a running manifest: a retry of a complete run's failed batches was under way


@dataclass(frozen=True)
class RunJob:
    """One call of ``execute``: what to run, where, with what, and how to report it."""

    spec: RunSpec
    schedule: Schedule
    run_dir: Path
    engine_provider: EngineProvider
    judges: Sequence[Judge]
    manifest_extra: dict[str, Any]
    session_id: str | None
    progress: Progress | None
    sync: SyncPolicy

    @property
    def records_path(self) -> Path:
        return self.run_dir / RECORDS


def execute(
    spec: RunSpec,
    schedule: Schedule,
    store: RunStore,
    engine_provider: EngineProvider,
    judges: Sequence[Judge],
    *,
    manifest_extra: dict[str, Any] | None = None,
    fresh: bool = False,
    session_id: str | None = None,
    run_dir: Path | None = None,
    progress: Progress | None = None,
    sync: SyncPolicy = DEFAULT_SYNC,
) -> RunResult:
    """Make sure the run for ``spec`` is complete in the store and return its records.

    Holds a file lock on the (real) run directory, so parallel workers generate each run
    once: the first generates (or resumes), the others wait and then reuse. The engine is
    only requested from ``engine_provider`` when something must be generated.
    """
    if schedule.sha256() != spec.schedule_sha256:
        raise RunStoreError("schedule does not match the specification's schedule hash")
    run_dir = Path(run_dir) if run_dir else store.run_dir(spec)
    try:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunStoreError(f"{run_dir.parent}: cannot create ({exc.strerror or exc})") from None
    job = RunJob(spec, schedule, run_dir, engine_provider, judges, manifest_extra or {}, session_id, progress, sync)
    with run_locked(run_dir):
        if fresh:
            _discard_for_fresh(job)
        manifest = _existing_manifest(job)
        if manifest is None or manifest["status"] != COMPLETE:
            return _resume(job, manifest)
        return _reuse_or_retry(job, manifest)


# ---------------------------------------------------------------- the steps


def _discard_for_fresh(job: RunJob) -> None:
    """--fresh means "generate again in this session", once: another worker of the same
    session (pytest-xdist) that already regenerated this run is not undone."""
    if not job.run_dir.exists():
        return
    generated_here = False
    if job.session_id is not None and (job.run_dir / MANIFEST).exists():
        with contextlib.suppress(RunStoreError):  # an unreadable or old run is what --fresh replaces
            generated_here = load_manifest(job.run_dir).get("session_id") == job.session_id
    if not generated_here:
        _remove_run(job.run_dir)


def _existing_manifest(job: RunJob) -> Manifest | None:
    """The run directory's manifest, if any; it must hold this very specification."""
    path = job.run_dir / MANIFEST
    if not (path.exists() or path.is_symlink()):
        return None
    manifest = load_manifest(job.run_dir)
    differing = job.spec.differences(manifest["spec"])
    if differing:
        raise RunStoreError(
            f"{job.run_dir} holds a run with a different specification (fields differ: {', '.join(differing)}); "
            "use another results directory or --fresh")
    return manifest


def _reuse_or_retry(job: RunJob, manifest: Manifest) -> RunResult:
    """A complete run: reused, unless requests failed and this session has not retried them yet."""
    records = read_run_records(job.run_dir, manifest)
    _check_complete(records, job.spec, job.run_dir)
    failed = sorted({r.batch for r in records if r.response.error is not None})
    misjudged = [r.index for r in records if r.batch not in failed and judge_failed(r, job.judges)]
    if not (failed or misjudged) or _retried_in_this_session(manifest, job.session_id):
        return _reuse(job, manifest, records)
    return _retry(job, manifest, records, failed, misjudged)


def judge_failed(record: Record, judges: Sequence[Judge]) -> bool:
    """One of ``judges`` labelled a judgeable response an error: its own engine failed (a model
    judge's server was down). The response stands; a new session judges it again, as it retries
    a failed request."""
    return (any(record.verdicts.get(j.name) == ERROR for j in judges)
            and unjudgeable(record.response, "") is None)


def _retried_in_this_session(manifest: Manifest, session_id: str | None) -> bool:
    """Generated, resumed or already retried in this very session (another xdist worker, the summary):
    retrying again now would only repeat the same calls."""
    return session_id is not None and session_id in (manifest.get("session_id"), manifest.get("retried_in_session"),
                                                     manifest.get("resumed_in_session"))


def _reuse(job: RunJob, manifest: Manifest, records: list[Record]) -> RunResult:
    records = _judge(job, manifest, records)
    return RunResult(job.run_dir, job.spec, records, reused=True, resumed_from=len(records), generated=0,
                     records_sha256=manifest["records_sha256"])


def _retry(job: RunJob, manifest: Manifest, records: list[Record], failed: Sequence[int],
           misjudged: Sequence[int] = ()) -> RunResult:
    """Failed requests are not results: retry their batches (whole batches, so each is generated
    with the composition the schedule gives it) and keep the rest. Responses a judge failed on
    (``misjudged``) are judged again, not generated again."""
    replaced: dict[int, Record] = {}
    if failed:
        engine = job.engine_provider()
        by_batch = {b[0].batch: b for b in job.schedule.batches()}
        for batch_index in failed:
            _prepare_engine(engine, [r for r in records if r.batch < batch_index], job.schedule)
            for record in _generate_batch(engine, by_batch[batch_index], job.judges):
                replaced[record.index] = record
    generated = len(replaced)
    if misjudged:
        again = [records[index] for index in misjudged]  # records are 0..n-1 in order (_check_complete)
        requests, responses = [job.schedule.requests[r.index] for r in again], [r.response for r in again]
        by_judge = {j.name: judge_all(j, requests, responses) for j in job.judges}
        for position, record in enumerate(again):
            replaced[record.index] = dataclasses.replace(record, verdicts={
                **record.verdicts, **{name: labels[position].label for name, labels in by_judge.items()}})
    records = [replaced.get(r.index, r) for r in records]
    # The log changes under a complete manifest's digest: mark the run running first, so a kill
    # before the manifest is rewritten leaves a run that resumes (and retries what it still
    # lacks), not a complete run whose log no longer matches its digest.
    write_manifest(job.run_dir, {**manifest, "status": RUNNING, RETRYING: True})
    _drop_verdict_sets(job.run_dir)  # judged on failed responses, or by a failed judge: judged again when asked for
    _rewrite_records(job.records_path, records)
    stale = _stale(job, manifest)
    manifest.update(retried_in_session=job.session_id, retried_batches=len(failed), rejudged_records=len(misjudged),
                    finished_at=now_iso(),
                    records_sha256=file_sha256(job.records_path), judges=_judges_entry(job, manifest))
    write_manifest(job.run_dir, manifest)
    records = ensure_verdicts(job.run_dir, records, job.schedule, job.judges, stale)
    return RunResult(job.run_dir, job.spec, records, reused=False, resumed_from=len(records), generated=generated,
                     records_sha256=manifest["records_sha256"])


def _resume(job: RunJob, manifest: Manifest | None) -> RunResult:
    """Generate a new run, or the rest of an unfinished one from its first incomplete batch."""
    engine = None
    if manifest is None:
        engine = job.engine_provider()  # boot first: an engine that cannot start leaves no run directory behind
        manifest = _create_run(job)
    stale = _stale(job, manifest)
    records = _complete_prefix(job)
    resumed_from = len(records)
    batches = [b for b in job.schedule.batches() if b[0].batch >= _batches_of(records)]
    generated = 0
    if batches:
        engine = engine or job.engine_provider()
        _prepare_engine(engine, records, job.schedule)
        generated = _append_batches(job, records, batches, engine)
    _check_complete(records, job.spec, job.run_dir)
    # records written before an interruption may lack a judge added (or changed) on resume
    records = ensure_verdicts(job.run_dir, records, job.schedule, job.judges, stale)
    retrying = manifest.pop(RETRYING, False)
    if not retrying and manifest.get("session_id") != job.session_id:
        # this session generated what the run lacked: executed again in it, the run is reused as it is
        manifest["resumed_in_session"] = job.session_id
    manifest.update(status=COMPLETE, finished_at=now_iso(), n_records=len(records), record_format=RECORD_FORMAT,
                    records_sha256=file_sha256(job.records_path), judges=_judges_entry(job, manifest))
    write_manifest(job.run_dir, manifest)
    if retrying:  # a retry was killed: its failed requests may still be there
        return _reuse_or_retry(job, manifest)
    return RunResult(job.run_dir, job.spec, records, reused=False, resumed_from=resumed_from, generated=generated,
                     records_sha256=manifest["records_sha256"])


def _create_run(job: RunJob) -> Manifest:
    try:
        job.run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunStoreError(f"{job.run_dir}: cannot create ({exc.strerror or exc})") from None
    manifest: Manifest = {
        "spec": job.spec.identity(), "spec_sha256": job.spec.sha256(), "status": RUNNING,
        "record_format": RECORD_FORMAT, "evalkit_version": __version__, "git_revision": git_revision(),
        "started_at": now_iso(), "finished_at": None, "judges": {j.name: judge_identity(j) for j in job.judges},
        "session_id": job.session_id, **job.manifest_extra}
    write_manifest(job.run_dir, manifest)
    return manifest


def _complete_prefix(job: RunJob) -> list[Record]:
    """The records of the complete batches at the head of the log (a torn last line repaired away).
    The first incomplete batch restarts from its beginning: a batch is the engine's unit of work,
    and a partial batch would be generated with a different composition."""
    records = read_records(job.records_path, repair=True)
    done_batches = _complete_batches(records, job.schedule)
    keep = [r for r in records if r.batch in done_batches]
    if len(keep) != len(records):
        _rewrite_records(job.records_path, keep)
    return keep


def _batches_of(records: Sequence[Record]) -> int:
    """How many batches ``records`` (complete batches 0, 1, 2, ... in order) hold."""
    return records[-1].batch + 1 if records else 0


# ---------------------------------------------------------------- judging


def _stale(job: RunJob, manifest: Manifest) -> set[str]:
    return stale_judges(manifest.get("judges", {}), job.judges)


def _judge(job: RunJob, manifest: Manifest, records: list[Record]) -> list[Record]:
    return ensure_verdicts(job.run_dir, records, job.schedule, job.judges, _stale(job, manifest))


def _judges_entry(job: RunJob, manifest: Manifest) -> dict[str, Any]:
    """The manifest's judges: those recorded before, updated with this call's."""
    return {**manifest.get("judges", {}), **{j.name: judge_identity(j) for j in job.judges}}


# ---------------------------------------------------------------- generating


def _append_batches(job: RunJob, records: list[Record], batches: Sequence[Sequence[Request]], engine: Engine) -> int:
    """Generate ``batches`` and append each to the log: handed to the operating system at
    every batch boundary (a killed process loses at most its batch in flight), fsynced when
    the sync policy says so, after the last batch (the manifest may only say complete once every
    record is durable) and before an error propagates. ``records`` grows by each batch once
    it is written. On an OSError the log is cut back to its last complete batch and the
    error says how many records that keeps."""
    generated = pending = 0
    try:
        with open(job.records_path, "ab") as log:
            synced_at = time.monotonic()
            try:
                for number, batch in enumerate(batches, start=1):
                    new = _generate_batch(engine, batch, job.judges)
                    # the last batch always: progress reporting the whole run means durable
                    due = _write_batch(log, new, number == len(batches) or job.sync.due(
                        pending + len(new), time.monotonic() - synced_at))
                    records += new
                    generated += len(batch)
                    pending = 0 if due else pending + len(new)
                    if due:
                        synced_at = time.monotonic()
                    if job.progress:
                        job.progress(len(records), len(job.schedule))
            finally:
                if pending:  # also when the engine raised: what was written becomes durable
                    os.fsync(log.fileno())
    except OSError as exc:
        full = "; disk full" if exc.errno == errno.ENOSPC else ""
        raise RunStoreError(f"{job.records_path}: writing failed ({exc.strerror or exc}{full}); the {len(records)} "
                            "records of completed batches are intact and the run resumes from there") from None
    return generated


def _write_batch(log: Any, new: Sequence[Record], due: bool) -> bool:
    """Append a batch's lines (fsynced if ``due``); on an OSError cut the torn batch away first."""
    written = log.tell()
    try:
        log.write(b"".join(r.to_line() for r in new))
        log.flush()
        if due:
            os.fsync(log.fileno())
    except OSError:
        with contextlib.suppress(OSError):  # a torn batch would be discarded on resume anyway
            log.truncate(written)
        raise
    return due


def _prepare_engine(engine: Engine, done: Sequence[Record], schedule: Schedule) -> None:
    """Start the engine's run state afresh (an engine serves many runs in a session), then
    let a stateful engine replay what this run already answered (resume, retry)."""
    engine.reset()
    if done:
        engine.restore(engine_requests([schedule.requests[r.index] for r in done]))


def _generate_batch(engine: Engine, batch: Sequence[Request], judges: Sequence[Judge]) -> list[Record]:
    started = RECORD_CLOCK()
    responses = engine.generate(engine_requests(batch))
    if len(responses) != len(batch):
        raise RunStoreError(f"engine returned {len(responses)} responses for a batch of {len(batch)}")
    finished = RECORD_CLOCK()
    # an engine's error text may quote a URL with credentials or an echoed key
    responses = [dataclasses.replace(r, error=redact_error(r.error)) if r.error else r for r in responses]
    by_judge = {j.name: judge_all(j, batch, responses) for j in judges}
    return [Record(request.index, request.behavior_id, request.framing_id, request.slot, request.position,
                   request.batch, started, finished, response,
                   {name: labels[position].label for name, labels in by_judge.items()})
            for position, (request, response) in enumerate(zip(batch, responses))]


# ---------------------------------------------------------------- the log and the run directory


def _complete_batches(records: list[Record], schedule: Schedule) -> set[int]:
    sizes: dict[int, int] = {}
    for request in schedule.requests:
        sizes[request.batch] = sizes.get(request.batch, 0) + 1
    seen: dict[int, set[int]] = {}
    for index, record in enumerate(records):
        expected = schedule.requests[index] if index < len(schedule.requests) else None
        if expected is None or expected.index != record.index or expected.behavior_id != record.behavior_id:
            raise RunStoreError(f"record {index} does not match the schedule (index {record.index}); "
                                "the record log belongs to another run")
        seen.setdefault(record.batch, set()).add(record.index)
    complete, expected_batch = set(), 0
    for batch in sorted(seen):
        if batch != expected_batch or len(seen[batch]) != sizes[batch]:
            break
        complete.add(batch)
        expected_batch += 1
    return complete


def _check_complete(records: list[Record], spec: RunSpec, run_dir: Path) -> None:
    indices = [r.index for r in records]
    if indices != list(range(spec.n_requests)):
        raise RunStoreError(f"{run_dir}: expected records 0..{spec.n_requests - 1} in order, found {len(indices)} "
                            "records with gaps or duplicates")


def _rewrite_records(path: Path, records: Iterable[Record]) -> None:
    atomic_write(path, b"".join(record.to_line() for record in records))


def _drop_verdict_sets(run_dir: Path) -> None:
    try:
        for path in (run_dir / VERDICTS_DIR).glob("*.jsonl"):
            path.unlink()
    except OSError as exc:
        raise RunStoreError(f"{run_dir / VERDICTS_DIR}: cannot remove stale verdicts ({exc.strerror or exc})") \
            from None


def _remove_run(run_dir: Path) -> None:
    """Move the run aside in one rename, then delete it: a kill (or a reader) sees the whole old
    run or none, never a complete manifest whose records are already gone."""
    discarded = run_dir.with_name(f".{run_dir.name}.discarded")
    try:
        if discarded.exists():  # left behind by a kill during an earlier --fresh
            _delete_tree(discarded)
        os.rename(run_dir, discarded)
        _delete_tree(discarded)
    except OSError as exc:
        raise RunStoreError(f"{run_dir}: cannot remove the old run ({exc.strerror or exc})") from None


def _delete_tree(directory: Path) -> None:
    for child in sorted(directory.rglob("*"), reverse=True):
        child.unlink() if child.is_file() or child.is_symlink() else child.rmdir()
    directory.rmdir()
