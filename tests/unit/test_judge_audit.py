"""Human audit: allocation, a blinded and seeded sample written to the run directory only,
and scoring judges against human labels with Wilson intervals."""

import argparse
import csv
import json

import pytest

from evalkit.audit import allocate, read_human_labels, sample_paths, score_judge
from evalkit.cli.audit import add_audit_commands
from evalkit.errors import InputError
from evalkit.framings import load_framing_set
from evalkit.runs import load_run
from evalkit.stats import wilson_interval
from evalkit.suites import EnginePool, SessionConfig, prepare, run_plan

pytestmark = pytest.mark.unit


def run_command(*argv):
    parser = argparse.ArgumentParser(prog="evalkit")
    add_audit_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.mark.parametrize("sizes, n, method, expected", [
    ({"a": 80, "b": 20}, 10, "proportional", {"a": 8, "b": 2}),
    ({"a": 98, "b": 2}, 10, "proportional", {"a": 9, "b": 1}),  # every non-empty stratum is seen
    ({"a": 80, "b": 20, "c": 0}, 10, "equal", {"a": 5, "b": 5}),
    ({"a": 80, "b": 3}, 10, "equal", {"a": 7, "b": 3}),  # a small stratum gives its room to the others
    ({"a": 4, "b": 3}, 50, "proportional", {"a": 4, "b": 3}),  # n larger than the run: everything
])
def test_allocation(sizes, n, method, expected):
    assert allocate(sizes, n, method) == expected


@pytest.fixture(scope="module")
def stored_run(tmp_path_factory):
    from pathlib import Path
    csv_path = Path(__file__).resolve().parents[2] / "fixtures" / "behaviors" / "synthetic_behaviors.csv"
    session = prepare(SessionConfig(models=("study-pilot",), harmbench=str(csv_path), suites=("replication",),
                                    pairs=("free-vs-paid",), results_dir=str(tmp_path_factory.mktemp("audit"))))
    return run_plan(session, session.plans[0], EnginePool()).run_dir, csv_path


def test_sample_is_blinded_written_to_the_run_only_and_prints_no_text(stored_run, capsys):
    run_dir, csv_path = stored_run
    assert run_command("audit", "sample", str(run_dir), "--n", "10", "--seed", "7", "--harmbench", str(csv_path)) == 0
    printed = capsys.readouterr().out
    csv_file, html_file, key_file = sample_paths(run_dir, 7)
    assert all(p.parent == run_dir / "audit" for p in (csv_file, html_file, key_file))
    rows = list(csv.DictReader(csv_file.open(encoding="utf-8")))
    assert len(rows) == 10 and list(rows[0]) == ["audit_id", "behavior", "context", "response", "label", "notes"]
    blob = csv_file.read_text(encoding="utf-8") + html_file.read_text(encoding="utf-8")
    framings = load_framing_set("study-raw")
    forbidden = ["FREE TIER", "PAID TIER", "free tier", "paid tier", "free-vs-paid", "used for training"]
    for framing in framings.framings:
        forbidden += [framing.system, framing.system.splitlines()[-1], f",{framing.id},", f'"{framing.id}"']
    for text in forbidden:
        assert text not in blob, text
    assert "verdict" not in blob.lower() and "slot" not in blob.lower()
    # nothing but counts and paths on the terminal
    _, records = load_run(run_dir)
    assert not any(r.response.text and r.response.text in printed for r in records)
    assert "item-001" not in printed and "Start of Answer" not in printed
    key = json.loads(key_file.read_text())
    assert {i["slot"] for i in key["items"]} == {"free", "paid"}  # stratified by framing
    assert sum(key["stratum_allocation"].values()) == 10
    for item in key["items"]:  # the key maps each blinded item back to its record
        row = next(r for r in rows if r["audit_id"] == item["audit_id"])
        assert row["response"] == records[item["index"]].response.text


def test_sample_is_reproducible_from_its_seed(stored_run, tmp_path):
    run_dir, csv_path = stored_run
    contents = []
    for seed in (3, 3, 4):
        run_command("audit", "sample", str(run_dir), "--n", "6", "--seed", str(seed), "--harmbench", str(csv_path),
                    "--force")
        contents.append(tuple(p.read_text() for p in sample_paths(run_dir, seed)))
    assert contents[0] == contents[1]
    assert contents[0][2] != contents[2][2]  # another seed, another sample
    with pytest.raises(InputError, match="--force"):
        run_command("audit", "sample", str(run_dir), "--n", "6", "--seed", "3", "--harmbench", str(csv_path))


def test_a_negative_seed_is_refused_before_anything_is_written(stored_run):
    # it wrote sample-seed-1.csv, .html and -key.json; every other --seed refuses a negative one
    run_dir, csv_path = stored_run
    with pytest.raises(InputError, match="option --seed: must be a non-negative integer, got -1"):
        run_command("audit", "sample", str(run_dir), "--n", "6", "--seed", "-1", "--harmbench", str(csv_path))
    assert not any(p.exists() for p in sample_paths(run_dir, -1))


def test_score_against_human_labels(stored_run, tmp_path, capsys):
    run_dir, csv_path = stored_run
    run_command("audit", "sample", str(run_dir), "--n", "12", "--seed", "11", "--harmbench", str(csv_path), "--force")
    key = json.loads(sample_paths(run_dir, 11)[2].read_text())
    labels = tmp_path / "labels.csv"
    # a "human" who agrees with the refusal judge except on the first item, and skips the last
    with labels.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["audit_id", "label", "notes"])
        for i, item in enumerate(key["items"]):
            label = item["verdicts"]["refusal"]
            if i == 0:
                label = "compliance" if label == "refusal" else "refusal"
            writer.writerow([item["audit_id"], "" if i == len(key["items"]) - 1 else label, ""])
    capsys.readouterr()
    assert run_command("audit", "score", str(run_dir), str(labels), "--json") == 0
    payload = json.loads(capsys.readouterr().out)
    scores = {s["judge"]: s for s in payload["scores"]}
    assert set(scores) == {"refusal", "seed"}
    accuracy = scores["refusal"]["accuracy"]
    assert (accuracy["successes"], accuracy["n"]) == (10, 11)
    assert accuracy["wilson_ci"] == pytest.approx(list(wilson_interval(10, 11)))
    assert run_command("audit", "score", str(run_dir), str(labels)) == 0
    assert "[Start of Answer]" not in capsys.readouterr().out


def test_score_judge_counts():
    human = ["refusal", "refusal", "refusal", "compliance", "compliance", "unclear"]
    judged = ["refusal", "compliance", "unclear", "compliance", "refusal", "refusal"]
    score = score_judge("j", human, judged)
    assert (score.accuracy.successes, score.accuracy.n) == (2, 5)  # the human's unclear is not scored
    assert (score.sensitivity.successes, score.sensitivity.n) == (1, 3)
    assert (score.specificity.successes, score.specificity.n) == (1, 2)
    assert score.undecided == 1


@pytest.mark.parametrize("text, fragment", [
    ("audit_id,verdict\nitem-001,refusal\n", "needs columns audit_id and label"),
    ("audit_id,label\nitem-001,refused\n", "row 1, column 'label': label 'refused'"),
    ("audit_id,label\nitem-001,refusal\nitem-001,refusal\n", "labelled twice"),
    ("audit_id,label\n,refusal\n", "empty audit_id"),
    # the last of two label columns won; a stray comma dropped a field or made a label blank (skipped)
    ("audit_id,label,label\nitem-001,refusal,compliance\n", "row 0, column 'label': the header names it twice"),
    ("audit_id,label,notes\nitem-001,refusal,a,b\n", "row 1: 4 fields, the header has 3"),
    ("audit_id,notes,label\nitem-001,refusal\n", "row 1: 2 fields, the header has 3"),
])
def test_label_file_errors_name_the_row(tmp_path, text, fragment):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=fragment):
        read_human_labels(path)


def test_a_label_file_in_another_encoding_is_an_error_naming_it(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_bytes("audit_id,label,notes\nitem-001,refusal,d\u00e9j\u00e0 vu\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"labels\.csv: not UTF-8 text"):
        read_human_labels(path)


@pytest.mark.parametrize("key_text", ["audit_id,label\n", '{"items": 5}', '[1, 2]', '{"items": [{"id": 1}]}'])
def test_a_damaged_audit_key_is_an_error_naming_it(tmp_path, key_text):
    from evalkit.audit import AUDIT_DIR, score_audit
    from evalkit.judges import JudgeSettings
    labels = tmp_path / "labels.csv"
    labels.write_text("audit_id,label\nitem-001,refusal\n")
    (tmp_path / AUDIT_DIR).mkdir()
    key = tmp_path / AUDIT_DIR / "sample-seed0-key.json"
    key.write_text(key_text)
    for explicit in (str(key), None):  # --key, or found in the run's audit directory
        with pytest.raises(InputError, match="sample-seed0-key.json: not an audit key"):
            score_audit(tmp_path, labels, explicit, None, JudgeSettings(), None)


def test_label_file_accepts_blank_and_case(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("audit_id,human_label\nitem-001,Refusal\nitem-002,\n")
    assert read_human_labels(path) == {"item-001": "refusal"}
