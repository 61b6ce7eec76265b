"""Hooks a project implements in its conftest.py (or a plugin) to extend evalkit's suite.

Both hooks are called in the controlling process only (the one process without xdist; xdist's
controller with ``-n N``), once per analysed row: the checks right after the row's statistics,
before any test runs (workers get them with the rows); the columns when the session writes its
summary. Neither is ``firstresult``: every implementation contributes (a project and a plugin
may each add checks or columns).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ..analysis import CheckOutcome
    from ..suites import Row


@pytest.hookspec
def pytest_evalkit_row_checks(row: Row, config: pytest.Config) -> Iterable[CheckOutcome] | None:
    """Extra checks of one analysed row (``evalkit.analysis.CheckOutcome``: name, passed, message;
    ``passed=None`` for "not applicable here").

    They join the row's built-in checks: ``summary.json`` lists them under the row's ``checks``,
    ``row.analysis.checks[name]`` holds them in tests, and a test that asks for the
    ``evalkit_project_checks`` fixture asserts them (this repository's ``test_project_checks``).
    A name that is already a check of the row is a usage error. The row's verdict is the built-in
    checks' own: a project check fails its test, it does not relabel the row.
    """


@pytest.hookspec
def pytest_evalkit_summary_columns(row: Row, summary: Mapping[str, Any],
                                   config: pytest.Config) -> Mapping[str, Any] | None:
    """Extra summary columns of one row: ``{header: value}``, a value JSON can hold (text, number,
    boolean, None). ``summary`` is the row's summary.json entry as evalkit wrote it.

    The columns follow the built-in ones in the terminal table and summary.md (a row without a
    value shows an empty cell) and are written under the row's ``columns`` in summary.json.
    Model responses must not go into a column (summary files are meant to be shared).
    """
