"""The judge interface, verdict labels and the registry of judges by name."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Protocol, runtime_checkable

from .. import plugins
from ..engines import Response
from ..errors import ConfigError
from ..protocols import Request

REFUSAL, COMPLIANCE, UNCLEAR, ERROR, NOT_APPLICABLE = "refusal", "compliance", "unclear", "error", "n/a"
# Labels of the reasoning-trace judges: the trace reasons about training, monitoring,
# logging or values being modified (flagged), or it does not (clean).
FLAGGED, CLEAN = "flagged", "clean"
LABELS = (REFUSAL, COMPLIANCE, UNCLEAR, ERROR, NOT_APPLICABLE, FLAGGED, CLEAN)
DECIDED = (REFUSAL, COMPLIANCE)  # a refusal judge decided; unclear, error and n/a did not


@dataclass(frozen=True)
class Verdict:
    """A judge's label for one response. ``reason`` is a short machine-readable note
    (which rule fired), never response text."""

    label: str
    judge: str
    reason: str = ""

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise ValueError(f"unknown verdict label {self.label!r}")

    @property
    def refused(self) -> bool:
        return self.label == REFUSAL


@runtime_checkable
class Judge(Protocol):
    """A judge labels one response. ``request`` gives the behavior id (judges must not
    read the framing). Judges may also set ``positive_label``: the label the paired
    statistics count as the outcome (``refusal`` unless said otherwise; ``flagged`` for
    the trace judges); read it with ``positive_label(judge)``."""

    name: str

    def judge(self, request: Request, response: Response) -> Verdict: ...

    def describe(self) -> dict[str, Any]: ...


JudgeFactory = Callable[..., Judge]
_REGISTRY: dict[str, JudgeFactory] = {}
# what ``from_settings`` receives as ``build``: another judge by name (a vote's members)
JudgeBuilder = Callable[[str], Judge]


def judge(name: str) -> Callable[[JudgeFactory], JudgeFactory]:
    """Class decorator: register a judge under ``name``."""
    def register(factory: JudgeFactory) -> JudgeFactory:
        _REGISTRY[name] = factory
        return factory
    return register


def judge_names() -> list[str]:
    """Built-in judges and those installed packages declare by entry point (``evalkit.judges``)."""
    return sorted(set(_REGISTRY) | set(plugins.discovered(plugins.JUDGE_GROUP)))


def judge_factory(name: str) -> JudgeFactory:
    """The factory registered as ``name``; an entry point is read only for a name evalkit lacks."""
    if name not in _REGISTRY:
        point = plugins.discovered(plugins.JUDGE_GROUP).get(name)
        if point is None:
            raise ConfigError(f"unknown judge {name!r}; choose from {', '.join(judge_names())}", option="--judge")
        _REGISTRY[name] = plugins.load(point, option="--judge")
    return _REGISTRY[name]


def create_judge(name: str, **config: Any) -> Judge:
    return judge_factory(name)(**config)


@cache
def data_sha256(name: str) -> str:
    """sha256 of a data file shipped in evalkit.data: rules files' identity in manifests."""
    return hashlib.sha256((resources.files("evalkit.data") / name).read_bytes()).hexdigest()


def judge_all(judge: Judge, requests: Sequence[Request], responses: Sequence[Response]) -> list[Verdict]:
    """Verdicts for a batch; judges running on an engine batch their calls (``judge_batch``)."""
    batch = getattr(judge, "judge_batch", None)
    if callable(batch):
        return list(batch(requests, responses))
    return [judge.judge(request, response) for request, response in zip(requests, responses)]


def positive_label(judge: Judge) -> str:
    """The label that is the paired statistics' outcome for ``judge``."""
    return getattr(judge, "positive_label", REFUSAL)


def unjudgeable(response: Response, judge_name: str) -> Verdict | None:
    """Engine errors and empty outputs are errors, never refusal or compliance."""
    if response.error is not None:
        return Verdict(ERROR, judge_name, "engine-error")
    if not response.text.strip() and not response.reasoning.strip():
        return Verdict(ERROR, judge_name, "empty-output")
    return None
