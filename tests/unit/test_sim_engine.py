import dataclasses

import numpy as np
import pytest

from evalkit.datasets import Behavior
from evalkit.engines import Engine, EngineConfig, EngineRequest, create_engine, engine_requests, sim
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


# ---------------------------------------------------------------- one request at a time = the vectorized model


def test_splitmix64_matches_the_reference_generator():
    """Vigna's splitmix64.c seeded with 0 outputs e220a8397b1dcdaf, 6e789e6aa1b965f4, 06c45d188009454f
    (each call adds the golden gamma to the state, then mixes): both implementations reproduce them."""
    gamma = 0x9E3779B97F4A7C15
    expected = [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]
    states = [(k * gamma) & 0xFFFFFFFFFFFFFFFF for k in range(3)]
    assert [sim.splitmix64_int(s) for s in states] == expected
    assert [int(v) for v in sim.splitmix64(np.array(states, dtype=np.uint64))] == expected


def test_scalar_arithmetic_is_bit_identical_to_the_vectorized_arithmetic():
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 2**64 - 1, size=2000, dtype=np.uint64, endpoint=True)
    ints = [int(k) for k in keys]
    assert [sim.mix_int(7, sim.TAG_TEXT, k, 3) for k in ints] == [int(v) for v in sim.mix(7, sim.TAG_TEXT, keys, 3)]
    assert [sim.uniform_int(k) for k in ints] == sim.to_uniform(keys).tolist()
    assert [sim.normal_int(k) for k in ints] == sim.to_normal(keys).tolist()
    starts = np.array([0, 5, 16])
    digests = [int(d) for d in sim.batch_digests(keys[:20], starts)]
    assert digests == [sum(sim.splitmix64_int(k) for k in ints[a:b]) & 0xFFFFFFFFFFFFFFFF
                       for a, b in ((0, 5), (5, 16), (16, 20))]
    # a multiset: the same requests in another order within the batch give the same digest
    assert int(sim.batch_digests(keys[:5][::-1], starts[:1])[0]) == digests[0]


@pytest.mark.parametrize("profile_name", ["null", "study-pilot", "training-aware", "qwen-control"])
def test_engine_logits_equal_the_vectorized_logits_request_by_request(profile_name):
    """Every term on (framing, state, content and batch noise, category offsets), at batch sizes 1 and 8:
    the engine's per-request arithmetic gives exactly the log-odds `evalkit simulate` computes."""
    profile = dataclasses.replace(load_profile(profile_name), framing_shift=0.3, state_shift=-0.7,
                                  content_noise=0.2, batch_noise=0.6, category_offsets={"illegal": 0.25})
    rng = np.random.default_rng(1)
    n = 3000
    behavior_keys = rng.integers(0, 2**64 - 1, size=n, dtype=np.uint64, endpoint=True)
    prompt_keys = rng.integers(0, 2**64 - 1, size=n, dtype=np.uint64, endpoint=True)
    batch_keys = rng.integers(0, 2**64 - 1, size=n, dtype=np.uint64, endpoint=True)
    offsets = np.where(rng.random(n) < 0.5, 0.25, 0.0)
    private, seen = rng.random(n) < 0.5, rng.random(n) < 0.3
    sizes = np.where(rng.random(n) < 0.5, 1, 8)
    for seed in (0, 11, 2**40 + 3):
        vectorized = sim.refusal_logits(profile, seed, behavior_keys, offsets, private, seen, prompt_keys,
                                        batch_keys, sizes)
        scalar = [sim.refusal_logit(profile, seed, int(behavior_keys[i]), float(offsets[i]), bool(private[i]),
                                    bool(seen[i]), int(prompt_keys[i]), int(batch_keys[i]), int(sizes[i]))
                  for i in range(n)]
        assert scalar == vectorized.tolist()


def test_one_request_takes_the_scalar_path_and_a_batch_one_vectorized_call(monkeypatch):
    """Issue 15's fast path: a batch of one request never pays numpy's per-call overhead (the
    benchmark measures the cost, benchmarks/simulate_speed.py); a batch asks the core once."""
    items = behaviors(16)
    calls = {"decide": 0, "decide_one": 0}
    for name in calls:
        real = getattr(sim.SimCore, name)

        def counting(self, *args, _real=real, _name=name):
            calls[_name] += 1
            return _real(self, *args)

        monkeypatch.setattr(sim.SimCore, name, counting)
    run(engine(), build_schedule(items, PAIR, "fixed", 0, 1))
    assert calls == {"decide": 0, "decide_one": 32}
    run(engine(), build_schedule(items, PAIR, "fixed", 0, 8))
    assert calls == {"decide": 4, "decide_one": 32}


@pytest.mark.parametrize("profile_name", ["study-pilot", "training-aware", "qwen-control", "null"])
def test_decide_one_is_decide_on_a_batch_of_one(profile_name):
    profile = dataclasses.replace(load_profile(profile_name), framing_shift=0.3, state_shift=-0.7,
                                  content_noise=0.2, batch_noise=0.6, error_rate=0.2)
    rng = np.random.default_rng(2)
    for seed in (0, 9, 2**50 + 1):
        core = sim.SimCore(profile, seed)
        for _ in range(300):
            behavior_key, prompt_key = (int(k) for k in rng.integers(0, 2**64 - 1, size=2, dtype=np.uint64,
                                                                      endpoint=True))
            offset, private, seen = float(rng.choice([0.0, 0.25])), bool(rng.random() < 0.5), bool(rng.random() < 0.3)
            failed, refused = core.decide(np.array([behavior_key], dtype=np.uint64), np.array([offset]),
                                          np.array([private]), [seen], np.array([prompt_key], dtype=np.uint64),
                                          np.zeros(1, dtype=np.intp))
            one = core.decide_one(behavior_key, offset, private, seen, prompt_key)
            assert one[0] == bool(failed[0]) and (one[0] or one[1] == bool(refused[0]))


@pytest.mark.parametrize("profile, protocol, batch_size, pair", [
    ("study-pilot", "fixed", 16, PAIR),
    ("study-pilot", "randomized", 1, PAIR),
    ("study-pilot", "randomized", 7, AA),
    ("training-aware", "balanced", 4, PAIR),
    ("study-pilot", "blocked", 32, PAIR),
    ("qwen-control", "reversed", 8, PAIR),
])
def test_engine_renders_the_decisions_of_the_core_on_the_whole_schedule(profile, protocol, batch_size, pair):
    """The engine is a wrapper over the core that `evalkit simulate` asks about whole schedules: asked one
    batch per call (the scalar path at batch size 1), with its session state, it fails, refuses and complies
    exactly where the core, asked once about the whole schedule, says so. Errors, state in either scope and
    batch noise are on, so every input of the core matters."""
    items = [Behavior(f"beh_{i:03d}", f"placeholder request number {i}", "standard",
                      ("illegal", "cybercrime_intrusion")[i % 2]) for i in range(90)]
    for state_scope in ("batch", "session"):
        eng = engine(profile, seed=4, error_rate=0.1, batch_noise=0.8, state_shift=-1.5, state_scope=state_scope,
                     category_offsets={"illegal": 0.4})
        schedule = build_schedule(items, pair, protocol, 4, batch_size)
        responses = [r for batch in schedule.batches() for r in eng.generate(engine_requests(batch))]
        requests = schedule.requests
        texts = [r.prompt.flat() for r in requests]
        core = sim.SimCore(eng.profile, 4)
        seen = sim.seen_before([r.behavior_id for r in requests], [r.batch for r in requests],
                               state_scope == "session", set())
        starts = np.array([i for i, r in enumerate(requests) if i == 0 or requests[i - 1].batch != r.batch])
        failed, refused = core.decide(np.array([sim.key64(r.behavior_id) for r in requests], dtype=np.uint64),
                                      np.array([0.4 if i % 2 == 0 else 0.0 for i in
                                                (int(r.behavior_id[4:]) for r in requests)]),
                                      np.array([sim.is_private(eng.profile, t) for t in texts]), seen,
                                      np.array([sim.key64(t) for t in texts], dtype=np.uint64), starts)
        assert [r.error is not None for r in responses] == failed.tolist()
        assert [r.text in sim.REFUSALS for r in responses] == (refused & ~failed).tolist()
        assert 0 < failed.sum() < len(requests) and 0 < refused.sum() < len(requests)
        assert any(seen) or state_scope == "batch"  # a session always sees the pair's first request


def test_engine_answers_exactly_what_the_vectorized_engine_answered():
    """Every field of every response (text, trace, errors, token counts) for four profiles,
    raw and chat framings, batch sizes 1 and 8, with errors, content and batch noise on:
    the digest is the one the vectorized engine (main before the per-request arithmetic)
    gave for the same inputs, so stored runs and snapshots do not change."""
    import hashlib

    categories = ("illegal", "chemical_biological", "cybercrime_intrusion")
    items = [Behavior(f"beh_{i:03d}", f"placeholder request number {i}", "standard", categories[i % 3])
             for i in range(60)]
    digest = hashlib.sha256()
    for profile in ("study-pilot", "training-aware", "qwen-control", "null"):
        for framings in ("study-raw", "study-chat"):
            for batch_size in (1, 8):
                eng = engine(profile, seed=3, error_rate=0.1, batch_noise=0.5, content_noise=0.3)
                schedule = build_schedule(items, load_framing_set(framings).pair("free-vs-paid"), "randomized", 3,
                                          batch_size)
                for batch in schedule.batches():
                    for r in eng.generate(engine_requests(batch)):
                        digest.update(repr((r.text, r.reasoning, r.finish_reason, r.error, r.prompt_tokens,
                                            r.output_tokens)).encode())
    assert digest.hexdigest() == "f71281140eb1aed7c0fc249ac34075de742765cdb6bcd1485467f664708d5bed"
