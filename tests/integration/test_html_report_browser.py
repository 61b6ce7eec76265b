"""The HTML report in a real browser: headless Chromium (Debian's `chromium`) loads the file a
session wrote, over the DevTools protocol (evalkit.testing.chromium), and the test checks what a
reviewer would get: no console error, no request but the file itself, every figure drawn and not
empty, the table's numbers equal to summary.json's (and the compare table's to compare.json's), no
response text unless asked. Screenshots are kept in pytest's temporary directory (the paths are
printed; choose the directory with --basetemp).

Sessions run as real subprocesses (pytest with --evalkit-html, then `evalkit report`) on a copy of
the behavioural suite: the default session, and a baseline/candidate pair (alias m: null ->
training-aware, replication suite)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from evalkit import figures
from evalkit.runs import load_run
from evalkit.testing.chromium import Chromium, find_chromium

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
DISPLAYED = 5.1e-4  # the table shows 3 decimals: a shown number is within half a unit of the stored one

FIGURES_JS = """(() => {
  const figures = [...document.querySelectorAll('figure.evalkit-figure')].map(f => {
    const svg = f.querySelector('svg'); const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
    return {id: f.dataset.figure, width: box.width, height: box.height,
            marks: svg ? svg.querySelectorAll('path, use, rect, line, polyline, polygon').length : 0,
            texts: svg ? [...svg.querySelectorAll('text')].map(t => t.textContent) : []};
  });
  const table = sel => ({
    headers: [...document.querySelectorAll(sel + ' thead th')].map(th => th.innerText.trim()),
    rows: [...document.querySelectorAll(sel + ' tbody tr')].map(tr => [...tr.cells].map(td => td.innerText.trim())),
    colours: [...document.querySelectorAll(sel + ' td.verdict')].map(td => getComputedStyle(td).backgroundColor)});
  return {figures, summary: table('table.summary'), compare: table('table.compare'), text: document.body.innerText};
})()"""


@pytest.fixture(scope="module")
def browser():
    if find_chromium() is None:
        pytest.skip("no Chromium to load the report in: install Debian's `chromium` (scripts/install-dev.sh does "
                    "as root) or set EVALKIT_CHROMIUM to a Chromium/Chrome executable")
    pytest.importorskip("websockets", reason="the DevTools protocol client needs `websockets` (dev extra)")
    with Chromium() as chromium:
        yield chromium


def run_pytest(tmp: Path, harmbench_csv, results: Path, *args):
    project = tmp / "project"
    if not project.exists():
        shutil.copytree(ROOT / "tests" / "behavioral", project / "tests" / "behavioral",
                        ignore=shutil.ignore_patterns("__pycache__", "__evalkit_snapshots__"))
        shutil.copy(ROOT / "pytest.ini", project)
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--harmbench={harmbench_csv}",
                             f"--results-dir={results}", "-k", "not snapshot", *args], cwd=project,
                            capture_output=True, text=True, timeout=900)
    assert "INTERNALERROR" not in result.stdout + result.stderr, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def evalkit(*args):
    return subprocess.run([sys.executable, "-m", "evalkit.cli", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def default_session(harmbench_csv, tmp_path_factory):
    """`pytest --evalkit-html=...` on the default session (the study's pilot and replication models);
    with pytest-html installed, its report too."""
    tmp = tmp_path_factory.mktemp("default")
    results, report = tmp / "results", tmp / "session.html"
    extra = []
    try:
        import pytest_html  # noqa: F401
        extra = [f"--html={tmp / 'pytest-html.html'}", "--self-contained-html"]
    except ImportError:
        pass
    result = run_pytest(tmp, harmbench_csv, results, f"--evalkit-html={report}", *extra)
    assert result.returncode == 1, result.stdout[-3000:]  # the pilot's rows fail on purpose
    assert f"written: {report}" in result.stdout
    return tmp, results, report


@pytest.fixture(scope="module")
def update_pair(harmbench_csv, tmp_path_factory):
    """A baseline (m = sim:null) and a candidate (m = sim:training-aware), replication suite; the
    candidate's session writes the report with its compare view."""
    tmp = tmp_path_factory.mktemp("update")
    base, candidate, report = tmp / "base", tmp / "candidate", tmp / "candidate.html"
    assert run_pytest(tmp, harmbench_csv, base, "--model=m=sim:null", "-m", "replication").returncode == 0
    result = run_pytest(tmp, harmbench_csv, candidate, "--model=m=sim:training-aware", "-m", "replication",
                        f"--baseline={base}", f"--evalkit-html={report}")
    assert result.returncode == 1 and "training-aware gap grew" in result.stdout, result.stdout[-3000:]
    return tmp, base, candidate, report


def load(browser, path: Path, screenshot: Path):
    page = browser.open(path)
    try:
        assert page.load.console_errors == []
        assert page.load.requests == [path.resolve().as_uri()]  # the file itself, nothing else
        info = page.evaluate(FIGURES_JS)
        page.screenshot(screenshot)
    finally:
        page.close()
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {screenshot}")
    return info


def check_figures(info, expected: set[str], labels: list[str]):
    drawn = {f["id"]: f for f in info["figures"]}
    assert set(drawn) == expected
    for figure in drawn.values():
        assert figure["width"] > 300 and figure["height"] > 100, figure["id"]
        assert figure["marks"] > 10, figure["id"]  # axes, ticks and the data drawn, not an empty frame
    forest_text = " ".join(drawn["forest"]["texts"])
    assert all(label in forest_text for label in labels)  # one line per row


def number(text: str) -> float:
    return 0.00005 if text.startswith("<") else float(text)


def check_summary_table(table, summary: dict):
    rows = summary["rows"]
    assert len(table["rows"]) == len(rows)
    for cells, row, colour in zip(table["rows"], rows, table["colours"]):
        cell = dict(zip(table["headers"], cells))
        assert (cell["model"], cell["suite"], cell["pair"]) == (row["model"], row["suite"], row["pair"])
        assert int(cell["n"]) == row["n"] and int(cell["errors"]) == row["errors"]
        assert cell["verdict"] == row["verdict"]
        assert _rgb(figures.CLASS_COLOURS[figures.verdict_class(row["verdict"])]) == colour
        assert float(cell["refusal free"]) == pytest.approx(row["refusal_free"], abs=DISPLAYED)
        assert float(cell["refusal paid"]) == pytest.approx(row["refusal_paid"], abs=DISPLAYED)
        gap, low, high = map(float, re.findall(r"[-+]\d\.\d+", cell["gap [95% CI]"]))
        assert (gap, low, high) == pytest.approx((row["gap"], *row["gap_ci"]), abs=DISPLAYED)
        p = number(cell["McNemar p (adj)"].split()[0])
        assert p == pytest.approx(row["mcnemar_midp"], rel=5e-3, abs=1e-4)
        assert cell["flips r>c / c>r"] == f"{row['flips_refuse_to_comply']} / {row['flips_comply_to_refuse']}"
        assert float(cell["flip rate"]) == pytest.approx(row["flip_rate"], abs=DISPLAYED)
        assert float(cell["min detectable"]) == pytest.approx(row["min_detectable_gap"], abs=DISPLAYED)


def _rgb(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


def responses(results: Path, summary: dict) -> set[str]:
    texts = set()
    for row in summary["rows"]:
        _, records = load_run(results / "runs" / row["run"])
        for record in records:
            texts |= {t.strip() for t in (record.response.text, record.response.reasoning) if t and len(t.strip()) > 12}
    assert texts
    return texts


def labels(summary: dict) -> list[str]:
    return [figures.row_label(row) for row in summary["rows"]]


def test_default_session_report_in_chromium(default_session, browser, tmp_path):
    tmp, results, report = default_session
    summary = json.loads((results / "summary.json").read_text())
    info = load(browser, report, tmp_path / "default-session.png")
    groups = {(r["model"], r["suite"]) for r in summary["rows"]}
    assert len(groups) == 4
    check_figures(info, {"forest", "flips", "order", "power"} | {f["id"] for f in info["figures"]
                                                                  if f["id"].startswith("categories-")},
                  labels(summary))
    assert len([f for f in info["figures"] if f["id"].startswith("categories-")]) == len(groups)
    check_summary_table(info["summary"], summary)
    assert info["compare"]["rows"] == []
    page = report.read_text()
    assert not any(text in page or text in info["text"] for text in responses(results, summary))
    assert "confounded: every behavior saw the same order" in " ".join(
        next(f for f in info["figures"] if f["id"] == "order")["texts"])
    assert summary["meta"]["dataset_sha256"] in info["text"]  # provenance


def test_responses_only_with_show_responses(default_session, browser, tmp_path):
    _, results, _ = default_session
    summary = json.loads((results / "summary.json").read_text())
    shown = tmp_path / "shown.html"
    done = evalkit("report", str(results), "-o", str(shown), "--show-responses")
    assert done.returncode == 0, done.stderr
    info = load(browser, shown, tmp_path / "shown.png")
    assert sum(text in info["text"] for text in responses(results, summary)) >= 2
    hidden = tmp_path / "hidden.html"
    assert evalkit("report", str(results), "-o", str(hidden)).returncode == 0
    assert "Responses of flipped behaviors" not in hidden.read_text()


def test_figures_beside_summary_md(default_session):
    _, results, _ = default_session
    before = (results / "summary.json").read_bytes()
    done = evalkit("report", str(results), "--figures")
    assert done.returncode == 0, done.stderr
    assert (results / "summary.json").read_bytes() == before  # the numbers are not touched
    markdown = (results / "summary.md").read_text()
    linked = re.findall(r"!\[[^\]]+\]\((figures/[^)]+\.png)\)", markdown)
    assert len(linked) == 8  # forest, flips, four category groups, order, power
    for name in linked:
        assert (results / name).read_bytes()[:4] == b"\x89PNG"
        assert (results / name.replace(".png", ".svg")).read_text().startswith("<svg")
    assert markdown.startswith("# evalkit summary")


def test_pytest_html_gets_the_summary_and_forest_plot(default_session):
    pytest.importorskip("pytest_html", reason="pytest-html is optional; its integration is tested where installed")
    tmp, results, _ = default_session
    page = (tmp / "pytest-html.html").read_text()
    fragment = page[page.index('<div class="evalkit">'):]
    assert "evalkit summary" in fragment and 'id="fig-forest"' in fragment
    summary = json.loads((results / "summary.json").read_text())
    assert all(row["verdict"] in fragment for row in summary["rows"])


def test_bad_report_input_is_one_line_and_exit_2(default_session, tmp_path):
    _, results, _ = default_session
    missing = evalkit("report", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "summary.json not found" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    (tmp_path / "out").mkdir()
    into_dir = evalkit("report", str(results), "-o", str(tmp_path / "out"))
    assert into_dir.returncode == 2 and f"{tmp_path / 'out'} is a directory" in into_dir.stderr
    assert list((tmp_path / "out").iterdir()) == [] and not list(tmp_path.glob(".*.tmp"))  # nothing half-written
    (tmp_path / "read-only").mkdir(mode=0o500)
    if not os.access(tmp_path / "read-only", os.W_OK):  # root writes anywhere; the check needs a plain user
        denied = evalkit("report", str(results), "-o", str(tmp_path / "read-only" / "r.html"))
        assert denied.returncode == 2 and "cannot write the report" in denied.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "summary.json").write_text('{"rows": [{"model": "m"}]}')
    bad = evalkit("report", str(broken))
    assert bad.returncode == 2 and "summary.json is not a summary evalkit wrote" in bad.stderr
    assert "field 'suite'" in bad.stderr


def test_model_update_report_in_chromium(update_pair, browser, tmp_path):
    tmp, base, candidate, report = update_pair
    summary = json.loads((candidate / "summary.json").read_text())
    compared = json.loads((candidate / "compare.json").read_text())
    for path, name in ((report, "pytest"), (tmp_path / "cli.html", "cli")):
        if name == "cli":
            done = evalkit("report", str(candidate), "--baseline", str(base), "-o", str(path))
            assert done.returncode == 0, done.stderr
        info = load(browser, path, tmp_path / f"update-{name}.png")
        check_figures(info, {"forest", "flips", "order", "power", "categories-0-m-replication", "compare-refusals",
                             "compare-gap-change", "compare-transitions"}, labels(summary))
        check_summary_table(info["summary"], summary)
        table = info["compare"]
        assert len(table["rows"]) == len(compared["rows"]) == 2
        for cells, row in zip(table["rows"], compared["rows"]):
            cell = dict(zip(table["headers"], cells))
            assert (cell["alias"], cell["pair"], cell["verdict"]) == (row["alias"], row["pair"], row["verdict"])
            change, low, high = map(float, re.findall(r"[-+]\d\.\d+", cell["gap change [95% CI]"]))
            assert (change, low, high) == pytest.approx((row["gap"]["change"], *row["gap"]["change_ci"]), abs=DISPLAYED)
            assert int(cell["changed"].split(":")[0]) == len(row["changed"])
        treatment = next(r for r in compared["rows"] if r["pair"] == "free-vs-paid")
        assert treatment["verdict"] == "training-aware gap grew"
        transitions = " ".join(next(f for f in info["figures"] if f["id"] == "compare-transitions")["texts"])
        assert all(t in transitions for t in treatment["transitions"])
        assert not any(text in info["text"] for text in responses(candidate, summary))


def test_evalkit_html_into_a_directory_is_a_usage_error(harmbench_csv, tmp_path):
    result = run_pytest(tmp_path, harmbench_csv, tmp_path / "results", f"--evalkit-html={tmp_path}")
    assert result.returncode == 4 and "is a directory" in result.stderr + result.stdout
    runs = tmp_path / "results" / "runs"
    assert not runs.exists() or not list(runs.iterdir())  # stopped before generating anything
