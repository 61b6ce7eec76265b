"""Scoring judges against human labels (``evalkit.scoring``): the numbers, partial refusals
apart, kappa against the human, labelled files (CSV and JSONL) and their errors, and the
``evalkit judges score`` command on the in-house corpus."""

import json
from http.server import BaseHTTPRequestHandler

import pytest

from evalkit.agreement import ConfusionMatrix, cohen_kappa
from evalkit.cli import main
from evalkit.errors import InputError
from evalkit.scoring import load_labelled, parse_label_map, score_judge, score_sources
from evalkit.stats import wilson_interval
from tests.conftest import FIXTURES, serve_http

pytestmark = pytest.mark.unit
CORPUS = FIXTURES / "judge_corpus" / "responses.jsonl"


def test_scores_count_partial_refusals_apart():
    human = ["refusal", "refusal", "refusal", "compliance", "compliance", "compliance", "partial", "partial",
             "unclear"]
    judged = ["refusal", "compliance", "unclear", "compliance", "unclear", "refusal", "refusal", "compliance",
              "refusal"]
    s = score_judge("j", human, judged)
    assert (s.accuracy.successes, s.accuracy.n) == (2, 6)
    assert (s.sensitivity.successes, s.sensitivity.n) == (1, 3)
    assert (s.specificity.successes, s.specificity.n) == (1, 3)
    assert (s.not_refused.successes, s.not_refused.n) == (2, 3)  # unclear is "not refused" for the outcome
    assert s.undecided == 2 and s.partial == {"refusal": 1, "compliance": 1} and s.human_unclear == 1
    assert s.confusion.categories == ("refusal", "compliance", "unclear")
    assert s.confusion.counts == ((1, 1, 1), (1, 1, 1))
    assert s.accuracy.interval == pytest.approx(wilson_interval(2, 6))


def test_kappa_against_the_human_is_cohens_kappa_of_the_square_table():
    # Cohen (1960)-style check on a 2x2 table: p_o = 0.85, p_e = 0.5*0.55 + 0.5*0.45 = 0.5, kappa = 0.7
    human = ["refusal"] * 50 + ["compliance"] * 50
    judged = ["refusal"] * 45 + ["compliance"] * 5 + ["refusal"] * 10 + ["compliance"] * 40
    s = score_judge("j", human, judged)
    assert s.kappa.kappa == pytest.approx(0.7)
    assert s.kappa.observed == pytest.approx(s.accuracy.value)  # agreement with the human is accuracy
    square = ConfusionMatrix.from_labels(human, judged, ("refusal", "compliance"))
    assert s.kappa.ci == pytest.approx(cohen_kappa(square).ci)


def test_unknown_human_label_and_length_mismatch_are_errors():
    with pytest.raises(ValueError, match="unknown human label"):
        score_judge("j", ["refused"], ["refusal"])
    with pytest.raises(ValueError, match="differ in length"):
        score_judge("j", ["refusal"], [])


def test_label_map_and_presets():
    assert parse_label_map("xstest")["2_full_refusal"] == "refusal"
    assert parse_label_map("Yes=refusal, no=compliance")["yes"] == "refusal"
    assert parse_label_map("yes=refusal,YES=refusal")["yes"] == "refusal"  # said twice alike: fine
    # the last of two contradicting mappings silently won
    for bad, fragment in (("yes", "RAW=LABEL"), ("yes=refused", "must be one of"),
                          ("1=refusal,1=compliance", "'1' is mapped twice, to refusal and to compliance")):
        with pytest.raises(InputError, match=fragment):
            parse_label_map(bad)


def test_csv_and_jsonl_load_with_sources(tmp_path):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("response,human,model\nI can't help.,R,a\nSure: [placeholder].,C,b\n", encoding="utf-8")
    items = load_labelled(csv_path, text_column="response", label_column="human",
                          label_map=parse_label_map("R=refusal,C=compliance"), group_column="model")
    assert [(i.source, i.row, i.label) for i in items] == [("a", 1, "refusal"), ("b", 2, "compliance")]
    jsonl = tmp_path / "labels.jsonl"
    jsonl.write_text('{"text": "I won\'t.", "label": "refusal"}\n\n{"text": "Here: [x]", "label": "partial"}\n')
    items = load_labelled(jsonl)
    assert [(i.source, i.row, i.label) for i in items] == [("labels", 1, "refusal"), ("labels", 3, "partial")]


@pytest.mark.parametrize("name, text, kwargs, fragment", [
    ("a.csv", "text,label\nhi,refusal\n", {"label_column": "human"}, "no column 'human'"),
    ("a.csv", "text,label\nhi,refusal\nho,maybe\n", {}, "row 2, column 'label': label 'maybe' is not in the label map"),
    ("a.jsonl", '{"text": "hi", "label": "refusal"}\n{"text": "hi"\n', {}, "row 2: not JSON"),
    ("a.jsonl", '["hi", "refusal"]\n', {}, "row 1: each line must be a JSON object"),
    ("a.jsonl", '{"text": ["hi"], "label": "refusal"}\n', {}, "column 'text': expected text"),
    ("a.jsonl", '{"text": "hi", "label": "refusal"}\n{"label": "refusal"}\n', {}, "row 2, column 'text': missing"),
    ("a.txt", "text,label\n", {}, "expected a .csv or .jsonl file"),
    ("a.csv", "text,label\n", {}, "no labelled rows"),
    # the last of two 'label' columns silently won
    ("a.csv", "text,label,label\nhi,refusal,compliance\n", {}, "row 0, column 'label': the header names it twice"),
    # a stray comma: the extra field was dropped, a short row read as empty text
    ("a.csv", "text,label\nhi,refusal,compliance\n", {}, "row 1: 3 fields, the header has 2"),
    ("a.csv", "label,text\nrefusal,hi\ncompliance\n", {}, "row 2: 1 fields, the header has 2"),
    # an empty response was judged (as an error) and scored as the judge's miss
    ("a.csv", "text,label\nhi,refusal\n  ,compliance\n", {}, "row 2, column 'text': empty response text"),
    ("a.jsonl", '{"text": "", "label": "refusal"}\n', {}, "row 1, column 'text': empty response text"),
])
def test_bad_files_are_errors_naming_file_row_and_column(tmp_path, name, text, kwargs, fragment):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=fragment) as caught:
        load_labelled(path, **kwargs)
    assert str(path) in str(caught.value)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        load_labelled(tmp_path / "nope.csv")


def test_sources_and_the_pooled_row():
    from evalkit.scoring import LabelledResponse
    items = [LabelledResponse("a", 1, "refusal", ""), LabelledResponse("b", 1, "compliance", "")]
    scores = score_sources(items, {"j": ["refusal", "refusal"]})
    assert [(s.source, s.accuracy.successes, s.accuracy.n) for s in scores] == [("a", 1, 1), ("b", 0, 1),
                                                                                 ("all", 1, 2)]


def test_command_on_the_in_house_corpus(capsys):
    argv = ["judges", "score", str(CORPUS), "--reasoning-column", "reasoning", "--judge", "refusal", "--judge",
            "seed", "--json"]
    assert main(argv) == 0
    payload = json.loads(capsys.readouterr().out)
    scores = {s["judge"]: s for s in payload["scores"]}
    # the same numbers as tests/unit/test_judge_corpus.py computes by hand
    assert scores["refusal"]["accuracy"]["n"] == 184 and scores["refusal"]["accuracy"]["successes"] >= 178
    assert scores["seed"]["accuracy"]["successes"] == 40
    assert main(argv[:-1] + ["--no-confusion"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("responses: 184 labelled responses (92 refusal, 92 compliance)")
    assert "[placeholder" not in out  # numbers only, never response text


@pytest.mark.parametrize("argv, fragment", [
    (["--judge", "training-trace"], "labels reasoning traces"),
    (["--judge", "nope"], "unknown judge"),
    (["--judge", ""], "option --judge: empty value"),  # scored no judge and exited 0
    (["--judge", "refusal", "--judge", "refusal"], "listed twice"),
    (["--alpha", "2"], "--alpha"),
    (["--label-map", "x"], "--label-map"),
    ([str(CORPUS)], "given twice"),  # the same file twice counted every response twice
    (["--judge", "llm", "--judge-model", "m"], "--prompt-column"),
])
def test_command_errors_are_one_line_and_exit_2(argv, fragment, capsys):
    assert main(["judges", "score", str(CORPUS), *argv]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1


class RubricJudgeServer(BaseHTTPRequestHandler):
    """An OpenAI-compatible judge model: REFUSAL when the judged response says "can't", else
    COMPLIANCE; it records the requests it was asked about."""

    prompts: list = []

    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        prompt = json.dumps(body)
        RubricJudgeServer.prompts.append(prompt)
        text = "REFUSAL" if "can't" in prompt else "COMPLIANCE"
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        data = json.dumps({"id": "x", "choices": [choice], "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data.encode())


def test_a_model_judge_is_scored_beside_the_lexical_ones(tmp_path, capsys):
    path = tmp_path / "labels.csv"
    path.write_text("prompt,completion,final_label\n"
                    "Write a limerick about tea,I can't write that.,2_full_refusal\n"
                    "Name a colour,Blue.,1_full_compliance\n"
                    "Explain rain,It rains when clouds cool. [placeholder],1_full_compliance\n", encoding="utf-8")
    RubricJudgeServer.prompts = []
    with serve_http(RubricJudgeServer) as url:
        argv = ["judges", "score", str(path), "--text-column", "completion", "--label-column", "final_label",
                "--label-map", "xstest", "--prompt-column", "prompt", "--judge", "refusal", "--judge", "llm",
                "--judge-engine", "openai", "--judge-model", "stub-judge", "--judge-option", f"base_url={url}/v1",
                "--json"]
        assert main(argv) == 0
    scores = {s["judge"]: s for s in json.loads(capsys.readouterr().out)["scores"]}
    assert scores["llm"]["accuracy"]["successes"] == 3 and scores["llm"]["accuracy"]["n"] == 3
    assert any("Write a limerick about tea" in p for p in RubricJudgeServer.prompts)  # the row's prompt is the behavior
