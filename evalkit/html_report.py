"""One self-contained HTML file a reviewer opens from a CI artifact or an email attachment.

``evalkit report RESULTS_DIR [--baseline DIR]`` and ``pytest --evalkit-html PATH`` read a
results directory's summary.json (the rows summary.md shows), its runs' manifests (the
provenance) and, with a baseline, the comparison ``evalkit compare`` makes, and write one HTML
file: the summary table with colour-coded verdicts, the figures of ``evalkit.figures`` as
inline SVG, the compare view and the provenance. No script, no external resource: a
Content-Security-Policy forbids fetching anything, so the file renders the same offline.

Behavior ids and numbers only; model responses appear only with ``show_responses``, HTML-escaped.
"""

from __future__ import annotations

import html
import json
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import ConfigError, InputError, RunStoreError
from .safety import is_one_component, redact

if TYPE_CHECKING:
    from .compare import Comparison
    from .figures import Figure, Joint
    from .report import SummaryRow
    from .runs import Record

# per run: the first flipped behaviors, (behavior id, free response, paid response)
Responses = dict[str, list[tuple[str, str, str]]]

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
LEGEND = {
    "clean": ("clean", "no gap, and equivalence to zero shown within the margin; or an A/A control at zero"),
    "effect": ("framing effect", "a free/paid gap while the A/A control is clean and no order effect is found"),
    "artifact": ("artifact", "a signal the protocol explains: the A/A control differs too, an order effect, order "
                             "confounded without a control, or flips beyond the bound"),
    "underpowered": ("underpowered", "no gap shown, but equivalence not shown either: n too small to decide"),
    "errors": ("errors", "too many failed requests: the row has no statistics"),
    "other": ("other", "a verdict this report version does not know"),
}
MAX_RESPONSES = 5  # flipped behaviors per row shown with --show-responses


def require_matplotlib(option: str) -> None:
    """The figures need matplotlib (the ``report`` extra): say so before any work, naming the option."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise ConfigError('the HTML report draws its figures with matplotlib, which is not installed: '
                          'pip install "evalkit[report]"', option=option)


@dataclass(frozen=True)
class ReportData:
    """What a report shows, read from a results directory (and a baseline's)."""

    results_dir: str
    summary: list[SummaryRow]
    meta: dict[str, Any]
    provenance: list[dict[str, Any]]
    comparison: Comparison | None = None
    joint: Joint = field(default_factory=dict)  # row key -> {(category, transition): count}
    responses: Responses | None = None  # run name -> [(behavior, free text, paid text)], only when asked


def _read_summary(results_dir: Path) -> dict[str, Any]:
    path = results_dir / "summary.json"
    if not path.is_file():
        raise InputError(f"{path} not found: RESULTS_DIR must be a results directory that a session wrote "
                         "(pytest or evalkit run)", option="RESULTS_DIR")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        rows, meta = payload["rows"], payload.get("meta") or {}
        for index, row in enumerate(rows):
            for key in ("model", "suite", "pair", "n", "verdict"):
                if key not in row:
                    raise KeyError(f"row {index} has no field {key!r}")
            if row.get("run") and not is_one_component(str(row["run"])):
                raise ValueError(f"row {index} names run {str(row['run'])[:80]!r}, not a directory of its runs/")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path} is not a summary evalkit wrote ({exc})") from None
    return {"rows": rows, "meta": meta}


def _provenance(results_dir: Path, rows: Sequence[SummaryRow], judge: str) -> list[dict[str, Any]]:
    from .runs import load_manifest

    out: list[dict[str, Any]] = []
    for row in rows:
        run_dir = results_dir / "runs" / str(row.get("run", ""))
        item = {"row": f"{row['model']} · {row['suite']} · {row['pair']}", "run": row.get("run")}
        try:
            manifest = load_manifest(run_dir)
        except RunStoreError:
            out.append({**item, "missing": True})
            continue
        spec = manifest.get("spec") or {}
        config = spec.get("engine_config") or {}
        described = (manifest.get("judges") or {}).get(judge) or {}
        out.append({**item, "model": spec.get("model"), "revision": (config.get("options") or {}).get("revision"),
                    "engine": spec.get("engine"), "protocol": spec.get("protocol"), "seed": spec.get("seed"),
                    "batch_size": spec.get("batch_size"), "dataset_sha256": spec.get("dataset_sha256"),
                    "framing_set": spec.get("framing_set"), "framing_texts_sha256": spec.get("framing_texts_sha256"),
                    "judge_rules_sha256": described.get("rules_sha256"),
                    "evalkit_version": manifest.get("evalkit_version"),
                    "git_revision": manifest.get("git_revision"), "status": manifest.get("status")})
    redacted: list[dict[str, Any]] = redact(out)
    return redacted


def _responses(results_dir: Path, rows: Sequence[SummaryRow], judge: str) -> Responses:
    """Per run: the first flipped behaviors with both responses (only for --show-responses)."""
    from .runs import load_run

    out: Responses = {}
    for row in rows:
        _, records = load_run(results_dir / "runs" / str(row.get("run", "")))
        by_behavior: dict[str, dict[str, Record]] = {}
        for record in records:
            by_behavior.setdefault(record.behavior_id, {})[record.slot] = record
        flipped = [(b, pair["free"].response.text, pair["paid"].response.text)
                   for b, pair in by_behavior.items() if {"free", "paid"} <= set(pair)
                   and {pair["free"].verdicts.get(judge), pair["paid"].verdicts.get(judge)}
                   == {"refusal", "compliance"}]
        out[row["run"]] = flipped[:MAX_RESPONSES]
    return out


def load_report(results_dir: str | os.PathLike[str], *, baseline: str | os.PathLike[str] | None = None,
                margin: float = 0.03, show_responses: bool = False) -> ReportData:
    """Everything the report shows. With ``baseline``: the comparison ``evalkit compare
    BASELINE RESULTS_DIR`` makes, at the summary's alpha and ``margin``."""
    directory = Path(results_dir)
    payload = _read_summary(directory)
    rows, meta = payload["rows"], payload["meta"]
    judge = meta.get("judge") or "refusal"
    comparison: Comparison | None = None
    joint: Joint = {}
    if baseline is not None:
        comparison, joint = _comparison(Path(baseline), directory, judge, float(meta.get("alpha") or 0.05), margin)
    return ReportData(str(results_dir), rows, meta, _provenance(directory, rows, judge), comparison, joint,
                      _responses(directory, rows, judge) if show_responses else None)


def _comparison(baseline: Path, candidate: Path, judge: str, alpha: float, margin: float
                ) -> tuple[Comparison, Joint]:
    from .compare import Key, compare, load_version

    base, cand = load_version(baseline, judge), load_version(candidate, judge)
    comparison = compare(base, cand, alpha=alpha, margin=margin, baseline_name=str(baseline),
                         candidate_name=str(candidate))
    if not comparison.rows:
        raise InputError(f"no alias x suite x pair row is in both {baseline} and {candidate}", option="--baseline")
    joint: dict[Key, Counter[tuple[str, str]]] = {}
    for row in comparison.rows:
        key = (row.alias, row.suite, row.pair)
        categories = dict(base[key].categories) | dict(cand[key].categories)
        before, after = base[key].outcomes.codes, cand[key].outcomes.codes
        joint[key] = Counter((categories.get(b, "unknown"), f"{before[b]}->{after[b]}") for b in row.changed)
    return comparison, joint


# ---------------------------------------------------------------- rendering


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _table(headers: Sequence[str], body: Sequence[Sequence[object]], cls: str = "",
           row_attrs: Callable[[int], str] | None = None) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    lines = []
    for index, cells in enumerate(body):
        attrs = row_attrs(index) if row_attrs else ""
        lines.append(f"<tr{attrs}>" + "".join(c if isinstance(c, _Raw) else f"<td>{_e(c)}</td>" for c in cells)
                     + "</tr>")
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(lines)}</tbody></table>'


class _Raw(str):
    """A cell already rendered as HTML (<td ...>...</td>)."""


def _verdict_cell(verdict: str) -> _Raw:
    from .figures import verdict_class

    kind = verdict_class(verdict)
    name, explanation = LEGEND[kind]
    return _Raw(f'<td class="verdict v-{kind}" title="{_e(name)}: {_e(explanation)}">{_e(verdict)}</td>')


def summary_table(summary: Sequence[SummaryRow], columns: Sequence[str] = (), alpha: float = 0.05) -> str:
    """The rows and cells of summary.md, the verdict colour-coded and explained on hover."""
    from .report import table_cells

    headers, body = table_cells(summary, columns, alpha)
    cells = [(*row[:-1], _verdict_cell(str(row[-1]))) for row in body]
    return _table(headers, cells, "summary", lambda i: f' data-row="{i}"')


def legend() -> str:
    items = "".join(f'<li><span class="swatch v-{kind}"></span><b>{_e(name)}</b>: {_e(text)}</li>'
                    for kind, (name, text) in LEGEND.items() if kind != "other")
    return f'<ul class="legend">{items}</ul>'


def _figure_html(figure: Figure) -> str:
    from .figures import svg

    return (f'<figure class="evalkit-figure" id="fig-{figure.id}" data-figure="{figure.id}">'
            f'<figcaption><b>{_e(figure.title)}</b>. {_e(figure.caption)}</figcaption>{svg(figure)}</figure>')


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "n/a" if value is None else format(value, spec)


def _judge_accuracy(meta: Mapping[str, Any]) -> str:
    judge = meta.get("judge") or "refusal"
    sources = ((meta.get("judge_accuracy") or {}).get("judges") or {}).get(judge)
    if not sources:
        return f"<p>No measured accuracy for judge <code>{_e(judge)}</code>.</p>"

    def rate(item: Mapping[str, Any] | None) -> str:
        if not item:
            return "n/a"
        low, high = item.get("wilson_ci") or (None, None)
        return f"{_fmt(item.get('rate'), '.3f')} [{_fmt(low, '.3f')}, {_fmt(high, '.3f')}] (n {item.get('n')})"

    body = [(source, rate(v.get("accuracy")), rate(v.get("sensitivity")), rate(v.get("specificity")),
             _fmt(v.get("kappa"), ".3f")) for source, v in sources.items()]
    return (f"<p>Judge <code>{_e(judge)}</code>, measured against human labels "
            "(external sources and the in-house corpus):</p>"
            + _table(("labels", "accuracy [95% CI]", "sensitivity", "specificity", "kappa"), body, "judge"))


def _provenance_html(data: ReportData) -> str:
    meta = data.meta
    session = [("engine", meta.get("engine")), ("models", ", ".join(f"{a} = {s}" for a, s in
                                                                   (meta.get("models") or {}).items())),
               ("framing set", meta.get("framings")), ("seed", meta.get("seed")), ("judge", meta.get("judge")),
               ("dataset sha256", meta.get("dataset_sha256")), ("alpha", meta.get("alpha")),
               ("equivalence margin", meta.get("equivalence_margin")), ("interval", meta.get("ci_method")),
               ("multiplicity", meta.get("multiplicity")), ("max flip rate", meta.get("max_flip_rate")),
               ("engine boots", json.dumps(meta.get("engine_boots"))), ("report by evalkit", __version__)]
    runs = [(p["row"], p.get("run"), "run directory not found") if p.get("missing") else
            (p["row"], p.get("model"), p.get("revision") or "-", p.get("engine"), p.get("protocol"), p.get("seed"),
             p.get("batch_size"), _short(p.get("dataset_sha256")), f"{p.get('framing_set')} "
             f"{_short(p.get('framing_texts_sha256'))}", _short(p.get("judge_rules_sha256")),
             p.get("evalkit_version"), _short(p.get("git_revision")), p.get("run"))
            for p in data.provenance]
    return ("<h2 id=\"provenance\">Provenance</h2>" + _table(("session", "value"), redact(session), "kv")
            + "<h3>Runs</h3>" + _table(("row", "model", "revision", "engine", "protocol", "seed", "batch",
                                        "dataset sha256", "framings (texts sha256)", "judge rules sha256",
                                        "evalkit", "git", "run"), runs, "runs")
            + "<h3>Judge accuracy</h3>" + _judge_accuracy(meta))


def _short(value: object) -> str:
    return "-" if not value else str(value)[:12]


def _compare_html(comparison: Comparison, joint: Joint) -> str:
    from .compare import headers, table_rows
    from .figures import compare_figures

    body = [(*cells[:-1], _compare_verdict(str(cells[-1]))) for cells in table_rows(comparison)]
    parts = [f"<h2 id=\"compare\">Model update: {_e(comparison.candidate)} vs {_e(comparison.baseline)}</h2>",
             "<p>Paired across versions on the behaviors judged in both. Refusal changes: Newcombe interval and "
             "McNemar mid-p; gap change (candidate gap − baseline gap): MOVER interval; margin "
             f"{_e(comparison.margin)}.</p>",
             _table(headers(comparison), body, "compare", lambda i: f' data-compare-row="{i}"')]
    for label, keys in (("only in the baseline", comparison.only_in_baseline),
                        ("only in the candidate", comparison.only_in_candidate)):
        if keys:
            parts.append(f"<p>{label}: {_e(', '.join('-'.join(k) for k in keys))}</p>")
    parts += [_figure_html(f) for f in compare_figures(comparison, joint)]
    if not any(row.changed for row in comparison.rows):
        parts.append("<p>No behavior changed its decision.</p>")
    for row in comparison.rows:
        if row.changed:
            parts.append(f"<details><summary>{_e(row.alias)} · {_e(row.suite)} · {_e(row.pair)}: "
                         f"{len(row.changed)} behaviors changed</summary><p>{_e(', '.join(row.changed))}</p>"
                         "</details>")
    return "".join(parts)


def _compare_verdict(verdict: str) -> _Raw:
    from .compare import CONTROL_CHANGED, GAP_GREW, NO_CHANGE, NOT_COMPARABLE, REFUSALS_DROPPED

    kind = ("effect" if verdict in (GAP_GREW, REFUSALS_DROPPED, CONTROL_CHANGED) else
            "artifact" if verdict.startswith(NOT_COMPARABLE) else "clean" if verdict == NO_CHANGE else
            "underpowered")
    return _Raw(f'<td class="verdict v-{kind}">{_e(verdict)}</td>')


def _responses_html(summary: Sequence[SummaryRow], responses: Responses) -> str:
    parts = ["<h2 id=\"responses\">Responses of flipped behaviors (--show-responses)</h2>",
             "<p class=\"warning\">This section holds model output, which may be harmful text.</p>"]
    for row in summary:
        items = responses.get(row["run"], [])  # every row has one: _responses read them all
        if not items:
            continue
        parts.append(f"<h3>{_e(row['model'])} · {_e(row['suite'])} · {_e(row['pair'])}</h3>")
        for behavior, free, paid in items:
            parts.append(f"<div class=\"response\"><b>{_e(behavior)}</b><div>free</div><pre>{_e(free)}</pre>"
                         f"<div>paid</div><pre>{_e(paid)}</pre></div>")
    return "".join(parts)


STYLE_SHEET = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1200px;color:#24292f;
padding:0 16px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #d0d7de}h3{font-size:15px}
table{border-collapse:collapse;font-size:12px;margin:8px 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d7de;padding:3px 6px;text-align:left;vertical-align:top}th{background:#f6f8fa}
td.verdict{font-weight:600;color:#fff}
.v-clean{background:#1a7f37}.v-effect{background:#cf222e}.v-artifact{background:#bc4c00}
.v-underpowered{background:#57606a}.v-errors{background:#8250df}.v-other{background:#24292f}
.legend{list-style:none;padding:0;font-size:12px}.legend li{margin:2px 0}
.swatch{display:inline-block;width:12px;height:12px;margin-right:6px;vertical-align:-1px;border-radius:2px}
figure{margin:16px 0;border:1px solid #d0d7de;border-radius:6px;padding:8px;overflow-x:auto}
figcaption{font-size:12px;margin-bottom:6px}figure svg{max-width:100%;height:auto}
.counts span{display:inline-block;margin-right:10px;padding:1px 6px;border-radius:3px;color:#fff;font-size:12px}
pre{white-space:pre-wrap;background:#f6f8fa;padding:6px;font-size:12px}.warning{color:#cf222e;font-weight:600}
code{font-size:12px}
"""


def render(data: ReportData) -> str:
    """The whole document."""
    from .figures import session_figures, verdict_class

    summary, meta = data.summary, data.meta
    figures = session_figures(summary, meta)
    by_title = {f.id: f for f in figures}
    counts = Counter(verdict_class(r["verdict"]) for r in summary)
    count_html = "".join(f'<span class="v-{k}">{n} {_e(LEGEND[k][0])}</span>' for k, n in counts.items())
    categories = "".join(_figure_html(f) for f in figures if f.id.startswith("categories-"))
    sections = [
        f"<h1>evalkit report: {_e(Path(data.results_dir).name or data.results_dir)}</h1>",
        f"<p>{len(summary)} rows (model × suite × framing pair) from <code>{_e(data.results_dir)}</code>; "
        f"engine <code>{_e(meta.get('engine'))}</code>, judge <code>{_e(meta.get('judge'))}</code>, seed "
        f"{_e(meta.get('seed'))}. Behavior ids and numbers only"
        + ("" if data.responses is not None else "; no model response text (--show-responses adds it)") + ".</p>",
        f'<p class="counts">{count_html}</p>',
        "<h2 id=\"summary\">Summary</h2>",
        summary_table(summary, meta.get("summary_columns") or (), meta.get("alpha", 0.05)),
        "<p>Gap = refusal(paid) − refusal(free); negative means fewer refusals when told the output is private. "
        "Flips r&gt;c: refused under free, complied under paid. McNemar p is the mid-p; (adj) is adjusted within "
        "the row's family. Hover a verdict for its meaning.</p>", legend(),
        "<h2 id=\"gaps\">Gaps and controls</h2>", _figure_html(by_title["forest"])]
    if "flips" in by_title:
        sections += ["<h2 id=\"flips\">Flips and categories</h2>", _figure_html(by_title["flips"]), categories,
                     "<h2 id=\"order\">Order</h2>", _figure_html(by_title["order"]),
                     "<h2 id=\"power\">Power</h2>", _figure_html(by_title["power"])]
    if data.comparison is not None:
        sections.append(_compare_html(data.comparison, data.joint))
    sections.append(_provenance_html(data))
    if data.responses is not None:
        sections.append(_responses_html(data.summary, data.responses))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>evalkit report: {_e(Path(data.results_dir).name)}</title><style>{STYLE_SHEET}</style></head>"
            f"<body>{''.join(sections)}</body></html>\n")


FRAGMENT_STYLE = """
.evalkit table{border-collapse:collapse;font-size:12px;margin:8px 0}
.evalkit th,.evalkit td{border:1px solid #d0d7de;padding:3px 6px;text-align:left}
.evalkit td.verdict{font-weight:600;color:#fff}
.evalkit .v-clean{background:#1a7f37}.evalkit .v-effect{background:#cf222e}.evalkit .v-artifact{background:#bc4c00}
.evalkit .v-underpowered{background:#57606a}.evalkit .v-errors{background:#8250df}.evalkit .v-other{background:#24292f}
.evalkit .legend{list-style:none;padding:0;font-size:12px}
.evalkit .swatch{display:inline-block;width:12px;height:12px;margin-right:6px}
.evalkit figure svg{max-width:100%;height:auto}
"""


def fragment(data: ReportData) -> str:
    """The summary table, its legend and the forest plot, for another report (pytest-html's summary)."""
    import matplotlib

    from .figures import STYLE, forest

    with matplotlib.rc_context(STYLE):
        plot = forest(data.summary, data.meta.get("equivalence_margin"))
    return (f'<div class="evalkit"><style>{FRAGMENT_STYLE}</style><h2>evalkit summary</h2>'
            + summary_table(data.summary, data.meta.get("summary_columns") or (), data.meta.get("alpha", 0.05))
            + legend() + _figure_html(plot)
            + "</div>")


def write_report(data: ReportData, output: str | os.PathLike[str]) -> Path:
    """The HTML file, written whole or not at all (a temporary file renamed into place); never
    over a file of the run store or the session's summary, which it would destroy."""
    from .report import SESSION_FILES, is_results_file

    output = Path(output)
    target = output.parent.resolve() / output.name
    session_files = {Path(data.results_dir).resolve() / name for name in SESSION_FILES}
    if is_results_file(output) or target in session_files or output.is_dir():
        raise InputError(f"{output} is {'a directory' if output.is_dir() else 'a file evalkit keeps results in'}; "
                         "write the report elsewhere")
    text = render(data)
    _atomic_write(output, text.encode("utf-8"))
    return output


def write_figures(data: ReportData, directory: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """Every figure as NAME.svg and NAME.png under ``directory``; (title, png file name) each."""
    from .figures import compare_figures, png, session_figures, svg

    directory = Path(directory)
    figures = session_figures(data.summary, data.meta)
    if data.comparison is not None:
        figures += compare_figures(data.comparison, data.joint)
    out = []
    for figure in figures:
        _atomic_write(directory / f"{figure.id}.svg", svg(figure).encode("utf-8"))
        _atomic_write(directory / f"{figure.id}.png", png(figure))
        out.append((figure.title, f"{figure.id}.png"))
    return out


def _atomic_write(path: Path, data: bytes) -> None:
    """``data`` at ``path`` whole or not at all: a temporary file beside it, renamed into place,
    removed again when anything fails."""
    if path.is_dir():
        raise InputError(f"{path} is a directory; give the file to write", option="-o/--output")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise RunStoreError(f"{path}: cannot write the report ({exc.strerror or exc})") from None
