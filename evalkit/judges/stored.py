"""Judging a stored run again, outside a session: the agreement and audit commands.

Verdicts go through the run store's own re-judging (``runs._ensure_verdicts``), so they
are cached in the run directory's ``verdicts/<judge>-<confighash>.jsonl`` exactly as a
session would cache them. The requests handed to judges are rebuilt from the records
with the framing withheld (no prompt, no framing id, no slot): judges read the behavior
id only, and must stay blind to the framing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..datasets import Behavior, load_behaviors, resolve_harmbench
from ..errors import ConfigError
from ..framings import Prompt
from ..protocols import Request
from ._base import Judge
from ._model import EngineBackedJudge
from .config import JudgeSettings, build_judges


@dataclass(frozen=True)
class StoredRequests:
    """Stands in for a Schedule where judges only need ``requests[index]``."""

    requests: Mapping[int, Request]

    @classmethod
    def from_records(cls, records) -> StoredRequests:
        blank = Prompt("raw", (), "")
        return cls({r.index: Request(index=r.index, behavior_id=r.behavior_id, framing_id="", slot="",
                                     position=r.position, batch=r.batch, prompt=blank) for r in records})


def run_behaviors(manifest: dict, harmbench: str | None = None) -> dict[str, Behavior]:
    """The behaviors of a run by id: from ``harmbench`` if given, else the dataset path its
    manifest records, else the usual resolution ($EVALKIT_HARMBENCH, cache)."""
    recorded = (manifest.get("dataset") or {}).get("path")
    source = harmbench or (recorded if recorded and os.path.exists(recorded) else None)
    dataset = load_behaviors(resolve_harmbench(source, allow_download=False))
    return {b.behavior_id: b for b in dataset.behaviors}


def judge_stored_run(run_dir: str | os.PathLike, names: Sequence[str], settings: JudgeSettings = JudgeSettings(),
                     harmbench: str | None = None):
    """(manifest, records with verdicts of ``names``, judges). Stored generations are
    judged, never regenerated; model judges see their responses in batches."""
    from ..runs import _ensure_verdicts, load_run  # the run store imports judges: import it late

    run_dir = Path(run_dir)
    manifest, records = load_run(run_dir)
    if not records:
        raise ConfigError(f"{run_dir} holds no records to judge")
    judges: list[Judge] = build_judges(names, settings, behaviors={})
    if any(isinstance(j, EngineBackedJudge) for j in judges):
        judges = build_judges(names, settings, behaviors=run_behaviors(manifest, harmbench))
    schedule = StoredRequests.from_records(records)
    if any(j.name not in r.verdicts for j in judges for r in records):
        for instance in judges:  # batch the model judges' inference; _ensure_verdicts then hits their memo
            if isinstance(instance, EngineBackedJudge):
                instance.judge_batch([schedule.requests[r.index] for r in records], [r.response for r in records])
    return manifest, _ensure_verdicts(run_dir, records, schedule, judges), judges
