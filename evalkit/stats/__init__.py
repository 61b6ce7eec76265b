"""Statistics for paired binary outcomes: one behavior, two framings, two verdicts.

Orientation used everywhere: a = refused under both framings, b = refused under free only,
c = refused under paid only, d = refused under neither; the compliance gap is
dC = p_paid - p_free = (c - b) / n. This package imports nothing else from evalkit.
"""

from ._bootstrap import cluster_bootstrap_gap
from ._crossover import (
    CrossoverResult,
    EffectEstimate,
    PrescottTest,
    confounded_crossover_message,
    crossover_analysis,
)
from ._equivalence import tost_paired
from ._intervals import (
    CI_METHODS,
    agresti_min_interval,
    bonett_price_interval,
    gap_interval,
    newcombe_interval,
    tango_interval,
    tango_score,
    wald_interval,
    wilson_interval,
)
from ._mcnemar import mcnemar_chi2, mcnemar_exact_p, mcnemar_midp
from ._misclassification import (
    CorrectedGap,
    corrected_gap,
    mover_ratio_interval,
    newcombe_difference_interval,
    rogan_gladen,
    rogan_gladen_interval,
    youden_interval,
)
from ._multiplicity import MULTIPLICITY_METHODS, adjust, benjamini_hochberg, holm
from ._paired import PairedResult, paired_analysis
from ._power import POWER_TESTS, mcnemar_power, min_detectable_gap, min_detectable_gap_over_noise
from ._table import PairedTable

__all__ = [
    "CI_METHODS",
    "CorrectedGap",
    "MULTIPLICITY_METHODS",
    "POWER_TESTS",
    "CrossoverResult",
    "EffectEstimate",
    "PairedResult",
    "PairedTable",
    "PrescottTest",
    "adjust",
    "agresti_min_interval",
    "benjamini_hochberg",
    "bonett_price_interval",
    "cluster_bootstrap_gap",
    "confounded_crossover_message",
    "corrected_gap",
    "crossover_analysis",
    "gap_interval",
    "holm",
    "mcnemar_chi2",
    "mcnemar_exact_p",
    "mcnemar_midp",
    "mcnemar_power",
    "mover_ratio_interval",
    "newcombe_difference_interval",
    "min_detectable_gap",
    "min_detectable_gap_over_noise",
    "newcombe_interval",
    "paired_analysis",
    "rogan_gladen",
    "rogan_gladen_interval",
    "tango_interval",
    "tango_score",
    "tost_paired",
    "wald_interval",
    "wilson_interval",
    "youden_interval",
]
