"""The run store interrupted between two of its writes (a kill, simulated in-process at each
write step): the next run must go on from what is on disk and end exactly where an
uninterrupted run ends, never on a store that refuses to be read. And a run that waits for
another process's lock says so."""

import pathlib
import subprocess
import sys
import time

import pytest

from evalkit import runs
from evalkit.engines import EngineConfig, Response
from evalkit.engines.sim import SimEngine
from evalkit.runs import RECORDS, RunStore, execute, load_run, read_records, run_lock
from evalkit.suites import SessionConfig, prepare


class Killed(BaseException):
    """What a kill looks like from inside: nothing after it runs (no ``except Exception``)."""


def timeless(records):
    return [(r.index, r.behavior_id, r.slot, r.batch, r.response.text, r.response.error, r.verdicts)
            for r in records]


@pytest.fixture
def plan_and_session(synthetic_csv, tmp_path):
    session = prepare(SessionConfig(models=("null",), harmbench=str(synthetic_csv), suites=("pilot",),
                                    pairs=("free-vs-paid",), n=8, batch_size=4, results_dir=str(tmp_path / "r")))
    return session.plans[0], session


def sim():
    return SimEngine(EngineConfig(model="null"))


def failing_at_call(number):
    """A sim engine class whose ``number``-th generate call (from 1) fails every request of its batch."""

    class FailsOnce(SimEngine):
        calls = 0

        def generate(self, requests):
            FailsOnce.calls += 1
            responses = super().generate(requests)
            return [Response(text="", error="HTTP 503") for _ in requests] if FailsOnce.calls == number else responses

    return FailsOnce


def kill_at_write(monkeypatch, steps, number):
    """Raise ``Killed`` instead of the ``number``-th call (from 0) of any of ``steps`` (names in
    ``evalkit.runs``); returns the list of the calls made."""
    calls = []
    for name in steps:
        original = getattr(runs, name)

        def step(*args, _original=original, _name=name, **kwargs):
            if len(calls) == number:
                raise Killed(_name)
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(runs, name, step)
    return calls


@pytest.mark.parametrize("kill_before", range(4))
def test_a_retry_killed_between_its_writes_is_finished_by_the_next_run(plan_and_session, tmp_path, monkeypatch,
                                                                        kill_before):
    plan, session = plan_and_session

    class FailsSecondBatch(SimEngine):
        calls = 0

        def generate(self, requests):
            FailsSecondBatch.calls += 1
            responses = super().generate(requests)
            return [Response(text="", error="HTTP 503") for _ in requests] if FailsSecondBatch.calls == 2 \
                else responses

    execute(plan.spec, plan.schedule, session.store, lambda: FailsSecondBatch(EngineConfig(model="null")),
            session.judges, session_id="a")
    with monkeypatch.context() as patch:
        calls = kill_at_write(patch, ("write_manifest", "_rewrite_records", "_drop_verdict_sets"), kill_before)
        with pytest.raises(Killed):
            execute(plan.spec, plan.schedule, session.store, sim, session.judges, session_id="b")
    assert len(calls) == kill_before  # the kill came where it was meant to
    resumed = execute(plan.spec, plan.schedule, session.store, sim, session.judges, session_id="c")
    reference = execute(plan.spec, plan.schedule, RunStore(tmp_path / "reference"), sim, session.judges)
    assert not any(r.response.error for r in resumed.records)
    assert timeless(resumed.records) == timeless(reference.records)
    manifest, stored = load_run(resumed.run_dir)
    assert manifest["status"] == "complete" and "retrying" not in manifest
    assert timeless(stored) == timeless(reference.records)
    assert [r.index for r in read_records(resumed.run_dir / RECORDS)] == list(range(len(plan.schedule)))


@pytest.mark.parametrize("kill_before", range(2))  # the run holds two files
def test_a_fresh_killed_while_removing_the_old_run_leaves_a_store_the_next_run_uses(plan_and_session, tmp_path,
                                                                                   monkeypatch, kill_before):
    plan, session = plan_and_session
    execute(plan.spec, plan.schedule, session.store, sim, session.judges, session_id="a")
    removed = []
    unlink = pathlib.Path.unlink

    def killed_unlink(self, *args, **kwargs):
        if len(removed) == kill_before:
            raise Killed(self.name)
        removed.append(self.name)
        return unlink(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(pathlib.Path, "unlink", killed_unlink)
        with pytest.raises(Killed):
            execute(plan.spec, plan.schedule, session.store, sim, session.judges, fresh=True, session_id="b")
    following = execute(plan.spec, plan.schedule, session.store, sim, session.judges, session_id="c")
    reference = execute(plan.spec, plan.schedule, RunStore(tmp_path / "reference"), sim, session.judges)
    assert timeless(following.records) == timeless(reference.records)
    assert timeless(load_run(following.run_dir)[1]) == timeless(reference.records)
    again = execute(plan.spec, plan.schedule, session.store, sim, session.judges, fresh=True, session_id="d")
    assert timeless(again.records) == timeless(reference.records)
    assert [p.name for p in session.store.runs_dir.iterdir() if p.is_dir()] == [again.run_dir.name]


@pytest.mark.slow
def test_a_run_waiting_for_another_process_says_which_lock_and_goes_on_when_it_is_released(harmbench_csv, tmp_path):
    """A second ``evalkit run`` on a run another process holds (generating for hours, or hung)
    must say what it waits for, not sit silent; and go on once the lock is free."""
    results = tmp_path / "results"
    command = [sys.executable, "-m", "evalkit.cli", "run", "--model", "null", "--n", "6", "--harmbench",
               str(harmbench_csv), "--results-dir", str(results), "--pair", "free-vs-paid", "--protocol", "fixed"]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    run_dir = next(p for p in (results / "runs").iterdir() if p.is_dir())
    stderr = tmp_path / "stderr"
    with run_lock(run_dir):  # the other process
        with open(stderr, "wb") as err:
            waiting = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 60
        while b"waiting for" not in stderr.read_bytes() and waiting.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        said = stderr.read_bytes().decode()
        assert waiting.poll() is None, said  # it waited for the lock
    assert waiting.wait(timeout=120) == 0, stderr.read_text()
    assert f"waiting for {run_dir}" in said and f"{run_dir}.lock" in said, said
    assert len(said.strip().splitlines()) == 1  # one line, said once
    assert "(reused, 0 generated)" in stderr.read_text()


def test_a_run_resumed_in_a_session_is_not_retried_again_by_the_same_session(plan_and_session):
    """A session resumes a run a killed session left (and a request fails while it does); when the
    same session executes that run again (two aliases of one model in a models file share it),
    it must get the very same records, not retry them and compute the second row from other
    responses. The next session retries them."""
    plan, session = plan_and_session

    class KilledAtSecondBatch(SimEngine):
        calls = 0

        def generate(self, requests):
            KilledAtSecondBatch.calls += 1
            if KilledAtSecondBatch.calls == 2:
                raise Killed("the session is killed")
            return super().generate(requests)

    FailsOnce = failing_at_call(1)

    with pytest.raises(Killed):
        execute(plan.spec, plan.schedule, session.store, lambda: KilledAtSecondBatch(EngineConfig(model="null")),
                session.judges, session_id="killed")
    first_worker = execute(plan.spec, plan.schedule, session.store, lambda: FailsOnce(EngineConfig(model="null")),
                           session.judges, session_id="s")
    assert first_worker.resumed_from == 4 and sum(r.response.error is not None for r in first_worker.records) == 4

    def no_engine():
        raise AssertionError("the session already tried these requests: nothing to generate")

    second_worker = execute(plan.spec, plan.schedule, session.store, no_engine, session.judges, session_id="s")
    assert second_worker.reused
    assert timeless(second_worker.records) == timeless(first_worker.records)
    next_session = execute(plan.spec, plan.schedule, session.store, sim, session.judges, session_id="t")
    assert not any(r.response.error for r in next_session.records)  # a new session retries them


def test_a_run_retried_while_its_stored_generations_are_judged_gets_no_labels_of_replaced_responses(
        plan_and_session, monkeypatch):
    """`evalkit judges agree`/`audit` judge a stored run while a session retries its failed batch:
    the verdict set they write must label the responses the run holds afterwards, never the
    ones the retry replaced (the scorer holds the run's lock from reading to writing)."""
    import threading

    from evalkit import rejudge

    plan, session = plan_and_session
    refusal_only = [j for j in session.judges if j.name == "refusal"]  # seed is judged on the stored run

    FailsOnce = failing_at_call(2)

    first = execute(plan.spec, plan.schedule, session.store, lambda: FailsOnce(EngineConfig(model="null")),
                    refusal_only, session_id="a")
    assert sum(r.response.error is not None for r in first.records) == 4
    retry = threading.Thread(target=execute, args=(plan.spec, plan.schedule, session.store, sim, refusal_only),
                             kwargs={"session_id": "b"})
    judge_all = rejudge.judge_all

    def judge_while_a_session_retries(judge, requests, responses):
        retry.start()
        retry.join(timeout=4)  # unlocked, the retry finishes here, under the scorer's feet
        return judge_all(judge, requests, responses)

    monkeypatch.setattr(rejudge, "judge_all", judge_while_a_session_retries)
    rejudge.judge_stored_run(first.run_dir, ["seed"])
    retry.join()
    _, now = load_run(first.run_dir)
    assert not any(r.response.error for r in now)  # the retry ran
    assert not any(r.verdicts.get("seed") == "error" for r in now)  # no label of a replaced (failed) response
