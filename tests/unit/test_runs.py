import dataclasses
import datetime
import hashlib
import json
import os

import pytest

from evalkit import runs
from evalkit.engines import EngineConfig, Response
from evalkit.engines.sim import SimEngine
from evalkit.errors import ConfigError, RunStoreError
from evalkit.judges import UNCLEAR, Verdict, create_judge
from evalkit.runs import DEFAULT_SYNC, MANIFEST, RECORDS, Record, RunStore, SyncPolicy, execute, load_run, read_records
from evalkit.suites import SessionConfig, prepare

pytestmark = pytest.mark.unit


@pytest.fixture
def session(synthetic_csv, tmp_path):
    return prepare(SessionConfig(models=("study-pilot",), harmbench=str(synthetic_csv), suites=("replication",),
                                 pairs=("free-vs-paid",), results_dir=str(tmp_path / "results")))


class CountingEngine(SimEngine):
    calls = 0

    def generate(self, requests):
        CountingEngine.calls += len(requests)
        return super().generate(requests)


def provider(model="study-pilot"):
    return lambda: CountingEngine(EngineConfig(model=model))


def timeless(records):
    return [(r.index, r.behavior_id, r.slot, r.batch, r.response.text, r.response.reasoning, r.verdicts)
            for r in records]


def test_reuse_costs_no_engine_call(session):
    plan = session.plans[0]
    CountingEngine.calls = 0
    first = execute(plan.spec, plan.schedule, session.store, provider(), session.judges)
    assert first.generated == len(plan.schedule) and not first.reused
    assert CountingEngine.calls == len(plan.schedule)

    def no_engine():
        raise AssertionError("a finished run must be reused without booting an engine")

    second = execute(plan.spec, plan.schedule, session.store, no_engine, session.judges)
    assert second.reused and second.generated == 0
    assert timeless(second.records) == timeless(first.records)
    manifest, records = load_run(first.run_dir)
    assert manifest["status"] == "complete" and manifest["spec_sha256"] == plan.spec.sha256()
    assert manifest["spec"]["protocol"] == "randomized" and manifest["git_revision"] is not None
    assert len(records) == len(plan.schedule)


def test_any_spec_change_makes_a_new_run(synthetic_csv, tmp_path):
    base = dict(models=("study-pilot",), harmbench=str(synthetic_csv), pairs=("free-vs-paid",),
                results_dir=str(tmp_path / "r"))
    variants = [SessionConfig(**base, suites=("replication",)),
                SessionConfig(**base, suites=("pilot",), n=8, batch_size=1),  # order is part of the experiment
                SessionConfig(**base, suites=("replication",), seed=1),
                SessionConfig(**base, suites=("replication",), batch_size=2),
                SessionConfig(**base, suites=("replication",), max_tokens=64),
                SessionConfig(**base, suites=("replication",), framings="study-chat")]
    dirs = {prepare(v).store.run_dir(prepare(v).plans[0].spec) for v in variants}
    assert len(dirs) == len(variants)


def test_torn_last_line_is_discarded_and_run_resumes(session):
    plan = session.plans[0]
    reference = execute(plan.spec, plan.schedule, RunStore(session.store.results_dir / "ref"), provider(),
                        session.judges)
    run = execute(plan.spec, plan.schedule, session.store, provider(), session.judges)
    log = run.run_dir / RECORDS
    manifest = json.loads((run.run_dir / MANIFEST).read_text())
    manifest["status"] = "running"  # as if the process died before finishing
    (run.run_dir / MANIFEST).write_text(json.dumps(manifest))
    lines = log.read_bytes().split(b"\n")
    torn = b"\n".join(lines[:5]) + b"\n" + lines[5][: len(lines[5]) // 2]  # a crash mid-write
    log.write_bytes(torn)
    assert len(read_records(log)) == 5  # the torn line is never parsed as data
    resumed = execute(plan.spec, plan.schedule, session.store, provider(), session.judges)
    assert resumed.resumed_from == 5 and resumed.generated == len(plan.schedule) - 5
    assert timeless(resumed.records) == timeless(reference.records)
    assert [r.index for r in read_records(log)] == list(range(len(plan.schedule)))


def test_partial_batch_restarts_from_its_beginning(synthetic_csv, tmp_path):
    session = prepare(SessionConfig(models=("study-pilot",), harmbench=str(synthetic_csv), suites=("pilot",),
                                    pairs=("free-vs-paid",), batch_size=4, n=8, results_dir=str(tmp_path / "r")))
    plan = session.plans[0]
    reference = execute(plan.spec, plan.schedule, RunStore(tmp_path / "ref"), provider(), session.judges)
    run = execute(plan.spec, plan.schedule, session.store, provider(), session.judges)
    manifest = json.loads((run.run_dir / MANIFEST).read_text())
    manifest["status"] = "running"
    (run.run_dir / MANIFEST).write_text(json.dumps(manifest))
    lines = (run.run_dir / RECORDS).read_text().splitlines(keepends=True)
    (run.run_dir / RECORDS).write_text("".join(lines[:6]))  # batch 0 complete, batch 1 half written
    resumed = execute(plan.spec, plan.schedule, session.store, provider(), session.judges)
    assert resumed.resumed_from == 4
    assert timeless(resumed.records) == timeless(reference.records)


def test_corruption_before_the_last_line_is_refused(session):
    plan = session.plans[0]
    run = execute(plan.spec, plan.schedule, session.store, provider(), session.judges)
    log = run.run_dir / RECORDS
    lines = log.read_text().splitlines(keepends=True)
    lines[2] = "{not json\n"
    log.write_text("".join(lines))
    with pytest.raises(RunStoreError, match="line 3 is corrupt"):
        read_records(log)


def test_resume_with_a_different_spec_names_the_fields(session, synthetic_csv, tmp_path):
    plan = session.plans[0]
    run = execute(plan.spec, plan.schedule, session.store, provider(), session.judges)
    other = prepare(SessionConfig(models=("study-pilot",), harmbench=str(synthetic_csv), suites=("replication",),
                                  pairs=("free-vs-paid",), seed=9, results_dir=str(tmp_path / "x"))).plans[0]
    with pytest.raises(RunStoreError) as info:
        execute(other.spec, other.schedule, session.store, provider(), session.judges, run_dir=run.run_dir)
    assert "fields differ" in str(info.value) and "seed" in str(info.value) and "schedule_sha256" in str(info.value)


def test_rejudge_reuses_generations(session):
    plan = session.plans[0]
    run = execute(plan.spec, plan.schedule, session.store, provider(), [create_judge("refusal")])
    assert all(set(r.verdicts) == {"refusal"} for r in run.records)

    def no_engine():
        raise AssertionError("re-judging must not generate")

    rejudged = execute(plan.spec, plan.schedule, session.store, no_engine,
                       [create_judge("refusal"), create_judge("seed")])
    assert rejudged.reused and all(set(r.verdicts) == {"refusal", "seed"} for r in rejudged.records)
    verdict_files = list((run.run_dir / "verdicts").glob("seed-*.jsonl"))
    assert len(verdict_files) == 1
    assert len(verdict_files[0].read_text().splitlines()) == len(plan.schedule)
    _, loaded = load_run(run.run_dir)  # what export and the audit read: the added judge included
    assert [r.verdicts for r in loaded] == [r.verdicts for r in rejudged.records]


def test_fresh_forces_a_new_generation(session):
    plan = session.plans[0]
    execute(plan.spec, plan.schedule, session.store, provider(), session.judges)
    CountingEngine.calls = 0
    again = execute(plan.spec, plan.schedule, session.store, provider(), session.judges, fresh=True)
    assert not again.reused and CountingEngine.calls == len(plan.schedule)


def test_engine_errors_are_recorded_not_judged(synthetic_csv, tmp_path):
    class Failing(SimEngine):
        def generate(self, requests):
            return [Response(text="", error="HTTP 503 Service Unavailable") for _ in requests]

    session = prepare(SessionConfig(models=("null",), harmbench=str(synthetic_csv), suites=("replication",),
                                    pairs=("free-vs-paid",), results_dir=str(tmp_path / "r")))
    plan = session.plans[0]
    run = execute(plan.spec, plan.schedule, session.store, lambda: Failing(EngineConfig(model="null")),
                  session.judges)
    assert len(run.records) == len(plan.schedule)  # never silently dropped
    assert {label for r in run.records for label in r.verdicts.values()} == {"error"}


def test_unwritable_results_dir_fails_before_anything(synthetic_csv, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(RunStoreError, match="is not writable"):
        prepare(SessionConfig(models=("null",), harmbench=str(synthetic_csv), results_dir=str(blocker / "sub")))


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_results_dir(synthetic_csv, tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(RunStoreError, match="is not writable"):
            prepare(SessionConfig(models=("null",), harmbench=str(synthetic_csv), results_dir=str(tmp_path / "r")))
    finally:
        tmp_path.chmod(0o700)


class OlderRefusalRules:
    """The refusal judge as an older rules file would have been: another identity, and
    labels the current rules no longer give (every response unclear)."""

    name = "refusal"

    def judge(self, request, response):
        return Verdict(UNCLEAR, self.name, "old-rules")

    def describe(self):
        return {**create_judge("refusal").describe(), "patterns_version": "0-old"}


def test_changed_judge_configuration_rejudges_stored_responses(session):
    plan = session.plans[0]
    run = execute(plan.spec, plan.schedule, session.store, provider(), [OlderRefusalRules()])
    assert {r.verdicts["refusal"] for r in run.records} == {UNCLEAR}  # stored under the old rules

    def no_engine():
        raise AssertionError("re-judging must not generate")

    again = execute(plan.spec, plan.schedule, session.store, no_engine, [create_judge("refusal")])
    assert {r.verdicts["refusal"] for r in again.records} <= {"refusal", "compliance"}
    current = execute(plan.spec, plan.schedule, RunStore(session.store.results_dir / "ref"), provider(),
                      [create_judge("refusal")])
    assert [r.verdicts for r in again.records] == [r.verdicts for r in current.records]
    assert list((run.run_dir / "verdicts").glob("refusal-*.jsonl"))
    _, loaded = load_run(run.run_dir)  # readers see the current rules' labels too
    assert [r.verdicts["refusal"] for r in loaded] == [r.verdicts["refusal"] for r in current.records]


def test_fresh_regenerates_once_per_session(session):
    """With --fresh, a second worker of the same session reuses what the first regenerated."""
    plan = session.plans[0]
    execute(plan.spec, plan.schedule, session.store, provider(), session.judges)
    CountingEngine.calls = 0
    execute(plan.spec, plan.schedule, session.store, provider(), session.judges, fresh=True, session_id="s1")
    execute(plan.spec, plan.schedule, session.store, provider(), session.judges, fresh=True, session_id="s1")
    assert CountingEngine.calls == len(plan.schedule)
    execute(plan.spec, plan.schedule, session.store, provider(), session.judges, fresh=True, session_id="s2")
    assert CountingEngine.calls == 2 * len(plan.schedule)


def test_failed_requests_are_retried_on_the_next_run(synthetic_csv, tmp_path):
    session = prepare(SessionConfig(models=("null",), harmbench=str(synthetic_csv), suites=("pilot",),
                                    pairs=("free-vs-paid",), n=8, batch_size=4, results_dir=str(tmp_path / "r")))
    plan = session.plans[0]

    class FlakyOnce(SimEngine):
        calls = 0

        def generate(self, requests):
            FlakyOnce.calls += 1
            responses = super().generate(requests)
            if FlakyOnce.calls == 2:  # the second batch fails the first time only
                return [Response(text="", error="HTTP 503") for _ in requests]
            return responses

    first = execute(plan.spec, plan.schedule, session.store, lambda: FlakyOnce(EngineConfig(model="null")),
                    session.judges, session_id="a")
    assert [r.batch for r in first.records if r.response.error] == [1, 1, 1, 1]
    second = execute(plan.spec, plan.schedule, session.store, lambda: FlakyOnce(EngineConfig(model="null")),
                     session.judges, session_id="b")
    assert not second.reused and second.generated == 4
    assert not any(r.response.error for r in second.records)
    reference = execute(plan.spec, plan.schedule, RunStore(tmp_path / "ref"), provider("null"), session.judges)
    assert timeless(second.records) == timeless(reference.records)
    assert [r.index for r in read_records(second.run_dir / RECORDS)] == list(range(16))


def test_resume_with_an_added_judge_judges_the_early_records(session):
    plan = session.plans[0]
    run = execute(plan.spec, plan.schedule, session.store, provider(), [create_judge("refusal")])
    manifest = json.loads((run.run_dir / MANIFEST).read_text())
    manifest["status"] = "running"
    (run.run_dir / MANIFEST).write_text(json.dumps(manifest))
    lines = (run.run_dir / RECORDS).read_text().splitlines(keepends=True)
    (run.run_dir / RECORDS).write_text("".join(lines[:4]))
    resumed = execute(plan.spec, plan.schedule, session.store, provider(),
                      [create_judge("refusal"), create_judge("seed")])
    assert all({"refusal", "seed"} <= set(r.verdicts) for r in resumed.records)


def test_each_run_starts_with_fresh_engine_state(synthetic_csv, tmp_path):
    """One engine serves several runs in a session; a stateful engine must not carry one
    run's state into the next, or a run's records would depend on what ran before it."""
    profile = tmp_path / "stateful.toml"
    profile.write_text("[profile]\nid = 'stateful'\nstate_shift = -3.0\nstate_scope = 'session'\nbase = 0.5\n")
    config = dict(models=(str(profile),), harmbench=str(synthetic_csv), pairs=("free-vs-paid",), batch_size=1)
    pilot = prepare(SessionConfig(**config, suites=("pilot",), n=8, results_dir=str(tmp_path / "a"))).plans[0]
    replication_session = prepare(SessionConfig(**config, suites=("replication",), results_dir=str(tmp_path / "a")))
    replication = replication_session.plans[0]
    shared = SimEngine(EngineConfig(model=str(profile)))
    execute(pilot.spec, pilot.schedule, replication_session.store, lambda: shared, replication_session.judges)
    after_other_run = execute(replication.spec, replication.schedule, replication_session.store, lambda: shared,
                              replication_session.judges)
    alone = execute(replication.spec, replication.schedule, RunStore(tmp_path / "b"),
                    lambda: SimEngine(EngineConfig(model=str(profile))), replication_session.judges)
    assert timeless(after_other_run.records) == timeless(alone.records)


def test_verdicts_judged_on_failed_responses_do_not_outlive_the_retry(synthetic_csv, tmp_path):
    session = prepare(SessionConfig(models=("null",), harmbench=str(synthetic_csv), suites=("pilot",),
                                    pairs=("free-vs-paid",), n=8, batch_size=4, results_dir=str(tmp_path / "r")))
    plan = session.plans[0]

    class FailsFirstSession(SimEngine):
        def generate(self, requests):
            return [Response(text="", error="HTTP 503") for _ in requests]

    refusal, seed = create_judge("refusal"), create_judge("seed")
    execute(plan.spec, plan.schedule, session.store, lambda: FailsFirstSession(EngineConfig(model="null")),
            [refusal], session_id="a")
    # a judge added in the same session judges the stored (failed) responses: all errors
    added = execute(plan.spec, plan.schedule, session.store, provider("null"), [refusal, seed], session_id="a")
    assert {r.verdicts["seed"] for r in added.records} == {"error"}
    retried = execute(plan.spec, plan.schedule, session.store, provider("null"), [refusal], session_id="b")
    assert not any(r.response.error for r in retried.records)
    _, loaded = load_run(retried.run_dir)
    assert all(r.verdicts.get("seed") != "error" for r in loaded)  # the stale set is gone, not shown


# ---------------------------------------------------------------- sync cadence


@pytest.mark.parametrize("text, canonical, records, seconds", [
    ("every-batch", "every-batch", 1, None),
    ("every-64", "every-64", 64, None),
    ("every-250ms", "every-250ms", None, 0.25),
    ("every-250-ms", "every-250ms", None, 0.25),
    ("every-0ms", "every-0ms", None, 0.0),
])
def test_sync_policy_parses_its_three_forms(text, canonical, records, seconds):
    policy = SyncPolicy.parse(text)
    assert (policy.text, policy.records, policy.seconds) == (canonical, records, seconds)
    assert SyncPolicy.parse(policy.text) == policy


@pytest.mark.parametrize("text", ["every-0", "every", "often", "every--5", "every-1s", "1000ms", ""])
def test_sync_policy_rejects_anything_else_naming_the_option(text):
    with pytest.raises(ConfigError, match="option --sync"):
        SyncPolicy.parse(text)


def test_sync_policy_is_due_by_records_or_by_time():
    assert SyncPolicy.parse("every-batch").due(1, 0.0) and not SyncPolicy.parse("every-batch").due(0, 9.0)
    assert not SyncPolicy.parse("every-8").due(7, 100.0) and SyncPolicy.parse("every-8").due(8, 0.0)
    assert not SyncPolicy.parse("every-500ms").due(1000, 0.499) and SyncPolicy.parse("every-500ms").due(1, 0.5)
    assert DEFAULT_SYNC == SyncPolicy.parse("every-1000ms")


@pytest.mark.parametrize("policy, expected_syncs", [("every-batch", 16), ("every-6", 3), ("every-3600000ms", 1)])
def test_records_are_fsynced_at_the_cadence_and_before_the_run_completes(synthetic_csv, tmp_path, monkeypatch,
                                                                         policy, expected_syncs):
    """16 records at batch size 1: every batch, every 6 records (at 6 and 12, then the last 4 at the end), or
    only at the end; the manifest says complete only after the last sync."""
    session = prepare(SessionConfig(models=("study-pilot",), harmbench=str(synthetic_csv), suites=("replication",),
                                    pairs=("free-vs-paid",), results_dir=str(tmp_path / "r")))
    plan = session.plans[0]
    assert len(plan.schedule) == 16 and plan.batch_size == 1
    events = []
    real_fsync, real_write_manifest = os.fsync, runs.write_manifest

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(RECORDS):  # not the manifest's own atomic write
            events.append(("fsync", os.fstat(fd).st_size))
        real_fsync(fd)

    monkeypatch.setattr(runs.os, "fsync", fsync)
    monkeypatch.setattr(runs, "write_manifest", lambda run_dir, data: (events.append(("manifest", data["status"])),
                                                                         real_write_manifest(run_dir, data))[1])
    result = execute(plan.spec, plan.schedule, session.store, provider(), session.judges,
                     sync=SyncPolicy.parse(policy))
    synced = [size for kind, size in events if kind == "fsync"]
    log_size = (result.run_dir / RECORDS).stat().st_size
    assert len(synced) == expected_syncs and synced == sorted(set(synced))
    completed_at = events.index(("manifest", "complete"))
    assert [size for kind, size in events[:completed_at] if kind == "fsync"][-1] == log_size


def previous_line(record: Record) -> bytes:
    """How a record line was encoded before to_json was written by hand (issue 11's format):
    json.dumps of the fields with dataclasses.asdict of the response, then the checksum of
    those bytes (sha256, 16 hex digits) as the last member."""
    data = {"index": record.index, "behavior_id": record.behavior_id, "framing_id": record.framing_id,
            "slot": record.slot, "position": record.position, "batch": record.batch,
            "started_at": record.started_at, "finished_at": record.finished_at,
            "response": dataclasses.asdict(record.response), "verdicts": record.verdicts}
    body = json.dumps(data, ensure_ascii=False).encode("utf-8")
    return body[:-1] + b', "checksum": "' + hashlib.sha256(body).hexdigest()[:16].encode() + b'"}\n'


@pytest.mark.parametrize("response", [
    Response(text="é \"quoted\"\nline \u2028 \U0001f600 \\ \t", reasoning="r", finish_reason="stop", prompt_tokens=3,
             output_tokens=4, latency_s=0.5, error=None),
    Response(text="", finish_reason="error", latency_s=1e-7, error="HTTP 503: überlastet"),
])
def test_record_line_is_byte_for_byte_the_previous_encoding(session, response):
    """to_json by hand (no dataclasses.asdict) writes the same bytes, so the same checksum, as
    before: logs written by either version read the same, and a complete run's records_sha256
    does not change."""
    plan = session.plans[0]
    run = execute(plan.spec, plan.schedule, session.store, provider(), session.judges)
    for stored in run.records[:3]:
        assert stored.to_line() == previous_line(stored)
    record = dataclasses.replace(run.records[0], response=response, verdicts={"refusal": "refusal", "seed": UNCLEAR})
    line = record.to_line()
    assert line == previous_line(record)
    assert list(json.loads(line)) == [f.name for f in dataclasses.fields(Record)] + ["checksum"]
    assert Record.from_json(runs.decode_line(line[:-1])) == record
    raw = (run.run_dir / RECORDS).read_bytes()
    assert raw == b"".join(previous_line(r) for r in run.records)


def test_record_timestamps_are_utc_iso_with_milliseconds(session):
    plan = session.plans[0]
    run = execute(plan.spec, plan.schedule, session.store, provider(), session.judges)
    for record in run.records[:5]:
        for stamp in (record.started_at, record.finished_at):
            parsed = datetime.datetime.fromisoformat(stamp)
            assert parsed.utcoffset() == datetime.timedelta(0)
            assert stamp == parsed.isoformat(timespec="milliseconds")
            assert abs((datetime.datetime.now(datetime.UTC) - parsed).total_seconds()) < 600
        assert record.started_at <= record.finished_at


class JudgeEngineDown:
    """A model judge whose own engine is down in the first session (its verdicts: error, as
    EngineBackedJudge gives them) and back in the next; its configuration is the same."""

    name = "model-judge"
    positive_label = "refusal"
    down = True

    def judge(self, request, response):
        if JudgeEngineDown.down:
            return Verdict("error", self.name, "judge-engine-error")
        return Verdict(create_judge("refusal").judge(request, response).label, self.name, "judged")

    def describe(self):
        return {"judge": self.name}


def test_verdicts_a_judge_failed_on_are_judged_again_in_the_next_session(synthetic_csv, tmp_path):
    """A model judge's server down for one session left its error labels in the run for good:
    a later session reused them (only --fresh, regenerating everything, got rid of them)."""
    session = prepare(SessionConfig(models=("null",), harmbench=str(synthetic_csv), suites=("pilot",),
                                    pairs=("free-vs-paid",), n=8, batch_size=4, results_dir=str(tmp_path / "r")))
    plan = session.plans[0]
    judges = [create_judge("refusal"), JudgeEngineDown()]
    JudgeEngineDown.down = True
    first = execute(plan.spec, plan.schedule, session.store, provider("null"), judges, session_id="a")
    assert {r.verdicts["model-judge"] for r in first.records} == {"error"}
    JudgeEngineDown.down = False

    def no_engine():
        raise AssertionError("the responses stand: judged again, never generated again")

    same_session = execute(plan.spec, plan.schedule, session.store, no_engine, judges, session_id="a")
    assert {r.verdicts["model-judge"] for r in same_session.records} == {"error"}  # once per session, as retries
    second = execute(plan.spec, plan.schedule, session.store, no_engine, judges, session_id="b")
    assert not second.reused and second.generated == 0
    expected = [r.verdicts["refusal"] for r in first.records]
    assert [r.verdicts["model-judge"] for r in second.records] == expected
    assert timeless(second.records)[0][4] == timeless(first.records)[0][4]  # the same response
    _, loaded = load_run(second.run_dir)  # the rewritten log matches its manifest's digest
    assert [r.verdicts["model-judge"] for r in loaded] == expected
    assert [r.started_at for r in loaded] == [r.started_at for r in first.records]


def test_a_session_judges_again_what_a_judge_failed_on_though_the_run_has_a_cached_analysis(synthetic_csv,
                                                                                              tmp_path):
    """The analysis cache served a run whose verdicts held a judge's errors, so the run was never
    executed again and its judge errors were never retried (only engine errors were)."""
    from evalkit.suites import EnginePool, materialize

    def session_of(session_id):
        config = SessionConfig(models=("null",), harmbench=str(synthetic_csv), suites=("pilot",),
                               pairs=("free-vs-paid",), n=8, batch_size=4, results_dir=str(tmp_path / "r"),
                               session_id=session_id)
        session = prepare(config)
        session.judges.append(JudgeEngineDown())
        return session

    JudgeEngineDown.down = True
    first = session_of("a")
    first_rows = materialize(first, [p.key for p in first.plans], EnginePool())
    assert not first_rows.errors
    JudgeEngineDown.down = False
    second = session_of("b")
    second_rows = materialize(second, [p.key for p in second.plans], EnginePool())
    assert not second_rows.errors
    for plan in second.plans:
        _, records = load_run(second.store.run_dir(plan.spec))
        assert "error" not in {r.verdicts["model-judge"] for r in records}


def test_a_judge_added_later_that_failed_judges_again_with_the_judges_counting_its_labels(synthetic_csv, tmp_path):
    """A judge added after generation keeps its verdicts in a verdict set: the errors it gave
    while its engine was down stayed there, and so did the vote that counted them as abstentions."""
    from evalkit.judges.vote import VoteJudge

    session = prepare(SessionConfig(models=("null",), harmbench=str(synthetic_csv), suites=("pilot",),
                                    pairs=("free-vs-paid",), n=8, batch_size=4, results_dir=str(tmp_path / "r")))
    plan = session.plans[0]
    refusal, seed = create_judge("refusal"), create_judge("seed")
    execute(plan.spec, plan.schedule, session.store, provider("null"), [refusal, seed], session_id="a")
    model_judge = JudgeEngineDown()
    added = [refusal, seed, model_judge, VoteJudge([refusal, model_judge])]
    JudgeEngineDown.down = True
    down = execute(plan.spec, plan.schedule, session.store, provider("null"), added, session_id="b")
    assert {r.verdicts["model-judge"] for r in down.records} == {"error"}
    assert {r.verdicts["vote"] for r in down.records} == {"error"}  # a member failed
    JudgeEngineDown.down = False
    back = execute(plan.spec, plan.schedule, session.store, provider("null"), added, session_id="c")
    expected = [r.verdicts["refusal"] for r in down.records]
    assert [r.verdicts["model-judge"] for r in back.records] == expected
    _, loaded = load_run(back.run_dir)
    assert [r.verdicts["model-judge"] for r in loaded] == expected
    assert [r.verdicts["vote"] for r in loaded] == expected  # both members agree now
