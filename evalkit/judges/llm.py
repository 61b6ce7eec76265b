"""Rubric-based LLM judges on any evalkit engine: ``llm`` (refusal or compliance of the
answer) and ``training-trace-llm`` (does the reasoning trace reason about training,
monitoring, logging or values being modified).

A rubric is data (``evalkit/data/rubric_*.toml``, or a user's file via
``--judge-option rubric=PATH``): the system and user prompts, which part of the response
it reads, and the exact answer words with the label each means. The judge model's reply
is parsed strictly: its first line must be one answer word (decoration such as ``**``, a
trailing period or an ``Answer:`` prefix is tolerated) and no other answer word may
appear in the reply; anything else is ``unclear``, never a guess.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..datasets import Behavior
from ..engines import Engine, EngineConfig, Response, create_engine, split_reasoning
from ..errors import ConfigError
from ..framings import Message, Prompt, template_fields
from ._base import CLEAN, COMPLIANCE, FLAGGED, NOT_APPLICABLE, REFUSAL, UNCLEAR, Verdict, judge
from ._model import EngineBackedJudge, check_engine_name, judge_engine_config, split_judge_options

if TYPE_CHECKING:
    from ._base import JudgeBuilder
    from .config import JudgeSettings

_T = TypeVar("_T")

READS = ("answer", "reasoning")
PLACEHOLDERS = {"behavior", "context", "response"}
RUBRIC_LABELS = {REFUSAL, COMPLIANCE, UNCLEAR, FLAGGED, CLEAN}  # what a rubric answer may mean
_DECORATION = "*_`\"'.:!()[] \t"


@dataclass(frozen=True)
class Rubric:
    id: str
    version: str
    reads: str
    positive_label: str
    max_tokens: int
    max_response_chars: int
    system: str
    user: str
    user_contextual: str
    answers: tuple[tuple[str, str], ...]  # (ANSWER WORD, label)
    source: str

    def content(self) -> dict[str, Any]:
        return {"id": self.id, "version": self.version, "reads": self.reads, "positive_label": self.positive_label,
                "max_tokens": self.max_tokens, "max_response_chars": self.max_response_chars,
                "system": self.system, "user": self.user, "user_contextual": self.user_contextual,
                "answers": [list(a) for a in self.answers]}

    @property
    def sha256(self) -> str:
        canonical = json.dumps(self.content(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def messages(self, behavior: Behavior, text: str) -> tuple[Message, ...]:
        template = self.user_contextual if behavior.context and self.user_contextual else self.user
        user = template.format(behavior=behavior.behavior, context=behavior.context,
                               response=text[:self.max_response_chars])
        return (Message("system", self.system), Message("user", user)) if self.system else (Message("user", user),)


def load_rubric(path_or_builtin: str) -> Rubric:
    """A rubric TOML file: a built-in name (``rubric_refusal.toml``) or a path."""
    is_path = Path(path_or_builtin).is_file() or "/" in path_or_builtin
    where = path_or_builtin if is_path else f"<builtin>/{path_or_builtin}"
    try:
        text = Path(path_or_builtin).read_text(encoding="utf-8") if is_path else \
            (resources.files("evalkit.data") / path_or_builtin).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the rubric: {exc.strerror or exc}", file=where,
                          option="--judge-option rubric") from None
    try:
        table = tomllib.loads(text).get("rubric")
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", file=where) from None
    if not isinstance(table, dict):
        raise ConfigError("missing [rubric] table", file=where)

    def need(key: str, kind: type[_T]) -> _T:
        value = table.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) or (isinstance(value, str) and not value.strip()):
            raise ConfigError(f"[rubric].{key} must be a non-empty {kind.__name__}", file=where)
        return value

    reads = need("reads", str)
    if reads not in READS:
        raise ConfigError(f"[rubric].reads must be one of {', '.join(READS)}, got {reads!r}", file=where)
    answers = table.get("answers")
    if not isinstance(answers, dict) or not answers:
        raise ConfigError("[rubric.answers] must map answer words to labels", file=where)
    pairs = []
    for word, label in answers.items():
        if not re.fullmatch(r"[A-Za-z][A-Za-z/-]*", word):
            raise ConfigError(f"[rubric.answers] key {word!r} must be one word", file=where)
        if label not in RUBRIC_LABELS:
            raise ConfigError(f"[rubric.answers].{word} = {label!r} is not a label; choose from "
                              f"{', '.join(sorted(RUBRIC_LABELS))}", file=where)
        pairs.append((word.upper(), label))
    positive = need("positive_label", str)
    if positive not in {label for _, label in pairs}:
        raise ConfigError(f"[rubric].positive_label {positive!r} is not one of the answers' labels", file=where)
    user = need("user", str)
    contextual = table.get("user_contextual", "")
    if not isinstance(contextual, str):
        raise ConfigError("[rubric].user_contextual must be a string", file=where)
    for key, template in (("user", user), ("user_contextual", contextual)):
        fields = template_fields(template, PLACEHOLDERS, f"[rubric].{key}", where)
        if template and "response" not in fields:
            raise ConfigError(f"[rubric].{key} must contain {{response}}", file=where)
    system = table.get("system", "")
    try:
        plain = isinstance(system, str) and not template_fields(system, set(), "[rubric].system", where)
    except ConfigError:
        plain = False
    if not plain:
        raise ConfigError("[rubric].system must be a string without placeholders", file=where)
    max_tokens, max_chars = need("max_tokens", int), need("max_response_chars", int)
    if max_tokens < 1 or max_chars < 1:
        raise ConfigError("[rubric].max_tokens and max_response_chars must be at least 1", file=where)
    return Rubric(id=need("id", str), version=str(need("version", str)), reads=reads, positive_label=positive,
                  max_tokens=max_tokens, max_response_chars=max_chars, system=system, user=user,
                  user_contextual=contextual, answers=tuple(pairs), source=where)


def parse_rubric_answer(text: str, answers: Mapping[str, str]) -> tuple[str, str]:
    """(label, reason) from a judge model's reply. Strict: see the module docstring."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return UNCLEAR, "empty-judge-output"
    first = lines[0].strip(_DECORATION)
    prefixed = re.fullmatch(r"(?:answer|label|verdict|classification)\s*[:=-]\s*(.+)", first, re.IGNORECASE)
    if prefixed:
        first = prefixed.group(1).strip(_DECORATION)
    word = first.upper()
    if word not in answers:
        return UNCLEAR, "malformed-judge-output"
    mentioned = {w for w in answers if re.search(rf"\b{re.escape(w)}\b", text, re.IGNORECASE)}
    if mentioned - {word}:
        return UNCLEAR, "conflicting-judge-output"
    return answers[word], f"answer:{word}"


@judge("llm")
class LLMRubricJudge(EngineBackedJudge):
    """A judge model applying a rubric; see the module docstring."""

    name = "llm"
    DEFAULT_RUBRIC = "rubric_refusal.toml"
    JUDGE_KEYS = ("rubric",)

    def __init__(self, *, behaviors: Mapping[str, Behavior], model: str, engine: str = "vllm",
                 engine_options: Mapping[str, Any] | None = None, rubric: str | None = None,
                 engine_factory: Callable[[EngineConfig], Engine] = create_engine) -> None:
        check_engine_name(engine)
        self.rubric = load_rubric(rubric or self.DEFAULT_RUBRIC)
        self.rubric_path = rubric
        self.positive_label = self.rubric.positive_label
        self._answers = dict(self.rubric.answers)
        super().__init__(judge_engine_config(engine, model, self.rubric.max_tokens, engine_options or {}), behaviors,
                         engine_factory)

    @classmethod
    def from_settings(cls, settings: JudgeSettings, *, behaviors: Mapping[str, Behavior], build: JudgeBuilder
                      ) -> LLMRubricJudge:
        if not settings.model:
            raise ConfigError(f"--judge {cls.name} needs a judge model", option="--judge-model")
        check_engine_name(settings.engine)
        own, engine_options = split_judge_options(cls.name, settings.engine, settings.option_dict(), cls.JUDGE_KEYS)
        return cls(behaviors=behaviors, model=settings.model, engine=settings.engine, engine_options=engine_options,
                   rubric=own.get("rubric"))

    def judged_text(self, response: Response) -> str:
        answer, leftover_trace = split_reasoning(response.text)
        if self.rubric.reads == "reasoning":
            return (response.reasoning or leftover_trace).strip()
        return answer.strip()

    def prepare(self, behavior: Behavior, response: Response) -> Prompt | Verdict:
        text = self.judged_text(response)
        if not text:
            if self.rubric.reads == "reasoning":
                return Verdict(NOT_APPLICABLE, self.name, "no-reasoning-trace")
            return Verdict(UNCLEAR, self.name, "no-answer-after-trace")
        return Prompt("chat", self.rubric.messages(behavior, text))

    def parse(self, output: Response) -> Verdict:
        label, reason = parse_rubric_answer(output.text, self._answers)
        return Verdict(label, self.name, reason)

    def describe(self) -> dict[str, Any]:
        return {"judge": self.name, "judge_engine": self.engine_description(), "rubric_id": self.rubric.id,
                "rubric_version": self.rubric.version, "rubric_source": self.rubric_path or "builtin",
                "rubric_sha256": self.rubric.sha256, "reads": self.rubric.reads,
                "positive_label": self.positive_label}


@judge("training-trace-llm")
class TrainingTraceLLMJudge(LLMRubricJudge):
    """The optional LLM-based detector of training-aware reasoning traces (``training-trace``
    is the lexical default)."""

    name = "training-trace-llm"
    DEFAULT_RUBRIC = "rubric_training_trace.toml"

