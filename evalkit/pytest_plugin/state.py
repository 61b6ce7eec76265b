"""What the plugin's parts share within one pytest process: the session's state in the config's
stash, the prepared evalkit session, the directory where the processes of one session exchange
rows, and the rows themselves."""

from __future__ import annotations

import dataclasses
import os
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..errors import EvalkitError
from ..options import engine_options
from .options import option_value, option_values

if TYPE_CHECKING:  # types only: importing them would load the planner and the statistics at start-up
    from ..compare import Comparison
    from ..suites import Materialized, Session

RowKey = tuple[str, str, str]  # (model alias, suite id, framing pair id)
SESSIONS_DIR = ".evalkit-sessions"
ROWS_FILE, BOOTS_FILE = "rows.pickle", "boots.jsonl"
UNAVAILABLE = "unavailable"  # the first item of a parameter that stands for a suite the dataset cannot run


@dataclasses.dataclass
class State:
    uid: str
    materialized: Materialized | None = None  # the controlling process's analysed rows
    project_checks: dict[RowKey, tuple[str, ...]] = dataclasses.field(default_factory=dict)  # hook-added, per row
    summary: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    comparison: Comparison | str | None = None  # with --baseline: the comparison, or the error saying why not
    html_report: str | None = None  # the path written by --evalkit-html
    html_error: str | None = None
    html_fragment: str | None = None  # for pytest-html's summary, when that plugin writes a report
    column_error: str | None = None  # a pytest_evalkit_summary_columns that failed


STATE_KEY = pytest.StashKey[State]()
SESSION_KEY = pytest.StashKey["Session | EvalkitError"]()


def state(config: pytest.Config) -> State:
    return config.stash[STATE_KEY]


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def evalkit_session(config: pytest.Config) -> Session:
    """Prepare (validate and plan) the session once per process; errors are cached too."""
    if SESSION_KEY not in config.stash:
        from ..suites import SessionConfig, prepare

        values = option_values(config)
        try:
            session_config = dataclasses.replace(
                SessionConfig.from_options(values, engine_options(values, values["engine"] or "sim")),
                session_id=state(config).uid)
            config.stash[SESSION_KEY] = prepare(session_config)
        except EvalkitError as exc:
            config.stash[SESSION_KEY] = exc
    value = config.stash[SESSION_KEY]
    if isinstance(value, EvalkitError):
        raise value
    return value


def session_dir(config: pytest.Config) -> Path:
    """Where this session's processes exchange analysed rows and boot counts."""
    from ..suites import default_results_dir

    results_dir = Path(option_value(config, "results_dir") or default_results_dir())
    return results_dir.resolve() / SESSIONS_DIR / state(config).uid


def selected_keys(items: Iterable[pytest.Item]) -> list[RowKey]:
    """The rows the selected test items need, in order, once each."""
    keys: list[RowKey] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        key = callspec.params.get("evalkit_row") if callspec is not None else None
        if isinstance(key, tuple) and key[0] != UNAVAILABLE:
            keys.append(key)
    return list(dict.fromkeys(keys))


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def shareable(current: State) -> bytes:
    """The analysed rows for xdist's workers, without their records (model responses stay in the
    run store) or their plans (every process plans the same session; a worker puts its own back)."""
    materialized = current.materialized
    assert materialized is not None
    rows = {key: {**{f.name: getattr(row, f.name) for f in dataclasses.fields(row) if f.name != "plan"},
                  "run": dataclasses.replace(row.run, held_records=None)}
            for key, row in materialized.rows.items()}
    return pickle.dumps({"rows": rows, "errors": dict(materialized.errors), "comparison": current.comparison,
                         "project_checks": current.project_checks})


def rows(config: pytest.Config) -> Materialized | None:
    """The session's analysed rows: the controlling process's own; a worker's, read once from the
    file the controlling process shared."""
    current = state(config)
    if current.materialized is None and is_worker(config):
        from ..suites import Materialized, Row

        path = session_dir(config) / ROWS_FILE
        if path.exists():
            shared = pickle.loads(path.read_bytes())
            session = evalkit_session(config)
            by_key = {key: Row(plan=session.plan(*key), **fields) for key, fields in shared["rows"].items()}
            current.materialized = Materialized(by_key, shared["errors"])
            current.comparison = shared["comparison"]
            current.project_checks = shared["project_checks"]
    return current.materialized
