"""What leaves evalkit, made safe: names that become paths, text that is persisted, text
for a terminal.

- A name (model, framing pair, protocol) that becomes part of a path is slugged and
  bounded by ``path_component``; ``ensure_within`` checks the final path lies under its root.
- Credentials never reach a manifest, a record, a log or a run's identity: ``public_url``
  strips them from a URL, ``redact`` from any JSON-like value (URLs with credentials, and
  the values of secret-holding environment variables), and ``redact_error`` also removes
  copies of a key that a server echoed back masked or re-cased.
- ``terminal_safe`` escapes control, format and bidirectional characters, so stored text
  (behavior ids, errors, responses) cannot spoof lines or drive the terminal.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REDACTED = "***"
MAX_COMPONENT = 60  # characters per name in a path; three names and a hash stay far below 255 bytes

_NOT_PORTABLE = re.compile(r"[^A-Za-z0-9._-]+")
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_SECRET_PARAMETER = re.compile(r"key|token|secret|passw|pwd|auth|credential|signature|^sig$", re.IGNORECASE)
_SECRET_VARIABLE = re.compile(r"API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD", re.IGNORECASE)
_MASKED = re.compile(r"[*\u2022]{3,}")  # a key shown as sk-ab****wxyz
_MIN_SECRET = 8  # shorter environment values are too likely to occur by chance in ordinary text
_ECHO_GRAM = 4  # a token sharing this many consecutive characters with a key is a copy of part of it


# ---------------------------------------------------------------- paths


def path_component(name: str, limit: int = MAX_COMPONENT, fallback: str = "x") -> str:
    """``name`` as one portable path component: letters, digits, '.', '_' and '-' only, no
    leading or trailing dot, at most ``limit`` characters. Never '.', '..' or empty."""
    slug = _NOT_PORTABLE.sub("_", name)[:limit].strip("._-")
    return slug or fallback


def is_one_component(name: str) -> bool:
    """Whether ``name`` names an entry of a directory: no separator, not '.', '..' or empty, no NUL.
    A run name read from a summary.json must be one, or the file could point anywhere."""
    return name not in ("", ".", "..") and not any(char in name for char in "/\\\x00")


def ensure_within(path: Path, root: Path) -> Path:
    """``path`` if it resolves to a location under ``root`` (symlinks followed); else ValueError."""
    resolved, base = Path(path).resolve(), Path(root).resolve()
    if resolved != base and base not in resolved.parents:
        raise ValueError(f"{path} lies outside {root}")
    return path


# ---------------------------------------------------------------- secrets


def public_url(url: str) -> str:
    """``url`` without user:password@ and with the values of secret-looking query parameters
    (api_key, token, sig, ...) replaced by ***. The same URL with another password gives
    the same result, so a run's identity does not depend on credentials."""
    scheme, sep, rest = url.partition("://")
    if not sep:  # no scheme (a mistyped user:pw@host/v1): what precedes an '@' is still credentials
        scheme, rest = "", url
    authority, tail = _authority(rest)
    if "@" in authority:
        authority = authority.rsplit("@", 1)[1]
    elif "@" in tail and ":" in authority:
        # 'user:pass' read as host:port: a password holding an unencoded '/', '?' or '#' ended
        # the authority early, and the rest of it and its '@' fell in the path, query or fragment
        authority, tail = _authority(rest.rsplit("@", 1)[1])
    path, question, query = tail.partition("?")
    if question:
        query, hash_mark, fragment = query.partition("#")
        query = "&".join(_public_parameter(part) for part in query.split("&"))
        tail = f"{path}?{query}{hash_mark}{fragment}"
    return f"{scheme}{sep}{authority}{tail}"


def _authority(rest: str) -> tuple[str, str]:
    """(authority, path and what follows) of a URL without its ``scheme://``."""
    end = next((i for i, char in enumerate(rest) if char in "/?#"), len(rest))
    return rest[:end], rest[end:]


def _public_parameter(part: str) -> str:
    name, equals, _value = part.partition("=")
    return f"{name}={REDACTED}" if equals and _SECRET_PARAMETER.search(name) else part


def environment_secrets() -> list[str]:
    """Values of environment variables whose names say they hold a secret (OPENAI_API_KEY,
    HF_TOKEN, MODAL_TOKEN_SECRET, ...), longest first."""
    values = {v for k, v in os.environ.items() if _SECRET_VARIABLE.search(k) and len(v) >= _MIN_SECRET}
    return sorted(values, key=len, reverse=True)


def redact_text(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` with credentials removed from every URL in it and every secret (by default
    the environment's) replaced by *** in any letter case."""
    if "://" in text:
        text = _URL.sub(lambda match: public_url(match.group(0)), text)
    for secret in environment_secrets() if secrets is None else secrets:
        if len(secret) >= _MIN_SECRET and secret.lower() in text.lower():
            text = re.sub(re.escape(secret), REDACTED, text, flags=re.IGNORECASE)
    return text


def redact(value: Any) -> Any:
    """A copy of a JSON-like value (dicts, lists, strings) with ``redact_text`` applied to
    every string, keys included: what may be written to a manifest, a summary or a log."""
    secrets = environment_secrets()
    return _redact(value, secrets)


def _redact(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, dict):
        return {_redact(k, secrets): _redact(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact(v, secrets) for v in value]
    return value


def redact_error(text: str, secrets: Iterable[str] = ()) -> str:
    """Server-provided error text made safe to store: ``redact_text``, then every word that
    is a masked key (``sk-ab****wxyz``) or shares a run of characters with one of
    ``secrets`` or the environment's secrets, in any case, becomes ***. Over-redacting a
    word of an error message costs little; storing a quarter of a key does not."""
    known = [s for s in (*secrets, *environment_secrets()) if s]
    text = redact_text(text, known)
    grams = {s.lower()[i:i + _ECHO_GRAM] for s in known for i in range(len(s) - _ECHO_GRAM + 1)}

    def word(match: re.Match[str]) -> str:
        token: str = match.group(0)
        lowered = token.lower()
        if _MASKED.search(token) or any(lowered[i:i + _ECHO_GRAM] in grams
                                        for i in range(len(lowered) - _ECHO_GRAM + 1)):
            return REDACTED
        return token

    return re.sub(r"[^\s'\"`,;()\[\]{}<>]+", word, text)


# ---------------------------------------------------------------- terminals


def terminal_safe(text: str, keep_newlines: bool = False) -> str:
    """``text`` with every non-printable character (C0/C1 controls, DEL, bidirectional and
    other format characters, line and paragraph separators) written as its escape, e.g.
    ``\\x1b``, ``\\u202e``, ``\\n``; newlines kept as they are with ``keep_newlines``."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() or (keep_newlines and char == "\n")
                   else char.encode("unicode_escape").decode("ascii") for char in text)
