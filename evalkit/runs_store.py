"""The run store: manifests, append-only records with checksums, verdict sets and a lock per run.

A run directory holds ``manifest.json`` (the full specification, its hash, status and
provenance) and ``records.jsonl`` (one line per executed request, written in schedule
order and handed to the operating system at every batch boundary, fsynced at the
cadence of a ``SyncPolicy``). The specification's hash is the
run's identity: a finished run with the same specification is reused instead of
generating again; an unfinished one is resumed from its first incomplete batch
(``evalkit.runs`` executes runs step by step; ``evalkit.rejudge`` writes the verdict sets
of judges added or changed after generation, under ``verdicts/``).

Integrity is checked where every reader goes through (``load_run``, ``execute``): each
record line carries a checksum of its own bytes, a complete run's manifest the sha256
and count of its record log, and verdict labels must be known labels. A log edited,
truncated or duplicated after the fact is refused, never read. Every file is written
atomically (a unique temp file, fsynced, then renamed), every OSError or malformed file
is a ``RunStoreError`` naming the file, and the lock is keyed on the real directory, so a
path through a symlink takes the same lock.
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
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from .engines import Response
from .errors import ConfigError, RunStoreError
from .judges import LABELS
from .safety import ensure_within, path_component, redact, redact_text

MANIFEST, RECORDS, VERDICTS_DIR, LOCK = "manifest.json", "records.jsonl", "verdicts", ".lock"
COMPLETE, RUNNING = "complete", "running"
# 2: record format 2. Runs stored before it cannot be verified, so sessions do not reuse
# them (a new identity, a new directory); reading one directly is a clear error.
SPEC_VERSION = 2
# 2: every record and verdict line carries a checksum; a complete manifest the log's sha256.
RECORD_FORMAT = 2
CHECKSUM = "checksum"
UNTRUSTED = "the record log cannot be trusted"


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


class _Clock:
    """``now_iso()`` for the record loop, where it runs twice per batch: one ``time.time()``
    call, the date and time formatted once per second (same text as ``now_iso``)."""

    def __init__(self) -> None:
        self._second, self._prefix = -1, ""

    def __call__(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = _dt.datetime.fromtimestamp(second, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._prefix}.{min(999, int((now - second) * 1000)):03d}+00:00"


RECORD_CLOCK = _Clock()


@dataclass(frozen=True)
class SyncPolicy:
    """When appended records are fsynced. Records reach the operating system at every
    batch boundary whatever the policy (a killed process loses at most its batch in
    flight); the policy bounds what a machine crash or power loss can take: the records
    since the last sync. ``every-batch`` syncs at every batch boundary, ``every-N`` once
    N records have accumulated, ``every-Tms`` once T milliseconds have passed (checked at
    batch boundaries). Whatever is lost is regenerated on resume, from the first
    incomplete batch, so the final records are the same either way."""

    text: str = "every-1000ms"
    records: int | None = None
    seconds: float | None = 1.0

    @classmethod
    def parse(cls, text: str) -> SyncPolicy:
        value = str(text).strip().lower()
        if value == "every-batch":
            return cls("every-batch", records=1, seconds=None)
        match = re.fullmatch(r"every-(\d+)(-?ms)?", value)
        if not match or (not match.group(2) and int(match.group(1)) < 1):
            raise ConfigError(f"expected every-batch, every-N (records, N >= 1) or every-Tms (milliseconds), "
                              f"got {text!r}", option="--sync")
        if match.group(2):
            return cls(f"every-{int(match.group(1))}ms", records=None, seconds=int(match.group(1)) / 1000)
        return cls(f"every-{int(match.group(1))}", records=int(match.group(1)), seconds=None)

    def due(self, pending: int, since_s: float) -> bool:
        """Whether to sync now, with ``pending`` records written since the last sync,
        ``since_s`` seconds ago."""
        if pending == 0:
            return False
        if self.records is not None:
            return pending >= self.records
        return self.seconds is not None and since_s >= self.seconds


DEFAULT_SYNC = SyncPolicy()


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
    engine_config: dict[str, Any]
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

    def identity(self) -> dict[str, Any]:
        # credentials (a password in a base URL, a key) are not part of the experiment
        identity: dict[str, Any] = redact(dataclasses.asdict(self))
        return identity

    def sha256(self) -> str:
        return hashlib.sha256(canonical_json(self.identity()).encode()).hexdigest()

    def differences(self, other: dict[str, Any]) -> list[str]:
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

    def to_json(self) -> dict[str, Any]:
        response = self.response  # by hand: dataclasses.asdict deep-copies, at every record
        return {"index": self.index, "behavior_id": self.behavior_id, "framing_id": self.framing_id,
                "slot": self.slot, "position": self.position, "batch": self.batch,
                "started_at": self.started_at, "finished_at": self.finished_at,
                "response": {name: getattr(response, name) for name in _RESPONSE_FIELDS}, "verdicts": self.verdicts}

    def to_line(self) -> bytes:
        """The record's line in the log, with its checksum."""
        return encode_line(self.to_json())

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        verdicts = data.get("verdicts", {})
        if not isinstance(verdicts, dict):
            raise TypeError("verdicts must be an object")
        unknown = {label for label in verdicts.values() if label not in LABELS}
        if unknown:
            raise ValueError(f"unknown verdict label {sorted(map(str, unknown))[0]!r}")
        record = cls(data["index"], data["behavior_id"], data["framing_id"], data["slot"], data["position"],
                     data["batch"], data["started_at"], data["finished_at"], Response(**data["response"]),
                     dict(verdicts))
        if not isinstance(record.index, int) or not isinstance(record.batch, int) or \
                not isinstance(record.behavior_id, str):
            raise TypeError("index and batch must be integers, behavior_id a string")
        return record


def _name(text: str) -> str:
    """A name as a path component: credentials dropped first (a model given as a URL),
    then slugged and bounded."""
    return path_component(redact_text(text))


# ---------------------------------------------------------------- lines with checksums

_RESPONSE_FIELDS = tuple(f.name for f in dataclasses.fields(Response))
_encode = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps(..., ensure_ascii=False), encoder built once


def _line_checksum(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:16]


def encode_line(data: dict[str, Any]) -> bytes:
    """One JSON line whose last member is the checksum of the line's other bytes."""
    body = _encode(data).encode("utf-8")
    return body[:-1] + f', "{CHECKSUM}": "{_line_checksum(body)}"}}\n'.encode()


_CHECKSUM_HEAD = f', "{CHECKSUM}": "'.encode()
_CHECKSUM_TAIL_LENGTH = len(_CHECKSUM_HEAD) + 16 + 2  # , "checksum": "<16 hex digits>"}
_HEX = re.compile(rb"[0-9a-f]{16}")


def decode_line(line: bytes) -> dict[str, Any]:
    """The object of a line written by ``encode_line``; ValueError if it is not one, or if
    any byte changed since (the checksum covers the line as written)."""
    tail = line[-_CHECKSUM_TAIL_LENGTH:]
    digest = tail[len(_CHECKSUM_HEAD):-2]
    if not (tail.startswith(_CHECKSUM_HEAD) and tail.endswith(b'"}') and _HEX.fullmatch(digest)):
        raise ValueError("no checksum")
    if _line_checksum(line[:-_CHECKSUM_TAIL_LENGTH] + b"}") != digest.decode():
        raise ValueError("checksum mismatch: edited after it was written")
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    data.pop(CHECKSUM)
    return data


def file_sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise RunStoreError(f"{path}: cannot read ({exc.strerror or exc})") from None


# ---------------------------------------------------------------- reading and writing


def read_bytes(path: Path) -> bytes | None:
    """The file's bytes, None if it does not exist; any other OSError is a RunStoreError."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RunStoreError(f"{path}: cannot read ({exc.strerror or exc})") from None


def read_records(path: Path, *, repair: bool = False) -> list[Record]:
    """Parse a record log. A torn last line (no newline, or unparsable, after a crash)
    is discarded, and with ``repair`` truncated away; a bad line before the last, or a
    complete line whose checksum or labels do not hold, is corruption and raises,
    because a crash cannot explain it."""
    raw = read_bytes(path)
    if raw is None:
        return []
    records, intact = _parse_records(raw, path)
    if intact < len(raw) and repair:
        try:
            with open(path, "r+b") as handle:
                handle.truncate(intact)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise RunStoreError(f"{path}: cannot discard its torn last line ({exc.strerror or exc})") from None
    return records


def _parse_records(raw: bytes, path: Path, *, torn_tail_allowed: bool = True) -> tuple[list[Record], int]:
    """(records, length of the intact prefix)."""
    records, offset = [], 0
    lines = raw.split(b"\n")
    for number, line in enumerate(lines, start=1):
        is_last = number == len(lines)
        if is_last and line == b"":
            break  # file ends with a newline: nothing torn
        try:
            if is_last:
                raise ValueError("no trailing newline")
            records.append(Record.from_json(decode_line(line)))
        except (ValueError, KeyError, TypeError) as exc:
            tail_is_blank = all(not rest.strip() for rest in lines[number:])
            complete_line = not is_last and line.strip().endswith(b"}") and b'"' + CHECKSUM.encode() in line
            if torn_tail_allowed and (is_last or tail_is_blank) and not complete_line:
                break
            raise RunStoreError(f"{path}: line {number} is corrupt ({exc}); {UNTRUSTED}") from None
        offset += len(line) + 1
    return records, offset


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all: a unique temp file beside it, fsynced, renamed over
    it. On any failure the temp file is removed; an OSError is a RunStoreError naming the file."""
    handle, tmp = None, None
    try:
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(handle, "wb") as out:
            handle = None
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        full = "; disk full" if exc.errno == errno.ENOSPC else ""
        raise RunStoreError(f"{path}: cannot write ({exc.strerror or exc}{full}); nothing was half-written") \
            from None
    finally:
        if handle is not None:
            with contextlib.suppress(OSError):
                os.close(handle)
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    text = json.dumps(redact(manifest), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    atomic_write(run_dir / MANIFEST, text.encode("utf-8"))


@dataclass
class RunResult:
    run_dir: Path
    spec: RunSpec
    # The records in memory, or None where they stayed on disk (a run served with its cached
    # analysis, a row shared with an xdist worker): ``records`` reads them on first use, so a
    # project's check or test over them never sees an empty run.
    held_records: list[Record] | None
    reused: bool
    resumed_from: int
    generated: int
    # the sha256 of the record log these records were read from or written to (the manifest's)
    records_sha256: str | None = None

    @property
    def records(self) -> list[Record]:
        if self.held_records is None:
            self.held_records = load_run(self.run_dir)[1]
        return self.held_records

    def __repr__(self) -> str:  # never print records (they hold response text), never read them to say so
        held = "records on disk" if self.held_records is None else f"{len(self.held_records)} records"
        return f"RunResult({self.run_dir.name}, {held}, reused={self.reused})"

    def verdicts(self, judge_name: str) -> dict[int, str]:
        return {r.index: r.verdicts[judge_name] for r in self.records if judge_name in r.verdicts}


class RunStore:
    """Run directories under ``<results_dir>/runs``, one per specification."""

    def __init__(self, results_dir: str | os.PathLike[str]) -> None:
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
        """``runs/<model>__<protocol>__<pair>__<hash>``: every name slugged and bounded, and the
        result checked to lie under ``runs/`` (names come from users' files and options)."""
        name = f"{_name(spec.model)}__{_name(spec.protocol)}__{_name(spec.pair)}__{spec.sha256()[:12]}"
        run_dir = self.runs_dir / name
        try:
            return ensure_within(run_dir, self.runs_dir)
        except ValueError:
            raise RunStoreError(f"run directory {name!r} would lie outside {self.runs_dir}") from None

    def find(self, spec: RunSpec) -> Path | None:
        run_dir = self.run_dir(spec)
        return run_dir if (run_dir / MANIFEST).exists() else None


def run_lock(run_dir: Path) -> FileLock:
    """The lock of a run: keyed on the real directory, so every path to it (a symlink, a
    relative path) takes the same lock."""
    return FileLock(str(Path(run_dir).resolve()) + LOCK)


# How long a run's lock is waited for silently; then the wait is announced, once (the holder
# may be generating for hours, or hung: the user must be able to tell which lock, and why).
LOCK_NOTICE_S = 2.0


@contextlib.contextmanager
def run_locked(run_dir: Path) -> Iterator[None]:
    """Hold the run's lock (``run_lock``), saying on stderr what is waited for when another
    process holds it for longer than ``LOCK_NOTICE_S``."""
    lock = run_lock(run_dir)
    try:
        lock.acquire(timeout=LOCK_NOTICE_S)
    except Timeout:
        print(f"evalkit: waiting for {run_dir}: another process holds its lock {lock.lock_file} (generating or "
              "reading the same run); this run goes on when it finishes", file=sys.stderr, flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def is_store_file(path: str | os.PathLike[str]) -> bool:
    """Whether writing ``path`` would replace a file of a run (its manifest, record log, a
    verdict set, a temp file or the lock). Symlinked directories are followed."""
    path = Path(path)
    target = path.parent.resolve() / path.name
    if target.name.endswith(LOCK) and (target.with_name(target.name[:-len(LOCK)]) / MANIFEST).exists():
        return True
    run_dir = target.parent.parent if target.parent.name == VERDICTS_DIR else target.parent
    if not (run_dir / MANIFEST).exists():
        return False
    return run_dir != target.parent or target.name in (MANIFEST, RECORDS) or target.name.startswith(".")


def load_manifest(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """A run's manifest, checked for shape and record format; RunStoreError naming the
    file otherwise."""
    path = Path(run_dir) / MANIFEST
    raw = read_bytes(path)
    if raw is None:
        raise RunStoreError(f"{run_dir} is not a run directory (no {MANIFEST})")
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise RunStoreError(f"{path} is unreadable: {exc}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("spec"), dict) or \
            not isinstance(manifest.get("spec_sha256"), str) or manifest.get("status") not in (COMPLETE, RUNNING):
        raise RunStoreError(f"{path} is not a run manifest (expected an object with spec, spec_sha256 and a status "
                            f"of {COMPLETE} or {RUNNING})")
    if manifest.get("record_format") != RECORD_FORMAT:
        raise RunStoreError(f"{path}: written by evalkit {manifest.get('evalkit_version', '?')} in record format "
                            f"{manifest.get('record_format', 1)}, without the checksums this version verifies; "
                            "run the session again to generate it anew (sessions no longer reuse it)")
    if manifest["status"] == COMPLETE and not (isinstance(manifest.get("records_sha256"), str)
                                               and isinstance(manifest.get("n_records"), int)):
        raise RunStoreError(f"{path}: a complete run without the digest and count of its records; {UNTRUSTED}")
    return manifest


def read_run_records(run_dir: Path, manifest: dict[str, Any]) -> list[Record]:
    """The records of a run, verified: a complete run's log must be byte for byte the one it
    completed with (sha256 and count in the manifest), every line's checksum and labels
    must hold, and indices must run 0, 1, 2, ... without gap or repeat."""
    path = Path(run_dir) / RECORDS
    raw = read_bytes(path)
    complete = manifest["status"] == COMPLETE
    if complete:
        if raw is None:
            raise RunStoreError(f"{path} is missing from a complete run; {UNTRUSTED}")
        if hashlib.sha256(raw).hexdigest() != manifest["records_sha256"]:
            raise RunStoreError(f"{path} changed after the run completed (lines edited, removed, added or "
                                f"repeated: its sha256 differs from the manifest's); {UNTRUSTED}")
    records, _ = _parse_records(raw or b"", path, torn_tail_allowed=not complete)
    expected = manifest["n_records"] if complete else len(records)
    if [r.index for r in records] != list(range(expected)):
        raise RunStoreError(f"{path}: expected records 0..{expected - 1} in order, found {len(records)} with gaps or "
                            f"repeats; {UNTRUSTED}")
    return records


def read_verdict_file(path: Path) -> dict[int, str]:
    """index -> label of a verdict set; RunStoreError naming the file if any line is off."""
    raw = read_bytes(path)
    labels: dict[int, str] = {}
    for number, line in enumerate((raw or b"").splitlines(), start=1):
        try:
            item = decode_line(line)
            index, label = item["index"], item["label"]
            if not isinstance(index, int) or label not in LABELS or index in labels:
                raise ValueError(f"bad entry {str(item)[:60]}")
        except (ValueError, KeyError, TypeError) as exc:
            raise RunStoreError(f"{path}: line {number} is corrupt ({exc}); delete the file to judge again") \
                from None
        labels[index] = label
    return labels


def load_run(run_dir: str | os.PathLike[str]) -> tuple[dict[str, Any], list[Record]]:
    """The manifest and the verified records, with the verdicts of judges added after
    generation (``verdicts/``; for a judge re-judged under several configurations, the
    newest). Every reader of stored runs goes through here, so every reader refuses a
    log or verdict set that was changed after it was written."""
    run_dir = Path(run_dir)
    manifest = load_manifest(run_dir)
    records = read_run_records(run_dir, manifest)
    try:
        sets = sorted((run_dir / VERDICTS_DIR).glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
    except OSError as exc:
        raise RunStoreError(f"{run_dir / VERDICTS_DIR}: cannot list ({exc.strerror or exc})") from None
    newest: dict[str, Path] = {}
    for path in sets:
        newest[path.stem.rsplit("-", 1)[0]] = path
    extra: dict[int, dict[str, str]] = {}
    indices = {r.index for r in records}
    for name, path in newest.items():
        labels = read_verdict_file(path)
        if set(labels) != indices:
            raise RunStoreError(f"{path} does not cover the run's {len(indices)} records; delete it to judge again")
        for index, label in labels.items():
            extra.setdefault(index, {})[name] = label
    if extra:
        records = [dataclasses.replace(r, verdicts={**r.verdicts, **extra.get(r.index, {})}) for r in records]
    return manifest, records


