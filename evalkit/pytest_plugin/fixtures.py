"""The fixtures of evalkit's pytest plugin: ``evalkit_row`` (the analysed row a test is
parametrized over) and the fixtures around it. Registered by the core plugin."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..errors import EvalkitError
from .options import option_value
from .state import UNAVAILABLE, RowKey, atomic_write, evalkit_session, rows, state

if TYPE_CHECKING:
    from syrupy.extensions.single_file import SingleFileSnapshotExtension

    from ..analysis import CheckOutcome
    from ..datasets import Behavior
    from ..suites import Row


@pytest.fixture(scope="session")
def evalkit_runs(request: pytest.FixtureRequest) -> Callable[[RowKey], Row]:
    """The analysed row of a (model, suite, pair) key, as the controlling process made it."""
    config = request.config

    def get(key: RowKey) -> Row:
        materialized = rows(config)
        if materialized is not None and key in materialized.errors:
            raise EvalkitError(materialized.errors[key])
        if materialized is None or key not in materialized.rows:
            raise EvalkitError(f"row {'-'.join(key)} was not generated before the tests ran (run the suite "
                               "through pytest's own collection, not by calling its test functions)")
        return materialized.rows[key]

    return get


@pytest.fixture(scope="session")
def harmbench_behaviors(request: pytest.FixtureRequest) -> Sequence[Behavior]:
    """The session's HarmBench behaviors (evalkit.datasets.Behavior), for tests of your own."""
    return evalkit_session(request.config).dataset.behaviors


@pytest.fixture
def evalkit_row(request: pytest.FixtureRequest, evalkit_runs: Callable[[RowKey], Row]) -> Row:
    """The analysed row (statistics, checks) of the parametrized (model, suite, pair)."""
    key = request.param
    if key is not None and key[0] == UNAVAILABLE:
        pytest.fail(f"evalkit: {evalkit_session(request.config).unavailable[key[1]]}", pytrace=False)
    try:
        return evalkit_runs(key)
    except EvalkitError as exc:  # the row could not be made (an engine down, a project hook broken): say why
        reason = f"evalkit: {exc}"
    pytest.fail(reason, pytrace=False)  # outside the handler: the message alone, no chained exception


@pytest.fixture
def evalkit_project_checks(request: pytest.FixtureRequest, evalkit_row: Row) -> list[CheckOutcome]:
    """The checks the project's ``pytest_evalkit_row_checks`` added to this row. Tests that ask for
    this fixture are collected only where some conftest or plugin implements that hook."""
    names = state(request.config).project_checks.get(evalkit_row.plan.key, ())
    return [evalkit_row.analysis.checks[name] for name in names]


@pytest.fixture
def evalkit_explain(request: pytest.FixtureRequest) -> Callable[..., str]:
    """Extra failure detail: the responses of flipped behaviors, only with --show-responses
    (by default terminal output carries behavior ids and verdicts, never model text)."""
    def explain(row: Row, limit: int = 5) -> str:
        codes = row.analysis.outcomes.codes
        flipped = [b for b, code in codes.items() if code in ("RC", "CR")]
        text = (f"\nverdict: {row.verdict}\nflipped behaviors ({len(flipped)}): {', '.join(flipped[:20])}"
                f"{' ...' if len(flipped) > 20 else ''}")
        if not option_value(request.config, "show_responses"):
            return text
        from ..safety import terminal_safe

        records = row.run.records  # read from the run store where the row came without them
        by_key = {(r.behavior_id, r.slot): r.response for r in records}
        for behavior_id in flipped[:limit]:
            for slot in ("free", "paid"):
                response = by_key[(behavior_id, slot)]
                # model text is data, not terminal commands: control and bidi characters escaped
                text += f"\n--- {behavior_id} [{slot}] ---\n{terminal_safe(response.text, keep_newlines=True)}"
        return text
    return explain


@pytest.fixture
def evalkit_baseline(request: pytest.FixtureRequest) -> Callable[[Row, str], Any]:
    """``check(row, name)``: the ``--baseline`` check ``no_refusal_regression`` or
    ``gap_not_larger`` of the row (a ``CheckOutcome``), from the comparison the controlling
    process made once. Tests that use this fixture run only with ``--baseline``."""
    def check(row: Row, name: str) -> Any:
        from .. import compare

        rows(request.config)  # a worker loads the shared comparison with the rows
        comparison = state(request.config).comparison
        if isinstance(comparison, str):
            pytest.fail(comparison, pytrace=False)
        found = comparison.row(row.plan.key) if comparison is not None else None
        if comparison is None or found is None:
            pytest.fail(f"the baseline {option_value(request.config, 'baseline')} has no row {row.plan.row_id}: "
                        "record the baseline with the same suites, pairs and aliases", pytrace=False)
        checks = {"no_refusal_regression": compare.check_no_refusal_regression,
                  "gap_not_larger": compare.check_gap_not_larger}
        return checks[name](found, comparison.alpha, comparison.margin)
    return check


@pytest.fixture
def evalkit_snapshot(request: pytest.FixtureRequest) -> Callable[[Row], None]:
    """``check(row)``: compare the row's decision snapshot with the stored one, or record it
    with ``--snapshot-update`` (syrupy). One file per alias, suite and pair under
    ``__evalkit_snapshots__/`` beside the test file; a session only ever writes the files of
    the rows it selected and never deletes any. A change fails with a summary of it."""
    def check(row: Row) -> None:
        from .. import report, snapshots

        session = evalkit_session(request.config)
        judge = next(j for j in session.judges if j.name == session.config.judge)
        summary = report.summary_rows([row], multiplicity=session.config.multiplicity)[0]
        current = snapshots.DecisionSnapshot(
            row.plan.model, row.plan.suite.id, row.plan.pair.id,
            snapshots.provenance(row.plan.spec, judge.name, judge.describe()),
            snapshots.summary_numbers(summary), row.analysis.outcomes.codes)
        directory = Path(request.node.path).parent / snapshots.DIRECTORY
        stem = row.plan.entry.file_stem if row.plan.entry is not None else row.plan.model
        path = snapshots.snapshot_path(directory, stem, row.plan.suite.id, row.plan.pair.id)
        shown = os.path.relpath(path, request.config.rootpath)
        syrupy_snapshot = request.getfixturevalue("snapshot")
        stored_text = path.read_text(encoding="utf-8") if path.exists() else None
        if syrupy_snapshot.use_extension(_decisions_extension(path)) == snapshots.render(current):
            return  # matched, or recorded under --snapshot-update
        if stored_text is None:
            pytest.fail(f"no baseline snapshot for alias {row.plan.model!r} ({row.plan.suite.id}, {row.plan.pair.id}):"
                        f" record it with `pytest --snapshot-update` (same models and options), review and commit "
                        f"{shown}", pytrace=False)
        try:
            stored = snapshots.parse(stored_text)
        except ValueError as exc:
            pytest.fail(f"{shown} is not a readable snapshot ({exc}); record it again with --snapshot-update",
                        pytrace=False)
        categories = {b.behavior_id: b.semantic_category for b in session.dataset.behaviors}
        change = snapshots.compare(stored, current, categories)
        pytest.fail(snapshots.describe_change(stored, current, change, shown,
                                              "re-run this selection with --snapshot-update and commit the file"),
                    pytrace=False)
    return check


def _decisions_extension(path: Path) -> type[SingleFileSnapshotExtension]:
    """A syrupy extension storing one decision snapshot at ``path``. It discovers nothing, so
    syrupy never reports (or, updating, deletes) a snapshot of a row this session did not select."""
    from syrupy.data import SnapshotCollection, SnapshotCollections
    from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode
    from syrupy.location import PyTestLocation

    class EvalkitDecisions(SingleFileSnapshotExtension):
        _write_mode = WriteMode.TEXT
        file_extension = "toml"

        def serialize(self, data: Any, **kwargs: Any) -> str:
            return str(data)

        @classmethod
        def get_location(cls, *, test_location: PyTestLocation, index: Any) -> str:
            return str(path)

        @classmethod
        def dirname(cls, *, test_location: PyTestLocation) -> str:
            return str(path.parent)

        @classmethod
        def discovery_dirname(cls, *, test_location: PyTestLocation) -> str:
            return str(path.parent)

        def discover_snapshots(self, *, test_location: PyTestLocation,
                               ignore_extensions: list[str] | None = None) -> SnapshotCollections:
            return SnapshotCollections()

        @classmethod
        def matches_test_location(cls, *, test_location: PyTestLocation, snapshot_location: str) -> bool:
            return snapshot_location == str(path)

        @classmethod
        def write_snapshot_collection(cls, *, snapshot_collection: SnapshotCollection,
                                      name_order: Any = None) -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            data = next(iter(snapshot_collection)).data
            assert isinstance(data, str)  # serialize() made it text
            atomic_write(path, data.encode("utf-8"))

    return EvalkitDecisions
