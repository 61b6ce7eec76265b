"""Re-judging stored generations: verdicts of judges added, or configured differently, after a
run was generated, judged on its stored responses (no engine call) and cached as a verdict set
``verdicts/<judge>-<confighash>.jsonl`` beside the record log.

Sessions ask for it (``evalkit.runs``), and so do the agreement and audit commands outside a
session (``judge_stored_run``). The requests handed to judges there are rebuilt from the records
with the framing withheld (``judges.stored.StoredRequests``): judges stay blind to the framing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from .errors import ConfigError, RunStoreError
from .judges import ERROR, Judge, JudgeSettings, build_judges, judge_all, unjudgeable
from .judges.stored import StoredRequests, batch_model_judges, run_behaviors, uses_model
from .protocols import Request
from .runs_store import (
    VERDICTS_DIR,
    Record,
    atomic_write,
    canonical_json,
    encode_line,
    load_manifest,
    load_run,
    read_verdict_file,
    run_locked,
)
from .safety import redact


class RequestsByIndex(Protocol):
    """A schedule, or stored requests: ``requests[index]`` is the request of record ``index``."""

    @property
    def requests(self) -> Sequence[Request] | Mapping[int, Request]: ...


def judge_identity(judge: Judge) -> dict[str, Any]:
    """What a manifest records of a judge, and what decides whether its labels are stale."""
    return redact(judge.describe())  # type: ignore[no-any-return]


def judge_key(judge: Judge) -> str:
    return f"{judge.name}-{hashlib.sha256(canonical_json(judge_identity(judge)).encode()).hexdigest()[:10]}"


def stale_judges(recorded: Mapping[str, Any], judges: Sequence[Judge]) -> set[str]:
    """Judges whose configuration changed since the run recorded them (new rules, another judge
    model): they judge the stored responses again instead of reusing labels they would no longer give."""
    return {j.name for j in judges if j.name in recorded
            and canonical_json(recorded[j.name]) != canonical_json(judge_identity(j))}


def ensure_verdicts(run_dir: Path, records: list[Record], schedule: RequestsByIndex, judges: Sequence[Judge],
                    stale: set[str] | frozenset[str] = frozenset()) -> list[Record]:
    """Attach verdicts of judges that did not run at generation time, or whose
    configuration has changed since (``stale``), judging the stored responses (no engine
    call) and caching them in ``verdicts/<judge>-<confighash>.jsonl``. A response one of
    them failed to judge (its own engine failed: an error label on a judgeable response) is
    judged again by all of them (a vote counts its members' labels)."""
    missing = [j for j in judges if j.name in stale or any(j.name not in r.verdicts for r in records)]
    if not missing:
        return records
    by_index = {r.index: r for r in records}
    cached = {judge.name: _cached_set(run_dir, records, judge) for judge in missing}
    judge_failed = sorted({i for labels in cached.values() for i, label in (labels or {}).items()
                           if label == ERROR and unjudgeable(by_index[i].response, "") is None})
    extra: dict[int, dict[str, str]] = {r.index: {} for r in records}
    for judge in missing:
        labels = cached[judge.name]
        todo = records if labels is None else [by_index[i] for i in judge_failed]
        if todo:
            labels = {**(labels or {}), **_judged(schedule, judge, todo)}
            _write_set(run_dir, judge, labels)
        for index, label in (labels or {}).items():
            extra[index][judge.name] = label
    return [dataclasses.replace(by_index[i], verdicts={**by_index[i].verdicts, **extra[i]}) for i in sorted(by_index)]


def _set_path(run_dir: Path, judge: Judge) -> Path:
    return run_dir / VERDICTS_DIR / f"{judge_key(judge)}.jsonl"


def _cached_set(run_dir: Path, records: list[Record], judge: Judge) -> dict[int, str] | None:
    """index -> label of ``judge``'s cached verdict set on the run, or None if it has none that covers it."""
    labels: dict[int, str] = {}
    with contextlib.suppress(RunStoreError):  # a damaged cache is judged again, never used
        labels = read_verdict_file(_set_path(run_dir, judge))
    return labels if set(labels) == {r.index for r in records} else None


def _judged(schedule: RequestsByIndex, judge: Judge, todo: list[Record]) -> dict[int, str]:
    verdicts = judge_all(judge, [schedule.requests[r.index] for r in todo], [r.response for r in todo])
    return {r.index: v.label for r, v in zip(todo, verdicts)}


def _write_set(run_dir: Path, judge: Judge, labels: dict[int, str]) -> None:
    path = _set_path(run_dir, judge)
    try:
        path.parent.mkdir(exist_ok=True)
    except OSError as exc:
        raise RunStoreError(f"{path.parent}: cannot create ({exc.strerror or exc})") from None
    atomic_write(path, b"".join(encode_line({"index": index, "label": labels[index]}) for index in sorted(labels)))


def judge_stored_run(run_dir: str | os.PathLike[str], names: Sequence[str],
                     settings: JudgeSettings = JudgeSettings(),
                     harmbench: str | None = None) -> tuple[dict[str, Any], list[Record], list[Judge]]:
    """(manifest, records with verdicts of ``names``, judges). Stored generations are
    judged, never regenerated; model judges see their responses in batches. The run's lock is
    held from reading to writing the verdict sets: a session retrying (or ``--fresh``
    regenerating) the run meanwhile would otherwise get labels of responses it replaced."""
    run_dir = Path(run_dir)
    load_manifest(run_dir)  # a missing or foreign directory fails here, before a lock file is made beside it
    with contextlib.ExitStack() as locked:
        try:
            locked.enter_context(run_locked(run_dir))
        except OSError:
            pass  # a read-only store: nobody rewrites it, and judging what it lacks fails with its own error
        return _judge_stored_run(run_dir, names, settings, harmbench)


def _judge_stored_run(run_dir: Path, names: Sequence[str], settings: JudgeSettings,
                      harmbench: str | None) -> tuple[dict[str, Any], list[Record], list[Judge]]:
    manifest, records = load_run(run_dir)
    if not records:
        raise ConfigError(f"{run_dir} holds no records to judge")
    judges: list[Judge] = build_judges(names, settings, behaviors={})
    if uses_model(judges):
        judges = build_judges(names, settings, behaviors=run_behaviors(manifest, harmbench))
    schedule = StoredRequests.from_records(records)
    if any(j.name not in r.verdicts for j in judges for r in records):
        # batch the model judges' inference; ensure_verdicts then hits their memo
        batch_model_judges(judges, [schedule.requests[r.index] for r in records], [r.response for r in records])
    return manifest, ensure_verdicts(run_dir, records, schedule, judges), judges
