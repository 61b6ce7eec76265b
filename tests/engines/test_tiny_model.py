"""The tiny checkpoint the engine tests run on: built offline, deterministic, Llama-shaped."""

from __future__ import annotations

import hashlib
import json

import pytest

pytestmark = pytest.mark.vllm


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tiny_model_is_built_offline_and_deterministic_in_its_seed(tmp_path, tiny_model_dir, monkeypatch):
    from transformers import AutoConfig, AutoTokenizer

    from evalkit.testing import TinyModelSpec, build_tiny_llama

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # any hub access would now fail
    again = build_tiny_llama(tmp_path / "again")
    other = build_tiny_llama(tmp_path / "other", TinyModelSpec(seed=1))
    for name in ("model.safetensors", "tokenizer.json"):
        assert digest(again / name) == digest(tiny_model_dir / name)
        assert digest(other / name) != digest(tiny_model_dir / name)

    config = AutoConfig.from_pretrained(again)
    assert config.model_type == "llama"
    assert config.hidden_size // config.num_attention_heads >= 64  # vLLM's CPU attention minimum
    tokenizer = AutoTokenizer.from_pretrained(again)
    assert config.vocab_size == len(tokenizer) <= TinyModelSpec().vocab_size
    rendered = tokenizer.apply_chat_template([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}],
                                             add_generation_prompt=True, tokenize=False)
    assert rendered == "<s><|system|>\nS</s>\n<|user|>\nU</s>\n<|assistant|>\n"
    # Byte-level: any text round-trips, reasoning tags are single plain tokens.
    text = "Café ✓ <think>plan</think> answer"
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text
    assert len(tokenizer.encode("<think>", add_special_tokens=False)) == 1
    assert json.loads((again / "evalkit_tiny_model.json").read_text())["seed"] == 0
