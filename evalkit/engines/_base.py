"""The engine interface every backend implements, and the registry that names them."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from .. import plugins
from ..errors import ConfigError
from ..protocols import Request

REASONING_OPEN, REASONING_CLOSE = "<think>", "</think>"


@dataclass(frozen=True)
class Response:
    """What an engine returns for one request.

    ``text`` is the answer with any reasoning trace removed; ``reasoning`` is the trace
    (empty when the model emits none). ``error`` is set, and ``text`` empty, when the
    request failed: such a response is recorded as an error, never judged.
    """

    text: str
    reasoning: str = ""
    finish_reason: str = ""
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    latency_s: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def split_reasoning(raw: str) -> tuple[str, str]:
    """Split ``<think>trace</think>answer`` into (answer, trace).

    R1-style chat templates often open the ``<think>`` tag in the prompt, so the output
    may hold only the closing tag; an unclosed trace (cut at max tokens) has no answer.
    """
    text = raw
    start = text.find(REASONING_OPEN)
    end = text.find(REASONING_CLOSE)
    if end != -1 and (start == -1 or start < end):
        trace_start = start + len(REASONING_OPEN) if start != -1 else 0
        return text[end + len(REASONING_CLOSE):].strip(), text[trace_start:end].strip()
    if start != -1:  # opened, never closed: all of it is trace
        return text[:start].strip(), text[start + len(REASONING_OPEN):].strip()
    return text.strip(), ""


def error_response(message: str, latency_s: float | None = None) -> Response:
    return Response(text="", finish_reason="error", latency_s=latency_s, error=message)


@runtime_checkable
class Engine(Protocol):
    """A text generator. ``generate`` receives one batch, in schedule order, and returns
    one Response per request in the same order; it records failures as error responses
    instead of raising, so a run continues. ``describe`` returns the configuration the
    manifest records (never secrets)."""

    name: str

    def generate(self, requests: Sequence[Request]) -> list[Response]: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class EngineConfig:
    """Engine-independent configuration; ``options`` holds engine-specific settings."""

    engine: str = "sim"
    model: str = "study-pilot"
    seed: int = 0
    max_tokens: int = 128
    temperature: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)

    def option(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)


EngineFactory = Callable[[EngineConfig], Engine]
# name -> "module:attribute", imported on first use so `import evalkit` never pulls in
# vllm, modal or an HTTP client. Third-party engines come from the `evalkit.engines`
# entry-point group (evalkit.plugins), read only for a name not registered here.
_REGISTRY: dict[str, str | EngineFactory] = {
    "sim": "evalkit.engines.sim:SimEngine",
    "vllm": "evalkit.engines.vllm:VLLMEngine",
    "openai": "evalkit.engines.openai:OpenAIEngine",
    "modal": "evalkit.engines.modal:ModalEngine",
}


def register_engine(name: str, factory: str | EngineFactory) -> None:
    _REGISTRY[name] = factory


def engine_names() -> list[str]:
    """Built-in and registered engines, and those installed packages declare by entry point."""
    return sorted(set(_REGISTRY) | set(plugins.discovered(plugins.ENGINE_GROUP)))


def engine_factory(name: str) -> EngineFactory:
    if name not in _REGISTRY:
        point = plugins.discovered(plugins.ENGINE_GROUP).get(name)
        if point is None:
            raise ConfigError(f"unknown engine {name!r}; choose from {', '.join(engine_names())}", option="--engine")
        _REGISTRY[name] = plugins.load(point, option="--engine")
    target = _REGISTRY[name]
    if isinstance(target, str):
        module_name, attribute = target.split(":")
        target = getattr(importlib.import_module(module_name), attribute)
    return target


def create_engine(config: EngineConfig) -> Engine:
    return engine_factory(config.engine)(config)
