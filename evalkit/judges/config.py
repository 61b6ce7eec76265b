"""Judge construction from user options: settings for model-based judges and the vote.

``--judge NAME`` picks the judge whose verdicts the statistics use; model-based judges
(``harmbench-cls``, ``llm``, ``training-trace-llm``) also read ``--judge-engine``,
``--judge-model`` and ``--judge-option KEY=VALUE``; the ``vote`` judge reads
``--vote-judges`` and ``--vote-tie``. ``build_judges`` constructs judges by name, sharing
one instance per name, so a vote's members are the same objects whose own verdicts are
recorded beside the vote's. Construction never boots an engine (that happens on the
first verdict), so a session validates its judges before anything heavy starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..datasets import Behavior
from ..errors import ConfigError
from ._base import Judge, judge_factory

TIE_RULES = ("unclear", "refusal", "compliance", "first")
DEFAULT_JUDGE_ENGINE = "vllm"


@dataclass(frozen=True)
class JudgeSettings:
    """What model-based judges and the vote are built from. ``options`` holds the
    ``--judge-option KEY=VALUE`` pairs in the order given (a tuple, so settings stay
    hashable and frozen)."""

    engine: str = DEFAULT_JUDGE_ENGINE
    model: str | None = None
    options: tuple[tuple[str, str], ...] = ()
    vote_judges: tuple[str, ...] = ()
    vote_tie: str = "unclear"

    @classmethod
    def from_options(cls, values: Mapping[str, Any]) -> JudgeSettings:
        """From parsed option values (the JUDGE options of ``evalkit.options``)."""
        pairs = []
        for item in values.get("judge_option") or ():
            key, sep, value = str(item).partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"expected KEY=VALUE, got {item!r}", option="--judge-option")
            pairs.append((key.strip().replace("-", "_"), value.strip()))
        keys = [k for k, _ in pairs]
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        if repeated:
            raise ConfigError(f"key {repeated[0]!r} given more than once", option="--judge-option")
        members = values.get("vote_judges") or ""
        if isinstance(members, (list, tuple)):
            members = ",".join(members)
        tie = values.get("vote_tie") or "unclear"
        if tie not in TIE_RULES:
            raise ConfigError(f"unknown tie rule {tie!r}; choose from {', '.join(TIE_RULES)}", option="--vote-tie")
        return cls(engine=values.get("judge_engine") or DEFAULT_JUDGE_ENGINE, model=values.get("judge_model") or None,
                   options=tuple(pairs), vote_judges=tuple(m.strip() for m in str(members).split(",") if m.strip()),
                   vote_tie=tie)

    def option_dict(self) -> dict[str, str]:
        return dict(self.options)


def _behavior_map(behaviors: Mapping[str, Behavior] | Iterable[Behavior] | None) -> dict[str, Behavior]:
    if behaviors is None:
        return {}
    if isinstance(behaviors, Mapping):
        return dict(behaviors)
    return {b.behavior_id: b for b in behaviors}


def build_judges(names: Iterable[str], settings: JudgeSettings = JudgeSettings(),
                 behaviors: Mapping[str, Behavior] | Iterable[Behavior] | None = None) -> list[Judge]:
    """The judges named, in order (duplicates once), followed by any judge they are built
    from (a vote's members) that was not named. Unknown names raise ConfigError."""
    by_id = _behavior_map(behaviors)
    built: dict[str, Judge] = {}

    def build(name: str) -> Judge:
        if name in built:
            return built[name]
        factory = judge_factory(name)
        from_settings = getattr(factory, "from_settings", None)
        instance = from_settings(settings, behaviors=by_id, build=build) if callable(from_settings) else factory()
        built[name] = instance
        return instance

    wanted = list(dict.fromkeys(names))
    for name in wanted:
        build(name)
    return [built[n] for n in wanted] + [j for n, j in built.items() if n not in wanted]


def validate_judges(names: Iterable[str], settings: JudgeSettings = JudgeSettings()) -> None:
    """Check names and options before the dataset is loaded or any engine boots."""
    build_judges(names, settings, behaviors={})


def close_judges(judges: Iterable[Judge]) -> None:
    """Release the engines model-based judges booted (no-op for the others)."""
    for instance in judges:
        close = getattr(instance, "close", None)
        if callable(close):
            close()
