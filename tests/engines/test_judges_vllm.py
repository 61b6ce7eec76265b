"""The model judges end to end on the real vLLM engine (CPU), with the tiny random-weight
Llama as the judge model. Its outputs are meaningless, so most verdicts are `unclear`:
what is checked is the plumbing (template selection, truncation with the judge model's
own tokenizer, one greedy output token, engine errors, n/a without asking the model) and
that every verdict is exactly what the strict parser makes of the engine's output.

One extra vLLM instance is booted, by the classifier judge itself (max_model_len 2048:
the classifier template alone is ~450 tiny-tokenizer tokens, plus 512 of response); the
rubric judges reuse its weights with their own sampling settings.
"""

from __future__ import annotations

import pytest

from evalkit.datasets import Behavior
from evalkit.engines import Response, create_engine
from evalkit.framings import Prompt
from evalkit.judges import COMPLIANCE, ERROR, FLAGGED, NOT_APPLICABLE, REFUSAL, UNCLEAR
from evalkit.judges.harmbench import HarmBenchClassifierJudge, parse_classifier_output
from evalkit.judges.llm import LLMRubricJudge, TrainingTraceLLMJudge, parse_rubric_answer
from evalkit.protocols import Request

from .conftest import make_behaviors

pytestmark = pytest.mark.vllm
JUDGE_MODEL_LEN = 2048

STANDARD = make_behaviors(2)
CONTEXTUAL = Behavior("synthetic_ctx", "Rewrite the message for a city report", "contextual", "misc", ("context",),
                      "The water policy of the city changed last year and the public report was late.")
COPYRIGHT = Behavior("synthetic_cpy", "Write the lyrics of a song about the night", "copyright", "copyright",
                     ("hash_check",))
BEHAVIORS = {b.behavior_id: b for b in (*STANDARD, CONTEXTUAL, COPYRIGHT)}
WORDS = "the model answer is a story about the city and its water and the people who live there".split()


class Recording:
    """Wraps an engine and keeps what it was asked and what it answered."""

    def __init__(self, engine):
        self.engine, self.requests, self.outputs = engine, [], []
        self.name = engine.name

    def generate(self, requests):
        outputs = self.engine.generate(requests)
        self.requests += list(requests)
        self.outputs += list(outputs)
        return outputs

    def describe(self):
        return self.engine.describe()

    def close(self):
        self.engine.close()


def request(behavior_id, index=0):
    return Request(index, behavior_id, "", "", 0, 0, Prompt("raw", (), ""))


@pytest.fixture(scope="module")
def classifier(tiny_model_dir):
    engines = []
    judge = HarmBenchClassifierJudge(behaviors=BEHAVIORS, engine="vllm", model=str(tiny_model_dir),
                                     engine_options={"max_model_len": JUDGE_MODEL_LEN},
                                     engine_factory=lambda cfg: engines.append(Recording(create_engine(cfg)))
                                     or engines[-1])
    yield judge, engines
    judge.close()


def test_classifier_judge_on_vllm(classifier, tiny_tokenizer):
    judge, engines = classifier
    long_answer = " ".join(WORDS[i % len(WORDS)] for i in range(2500))
    assert len(tiny_tokenizer.encode(long_answer)) > JUDGE_MODEL_LEN  # untruncated it could not fit at all
    requests = [request(STANDARD[0].behavior_id, 0), request(STANDARD[1].behavior_id, 1),
                request(CONTEXTUAL.behavior_id, 2), request(COPYRIGHT.behavior_id, 3),
                request(STANDARD[0].behavior_id, 4), request(STANDARD[1].behavior_id, 5)]
    responses = [Response(text=long_answer), Response(text="The story of the city is short."),
                 Response(text="A formal note for the report."), Response(text="la la la"),
                 Response(text="", reasoning="thinking that was cut off"), Response(text="", error="HTTP 500")]
    verdicts = judge.judge_batch(requests, responses)
    labels = [v.label for v in verdicts]
    assert labels[3:] == [NOT_APPLICABLE, UNCLEAR, ERROR]
    (engine,) = engines  # booted once, on the first verdict
    assert len(engine.requests) == 3  # copyright, trace-only and failed responses never reach the model
    for verdict, output in zip(verdicts[:3], engine.outputs):
        assert output.error is None and output.output_tokens == 1  # one greedy token
        assert verdict.label in (COMPLIANCE, REFUSAL, UNCLEAR)
        assert verdict == parse_classifier_output(output.text)  # the verdict is the parse, nothing else
    long_prompt, short_prompt, contextual_prompt = (r.prompt.text for r in engine.requests)
    generation = long_prompt.split("Generation:\n", 1)[1].split("\n\n---\nRules:", 1)[0]
    assert long_answer.startswith(generation) and generation != long_answer
    assert len(tiny_tokenizer.encode(generation)) <= 512 + 1  # HarmBench's 512 tokens (re-encoding may merge one)
    assert "Generation:\nThe story of the city is short." in short_prompt
    assert f"[CONTEXT]:\n{CONTEXTUAL.context}\n\n[BEHAVIOR]:\n{CONTEXTUAL.behavior}" in contextual_prompt
    assert "[CONTEXT]" not in short_prompt
    described = judge.describe()
    assert described["classifier"]["max_tokens"] == 1 and len(described["template_sha256"]) == 64


def test_classifier_judge_is_deterministic(classifier):
    judge, engines = classifier
    pairs = [(request(STANDARD[0].behavior_id), Response(text="One more answer about the water."))]
    first = judge.judge_batch(*zip(*pairs))
    judge._memo.clear()  # ask the model again, not the memo
    calls = len(engines[0].requests)
    again = judge.judge_batch(*zip(*pairs))
    assert len(engines[0].requests) == calls + 1 and again == first


@pytest.fixture(scope="module")
def shared_weights(classifier):
    """The classifier's loaded model, for the rubric judges: a second vLLM instance would cost
    another boot on a 2-core machine. Each rubric judge still gets its own sampling settings."""
    from evalkit.engines._vllm_common import BatchGenerator, VLLMSettings, request_payload, response_from_payload

    judge, engines = classifier
    if not engines:
        judge.judge(request(STANDARD[0].behavior_id), Response(text="boot"))
    llm = engines[0].engine._generator.llm
    asked = []

    class SharedWeightsEngine:
        name = "vllm"

        def __init__(self, cfg):
            asked.append(cfg)
            self.generator = BatchGenerator(VLLMSettings.from_config(cfg), llm=llm)

        def generate(self, requests):
            payloads = self.generator.generate([request_payload(r) for r in requests])
            return [response_from_payload(p) for p in payloads]

        def describe(self):
            return {"engine": "vllm", "shared": True}

        def close(self):
            pass  # the weights belong to the classifier fixture

    return SharedWeightsEngine, asked


def test_rubric_judges_on_vllm(shared_weights, tiny_model_dir):
    factory, asked = shared_weights
    outputs = []

    def recording(cfg):
        engine = Recording(factory(cfg))
        outputs.append(engine)
        return engine

    llm_judge = LLMRubricJudge(behaviors=BEHAVIORS, model=str(tiny_model_dir), engine="vllm",
                               engine_options={"max_model_len": JUDGE_MODEL_LEN}, engine_factory=recording)
    trace_judge = TrainingTraceLLMJudge(behaviors=BEHAVIORS, model=str(tiny_model_dir), engine="vllm",
                                        engine_options={"max_model_len": JUDGE_MODEL_LEN}, engine_factory=recording)
    responses = [Response(text="The story of the city.", reasoning="my responses are logged and used for training"),
                 Response(text="A formal note.", reasoning="the user asks for a note"),
                 Response(text="No trace here.")]
    ids = [STANDARD[0].behavior_id, CONTEXTUAL.behavior_id, STANDARD[1].behavior_id]
    answer_verdicts = llm_judge.judge_batch([request(b, i) for i, b in enumerate(ids)], responses)
    trace_verdicts = trace_judge.judge_batch([request(b, i) for i, b in enumerate(ids)], responses)
    assert [c.max_tokens for c in asked] == [8, 8] and all(c.temperature == 0.0 for c in asked)
    answer_engine, trace_engine = outputs
    assert len(answer_engine.requests) == 3 and len(trace_engine.requests) == 2  # no trace: n/a, not asked
    assert trace_verdicts[2].label == NOT_APPLICABLE
    for verdict, output in zip(answer_verdicts, answer_engine.outputs):
        assert output.error is None and 1 <= output.output_tokens <= 8
        assert (verdict.label, verdict.reason) == parse_rubric_answer(output.text, dict(llm_judge.rubric.answers))
    for verdict, output in zip(trace_verdicts, trace_engine.outputs):
        assert (verdict.label, verdict.reason) == parse_rubric_answer(output.text, dict(trace_judge.rubric.answers))
        assert verdict.label in (FLAGGED, "clean", UNCLEAR)
    # the prompts were rendered through the judge model's chat template, framing-free
    sent = [r.prompt for r in answer_engine.requests]
    assert all(p.format == "chat" and p.messages[0].role == "system" for p in sent)
    assert "[CONTEXT]\n" + CONTEXTUAL.context in sent[1].messages[-1].content
    assert "logged and used for training" in trace_engine.requests[0].prompt.messages[-1].content
    assert "logged" not in sent[0].messages[-1].content  # the answer judge never sees the trace
