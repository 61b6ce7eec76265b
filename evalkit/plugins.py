"""Third-party engines and judges, found by entry point.

A package adds an engine or a judge without editing evalkit by declaring, in its
``pyproject.toml``::

    [project.entry-points."evalkit.engines"]
    my-engine = "my_package.engine:MyEngine"      # called with an EngineConfig

    [project.entry-points."evalkit.judges"]
    my-judge = "my_package.judge:MyJudge"         # called with no arguments

The registries read these groups lazily: only when a name is not registered in evalkit
itself, and when listing names (``--help``, error messages), so ``import evalkit`` and a
session that uses the built-ins never import a plugin. A built-in name always wins over
an entry point of the same name. A plugin that fails to import is a one-line
ConfigError naming the entry point and its distribution.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

from .errors import ConfigError

ENGINE_GROUP = "evalkit.engines"
JUDGE_GROUP = "evalkit.judges"


def discovered(group: str) -> dict[str, EntryPoint]:
    """name -> entry point of every installed distribution's ``group`` (first one wins)."""
    found: dict[str, EntryPoint] = {}
    for point in entry_points(group=group):
        found.setdefault(point.name, point)
    return found


def load(point: EntryPoint, *, option: str) -> Any:
    """The object an entry point names; an import failure is a ConfigError, not a traceback."""
    try:
        return point.load()
    except Exception as exc:  # a broken plugin must not look like a bug in evalkit
        origin = f" (from {point.dist.name} {point.dist.version})" if point.dist is not None else ""
        raise ConfigError(f"plugin {point.name!r} = {point.value!r}{origin} failed to load: "
                          f"{type(exc).__name__}: {exc}", option=option) from exc
