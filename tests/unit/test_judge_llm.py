"""The rubric judges (``llm``, ``training-trace-llm``) without a model: rubric data and its
validation, strict parsing, prompt construction, and plumbing through a scripted engine."""

import pytest

from evalkit.datasets import Behavior
from evalkit.engines import Response
from evalkit.errors import ConfigError
from evalkit.framings import Prompt
from evalkit.judges import (
    CLEAN,
    COMPLIANCE,
    ERROR,
    FLAGGED,
    NOT_APPLICABLE,
    REFUSAL,
    UNCLEAR,
    JudgeSettings,
    build_judges,
)
from evalkit.judges.llm import LLMRubricJudge, TrainingTraceLLMJudge, load_rubric, parse_rubric_answer
from evalkit.protocols import Request
from tests.conftest import ScriptedEngine

pytestmark = pytest.mark.unit
STANDARD = Behavior("std_1", "Write a limerick about a teapot", "standard", "harmless_test")
CONTEXTUAL = Behavior("ctx_1", "Translate the greeting", "contextual", "fiction_test", ("context",), "Hello there!")
BEHAVIORS = {b.behavior_id: b for b in (STANDARD, CONTEXTUAL)}
ANSWERS = {"REFUSAL": REFUSAL, "COMPLIANCE": COMPLIANCE, "UNCLEAR": UNCLEAR}


def request(behavior_id="std_1", index=0):
    return Request(index, behavior_id, "", "", 0, 0, Prompt("raw", (), ""))


def rubric_judge(cls=LLMRubricJudge, reply=lambda r: Response(text="REFUSAL"), **kwargs):
    engine = ScriptedEngine(reply)
    return cls(behaviors=BEHAVIORS, model="judge-model", engine_factory=lambda cfg: engine, **kwargs), engine


@pytest.mark.parametrize("output, label, reason", [
    ("REFUSAL", REFUSAL, "answer:REFUSAL"),
    ("compliance", COMPLIANCE, "answer:COMPLIANCE"),
    ("  **Refusal.**  ", REFUSAL, "answer:REFUSAL"),
    ("Answer: COMPLIANCE", COMPLIANCE, "answer:COMPLIANCE"),
    ("UNCLEAR", UNCLEAR, "answer:UNCLEAR"),
    ("REFUSAL\n\nThe assistant declines the request.", REFUSAL, "answer:REFUSAL"),
    ("", UNCLEAR, "empty-judge-output"),
    ("The response is a refusal", UNCLEAR, "malformed-judge-output"),
    ("REFUSAL or COMPLIANCE", UNCLEAR, "malformed-judge-output"),
    ("REFUSAL\nactually COMPLIANCE", UNCLEAR, "conflicting-judge-output"),
    ("REFUSE", UNCLEAR, "malformed-judge-output"),
    ("yes", UNCLEAR, "malformed-judge-output"),
])
def test_parsing_is_strict(output, label, reason):
    assert parse_rubric_answer(output, ANSWERS) == (label, reason)


def test_builtin_rubrics_load():
    refusal, trace = load_rubric("rubric_refusal.toml"), load_rubric("rubric_training_trace.toml")
    assert (refusal.reads, refusal.positive_label) == ("answer", REFUSAL)
    assert (trace.reads, trace.positive_label) == ("reasoning", FLAGGED)
    assert dict(trace.answers) == {"FLAGGED": FLAGGED, "CLEAN": CLEAN, "UNCLEAR": UNCLEAR}
    assert len({refusal.sha256, trace.sha256}) == 2


RUBRIC = """[rubric]
id = "t"
version = "1"
reads = "answer"
positive_label = "refusal"
max_tokens = 4
max_response_chars = 20
system = "grade it"
user = "{behavior} / {response}"
[rubric.answers]
R = "refusal"
C = "compliance"
"""


@pytest.mark.parametrize("change, fragment", [
    (('R = "refusal"', 'R = "rejected"'), r"\[rubric.answers\].R = 'rejected' is not a label"),
    (('user = "{behavior} / {response}"', 'user = "{behavior}"'), r"\[rubric\].user must contain \{response\}"),
    (('user = "{behavior} / {response}"', 'user = "{framing} {response}"'), "unknown placeholder {framing}"),
    (('positive_label = "refusal"', 'positive_label = "flagged"'), "positive_label 'flagged' is not one of"),
    (('reads = "answer"', 'reads = "prompt"'), r"\[rubric\].reads must be one of answer, reasoning"),
    (('max_tokens = 4', 'max_tokens = "four"'), r"\[rubric\].max_tokens must be a non-empty int"),
    (('system = "grade it"', 'system = "grade {response}"'), "system must be a string without placeholders"),
])
def test_rubric_validation_names_file_and_key(tmp_path, change, fragment):
    path = tmp_path / "rubric.toml"
    path.write_text(RUBRIC.replace(*change))
    with pytest.raises(ConfigError, match=fragment) as info:
        load_rubric(str(path))
    assert str(path) in str(info.value)


def test_custom_rubric_end_to_end(tmp_path):
    path = tmp_path / "rubric.toml"
    path.write_text(RUBRIC)
    judge, engine = rubric_judge(rubric=str(path), reply=lambda r: Response(text="C"))
    verdict = judge.judge(request(), Response(text="a long answer that will be cut here: the rest is hidden"))
    assert verdict.label == COMPLIANCE
    (sent,) = engine.calls[0]
    assert sent.prompt.format == "chat"
    assert [m.role for m in sent.prompt.messages] == ["system", "user"]
    assert sent.prompt.messages[1].content == "Write a limerick about a teapot / a long answer that w"  # 20 chars
    assert judge.describe()["rubric_source"] == str(path)


def test_llm_judge_plumbing_and_labels():
    replies = iter(["COMPLIANCE", "gibberish", "REFUSAL"])
    judge, engine = rubric_judge(reply=lambda r: Response(text=next(replies)))
    verdicts = judge.judge_batch(
        [request("std_1", 0), request("ctx_1", 1), request("std_1", 2), request("std_1", 3), request("std_1", 4)],
        [Response(text="Sure, here it is."), Response(text="Bonjour."), Response(text="I can't."),
         Response(text="", reasoning="unfinished trace"), Response(text="", error="boom")])
    assert [v.label for v in verdicts] == [COMPLIANCE, UNCLEAR, REFUSAL, UNCLEAR, ERROR]
    assert verdicts[1].reason == "malformed-judge-output"
    sent = engine.calls[0]
    assert len(sent) == 3
    user = [r.prompt.messages[-1].content for r in sent]
    assert "[CONTEXT]\nHello there!" in user[1] and "[CONTEXT]" not in user[0]
    assert "I can't." in user[2]
    cfg = judge.engine_config
    assert (cfg.max_tokens, cfg.temperature) == (8, 0.0)


def test_answer_judge_never_sees_the_trace_and_trace_judge_never_sees_the_answer():
    answer_judge, answer_engine = rubric_judge()
    trace_judge, trace_engine = rubric_judge(TrainingTraceLLMJudge, reply=lambda r: Response(text="FLAGGED"))
    response = Response(text="ANSWER-TEXT", reasoning="TRACE-TEXT")
    answer_judge.judge(request(), response)
    assert trace_judge.judge(request(), response).label == FLAGGED
    answer_prompt = answer_engine.calls[0][0].prompt.messages[-1].content
    trace_prompt = trace_engine.calls[0][0].prompt.messages[-1].content
    assert "ANSWER-TEXT" in answer_prompt and "TRACE-TEXT" not in answer_prompt
    assert "TRACE-TEXT" in trace_prompt and "ANSWER-TEXT" not in trace_prompt
    assert trace_judge.judge(request(), Response(text="just an answer")).label == NOT_APPLICABLE
    assert len(trace_engine.calls) == 1  # no trace: no judge call
    assert trace_judge.positive_label == FLAGGED and answer_judge.positive_label == REFUSAL


def test_from_settings():
    with pytest.raises(ConfigError, match="option --judge-model: --judge llm needs a judge model"):
        build_judges(["llm"], JudgeSettings())
    settings = JudgeSettings(engine="openai", model="served", options=(("base_url", "http://127.0.0.1:9/v1"),
                                                                       ("concurrency", "2")))
    llm, trace = build_judges(["llm", "training-trace-llm"], settings, BEHAVIORS)
    assert llm.describe()["judge_engine"]["options"] == {"base_url": "http://127.0.0.1:9/v1", "concurrency": 2}
    assert trace.describe()["rubric_id"] == "training-trace"
    with pytest.raises(ConfigError, match="cannot read the rubric"):
        build_judges(["llm"], JudgeSettings(model="m", options=(("rubric", "/nonexistent/r.toml"),)))
