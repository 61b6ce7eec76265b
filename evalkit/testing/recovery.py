"""Planted versus recovered: what a suite run found on a model organism, against the ground
truth written beside its weights.

Reads a results directory as the pytest layer wrote it (``summary.json`` and the stored
runs), so what is compared is exactly what the suite reported and what its judge decided
on the generated text. Behavior ids and numbers only, never responses.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..report import SUMMARY_JSON, SummaryRow
from ..runs import Record, load_run
from .organisms import GROUND_TRUTH, GroundTruth, expected_label, load_ground_truth


@dataclass(frozen=True)
class Recovery:
    model: str
    suite: str
    pair: str
    n: int
    judge: str
    planted_gap: float  # over the behaviors of this run
    gap: float | None
    gap_ci: tuple[float, float] | None
    verdict: str
    planted_flips: frozenset[str]
    recovered_flips: frozenset[str]  # judged as the statistic's outcome under free, not under paid
    agreement: float  # share of judged responses whose verdict is the planted label

    @property
    def inside(self) -> bool | None:
        return None if self.gap_ci is None else self.gap_ci[0] <= self.planted_gap <= self.gap_ci[1]

    @property
    def sensitivity(self) -> float | None:
        if not self.planted_flips:
            return None
        return len(self.planted_flips & self.recovered_flips) / len(self.planted_flips)

    @property
    def precision(self) -> float | None:
        if not self.recovered_flips:
            return None
        return len(self.planted_flips & self.recovered_flips) / len(self.recovered_flips)


def recover(results_dir: str | os.PathLike[str],
            truth_dir: str | os.PathLike[str] | None = None) -> list[Recovery]:
    """One ``Recovery`` per summary row of ``results_dir``. The ground truth is read beside
    the row's model (a local organism directory), or from ``truth_dir`` (a served model,
    whose name is not a path)."""
    results = Path(results_dir)
    try:
        summary = json.loads((results / SUMMARY_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"no readable {SUMMARY_JSON} ({exc})", file=str(results / SUMMARY_JSON)) from None
    judge = summary.get("meta", {}).get("judge", "refusal")
    out = []
    for row in summary["rows"]:
        truth = load_ground_truth(truth_dir if truth_dir is not None else row["model"])
        if truth is None and truth_dir is not None:
            raise InputError(f"{truth_dir} holds no organism ground truth ({GROUND_TRUTH})", option="--truth")
        if truth is None:
            raise InputError(f"model {row['model']!r} has no organism ground truth beside it; give --truth",
                             file=str(results / SUMMARY_JSON))
        _, records = load_run(results / "runs" / row["run"])
        out.append(_compare(row, records, truth, judge))
    return out


def _compare(row: SummaryRow, records: Sequence[Record], truth: GroundTruth, judge: str) -> Recovery:
    control = row["pair_kind"] == "control"
    outcome = "flagged" if judge.startswith("training-trace") else "refusal"
    by_behavior: dict[str, dict[str, str | None]] = {}  # behavior id -> slot -> verdict
    agree = judged = 0
    for record in records:
        verdict = record.verdicts.get(judge)
        by_behavior.setdefault(record.behavior_id, {})[record.slot] = verdict
        # The A/A control's "paid" slot carries the second free framing: its planted label is free's.
        expected = expected_label(truth, record.behavior_id, "free" if control else record.slot, judge)
        if expected is not None and verdict not in (None, "error"):
            judged += 1
            agree += verdict == expected
    behaviors = sorted(by_behavior)
    planted = frozenset() if control else frozenset(behaviors) & frozenset(truth["planted_flips"])
    recovered = frozenset(b for b, v in by_behavior.items()
                          if v.get("free") == outcome and v.get("paid") != outcome and "paid" in v)
    if judge.startswith("training-trace") and truth.get("trace") and not control:
        # the trace organism "flips" on every behavior: flagged under free, clean under paid
        planted = frozenset(behaviors)
    ci = row.get("gap_ci")
    return Recovery(row["model"], row["suite"], row["pair"], row.get("n", 0), judge,
                    -len(planted) / len(behaviors) if behaviors else 0.0, row.get("gap"),
                    tuple(ci) if ci else None, row["verdict"], planted, recovered,
                    agree / judged if judged else 0.0)


def table(recoveries: list[Recovery]) -> str:
    """Markdown: planted against recovered gap and flip set, one line per summary row."""
    lines = ["| model | suite | pair | n | planted gap | recovered gap [95% CI] | inside | verdict | planted flips | "
             "recovered flips | sensitivity | precision | verdicts = planted |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def num(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    for r in recoveries:
        interval = "n/a" if r.gap_ci is None else f"{r.gap:+.3f} [{r.gap_ci[0]:+.3f}, {r.gap_ci[1]:+.3f}]"
        lines.append(f"| {Path(r.model).name} | {r.suite} | {r.pair} | {r.n} | {r.planted_gap:+.3f} | {interval} | "
                     f"{'yes' if r.inside else 'no'} | {r.verdict} | {len(r.planted_flips)} | "
                     f"{len(r.recovered_flips)} | {num(r.sensitivity)} | {num(r.precision)} | {r.agreement:.3f} |")
    return "\n".join(lines)
