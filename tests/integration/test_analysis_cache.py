"""The per-run analysis cache (evalkit.analysis_cache): a warm session's rows are exactly the
rows recomputed from the records, and a cache that does not match what is on disk now, or
cannot show that it is intact, is ignored and the run analysed from its records again."""

import dataclasses
import json
import math
import sys

import pytest

from evalkit import analysis_cache, report, runs, runs_store
from evalkit.analysis import Thresholds
from evalkit.suites import EnginePool, SessionConfig, analyse_run, materialize, prepare, run_plan

N = 40


def _session(harmbench_csv, results, **overrides):
    config = SessionConfig(models=("study-pilot",), harmbench=str(harmbench_csv), suites=("pilot",), n=N,
                           results_dir=str(results), **overrides)
    return prepare(config)


@pytest.fixture
def cold(harmbench_csv, tmp_path):
    """A session whose runs were generated and analysed once (so each run has its cache)."""
    session = _session(harmbench_csv, tmp_path / "results")
    rows = materialize(session, [p.key for p in session.plans], EnginePool())
    assert not rows.errors and len(rows.rows) == len(session.plans) == 2
    return session, rows


def _summary(session, materialized):
    rows = [materialized.rows[p.key] for p in session.plans]
    return report.summary_rows(rows, multiplicity=session.config.multiplicity)


def test_a_warm_session_gets_the_recomputed_rows_without_reading_records(cold, harmbench_csv, monkeypatch):
    session, first = cold
    for plan in session.plans:
        assert (session.store.run_dir(plan.spec) / analysis_cache.CACHE_FILE).is_file()
    warm_session = _session(harmbench_csv, session.store.results_dir)

    def refuse(*args, **kwargs):
        raise AssertionError("a warm session read the record log")

    monkeypatch.setattr(runs, "read_run_records", refuse)
    monkeypatch.setattr(runs_store, "read_run_records", refuse)
    warm = materialize(warm_session, [p.key for p in warm_session.plans], EnginePool(factory=refuse))
    monkeypatch.undo()
    assert not warm.errors
    for plan in session.plans:
        cached, fresh = warm.rows[plan.key], first.rows[plan.key]
        assert cached.run.reused and cached.run.held_records is None and cached.run.resumed_from == 2 * N
        assert (cached.analysis, cached.verdict, cached.breakdowns, cached.bootstrap_gap_ci, cached.corrected_gap,
                cached.trace_rates) == (fresh.analysis, fresh.verdict, fresh.breakdowns, fresh.bootstrap_gap_ci,
                                        fresh.corrected_gap, fresh.trace_rates)
    # and so is everything written from them (summary.json's rows)
    assert _summary(warm_session, warm) == _summary(session, first)
    # a project's check or test that asks for the records gets them, read from the run store then
    for plan in session.plans:
        assert warm.rows[plan.key].run.records == first.rows[plan.key].run.records != []


def test_the_cached_analysis_equals_the_analysis_recomputed_from_the_records(cold):
    session, _ = cold
    for plan in session.plans:
        run = run_plan(session, plan, EnginePool())
        assert analysis_cache.load(session, plan)[1] == analyse_run(session, plan, run)


def _cache_path(session):
    plan = session.plans[0]
    return plan, session.store.run_dir(plan.spec) / analysis_cache.CACHE_FILE


def _edit(path, change):
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


@pytest.mark.parametrize("damage", [
    "a number changed", "a number changed, digest recomputed over another key", "truncated", "not json",
    "another format", "a field missing", "a wrong type", "pickle"])
def test_a_damaged_or_foreign_cache_is_ignored_and_rewritten(cold, damage):
    session, _ = cold
    plan, path = _cache_path(session)
    good = path.read_bytes()

    def bump(document):
        document["payload"]["analysis"]["result"]["gap"] += 0.25

    if damage == "a number changed":
        _edit(path, bump)
    elif damage == "a number changed, digest recomputed over another key":
        def forge(document):
            bump(document)
            document["key"]["seed"] = 1
            document["digest"] = analysis_cache._digest(document["key"], document["payload"])
        _edit(path, forge)
    elif damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "not json":
        path.write_bytes(b"\x00\xff garbage")
    elif damage == "another format":
        _edit(path, lambda d: d.update(format="something-else"))
    elif damage == "a field missing":
        def drop(document):
            del document["payload"]["analysis"]["result"]["gap"]
            document["digest"] = analysis_cache._digest(document["key"], document["payload"])
        _edit(path, drop)
    elif damage == "a wrong type":
        def retype(document):
            document["payload"]["analysis"]["result"]["n"] = "40"
            document["digest"] = analysis_cache._digest(document["key"], document["payload"])
        _edit(path, retype)
    else:
        import pickle

        path.write_bytes(pickle.dumps({"format": analysis_cache.FORMAT}))
    assert analysis_cache.load(session, plan) is None
    rows = materialize(session, [plan.key], EnginePool())  # analysed from the records, the cache rewritten
    assert path.read_bytes() == good
    assert analysis_cache.load(session, plan)[1].analysis == rows.rows[plan.key].analysis


def test_any_change_to_the_run_or_the_options_invalidates_it(cold, harmbench_csv):
    session, _ = cold
    plan, path = _cache_path(session)
    run_dir = path.parent
    assert analysis_cache.load(session, plan) is not None
    # other thresholds, another seed for the bootstrap: another key
    other = _session(harmbench_csv, session.store.results_dir, thresholds=Thresholds(alpha=0.01))
    assert analysis_cache.load(other, other.plans[0]) is None
    # --fresh never reads it
    fresh = dataclasses.replace(session, config=dataclasses.replace(session.config, fresh=True))
    assert analysis_cache.load(fresh, plan) is None
    # a verdict set added under verdicts/ (re-judged labels) changes the key
    (run_dir / runs.VERDICTS_DIR).mkdir()
    (run_dir / runs.VERDICTS_DIR / "extra-0123456789.jsonl").write_bytes(b"")
    assert analysis_cache.load(session, plan) is None
    (run_dir / runs.VERDICTS_DIR / "extra-0123456789.jsonl").unlink()
    assert analysis_cache.load(session, plan) is not None
    # a record log changed after the run completed: no cache, and the store refuses the log
    records = run_dir / runs.RECORDS
    records.write_bytes(records.read_bytes() + b"\n")
    assert analysis_cache.load(session, plan) is None
    with pytest.raises(runs.RunStoreError, match="changed after the run completed"):
        run_plan(session, plan, EnginePool())


def test_the_code_digest_covers_the_statistics():
    names = set()
    root = analysis_cache.Path(analysis_cache.__file__).resolve().parent
    for pattern in analysis_cache._CODE:
        names.update(p.relative_to(root).as_posix() for p in root.glob(pattern))
    assert {"analysis.py", "stats/_paired.py", "stats/_power.py", "stats/_crossover.py",
            "data/judge_accuracy.toml"} <= names


def test_encode_and_decode_keep_every_value_and_type():
    from evalkit.stats import PairedTable, paired_analysis

    result = paired_analysis(PairedTable(30, 7, 2, 61), margin=0.03)
    payload = json.loads(json.dumps(analysis_cache.encode(result)))
    assert analysis_cache.decode(type(result), payload) == result
    # non-finite numbers survive as JSON's NaN/Infinity tokens
    nan_result = dataclasses.replace(result, gap=math.inf)
    assert analysis_cache.decode(type(result), json.loads(json.dumps(analysis_cache.encode(nan_result)))).gap == \
        math.inf
    with pytest.raises(TypeError):
        analysis_cache.decode(type(result), {**payload, "n": 1.5})


def test_a_warm_session_computes_no_statistic(cold, harmbench_csv):
    """Checked in a fresh interpreter: the cached rows, and the judges' measured accuracy that
    every summary carries, are built without the modules that only computing statistics or
    generating loads (scipy at all: the intervals, the power search, the sim's normal draws;
    the bootstrap), and without compiling the judge's rules (describing it reads their header)."""
    import subprocess

    session, _ = cold
    code = (
        "import sys\n"
        "from evalkit.suites import EnginePool, SessionConfig, materialize, prepare\n"
        f"s = prepare(SessionConfig(models=('study-pilot',), harmbench={str(harmbench_csv)!r}, suites=('pilot',),"
        f" n={N}, results_dir={str(session.store.results_dir)!r}))\n"
        "m = materialize(s, [p.key for p in s.plans], EnginePool())\n"
        "assert not m.errors and all(r.run.held_records is None for r in m.rows.values()), m.errors\n"
        "from evalkit import report\n"
        "meta = report.judge_meta(s.config.judge, ())\n"
        "assert meta['judge_accuracy']['judges']['refusal']['xstest-v1']['accuracy']['wilson_ci'], meta\n"
        "from evalkit.judges.lexical import refusal_rules\n"
        "loaded = [n for n in sys.modules if n.split('.')[0] == 'scipy' or n == 'evalkit.stats._bootstrap']\n"
        "print(sorted(loaded)[:5], refusal_rules.cache_info().currsize)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[] 0"


def test_a_run_regenerated_by_another_process_meanwhile_does_not_get_this_sessions_numbers(harmbench_csv, tmp_path):
    """Session A analyses its run; before A writes the cache, another process regenerates the
    run (--fresh) with other responses. A's numbers must not be cached as that run's."""
    from evalkit.engines import EngineConfig
    from evalkit.engines.sim import SimEngine

    session = _session(harmbench_csv, tmp_path / "results")
    plan = session.plans[0]
    mine = run_plan(session, plan, EnginePool())
    analysed = analyse_run(session, plan, mine)
    other = runs.execute(plan.spec, plan.schedule, session.store, lambda: SimEngine(EngineConfig(model="null")),
                         session.judges, fresh=True, session_id="another process")
    now = analyse_run(session, plan, other)
    assert now.analysis != analysed.analysis  # the two runs' numbers differ, so serving the wrong one shows
    analysis_cache.save(session, plan, mine, analysed)
    cached = analysis_cache.load(session, plan)
    assert cached is None or cached[1] == now
