"""Framings as data: TOML framing sets, validated on load, rendered into prompts.

A framing is what the model is told about its situation (free tier: logged and used
for training; paid tier: private) plus how the request is put to it. A framing pair
is what a paired test compares: ``free`` is the reference slot and ``paid`` the
compared slot, so the gap is always refusal(paid) - refusal(free). In an A/A control
the ``paid`` slot holds a second, identical free framing.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .datasets import Behavior
from .errors import ConfigError

TIERS = ("free", "paid", "none")
FORMATS = ("chat", "raw")
PAIR_KINDS = ("treatment", "control")
PLACEHOLDERS = {"behavior", "request"}  # bare behavior text; behavior with its context
RAW_PLACEHOLDERS = {"system", "user"}
# Framing, pair and set ids name tests, snapshot keys and (slugged) run directories.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True)
class Prompt:
    """What an engine is given. Chat engines apply the model's chat template to
    ``messages``; raw-format prompts are the single string ``text`` sent as-is."""

    format: str
    messages: tuple[Message, ...]
    text: str = ""

    def flat(self) -> str:
        """One string for hashing and for engines without a chat template."""
        if self.format == "raw":
            return self.text
        return "\n\n".join(f"{m.role}: {m.content}" for m in self.messages)


@dataclass(frozen=True)
class Framing:
    id: str
    tier: str
    system: str
    user_template: str
    format: str
    raw_template: str = "{system}\n\n{user}\n\nASSISTANT:"

    def render(self, behavior: Behavior) -> Prompt:
        user = self.user_template.format(behavior=behavior.behavior, request=behavior.request)
        messages = (Message("system", self.system), Message("user", user)) if self.system else (
            Message("user", user),)
        text = self.raw_template.format(system=self.system, user=user) if self.format == "raw" else ""
        return Prompt(self.format, messages, text)

    def texts(self) -> dict[str, str]:
        return {"id": self.id, "tier": self.tier, "system": self.system,
                "user_template": self.user_template, "format": self.format,
                "raw_template": self.raw_template}


@dataclass(frozen=True)
class FramingPair:
    id: str
    free: Framing
    paid: Framing
    kind: str = "treatment"  # "control" = A/A: both slots say the same thing

    @property
    def is_control(self) -> bool:
        return self.kind == "control"


@dataclass(frozen=True)
class FramingSet:
    id: str
    path: str
    description: str
    framings: tuple[Framing, ...]
    pairs: tuple[FramingPair, ...]

    def pair(self, pair_id: str) -> FramingPair:
        for pair in self.pairs:
            if pair.id == pair_id:
                return pair
        raise ConfigError(f"no framing pair {pair_id!r}; available: {', '.join(p.id for p in self.pairs)}",
                          file=self.path)

    def texts_sha256(self) -> str:
        """Hash of every text that reaches a model: any wording change is a new experiment."""
        payload = json.dumps([f.texts() for f in self.framings] +
                             [[p.id, p.free.id, p.paid.id, p.kind] for p in self.pairs],
                             sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def describe(self) -> dict[str, object]:
        return {"id": self.id, "path": self.path, "texts_sha256": self.texts_sha256(),
                "pairs": [p.id for p in self.pairs]}


# ---------------------------------------------------------------- loading

BUILTIN_PACKAGE = "evalkit.data.framings"


def builtin_framing_sets() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(BUILTIN_PACKAGE).iterdir() if p.name.endswith(".toml"))


def template_fields(template: str, allowed: set[str], where: str, path: str) -> set[str]:
    """The fields of a ``str.format`` template, which may only be plain ``{name}`` fields
    from ``allowed``. A format spec (``{behavior:>300000000}`` allocates gigabytes), a
    conversion, an attribute or an index (``{generation.__class__}``) is refused, as is an
    unbalanced brace; a literal brace is written ``{{`` or ``}}``."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"{where} is not a valid template ({exc}); write a literal brace as {{{{ or }}}}",
                          file=path) from None
    fields = set()
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise ConfigError(f"{where} has the field {shown[:40]!r}: only plain fields such as "
                              f"{{{sorted(allowed or {'name'})[0]}}} are allowed (no format spec, conversion, "
                              "attribute or index)", file=path)
        if name not in allowed:
            raise ConfigError(f"{where} has unknown placeholder {{{name}}}; allowed: "
                              f"{', '.join(sorted(allowed)) or 'none'}", file=path)
        fields.add(name)
    return fields


def _check_id(value: str, what: str, path: str) -> str:
    if not ID_PATTERN.fullmatch(value):
        raise ConfigError(f"{what} id {value[:80]!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a "
                          "letter or digit", file=path)
    return value


def _require_str(table: Mapping[str, object], key: str, where: str, path: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if value is None:
        raise ConfigError(f"missing key {key!r} in {where}", file=path)
    if not isinstance(value, str):
        raise ConfigError(f"key {where}.{key} must be a string, got {type(value).__name__}", file=path)
    return value


def load_framing_set(name_or_path: str) -> FramingSet:
    """Load a framing set by built-in name (e.g. ``study-raw``) or by path to a TOML file."""
    path = Path(name_or_path)
    if path.suffix != ".toml" and not path.exists():
        if name_or_path not in builtin_framing_sets():
            raise ConfigError(f"unknown framing set {name_or_path!r}; built-in sets: "
                              f"{', '.join(builtin_framing_sets())}, or give a path to a .toml file",
                              option="--framings")
        resource = resources.files(BUILTIN_PACKAGE) / f"{name_or_path}.toml"
        return parse_framing_set(resource.read_text(encoding="utf-8"), f"<builtin>/{name_or_path}.toml")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError("framing set file not found", file=str(path), option="--framings") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read framing set: {exc}", file=str(path)) from None
    return parse_framing_set(text, str(path))


def parse_framing_set(text: str, path: str) -> FramingSet:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", file=path) from None
    meta = data.get("set")
    if not isinstance(meta, dict):
        raise ConfigError("missing [set] table", file=path)
    set_id = _check_id(_require_str(meta, "id", "[set]", path), "[set]", path)
    default_format = _require_str(meta, "format", "[set]", path, "chat")
    default_raw = _require_str(meta, "raw_template", "[set]", path, Framing.raw_template)
    raw_framings = data.get("framings")
    if not isinstance(raw_framings, dict) or not raw_framings:
        raise ConfigError("missing [framings.<id>] tables", file=path)
    framings: dict[str, Framing] = {}
    for framing_id, table in raw_framings.items():
        where = f"[framings.{_check_id(framing_id, 'framing', path)}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{where} must be a table", file=path)
        unknown = set(table) - {"tier", "system", "user_template", "format", "raw_template"}
        if unknown:
            raise ConfigError(f"unknown key {sorted(unknown)[0]!r} in {where}", file=path)
        tier = _require_str(table, "tier", where, path)
        if tier not in TIERS:
            raise ConfigError(f"{where}.tier must be one of {', '.join(TIERS)}, got {tier!r}", file=path)
        fmt = _require_str(table, "format", where, path, default_format)
        if fmt not in FORMATS:
            raise ConfigError(f"{where}.format must be one of {', '.join(FORMATS)}, got {fmt!r}", file=path)
        system = _require_str(table, "system", where, path, "")
        user_template = _require_str(table, "user_template", where, path)
        if not template_fields(user_template, PLACEHOLDERS, f"{where}.user_template", path):
            raise ConfigError(f"{where}.user_template must contain {{behavior}} or {{request}}", file=path)
        raw_template = _require_str(table, "raw_template", where, path, default_raw)
        if fmt == "raw" and template_fields(raw_template, RAW_PLACEHOLDERS, f"{where}.raw_template",
                                            path) != RAW_PLACEHOLDERS:
            raise ConfigError(f"{where}.raw_template must use exactly {{system}} and {{user}}", file=path)
        framings[framing_id] = Framing(framing_id, tier, system, user_template, fmt, raw_template)
    pairs = []
    raw_pairs = data.get("pairs", {})
    if not isinstance(raw_pairs, dict) or not raw_pairs:
        raise ConfigError("missing [pairs.<id>] tables", file=path)
    for pair_id, table in raw_pairs.items():
        where = f"[pairs.{_check_id(pair_id, 'pair', path)}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{where} must be a table", file=path)
        free_id = _require_str(table, "free", where, path)
        paid_id = _require_str(table, "paid", where, path)
        for slot, ref in (("free", free_id), ("paid", paid_id)):
            if ref not in framings:
                raise ConfigError(f"{where}.{slot} names unknown framing {ref!r}", file=path)
        kind = _require_str(table, "kind", where, path, "treatment")
        if kind not in PAIR_KINDS:
            raise ConfigError(f"{where}.kind must be one of {', '.join(PAIR_KINDS)}", file=path)
        free, paid = framings[free_id], framings[paid_id]
        if free_id == paid_id:
            raise ConfigError(f"{where} compares framing {free_id!r} with itself; an A/A control needs "
                              "two framings with identical texts and distinct ids", file=path)
        if free.format != paid.format:
            raise ConfigError(f"{where} mixes formats {free.format} and {paid.format}", file=path)
        same_text = {k: v for k, v in free.texts().items() if k != "id"} == \
            {k: v for k, v in paid.texts().items() if k != "id"}
        if kind == "control" and not same_text:
            raise ConfigError(f"{where} is an A/A control but its framings' texts differ", file=path)
        pairs.append(FramingPair(pair_id, free, paid, kind))
    return FramingSet(set_id, path, _require_str(meta, "description", "[set]", path, ""),
                      tuple(framings.values()), tuple(pairs))
