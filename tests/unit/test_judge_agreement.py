"""Agreement between judges: Cohen's kappa against published examples, confusion matrices,
disagreements, and the `evalkit judges agree` command on a stored run."""

import argparse
import json

import pytest

from evalkit.agreement import ConfusionMatrix, agreement, cohen_kappa, cohen_kappa_labels
from evalkit.cli.judges import add_judge_commands
from evalkit.errors import EvalkitError
from evalkit.judges import LABELS
from evalkit.runs import RECORDS, VERDICTS_DIR
from evalkit.suites import EnginePool, SessionConfig, prepare, run_plan

pytestmark = pytest.mark.unit


def test_kappa_wikipedia_worked_example():
    # Wikipedia, "Cohen's kappa", worked example: 50 grant proposals read by A and B;
    # yes/yes 20, A yes B no 5, A no B yes 10, no/no 15 -> p_o = 0.7, p_e = 0.5, kappa = 0.4.
    result = cohen_kappa(ConfusionMatrix(("yes", "no"), ((20, 5), (10, 15))))
    assert (result.n, result.observed, result.expected) == (50, pytest.approx(0.7), pytest.approx(0.5))
    assert result.kappa == pytest.approx(0.4)
    # by hand: p_e = (25/50)(30/50) + (25/50)(20/50)
    assert result.expected == pytest.approx(25 / 50 * 30 / 50 + 25 / 50 * 20 / 50)


def test_kappa_sas_skin_condition_example():
    # SAS/STAT User's Guide, PROC FREQ, "Getting Started: Agreement Study" (SkinCondition data,
    # two dermatologists, four ratings, n = 88): simple kappa 0.3449, ASE 0.0724,
    # 95% confidence limits 0.2030 and 0.4868.
    # https://documentation.sas.com/doc/en/pgmsascdc/9.4_3.5/statug/statug_freq_gettingstarted02.htm
    counts = ((10, 4, 1, 0), (5, 10, 12, 2), (2, 4, 12, 5), (0, 2, 6, 13))
    result = cohen_kappa(ConfusionMatrix(("terrible", "poor", "marginal", "clear"), counts))
    assert result.n == 88
    assert round(result.kappa, 4) == 0.3449
    assert round(result.standard_error, 4) == 0.0724
    assert (round(result.ci[0], 4), round(result.ci[1], 4)) == (0.2030, 0.4868)


@pytest.mark.parametrize("a, b, kappa", [
    (["r", "c", "r", "c"], ["r", "c", "r", "c"], 1.0),        # perfect agreement
    (["r", "c", "r", "c"], ["c", "r", "c", "r"], -1.0),       # perfect disagreement, balanced margins
    (["r", "r", "c", "c"], ["r", "c", "r", "c"], 0.0),        # agreement at chance level (p_o = p_e = 0.5)
    (["r", "r", "r", "c"], ["r", "r", "c", "c"], 0.5),        # p_o = 3/4, p_e = 3/4*2/4 + 1/4*2/4 = 1/2
])
def test_kappa_hand_computed(a, b, kappa):
    assert cohen_kappa_labels(a, b).kappa == pytest.approx(kappa)


def test_kappa_undefined_when_both_use_one_label():
    result = cohen_kappa_labels(["r", "r"], ["r", "r"])
    assert result.kappa is None and result.observed == 1.0 and result.ci is None
    with pytest.raises(ValueError, match="n = 0"):
        cohen_kappa(ConfusionMatrix.from_labels([], []))


def test_confusion_matrix_orientation():
    matrix = ConfusionMatrix.from_labels(["refusal", "refusal", "compliance"], ["refusal", "unclear", "refusal"],
                                         order=LABELS)
    assert matrix.categories == ("refusal", "compliance", "unclear")  # evalkit's label order
    assert matrix.counts == ((1, 0, 1), (1, 0, 0), (0, 0, 0))  # rows: first judge


class Rec:
    def __init__(self, index, behavior_id, slot, verdicts):
        self.index, self.behavior_id, self.slot, self.verdicts = index, behavior_id, slot, verdicts


def test_agreement_excludes_errors_and_lists_disagreements():
    records = [Rec(0, "b1", "free", {"x": "refusal", "y": "refusal", "z": "refusal"}),
               Rec(1, "b1", "paid", {"x": "compliance", "y": "refusal", "z": "compliance"}),
               Rec(2, "b2", "free", {"x": "error", "y": "error", "z": "error"}),
               Rec(3, "b2", "paid", {"x": "n/a", "y": "compliance", "z": "compliance"})]
    report = agreement(records, ["x", "y", "z"])
    xy, xz, yz = report.pairs
    assert (xy.kappa.n, xy.excluded) == (2, 2)
    assert (yz.kappa.n, yz.excluded) == (3, 1)
    assert xz.kappa.kappa == pytest.approx(1.0)
    assert [d.index for d in report.disagreements] == [1, 3]
    assert report.disagreeing_behaviors == ["b1", "b2"]
    assert report.label_counts["x"] == {"refusal": 1, "compliance": 1, "error": 1, "n/a": 1}
    json.dumps(report.as_dict())
    with pytest.raises(ValueError, match="lack verdicts of w"):
        agreement(records, ["x", "w"])


@pytest.fixture
def stored_run(synthetic_csv, tmp_path):
    session = prepare(SessionConfig(models=("study-pilot",), harmbench=str(synthetic_csv), suites=("replication",),
                                    pairs=("free-vs-paid",), results_dir=str(tmp_path / "results")))
    return run_plan(session, session.plans[0], EnginePool()).run_dir


def run_command(*argv):
    parser = argparse.ArgumentParser(prog="evalkit")
    add_judge_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_agree_command_rejudges_stored_generations_and_prints_no_text(stored_run, capsys):
    assert run_command("judges", "agree", str(stored_run), "--judges", "refusal,seed,vote",
                       "--vote-judges", "refusal,seed") == 0
    out = capsys.readouterr().out
    assert "refusal    seed" in out and "kappa" in out
    texts = [json.loads(line)["response"]["text"] for line in (stored_run / RECORDS).read_text().splitlines()]
    assert not any(t and t in out for t in texts)
    assert "[Start of Answer]" not in out and "placeholder" not in out
    assert [p.name.split("-")[0] for p in (stored_run / VERDICTS_DIR).iterdir()] == ["vote"]  # cached
    assert run_command("judges", "agree", str(stored_run), "--judges", "refusal,seed", "--json") == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["judges"] == ["refusal", "seed"] and payload["pairs"][0]["n"] == payload["n_items"]


@pytest.mark.parametrize("argv, fragment", [
    (("--judges", "refusal"), "at least two judges"),
    (("--judges", "refusal,refusal"), "listed twice"),
    (("--judges", "refusal,training-trace"), "do not label the same thing"),
    (("--judges", "refusal,oracle"), "unknown judge 'oracle'"),
    # listed all disagreements but the last, then "... N+1 more"
    (("--judges", "refusal,seed", "--max-listed", "-1"), "option --max-listed: must be at least 0, got -1"),
])
def test_agree_command_errors(stored_run, argv, fragment):
    with pytest.raises(EvalkitError, match=fragment):
        run_command("judges", "agree", str(stored_run), *argv)


def test_agreement_statistics_live_in_stats():
    from evalkit import agreement, scoring, stats
    assert agreement.cohen_kappa is stats.cohen_kappa and agreement.ConfusionMatrix is stats.ConfusionMatrix
    assert scoring.Rate is stats.Rate
    assert stats.ConfusionMatrix.from_labels(["b", "a"], ["a", "c"]).categories == ("a", "b", "c")  # no order given


def test_a_tiny_alpha_gives_a_finite_kappa_interval():
    # 1 - alpha/2 rounded to 1 and NormalDist raised StatisticsError (`judges score --alpha 1e-300`)
    kappa = cohen_kappa(ConfusionMatrix(("yes", "no"), ((20, 5), (10, 15))), alpha=1e-300)
    low, high = kappa.ci
    assert -1.0 <= low < kappa.kappa < high <= 1.0
