"""Agreement between judges on the same generations: Cohen's kappa, confusion matrices,
and the behaviors where judges disagree; and the ``evalkit judges`` commands.

The statistics (``ConfusionMatrix``, ``cohen_kappa``) live in ``evalkit.stats`` and are
re-exported here. Items either judge could not judge (``error``, ``n/a``) are excluded and
counted; ``unclear`` is a label like the others. Output holds ids, labels and numbers only,
never response text.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tabulate import tabulate

from .judges import ERROR, LABELS, NOT_APPLICABLE
from .stats import ConfusionMatrix, Kappa, cohen_kappa, cohen_kappa_labels  # noqa: F401  (re-exported: stats lives in stats/)

if TYPE_CHECKING:
    from .runs_store import Record

EXCLUDED = (ERROR, NOT_APPLICABLE)  # not a judgement: left out of kappa


# ---------------------------------------------------------------- judges on a run


@dataclass(frozen=True)
class PairAgreement:
    judge_a: str
    judge_b: str
    kappa: Kappa | None  # None: no item both judges could judge
    matrix: ConfusionMatrix
    excluded: int

    def as_dict(self) -> dict[str, Any]:
        return {"judge_a": self.judge_a, "judge_b": self.judge_b, "excluded": self.excluded,
                **(self.kappa.as_dict() if self.kappa else {"kappa": None, "n": 0}), "matrix": self.matrix.as_dict()}


@dataclass(frozen=True)
class Disagreement:
    index: int
    behavior_id: str
    slot: str
    labels: tuple[str, ...]  # in the report's judge order


@dataclass(frozen=True)
class AgreementReport:
    judges: tuple[str, ...]
    n_items: int
    pairs: tuple[PairAgreement, ...]
    disagreements: tuple[Disagreement, ...]
    label_counts: dict[str, dict[str, int]]

    @property
    def disagreeing_behaviors(self) -> list[str]:
        return list(dict.fromkeys(d.behavior_id for d in self.disagreements))

    def as_dict(self) -> dict[str, Any]:
        return {"judges": list(self.judges), "n_items": self.n_items, "pairs": [p.as_dict() for p in self.pairs],
                "label_counts": self.label_counts, "disagreeing_behaviors": self.disagreeing_behaviors,
                "disagreements": [{"index": d.index, "behavior_id": d.behavior_id, "slot": d.slot,
                                   "labels": dict(zip(self.judges, d.labels))} for d in self.disagreements]}


def agreement(records: Sequence[Record], judge_names: Sequence[str]) -> AgreementReport:
    """Pairwise agreement of ``judge_names`` over ``records`` (each holding their verdicts)."""
    if len(judge_names) < 2:
        raise ValueError("agreement needs at least two judges")
    missing = [j for j in judge_names if any(j not in r.verdicts for r in records)]
    if missing:
        raise ValueError(f"records lack verdicts of {', '.join(missing)}")
    labels = {j: [r.verdicts[j] for r in records] for j in judge_names}
    pairs = []
    for a, b in itertools.combinations(judge_names, 2):
        keep = [i for i in range(len(records)) if labels[a][i] not in EXCLUDED and labels[b][i] not in EXCLUDED]
        matrix = ConfusionMatrix.from_labels([labels[a][i] for i in keep], [labels[b][i] for i in keep], order=LABELS)
        pairs.append(PairAgreement(a, b, cohen_kappa(matrix) if keep else None, matrix, len(records) - len(keep)))
    disagreements = tuple(
        Disagreement(r.index, r.behavior_id, r.slot, tuple(labels[j][i] for j in judge_names))
        for i, r in enumerate(records) if len({labels[j][i] for j in judge_names}) > 1)
    counts = {j: {label: labels[j].count(label) for label in dict.fromkeys(labels[j])} for j in judge_names}
    return AgreementReport(tuple(judge_names), len(records), tuple(pairs), disagreements, counts)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def format_report(report: AgreementReport, max_listed: int = 50) -> str:
    rows = []
    for p in report.pairs:
        k = p.kappa
        ci = f"[{k.ci[0]:.3f}, {k.ci[1]:.3f}]" if k and k.ci else "n/a"
        rows.append((p.judge_a, p.judge_b, k.n if k else 0, p.excluded, _num(k.observed if k else None),
                     _num(k.expected if k else None), _num(k.kappa if k else None), ci))
    out = [f"{report.n_items} responses judged by {', '.join(report.judges)}", "",
           tabulate(rows, headers=("judge a", "judge b", "n", "excluded", "agreement", "expected", "kappa",
                                   "95% CI"), disable_numparse=True)]
    for p in report.pairs:
        out += ["", f"{p.judge_a} (rows) x {p.judge_b} (columns)",
                tabulate([(c, *row) for c, row in zip(p.matrix.categories, p.matrix.counts)],
                         headers=("", *p.matrix.categories), disable_numparse=True) if p.matrix.n else "(no items)"]
    behaviors = report.disagreeing_behaviors
    out += ["", f"disagreements: {len(report.disagreements)} responses, {len(behaviors)} behaviors"]
    listed = report.disagreements[:max_listed]
    if listed:
        out.append(tabulate([(d.behavior_id, d.index, d.slot, *d.labels) for d in listed],
                            headers=("behavior", "record", "framing", *report.judges), disable_numparse=True))
    if len(report.disagreements) > max_listed:
        out.append(f"... {len(report.disagreements) - max_listed} more (see --json)")
    return "\n".join(out)


# ---------------------------------------------------------------- commands


def judge_list(text: str, option: str) -> list[str]:
    from .errors import InputError
    names = [n.strip() for n in text.split(",") if n.strip()]
    if len(names) != len(set(names)):
        raise InputError(f"a judge is listed twice in {text!r}", option=option)
    return names


