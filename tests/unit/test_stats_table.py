"""PairedTable: the orientation every other statistic depends on."""

import numpy as np
import pytest

from evalkit.stats import PairedTable


def test_from_verdicts_puts_each_pair_in_its_cell():
    # behavior:    0      1      2      3      4      5
    free = [True, True, False, False, True, False]
    paid = [True, False, True, False, False, False]
    table = PairedTable.from_verdicts(free, paid)
    # a: refused both (0); b: free only (1, 4); c: paid only (2); d: neither (3, 5)
    assert table == PairedTable(a=1, b=2, c=1, d=2)
    assert table.n == 6 and table.discordant == 3


def test_gap_is_paid_minus_free():
    table = PairedTable(a=16, b=20, c=7, d=157)  # the study's pilot, DeepSeek
    assert table.refusal_free == pytest.approx(0.18)
    assert table.refusal_paid == pytest.approx(0.115)
    assert table.gap == pytest.approx(-0.065)
    assert table.gap == pytest.approx(table.refusal_paid - table.refusal_free)


def test_transposed_swaps_framings_and_negates_gap():
    table = PairedTable(3, 5, 9, 11)
    assert table.transposed() == PairedTable(3, 9, 5, 11)
    assert table.transposed().gap == pytest.approx(-table.gap)


def test_from_verdicts_accepts_numpy_and_zero_one():
    table = PairedTable.from_verdicts(np.array([1, 0, 1]), np.array([True, True, False]))
    assert table == PairedTable(a=1, b=1, c=1, d=0)


def test_numpy_integer_counts_become_python_ints():
    table = PairedTable(np.int64(2), np.int32(1), 0, 4)
    assert type(table.a) is int and type(table.b) is int


@pytest.mark.parametrize(
    "cells",
    [(-1, 0, 0, 0), (1.5, 0, 0, 0), (True, 0, 0, 0), ("1", 0, 0, 0), (None, 0, 0, 0)],
)
def test_invalid_counts_are_refused(cells):
    with pytest.raises(ValueError):
        PairedTable(*cells)


def test_mismatched_or_non_boolean_verdicts_are_refused():
    with pytest.raises(ValueError, match="one verdict per behavior"):
        PairedTable.from_verdicts([True, False], [True])
    with pytest.raises(ValueError, match="booleans"):
        PairedTable.from_verdicts([True, 2], [True, False])
    with pytest.raises(ValueError, match="booleans"):
        PairedTable.from_verdicts([None], [True])


def test_empty_table_exists_but_has_no_proportions():
    empty = PairedTable.from_verdicts([], [])
    assert empty == PairedTable(0, 0, 0, 0) and empty.n == 0
    with pytest.raises(ValueError, match="empty"):
        _ = empty.gap


def test_table_is_frozen():
    table = PairedTable(1, 2, 3, 4)
    with pytest.raises(AttributeError):
        table.a = 5  # type: ignore[misc]
