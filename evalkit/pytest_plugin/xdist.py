"""The xdist part of the plugin, registered by the core only when pytest-xdist is loaded.

The first worker to report its collection names the rows; the controller generates and
analyses them once, before xdist schedules any test, and shares them with every worker
through a file in the session's directory (``state.rows`` reads it on the worker side)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .core import materialize
from .state import RowKey, atomic_write, is_worker, selected_keys, session_dir, state


def pytest_configure_node(node: Any) -> None:
    """Controller: hand the session id to each worker, so all share one session directory."""
    node.workerinput["evalkit_session_uid"] = state(node.config).uid


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Worker: say which rows its selection needs (before xdist reports the collection, which is
    when the controller generates them)."""
    config = session.config
    if not is_worker(config):
        return
    keys = selected_keys(session.items)
    if keys:
        directory = session_dir(config)
        directory.mkdir(parents=True, exist_ok=True)
        # xdist sets workerinput on workers only; pytest's Config type does not declare it
        worker_id = getattr(config, "workerinput")["workerid"]  # noqa: B009
        atomic_write(directory / f"collected-{worker_id}.json",
                     json.dumps([list(k) for k in keys]).encode())


def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """Controller: the first worker's collection names the rows; generate them here, once."""
    config = node.config
    if state(config).materialized is not None:
        return
    path = session_dir(config) / f"collected-{node.workerinput['workerid']}.json"
    keys: list[RowKey] = [(k[0], k[1], k[2]) for k in json.loads(path.read_text())] if path.exists() else []
    if keys:
        materialize(config, keys, share=True)


def pytest_testnodedown(node: Any, error: Any) -> None:
    """Controller: a worker found a bad evalkit option at collection; stop as pytest does without
    xdist, a usage error (exit 4), instead of an internal error about closed channels."""
    message = getattr(node, "workeroutput", {}).get("evalkit_usage_error")
    if message:
        pytest.exit(message, returncode=pytest.ExitCode.USAGE_ERROR)
