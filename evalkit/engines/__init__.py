"""Engines: one interface, a registry by name, heavy backends imported lazily."""

from ._base import (
                    Engine,
                    EngineConfig,
                    Response,
                    create_engine,
                    engine_factory,
                    engine_names,
                    error_response,
                    register_engine,
                    split_reasoning,
)

__all__ = ["Engine", "EngineConfig", "Response", "create_engine", "engine_factory", "engine_names",
           "error_response", "register_engine", "split_reasoning"]
