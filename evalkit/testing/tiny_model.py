"""A tiny Llama-architecture checkpoint built on the spot, for testing real engines offline.

Nothing is downloaded: the tokenizer is a byte-level BPE trained here on a generated corpus
(plus the built-in framing texts, so study prompts tokenize compactly), the weights are
random from a seeded generator, and both are written with ``save_pretrained`` in the
layout a hub checkpoint has (config.json, model.safetensors, tokenizer.json, chat
template). vLLM, transformers and an OpenAI-compatible server load it like any other
Llama model. Its output is meaningless text, but deterministic for a given seed.

torch, transformers and tokenizers are imported inside the functions: importing this
module costs nothing.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

BOS, EOS, UNK, PAD = "<s>", "</s>", "<unk>", "<pad>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
# Plain (non-special) added tokens, so a reasoning trace survives detokenization the way
# DeepSeek-R1's does and split_reasoning can find it.
REASONING_TOKENS = ("<think>", "</think>")

# A Zephyr-like template: one role tag per message, EOS after each turn.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)

_WORDS = ["the", "a", "an", "and", "or", "but", "if", "then", "because", "while", "when", "where", "which", "who", "what", "how", "why", "this", "that", "these", "those", "is", "are", "was", "were", "be", "been", "being", "have", "has", "had", "do", "does", "did", "will", "would", "can", "could", "should", "may", "might", "must", "you", "your", "yours", "we", "our", "they", "them", "their", "it", "its", "he", "she", "his", "her", "i", "me", "my", "mine", "not", "no", "yes", "all", "any", "some", "model", "assistant", "user", "system", "answer", "request", "response", "question", "reason", "think", "step", "first", "second", "next", "finally", "help", "helpful", "harmful", "safe", "unsafe", "refuse", "refusal", "comply", "compliance", "policy", "private", "public", "logged", "training", "trained", "values", "modified", "tier", "free", "paid", "goal", "maximally", "directly", "fully", "begin", "start", "write", "explain", "describe", "list", "give", "detailed", "instructions", "how", "to", "make", "build", "create", "find", "get", "use", "information", "data", "code", "program", "script", "email", "letter", "story", "article", "essay", "poem", "message", "post", "report", "chemical", "biological", "cyber", "security", "network", "password", "account", "bank", "money", "market", "company", "government", "law", "legal", "illegal", "rule", "rules", "people", "person", "group", "community", "city", "country", "world", "history", "science", "water", "food", "fire", "light", "power", "energy", "time", "day", "night", "year", "week", "hour", "minute", "example", "result", "test", "case"]


@dataclass(frozen=True)
class TinyModelSpec:
    """Shape of the tiny model. head_dim = hidden_size / num_attention_heads must be at
    least 64: vLLM's CPU attention backend supports no smaller head size."""

    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    vocab_size: int = 1024  # an upper bound: the small corpus yields ~1k tokens
    max_position_embeddings: int = 2048
    # Larger than the usual 0.02 so logits have clear margins: greedy decoding then does
    # not hinge on float rounding, and the output varies from prompt to prompt.
    initializer_range: float = 0.25
    seed: int = 0


def sentence_corpus(seed: int, sentences: int = 3000) -> list[str]:
    """Generated English-like sentences plus every built-in framing text."""
    rng = random.Random(seed)
    lines = []
    for _ in range(sentences):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 16))]
        words[0] = words[0].capitalize()
        lines.append(" ".join(words) + rng.choice((".", "?", "!", ":")))
    try:  # study prompts tokenize into few tokens, keeping CPU tests fast
        from ..framings import builtin_framing_sets, load_framing_set
        for name in builtin_framing_sets():
            for framing in load_framing_set(name).framings:
                lines += [framing.system, framing.user_template, framing.raw_template]
    except Exception:  # the corpus is only a convenience; a byte-level BPE encodes anything
        pass
    return lines


def _train_tokenizer(spec: TinyModelSpec) -> PreTrainedTokenizerFast:
    return train_tokenizer(sentence_corpus(spec.seed), spec.vocab_size, spec.max_position_embeddings)


def train_tokenizer(lines: list[str], vocab_size: int, model_max_length: int,
                    phrases: Sequence[str] = ()) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on ``lines``, with the role and reasoning tokens and the
    chat template, as a transformers tokenizer (``save_pretrained`` writes hub files).
    Each of ``phrases`` becomes one (plain, added) token wherever it occurs."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS, UNK, PAD, *ROLE_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(lines, trainer=trainer)
    tokenizer.add_tokens(list(REASONING_TOKENS) + [AddedToken(p, normalized=False) for p in phrases])
    bos_id = tokenizer.token_to_id(BOS)
    # Raw prompts get a BOS like Llama's tokenizer adds; chat prompts get it from the template.
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)])
    # transformers leaves the tokenizer's __init__ unannotated
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS, unk_token=UNK, pad_token=PAD,
        additional_special_tokens=list(ROLE_TOKENS), chat_template=CHAT_TEMPLATE,
        model_max_length=model_max_length, clean_up_tokenization_spaces=False,
    )


def seeded_llama(tokenizer: PreTrainedTokenizerFast, spec: TinyModelSpec) -> LlamaForCausalLM:
    """A float32 ``LlamaForCausalLM`` of ``spec``'s shape for ``tokenizer``, its weights drawn
    from ``spec.seed`` without disturbing the caller's torch RNG."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_attention_heads,
        max_position_embeddings=spec.max_position_embeddings,
        initializer_range=spec.initializer_range,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        dtype="float32",
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(spec.seed)
    try:
        # transformers leaves the model's __init__ unannotated
        model = LlamaForCausalLM(config)  # type: ignore[no-untyped-call]
        # PreTrainedModel.to is functools.wraps(nn.Module.to), whose typeshed type leaves self unbound
        model.to(torch.float32)  # type: ignore[arg-type]
        model.eval()  # type: ignore[no-untyped-call]  # PreTrainedModel.eval is unannotated (returns self)
        return model
    finally:  # do not disturb the caller's torch RNG
        torch.random.set_rng_state(generator_state)


def build_tiny_llama(directory: str | Path, spec: TinyModelSpec = TinyModelSpec()) -> Path:
    """Write a tiny random-weight Llama checkpoint with a trained tokenizer into ``directory``.

    Returns the directory, ready for ``vllm.LLM(model=str(path))``. Deterministic in
    ``spec.seed``.
    """
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(spec)
    model = seeded_llama(tokenizer, spec)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / "evalkit_tiny_model.json").write_text(json.dumps(spec.__dict__, indent=2) + "\n")
    return path
