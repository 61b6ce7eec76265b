"""Equivalence of refusal rates under the two framings: is |dC| below a margin?"""

from __future__ import annotations

import numbers

from ._checks import check_alpha
from ._intervals import tango_score
from ._scipy import stats
from ._table import PairedTable


def tost_paired(table: PairedTable, margin: float, alpha: float = 0.05) -> float:
    """Two one-sided Tango score tests (Tango 1998) of H0: dC <= -margin and H0: dC >= margin,
    each with the nuisance parameter at its constrained MLE; p is the larger of the two.

    Declare equivalence when p < alpha. That happens exactly when the (1 - 2 alpha) Tango
    interval lies inside (-margin, margin), because both come from the same score statistic.
    ``alpha`` does not change the p-value; it is validated so a bad level fails here.
    """
    check_alpha(alpha)
    if isinstance(margin, bool) or not isinstance(margin, numbers.Real) or not 0 < margin < 1:
        raise ValueError(f"margin must be a number in (0, 1), got {margin!r}")
    if table.n == 0:
        return 1.0  # no pairs, no evidence of equivalence
    # A large score at -margin means the data sit well above the lower bound, and so on.
    p_above_lower_bound = float(stats.norm.sf(tango_score(table, -float(margin))))
    p_below_upper_bound = float(stats.norm.cdf(tango_score(table, float(margin))))
    return max(p_above_lower_bound, p_below_upper_bound)


EQUIVALENT, NOT_EQUIVALENT, INCONCLUSIVE = "equivalent", "not equivalent", "inconclusive"


def equivalence_decision(table: PairedTable, margin: float, alpha: float = 0.05) -> str:
    """Read the gap against the equivalence region (-margin, margin) three ways, each at level alpha.

    ``equivalent``: the TOST rejects both "dC <= -margin" and "dC >= margin" (the (1 - 2 alpha)
    Tango interval lies inside the region). ``not equivalent``: a one-sided Tango score test
    shows dC beyond one margin (the interval lies wholly outside the region). Otherwise
    ``inconclusive``: the interval straddles a margin, which at a true gap of zero happens only
    because n is too small for the margin; more behaviors decide it one way or the other.
    """
    if tost_paired(table, margin, alpha) < alpha:
        return EQUIVALENT
    beyond_upper = float(stats.norm.sf(tango_score(table, float(margin)))) < alpha
    beyond_lower = float(stats.norm.cdf(tango_score(table, -float(margin)))) < alpha
    return NOT_EQUIVALENT if beyond_upper or beyond_lower else INCONCLUSIVE
