"""Judges on stored generations, outside a session: the requests they see and the behaviors
model judges need. ``evalkit.rejudge`` drives them over a stored run.

The requests handed to judges are rebuilt from the records with the framing withheld (no
prompt, no framing id, no slot): judges read the behavior id only, and must stay blind to the
framing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..datasets import Behavior, load_behaviors, resolve_harmbench
from ..engines import Response
from ..framings import Prompt
from ..protocols import Request
from ._base import Judge
from ._model import EngineBackedJudge


class StoredRecord(Protocol):
    """What a stored record tells a judge's request (a ``runs.Record`` fits)."""

    @property
    def index(self) -> int: ...
    @property
    def behavior_id(self) -> str: ...
    @property
    def position(self) -> int: ...
    @property
    def batch(self) -> int: ...


@dataclass(frozen=True)
class StoredRequests:
    """Stands in for a Schedule where judges only need ``requests[index]``."""

    requests: Mapping[int, Request]

    @classmethod
    def from_records(cls, records: Iterable[StoredRecord]) -> StoredRequests:
        blank = Prompt("raw", (), "")
        return cls({r.index: Request(index=r.index, behavior_id=r.behavior_id, framing_id="", slot="",
                                     position=r.position, batch=r.batch, prompt=blank) for r in records})


def run_behaviors(manifest: Mapping[str, Any], harmbench: str | None = None) -> dict[str, Behavior]:
    """The behaviors of a run by id: from ``harmbench`` if given, else the dataset path its
    manifest records, else the usual resolution ($EVALKIT_HARMBENCH, cache)."""
    recorded = (manifest.get("dataset") or {}).get("path")
    source = harmbench or (recorded if recorded and os.path.exists(recorded) else None)
    dataset = load_behaviors(resolve_harmbench(source, allow_download=False))
    return {b.behavior_id: b for b in dataset.behaviors}


def uses_model(judges: Sequence[Judge]) -> bool:
    """Whether any of ``judges`` runs a model (and so needs the run's behaviors)."""
    return any(isinstance(j, EngineBackedJudge) for j in judges)


def batch_model_judges(judges: Sequence[Judge], requests: Sequence[Request], responses: Sequence[Response]) -> None:
    """Let model judges infer on the responses in batches (they memoize the verdicts), so judging
    them one by one afterwards costs no model call each."""
    for instance in judges:
        if isinstance(instance, EngineBackedJudge):
            instance.judge_batch(requests, responses)
