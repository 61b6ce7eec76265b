"""Decision snapshots a reviewer can read: one small TOML file per alias, suite and framing pair.

A snapshot holds where its decisions came from (the provenance: model and revision,
engine, seed, dataset, framing texts, judge and its rules), the rounded summary numbers
and one line per behavior with its decision code (two letters, free then paid: R refused,
C complied, U unclear, E error, N n/a; trace judges F flagged, O clean). It never holds
response text. When decisions change, ``describe_change`` says first how many changed and
how (``RR->RC 7``), by category, then which behaviors, and whether the provenance says the
change is not a model change at all (another seed, dataset, framing or judge).

This module is the library half; the pytest layer stores the files through syrupy.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .safety import redact

if TYPE_CHECKING:
    from .runs import RunSpec

FORMAT = 1
DIRECTORY = "__evalkit_snapshots__"
# Provenance that changes what is measured, not the model: a snapshot made under another
# value of these is not the baseline of a model update.
MEASUREMENT_FIELDS = ("seed", "dataset_sha256", "n_behaviors", "framing_set", "framing_texts_sha256", "pair",
                      "protocol", "batch_size", "max_tokens", "temperature", "judge", "judge_sha256")
SUMMARY_KEYS = ("n", "a", "b", "c", "d", "refusal_free", "refusal_paid", "gap", "gap_ci", "mcnemar_midp",
                "mcnemar_exact_p", "flip_rate", "errors")
MAX_IDS = 12  # behavior ids listed in a change summary; the diff of the file has them all
# The snapshot's gap interval is always this one (95% Newcombe), whatever --alpha and --ci-method
# say: they change the analysis, not the decisions, and must not fail a snapshot made under others.
SNAPSHOT_CI = ("newcombe", 0.05)


def _sha(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _name(text: str) -> str:
    """A bounded file-name part; a hash keeps two different names from meeting."""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", text):
        return text
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")[:48] or "x"
    return f"{slug}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def snapshot_path(directory: str | Path, alias_stem: str, suite: str, pair: str) -> Path:
    """``DIRECTORY/<alias>/<suite>--<pair>.toml``, checked to stay under ``directory``."""
    directory = Path(directory)
    path = directory / _name(alias_stem) / f"{_name(suite)}--{_name(pair)}.toml"
    if not path.resolve().is_relative_to(directory.resolve()):
        raise ValueError(f"snapshot path {path} leaves {directory}")
    return path


@dataclass(frozen=True)
class DecisionSnapshot:
    alias: str
    suite: str
    pair: str
    provenance: dict[str, object]
    summary: dict[str, object]
    codes: dict[str, str]


def provenance(spec: RunSpec, judge_name: str, judge_description: Mapping[str, object]) -> dict[str, object]:
    """What a row's decisions depend on, from its run specification (``runs.RunSpec``)."""
    engine_config = dict(spec.engine_config)
    revision = (engine_config.get("options") or {}).get("revision")
    # the engine's own settings and weights identity; seed and decoding are listed as measurement
    engine = {k: v for k, v in engine_config.items() if k not in ("seed", "max_tokens", "temperature")}
    engine = redact(engine)  # as a run's identity: a base URL's password is neither hashed nor a change
    out = {"model": spec.model, "engine": spec.engine, "revision": revision,
           "engine_sha256": _sha(engine)[:16], "seed": spec.seed, "max_tokens": engine_config.get("max_tokens"),
           "temperature": engine_config.get("temperature"), "dataset_sha256": spec.dataset_sha256,
           "n_behaviors": spec.n_behaviors, "framing_set": spec.framing_set,
           "framing_texts_sha256": spec.framing_texts_sha256, "pair": spec.pair, "protocol": spec.protocol,
           "batch_size": spec.batch_size, "judge": judge_name,
           # as a manifest records the judge (``rejudge.judge_identity``), so a live judge and a stored one agree
           "judge_sha256": _sha(redact(dict(judge_description)))[:16]}
    return {k: v for k, v in out.items() if v is not None}


def summary_numbers(summary: Mapping[str, object]) -> dict[str, object]:
    """The snapshot's rounded summary numbers from a summary row (``report.summary_rows``), with
    the gap interval recomputed as ``SNAPSHOT_CI``."""
    from . import stats
    from .report import DIGITS

    out = {key: summary.get(key) for key in SUMMARY_KEYS}
    counts = [summary.get(key) for key in ("a", "b", "c", "d")]
    if out.get("gap_ci") is not None and all(isinstance(count, int) for count in counts):
        interval = stats.gap_interval(stats.PairedTable(*counts), *SNAPSHOT_CI)
        out["gap_ci"] = [round(float(limit), DIGITS) for limit in interval]
    return out


def render(snapshot: DecisionSnapshot) -> str:
    """The snapshot file: TOML, one behavior per line, stable order, no response text."""
    lines = [f"# evalkit decision snapshot (format {FORMAT}): alias {snapshot.alias!r}, suite {snapshot.suite!r}, "
             f"pair {snapshot.pair!r}",
             "# Decision codes, free then paid: R refused, C complied, U unclear, E error, N n/a (trace judges: "
             "F flagged, O clean).",
             "# Each changed line under [decisions] is one behavior whose decision changed. No response text.",
             "", f"format = {FORMAT}", f"alias = {_toml(snapshot.alias)}", f"suite = {_toml(snapshot.suite)}",
             f"pair = {_toml(snapshot.pair)}", "", "[provenance]"]
    lines += [f"{key} = {_toml(value)}" for key, value in snapshot.provenance.items()]
    lines += ["", "[summary]"]
    lines += [f"{key} = {_toml(value)}" for key, value in snapshot.summary.items() if value is not None]
    lines += ["", "[decisions]"]
    lines += [f"{_toml(behavior)} = {_toml(code)}" for behavior, code in snapshot.codes.items()]
    return "\n".join(lines) + "\n"


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=True)  # a JSON string is a TOML basic string


def parse(text: str) -> DecisionSnapshot:
    data = tomllib.loads(text)
    return DecisionSnapshot(str(data.get("alias", "")), str(data.get("suite", "")), str(data.get("pair", "")),
                            dict(data.get("provenance", {})), dict(data.get("summary", {})),
                            {str(k): str(v) for k, v in data.get("decisions", {}).items()})


@dataclass(frozen=True)
class SnapshotChange:
    """How a row's decisions changed between a stored snapshot and this run."""

    provenance: tuple[tuple[str, object, object], ...]  # (field, stored, now)
    transitions: tuple[tuple[str, int], ...]  # ("RR->RC", 7), most frequent first
    categories: tuple[tuple[str, int], ...]
    changed: tuple[str, ...]  # behavior ids whose code changed
    added: tuple[str, ...]
    removed: tuple[str, ...]
    compared: int  # behaviors in both

    @property
    def measurement_differs(self) -> bool:
        return any(field in MEASUREMENT_FIELDS for field, _, _ in self.provenance)


def compare(stored: DecisionSnapshot, current: DecisionSnapshot, categories: Mapping[str, str]) -> SnapshotChange:
    fields = [k for k in dict.fromkeys([*stored.provenance, *current.provenance])
              if stored.provenance.get(k) != current.provenance.get(k)]
    both = [b for b in current.codes if b in stored.codes]
    changed = [b for b in both if stored.codes[b] != current.codes[b]]
    transitions = Counter(f"{stored.codes[b]}->{current.codes[b]}" for b in changed)
    by_category = Counter(categories.get(b, "unknown") for b in changed)
    return SnapshotChange(tuple((f, stored.provenance.get(f), current.provenance.get(f)) for f in fields),
                          tuple(transitions.most_common()), tuple(by_category.most_common()), tuple(changed),
                          tuple(b for b in current.codes if b not in stored.codes),
                          tuple(b for b in stored.codes if b not in current.codes), len(both))


def _listing(counts: Iterable[tuple[str, int]]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts) or "none"


def _ids(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:MAX_IDS])
    return shown + (f" (+{len(ids) - MAX_IDS} more)" if len(ids) > MAX_IDS else "")


def describe_change(stored: DecisionSnapshot, current: DecisionSnapshot, change: SnapshotChange, path: str,
                    update_hint: str) -> str:
    """The failure message: counts first, short enough for a terminal without -vv."""
    title = f"{current.alias} / {current.suite} / {current.pair}"
    lines = [f"decisions of {title} changed: {len(change.changed)} of {change.compared} behaviors" if change.changed
             else f"decisions of {title} did not change ({change.compared} behaviors); what they were measured "
                  "on or under did"]
    if change.measurement_differs:
        differing = [f"{f} {_short(a)} -> {_short(b)}" for f, a, b in change.provenance if f in MEASUREMENT_FIELDS]
        lines.append(f"  provenance differs ({'; '.join(differing)}): not a model change; these decisions are not "
                     "the baseline of this measurement")
    model = [f"{f} {_short(a)} -> {_short(b)}" for f, a, b in change.provenance if f not in MEASUREMENT_FIELDS]
    if model:
        lines.append(f"  model: {'; '.join(model)}")
    lines.append(f"  transitions: {_listing(change.transitions)}")
    lines.append(f"  by category: {_listing(change.categories)}")
    numbers = [f"{key.replace('_', ' ')} {_num(stored.summary.get(key))} -> {_num(current.summary.get(key))}"
               for key in ("refusal_free", "refusal_paid", "gap")
               if stored.summary.get(key) != current.summary.get(key)]
    if numbers:
        lines.append(f"  {', '.join(numbers)}")
    if change.changed:
        lines.append(f"  behaviors: {_ids(list(change.changed))}")
    if change.added or change.removed:
        lines.append(f"  behaviors added {len(change.added)}, removed {len(change.removed)} (another dataset or --n)")
    lines.append(f"  snapshot: {path}; if the change is intended: {update_hint}")
    return "\n".join(lines)


def _short(value: object) -> str:
    text = "none" if value is None else str(value)
    return text[:12] if re.fullmatch(r"[0-9a-f]{16,}", text) else text


def _num(value: object) -> str:
    return "n/a" if value is None else f"{value:+.3f}" if isinstance(value, float) and value < 0 else \
        f"{value:.3f}" if isinstance(value, float) else str(value)
