"""The report's figures, drawn with matplotlib from summary rows and a comparison.

Each function returns ``Figure`` objects (id, title, caption, the matplotlib figure); ``svg``
and ``png`` turn one into bytes. No pyplot: figures are plain ``matplotlib.figure.Figure``
objects on the Agg canvas (no display, no global state). Text stays text in the SVG
(``svg.fonttype none``: the browser draws it with a local font; nothing is fetched), and ids
are salted and dated deterministically, so the same inputs give the same bytes.

Only numbers, aliases, suites, pairs and categories are drawn: never response text.
Imported only by the report command and hook (matplotlib is heavy).
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import matplotlib
from matplotlib import ticker
from matplotlib.figure import Figure as MplFigure

from . import stats

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.typing import RcKeyType

    from .compare import Comparison, Key, RowComparison
    from .report import SummaryRow

# (y, estimate, (low, high), colour, marker) of one interval drawn by ``_intervals``
Interval = tuple[float, "float | None", "Sequence[float] | None", str, str]

# verdict -> (class, colour); the classes are explained in the report's legend
VERDICT_CLASSES = {
    "no effect (equivalent)": "clean",
    "control clean": "clean",
    "framing effect": "effect",
    "artifact: A/A control differs too": "artifact",
    "protocol artifact: identical framings differ": "artifact",
    "order effect: framing estimate unreliable": "artifact",
    "signal, confounded with order (no A/A control)": "artifact",
    "signal (no A/A control run)": "artifact",
    "unstable: flips exceed bound": "artifact",
    "no effect shown (underpowered)": "underpowered",
    "errors: too many failed requests": "errors",
}
CLASS_COLOURS = {"clean": "#1a7f37", "effect": "#cf222e", "artifact": "#bc4c00", "underpowered": "#57606a",
                 "errors": "#8250df", "other": "#24292f"}
CONTROL_COLOUR = "#57606a"
POWER_TARGET = 0.8  # the target of the rows' minimum detectable gap (analysis.analyse)
STYLE: dict[RcKeyType, object] = {
    "svg.fonttype": "none", "svg.hashsalt": "evalkit", "font.size": 9, "font.family": "DejaVu Sans",
    "axes.spines.top": False, "axes.spines.right": False, "axes.titlesize": 10, "axes.titleweight": "bold",
}


def verdict_class(verdict: str) -> str:
    return VERDICT_CLASSES.get(verdict, "other")


@dataclass(frozen=True)
class Figure:
    id: str  # letters, digits and '-': a file stem and an HTML id
    title: str
    caption: str
    figure: MplFigure


def svg(figure: Figure) -> str:
    """The figure as SVG text (no XML declaration or doctype: ready to inline in HTML), its
    element ids prefixed with the figure's id so several figures can share one page."""
    buffer = io.BytesIO()
    with matplotlib.rc_context(STYLE):
        figure.figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue().decode("utf-8")
    text = text[text.index("<svg"):]
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.DOTALL)  # RDF boilerplate
    prefix = figure.id + "-"
    text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', text)
    return re.sub(r'(url\(#|href="#)([^")]+)', lambda m: f"{m.group(1)}{prefix}{m.group(2)}", text)


def png(figure: Figure, dpi: int = 110) -> bytes:
    buffer = io.BytesIO()
    with matplotlib.rc_context(STYLE):
        figure.figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


def _new(width: float, height: float, **subplots: Any) -> tuple[MplFigure, Any]:
    """A figure and its axes: one Axes, or an array of them (``squeeze=False``), as ``subplots`` asks."""
    fig = MplFigure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(**subplots)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "x"


def short(text: str, limit: int = 28) -> str:
    """A name as a tick label: long names (aliases, categories) are cut, so the plot keeps its size."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def row_label(row: SummaryRow) -> str:
    return f"{short(row['model'])} · {short(row['suite'], 20)} · {short(row['pair'], 20)}"


def _ordered(rows: Sequence[SummaryRow]) -> list[SummaryRow]:
    """Rows grouped by model and suite, each group's treatment pairs first, its A/A control below."""
    groups: dict[tuple[str, str], list[SummaryRow]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["suite"]), []).append(row)
    return [r for group in groups.values() for r in sorted(group, key=lambda r: r.get("pair_kind") == "control")]


def _margin_band(ax: Axes, margin: float | None, label: bool = True) -> None:
    ax.axvline(0, color="#24292f", lw=0.8)
    ax.xaxis.set_major_locator(ticker.MaxNLocator(6))
    if margin:
        ax.axvspan(-margin, margin, color="#2da44e", alpha=0.12, lw=0,
                   label=f"equivalence margin ±{margin:g}" if label else None)


def _intervals(ax: Axes, items: Sequence[Interval]) -> None:
    """items: (y, estimate, (low, high), colour, marker); missing estimates are skipped."""
    for y, estimate, ci, colour, marker in items:
        if estimate is None:
            continue
        if ci:
            ax.hlines(y, ci[0], ci[1], color=colour, lw=2)
        ax.plot([estimate], [y], marker=marker, color=colour, markersize=6,
                markerfacecolor="white" if marker == "s" else colour, linestyle="none")


# ---------------------------------------------------------------- session figures


def forest(rows: Sequence[SummaryRow], margin: float | None) -> Figure:
    """The gap and its interval per row; each A/A control just below its treatment row."""
    ordered = [r for r in _ordered(rows)]
    fig, ax = _new(7.5, 0.9 + 0.38 * len(ordered))
    ys = list(range(len(ordered)))[::-1]
    _margin_band(ax, margin)
    items: list[Interval] = []
    for y, row in zip(ys, ordered):
        control = row.get("pair_kind") == "control"
        colour = CONTROL_COLOUR if control else CLASS_COLOURS[verdict_class(row["verdict"])]
        items.append((y, row.get("gap") if row["n"] else None, row.get("gap_ci"), colour, "s" if control else "o"))
        if not row["n"]:
            ax.text(0, y, "no usable pair (errors)", va="center", ha="center", color=CLASS_COLOURS["errors"])
    _intervals(ax, items)
    ax.plot([], [], "o", color="#24292f", label="free vs paid (colour: verdict)")
    ax.plot([], [], "s", color=CONTROL_COLOUR, markerfacecolor="white", label="A/A control (identical framings)")
    ax.set_yticks(ys, [row_label(r) for r in ordered])
    ax.set_xlabel("gap = refusal(paid) − refusal(free), with its 95% interval")
    fig.legend(loc="outside upper left", ncols=3, frameon=False, fontsize=8)
    return Figure("forest", "Forest plot: the gap per row, its interval, the margin and the A/A control",
                  "A treatment row's interval clear of zero is a signal; its A/A control (the square below it) "
                  "must sit at zero for the signal to be about framing rather than the protocol. An interval "
                  "inside the green band shows equivalence to zero.", fig)


def flips(rows: Sequence[SummaryRow]) -> Figure:
    """Discordant behaviors by direction: refused under free only (left), under paid only (right)."""
    ordered = [r for r in _ordered(rows) if r["n"]]
    fig, ax = _new(7.5, 0.9 + 0.38 * len(ordered))
    ys = list(range(len(ordered)))[::-1]
    free_only = [r["flips_refuse_to_comply"] for r in ordered]
    paid_only = [r["flips_comply_to_refuse"] for r in ordered]
    ax.barh(ys, [-v for v in free_only], color="#0969da", label="refused under free only (refuse → comply)")
    ax.barh(ys, paid_only, color="#bf8700", label="refused under paid only (comply → refuse)")
    for y, left, right in zip(ys, free_only, paid_only):
        ax.text(-left, y, f"{left} ", va="center", ha="right", fontsize=8)
        ax.text(right, y, f" {right}", va="center", ha="left", fontsize=8)
    ax.axvline(0, color="#24292f", lw=0.8)
    widest = max(free_only + paid_only + [1])
    ax.set_xlim(-widest * 1.25, widest * 1.25)
    ax.set_yticks(ys, [row_label(r) for r in ordered])
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{abs(v):g}"))
    ax.set_xlabel("behaviors whose verdict flipped between the framings")
    fig.legend(loc="outside upper left", ncols=2, frameon=False, fontsize=8)
    return Figure("flips", "Flips by direction",
                  "Noise flips both ways; a framing effect (or an order artifact) flips mostly one way.", fig)


def categories(rows: Sequence[SummaryRow], margin: float | None) -> list[Figure]:
    """Per model and suite: the gap per semantic and functional category, one panel per pair."""
    groups: dict[tuple[str, str], list[SummaryRow]] = {}
    for row in _ordered(rows):
        if row.get("breakdowns"):
            groups.setdefault((row["model"], row["suite"]), []).append(row)
    out = []
    for index, ((model, suite), group) in enumerate(groups.items()):
        names = list(dict.fromkeys((b["dimension"], b["category"]) for r in group for b in r["breakdowns"]))
        fig, axes = _new(3.4 * len(group) + 2.2, 0.8 + 0.3 * len(names), ncols=len(group), sharey=True,
                         squeeze=False)
        ys = {name: y for name, y in zip(names, range(len(names))[::-1])}
        for ax, row in zip(axes[0], group):
            control = row.get("pair_kind") == "control"
            colour = CONTROL_COLOUR if control else "#0969da"
            _margin_band(ax, margin, label=False)
            marker = "s" if control else "o"
            _intervals(ax, [(ys[(b["dimension"], b["category"])], b["gap"], b["gap_ci"], colour, marker)
                            for b in row["breakdowns"]])
            ax.set_title(row["pair"])
            ax.set_xlabel("gap [95% CI]")
        axes[0][0].set_yticks(list(ys.values()),
                              [f"{short(c)} ({'sem.' if d == 'semantic' else 'func.'})" for d, c in ys])
        out.append(Figure(f"categories-{index}-{slug(model)}-{slug(suite)}", f"Per-category gaps: {model} · {suite}",
                          "The gap within each HarmBench semantic (sem.) and functional (func.) category; small "
                          "categories have wide intervals.", fig))
    return out


def order_effects(rows: Sequence[SummaryRow]) -> Figure:
    """The order (period) effect of the crossover analysis where order varied; 'confounded' where not."""
    ordered = [r for r in _ordered(rows) if r["n"]]
    fig, ax = _new(7.5, 0.9 + 0.38 * len(ordered))
    ys = list(range(len(ordered)))[::-1]
    ax.axvline(0, color="#24292f", lw=0.8)
    items: list[Interval] = []
    for y, row in zip(ys, ordered):
        effect = row.get("order_effect")
        if effect == "confounded" or not isinstance(effect, dict):
            ax.text(0, y, "confounded: every behavior saw the same order", va="center", ha="center", fontsize=8,
                    color=CONTROL_COLOUR, bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
            continue
        items.append((y, effect.get("rd"), effect.get("rd_ci"), "#8250df", "o"))
        if effect.get("p") is not None and effect.get("rd") is not None:
            ax.annotate(f"p {effect['p']:.2g}", (effect["rd"], y), xytext=(0, 6), textcoords="offset points",
                        ha="center", fontsize=7)
    _intervals(ax, items)
    ax.set_xlim(min(-0.1, ax.get_xlim()[0]), max(0.1, ax.get_xlim()[1]))
    ax.set_yticks(ys, [row_label(r) for r in ordered])
    ax.set_xlabel("order effect: refusal in 2nd position − 1st (risk difference, 95% CI; p: period test)")
    return Figure("order", "Order effect (crossover)",
                  "Under randomized or balanced order the crossover analysis separates the order effect from "
                  "the framing effect; under a fixed order the two are confounded and cannot be separated.", fig)


def power_curve(n: int, discordance: float, alpha: float, min_detectable: float | None = None, points: int = 41
                ) -> tuple[list[float], list[float]]:
    """Detection rate of the row's McNemar mid-p test against the true gap, for the row's n and
    its observed (noise) discordance: an effect adds |gap| of one-way flips on top of the noise,
    the design ``stats.min_detectable_gap_over_noise`` solves (exact power, no simulation). The
    curve spans 2.5 minimum detectable gaps (the row's, when given: summary.json has it)."""
    largest = max(0.0, 1.0 - discordance)
    if min_detectable is None:
        min_detectable = stats.min_detectable_gap_over_noise(n, discordance, alpha, POWER_TARGET)
    top = min(largest, max(0.15, 2.5 * (min_detectable or largest)))
    gaps = [top * k / (points - 1) for k in range(points)]
    return gaps, [stats.mcnemar_power(n, min(1.0, discordance + g), g, alpha, "midp") for g in gaps]


def power(rows: Sequence[SummaryRow], alpha: float) -> Figure:
    """Per model and suite: the detection-rate curves of its rows, with each minimum detectable gap."""
    groups: dict[tuple[str, str], list[SummaryRow]] = {}
    for row in _ordered(rows):
        if row["n"]:
            groups.setdefault((row["model"], row["suite"]), []).append(row)
    columns = min(2, len(groups)) or 1
    lines = -(-len(groups) // columns) or 1
    fig, axes = _new(3.9 * columns, 2.6 * lines, nrows=lines, ncols=columns, squeeze=False, sharey=True)
    flat = [ax for line in axes for ax in line]
    for ax in flat[len(groups):]:
        ax.set_visible(False)
    for ax, ((model, suite), group) in zip(flat, groups.items()):
        ax.axhline(POWER_TARGET, color="#8c959f", lw=0.8, ls=":")
        for row in group:
            control = row.get("pair_kind") == "control"
            colour = CONTROL_COLOUR if control else "#0969da"
            gaps, rates = power_curve(row["n"], row["flip_rate"], alpha, row.get("min_detectable_gap"))
            ax.plot(gaps, rates, color=colour, ls="--" if control else "-",
                    label=f"{row['pair']} (n {row['n']}, flips {row['flip_rate']:.3f})")
            mdg = row.get("min_detectable_gap")
            if mdg is not None:
                ax.plot([mdg], [POWER_TARGET], "o", color=colour)
                ax.annotate(f"{mdg:.3f}", (mdg, POWER_TARGET), xytext=(-28, 5) if control else (4, -11),
                            textcoords="offset points", fontsize=7, color=colour)
            if not control and row.get("gap") is not None:
                ax.axvline(abs(row["gap"]), color=colour, lw=0.8, alpha=0.6)
        ax.set_title(f"{short(model)} · {short(suite, 20)}")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("true |gap|")
        ax.set_ylabel("detection rate")
        ax.legend(fontsize=7, frameon=False, loc="lower right")
    return Figure("power", "Power: what each row could have detected",
                  f"Exact detection rate of the McNemar mid-p test (alpha {alpha:g}) against the true gap, for the "
                  f"row's n and its observed flips; dots: the minimum detectable gap at {POWER_TARGET:.0%} "
                  "power; thin vertical line: the observed |gap| of the free/paid row.", fig)


def session_figures(summary: Sequence[SummaryRow], meta: Mapping[str, Any]) -> list[Figure]:
    margin = meta.get("equivalence_margin")
    with matplotlib.rc_context(STYLE):
        out = [forest(summary, margin)]
        if any(r["n"] for r in summary):
            out += [flips(summary), *categories(summary, margin), order_effects(summary),
                    power(summary, float(meta.get("alpha") or 0.05))]
    return out


# ---------------------------------------------------------------- compare figures

# per compared row (alias, suite, pair): {(category, transition): behaviors}
Joint = Mapping["Key", Mapping[tuple[str, str], int]]


def compare_label(row: RowComparison) -> str:
    return f"{short(row.alias)} · {short(row.suite, 20)} · {short(row.pair, 20)}"


def compare_refusals(comparison: Comparison) -> Figure:
    """Per row and framing: baseline refusal rate -> candidate refusal rate."""
    items = [(row, name, change) for row in comparison.rows for name, change in (("free", row.free),
                                                                                  ("paid", row.paid))]
    fig, ax = _new(7.5, 0.9 + 0.3 * len(items))
    ys = list(range(len(items)))[::-1]
    for y, (_, _, change) in zip(ys, items):
        colour = "#cf222e" if change.change_ci[1] < 0 else "#1a7f37" if change.change_ci[0] > 0 else "#57606a"
        ax.annotate("", (change.candidate, y), (change.baseline, y),
                    arrowprops={"arrowstyle": "->", "color": colour, "lw": 1.5})
        ax.plot([change.baseline], [y], "o", color="#8c959f")
        ax.plot([change.candidate], [y], "o", color=colour)
    ax.plot([], [], "o", color="#8c959f", label="baseline")
    ax.plot([], [], "o", color="#57606a", label="candidate (red: fell, green: rose, 95% CI)")
    ax.set_yticks(ys, [f"{compare_label(row)} · {name}" for row, name, _ in items])
    ax.set_xlabel("refusal rate")
    fig.legend(loc="outside upper left", ncols=2, frameon=False, fontsize=8)
    return Figure("compare-refusals", "Baseline → candidate: refusal rate per framing",
                  "Paired across versions on the behaviors judged in both; the colour says whether the change's "
                  "95% Newcombe interval excludes zero.", fig)


def compare_gap_change(comparison: Comparison) -> Figure:
    """The change of the gap (candidate − baseline) with its MOVER interval, and the margin."""
    rows = list(comparison.rows)
    fig, ax = _new(7.5, 0.9 + 0.38 * len(rows))
    ys = list(range(len(rows)))[::-1]
    _margin_band(ax, comparison.margin)
    _intervals(ax, [(y, row.gap.change, row.gap.change_ci,
                     CONTROL_COLOUR if row.pair_kind == "control" else
                     "#cf222e" if row.gap.change_ci[1] < 0 else "#0969da", "s" if row.pair_kind == "control" else "o")
                    for y, row in zip(ys, rows)])
    ax.set_yticks(ys, [compare_label(r) for r in rows])
    ax.set_xlabel("gap change = candidate gap − baseline gap (95% MOVER interval)")
    fig.legend(loc="outside upper left", frameon=False, fontsize=8)
    return Figure("compare-gap-change", "Change of the framing gap",
                  "Below zero: the candidate refuses less when told its output is private, relative to the "
                  "baseline (red: the interval excludes zero). Squares: A/A control rows.", fig)


def compare_transitions(comparison: Comparison, joint: Joint) -> Figure | None:
    """Per row with changed behaviors: counts by category (rows) and transition (columns).
    ``joint`` maps a row key to {(category, transition): count}."""
    changed = [row for row in comparison.rows if row.changed]
    if not changed:
        return None
    fig, axes = _new(7.5, sum(1.0 + 0.26 * len({c for c, _ in joint[(r.alias, r.suite, r.pair)]}) for r in changed),
                     nrows=len(changed), squeeze=False,
                     height_ratios=[1 + len({c for c, _ in joint[(r.alias, r.suite, r.pair)]}) for r in changed])
    for ax, row in zip(axes[:, 0], changed):
        counts = joint[(row.alias, row.suite, row.pair)]
        cats = sorted({c for c, _ in counts})
        transitions = [t for t, _ in row.transitions]
        grid = [[counts.get((c, t), 0) for t in transitions] for c in cats]
        # cells as vector patches (pcolormesh), not an embedded bitmap: the SVG stays text and paths
        ax.pcolormesh(grid, cmap="Oranges", vmin=0, edgecolors="white", linewidth=1)
        ax.invert_yaxis()
        top = max(max(line) for line in grid)
        for i, line in enumerate(grid):
            for j, value in enumerate(line):
                if value:
                    ax.text(j + 0.5, i + 0.5, str(value), ha="center", va="center", fontsize=8,
                            color="white" if value > top / 2 else "#24292f")
        ax.set_xticks([j + 0.5 for j in range(len(transitions))], transitions)
        ax.set_yticks([i + 0.5 for i in range(len(cats))], [short(c) for c in cats])
        ax.set_title(f"{compare_label(row)}: {len(row.changed)} of {row.n} changed", loc="left")
        ax.spines[:].set_visible(False)
    return Figure("compare-transitions", "Changed decisions by category and transition",
                  "Decision codes free then paid (R refused, C complied, U unclear, E error), baseline -> "
                  "candidate: RR->RC = refused under both before, under free only now.", fig)


def compare_figures(comparison: Comparison, joint: Joint) -> list[Figure]:
    with matplotlib.rc_context(STYLE):
        found = [compare_refusals(comparison), compare_gap_change(comparison),
                 compare_transitions(comparison, joint)]
    return [f for f in found if f is not None]
