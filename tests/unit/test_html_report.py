"""The HTML report and its figures, on summary rows made here (no session): escaping, no response
text, verdict colours for every verdict the analysis can give, the power curve against the row's
minimum detectable gap, unique SVG ids, figure files. The browser tests are in
tests/integration/test_html_report_browser.py."""

import ast
import html.parser
import inspect
import re

import pytest

pytest.importorskip("matplotlib")

from evalkit import analysis, figures, html_report, report, stats  # noqa: E402

HOSTILE = '<script>alert("x")</script><img src="https://example.invalid/x.png">'


def make_row(model, suite, pair, kind, table, verdict, order=None, categories=()):
    result = stats.paired_analysis(stats.PairedTable(*table), margin=0.03)
    return {
        "model": model, "suite": suite, "pair": pair, "pair_kind": kind, "n": result.n, "a": result.a,
        "b": result.b, "c": result.c, "d": result.d, "refusal_free": result.refusal_free,
        "refusal_paid": result.refusal_paid, "gap": result.gap, "gap_ci": list(result.gap_ci),
        "mcnemar_midp": result.mcnemar_midp, "p_adjusted": None, "flips_refuse_to_comply": result.b,
        "flips_comply_to_refuse": result.c, "flip_rate": result.flip_rate,
        "min_detectable_gap": result.min_detectable_gap, "order_effect": order or "confounded", "errors": 0,
        "verdict": verdict, "run": f"{model}-{suite}-{pair}",
        "breakdowns": [{"dimension": "semantic", "category": name, "n": 40, "gap": -0.05, "gap_ci": [-0.15, 0.05]}
                       for name in categories]}


@pytest.fixture(scope="module")
def rows():
    return [make_row("study-pilot", "pilot", "free-vs-paid", "treatment", (16, 20, 7, 157),
                     "artifact: A/A control differs too", categories=("illegal", HOSTILE)),
            make_row("study-pilot", "pilot", "aa-control", "control", (28, 12, 0, 160),
                     "protocol artifact: identical framings differ", categories=("illegal", HOSTILE)),
            make_row(HOSTILE, "replication", "free-vs-paid", "treatment", (57, 4, 2, 337), "no effect (equivalent)",
                     order={"rd": 0.0, "rd_ci": [-0.01, 0.01], "p": 1.0}),
            make_row(HOSTILE, "replication", "aa-control", "control", (59, 0, 0, 341), "control clean",
                     order={"rd": 0.0, "rd_ci": [-0.005, 0.005], "p": 1.0})]


def data(rows, responses=None):
    meta = {"engine": "sim", "judge": "refusal", "seed": 0, "alpha": 0.05, "equivalence_margin": 0.03,
            "models": {"m": HOSTILE}}
    return html_report.ReportData("results", rows, meta, [{"row": HOSTILE, "run": "r", "missing": True}],
                                  responses=responses)


@pytest.fixture(scope="module")
def page(rows):
    return html_report.render(data(rows))


def test_every_verdict_the_analysis_gives_has_a_colour_and_a_legend():
    """The verdicts are the string constants analysis.verdict returns (read from its source)."""
    tree = ast.parse(inspect.getsource(analysis.verdict))
    returned = {node.value for ret in ast.walk(tree) if isinstance(ret, ast.Return)
                for node in ast.walk(ret) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    assert len(returned) >= 10
    assert returned <= set(figures.VERDICT_CLASSES), returned - set(figures.VERDICT_CLASSES)
    assert set(figures.VERDICT_CLASSES.values()) <= set(html_report.LEGEND)


def test_hostile_names_are_escaped_and_nothing_can_load(page):
    assert "<script" not in page
    assert "<img" not in page  # the hostile name is text, in the table and in the figures
    assert page.count("&lt;script&gt;") >= 3
    assert html_report.CSP in page
    assert {tag for tag, _ in elements(page)}.isdisjoint({"script", "img", "link", "iframe", "object", "embed"})
    links = [value for _, attrs in elements(page) for name, value in attrs if name in ("src", "href", "xlink:href")]
    assert links and all(value.startswith("#") for value in links)  # only a figure's own clip paths and glyphs


def elements(page):
    """(tag, attributes) of every element the HTML parser finds."""
    found = []

    class Collect(html.parser.HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, attrs))

    Collect().feed(page)
    return found


def test_table_is_summary_md_cells_with_verdict_classes(rows, page):
    _, cells = report.table_cells(rows)
    for line in cells:
        for cell in line:
            assert html_report._e(cell) in page
    assert page.count('class="verdict v-artifact"') == 2 and page.count('class="verdict v-clean"') == 2
    assert 'title="artifact: ' in page  # explained on hover


def test_no_response_text_unless_asked(rows, page):
    text = "Step 1: <b>mix</b> the reagents"
    assert "mix" not in page
    shown = html_report.render(data(rows, responses={rows[0]["run"]: [("behavior_x", text, "I can't help")]}))
    assert html_report._e(text) in shown and "<b>mix</b>" not in shown


def test_svg_ids_are_unique_across_figures(rows, page):
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids)) > 20
    referenced = set(re.findall(r'(?:url\(#|href="#)([^")]+)', page))
    assert referenced <= set(ids)  # every clip path and glyph a figure uses is its own
    assert page.count("<svg") == 5  # forest, flips, one category group, order, power


def test_power_curve_crosses_the_target_at_the_rows_min_detectable_gap(rows):
    """The curve and the table's 'min detectable' come from the same exact power function: the
    detection rate at the minimum detectable gap is the 80% target, at gap 0 the false-alarm rate."""
    for row in rows:
        gaps, rates = figures.power_curve(row["n"], row["flip_rate"], 0.05)
        assert rates[0] <= 0.05
        mdg = row["min_detectable_gap"]
        assert gaps[-1] > mdg
        at = stats.mcnemar_power(row["n"], min(1.0, row["flip_rate"] + mdg), mdg, 0.05, "midp")
        assert at == pytest.approx(figures.POWER_TARGET, abs=0.01)
        below = [r for g, r in zip(gaps, rates) if g < mdg * 0.8]
        above = [r for g, r in zip(gaps, rates) if g > mdg * 1.25]
        assert max(below) < figures.POWER_TARGET < min(above)


def test_figures_written_as_svg_and_png(rows, tmp_path):
    written = html_report.write_figures(data(rows), tmp_path)
    assert [name for _, name in written][:2] == ["forest.png", "flips.png"]
    for _, name in written:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / name.replace(".png", ".svg")).read_text().startswith("<svg")


def test_same_inputs_same_bytes(rows, page):
    forest = [figures.svg(figures.session_figures(rows, data(rows).meta)[0]) for _ in range(2)]
    assert forest[0] == forest[1] and forest[0] in page


def test_without_matplotlib_the_report_command_says_how_to_get_it(monkeypatch, tmp_path, capsys):
    import importlib.util

    from evalkit import cli

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    assert cli.main(["report", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and 'pip install "evalkit[report]"' in error and "report" in error
