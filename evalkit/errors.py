"""Errors that carry where the bad input is, so a user can fix it without a traceback."""

from __future__ import annotations

from .safety import redact_text


class EvalkitError(Exception):
    """Base class: every user-facing failure. The CLI prints the message and exits 2."""

    exit_code = 2

    def __init__(self, *args: object) -> None:
        # Messages quote user input (URLs, option values) and engine errors, and pytest shows
        # them as they are: credentials and the environment's secrets are removed here, once.
        super().__init__(*(redact_text(arg) if isinstance(arg, str) else arg for arg in args))


class InputError(EvalkitError):
    """Malformed user input, located by file, row, column/field or option."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        column: str | None = None,
        option: str | None = None,
    ) -> None:
        self.file, self.row, self.column, self.option = file, row, column, option
        where = []
        if option:
            where.append(f"option {option}")
        if file:
            where.append(f"{file}")
        if row is not None:
            where.append(f"row {row}")
        if column:
            where.append(f"column {column!r}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class DatasetError(InputError):
    """The behaviors file is missing, corrupt or malformed."""


class ConfigError(InputError):
    """A framing set, profile or option is invalid."""


class UnavailableHere(ConfigError):
    """A valid configuration this machine cannot run (no GPU, no Modal credentials).
    The pytest layer skips with this message; the CLI reports it and exits 2."""


class RunStoreError(InputError):
    """The run directory cannot be used (spec mismatch, unwritable, corrupt): bad input
    located by its file, like any other."""


class EngineError(EvalkitError):
    """An engine could not be constructed or booted (per-request failures are Response.error)."""
