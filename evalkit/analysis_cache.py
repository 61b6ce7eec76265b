"""A run's analysis, kept beside its records so a warm session need not recompute it.

A session that reuses a complete run used to read, verify and parse its whole record log
and recompute every statistic of the row (intervals, McNemar, the power search, the
crossover, the category breakdowns, the bootstrap, the corrected gap), only to get the
numbers of the previous session again. The first session to analyse a run writes those
numbers to ``analysis-cache.json`` in the run directory; a later session uses them only
when everything they were computed from is byte for byte the same:

- the record log (its sha256, checked against the file's bytes and the manifest's),
  the manifest's bytes and every verdict set under ``verdicts/``;
- the session's judges (name and configuration), the outcome judge, the thresholds, the
  seed (the bootstrap's) and the dataset (the categories of the breakdowns);
- ``ANALYSIS_SPEC_VERSION`` and a digest of the code and data the numbers come from
  (``evalkit/analysis.py``, ``evalkit/stats/``, the judges' measured accuracy, ...), so a
  change to any statistic invalidates every cache without anyone remembering to bump a
  version.

The file holds that key, the numbers as plain JSON (never pickle: a run directory may come
from elsewhere, and loading it must not run code) and a sha256 over both. It is written
atomically under the run's lock. A cache that is missing, unreadable, corrupt, of another
format or version, keyed on anything else or whose digest does not match is ignored and the
run is analysed from its records again (and the cache rewritten): it is never trusted
beyond what it can show. A run with failed requests is never served from the cache,
because a new session retries them. ``--fresh`` ignores it too.

What the digest guards against is accidental damage and foreign files; someone who can
write the run directory can also rewrite its records and manifest, which the run store's
own checksums do not stop either.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import sys
import types
import typing
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .analysis import Breakdown, RowAnalysis
from .errors import RunStoreError
from .rejudge import judge_identity
from .runs_store import (
    COMPLETE,
    MANIFEST,
    RECORDS,
    VERDICTS_DIR,
    RunResult,
    atomic_write,
    canonical_json,
    load_manifest,
    run_locked,
)

if TYPE_CHECKING:  # pragma: no cover
    from .stats import CorrectedGap
    from .suites import RunPlan, Session

CACHE_FILE = "analysis-cache.json"
FORMAT = "evalkit-analysis-cache"
# Bump when what is cached changes shape or meaning beyond what the code digest sees.
ANALYSIS_SPEC_VERSION = 1
# The sources and data every cached number depends on (relative to the evalkit package).
_CODE = ("analysis.py", "analysis_cache.py", "suites.py", "stats/*.py", "judges/accuracy.py", "judges/traces.py",
         "data/judge_accuracy.toml")


@dataclasses.dataclass(frozen=True)
class RunAnalysis:
    """Everything a row computes from one run's records; the verdict, which reads the A/A
    control's analysis too, is made from these when the rows are put together."""

    analysis: RowAnalysis
    breakdowns: tuple[Breakdown, ...]
    bootstrap_gap_ci: tuple[float, float] | None
    corrected_gap: CorrectedGap | None
    trace_rates: dict[str, int | float | None]  # report.trace_rates of the records
    failed_requests: int  # responses with an engine error, or a judge's: a new session retries them


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """sha256 over the sources and data the cached numbers come from."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for pattern in _CODE:
        for path in sorted(root.glob(pattern)):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_IDENTITIES: dict[int, tuple[weakref.ref[Any], dict[str, Any]]] = {}


def _judge_identities(session: Session) -> dict[str, Any]:
    """The session's judges' configurations, once per session (describing a judge reads its
    rules: milliseconds, times every run, times two)."""
    found = _IDENTITIES.get(id(session))
    if found is None or found[0]() is not session:
        found = (weakref.ref(session), {j.name: judge_identity(j) for j in session.judges})
        _IDENTITIES[id(session)] = found
    return found[1]


def _key(session: Session, plan: RunPlan, run_dir: Path, manifest_bytes: bytes, records_bytes: bytes
         ) -> dict[str, Any]:
    verdicts = {path.name: _sha256(path.read_bytes()) for path in sorted((run_dir / VERDICTS_DIR).glob("*.jsonl"))}
    config = session.config
    return {"analysis_spec_version": ANALYSIS_SPEC_VERSION, "code_sha256": code_digest(),
            "manifest_sha256": _sha256(manifest_bytes), "records_sha256": _sha256(records_bytes),
            "verdicts_sha256": verdicts, "spec_sha256": plan.spec.sha256(), "judge": config.judge,
            "judges": _judge_identities(session),
            "thresholds": dataclasses.asdict(config.thresholds), "seed": config.seed, "protocol": plan.protocol,
            "dataset_sha256": session.dataset.sha256, "run_dataset_sha256": plan.dataset.sha256}


def _current_key(session: Session, plan: RunPlan, run_dir: Path, n_records: int | None = None
                 ) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The key of the run as it is on disk now (call under the run's lock), with its
    manifest; None when the run is not complete, not this plan's, holds a judge whose
    configuration changed (a session re-judges it) or its log does not match its manifest."""
    manifest = load_manifest(run_dir)
    if manifest["status"] != COMPLETE or manifest["spec_sha256"] != plan.spec.sha256() or \
            plan.spec.differences(manifest["spec"]):
        return None
    if n_records is not None and manifest["n_records"] != n_records:
        return None
    recorded = manifest.get("judges", {})
    if any(name in recorded and canonical_json(recorded[name]) != canonical_json(identity)
           for name, identity in _judge_identities(session).items()):
        return None
    manifest_bytes = (run_dir / MANIFEST).read_bytes()
    records_bytes = (run_dir / RECORDS).read_bytes()
    if _sha256(records_bytes) != manifest["records_sha256"]:
        return None  # the store refuses this log when the run is executed, saying why
    return _key(session, plan, run_dir, manifest_bytes, records_bytes), manifest


def _digest(key: dict[str, Any], payload: Any) -> str:
    return _sha256(canonical_json({"key": key, "payload": payload}).encode())


def load(session: Session, plan: RunPlan) -> tuple[RunResult, RunAnalysis] | None:
    """The stored run (without its records: they stay on disk) and its analysis, when the
    run directory holds a cache made from exactly this run, these judges and these options;
    None otherwise (then the run is executed and analysed as always)."""
    if session.config.fresh:
        return None
    run_dir = session.store.run_dir(plan.spec)
    path = run_dir / CACHE_FILE
    if not path.is_file():
        return None
    try:
        with run_locked(run_dir):
            current = _current_key(session, plan, run_dir)
            if current is None:
                return None
            key, manifest = current
            raw = path.read_bytes()
    except (RunStoreError, OSError, ValueError):
        return None
    analysed = _parse(raw, key)
    if analysed is None or analysed.failed_requests:
        return None
    run = RunResult(run_dir, plan.spec, None, reused=True, resumed_from=manifest["n_records"], generated=0)
    return run, analysed


def _parse(raw: bytes, key: dict[str, Any]) -> RunAnalysis | None:
    try:
        document = json.loads(raw)
        if not isinstance(document, dict) or document.get("format") != FORMAT or document.get("key") != key or \
                document.get("digest") != _digest(key, document.get("payload")):
            return None
        decoded = decode(RunAnalysis, document["payload"])
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None
    return decoded if isinstance(decoded, RunAnalysis) else None


def save(session: Session, plan: RunPlan, run: RunResult, analysed: RunAnalysis) -> None:
    """Write the cache of a run just analysed from its records. Best effort: a cache that
    cannot be written (read-only store, a statistic JSON cannot carry) costs the next
    session a recomputation, nothing else."""
    if not run.held_records:
        return
    try:
        payload = encode(analysed)
        with run_locked(run.run_dir):
            current = _current_key(session, plan, run.run_dir, n_records=len(run.records))
            if current is None:
                return
            key, _ = current
            if key["records_sha256"] != run.records_sha256:
                return  # regenerated by another process since these records were read: not their numbers
            document = {"format": FORMAT, "key": key, "payload": payload, "digest": _digest(key, payload)}
            atomic_write(run.run_dir / CACHE_FILE, json.dumps(document, sort_keys=True).encode())
    except (RunStoreError, OSError, ValueError, TypeError):
        return


# ---------------------------------------------------------------- plain JSON, both ways


def encode(value: Any) -> Any:
    """Dataclasses to objects, tuples to lists; floats as JSON numbers (repr round-trips them
    exactly), NaN and infinities as JSON's NaN/Infinity tokens, which ``json`` reads back."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [encode(item) for item in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("only string keys can be cached")
        return {k: encode(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return float(value)
    raise TypeError(f"cannot cache a {type(value).__name__}")


def decode(tp: Any, data: Any) -> Any:
    """The value of type ``tp`` that ``encode`` turned into ``data``; TypeError when ``data``
    does not have that shape (a foreign or damaged cache)."""
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        options = typing.get_args(tp)
        if data is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return decode(option, data)
            except TypeError:
                continue
        raise TypeError(f"{data!r:.40} is none of {tp}")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = _hints(tp)
        fields = [f for f in dataclasses.fields(tp) if f.init]
        if not isinstance(data, dict) or set(data) != {f.name for f in fields}:
            raise TypeError(f"not a {tp.__name__}")
        return tp(**{f.name: decode(hints[f.name], data[f.name]) for f in fields})
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(data, list):
            raise TypeError(f"expected a list for {tp}")
        if len(args) == 2 and args[1] is Ellipsis:
            if args[0] is str:  # the per-behavior labels and ids: hundreds of items, one check
                if not all(type(item) is str for item in data):
                    raise TypeError(f"expected strings for {tp}")
                return tuple(data)
            return tuple(decode(args[0], item) for item in data)
        if len(args) != len(data):
            raise TypeError(f"expected {len(args)} items for {tp}")
        return tuple(decode(a, item) for a, item in zip(args, data))
    if origin is dict:
        key_type, value_type = typing.get_args(tp)
        if not isinstance(data, dict) or key_type is not str:
            raise TypeError(f"expected an object for {tp}")
        return {k: decode(value_type, v) for k, v in data.items()}
    return _scalar(tp, data)


def _scalar(tp: Any, data: Any) -> Any:
    if tp is Any:
        return data
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise TypeError(f"expected a number, got {data!r:.40}")
        return data
    if tp is bool or tp is int or tp is str:
        if type(data) is not tp:
            raise TypeError(f"expected {tp.__name__}, got {data!r:.40}")
        return data
    if tp is type(None):
        if data is not None:
            raise TypeError("expected null")
        return None
    raise TypeError(f"cannot decode type {tp}")


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        from . import stats

        # names a module imports for type checking only resolve here (RunAnalysis's CorrectedGap)
        _HINTS[cls] = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]),
                                            {"CorrectedGap": stats.CorrectedGap})
    return _HINTS[cls]

