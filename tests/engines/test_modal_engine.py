"""The modal engine. The Modal class runs here through ``.local()`` (its enter hook builds
a real vLLM engine on this CPU); nothing reaches Modal's servers."""

from __future__ import annotations

import dataclasses
import json

import pytest

from evalkit.engines import engine_requests
from evalkit.protocols import build_schedule

from .conftest import engine_config

# Modal warns that a .local() run cannot see the class's remote volume: expected here.
pytestmark = [pytest.mark.vllm, pytest.mark.modal,
              pytest.mark.filterwarnings("ignore:.*executing locally.*:UserWarning")]
modal = pytest.importorskip("modal")

MODAL_ENV = ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "MODAL_CONFIG_PATH", "MODAL_PROFILE")


@pytest.fixture
def no_modal_credentials(monkeypatch, tmp_path):
    for name in MODAL_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.modal.toml
    return tmp_path


@pytest.fixture(scope="module")
def local_server(tiny_model_dir):
    """The Modal class, instantiated here; its methods run in this process via ``.local()``."""
    from evalkit.engines._vllm_common import VLLMSettings
    from evalkit.engines.modal import VLLMServer

    settings = VLLMSettings.from_config(engine_config(tiny_model_dir))
    server = VLLMServer(model=str(tiny_model_dir), config=settings.to_json())
    yield server
    server.shutdown.local()


def test_server_class_runs_locally_and_matches_the_in_process_engine(local_server, vllm_engine, behaviors,
                                                                     raw_pair, chat_pair):
    from evalkit.engines._vllm_common import request_payload, response_from_payload

    for pair in (raw_pair, chat_pair):
        for batch in build_schedule(behaviors, pair, "randomized", seed=5, batch_size=4).batches():
            # The payload crosses the wire as JSON-able data: lists of dicts only.
            payload = json.loads(json.dumps([request_payload(r) for r in batch]))
            answers = json.loads(json.dumps(local_server.generate_batch.local(payload)))
            remote = [response_from_payload(p) for p in answers]
            local = vllm_engine.generate(engine_requests(batch))
            assert all(r.ok for r in remote), [r.error for r in remote]
            assert [(r.text, r.prompt_tokens, r.output_tokens, r.finish_reason) for r in remote] == \
                [(r.text, r.prompt_tokens, r.output_tokens, r.finish_reason) for r in local]


@pytest.fixture
def fake_modal_token(monkeypatch):
    # Constructing the engine against a deployed app name is lazy: no network until a call.
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-evalkit-test")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-evalkit-test")


def test_modal_engine_sends_each_batch_to_the_server_class(fake_modal_token, local_server, vllm_engine,
                                                          tiny_model_dir, behaviors, chat_pair):
    """ModalEngine's client side, with the remote call routed to the same class run locally."""
    from types import SimpleNamespace

    from evalkit.engines.modal import ModalEngine

    engine = ModalEngine(engine_config(tiny_model_dir, modal_app="evalkit-test"))
    engine._server = SimpleNamespace(generate_batch=SimpleNamespace(remote=local_server.generate_batch.local))
    batch = build_schedule(behaviors, chat_pair, "fixed", seed=0, batch_size=64).requests
    got, expected = engine.generate(engine_requests(batch)), vllm_engine.generate(engine_requests(batch))
    engine.close()
    assert all(r.ok for r in got)
    assert [dataclasses.replace(r, latency_s=None) for r in got] == \
        [dataclasses.replace(r, latency_s=None) for r in expected]


def test_a_failed_remote_call_becomes_error_responses(fake_modal_token, tiny_model_dir, behaviors, raw_pair):
    from types import SimpleNamespace

    from evalkit.engines.modal import ModalEngine

    def unreachable(payloads):
        raise ConnectionError("modal.com unreachable")

    engine = ModalEngine(engine_config(tiny_model_dir, modal_app="evalkit-test"))
    engine._server = SimpleNamespace(generate_batch=SimpleNamespace(remote=unreachable))
    batch = build_schedule(behaviors[:2], raw_pair, "fixed", seed=0, batch_size=4).requests
    responses = engine.generate(engine_requests(batch))
    assert len(responses) == 4
    assert all(not r.ok and r.text == "" and "Modal call failed: ConnectionError" in r.error for r in responses)


def test_describe_names_the_gpu_app_and_secret_but_holds_no_token(fake_modal_token, tiny_model_dir):
    from evalkit.engines.modal import ModalEngine

    engine = ModalEngine(engine_config(tiny_model_dir, modal_app="evalkit-prod", hf_secret="huggingface",
                                       tensor_parallel_size=2, quantization="bitsandbytes"))
    described = engine.describe()
    engine.close()
    assert (described["engine"], described["gpu"], described["modal_app"]) == ("modal", "H100:2", "evalkit-prod")
    assert described["hf_secret"] == "huggingface" and described["quantization"] == "bitsandbytes"
    assert described["vllm"] == "0.32.0"
    assert "evalkit-test" not in json.dumps(described)  # the token values


def test_server_enter_hook_builds_the_engine_from_the_settings(tiny_model_dir, monkeypatch):
    """The enter hook runs once, before the first method, with the JSON settings applied."""
    from evalkit.engines import _vllm_common
    from evalkit.engines._vllm_common import VLLMSettings
    from evalkit.engines.modal import VLLMServer

    builds = []
    real_init = _vllm_common.BatchGenerator.__init__

    def counting_init(self, *args, **kwargs):
        builds.append(1)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(_vllm_common.BatchGenerator, "__init__", counting_init)

    settings = VLLMSettings.from_config(engine_config(tiny_model_dir, max_model_len=128))
    server = VLLMServer(model=str(tiny_model_dir), config=settings.to_json())
    long_prompt = {"format": "raw", "messages": [], "text": "harmful " * 200}
    try:
        [response] = server.generate_batch.local([long_prompt])
        [again] = server.generate_batch.local([long_prompt])
        assert len(builds) == 1  # entered once: no second engine build
    finally:
        server.shutdown.local()
    # max_model_len=128 reached the engine built by the hook.
    assert response["error"] and "limit is 128" in response["error"]
    assert again == {**response, "latency_s": again["latency_s"]}


def test_settings_survive_the_json_round_trip(tiny_model_dir):
    from evalkit.engines._vllm_common import VLLMSettings

    settings = VLLMSettings.from_config(engine_config(tiny_model_dir, dtype="bfloat16", quantization="bitsandbytes",
                                                      enable_prefix_caching="off", batch_invariant=True,
                                                      tensor_parallel_size=2, revision="abc123"))
    assert VLLMSettings.from_json(settings.to_json()) == settings
    assert settings.enable_prefix_caching is False and settings.tensor_parallel_size == 2


def test_the_app_defines_a_gpu_server_class():
    from evalkit.engines import modal as modal_engine

    assert modal_engine.app.name == "evalkit"
    assert isinstance(modal_engine.VLLMServer, modal.Cls)
    assert modal_engine.GPU == "H100"


def test_modal_engine_without_credentials_fails_fast_and_clearly(no_modal_credentials, tiny_model_dir, monkeypatch):
    from evalkit.engines import EngineConfig, create_engine
    from evalkit.engines import modal as modal_engine
    from evalkit.errors import UnavailableHere

    def no_remote_call(*args, **kwargs):  # fast means: refused before anything talks to Modal
        raise AssertionError("a Modal call was made without credentials")

    monkeypatch.setattr(modal_engine.app, "run", no_remote_call)
    monkeypatch.setattr(modal_engine.modal.Cls, "from_name", no_remote_call)
    with pytest.raises(UnavailableHere, match=r"Modal credentials not found: run `modal token new`"):
        create_engine(EngineConfig(engine="modal", model=str(tiny_model_dir)))
    with pytest.raises(UnavailableHere, match="Modal credentials not found"):
        create_engine(EngineConfig(engine="modal", model=str(tiny_model_dir), options={"modal_app": "evalkit"}))


def test_credentials_are_found_in_the_environment_or_the_modal_config(no_modal_credentials, monkeypatch):
    from evalkit.engines.modal import modal_credentials_present

    assert not modal_credentials_present()
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-test")
    assert not modal_credentials_present()  # half a token is no token
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-test")
    assert modal_credentials_present()
    monkeypatch.delenv("MODAL_TOKEN_ID")
    monkeypatch.delenv("MODAL_TOKEN_SECRET")
    config = no_modal_credentials / ".modal.toml"
    config.write_text('[default]\ntoken_id = "ak-test"\n')
    assert not modal_credentials_present()
    config.write_text('[default]\ntoken_id = "ak-test"\ntoken_secret = "as-test"\nactive = true\n')
    assert modal_credentials_present()
    monkeypatch.setenv("MODAL_PROFILE", "work")  # a named profile must be the one with the token
    assert not modal_credentials_present()
    config.write_text("not = [valid toml")
    monkeypatch.delenv("MODAL_PROFILE")
    assert not modal_credentials_present()
