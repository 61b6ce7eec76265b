"""Turning result dataclasses into plain JSON values."""

from __future__ import annotations

import dataclasses
import math
from typing import Any


def jsonable(value: Any) -> Any:
    """Recursively convert dataclasses to dicts and tuples to lists; refuse NaN and inf,
    which JSON cannot carry and which would mean a statistic silently broke."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: jsonable(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [jsonable(item) for item in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"refusing to serialise a non-finite statistic: {value!r}")
        return value
    raise TypeError(f"cannot serialise {type(value).__name__} value {value!r}")


def fields_as_json(instance: object) -> dict[str, Any]:
    """A result dataclass as a JSON object: ``jsonable`` of it, one key per field."""
    if not dataclasses.is_dataclass(instance) or isinstance(instance, type):
        raise TypeError(f"not a dataclass instance: {instance!r}")
    out: dict[str, Any] = jsonable(instance)
    return out
