"""A run's identity covers the exact weights, computed without loading an engine."""

import pytest

from evalkit.engines import EngineConfig
from evalkit.engines.vllm import VLLMEngine, model_fingerprint

pytestmark = pytest.mark.unit


def test_local_checkpoint_fingerprint_changes_with_the_files(tmp_path):
    (tmp_path / "config.json").write_text('{"hidden_size": 128}')
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 4096)
    first = model_fingerprint(str(tmp_path), None)
    assert first == model_fingerprint(str(tmp_path), None)
    (tmp_path / "model.safetensors").write_bytes(b"\x01" + b"\x00" * 4095)
    assert model_fingerprint(str(tmp_path), None) != first
    identity = VLLMEngine.identity(EngineConfig(engine="vllm", model=str(tmp_path)))
    assert identity["weights"]["local_sha256"] and identity["vllm_version"]


def test_hub_revision_resolved_from_the_local_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    refs = tmp_path / "models--org--model" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text("a" * 40 + "\n")
    assert model_fingerprint("org/model", None) == {"hub_commit": "a" * 40}
    assert model_fingerprint("org/other", None)["hub_commit"] is None
    assert model_fingerprint("org/other", "b" * 40) == {"hub_commit": "b" * 40}
