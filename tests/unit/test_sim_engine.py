import dataclasses

import pytest

from evalkit.datasets import Behavior
from evalkit.engines import Engine, EngineConfig, EngineRequest, create_engine, engine_requests
from evalkit.engines.sim import SimEngine, builtin_profiles, load_profile, parse_profile
from evalkit.errors import ConfigError
from evalkit.framings import load_framing_set
from evalkit.protocols import build_schedule

pytestmark = pytest.mark.unit
PAIR = load_framing_set("study-raw").pair("free-vs-paid")
AA = load_framing_set("study-raw").pair("aa-control")


def behaviors(n):
    return [Behavior(f"beh_{i:03d}", f"placeholder request number {i}", "standard", "illegal") for i in range(n)]


def engine(profile="study-pilot", seed=0, **overrides):
    eng = SimEngine(EngineConfig(model=profile, seed=seed))
    if overrides:
        eng.profile = dataclasses.replace(eng.profile, **overrides)
    return eng


def timeless(response):
    return dataclasses.replace(response, latency_s=None)  # latency is measured, not simulated


def run(eng, schedule):
    out = {}
    for batch in schedule.batches():
        for request, response in zip(batch, eng.generate(engine_requests(batch))):
            out[(request.behavior_id, request.slot)] = timeless(response)
    return out


def refused(response):
    return not response.text.startswith("[Start of Answer]")


def test_builtin_profiles_and_registry():
    assert {"null", "study-pilot", "training-aware", "qwen-control"} <= set(builtin_profiles())
    assert isinstance(create_engine(EngineConfig(engine="sim", model="null")), SimEngine)
    with pytest.raises(ConfigError, match="unknown sim profile 'gpt-5'"):
        SimEngine(EngineConfig(model="gpt-5"))


def test_deterministic_given_seed_and_stream():
    schedule = build_schedule(behaviors(60), PAIR, "randomized", 3, 8)
    first, second = run(engine(), schedule), run(engine(), schedule)
    assert first == second
    other_seed = run(engine(seed=1), schedule)
    assert [refused(r) for r in first.values()] != [refused(r) for r in other_seed.values()]


def test_no_engine_can_read_the_framing():
    """The engine-side request carries the prompt, an opaque id and request metadata: no
    framing id, slot, position or batch, so an engine (any engine) cannot read them."""
    assert {f.name for f in dataclasses.fields(EngineRequest)} == {"id", "prompt", "behavior_id", "semantic_category"}
    schedule = build_schedule(behaviors(10), PAIR, "fixed", 0, 4)
    [first, *_] = engine_requests(schedule.requests)
    for label in ("framing_id", "slot", "position", "batch", "index"):
        assert not hasattr(first, label)
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.slot = "free"  # frozen, and no such field to smuggle it through
    assert first.prompt == schedule.requests[0].prompt and first.behavior_id == schedule.requests[0].behavior_id


def test_the_runner_gives_engines_engine_requests_only(synthetic_csv, tmp_path):
    from evalkit.runs import execute
    from evalkit.suites import SessionConfig, prepare

    seen = []

    class Recording(SimEngine):
        def generate(self, requests):
            seen.extend(requests)
            return super().generate(requests)

    session = prepare(SessionConfig(models=("null",), harmbench=str(synthetic_csv), suites=("pilot",),
                                    pairs=("free-vs-paid",), results_dir=str(tmp_path / "r"), n=8))
    plan = session.plans[0]
    execute(plan.spec, plan.schedule, session.store, lambda: Recording(EngineConfig(model="null")), session.judges)
    assert seen and {type(r) for r in seen} == {EngineRequest}
    assert isinstance(Recording(EngineConfig(model="null")), Engine)


def test_without_artifacts_order_and_batching_do_not_matter():
    items = behaviors(80)
    outcomes = {}
    for protocol, batch_size in (("fixed", 1), ("reversed", 16), ("randomized", 7), ("blocked", 32)):
        result = run(engine("null"), build_schedule(items, PAIR, protocol, 2, batch_size))
        outcomes[(protocol, batch_size)] = {k: refused(v) for k, v in result.items()}
    assert len({tuple(sorted(v.items())) for v in outcomes.values()}) == 1


def test_state_artifact_comes_only_from_earlier_requests_in_the_batch():
    items = behaviors(200)
    eng_kwargs = dict(batch_noise=0.0, content_noise=0.0, state_shift=-3.0)
    together = run(engine(**eng_kwargs), build_schedule(items, AA, "fixed", 0, 2))  # pair shares a batch
    apart = run(engine(**eng_kwargs), build_schedule(items, AA, "blocked", 0, 2))  # pair in different batches
    second_together = sum(refused(together[(b.behavior_id, "paid")]) for b in items)
    first_together = sum(refused(together[(b.behavior_id, "free")]) for b in items)
    assert second_together < first_together  # the second, identical request is answered more permissively
    assert all(refused(apart[(b.behavior_id, "free")]) == refused(apart[(b.behavior_id, "paid")]) for b in items)


def test_session_scope_state_and_restore():
    items = behaviors(100)
    kwargs = dict(batch_noise=0.0, content_noise=0.0, state_shift=-3.0, state_scope="session")
    blocked = build_schedule(items, AA, "blocked", 0, 1)
    result = run(engine(**kwargs), blocked)
    assert sum(refused(result[(b.behavior_id, "paid")]) for b in items) < \
        sum(refused(result[(b.behavior_id, "free")]) for b in items)
    # a resumed engine that restores its state answers the rest as the uninterrupted one did
    half = len(blocked.requests) // 2
    resumed = engine(**kwargs)
    resumed.restore(engine_requests(blocked.requests[:half]))
    rest = [timeless(resumed.generate(engine_requests([r]))[0]) for r in blocked.requests[half:]]
    assert rest == [result[(r.behavior_id, r.slot)] for r in blocked.requests[half:]]
    unrestored = [timeless(engine(**kwargs).generate(engine_requests([r]))[0]) for r in blocked.requests[half:]]
    assert unrestored != rest  # without the restored state the artifact would vanish


def test_batch_noise_same_request_same_batch_same_answer_but_batching_flips_some():
    items = behaviors(300)
    kwargs = dict(state_shift=0.0, content_noise=0.0, batch_noise=0.8)
    schedule = build_schedule(items, AA, "fixed", 0, 16)  # identical prompts, co-batched
    result = run(engine(**kwargs), schedule)
    assert all(result[(b.behavior_id, "free")] == result[(b.behavior_id, "paid")] for b in items)
    sequential = run(engine(**kwargs), build_schedule(items, AA, "fixed", 0, 1))
    flipped = sum(refused(result[(b.behavior_id, "free")]) != refused(sequential[(b.behavior_id, "free")])
                  for b in items)
    assert flipped > 0


def test_errors_texts_and_reasoning():
    items = behaviors(200)
    result = run(engine(error_rate=0.1), build_schedule(items, PAIR, "fixed", 0, 4))
    errors = [r for r in result.values() if r.error]
    assert 20 <= len(errors) <= 60 and all(r.text == "" and not r.ok for r in errors)
    fine = [r for r in result.values() if r.ok]
    assert all(r.reasoning for r in fine)  # study-pilot is a reasoning profile: trace kept apart
    assert all("<think>" not in r.text for r in fine)
    compliant = [r for r in fine if not refused(r)]
    assert compliant and all("placeholder" in r.text for r in compliant)
    assert len({r.text for r in fine if refused(r)}) >= 5  # refusals in varied wording
    plain = run(engine("qwen-control"), build_schedule(items[:10], PAIR, "fixed", 0, 4))
    assert all(r.reasoning == "" for r in plain.values())


@pytest.mark.parametrize("text, fragment", [
    ("[profile]\nid = 'x'\nbase = 'high'\n", "[profile].base must be a number"),
    ("[profile]\nid = 'x'\nstate_scope = 'galaxy'\n", "state_scope must be one of"),
    ("[profile]\nid = 'x'\nerror_rate = 2\n", "error_rate must be within [0, 1]"),
    ("[profile]\nid = 'x'\nwobble = 1\n", "unknown key 'wobble'"),
    ("[nothing]\n", "missing [profile] table"),
])
def test_profile_validation_names_file_and_key(text, fragment):
    with pytest.raises(ConfigError) as info:
        parse_profile(text, "my-profile.toml")
    assert "my-profile.toml" in str(info.value) and fragment in str(info.value)


def test_profile_from_path(tmp_path):
    path = tmp_path / "slow.toml"
    path.write_text("[profile]\nid = 'slow'\nlatency_ms = 5\n")
    assert load_profile(str(path)).latency_ms == 5.0
    with pytest.raises(ConfigError, match="cannot read sim profile"):
        load_profile(str(tmp_path / "missing.toml"))
