"""Judges: one interface, verdict labels, a registry by name.

Registered: ``seed`` (the study's rule), ``refusal`` (default lexical), ``training-trace``
(lexical reasoning-trace detector), ``harmbench-cls`` (HarmBench's classifier on an
engine), ``llm`` and ``training-trace-llm`` (rubric judges on an engine), ``vote``.
Their accuracy against human labels is data (``accuracy``, ``judge_accuracy.toml``).
"""

from . import (
                    harmbench,  # noqa: F401  (registers harmbench-cls)
                    lexical,  # noqa: F401  (registers seed and refusal)
                    llm,  # noqa: F401  (registers llm and training-trace-llm)
                    traces,  # noqa: F401  (registers training-trace)
                    vote,  # noqa: F401  (registers vote)
)
from ._base import (
                    CLEAN,
                    COMPLIANCE,
                    DECIDED,
                    ERROR,
                    FLAGGED,
                    LABELS,
                    NOT_APPLICABLE,
                    REFUSAL,
                    UNCLEAR,
                    Judge,
                    Verdict,
                    create_judge,
                    judge,
                    judge_all,
                    judge_factory,
                    judge_names,
                    positive_label,
                    unjudgeable,
)
from ._model import EngineBackedJudge
from .config import TIE_RULES, JudgeSettings, build_judges, close_judges, validate_judges

__all__ = ["CLEAN", "COMPLIANCE", "DECIDED", "ERROR", "FLAGGED", "LABELS", "NOT_APPLICABLE", "REFUSAL", "UNCLEAR",
           "Judge", "Verdict", "create_judge", "judge", "judge_all", "judge_factory", "judge_names", "positive_label",
           "unjudgeable", "TIE_RULES", "EngineBackedJudge",
           "JudgeSettings", "build_judges", "close_judges", "validate_judges"]
