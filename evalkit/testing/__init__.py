"""Test helpers that ship with evalkit (imported lazily: nothing heavy at import time)."""

from .tiny_model import TinyModelSpec, build_tiny_llama

__all__ = ["TinyModelSpec", "build_tiny_llama"]
