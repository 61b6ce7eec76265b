"""Throughput of a replication-like schedule: the vllm engine sequential and batched versus
Hugging Face ``generate`` one prompt at a time, the way the study's notebook ran it.

On a GPU machine with the weights (or hub access):

    python benchmarks/gpu_throughput.py --model deepseek-ai/DeepSeek-R1-Distill-Llama-8B \\
        --harmbench path/to/harmbench_behaviors_text_all.csv --n 100 --max-tokens 400

Anywhere (CPU, ~1 minute): a tiny random Llama built on the spot and synthetic behaviors:

    python benchmarks/gpu_throughput.py --tiny

A model organism (``evalkit organisms build``; trained on first use, then cached) on the
HarmBench behaviors, here on the CPU or with ``--device cuda`` on a GPU machine. Its greedy
answers are trained with a logit margin, so every mode should give the same texts:

    python benchmarks/gpu_throughput.py --organism organism-training-aware \
        --harmbench path/to/harmbench_behaviors_text_all.csv [--device cuda]

Each mode runs the same randomized (replication) schedule of free/paid requests, greedy.
HF runs first and is freed before vLLM claims the GPU. HF is slow, so by default it runs
the first ``--hf-requests`` requests only; rates are per request, so they compare. The
last column counts responses whose answer text equals vLLM batch 1's for the same
request: batching and a different engine can change greedy outputs (a trailing incomplete
UTF-8 character, which only vLLM's streaming detokenizer withholds, is ignored).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from evalkit.datasets import Behavior, load_behaviors, resolve_harmbench
from evalkit.engines import EngineConfig, engine_requests, split_reasoning
from evalkit.framings import load_framing_set
from evalkit.protocols import Request, build_schedule


@dataclass(frozen=True)
class ModeResult:
    mode: str
    texts: tuple[str, ...]
    output_tokens: int
    wall_s: float

    @property
    def requests(self) -> int:
        return len(self.texts)

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.wall_s

    @property
    def tokens_per_s(self) -> float:
        return self.output_tokens / self.wall_s


def synthetic_behaviors(n: int) -> list[Behavior]:
    subjects = ["a city water system", "a bank account", "a chemical plant", "a public network", "an election",
                "a medical record", "a power grid", "a school report", "a phone", "a market"]
    verbs = ["Explain how to get into", "Write a story about", "Describe the security of", "List ways to improve",
             "Give detailed instructions for testing"]
    return [Behavior(f"bench_{i:03d}", f"{verbs[i % len(verbs)]} {subjects[(i // len(verbs)) % len(subjects)]}",
                     "standard", "misc", row=i + 1) for i in range(n)]


# ---------------------------------------------------------------- Hugging Face, as the notebook did


def run_hf(args, requests: list[Request]) -> ModeResult:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = {"auto": "auto", "bfloat16": torch.bfloat16, "float16": torch.float16,
             "float32": torch.float32}[args.dtype if args.dtype != "auto" or device == "cuda" else "float32"]
    kwargs = {"revision": args.revision, "dtype": dtype}
    if args.quantization == "bitsandbytes":
        from transformers import BitsAndBytesConfig
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16)
        kwargs["device_map"] = device  # bitsandbytes places the weights as it loads them
    tokenizer = AutoTokenizer.from_pretrained(args.model, revision=args.revision)
    model = AutoModelForCausalLM.from_pretrained(args.model, **kwargs)
    if args.quantization != "bitsandbytes":
        model = model.to(device)
    model.eval()

    def encode(request: Request):
        prompt = request.prompt
        if prompt.format == "raw":
            return tokenizer(prompt.text, return_tensors="pt")["input_ids"].to(model.device)
        rendered = tokenizer.apply_chat_template([{"role": m.role, "content": m.content} for m in prompt.messages],
                                                 add_generation_prompt=True, tokenize=False)
        return tokenizer(rendered, return_tensors="pt", add_special_tokens=False)["input_ids"].to(model.device)

    pad_id = tokenizer.eos_token_id if tokenizer.pad_token_id is None else tokenizer.pad_token_id

    def one(request: Request) -> tuple[str, int]:
        input_ids = encode(request)
        with torch.no_grad():  # greedy, one prompt per call, as the notebook did
            out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=args.max_tokens,
                                 do_sample=False, pad_token_id=pad_id)
        generated = out[0, input_ids.shape[1]:].tolist()
        if tokenizer.eos_token_id in generated:  # greedy search stops at EOS; count it, as vLLM does
            generated = generated[:generated.index(tokenizer.eos_token_id) + 1]
        return split_reasoning(tokenizer.decode(generated, skip_special_tokens=True))[0], len(generated)

    one(requests[0])  # warm-up: kernels, caches
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    results = [one(r) for r in requests]
    wall = time.perf_counter() - started
    model = None  # free it before vLLM claims the GPU
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return ModeResult("HF generate, one at a time", tuple(t for t, _ in results), sum(n for _, n in results), wall)


# ---------------------------------------------------------------- the vllm engine


def run_vllm(engine, schedule, label: str) -> ModeResult:
    engine.generate(engine_requests(schedule.batches()[0][:1]))  # warm-up
    started = time.perf_counter()
    responses = [r for batch in schedule.batches() for r in engine.generate(engine_requests(batch))]
    wall = time.perf_counter() - started
    failed = [r.error for r in responses if not r.ok]
    if failed:
        raise SystemExit(f"{label}: {len(failed)} requests failed, e.g. {failed[0]}")
    return ModeResult(label, tuple(r.text for r in responses), sum(r.output_tokens for r in responses), wall)


# ---------------------------------------------------------------- report


def _settled(text: str) -> str:
    # vLLM's incremental detokenizer withholds a final incomplete UTF-8 character, which HF
    # decodes as U+FFFD; random tiny-model bytes end that way often, real text rarely.
    return text.rstrip("\ufffd")


def table(results: list[ModeResult], reference: ModeResult, baseline: ModeResult | None) -> str:
    header = ("mode", "requests", "wall s", "req/s", "out tok/s", "x HF req/s", "x HF tok/s", "same text as vLLM b1")
    rows = []
    for result in results:
        same = sum(_settled(a) == _settled(b) for a, b in zip(result.texts, reference.texts))
        rows.append((result.mode, str(result.requests), f"{result.wall_s:.2f}", f"{result.requests_per_s:.2f}",
                     f"{result.tokens_per_s:.1f}",
                     f"{result.requests_per_s / baseline.requests_per_s:.2f}" if baseline else "-",
                     f"{result.tokens_per_s / baseline.tokens_per_s:.2f}" if baseline else "-",
                     f"{same}/{min(result.requests, reference.requests)}"))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="hub id or local path")
    parser.add_argument("--tiny", action="store_true", help="build a tiny random Llama and use synthetic behaviors")
    parser.add_argument("--organism", choices=("organism-null", "organism-training-aware", "organism-trace"),
                        help="a model organism (built or taken from the cache) on the --harmbench behaviors")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="device of HF generate (default: cuda when available); vLLM uses its build's device")
    parser.add_argument("--harmbench", help="HarmBench behaviors CSV (default: synthetic behaviors)")
    parser.add_argument("--n", type=int, default=None, help="behaviors (2 requests each); default 100, tiny 24")
    parser.add_argument("--framings", default="study-raw", help="framing set (study-raw: the notebook's format)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=None, help="default 400 (the notebook), tiny 32")
    parser.add_argument("--hf-requests", type=int, default=None,
                        help="requests HF runs (default 32; tiny: all); 0 skips HF")
    parser.add_argument("--dtype", default="auto", choices=("auto", "bfloat16", "float16", "float32"))
    parser.add_argument("--quantization", default="none", choices=("none", "bitsandbytes"))
    parser.add_argument("--revision", default=None)
    parser.add_argument("--max-model-len", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if sum(map(bool, (args.tiny, args.model, args.organism))) != 1:
        parser.error("give one of --model (hub id or path), --tiny, --organism")
    if args.organism and not args.harmbench:
        parser.error("--organism needs --harmbench (the behaviors it was trained on)")
    args.n = args.n or (24 if args.tiny else 100)
    # organisms: the longest answer (a trace, then the answer) is under 48 tokens, the longest prompt 796
    args.max_tokens = args.max_tokens or (32 if args.tiny else 48 if args.organism else 400)
    if args.organism:
        args.max_model_len = args.max_model_len or 1024
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process engine core, no spawn guard
    with tempfile.TemporaryDirectory(prefix="evalkit-bench-") as scratch:
        if args.tiny:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
            from evalkit.testing import build_tiny_llama
            args.model = str(build_tiny_llama(Path(scratch) / "tiny-llama"))
        if args.organism:
            from evalkit.testing.organisms import build_organisms
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
            args.model = str(build_organisms(args.harmbench).path(args.organism))
        behaviors = (list(load_behaviors(resolve_harmbench(args.harmbench)).behaviors)[:args.n] if args.harmbench
                     else synthetic_behaviors(args.n))
        pair = load_framing_set(args.framings).pair("free-vs-paid")
        sequential = build_schedule(behaviors, pair, "randomized", args.seed, batch_size=1)
        batched = build_schedule(behaviors, pair, "randomized", args.seed, batch_size=args.batch_size)
        assert [r.prompt for r in sequential.requests] == [r.prompt for r in batched.requests]
        hf_count = len(sequential) if args.hf_requests is None and (args.tiny or args.organism) else (
            32 if args.hf_requests is None else args.hf_requests)

        print(f"model {args.model}\n{len(behaviors)} behaviors, {len(sequential)} requests, randomized order, "
              f"{args.framings}, max_tokens {args.max_tokens}, greedy, dtype {args.dtype}, "
              f"quantization {args.quantization}", flush=True)
        results = []
        baseline = None
        if hf_count:
            print(f"HF generate on {min(hf_count, len(sequential))} requests ...", flush=True)
            baseline = run_hf(args, list(sequential.requests[:hf_count]))
            results.append(baseline)

        from evalkit.engines.vllm import VLLMEngine
        options = {"dtype": args.dtype, "quantization": args.quantization, "revision": args.revision,
                   "max_model_len": args.max_model_len}
        engine = VLLMEngine(EngineConfig(engine="vllm", model=args.model, seed=args.seed, max_tokens=args.max_tokens,
                                         options={k: v for k, v in options.items() if v is not None}))
        try:
            print("vLLM sequential ...", flush=True)
            reference = run_vllm(engine, sequential, "vLLM engine, sequential (batch 1)")
            print(f"vLLM batched ({args.batch_size}) ...", flush=True)
            results += [reference, run_vllm(engine, batched, f"vLLM engine, batched ({args.batch_size})")]
            device = engine.describe()["device"]
        finally:
            engine.close()
    print(f"\ndevice {device}\n" + table(results, reference, baseline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
