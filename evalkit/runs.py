"""The run store: manifests, append-only records, resume, reuse and a lock for parallel workers.

A run directory holds ``manifest.json`` (the full specification, its hash, status and
provenance) and ``records.jsonl`` (one line per executed request, written in schedule
order, flushed and fsynced at every batch boundary). The specification's hash is the
run's identity: a finished run with the same specification is reused instead of
generating again; an unfinished one is resumed from its first incomplete batch.
Re-judging stored generations writes a new verdict set under ``verdicts/``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import errno
import hashlib
import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from filelock import FileLock

from . import __version__
from .engines import Engine, Response
from .errors import RunStoreError
from .judges import Judge, Verdict, judge_all
from .protocols import Request, Schedule

MANIFEST, RECORDS, VERDICTS_DIR, LOCK = "manifest.json", "records.jsonl", "verdicts", ".lock"
COMPLETE, RUNNING = "complete", "running"
SPEC_VERSION = 1


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def git_revision() -> str | None:
    """The evalkit checkout's git revision, when it runs from one."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a run's generations. Its hash is the run's identity.

    Paths are provenance, not identity: the same dataset file (by sha256) or framing
    texts (by hash) at another path is the same experiment, so CI clones reuse runs.
    """

    model: str
    engine: str
    engine_config: dict
    framing_set: str
    framing_texts_sha256: str
    pair: str
    pair_kind: str
    protocol: str
    seed: int
    batch_size: int
    dataset_sha256: str
    selection: str
    n_behaviors: int
    schedule_sha256: str
    n_requests: int
    spec_version: int = SPEC_VERSION

    def identity(self) -> dict:
        return dataclasses.asdict(self)

    def sha256(self) -> str:
        return hashlib.sha256(canonical_json(self.identity()).encode()).hexdigest()

    def differences(self, other: dict) -> list[str]:
        mine = self.identity()
        keys = sorted(set(mine) | set(other))
        return [k for k in keys if mine.get(k) != other.get(k)]


@dataclass(frozen=True)
class Record:
    index: int
    behavior_id: str
    framing_id: str
    slot: str
    position: int
    batch: int
    started_at: str
    finished_at: str
    response: Response
    verdicts: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"index": self.index, "behavior_id": self.behavior_id, "framing_id": self.framing_id,
                "slot": self.slot, "position": self.position, "batch": self.batch,
                "started_at": self.started_at, "finished_at": self.finished_at,
                "response": dataclasses.asdict(self.response), "verdicts": self.verdicts}

    @classmethod
    def from_json(cls, data: dict) -> "Record":
        return cls(data["index"], data["behavior_id"], data["framing_id"], data["slot"], data["position"],
                   data["batch"], data["started_at"], data["finished_at"], Response(**data["response"]),
                   dict(data.get("verdicts", {})))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:60] or "model"


# ---------------------------------------------------------------- reading and writing


def read_records(path: Path, *, repair: bool = False) -> list[Record]:
    """Parse a record log. A torn last line (no newline, or unparsable, after a crash)
    is discarded, and with ``repair`` truncated away; a bad line before the last is
    corruption and raises, because it cannot be explained by a crash."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    records, offset = [], 0
    lines = raw.split(b"\n")
    for number, line in enumerate(lines, start=1):
        is_last = number == len(lines)
        if is_last and line == b"":
            break  # file ends with a newline: nothing torn
        try:
            if is_last:
                raise ValueError("no trailing newline")
            records.append(Record.from_json(json.loads(line)))
        except (ValueError, KeyError, TypeError) as exc:
            tail_is_blank = all(not rest.strip() for rest in lines[number:])
            if is_last or tail_is_blank:
                if repair:
                    with open(path, "r+b") as handle:
                        handle.truncate(offset)
                        handle.flush()
                        os.fsync(handle.fileno())
                break
            raise RunStoreError(f"{path}: line {number} is corrupt ({exc}); the record log cannot be trusted") \
                from None
        offset += len(line) + 1
    return records


def _atomic_write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True, ensure_ascii=False)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


@dataclass
class RunResult:
    run_dir: Path
    spec: RunSpec
    records: list[Record]
    reused: bool
    resumed_from: int
    generated: int

    def __repr__(self) -> str:  # never print records (they hold response text)
        return f"RunResult({self.run_dir.name}, {len(self.records)} records, reused={self.reused})"

    def verdicts(self, judge_name: str) -> dict[int, str]:
        return {r.index: r.verdicts[judge_name] for r in self.records if judge_name in r.verdicts}


class RunStore:
    """Run directories under ``<results_dir>/runs``, one per specification."""

    def __init__(self, results_dir: str | os.PathLike) -> None:
        self.results_dir = Path(results_dir)
        self.runs_dir = self.results_dir / "runs"

    def check_writable(self) -> None:
        """Fail early, before any engine boots, when the results directory is unusable."""
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            probe = self.runs_dir / f".write-probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise RunStoreError(f"results directory {self.results_dir} is not writable: "
                                f"{exc.strerror or exc}") from None

    def run_dir(self, spec: RunSpec) -> Path:
        return self.runs_dir / f"{_slug(spec.model)}__{spec.protocol}__{spec.pair}__{spec.sha256()[:12]}"

    def find(self, spec: RunSpec) -> Path | None:
        run_dir = self.run_dir(spec)
        return run_dir if (run_dir / MANIFEST).exists() else None


def load_manifest(run_dir: Path) -> dict:
    try:
        return json.loads((Path(run_dir) / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunStoreError(f"{run_dir} is not a run directory (no {MANIFEST})") from None
    except (OSError, ValueError) as exc:
        raise RunStoreError(f"{run_dir}/{MANIFEST} is unreadable: {exc}") from None


def load_run(run_dir: str | os.PathLike) -> tuple[dict, list[Record]]:
    """The manifest and the records, with the verdicts of judges added after generation
    (``verdicts/``; for a judge re-judged under several configurations, the newest)."""
    run_dir = Path(run_dir)
    manifest, records = load_manifest(run_dir), read_records(run_dir / RECORDS)
    newest: dict[str, Path] = {}
    for path in sorted((run_dir / VERDICTS_DIR).glob("*.jsonl"), key=lambda p: p.stat().st_mtime):
        newest[path.stem.rsplit("-", 1)[0]] = path
    extra: dict[int, dict[str, str]] = {}
    for name, path in newest.items():
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError, KeyError):
                item = json.loads(line)
                extra.setdefault(int(item["index"]), {})[name] = item["label"]
    if extra:
        records = [dataclasses.replace(r, verdicts={**r.verdicts, **extra.get(r.index, {})}) for r in records]
    return manifest, records


EngineProvider = Callable[[], Engine]


def execute(
    spec: RunSpec,
    schedule: Schedule,
    store: RunStore,
    engine_provider: EngineProvider,
    judges: Sequence[Judge],
    *,
    manifest_extra: dict | None = None,
    fresh: bool = False,
    session_id: str | None = None,
    run_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RunResult:
    """Make sure the run for ``spec`` is complete in the store and return its records.

    Holds a file lock on the run directory, so parallel workers generate each run once:
    the first generates (or resumes), the others wait and then reuse. The engine is
    only requested from ``engine_provider`` when something must be generated.
    """
    if schedule.sha256() != spec.schedule_sha256:
        raise RunStoreError("schedule does not match the specification's schedule hash")
    run_dir = Path(run_dir) if run_dir else store.run_dir(spec)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(run_dir) + LOCK):
        return _execute_locked(spec, schedule, run_dir, engine_provider, judges, manifest_extra or {}, fresh,
                               session_id, progress)


def _execute_locked(spec, schedule, run_dir, engine_provider, judges, manifest_extra, fresh, session_id, progress):
    records_path = run_dir / RECORDS
    if fresh and run_dir.exists():
        # --fresh means "generate again in this session", once: another worker of the same
        # session (pytest-xdist) that already regenerated this run is not undone
        generated_here = session_id is not None and (run_dir / MANIFEST).exists() and \
            load_manifest(run_dir).get("session_id") == session_id
        if not generated_here:
            _remove_run(run_dir)
    manifest = None
    if (run_dir / MANIFEST).exists():
        manifest = load_manifest(run_dir)
        differing = spec.differences(manifest.get("spec", {}))
        if differing:
            raise RunStoreError(
                f"{run_dir} holds a run with a different specification (fields differ: {', '.join(differing)}); "
                "use another results directory or --fresh")
    # a judge whose configuration changed since generation (new rules, another judge model)
    # re-judges the stored responses instead of reusing labels it would no longer give
    recorded = manifest.get("judges", {}) if manifest else {}
    stale = {j.name for j in judges if j.name in recorded
             and canonical_json(recorded[j.name]) != canonical_json(j.describe())}
    if manifest and manifest.get("status") == COMPLETE:
        records = read_records(records_path)
        _check_complete(records, spec, run_dir)
        failed = sorted({r.batch for r in records if r.response.error is not None})
        # generated or already retried in this very session (another xdist worker, the
        # summary): retrying again now would only repeat the same calls
        this_session = session_id is not None and session_id in (manifest.get("session_id"),
                                                                  manifest.get("retried_in_session"))
        if not failed or this_session:
            records = _ensure_verdicts(run_dir, records, schedule, judges, stale)
            return RunResult(run_dir, spec, records, reused=True, resumed_from=len(records), generated=0)
        # failed requests are not results: a rerun retries their batches (whole batches, so
        # each is generated with the composition the schedule gives it) and keeps the rest
        engine = engine_provider()
        by_batch = {b[0].batch: b for b in schedule.batches()}
        replaced: dict[int, Record] = {}
        for batch_index in failed:
            _prepare_engine(engine, [r for r in records if r.batch < batch_index], schedule)
            for record in _generate_batch(engine, by_batch[batch_index], judges):
                replaced[record.index] = record
        records = [replaced.get(r.index, r) for r in records]
        _rewrite_records(records_path, records)
        manifest.update(retried_in_session=session_id, retried_batches=len(failed), finished_at=_now(),
                        judges={**recorded, **{j.name: j.describe() for j in judges}})
        _atomic_write_json(run_dir / MANIFEST, manifest)
        records = _ensure_verdicts(run_dir, records, schedule, judges, stale)
        return RunResult(run_dir, spec, records, reused=False, resumed_from=len(records), generated=len(replaced))

    created = manifest is None
    engine = None
    if created:
        # boot first: an engine that cannot start leaves no run directory behind
        engine = engine_provider()
        run_dir.mkdir(parents=True, exist_ok=True)
        manifest = {"spec": spec.identity(), "spec_sha256": spec.sha256(), "status": RUNNING,
                    "evalkit_version": __version__, "git_revision": git_revision(), "started_at": _now(),
                    "finished_at": None, "judges": {j.name: j.describe() for j in judges}, "session_id": session_id,
                    **manifest_extra}
        _atomic_write_json(run_dir / MANIFEST, manifest)
    records = read_records(records_path, repair=True)
    # Restart the first incomplete batch from its beginning: a batch is the engine's
    # unit of work, and a partial batch would be generated with a different composition.
    done_batches = _complete_batches(records, schedule)
    keep = [r for r in records if r.batch in done_batches]
    if len(keep) != len(records):
        _rewrite_records(records_path, keep)
    records = keep
    resumed_from = len(records)
    batches = [b for b in schedule.batches() if b[0].batch not in done_batches]
    generated = 0
    if batches:
        engine = engine or engine_provider()
        _prepare_engine(engine, records, schedule)
        try:
            with open(records_path, "a", encoding="utf-8") as log:
                for batch in batches:
                    new = _generate_batch(engine, batch, judges)
                    records += new
                    log.write("".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in new))
                    log.flush()
                    os.fsync(log.fileno())  # durable at every batch boundary
                    generated += len(batch)
                    if progress:
                        progress(len(records), len(schedule))
        except OSError as exc:
            raise RunStoreError(
                f"writing {records_path} failed ({exc.strerror or exc}"
                f"{'; disk full' if exc.errno == errno.ENOSPC else ''}); the {len(records)} completed records "
                "are intact and the run resumes from there") from None
    _check_complete(records, spec, run_dir)
    # records written before an interruption may lack a judge added (or changed) on resume
    records = _ensure_verdicts(run_dir, records, schedule, judges, stale)
    manifest.update(status=COMPLETE, finished_at=_now(), n_records=len(records),
                    judges={**recorded, **{j.name: j.describe() for j in judges}})
    _atomic_write_json(run_dir / MANIFEST, manifest)
    return RunResult(run_dir, spec, records, reused=False, resumed_from=resumed_from, generated=generated)


def _prepare_engine(engine: Engine, done: Sequence[Record], schedule: Schedule) -> None:
    """Start the engine's run state afresh (an engine serves many runs in a session), then
    let a stateful engine replay what this run already answered (resume, retry)."""
    reset = getattr(engine, "reset", None)
    if callable(reset):
        reset()
    restore = getattr(engine, "restore", None)
    if callable(restore) and done:
        restore([schedule.requests[r.index] for r in done])


def _generate_batch(engine: Engine, batch: Sequence[Request], judges: Sequence[Judge]) -> list[Record]:
    started = _now()
    responses = engine.generate(batch)
    if len(responses) != len(batch):
        raise RunStoreError(f"engine returned {len(responses)} responses for a batch of {len(batch)}")
    finished = _now()
    by_judge = {j.name: judge_all(j, batch, responses) for j in judges}
    return [Record(request.index, request.behavior_id, request.framing_id, request.slot, request.position,
                   request.batch, started, finished, response,
                   {name: labels[position].label for name, labels in by_judge.items()})
            for position, (request, response) in enumerate(zip(batch, responses))]


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
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _remove_run(run_dir: Path) -> None:
    for child in sorted(run_dir.rglob("*"), reverse=True):
        child.unlink() if child.is_file() or child.is_symlink() else child.rmdir()
    run_dir.rmdir()


# ---------------------------------------------------------------- re-judging


def judge_key(judge: Judge) -> str:
    return f"{judge.name}-{hashlib.sha256(canonical_json(judge.describe()).encode()).hexdigest()[:10]}"


def _ensure_verdicts(run_dir: Path, records: list[Record], schedule: Schedule, judges: Sequence[Judge],
                     stale: set[str] = frozenset()) -> list[Record]:
    """Attach verdicts of judges that did not run at generation time, or whose
    configuration has changed since (``stale``), judging the stored responses (no engine
    call) and caching them in ``verdicts/<judge>-<confighash>.jsonl``."""
    missing = [j for j in judges if j.name in stale or any(j.name not in r.verdicts for r in records)]
    if not missing:
        return records
    by_index = {r.index: r for r in records}
    extra: dict[int, dict[str, str]] = {r.index: {} for r in records}
    for judge in missing:
        path = run_dir / VERDICTS_DIR / f"{judge_key(judge)}.jsonl"
        labels: dict[int, str] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(ValueError, KeyError):
                    item = json.loads(line)
                    labels[int(item["index"])] = item["label"]
        if len(labels) != len(records):
            verdicts = judge_all(judge, [schedule.requests[r.index] for r in records], [r.response for r in records])
            labels = {r.index: v.label for r, v in zip(records, verdicts)}
            path.parent.mkdir(exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            with open(tmp, "w", encoding="utf-8") as handle:
                for index in sorted(labels):
                    handle.write(json.dumps({"index": index, "label": labels[index]}) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        for index, label in labels.items():
            extra[index][judge.name] = label
    return [dataclasses.replace(by_index[i], verdicts={**by_index[i].verdicts, **extra[i]}) for i in sorted(by_index)]


def verdict_of(record: Record, judge_name: str) -> Verdict:
    return Verdict(record.verdicts[judge_name], judge_name)
