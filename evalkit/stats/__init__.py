"""Statistics for paired binary outcomes: one behavior, two framings, two verdicts.

Orientation used everywhere: a = refused under both framings, b = refused under free only,
c = refused under paid only, d = refused under neither; the compliance gap is
dC = p_paid - p_free = (c - b) / n. This package imports nothing else from evalkit.

Names load on first use (PEP 562), so ``from evalkit import stats`` costs nothing until a
statistic is computed: ``evalkit --help`` and ``pytest --help`` never load numpy or scipy.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> the submodule defining it
_EXPORTS = {
    "ConfusionMatrix": "_agreement", "Kappa": "_agreement", "Rate": "_agreement", "cohen_kappa": "_agreement",
    "cohen_kappa_labels": "_agreement",
    "cluster_bootstrap_gap": "_bootstrap",
    "jsonable": "_serialise",
    "GapChange": "_change", "RefusalChange": "_change", "gap_change": "_change", "mover_difference": "_change",
    "refusal_change": "_change",
    "CrossoverResult": "_crossover", "EffectEstimate": "_crossover", "PrescottTest": "_crossover",
    "confounded_crossover_message": "_crossover", "crossover_analysis": "_crossover",
    "tost_paired": "_equivalence", "equivalence_decision": "_equivalence", "EQUIVALENT": "_equivalence",
    "NOT_EQUIVALENT": "_equivalence", "INCONCLUSIVE": "_equivalence",
    "CI_METHODS": "_intervals", "agresti_min_interval": "_intervals", "bonett_price_interval": "_intervals",
    "gap_interval": "_intervals", "newcombe_interval": "_intervals", "tango_interval": "_intervals",
    "tango_score": "_intervals", "wald_interval": "_intervals", "wilson_interval": "_intervals",
    "mcnemar_chi2": "_mcnemar", "mcnemar_exact_p": "_mcnemar", "mcnemar_midp": "_mcnemar",
    "CorrectedGap": "_misclassification", "corrected_gap": "_misclassification",
    "mover_ratio_interval": "_misclassification", "newcombe_difference_interval": "_misclassification",
    "rogan_gladen": "_misclassification", "rogan_gladen_interval": "_misclassification",
    "youden_interval": "_misclassification",
    "MULTIPLICITY_METHODS": "_multiplicity", "adjust": "_multiplicity", "benjamini_hochberg": "_multiplicity",
    "holm": "_multiplicity",
    "PairedResult": "_paired", "paired_analysis": "_paired",
    "POWER_TESTS": "_power", "mcnemar_power": "_power", "min_detectable_gap": "_power",
    "min_detectable_gap_over_noise": "_power",
    "PairedTable": "_table",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:  # a statistic or a class: typed by the imports above for checkers
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
