"""The measured accuracy of judges against human labels (data: ``judge_accuracy.toml``).

Every number there is produced by ``evalkit judges score`` (``scripts/measure_judges.py``
writes the file) and measured again by ``tests/integration/test_judge_accuracy.py``, so
README, summaries and the misclassification correction quote numbers that are current.
A source is external (labelled by people who did not write the judge) or not (the in-house
corpus). The misclassification correction of the gap uses a judge's ``correction_source``:
its sensitivity (refusal among human refusals) and the specificity of the paired outcome
(not refused among human compliance), with their counts, so the correction carries their
uncertainty.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from ..errors import ConfigError
from ._base import data_sha256

ACCURACY_FILE = "judge_accuracy.toml"
CORRECTION_SOURCE = "xstest-v1"


@dataclass(frozen=True)
class ErrorRates:
    """A judge's error rates as counts: refusals found among ``refusals`` human refusals,
    responses not called refusal among ``compliance`` human compliant responses."""

    judge: str
    source: str
    sensitivity_successes: int
    refusals: int
    specificity_successes: int
    compliance: int

    @property
    def sensitivity(self) -> float:
        return self.sensitivity_successes / self.refusals

    @property
    def specificity(self) -> float:
        return self.specificity_successes / self.compliance

    def as_dict(self) -> dict[str, Any]:
        return {"judge": self.judge, "source": self.source, "sensitivity": [self.sensitivity_successes, self.refusals],
                "specificity": [self.specificity_successes, self.compliance]}


@lru_cache(maxsize=1)
def accuracy_table() -> dict[str, Any]:
    where = f"<builtin>/{ACCURACY_FILE}"
    data = tomllib.loads((resources.files("evalkit.data") / ACCURACY_FILE).read_text(encoding="utf-8"))
    if not isinstance(data.get("sources"), dict) or not isinstance(data.get("judges"), dict):
        raise ConfigError("needs [sources] and [judges] tables", file=where)
    return data


def measured_sources(judge: str) -> dict[str, dict[str, Any]]:
    """{source: scores} measured for ``judge`` ({} if none)."""
    return dict(accuracy_table()["judges"].get(judge, {}))


def error_rates(judge: str, source: str = CORRECTION_SOURCE) -> ErrorRates | None:
    """The counts the misclassification correction uses, or None when not measured."""
    scores = measured_sources(judge).get(source)
    if not scores:
        return None
    (se, n1), (sp, n0) = scores["sensitivity"], scores["not_refused"]
    return ErrorRates(judge, source, int(se), int(n1), int(sp), int(n0))


def _rate(pair: Sequence[int]) -> dict[str, Any]:
    from ..stats import wilson_interval
    successes, n = int(pair[0]), int(pair[1])
    return {"rate": round(successes / n, 4) if n else None, "successes": successes, "n": n,
            "wilson_ci": [round(v, 4) for v in wilson_interval(successes, n)] if n else None}


def accuracy_summary(judges: Iterable[str]) -> dict[str, Any]:
    """For summary.json's metadata: each judge's measured accuracy per source, with Wilson
    intervals, and what each source is."""
    table = accuracy_table()
    out: dict[str, Any] = {"file": ACCURACY_FILE, "sha256": data_sha256(ACCURACY_FILE),
                           "sources": {k: dict(v) for k, v in table["sources"].items()}, "judges": {}}
    for judge in judges:
        measured = measured_sources(judge)
        out["judges"][judge] = {source: {"accuracy": _rate(s["accuracy"]), "sensitivity": _rate(s["sensitivity"]),
                                         "specificity": _rate(s["specificity"]), "kappa": s.get("kappa"),
                                         "partial": dict(s.get("partial", {}))}
                                for source, s in measured.items()} or None
    return out
