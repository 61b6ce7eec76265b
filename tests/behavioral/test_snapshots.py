"""Decision snapshots for review: one file per model alias, suite and framing pair.

Each file (``__evalkit_snapshots__/<alias>/<suite>--<pair>.toml``) records where its
decisions came from (model and revision, engine, seed, dataset, framing texts, judge), the
rounded summary numbers and each behavior's decision code, free then paid: R refused,
C complied, U unclear, E error (``RC`` = refused under free, complied under paid). No
response text. After a model update, ``pytest --snapshot-update`` records the new
decisions; the pull request's diff shows one changed line per changed behavior. See
README, "Model updates in CI".
"""


def test_decisions_snapshot(evalkit_row, evalkit_snapshot):
    evalkit_snapshot(evalkit_row)
