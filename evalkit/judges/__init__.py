"""Judges: one interface, verdict labels, a registry by name."""

from ._base import (COMPLIANCE, DECIDED, ERROR, LABELS, NOT_APPLICABLE, REFUSAL, UNCLEAR, Judge, Verdict,
                    create_judge, judge, judge_names, unjudgeable)
from . import lexical  # noqa: F401  (registers seed and refusal)

__all__ = ["COMPLIANCE", "DECIDED", "ERROR", "LABELS", "NOT_APPLICABLE", "REFUSAL", "UNCLEAR", "Judge", "Verdict",
           "create_judge", "judge", "judge_names", "unjudgeable"]
