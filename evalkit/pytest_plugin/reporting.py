"""The reporting part of the plugin, registered by the core: summary.json/summary.md (with the
project's ``pytest_evalkit_summary_columns``), compare.md/compare.json under ``--baseline``, the
HTML report, and the terminal summary. The controlling process writes them, once per session."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from ..errors import EvalkitError
from .options import option_value
from .state import BOOTS_FILE, STATE_KEY, State, evalkit_session, is_worker, session_dir, state

SCALARS = (str, int, float, bool, type(None))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int | pytest.ExitCode) -> None:
    config = session.config
    from ..idle_plugins import drop_idle_hypothesis_summary

    drop_idle_hypothesis_summary(config)  # its summary would import hypothesis (1.4 s) to print nothing
    if is_worker(config):
        return  # the controlling process writes the one summary
    current = state(config)
    directory = session_dir(config)
    try:
        if current.materialized is None or not current.materialized.rows:
            return  # no evalkit row was used in this session
        from .. import report

        evalkit = evalkit_session(config)
        rows = [current.materialized.rows[p.key] for p in evalkit.plans if p.key in current.materialized.rows]
        current.summary = report.summary_rows(rows, multiplicity=evalkit.config.multiplicity)
        try:
            for row, summary in zip(rows, current.summary):
                _add_project_columns(config, row, summary)
        except Exception as exc:  # the project's code: said in one line; the summary is written without them
            current.column_error = f"pytest_evalkit_summary_columns: {type(exc).__name__}: {exc}"
            for summary in current.summary:
                summary.pop("columns", None)
            _fail(session)
        report.write_summary(current.summary, evalkit.store.results_dir,
                             meta={**report.session_meta(evalkit, _boots(directory)),
                                   **report.judge_meta(evalkit.config.judge, _columns(config))})
        if current.comparison is not None and not isinstance(current.comparison, str):
            from ..compare import write_comparison

            write_comparison(current.comparison, evalkit.store.results_dir)
        _html_reports(session, current, evalkit.store.results_dir)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        parent = directory.parent
        if parent.exists() and not any(parent.iterdir()):
            parent.rmdir()


def _add_project_columns(config: pytest.Config, row: Any, summary: dict[str, Any]) -> None:
    """The row's ``columns`` ({header: value}) from every ``pytest_evalkit_summary_columns``."""
    columns: dict[str, Any] = {}
    results: list[Mapping[str, Any] | None] = config.pluginmanager.hook.pytest_evalkit_summary_columns(
        row=row, summary=summary, config=config)
    for result in reversed(results):  # pluggy calls the last registered first; the later plugin wins a header
        for header, value in (result or {}).items():
            if not isinstance(header, str) or not isinstance(value, SCALARS):
                raise TypeError(f"row {summary['model']}-{summary['suite']}-{summary['pair']}: column {header!r} = "
                                f"{value!r}; give text headers and text, number, boolean or None values")
            columns[header] = value
    if columns:
        summary["columns"] = columns


def _fail(session: pytest.Session) -> None:
    if session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED  # asked for something the session did not deliver


def _html_reports(session: pytest.Session, current: State, results_dir: Path) -> None:
    """--evalkit-html PATH: the session's HTML report (the compare view too under --baseline);
    with pytest-html writing a report, the summary and forest plot for its summary section.
    matplotlib is imported here only, when asked."""
    config = session.config
    path = option_value(config, "html")
    pytest_html = config.pluginmanager.hasplugin("html") and getattr(config.option, "htmlpath", None)
    if not path and not pytest_html:
        return
    from ..html_report import fragment, load_report, require_matplotlib, write_report

    if not path:
        try:
            require_matplotlib("--html")
        except EvalkitError:
            return  # pytest-html without matplotlib: its report simply has no evalkit section

    try:
        compared = current.comparison is not None and not isinstance(current.comparison, str)
        data = load_report(results_dir, baseline=option_value(config, "baseline") if compared else None,
                           margin=option_value(config, "regression_margin"),
                           show_responses=bool(option_value(config, "show_responses")))
        if pytest_html:
            current.html_fragment = fragment(data)
        if path:
            current.html_report = str(write_report(data, path))
    except Exception as exc:  # a report that cannot be made is said in one line, never an INTERNALERROR
        current.html_error = str(exc) if isinstance(exc, EvalkitError) else f"{type(exc).__name__}: {exc}"
        _fail(session)


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_summary(prefix: list[str], summary: list[str], postfix: list[str],
                                session: pytest.Session) -> None:  # pytest-html, when installed
    fragment = session.config.stash[STATE_KEY].html_fragment if STATE_KEY in session.config.stash else None
    if fragment:
        prefix.append(fragment)


def _columns(config: pytest.Config) -> tuple[str, ...]:
    from .. import report

    return report.extra_columns(option_value(config, "summary_columns"))


def _boots(directory: Path) -> dict[str, int]:
    """Engine boots per model in this session, across every process (workers boot none)."""
    counts: dict[str, int] = {}
    path = directory / BOOTS_FILE
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            item = json.loads(line)
            name = f"{item['engine']}:{item['model']}"
            counts[name] = counts.get(name, 0) + 1
    return counts


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> None:
    current = config.stash[STATE_KEY] if STATE_KEY in config.stash else None
    if current is None or not current.summary:
        return
    from .. import report

    terminalreporter.section("evalkit summary")
    terminalreporter.write_line(report.table_lines(current.summary, columns=_columns(config),
                                                    alpha=option_value(config, "alpha")))
    results_dir = evalkit_session(config).store.results_dir
    terminalreporter.write_line(f"written: {results_dir / 'summary.md'} and {results_dir / 'summary.json'}")
    comparison = current.comparison
    if comparison is not None and not isinstance(comparison, str):
        from ..compare import render_table

        terminalreporter.section(f"evalkit compare: vs {comparison.baseline}")
        terminalreporter.write_line(render_table(comparison))
        terminalreporter.write_line(f"written: {results_dir / 'compare.md'} and {results_dir / 'compare.json'}")
    if current.html_report:
        terminalreporter.write_line(f"written: {current.html_report}")
    for what, error in (("--evalkit-html", current.html_error), ("summary columns", current.column_error)):
        if error:
            terminalreporter.write_line(f"evalkit: error: {what}: {error}", red=True)
