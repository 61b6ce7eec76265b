"""The engine interface every backend implements, and the registry that names them."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .. import plugins
from ..errors import ConfigError, EngineError
from ..framings import Prompt

if TYPE_CHECKING:
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

    def __eq__(self, other: object) -> bool:
        # Written out, not the dataclass's: pytest explains a failed == between dataclasses field
        # by field, printing both texts, unless their __eq__ is their own.
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, f.name) == getattr(other, f.name) for f in fields(self))

    def __repr__(self) -> str:
        # Lengths, not text: pytest prints values in assertions and tracebacks (-l, -vv), and
        # model responses stay in the run store.
        return (f"Response(text=<{len(self.text)} chars>, reasoning=<{len(self.reasoning)} chars>, "
                f"finish_reason={self.finish_reason!r}, error={self.error!r})")


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


@dataclass(frozen=True)
class EngineRequest:
    """One generation request as an engine receives it: what a real model would see.

    ``prompt`` is the rendered prompt; ``id`` is opaque (unique within a run, meaning
    nothing about order or framing); ``behavior_id`` and ``semantic_category`` are the
    request's metadata (the sim uses them as a real model uses the content of the request).
    The type has no framing, slot or position: no engine can read which framing a prompt
    came from except by reading the prompt, as a real model does.
    """

    id: int
    prompt: Prompt
    behavior_id: str = ""
    semantic_category: str = ""


def engine_requests(requests: Sequence[Request]) -> list[EngineRequest]:
    """The runner's side of the boundary: schedule requests -> what the engine may see."""
    return [EngineRequest(r.index, r.prompt, r.behavior_id, r.semantic_category) for r in requests]


@runtime_checkable
class Engine(Protocol):
    """A text generator: every method the runner calls (``BaseEngine`` gives the optional
    ones their defaults).

    ``generate`` receives one batch, in schedule order, and returns one Response per request
    in the same order; it records failures as error responses instead of raising, so a run
    continues. ``describe`` returns the configuration the manifest records (never secrets).
    ``reset`` starts a run's state afresh (one engine serves many runs in a session);
    ``restore`` replays requests already answered (resume). ``close`` releases resources.
    """

    name: str

    def generate(self, requests: Sequence[EngineRequest]) -> list[Response]: ...

    def describe(self) -> dict[str, Any]: ...

    def reset(self) -> None: ...

    def restore(self, requests: Sequence[EngineRequest]) -> None: ...

    def close(self) -> None: ...


class EngineFactory(Protocol):
    """What the registry names: called with a config to boot an engine; ``validate`` and
    ``identity`` are called on it before any boot (``BaseEngine`` gives their defaults)."""

    def __call__(self, config: EngineConfig) -> Engine: ...

    def validate(self, config: EngineConfig) -> Any: ...

    def identity(self, config: EngineConfig) -> dict[str, Any] | None: ...


class BaseEngine:
    """The optional parts of ``Engine`` and ``EngineFactory`` with their defaults: a
    stateless engine that needs no validation beyond its constructor and whose identity
    is its configuration alone. Subclasses set ``name`` and implement ``generate``."""

    name: str = ""

    @classmethod
    def validate(cls, config: EngineConfig) -> Any:
        """Refuse a configuration before any boot (raise ConfigError); default: accept."""
        return None

    @classmethod
    def identity(cls, config: EngineConfig) -> dict[str, Any] | None:
        """What beyond ``config`` determines the outputs (a model version); default: nothing."""
        return None

    def generate(self, requests: Sequence[EngineRequest]) -> list[Response]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"engine": self.name}

    def reset(self) -> None:
        """Default: stateless, nothing to forget."""

    def restore(self, requests: Sequence[EngineRequest]) -> None:
        """Default: stateless, nothing to replay."""

    def close(self) -> None:
        """Default: nothing to release."""


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


# name -> "module:attribute", imported on first use so `import evalkit` never pulls in
# vllm, modal or an HTTP client. Third-party engines come from the `evalkit.engines`
# entry-point group (evalkit.plugins), read only for a name not registered here.
_REGISTRY: dict[str, str | EngineFactory] = {  # "module:attribute" or an EngineFactory
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
        loaded: EngineFactory = getattr(importlib.import_module(module_name), attribute)
        target = loaded
    missing = [m for m in ("validate", "identity") if not callable(getattr(target, m, None))]
    if missing:
        raise ConfigError(f"engine {name!r} ({target!r}) lacks {', '.join(missing)}: derive it from "
                          "evalkit.engines.BaseEngine", option="--engine")
    return target


def create_engine(config: EngineConfig) -> Engine:
    engine = engine_factory(config.engine)(config)
    if not isinstance(engine, Engine):
        missing = [m for m in ("name", "generate", "describe", "reset", "restore", "close") if not hasattr(engine, m)]
        raise EngineError(f"engine {config.engine!r} built {type(engine).__name__}, which lacks {', '.join(missing)} "
                          "of evalkit.engines.Engine (derive it from evalkit.engines.BaseEngine)")
    return engine
