"""The pytest face of evalkit: options, parametrization, session fixtures and the summary.

Thin by design: every number comes from ``evalkit.suites``/``evalkit.analysis``. A test
asks for ``evalkit_row`` and is parametrized over models x suites x framing pairs.

Who does what. The controlling process (the only process without xdist; xdist's
controller with ``-n N``) generates and analyses, once, every run the selected tests need,
model by model: one engine boot per model, whatever ``-n``. It does so after collection
and before any test runs (with xdist: when the first worker reports its collection, before
tests are scheduled), and hands the analysed rows to the workers through a file in the
session's directory; workers only run the checks. The summary, the comparison with a
baseline and the boot count come from the same analysed rows.

Heavy modules (the suite planner, statistics, reports) are imported inside the hooks that
need them, so ``pytest --help`` pays for none of them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .errors import EvalkitError, UnavailableHere
from .options import all_options, engine_options, parse_bool

if TYPE_CHECKING:  # pragma: no cover
    from .suites import Materialized, Row, Session

GROUP = "evalkit"
_SESSION_KEY = pytest.StashKey["Session | EvalkitError"]()
_STATE_KEY = pytest.StashKey["_State"]()
PAIR_KINDS_MARK = "evalkit_pairs"
SESSIONS_DIR = ".evalkit-sessions"
ROWS_FILE, BOOTS_FILE = "rows.pickle", "boots.jsonl"
UNAVAILABLE = "unavailable"
MARKERS = (
    ("unit", "fast tests of one library module"),
    ("behavioral", "statistical tests of a model's paired results (the suites)"),
    ("pilot", "the study's pilot suite: fixed order, first 200 behaviors, batched"),
    ("replication", "the study's replication suite: randomized order, all behaviors, sequential"),
    ("randomized_batched", "randomized order, all behaviors, batched"),
    ("balanced", "balanced order, all behaviors, sequential"),
    ("vllm", "runs the real vLLM engine (CPU here)"),
    ("modal", "runs the Modal engine"),
    ("gpu", "needs a GPU; skipped without one"),
    ("slow", "takes more than a few seconds"),
    (f"{PAIR_KINDS_MARK}(kind)", "parametrize an evalkit_row test over 'treatment' or 'control' pairs only"),
)


@dataclasses.dataclass
class _State:
    uid: str
    materialized: "Materialized | None" = None  # the controlling process's analysed rows
    summary: list = dataclasses.field(default_factory=list)
    comparison: object = None
    html_report: str | None = None  # the path written by --evalkit-html
    html_error: str | None = None
    html_fragment: str | None = None  # for pytest-html's summary, when that plugin writes a report


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(GROUP, "evalkit: paired framing suites")
    for option in all_options():
        kwargs = {"dest": f"evalkit_{option.dest}", "help": option.help, "default": option.default}
        if option.action == "store_true":
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = option.type
            if option.action:
                kwargs["action"] = option.action
            if option.choices:
                kwargs["choices"] = option.choices
        group.addoption(option.flag, **kwargs)
        # every option can also be set in pytest.ini / pyproject.toml ([tool.pytest.ini_options]) under
        # a namespaced key, so a project pins its models, suites and margins once; the command line wins
        parser.addini(_ini_name(option), f"{option.help} (ini form of {option.flag})",
                      type="linelist" if option.action == "append" else "string", default=None)


def _ini_name(option) -> str:
    return f"evalkit_{option.dest}"


def _from_ini(config: pytest.Config, option):
    """The ini value of ``option`` converted as its flag's value would be; None when unset."""
    raw = config.getini(_ini_name(option))
    if raw is None or raw == [] or raw == "":
        return None
    try:
        if option.action == "append":
            return [option.type(item) if option.type else item for item in raw]
        if option.action == "store_true":
            return parse_bool(raw)
        value = option.type(raw) if option.type else raw
    except ValueError as exc:
        raise pytest.UsageError(f"evalkit: {config.inipath}: {_ini_name(option)} = {raw!r}: {exc}") from None
    if option.choices and value not in option.choices:
        raise pytest.UsageError(f"evalkit: {config.inipath}: {_ini_name(option)} = {raw!r}: choose from "
                                f"{', '.join(option.choices)}")
    return value


def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    """``--harmbench PATH`` (a space, not '='): pytest finds its rootdir and pytest.ini before
    plugin options are known, so it takes PATH for a test path, which can move the rootdir
    and drop pytest.ini (and with it ``testpaths``: every test in the directory is collected).
    Stop at once when that happened, saying to write ``--harmbench=PATH``."""
    flags = {o.flag for o in all_options() if o.action != "store_true"}
    spaced = [(flag, args[i + 1]) for i, flag in enumerate(args[:-1]) if flag in flags]
    if not spaced:
        return
    if _setup_unchanged(early_config, parser, args):
        return
    flag, value = next(((f, v) for f, v in spaced if os.path.exists(v)), spaced[0])
    raise pytest.UsageError(
        f"evalkit: write {flag}={value} (with '='): pytest reads the value of '{flag} {value}' as a test path "
        f"before evalkit's options are known, which here changes the rootdir to {early_config.rootpath} and "
        f"{'ignores' if early_config.inipath is None else 'changes'} pytest.ini")


def _setup_unchanged(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> bool:
    """Whether the rootdir and ini file pytest chose are those it chooses once the evalkit
    options' values are not taken for paths."""
    try:
        from _pytest.config.findpaths import determine_setup

        namespace = parser.parse_known_args(args)
        rootpath, inipath, *_ = determine_setup(
            inifile=namespace.inifilename, override_ini=namespace.override_ini, args=namespace.file_or_dir,
            rootdir_cmd_arg=namespace.rootdir or None, invocation_dir=early_config.invocation_params.dir)
    except Exception:  # another pytest's internals: fall back to "no value names an existing path"
        flags = {o.flag for o in all_options() if o.action != "store_true"}
        return not any(flag in flags and os.path.exists(args[i + 1]) for i, flag in enumerate(args[:-1]))
    return (rootpath, inipath) == (early_config.rootpath, early_config.inipath)


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS:
        config.addinivalue_line("markers", f"{name}: {text}")
    uid = getattr(config, "workerinput", {}).get("evalkit_session_uid") or uuid.uuid4().hex
    config.stash[_STATE_KEY] = _State(uid)
    _values(config)  # a bad ini value is a usage error now (exit 4), not an interrupted collection


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # pytest-xdist, when loaded: hand the session id to each worker
    node.workerinput["evalkit_session_uid"] = node.config.stash[_STATE_KEY].uid


def _values(config: pytest.Config) -> dict:
    """Option values: the command line's, else the ini file's (``evalkit_<dest>``), else the default."""
    values = {}
    for o in all_options():
        value = config.getoption(f"evalkit_{o.dest}")
        if value == o.default:  # not given on the command line (or given as the default: the same)
            from_ini = _from_ini(config, o)
            value = value if from_ini is None else from_ini
        values[o.dest] = value
    return values


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def evalkit_session(config: pytest.Config) -> "Session":
    """Prepare (validate and plan) the session once per process; errors are cached too."""
    if _SESSION_KEY not in config.stash:
        from .suites import SessionConfig, prepare

        values = _values(config)
        try:
            session_config = dataclasses.replace(
                SessionConfig.from_options(values, engine_options(values, values["engine"] or "sim")),
                session_id=config.stash[_STATE_KEY].uid)
            config.stash[_SESSION_KEY] = prepare(session_config)
        except EvalkitError as exc:
            config.stash[_SESSION_KEY] = exc
    value = config.stash[_SESSION_KEY]
    if isinstance(value, EvalkitError):
        raise value
    return value


def _session_dir(config: pytest.Config) -> Path:
    """Where this session's processes exchange analysed rows and boot counts."""
    from .suites import default_results_dir

    results_dir = Path(config.getoption("evalkit_results_dir") or default_results_dir())
    return results_dir.resolve() / SESSIONS_DIR / config.stash[_STATE_KEY].uid


# ---------------------------------------------------------------- collection


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "evalkit_row" not in metafunc.fixturenames:
        return
    try:
        session = evalkit_session(metafunc.config)
    except UnavailableHere as exc:
        # valid, but not runnable on this machine (no GPU, no Modal token): skip, saying why
        metafunc.parametrize("evalkit_row", [pytest.param(None, id="unavailable",
                                                          marks=pytest.mark.skip(reason=f"evalkit: {exc}"))],
                             indirect=True)
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
        suite = next(s for s in _all_suites() if s.id == suite_id)
        params.append(pytest.param((UNAVAILABLE, suite_id), id=f"{suite_id}-{UNAVAILABLE}",
                                   marks=[getattr(pytest.mark, suite.marker), pytest.mark.behavioral]))
    metafunc.parametrize("evalkit_row", params, indirect=True)


def _all_suites():
    from .suites import load_suites

    return load_suites().values()


def pytest_collection_modifyitems(session, config, items) -> None:
    """Bad evalkit options stop the session before any test runs, with exit status 4. The
    baseline tests exist only under --baseline: without it they are not collected at all."""
    error = config.stash.get(_SESSION_KEY, None)
    if isinstance(error, EvalkitError) and not isinstance(error, UnavailableHere):
        raise pytest.UsageError(f"evalkit: {error}")
    if not config.getoption("evalkit_baseline"):
        items[:] = [item for item in items if "evalkit_baseline" not in getattr(item, "fixturenames", ())]
    html = config.getoption("evalkit_html")
    if html and Path(html).is_dir():
        raise pytest.UsageError(f"evalkit: option --evalkit-html: {html} is a directory; give the HTML file to write")
    if html:
        from .html_report import require_matplotlib

        try:
            require_matplotlib("--evalkit-html")
        except EvalkitError as exc:
            raise pytest.UsageError(f"evalkit: {exc}") from None


def _selected_keys(items) -> list[tuple]:
    keys = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        key = callspec.params.get("evalkit_row") if callspec is not None else None
        if isinstance(key, tuple) and key[0] != UNAVAILABLE:
            keys.append(key)
    return list(dict.fromkeys(keys))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """An xdist worker tells the controller which rows its selection needs (before xdist
    reports the collection, which is when the controller generates them)."""
    config = session.config
    if not _is_worker(config):
        return
    keys = _selected_keys(session.items)
    if keys:
        directory = _session_dir(config)
        directory.mkdir(parents=True, exist_ok=True)
        _atomic_write(directory / f"collected-{config.workerinput['workerid']}.json",
                      json.dumps([list(k) for k in keys]).encode())


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# ---------------------------------------------------------------- generation (controlling process)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    """Without xdist: generate and analyse the selected rows before the first test runs."""
    config = session.config
    if _is_worker(config) or config.option.collectonly or getattr(config.option, "setupplan", False):
        return
    if session.testsfailed and not config.option.continue_on_collection_errors:
        return  # collection errors: pytest stops; generating would only waste an engine
    keys = _selected_keys(session.items)
    if keys:
        _materialize(config, keys, share=False)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids) -> None:
    """With xdist: the first worker's collection names the rows; generate and analyse them here,
    once, before xdist schedules any test, and share them with the workers."""
    config = node.config
    state = config.stash[_STATE_KEY]
    if state.materialized is not None:
        return
    path = _session_dir(config) / f"collected-{node.workerinput['workerid']}.json"
    keys = [tuple(k) for k in json.loads(path.read_text())] if path.exists() else []
    if keys:
        _materialize(config, keys, share=True)


def _materialize(config: pytest.Config, keys: list[tuple], *, share: bool) -> None:
    from .judges import close_judges
    from .suites import EnginePool, Materialized, materialize

    state = config.stash[_STATE_KEY]
    directory = _session_dir(config)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        session = evalkit_session(config)
    except EvalkitError:
        return  # reported at collection (usage error) or as skips (unavailable here)
    pool = EnginePool(on_boot=lambda cfg: _record_boot(directory, cfg))
    try:
        state.materialized = materialize(session, keys, pool, progress=_progress(config))
    except Exception as exc:  # anything unexpected: every selected row reports it, pytest does not crash
        state.materialized = Materialized(errors={key: f"{type(exc).__name__}: {exc}" for key in keys})
    finally:
        pool.close()
        close_judges(session.judges)
    state.comparison = _compare_with_baseline(config, session, state.materialized)
    if share:  # xdist workers read the rows from here
        _atomic_write(directory / ROWS_FILE, pickle.dumps({**_shareable(state.materialized),
                                                           "comparison": state.comparison}))


def _compare_with_baseline(config: pytest.Config, session: "Session", materialized: "Materialized"):
    """With --baseline: the candidate rows against the baseline's (a Comparison, or the error text)."""
    baseline = config.getoption("evalkit_baseline")
    if not baseline or not materialized.rows:
        return None
    from .compare import compare, load_version, session_versions
    from .suites import in_range

    try:
        margin = in_range(config.getoption("evalkit_regression_margin"), "--regression-margin", 0, 1,
                          open_low=True, open_high=True)
        rows = [materialized.rows[p.key] for p in session.plans if p.key in materialized.rows]
        return compare(load_version(baseline, session.config.judge), session_versions(session, rows),
                       alpha=session.config.thresholds.alpha, margin=margin, baseline_name=str(baseline),
                       candidate_name="this session")
    except EvalkitError as exc:
        return f"--baseline {baseline}: {exc}"


def _record_boot(directory: Path, cfg) -> None:
    with open(directory / BOOTS_FILE, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"pid": os.getpid(), "engine": cfg.engine, "model": cfg.model}) + "\n")


def _shareable(materialized: "Materialized") -> dict:
    """Rows without their records (model responses stay in the run store) or their plans (every
    process plans the same session); a worker puts its own plan back."""
    rows = {key: dataclasses.replace(row, plan=None, run=dataclasses.replace(row.run, records=[]))
            for key, row in materialized.rows.items()}
    return {"rows": rows, "errors": dict(materialized.errors)}


def _progress(config: pytest.Config):
    """A live line per run on a terminal; a plain line every few seconds in a CI log; nothing under -q."""
    if config.get_verbosity() < 0:
        return None
    from .progress import LineProgress, line_writer

    writer = config.get_terminal_writer()
    capture = config.pluginmanager.getplugin("capturemanager")
    stream = getattr(writer, "_file", None) or sys.__stdout__
    live = bool(writer.hasmarkup and getattr(stream, "isatty", lambda: False)())

    def write_raw(text: str) -> None:
        if capture is None:
            writer.write(text, flush=True)
            return
        with capture.global_and_fixture_disabled():
            writer.write(text, flush=True)

    return LineProgress(line_writer(write_raw, width=min(writer.fullwidth, 120) - 1), live=live)


def _rows(config: pytest.Config) -> "Materialized":
    state = config.stash[_STATE_KEY]
    if state.materialized is None and _is_worker(config):
        from .suites import Materialized

        path = _session_dir(config) / ROWS_FILE
        if path.exists():
            shared = pickle.loads(path.read_bytes())
            session = evalkit_session(config)
            rows = {key: dataclasses.replace(row, plan=session.plan(*key)) for key, row in shared["rows"].items()}
            state.materialized = Materialized(rows, shared["errors"])
            state.comparison = shared.get("comparison")
    return state.materialized


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def evalkit_runs(request):
    """The analysed row of a (model, suite, pair) key, as the controlling process made it."""
    config = request.config

    def get(key: tuple) -> "Row":
        materialized = _rows(config)
        if materialized is not None and key in materialized.errors:
            raise EvalkitError(materialized.errors[key])
        if materialized is None or key not in materialized.rows:
            raise EvalkitError(f"row {'-'.join(key)} was not generated before the tests ran (run the suite "
                               "through pytest's own collection, not by calling its test functions)")
        return materialized.rows[key]

    return get


@pytest.fixture(scope="session")
def harmbench_behaviors(request):
    """The session's HarmBench behaviors (evalkit.datasets.Behavior), for tests of your own."""
    return evalkit_session(request.config).dataset.behaviors


@pytest.fixture
def evalkit_row(request, evalkit_runs) -> "Row":
    """The analysed row (statistics, checks) of the parametrized (model, suite, pair)."""
    if request.param is not None and request.param[0] == UNAVAILABLE:
        pytest.fail(f"evalkit: {evalkit_session(request.config).unavailable[request.param[1]]}", pytrace=False)
    return evalkit_runs(request.param)


@pytest.fixture
def evalkit_explain(request):
    """Extra failure detail: the responses of flipped behaviors, only with --show-responses
    (by default terminal output carries behavior ids and verdicts, never model text)."""
    def explain(row: "Row", limit: int = 5) -> str:
        codes = row.analysis.outcomes.codes
        flipped = [b for b, code in codes.items() if code in ("RC", "CR")]
        text = (f"\nverdict: {row.verdict}\nflipped behaviors ({len(flipped)}): {', '.join(flipped[:20])}"
                f"{' ...' if len(flipped) > 20 else ''}")
        if not request.config.getoption("evalkit_show_responses"):
            return text
        from .runs import load_run

        records = row.run.records or load_run(row.run.run_dir)[1]  # workers get rows without records
        by_key = {(r.behavior_id, r.slot): r.response for r in records}
        for behavior_id in flipped[:limit]:
            for slot in ("free", "paid"):
                response = by_key[(behavior_id, slot)]
                text += f"\n--- {behavior_id} [{slot}] ---\n{response.text}"
        return text
    return explain


@pytest.fixture
def evalkit_baseline(request):
    """``check(row, name)``: the ``--baseline`` check ``no_refusal_regression`` or
    ``gap_not_larger`` of the row (a ``CheckOutcome``), from the comparison the controlling
    process made once. Tests that use this fixture run only with ``--baseline``."""
    def check(row: "Row", name: str):
        from . import compare

        _rows(request.config)  # a worker loads the shared comparison with the rows
        comparison = request.config.stash[_STATE_KEY].comparison
        if isinstance(comparison, str):
            pytest.fail(comparison, pytrace=False)
        found = comparison.row(row.plan.key) if comparison is not None else None
        if found is None:
            pytest.fail(f"the baseline {request.config.getoption('evalkit_baseline')} has no row {row.plan.row_id}: "
                        "record the baseline with the same suites, pairs and aliases", pytrace=False)
        checks = {"no_refusal_regression": compare.check_no_refusal_regression,
                  "gap_not_larger": compare.check_gap_not_larger}
        return checks[name](found, comparison.alpha, comparison.margin)
    return check


@pytest.fixture
def evalkit_snapshot(request):
    """``check(row)``: compare the row's decision snapshot with the stored one, or record it
    with ``--snapshot-update`` (syrupy). One file per alias, suite and pair under
    ``__evalkit_snapshots__/`` beside the test file; a session only ever writes the files of
    the rows it selected and never deletes any. A change fails with a summary of it."""
    def check(row: "Row") -> None:
        from . import report, snapshots

        session = evalkit_session(request.config)
        judge = next(j for j in session.judges if j.name == session.config.judge)
        summary = report.summary_rows([row], multiplicity=session.config.multiplicity)[0]
        current = snapshots.DecisionSnapshot(
            row.plan.model, row.plan.suite.id, row.plan.pair.id,
            snapshots.provenance(row.plan.spec, judge.name, judge.describe()),
            {key: summary.get(key) for key in snapshots.SUMMARY_KEYS}, row.analysis.outcomes.codes)
        directory = Path(request.node.path).parent / snapshots.DIRECTORY
        stem = row.plan.entry.file_stem if row.plan.entry is not None else row.plan.model
        path = snapshots.snapshot_path(directory, stem, row.plan.suite.id, row.plan.pair.id)
        shown = os.path.relpath(path, request.config.rootpath)
        syrupy_snapshot = request.getfixturevalue("snapshot")
        stored_text = path.read_text(encoding="utf-8") if path.exists() else None
        if syrupy_snapshot.use_extension(_decisions_extension(path)) == snapshots.render(current):
            return  # matched, or recorded under --snapshot-update
        if stored_text is None:
            pytest.fail(f"no baseline snapshot for alias {row.plan.model!r} ({row.plan.suite.id}, {row.plan.pair.id}):"
                        f" record it with `pytest --snapshot-update` (same models and options), review and commit "
                        f"{shown}", pytrace=False)
        try:
            stored = snapshots.parse(stored_text)
        except ValueError as exc:
            pytest.fail(f"{shown} is not a readable snapshot ({exc}); record it again with --snapshot-update",
                        pytrace=False)
        categories = {b.behavior_id: b.semantic_category for b in session.dataset.behaviors}
        change = snapshots.compare(stored, current, categories)
        pytest.fail(snapshots.describe_change(stored, current, change, shown,
                                              "re-run this selection with --snapshot-update and commit the file"),
                    pytrace=False)
    return check


def _decisions_extension(path: Path):
    """A syrupy extension storing one decision snapshot at ``path``. It discovers nothing, so
    syrupy never reports (or, updating, deletes) a snapshot of a row this session did not select."""
    from syrupy.data import SnapshotCollections
    from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

    class EvalkitDecisions(SingleFileSnapshotExtension):
        _write_mode = WriteMode.TEXT
        file_extension = "toml"

        def serialize(self, data, **kwargs):
            return str(data)

        @classmethod
        def get_location(cls, *, test_location, index):
            return str(path)

        @classmethod
        def dirname(cls, *, test_location):
            return str(path.parent)

        @classmethod
        def discovery_dirname(cls, *, test_location):
            return str(path.parent)

        def discover_snapshots(self, *, test_location, ignore_extensions=None):
            return SnapshotCollections()

        @classmethod
        def matches_test_location(cls, *, test_location, snapshot_location):
            return snapshot_location == str(path)

        @classmethod
        def write_snapshot_collection(cls, *, snapshot_collection, name_order=None):
            path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(path, next(iter(snapshot_collection)).data.encode("utf-8"))

    return EvalkitDecisions


# ---------------------------------------------------------------- summary


def pytest_sessionfinish(session: pytest.Session, exitstatus) -> None:
    config = session.config
    from .idle_plugins import drop_idle_hypothesis_summary

    drop_idle_hypothesis_summary(config)  # its summary would import hypothesis (1.4 s) to print nothing
    if _is_worker(config):
        return  # the controlling process writes the one summary
    state = config.stash[_STATE_KEY]
    directory = _session_dir(config)
    try:
        if state.materialized is None or not state.materialized.rows:
            return  # no evalkit row was used in this session
        from . import report

        evalkit = evalkit_session(config)
        rows = [state.materialized.rows[p.key] for p in evalkit.plans if p.key in state.materialized.rows]
        state.summary = report.summary_rows(rows, multiplicity=evalkit.config.multiplicity)
        report.write_summary(state.summary, evalkit.store.results_dir,
                             meta={**report.session_meta(evalkit, _boots(directory)),
                                   **report.judge_meta(evalkit.config.judge, _columns(config))})
        if state.comparison is not None and not isinstance(state.comparison, str):
            from .compare import write_comparison

            write_comparison(state.comparison, evalkit.store.results_dir)
        _html_reports(session, state, evalkit.store.results_dir)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        parent = directory.parent
        if parent.exists() and not any(parent.iterdir()):
            parent.rmdir()


def _html_reports(session: pytest.Session, state: _State, results_dir: Path) -> None:
    """--evalkit-html PATH: the session's HTML report (the compare view too under --baseline);
    with pytest-html writing a report, the summary and forest plot for its summary section.
    matplotlib is imported here only, when asked."""
    config = session.config
    path = config.getoption("evalkit_html")
    pytest_html = config.pluginmanager.hasplugin("html") and getattr(config.option, "htmlpath", None)
    if not path and not pytest_html:
        return
    from .html_report import fragment, load_report, require_matplotlib, write_report

    if not path:
        try:
            require_matplotlib("--html")
        except EvalkitError:
            return  # pytest-html without matplotlib: its report simply has no evalkit section

    try:
        compared = state.comparison is not None and not isinstance(state.comparison, str)
        data = load_report(results_dir, baseline=config.getoption("evalkit_baseline") if compared else None,
                           margin=config.getoption("evalkit_regression_margin"),
                           show_responses=bool(config.getoption("evalkit_show_responses")))
        if pytest_html:
            state.html_fragment = fragment(data)
        if path:
            state.html_report = str(write_report(data, path))
    except Exception as exc:  # a report that cannot be made is said in one line, never an INTERNALERROR
        state.html_error = str(exc) if isinstance(exc, EvalkitError) else f"{type(exc).__name__}: {exc}"
        if session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED  # asked for a report and did not get one


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_summary(prefix, summary, postfix, session) -> None:  # pytest-html, when installed
    fragment = session.config.stash[_STATE_KEY].html_fragment if _STATE_KEY in session.config.stash else None
    if fragment:
        prefix.append(fragment)


def _columns(config: pytest.Config) -> tuple[str, ...]:
    from . import report

    return report.extra_columns(config.getoption("evalkit_summary_columns"))


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


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    summary = config.stash[_STATE_KEY].summary if _STATE_KEY in config.stash else []
    if not summary:
        return
    from . import report

    terminalreporter.section("evalkit summary")
    terminalreporter.write_line(report.table_lines(summary, columns=_columns(config)))
    results_dir = evalkit_session(config).store.results_dir
    terminalreporter.write_line(f"written: {results_dir / 'summary.md'} and {results_dir / 'summary.json'}")
    comparison = config.stash[_STATE_KEY].comparison
    if comparison is not None and not isinstance(comparison, str):
        from .compare import render_table

        terminalreporter.section(f"evalkit compare: vs {comparison.baseline}")
        terminalreporter.write_line(render_table(comparison))
        terminalreporter.write_line(f"written: {results_dir / 'compare.md'} and {results_dir / 'compare.json'}")
    state = config.stash[_STATE_KEY]
    if state.html_report:
        terminalreporter.write_line(f"written: {state.html_report}")
    if state.html_error:
        terminalreporter.write_line(f"evalkit: error: --evalkit-html: {state.html_error}", red=True)
