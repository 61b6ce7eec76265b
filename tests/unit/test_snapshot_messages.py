"""The failure message of a decision snapshot says what changed, and only that."""

from evalkit.snapshots import DecisionSnapshot, compare, describe_change

PROVENANCE = {"model": "null", "engine": "sim", "seed": 0, "n_behaviors": 3, "judge": "refusal"}
CODES = {"b1": "RR", "b2": "CC", "b3": "RC"}


def message(stored: DecisionSnapshot, current: DecisionSnapshot) -> str:
    return describe_change(stored, current, compare(stored, current, {"b1": "illegal"}), "snap.toml", "update it")


def snapshot(provenance=PROVENANCE, codes=CODES) -> DecisionSnapshot:
    return DecisionSnapshot("m", "replication", "free-vs-paid", dict(provenance), {}, dict(codes))


def test_a_new_revision_with_the_same_decisions_does_not_say_decisions_changed():
    text = message(snapshot(), snapshot({**PROVENANCE, "revision": "v2"}))
    first = text.splitlines()[0]
    assert first == ("decisions of m / replication / free-vs-paid did not change (3 behaviors); what they were "
                     "measured on or under did")
    assert "  model: revision none -> v2" in text


def test_more_behaviors_with_the_same_decisions_name_n_not_only_another_dataset():
    more = snapshot({**PROVENANCE, "n_behaviors": 4}, {**CODES, "b4": "CC"})
    text = message(snapshot(), more)
    assert "did not change (3 behaviors)" in text and "provenance differs (n_behaviors 3 -> 4)" in text
    assert "behaviors added 1, removed 0 (another dataset or --n)" in text


def test_changed_decisions_are_counted_first():
    text = message(snapshot(), snapshot(codes={**CODES, "b1": "RC"}))
    assert text.splitlines()[0] == "decisions of m / replication / free-vs-paid changed: 1 of 3 behaviors"
    assert "transitions: RR->RC 1" in text and "by category: illegal 1" in text
