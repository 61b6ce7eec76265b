"""The core of the pytest plugin (the ``pytest11`` entry point): options, hookspecs,
parametrization, and generation before the first test.

Thin by design: every number comes from ``evalkit.suites``/``evalkit.analysis``. A test
asks for ``evalkit_row`` and is parametrized over models x suites x framing pairs.

Who does what. The controlling process (the only process without xdist; xdist's
controller with ``-n N``) generates and analyses, once, every run the selected tests need,
model by model: one engine boot per model, whatever ``-n``. It does so after collection
and before any test runs (with xdist: when the first worker reports its collection, before
tests are scheduled: the ``xdist`` part), and hands the analysed rows to the workers through a
file in the session's directory; workers only run the checks. The summary (the ``reporting``
part), the comparison with a baseline and the boot count come from the same analysed rows.

Heavy modules (the suite planner, statistics, reports) are imported inside the hooks that
need them, so ``pytest --help`` pays for none of them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tomllib
import uuid
from collections.abc import Generator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..errors import EvalkitError, UnavailableHere
from . import options as plugin_options
from .options import ini_origin, option_value
from .state import (
    BOOTS_FILE,
    ROWS_FILE,
    SESSION_KEY,
    STATE_KEY,
    UNAVAILABLE,
    RowKey,
    State,
    atomic_write,
    evalkit_session,
    is_worker,
    selected_keys,
    session_dir,
    shareable,
    state,
)

if TYPE_CHECKING:
    from ..analysis import CheckOutcome
    from ..compare import Comparison
    from ..engines import EngineConfig
    from ..progress import LineProgress
    from ..suites import Materialized, Row, Session

PAIR_KINDS_MARK = "evalkit_pairs"


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    # the ini keys now (pytest reads the ini file before loading conftests); the flags once the
    # initial conftests are loaded, when it is known whether this project activated evalkit
    plugin_options.add_ini_keys(parser)


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser,
                                  args: list[str]) -> Generator[None, None, None]:
    yield  # the project's conftests first: one may activate evalkit, or define a generic flag of its own
    foreign = plugin_options.taken_flags(parser)
    plugin_options.add_flags(parser, short=plugin_options.short_forms_active(early_config))
    _refuse_spaced_path_values(early_config, parser, args, plugin_options.value_flags() - foreign)


def _refuse_spaced_path_values(early_config: pytest.Config, parser: pytest.Parser, args: list[str],
                               flags: set[str]) -> None:
    """``--harmbench PATH`` (a space, not '='): pytest finds its rootdir and pytest.ini before
    plugin options are known, so it takes PATH for a test path, which can move the rootdir
    and drop pytest.ini (and with it ``testpaths``, and the ``evalkit = true`` that adds the short
    flags: every test in the directory is collected, or the flag is unknown). Stop at once when
    that happened, saying to write ``--harmbench=PATH``. ``flags``: evalkit's value flags, short
    and namespaced, less those the project defined itself."""
    spaced = [i for i, flag in enumerate(args[:-1]) if flag in flags]
    if not spaced or _setup_unchanged(early_config, parser, args, spaced):
        return
    i = next((i for i in spaced if os.path.exists(args[i + 1])), spaced[0])
    flag, value = args[i], args[i + 1]
    raise pytest.UsageError(
        f"evalkit: write {flag}={value} (with '='): pytest reads the value of '{flag} {value}' as a test path "
        f"before evalkit's options are known, which here changes the rootdir to {early_config.rootpath} and "
        f"{'ignores' if early_config.inipath is None else 'changes'} pytest.ini")


def _setup_unchanged(early_config: pytest.Config, parser: pytest.Parser, args: list[str], spaced: list[int]) -> bool:
    """Whether the rootdir and ini file pytest chose are those it chooses without the spaced
    flags and their values (``spaced``: the flags' positions in ``args``)."""
    dropped = {j for i in spaced for j in (i, i + 1)}
    try:
        from _pytest.config.findpaths import determine_setup

        namespace = parser.parse_known_args([arg for j, arg in enumerate(args) if j not in dropped])
        rootpath, inipath, *_ = determine_setup(
            inifile=namespace.inifilename, override_ini=namespace.override_ini, args=namespace.file_or_dir,
            rootdir_cmd_arg=namespace.rootdir or None, invocation_dir=early_config.invocation_params.dir)
    except Exception:  # another pytest's internals: fall back to "no value names an existing path"
        return not any(os.path.exists(args[i + 1]) for i in spaced)
    return bool((rootpath, inipath) == (early_config.rootpath, early_config.inipath))


def markers() -> list[tuple[str, str]]:
    """The markers evalkit itself sets or reads: one per suite (suites.toml; ``-m pilot``), the
    behavioural tests', and ``evalkit_pairs``. A project registers its own (``unit``, ``slow``...)."""
    table = tomllib.loads((resources.files("evalkit.data") / "suites.toml").read_text(encoding="utf-8"))
    suite_markers = [(suite["marker"], f"evalkit suite {name}: {suite['description']}")
                     for name, suite in table["suites"].items()]
    return [*suite_markers, ("behavioral", "evalkit: statistical tests of a model's paired results (the suites)"),
            (f"{PAIR_KINDS_MARK}(kind)", "evalkit: parametrize an evalkit_row test over 'treatment' or 'control' "
                                         "pairs only")]


def pytest_configure(config: pytest.Config) -> None:
    for name, text in markers():
        config.addinivalue_line("markers", f"{name}: {text}")
    workerinput = getattr(config, "workerinput", {})
    config.stash[STATE_KEY] = State(workerinput.get("evalkit_session_uid") or uuid.uuid4().hex)
    plugin_options.option_values(config)  # a bad ini value is a usage error now (exit 4), not at collection
    from . import fixtures, reporting

    config.pluginmanager.register(fixtures, "evalkit-fixtures")
    config.pluginmanager.register(reporting, "evalkit-reporting")
    if config.pluginmanager.hasplugin("xdist"):
        from . import xdist

        config.pluginmanager.register(xdist, "evalkit-xdist")


# ---------------------------------------------------------------- collection


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "evalkit_row" not in metafunc.fixturenames:
        return
    try:
        session = evalkit_session(metafunc.config)
    except UnavailableHere as exc:
        # valid, but not runnable on this machine (no GPU, no Modal token): skip, saying why; marked
        # as the rows it stands for, so `-m pilot` shows the reason instead of deselecting it
        marks = [*_suite_marks(metafunc.config), pytest.mark.behavioral, pytest.mark.skip(reason=f"evalkit: {exc}")]
        metafunc.parametrize("evalkit_row", [pytest.param(None, id="unavailable", marks=marks)], indirect=True)
        return
    except EvalkitError:
        # reported once, as a usage error, when collection ends (pytest_collection_modifyitems)
        metafunc.parametrize("evalkit_row", [], indirect=True)
        return
    mark = metafunc.definition.get_closest_marker(PAIR_KINDS_MARK)
    wanted = set(mark.args) if mark else {"treatment", "control"}
    params = []
    for plan in session.plans:
        if plan.pair.kind not in wanted:
            continue
        marks = [getattr(pytest.mark, plan.suite.marker), pytest.mark.behavioral]
        params.append(pytest.param(plan.key, id=plan.row_id, marks=marks))
    for suite_id in session.unavailable:  # too few behaviors: one failing test per function says why
        suite = session.suites[suite_id]
        params.append(pytest.param((UNAVAILABLE, suite_id), id=f"{suite_id}-{UNAVAILABLE}",
                                   marks=[getattr(pytest.mark, suite.marker), pytest.mark.behavioral]))
    metafunc.parametrize("evalkit_row", params, indirect=True)


def _suite_marks(config: pytest.Config) -> list[pytest.MarkDecorator]:
    """The markers of the suites this session asks for (``--suite``, else the default suites)."""
    from ..suites import load_suites

    suites = load_suites()
    names = option_value(config, "suite") or [name for name, suite in suites.items() if suite.default]
    return [getattr(pytest.mark, suites[name].marker) for name in names if name in suites]


def usage_message(config: pytest.Config, error: EvalkitError) -> str:
    """The one line of a bad option, saying where the ini file set it when it did."""
    origin = ini_origin(config, getattr(error, "option", None))
    return f"evalkit: {error}" + (f" (set in {origin})" if origin else "")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Bad evalkit options stop the session before any test runs, with exit status 4. The
    baseline tests run only under --baseline, the project-check tests only where a
    ``pytest_evalkit_row_checks`` is implemented: otherwise they are deselected."""
    def stop(message: str) -> None:
        if is_worker(config):  # an xdist worker: the controller stops the session with it (exit 4)
            getattr(config, "workeroutput")["evalkit_usage_error"] = message  # noqa: B009
            items[:] = []
            return
        raise pytest.UsageError(message)

    error = config.stash.get(SESSION_KEY, None)
    if isinstance(error, EvalkitError) and not isinstance(error, UnavailableHere):
        return stop(usage_message(config, error))
    dropped = set()
    baseline = option_value(config, "baseline")
    if not baseline:
        dropped.add("evalkit_baseline")
    else:  # before anything generates: a missing baseline or a bad margin only failed the baseline tests
        from ..compare import require_version_dir
        from ..suites import in_range

        try:
            require_version_dir(baseline)
            in_range(option_value(config, "regression_margin"), "--regression-margin", 0, 1, open_low=True,
                     open_high=True)
        except EvalkitError as exc:
            return stop(f"evalkit: --baseline {baseline}: {exc}")
    if not config.pluginmanager.hook.pytest_evalkit_row_checks.get_hookimpls():
        dropped.add("evalkit_project_checks")
    if dropped:  # reported as deselected, so pytest's "N selected" counts the tests that run
        left_out = [item for item in items if dropped & set(getattr(item, "fixturenames", ()))]
        if left_out:
            left = set(left_out)
            items[:] = [item for item in items if item not in left]
            config.hook.pytest_deselected(items=left_out)
    html = option_value(config, "html")
    if html and Path(html).is_dir():
        raise pytest.UsageError(f"evalkit: option --evalkit-html: {html} is a directory; give the HTML file to write")
    if html:
        from ..html_report import require_matplotlib

        try:
            require_matplotlib("--evalkit-html")
        except EvalkitError as exc:
            raise pytest.UsageError(f"evalkit: {exc}") from None


# ---------------------------------------------------------------- generation (controlling process)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    """Without xdist: generate and analyse the selected rows before the first test runs."""
    config = session.config
    if is_worker(config) or config.option.collectonly or getattr(config.option, "setupplan", False):
        return
    if session.testsfailed and not config.option.continue_on_collection_errors:
        return  # collection errors: pytest stops; generating would only waste an engine
    keys = selected_keys(session.items)
    if keys:
        materialize(config, keys, share=False)


def materialize(config: pytest.Config, keys: list[RowKey], *, share: bool) -> None:
    """Generate and analyse the rows behind ``keys`` (once per session), add the project's
    checks, compare with the baseline; with ``share``, write them for xdist's workers."""
    from ..judges import close_judges
    from ..suites import EnginePool, Materialized
    from ..suites import materialize as materialize_rows

    current = state(config)
    directory = session_dir(config)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        session = evalkit_session(config)
    except EvalkitError:
        return  # reported at collection (usage error) or as skips (unavailable here)
    pool = EnginePool(on_boot=lambda cfg: _record_boot(directory, cfg))
    try:
        current.materialized = materialize_rows(session, keys, pool, progress=_progress(config))
    except Exception as exc:  # anything unexpected: every selected row reports it, pytest does not crash
        current.materialized = Materialized(errors={key: f"{type(exc).__name__}: {exc}" for key in keys})
    finally:
        pool.close()
        close_judges(session.judges)
    _add_project_checks(config, current)
    current.comparison = _compare_with_baseline(config, session, current.materialized)
    if share:  # xdist workers read the rows from here
        atomic_write(directory / ROWS_FILE, shareable(current))


def _add_project_checks(config: pytest.Config, current: State) -> None:
    """Each row's checks from ``pytest_evalkit_row_checks``, joined to its built-in ones. A hook that
    raises or returns something else than new CheckOutcomes turns the row into an error its tests report."""
    materialized = current.materialized
    hook = config.pluginmanager.hook.pytest_evalkit_row_checks
    if materialized is None or not hook.get_hookimpls():
        return
    for key, row in list(materialized.rows.items()):
        try:
            added = _project_checks(hook(row=row, config=config), row)
        except Exception as exc:  # the project's code: its row says what went wrong, the session goes on
            del materialized.rows[key]
            materialized.errors[key] = f"pytest_evalkit_row_checks: {type(exc).__name__}: {exc}"
            continue
        checks = {**row.analysis.checks, **added}
        materialized.rows[key] = dataclasses.replace(row, analysis=dataclasses.replace(row.analysis, checks=checks))
        current.project_checks[key] = tuple(added)


def _project_checks(results: list[Any], row: Row) -> dict[str, CheckOutcome]:
    from ..analysis import CheckOutcome

    added: dict[str, CheckOutcome] = {}
    for outcomes in results:
        for outcome in outcomes or ():
            if not isinstance(outcome, CheckOutcome):
                raise TypeError(f"returned {outcome!r}; return evalkit.analysis.CheckOutcome objects")
            if outcome.name in row.analysis.checks:
                raise ValueError(f"{outcome.name!r} is already a check of row {row.plan.row_id}; give the "
                                 "project's check another name")
            added[outcome.name] = outcome
    return added


def _compare_with_baseline(config: pytest.Config, session: Session,
                           materialized: Materialized) -> Comparison | str | None:
    """With --baseline: the candidate rows against the baseline's (a Comparison, or the error text)."""
    baseline = option_value(config, "baseline")
    if not baseline or not materialized.rows:
        return None
    from ..compare import compare, load_version, session_versions
    from ..suites import in_range

    try:
        margin = in_range(option_value(config, "regression_margin"), "--regression-margin", 0, 1,
                          open_low=True, open_high=True)
        rows = [materialized.rows[p.key] for p in session.plans if p.key in materialized.rows]
        return compare(load_version(baseline, session.config.judge), session_versions(session, rows),
                       alpha=session.config.thresholds.alpha, margin=margin, baseline_name=str(baseline),
                       candidate_name="this session", max_error_rate=session.config.thresholds.max_error_rate)
    except EvalkitError as exc:
        return f"--baseline {baseline}: {exc}"


def _record_boot(directory: Path, cfg: EngineConfig) -> None:
    with open(directory / BOOTS_FILE, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"pid": os.getpid(), "engine": cfg.engine, "model": cfg.model}) + "\n")


def _progress(config: pytest.Config) -> LineProgress | None:
    """A live line per run on a terminal; a plain line every few seconds in a CI log; nothing under -q."""
    if config.get_verbosity() < 0:
        return None
    from ..progress import LineProgress, line_writer

    writer = config.get_terminal_writer()
    capture: Any = config.pluginmanager.getplugin("capturemanager")
    stream = getattr(writer, "_file", None) or sys.__stdout__
    live = bool(writer.hasmarkup and getattr(stream, "isatty", lambda: False)())

    def write_raw(text: str) -> None:
        if capture is None:
            writer.write(text, flush=True)
            return
        with capture.global_and_fixture_disabled():
            writer.write(text, flush=True)

    return LineProgress(line_writer(write_raw, width=min(writer.fullwidth, 120) - 1), live=live)
