"""The pytest face of evalkit: options, parametrization, session fixtures and the summary.

Thin by design: every number comes from ``evalkit.suites``/``evalkit.analysis``. A test
asks for ``evalkit_row`` and is parametrized over models x suites x framing pairs;
each run is generated once per session (and once across pytest-xdist workers, under
the run store's file lock), and the summary is computed by the controlling process
from the run store, so ``-n 4`` prints the same single table as ``-n 0``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from pathlib import Path

import pytest

from . import report
from .errors import EvalkitError, UnavailableHere
from .judges import close_judges
from .options import all_options, engine_options
from .suites import EnginePool, Row, Session, SessionConfig, analyse_plans, default_results_dir, prepare, run_plan

GROUP = "evalkit"
_SESSION_KEY = pytest.StashKey["Session | EvalkitError"]()
_LEDGER_KEY = pytest.StashKey[Path]()
_ROWS_KEY = pytest.StashKey[list]()
PAIR_KINDS_MARK = "evalkit_pairs"
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


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS:
        config.addinivalue_line("markers", f"{name}: {text}")
    uid = getattr(config, "workerinput", {}).get("evalkit_session_uid") or uuid.uuid4().hex
    config.stash[_LEDGER_KEY] = Path(".evalkit-sessions") / uid  # made absolute once results dir is known
    config.stash[_ROWS_KEY] = []


def pytest_configure_node(node) -> None:  # pytest-xdist: hand the session id to each worker
    node.workerinput["evalkit_session_uid"] = node.config.stash[_LEDGER_KEY].name


def _values(config: pytest.Config) -> dict:
    return {o.dest: config.getoption(f"evalkit_{o.dest}") for o in all_options()}


def evalkit_session(config: pytest.Config) -> Session:
    """Prepare (validate and plan) the session once per process; errors are cached too."""
    if _SESSION_KEY not in config.stash:
        values = _values(config)
        try:
            session_config = dataclasses.replace(
                SessionConfig.from_options(values, engine_options(values, values["engine"] or "sim")),
                session_id=config.stash[_LEDGER_KEY].name)
            config.stash[_SESSION_KEY] = prepare(session_config)
        except EvalkitError as exc:
            config.stash[_SESSION_KEY] = exc
    value = config.stash[_SESSION_KEY]
    if isinstance(value, EvalkitError):
        raise value
    return value


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
        params.append(pytest.param((plan.model, plan.suite.id, plan.pair.id), id=plan.row_id, marks=marks))
    metafunc.parametrize("evalkit_row", params, indirect=True)


def pytest_collection_modifyitems(session, config, items) -> None:
    """Bad evalkit options stop the session before any test runs, with exit status 4."""
    error = config.stash.get(_SESSION_KEY, None)
    if isinstance(error, EvalkitError) and not isinstance(error, UnavailableHere):
        raise pytest.UsageError(f"evalkit: {error}")


@pytest.fixture(scope="session")
def evalkit_engines(request):
    """One engine per model per session, booted on first need (never when all runs are reused).
    Model-based judges boot engines of their own; they are released here too."""
    pool = EnginePool()
    yield pool
    pool.close()
    if isinstance(request.config.stash.get(_SESSION_KEY, None), Session):
        close_judges(request.config.stash[_SESSION_KEY].judges)


@pytest.fixture(scope="session")
def evalkit_runs(request, evalkit_engines):
    """Session cache: each (model, suite, pair) run executed once, then shared."""
    session = evalkit_session(request.config)
    cache: dict[tuple, Row] = {}
    ledger = _ledger_dir(request.config)

    def get(key: tuple) -> tuple:
        if key not in cache:
            plan = session.plan(*key)
            result = run_plan(session, plan, evalkit_engines)
            row = analyse_plans(session, [(plan, result)])[0]
            cache[key] = row
            ledger.mkdir(parents=True, exist_ok=True)
            with open(ledger / f"{os.getpid()}.jsonl", "a", encoding="utf-8") as handle:
                handle.write(json.dumps(list(key)) + "\n")
        return cache[key]

    return get


@pytest.fixture(scope="session")
def harmbench_behaviors(request):
    """The session's HarmBench behaviors (evalkit.datasets.Behavior), for tests of your own."""
    return evalkit_session(request.config).dataset.behaviors


@pytest.fixture
def evalkit_row(request, evalkit_runs) -> Row:
    """The analysed row (statistics, checks) of the parametrized (model, suite, pair)."""
    return evalkit_runs(request.param)


@pytest.fixture
def evalkit_explain(request):
    """Extra failure detail: the responses of flipped behaviors, only with --show-responses
    (by default terminal output carries behavior ids and verdicts, never model text)."""
    def explain(row: Row, limit: int = 5) -> str:
        codes = row.analysis.outcomes.codes
        flipped = [b for b, code in codes.items() if code in ("RC", "CR")]
        text = f"\nflipped behaviors ({len(flipped)}): {', '.join(flipped[:20])}{' ...' if len(flipped) > 20 else ''}"
        if not request.config.getoption("evalkit_show_responses"):
            return text
        by_key = {(r.behavior_id, r.slot): r.response for r in row.run.records}
        for behavior_id in flipped[:limit]:
            for slot in ("free", "paid"):
                response = by_key[(behavior_id, slot)]
                text += f"\n--- {behavior_id} [{slot}] ---\n{response.text}"
        return text
    return explain


def _ledger_dir(config: pytest.Config) -> Path:
    """Where this session's processes list the runs they used (one file per process)."""
    results_dir = Path(config.getoption("evalkit_results_dir") or default_results_dir())
    return results_dir.resolve() / config.stash[_LEDGER_KEY]


# ---------------------------------------------------------------- summary


def pytest_sessionfinish(session: pytest.Session, exitstatus) -> None:
    config = session.config
    if hasattr(config, "workerinput"):
        return  # workers write ledgers; the controlling process writes the one summary
    ledger = _ledger_dir(config)
    if not ledger.exists():
        return  # no evalkit run was used in this session
    try:
        evalkit = evalkit_session(config)
    except EvalkitError:
        return
    keys = set()
    for path in sorted(ledger.glob("*.jsonl")):
        keys.update(tuple(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line)
        path.unlink()
    ledger.rmdir()
    if not any(ledger.parent.iterdir()):
        ledger.parent.rmdir()
    plans = [p for p in evalkit.plans if (p.model, p.suite.id, p.pair.id) in keys]  # plan order: deterministic
    pool = EnginePool(factory=_no_engine)
    completed = [(plan, run_plan(evalkit, plan, pool)) for plan in plans]
    rows = analyse_plans(evalkit, completed)
    summary = report.summary_rows(rows, multiplicity=evalkit.config.multiplicity)
    config.stash[_ROWS_KEY] = summary
    meta = {**report.summary_meta(evalkit), **report.judge_meta(evalkit.config.judge, _columns(config))}
    report.write_summary(summary, evalkit.store.results_dir, meta=meta)


def _columns(config: pytest.Config) -> tuple[str, ...]:
    return report.extra_columns(config.getoption("evalkit_summary_columns"))


def _no_engine(cfg):
    raise RuntimeError("summary must read finished runs; a run was incomplete at session end")


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    summary = config.stash.get(_ROWS_KEY, [])
    if not summary:
        return
    terminalreporter.section("evalkit summary")
    terminalreporter.write_line(report.table_lines(summary, columns=_columns(config)))
    results_dir = evalkit_session(config).store.results_dir
    terminalreporter.write_line(f"written: {results_dir / 'summary.md'} and {results_dir / 'summary.json'}")
