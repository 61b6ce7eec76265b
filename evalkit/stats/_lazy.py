"""A module imported on first attribute access: ``special = lazy_module("scipy.special")``.

For modules that only a computation needs, not a definition: a warm pytest session builds
statistics' result objects from the analysis cache (``evalkit.analysis_cache``) without
computing any, and should not pay for importing scipy (about half a second of CPU) to do so.
Each attribute is looked up once and then kept on the proxy, so a hot loop pays a plain
attribute access.
"""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    def __init__(self, name: str) -> None:
        self._lazy_name = name

    def __getattr__(self, attribute: str) -> Any:
        value = getattr(importlib.import_module(self._lazy_name), attribute)
        setattr(self, attribute, value)  # next time: found on the instance, no __getattr__
        return value

    def __repr__(self) -> str:
        return f"<lazy module {self._lazy_name!r}>"


def lazy_module(name: str) -> Any:
    return LazyModule(name)
