"""The in-process vllm engine, for real, on vLLM's CPU backend and a tiny random Llama."""

from __future__ import annotations

import subprocess
import sys

import pytest

from evalkit.engines import EngineConfig, Response, engine_requests, split_reasoning
from evalkit.errors import ConfigError, EngineError
from evalkit.protocols import build_schedule

from .conftest import MAX_MODEL_LEN, MAX_TOKENS, engine_config, make_behaviors

pytestmark = pytest.mark.vllm


def run(engine, schedule) -> list[Response]:
    out = []
    for batch in schedule.batches():
        responses = engine.generate(engine_requests(batch))
        assert len(responses) == len(batch)
        out += responses
    return out


def expected_prompt_tokens(tokenizer, request) -> int:
    prompt = request.prompt
    if prompt.format == "raw":
        return len(tokenizer(prompt.text)["input_ids"])
    rendered = tokenizer.apply_chat_template([{"role": m.role, "content": m.content} for m in prompt.messages],
                                             add_generation_prompt=True, tokenize=False)
    return len(tokenizer(rendered, add_special_tokens=False)["input_ids"])


def assert_complete(responses, schedule, tokenizer):
    """Every response ok, in request order (prompt lengths differ per request), with counts."""
    assert len(responses) == len(schedule)
    for request, response in zip(schedule.requests, responses):
        assert response.ok, response.error
        assert response.prompt_tokens == expected_prompt_tokens(tokenizer, request), request
        assert 1 <= response.output_tokens <= MAX_TOKENS
        assert response.finish_reason in {"length", "stop"}
        assert response.finish_reason == "stop" or response.output_tokens == MAX_TOKENS
        assert response.latency_s is not None and response.latency_s >= 0
        assert "<think>" not in response.text and "</think>" not in response.text


@pytest.mark.parametrize("framing", ["raw", "chat"])
def test_pilot_like_schedule_fixed_order_batched(vllm_engine, tiny_tokenizer, behaviors, raw_pair, chat_pair,
                                                 framing):
    pair = raw_pair if framing == "raw" else chat_pair
    schedule = build_schedule(behaviors, pair, "fixed", seed=0, batch_size=4)
    assert len(schedule.batches()) == 3
    responses = run(vllm_engine, schedule)
    assert_complete(responses, schedule, tiny_tokenizer)
    # A random model still answers different prompts differently.
    assert len({r.text for r in responses}) > 1


@pytest.mark.parametrize("framing", ["raw", "chat"])
def test_replication_like_schedule_randomized_sequential(vllm_engine, tiny_tokenizer, behaviors, raw_pair,
                                                         chat_pair, framing):
    pair = raw_pair if framing == "raw" else chat_pair
    schedule = build_schedule(behaviors, pair, "randomized", seed=7, batch_size=1)
    assert len(schedule.batches()) == len(schedule)
    assert set(schedule.sequences().values()) == {"free-first", "paid-first"}
    assert_complete(run(vllm_engine, schedule), schedule, tiny_tokenizer)


@pytest.mark.parametrize("framing", ["raw", "chat"])
def test_same_schedule_twice_gives_identical_responses(vllm_engine, behaviors, raw_pair, chat_pair, framing):
    pair = raw_pair if framing == "raw" else chat_pair
    schedule = build_schedule(behaviors, pair, "randomized", seed=3, batch_size=5)
    first, second = run(vllm_engine, schedule), run(vllm_engine, schedule)
    assert [(r.text, r.output_tokens, r.finish_reason) for r in first] == \
        [(r.text, r.output_tokens, r.finish_reason) for r in second]


@pytest.mark.parametrize("framing", ["raw", "chat"])
def test_tiny_model_on_cpu_gives_same_text_batched_and_sequential(vllm_engine, raw_pair, chat_pair, framing):
    """A property of this engine on this CPU backend with this model, measured here; it is
    no promise about GPUs, where batch composition can change greedy outputs unless
    batch-invariant kernels are on."""
    pair = raw_pair if framing == "raw" else chat_pair
    many = make_behaviors(10)
    sequential = run(vllm_engine, build_schedule(many, pair, "randomized", seed=1, batch_size=1))
    batched = run(vllm_engine, build_schedule(many, pair, "randomized", seed=1, batch_size=64))
    assert [r.text for r in sequential] == [r.text for r in batched]
    assert [r.output_tokens for r in sequential] == [r.output_tokens for r in batched]


def test_prompt_too_long_is_an_error_response_and_the_batch_still_runs(vllm_engine, behaviors, raw_pair):
    from evalkit.datasets import Behavior

    too_long = Behavior("too_long", "harmful " * (2 * MAX_MODEL_LEN), "standard", "misc")
    clean = build_schedule(behaviors[:3], raw_pair, "fixed", seed=0, batch_size=64)
    mixed = build_schedule((behaviors[0], too_long, *behaviors[1:3]), raw_pair, "fixed", seed=0, batch_size=64)
    responses = vllm_engine.generate(engine_requests(mixed.requests))
    assert len(responses) == len(mixed)
    failed = [r for req, r in zip(mixed.requests, responses) if req.behavior_id == "too_long"]
    assert len(failed) == 2
    for response in failed:
        assert not response.ok and response.text == "" and response.finish_reason == "error"
        assert "prompt too long" in response.error and str(MAX_MODEL_LEN) in response.error
    # The others ran as one batch and match a run without the long prompt.
    others = [r for req, r in zip(mixed.requests, responses) if req.behavior_id != "too_long"]
    assert [r.text for r in others] == [r.text for r in vllm_engine.generate(engine_requests(clean.requests))]
    assert all(r.ok for r in others)


def test_empty_batch(vllm_engine):
    assert vllm_engine.generate(engine_requests([])) == []


def test_split_reasoning_cases():
    assert split_reasoning("<think>plan it</think>\n\nThe answer.") == ("The answer.", "plan it")
    # R1 templates open <think> in the prompt: only the closing tag is generated.
    assert split_reasoning("plan it</think> The answer.") == ("The answer.", "plan it")
    # Cut off by max tokens inside the trace: no answer.
    assert split_reasoning("<think>still planning") == ("", "still planning")
    assert split_reasoning("Just an answer.") == ("Just an answer.", "")
    assert split_reasoning("") == ("", "")


def test_engine_output_conversion_keeps_the_reasoning_trace(vllm_engine):
    """A real vLLM RequestOutput whose text carries a trace (the random model emits none by
    itself) goes through the engine's conversion: trace and answer end up apart."""
    from evalkit.engines._vllm_common import completion_payload, response_from_payload

    output = vllm_engine._generator.llm.generate(["USER REQUEST: hello\n\nASSISTANT:"],
                                                 vllm_engine._generator.sampling, use_tqdm=False)[0]
    output.outputs[0].text = "<think>The user wants a greeting.</think>\n[Start of Answer] Hello."
    response = response_from_payload(completion_payload(output, latency_s=0.5))
    assert response.reasoning == "The user wants a greeting."
    assert response.text == "[Start of Answer] Hello."
    assert response.prompt_tokens == len(output.prompt_token_ids)
    assert response.output_tokens == len(output.outputs[0].token_ids)
    assert response.latency_s == 0.5 and response.ok


def test_describe_records_the_resolved_configuration(vllm_engine, tiny_model_dir):
    described = vllm_engine.describe()
    assert described["engine"] == "vllm"
    assert described["model"] == str(tiny_model_dir)
    assert described["dtype"] == "float32" and described["dtype_requested"] == "auto"
    assert described["device"] == "cpu"
    assert described["max_model_len"] == MAX_MODEL_LEN
    assert described["max_tokens"] == MAX_TOKENS and described["temperature"] == 0.0 and described["seed"] == 0
    assert described["quantization"] == "none" and described["batch_invariant"] is False
    assert described["tensor_parallel_size"] == 1
    assert described["versions"]["vllm"] not in ("", "unavailable")
    assert not any("token" in key.lower() and "max" not in key.lower() for key in described)


GPU_ONLY = [
    ({"quantization": "bitsandbytes"}, "--quantization"),
    ({"batch_invariant": True}, "--batch-invariant"),
    ({"tensor_parallel_size": 2}, "--tensor-parallel-size"),
]


@pytest.mark.parametrize("options,flag", GPU_ONLY, ids=[f for _, f in GPU_ONLY])
def test_gpu_only_configurations_are_refused_on_cpu(tiny_model_dir, options, flag, monkeypatch):
    from evalkit.engines.vllm import GPURequiredError, VLLMEngine, gpu_available, validate

    if gpu_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.delenv("VLLM_BATCH_INVARIANT", raising=False)
    config = engine_config(tiny_model_dir, **options)
    with pytest.raises(GPURequiredError, match="requires a GPU") as info:
        validate(config)
    assert isinstance(info.value, ConfigError) and info.value.option == flag
    with pytest.raises(GPURequiredError):
        VLLMEngine(config)  # refused before vLLM builds anything
    import os
    assert os.environ.get("VLLM_BATCH_INVARIANT") is None  # never set on CPU


def test_batch_invariance_exported_in_the_environment_counts(tiny_model_dir, monkeypatch):
    from evalkit.engines.vllm import GPURequiredError, gpu_available, validate

    if gpu_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.setenv("VLLM_BATCH_INVARIANT", "1")
    with pytest.raises(GPURequiredError, match="requires a GPU"):
        validate(engine_config(tiny_model_dir))
    assert validate(engine_config(tiny_model_dir, batch_invariant="off")).batch_invariant is False


@pytest.mark.parametrize("options,flag", [({"dtype": "float8"}, "--dtype"),
                                          ({"quantization": "awq4"}, "--quantization"),
                                          ({"max_model_len": "long"}, "--max-model-len"),
                                          ({"enable_prefix_caching": "maybe"}, "--prefix-caching"),
                                          ({"tensor_parallel_size": 0}, "--tensor-parallel-size")])
def test_invalid_options_are_config_errors(tiny_model_dir, options, flag):
    from evalkit.engines.vllm import validate

    with pytest.raises(ConfigError) as info:
        validate(engine_config(tiny_model_dir, **options))
    assert info.value.option == flag


def test_unloadable_model_is_an_engine_error(tmp_path):
    from evalkit.engines.vllm import VLLMEngine

    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(EngineError, match="vLLM could not load"):
        VLLMEngine(EngineConfig(engine="vllm", model=str(tmp_path)))


def test_close_refuses_further_work_and_spares_other_engines(vllm_engine, tiny_model_dir, behaviors, raw_pair):
    """vLLM engines in one process share global state: closing one must not break another."""
    from evalkit.engines.vllm import VLLMEngine

    engine = VLLMEngine(engine_config(tiny_model_dir, enable_prefix_caching=False))
    assert engine.describe()["enable_prefix_caching"] is False
    request = build_schedule(behaviors[:1], raw_pair, "fixed", seed=0, batch_size=1).requests[0]
    [own] = engine.generate(engine_requests([request]))
    engine.close()
    engine.close()  # idempotent
    with pytest.raises(EngineError, match="closed"):
        engine.generate(engine_requests([request]))
    [other] = vllm_engine.generate(engine_requests([request]))
    assert own.ok and other.ok and own.text == other.text


def test_importing_engine_modules_loads_no_heavy_package():
    code = ("import sys, evalkit, evalkit.engines, evalkit.engines.vllm, evalkit.engines.openai, "
            "evalkit.options, evalkit.testing\n"
            "heavy = [m for m in ('vllm', 'torch', 'transformers', 'modal', 'httpx') if m in sys.modules]\n"
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_a_prompt_vllm_rejects_despite_the_precheck_is_isolated(vllm_engine, behaviors, raw_pair, monkeypatch):
    """If the length pre-check ever disagrees with vLLM, vLLM rejects the whole call; the
    engine then retries each request alone so only the bad one fails."""
    from evalkit.datasets import Behavior

    too_long = Behavior("too_long", "harmful " * (2 * MAX_MODEL_LEN), "standard", "misc")
    schedule = build_schedule((behaviors[0], too_long), raw_pair, "fixed", seed=0, batch_size=64)
    expected = vllm_engine.generate(engine_requests(schedule.requests[:2]))
    monkeypatch.setattr(vllm_engine._generator, "_too_long", lambda payload: None)
    responses = vllm_engine.generate(engine_requests(schedule.requests))
    assert [r.ok for r in responses] == [True, True, False, False]
    assert [r.text for r in responses[:2]] == [r.text for r in expected]
    assert all("vLLM rejected the request" in r.error and r.text == "" for r in responses[2:])


def test_unknown_prompt_format_is_an_error_response(vllm_engine):
    from evalkit.engines._vllm_common import response_from_payload

    payloads = vllm_engine._generator.generate([{"format": "audio", "messages": [], "text": "x"},
                                                {"format": "raw", "messages": [], "text": "USER REQUEST: hi"}])
    first, second = (response_from_payload(p) for p in payloads)
    assert not first.ok and "unknown prompt format" in first.error
    assert second.ok
