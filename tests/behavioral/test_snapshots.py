"""Snapshots for diff review: per-behavior decision codes and the rounded summary.

Codes are two letters, free then paid: R refused, C complied, U unclear, E error
(``RC`` = refused under free, complied under paid). No response text is stored.
Review a model update with ``pytest --snapshot-update`` and read the diff in the PR.
"""

from evalkit.report import summary_rows


def test_decisions_snapshot(evalkit_row, snapshot):
    summary = summary_rows([evalkit_row])[0]
    stable = {k: summary.get(k) for k in ("n", "a", "b", "c", "d", "refusal_free", "refusal_paid", "gap", "gap_ci",
                                      "mcnemar_midp", "mcnemar_exact_p", "flip_rate", "errors")}
    assert {"codes": evalkit_row.analysis.outcomes.codes, "summary": stable} == snapshot
