"""Engines: one interface, a registry by name, heavy backends imported lazily."""

from ._base import (
                    BaseEngine,
                    Engine,
                    EngineConfig,
                    EngineFactory,
                    EngineRequest,
                    Response,
                    create_engine,
                    engine_factory,
                    engine_names,
                    engine_requests,
                    error_response,
                    register_engine,
                    split_reasoning,
)

__all__ = ["BaseEngine", "Engine", "EngineConfig", "EngineFactory", "EngineRequest", "Response", "create_engine",
           "engine_factory", "engine_names", "engine_requests", "error_response", "register_engine", "split_reasoning"]
