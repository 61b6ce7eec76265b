"""Model aliases: the name a model goes by in rows, snapshots and reports.

A CI job tests "the model we ship", whose specification changes with every update: a
new hub revision, another checkpoint, another engine. The alias stays; the
specification changes. ``--model ALIAS=SPEC`` names one (``--model m=sim:null``,
``--model deepseek=deepseek-ai/DeepSeek-R1-Distill-Llama-8B``); a bare ``--model SPEC``
is its own alias. A models file (TOML, ``--models-file``) holds one table per alias,
so a pull request that updates a model changes one line::

    [models.deepseek]
    model = "deepseek-ai/DeepSeek-R1-Distill-Llama-8B"
    revision = "6a6f4aa4197940add57724a7707d069478df56b1"
    engine = "vllm"          # optional: default --engine
    dtype = "bfloat16"       # any engine option, by its option name with '_' for '-'

``SPEC`` may start with an engine name and a colon (``sim:training-aware``,
``vllm:Qwen/Qwen2.5-7B-Instruct``). The run identity stays the full specification
(engine, model, revision, options), never the alias: renaming an alias reuses the runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from .errors import ConfigError

if TYPE_CHECKING:
    from .options import Option

ALIAS_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ALIAS_RULE = "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
_FILE_KEYS = ("model", "engine", "revision", "description")


@dataclass(frozen=True)
class ModelEntry:
    """One model under test: its alias, and the specification the engine loads."""

    alias: str
    model: str
    engine: str | None = None  # None: the session's --engine
    revision: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # engine options from the models file
    source: str = "--model"

    @classmethod
    def of(cls, entry: ModelEntry | str) -> ModelEntry:
        """``entry`` as a ModelEntry: a plain string is a model that is its own alias."""
        return entry if isinstance(entry, ModelEntry) else cls(alias=entry, model=entry)

    @property
    def spec(self) -> str:
        """The full specification as a user would write it (engine:model@revision)."""
        text = f"{self.engine}:{self.model}" if self.engine else self.model
        return f"{text}@{self.revision}" if self.revision else text

    @property
    def file_stem(self) -> str:
        """A file name for this alias: the alias itself when it is already a safe name,
        otherwise a bounded slug plus a hash of the alias (so two aliases never share one)."""
        if ALIAS_PATTERN.fullmatch(self.alias):
            return self.alias
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", self.alias).strip("._-")[:48] or "model"
        return f"{slug}-{hashlib.sha256(self.alias.encode()).hexdigest()[:8]}"


class Where(TypedDict, total=False):
    """Where a bad value was given, as ConfigError's keyword arguments."""

    file: str
    option: str


def check_alias(alias: str, where: Where) -> str:
    if not ALIAS_PATTERN.fullmatch(alias):
        raise ConfigError(f"alias {alias!r} is not a valid name: use {ALIAS_RULE}", **where)
    return alias


def parse_model_option(text: str, engines: Iterable[str]) -> ModelEntry:
    """``ALIAS=SPEC`` or a bare ``SPEC``; ``SPEC`` is ``[ENGINE:]MODEL``."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("expected a model, ALIAS=MODEL or ALIAS=ENGINE:MODEL, got an empty value",
                          option="--model")
    alias, spec = None, text
    head, sep, tail = text.partition("=")
    if sep and "/" not in head and ":" not in head:
        alias = check_alias(head, {"option": "--model"})
        spec = tail
        if not spec:
            raise ConfigError(f"alias {alias!r} has no model after '='", option="--model")
    engine, model = split_engine(spec, engines)
    if "\x00" in model or "\n" in model:
        raise ConfigError(f"model {model!r} contains a control character", option="--model")
    return ModelEntry(alias=alias or text, model=model, engine=engine)


def split_engine(spec: str, engines: Iterable[str]) -> tuple[str | None, str]:
    head, sep, tail = spec.partition(":")
    if sep and head in set(engines) and tail:
        return head, tail
    return None, spec


def load_models_file(path: str | Path, engines: Iterable[str], engine_options: dict[str, Option]
                     ) -> dict[str, ModelEntry]:
    """Parse a models file into alias -> entry, validating every key against the engine options.

    ``engine_options`` maps an option's dest (``enable_prefix_caching``) to its ``options.Option``;
    the file names an option as its flag does, ``-`` written ``_`` (``prefix_caching``)."""
    by_key = {option.flag.lstrip("-").replace("-", "_"): option for option in engine_options.values()}
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise ConfigError(f"cannot read the models file: {exc.strerror or exc}", file=str(path),
                          option="--models-file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", file=str(path)) from None
    unknown = set(data) - {"models"}
    if unknown:
        raise ConfigError(f"unknown top-level key {sorted(unknown)[0]!r}; expected [models.ALIAS] tables",
                          file=str(path))
    tables = data.get("models")
    if not isinstance(tables, dict) or not tables:
        raise ConfigError("no [models.ALIAS] table", file=str(path))
    engines = set(engines)
    entries: dict[str, ModelEntry] = {}
    for alias, table in tables.items():
        where: Where = {"file": f"{path} [models.{alias}]"}
        check_alias(alias, where)
        if not isinstance(table, dict):
            raise ConfigError("must be a table with at least model = \"...\"", **where)
        model = table.get("model")
        if not isinstance(model, str) or not model:
            raise ConfigError("model must be a non-empty string", **where)
        engine = table.get("engine")
        if engine is not None and engine not in engines:
            raise ConfigError(f"unknown engine {engine!r}; choose from {', '.join(sorted(engines))}", **where)
        revision = table.get("revision")
        if revision is not None and (not isinstance(revision, str) or not revision):
            raise ConfigError("revision must be a non-empty string", **where)
        options: dict[str, object] = {}
        for key, value in table.items():
            if key in _FILE_KEYS:
                continue
            option = by_key.get(key)
            if option is None:
                raise ConfigError(f"unknown key {key!r}: expected model, engine, revision, description or an "
                                  f"engine option ({', '.join(sorted(by_key))})", **where)
            options[option.dest] = _typed(option, value, where, key)
        engine_spec, model_name = split_engine(model, engines)
        if engine_spec and engine and engine_spec != engine:
            raise ConfigError(f"model names engine {engine_spec!r} but engine = {engine!r}", **where)
        entries[alias] = ModelEntry(alias=alias, model=model_name, engine=engine or engine_spec,
                                    revision=revision, options=options, source=str(path))
    return entries


def _typed(option: Option, value: object, where: Where, key: str) -> object:
    """A file value converted like the same command-line option, with the same choices."""
    if isinstance(value, (dict, list)):
        raise ConfigError(f"{key} must be a single value", **where)
    try:
        # TOML gives ints and floats as well as strings: the converters (int, float, parse_bool)
        # take them as they take the command line's strings
        converted = value if option.type is None else option.type(
            str(value).lower() if isinstance(value, bool) else value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key}: {exc}", **where) from None
    if option.choices and converted not in option.choices:
        raise ConfigError(f"{key} must be one of {', '.join(option.choices)}, got {value!r}", **where)
    return converted


def resolve_models(model_options: Iterable[str] | None, models_file: str | None, engines: Iterable[str],
                   engine_options: dict[str, Option]) -> tuple[ModelEntry, ...]:
    """The session's models, in order: the models file's aliases, unless ``--model`` picks
    some of them (by alias) or adds others (``ALIAS=SPEC`` or a bare SPEC)."""
    engines = tuple(engines)
    from_file = load_models_file(models_file, engines, engine_options) if models_file else {}
    chosen: dict[str, ModelEntry] = {}
    for text in model_options or ():
        if text in from_file:
            entry = from_file[text]
        else:
            entry = parse_model_option(text, engines)
        previous = chosen.get(entry.alias)
        if previous is not None and previous != entry:
            raise ConfigError(f"alias {entry.alias!r} is given twice, as {previous.spec} and as {entry.spec}",
                              option="--model")
        chosen[entry.alias] = entry
    if not chosen:
        chosen = dict(from_file)
    stems: dict[str, str] = {}
    for entry in chosen.values():
        other = stems.setdefault(entry.file_stem.lower(), entry.alias)
        if other != entry.alias:  # case-insensitive file systems would merge their snapshot files
            raise ConfigError(f"aliases {other!r} and {entry.alias!r} differ only in case or punctuation; "
                              "their snapshot files would collide", option="--model")
    return tuple(chosen.values())


def changed_aliases(old: dict[str, ModelEntry], new: dict[str, ModelEntry]) -> dict[str, list[str]]:
    """Aliases whose specification changed between two models files, and those added or removed:
    what a CI job evaluates when a pull request edits the models file."""
    return {"changed": [a for a in new if a in old and old[a] != dataclasses.replace(new[a], source=old[a].source)],
            "added": [a for a in new if a not in old], "removed": [a for a in old if a not in new]}
