"""evalkit: a pytest-driven regression suite for training-aware compliance.

Flow: dataset -> framings x protocol -> schedule -> engine -> judge -> records ->
statistics -> tests, snapshots and reports. ``import evalkit`` is light: engines
that need vllm, modal or an HTTP client import them only when used.
"""

__version__ = "0.1.0"

from .datasets import Behavior, Dataset, Selection, load_behaviors, resolve_harmbench, select  # noqa: E402
from .errors import ConfigError, DatasetError, EvalkitError, InputError, RunStoreError  # noqa: E402
from .framings import Framing, FramingPair, FramingSet, Prompt, load_framing_set  # noqa: E402
from .protocols import PROTOCOLS, Request, Schedule, build_schedule  # noqa: E402

__all__ = ["__version__", "Behavior", "Dataset", "Selection", "load_behaviors", "resolve_harmbench", "select",
           "ConfigError", "DatasetError", "EvalkitError", "InputError", "RunStoreError", "Framing", "FramingPair",
           "FramingSet", "Prompt", "load_framing_set", "PROTOCOLS", "Request", "Schedule", "build_schedule"]
