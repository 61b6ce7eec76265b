"""What the model-based judges share: a judge engine on any evalkit engine, booted on
first use, judging in batches, with verdicts memoised per (behavior, response).

The judge engine is an ordinary evalkit Engine (vLLM in-process, Modal, an
OpenAI-compatible server) built from an EngineConfig with the judge's own decoding
(greedy, its own max tokens). Judges see the behavior (from the dataset, by id) and the
response, never the framing: the prompts sent to the judge engine are built from those
two alone.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..datasets import Behavior
from ..engines import Engine, EngineConfig, EngineRequest, Response, create_engine, engine_factory
from ..errors import ConfigError
from ..framings import Prompt
from ..options import ENGINE as ENGINE_OPTIONS
from ..protocols import Request
from ._base import ERROR, Verdict, unjudgeable

# a judged response's identity: (behavior id, response text, reasoning)
MemoKey = tuple[str, str, str]

MEMO_SIZE = 8192  # verdicts kept for re-use (a vote asks its members again for the same response)
JUDGE_BATCH = 32  # responses per judge-engine call


def split_judge_options(judge_name: str, engine: str, options: Mapping[str, str],
                        judge_keys: Sequence[str]) -> tuple[dict[str, str], dict[str, Any]]:
    """Split ``--judge-option`` pairs into the judge's own keys and the judge engine's
    options; engine option values are converted with the option table's types. A key
    that is neither is an error naming it and the keys that are valid."""
    engine_keys = {o.dest: o for o in ENGINE_OPTIONS if o.engine_option and (not o.engines or engine in o.engines)}
    own, engine_options = {}, {}
    for key, value in options.items():
        if key in judge_keys:
            own[key] = value
        elif key in engine_keys:
            option = engine_keys[key]
            try:
                engine_options[key] = option.type(value) if option.type is not None else True
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"key {key!r}: {exc}", option="--judge-option") from None
            if option.choices and engine_options[key] not in option.choices:
                raise ConfigError(f"key {key!r}: choose from {', '.join(option.choices)}", option="--judge-option")
        else:
            raise ConfigError(
                f"unknown key {key!r} for --judge {judge_name} on --judge-engine {engine}; judge keys: "
                f"{', '.join(judge_keys) or 'none'}; engine keys: {', '.join(sorted(engine_keys)) or 'none'}",
                option="--judge-option")
    return own, engine_options


def judge_engine_config(engine: str, model: str, max_tokens: int, options: Mapping[str, Any]) -> EngineConfig:
    """Greedy decoding, seed 0: a judge's verdict must not depend on sampling."""
    config = EngineConfig(engine=engine, model=model, seed=0, max_tokens=max_tokens, temperature=0.0,
                          options=dict(options))
    engine_factory(engine).validate(config)  # unknown engine: ConfigError naming --judge-engine below
    return config


def check_engine_name(engine: str) -> None:
    try:
        engine_factory(engine)
    except ConfigError as exc:
        raise ConfigError(str(exc).split(": ", 1)[-1], option="--judge-engine") from None


class EngineBackedJudge:
    """Base of the model judges. Subclasses implement ``prepare`` (response -> a prompt
    for the judge engine, or a verdict without asking it) and ``parse`` (judge-engine
    output -> verdict)."""

    name = "model"

    def __init__(self, engine_config: EngineConfig, behaviors: Mapping[str, Behavior],
                 engine_factory: Callable[[EngineConfig], Engine] = create_engine) -> None:
        self.engine_config = engine_config
        self.behaviors = dict(behaviors)
        self._engine_factory = engine_factory
        self._engine: Engine | None = None
        self._memo: OrderedDict[MemoKey, Verdict] = OrderedDict()

    # ------------------------------------------------------------ subclass hooks

    def prepare(self, behavior: Behavior, response: Response) -> Prompt | Verdict:
        raise NotImplementedError

    def parse(self, output: Response) -> Verdict:
        raise NotImplementedError

    # ------------------------------------------------------------ judging

    def behavior(self, behavior_id: str) -> Behavior:
        try:
            return self.behaviors[behavior_id]
        except KeyError:
            raise ConfigError(f"judge {self.name!r} has no behavior {behavior_id!r}: it needs the dataset the run "
                              "was generated from", option="--harmbench") from None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = self._engine_factory(self.engine_config)
        return self._engine

    def judge(self, request: Request, response: Response) -> Verdict:
        return self.judge_batch([request], [response])[0]

    def judge_batch(self, requests: Sequence[Request], responses: Sequence[Response]) -> list[Verdict]:
        """Verdicts for many responses, with the judge-engine calls batched."""
        if len(requests) != len(responses):
            raise ValueError("requests and responses differ in length")
        verdicts: list[Verdict | None] = [None] * len(requests)
        pending: list[tuple[int, MemoKey, Prompt]] = []
        for i, (request, response) in enumerate(zip(requests, responses)):
            bad = unjudgeable(response, self.name)
            if bad:
                verdicts[i] = bad
                continue
            key = (request.behavior_id, response.text, response.reasoning)
            if key in self._memo:
                verdicts[i] = self._memo[key]
                continue
            prepared = self.prepare(self.behavior(request.behavior_id), response)
            if isinstance(prepared, Verdict):
                verdicts[i] = self._remember(key, prepared)
            else:
                pending.append((i, key, prepared))
        for start in range(0, len(pending), JUDGE_BATCH):
            chunk = pending[start:start + JUDGE_BATCH]
            # The judge engine sees a prompt and a behavior id, nothing about the framing.
            judge_requests = [EngineRequest(n, prompt, requests[i].behavior_id)
                              for n, (i, _key, prompt) in enumerate(chunk)]
            outputs = self.engine.generate(judge_requests)
            if len(outputs) != len(chunk):
                raise RuntimeError(f"judge engine returned {len(outputs)} outputs for {len(chunk)} prompts")
            for (i, key, _prompt), output in zip(chunk, outputs):
                if output.error is not None:
                    verdict = Verdict(ERROR, self.name, "judge-engine-error")  # not memoised: may succeed later
                    verdicts[i] = verdict
                    continue
                verdicts[i] = self._remember(key, self.parse(output))
        missing = [i for i, v in enumerate(verdicts) if v is None]
        if missing:
            raise RuntimeError(f"no verdict for responses {missing[:5]}")
        return verdicts  # type: ignore[return-value]

    def _remember(self, key: MemoKey, verdict: Verdict) -> Verdict:
        self._memo[key] = verdict
        if len(self._memo) > MEMO_SIZE:
            self._memo.popitem(last=False)
        return verdict

    def engine_description(self) -> dict[str, Any]:
        """The judge engine as the manifest records it, without booting it."""
        c = self.engine_config
        return {"engine": c.engine, "model": c.model, "max_tokens": c.max_tokens, "temperature": c.temperature,
                "seed": c.seed, "options": dict(sorted(c.options.items()))}

    def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()
