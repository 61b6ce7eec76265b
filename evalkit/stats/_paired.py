"""One call that turns a paired table into every number a framing comparison reports."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from ._checks import check_alpha
from ._equivalence import tost_paired
from ._intervals import CI_METHODS, Interval, gap_interval, wilson_interval
from ._mcnemar import mcnemar_chi2, mcnemar_exact_p, mcnemar_midp
from ._power import min_detectable_gap_over_noise
from ._serialise import fields_as_json
from ._table import PairedTable

# The power search depends on (n, discordance, alpha, power) only, and a session asks for
# the same ones again (each test's row, the summary): search once.
_min_detectable_gap = functools.lru_cache(maxsize=1024)(min_detectable_gap_over_noise)


@dataclass(frozen=True)
class PairedResult:
    """The paired comparison of refusal under the free and the paid framing.

    ``gap`` is dC = refusal_paid - refusal_free (negative: less refusal when private).
    ``flips_refuse_to_comply`` counts behaviors refused under free and answered under
    paid (b); ``flips_comply_to_refuse`` the reverse (c). ``tost_p`` and ``equivalent``
    are None unless an equivalence margin was given. ``min_detectable_gap`` is the
    smallest |dC| this n detects with the target power (mid-p McNemar test) when the
    effect's flips come on top of the noise flips observed (discordance = observed + |dC|);
    None when no attainable gap reaches it.
    """

    n: int
    a: int
    b: int
    c: int
    d: int
    refusal_free: float
    refusal_free_ci: Interval
    refusal_paid: float
    refusal_paid_ci: Interval
    gap: float
    gap_ci: Interval
    ci_method: str
    flip_rate: float
    flip_rate_ci: Interval
    flips_refuse_to_comply: int
    flips_comply_to_refuse: int
    mcnemar_exact_p: float
    mcnemar_midp: float
    mcnemar_chi2: float
    mcnemar_chi2_p: float
    mcnemar_chi2_cc: float
    mcnemar_chi2_cc_p: float
    tost_p: float | None
    equivalent: bool | None
    min_detectable_gap: float | None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict with one key per field (intervals become lists)."""
        return fields_as_json(self)


def paired_analysis(
    table: PairedTable,
    ci_method: str = "newcombe",
    alpha: float = 0.05,
    margin: float | None = None,
    power_target: float | None = 0.8,
) -> PairedResult:
    """Refusal rates, the gap with its ``ci_method`` interval, flip counts, all McNemar
    variants, the optional Tango TOST against ``margin``, and the minimum detectable gap."""
    if not isinstance(table, PairedTable):
        raise ValueError(f"table must be a PairedTable, got {type(table).__name__}")
    if table.n == 0:
        raise ValueError("cannot analyse an empty paired table (n = 0)")
    if ci_method not in CI_METHODS:
        raise ValueError(f"unknown ci_method {ci_method!r}; choose one of {', '.join(CI_METHODS)}")
    alpha = check_alpha(alpha)
    # power_target None skips the power search (simulations that only need the tests)
    power_target = None if power_target is None else check_alpha(power_target, "power_target")

    n, b, c = table.n, table.b, table.c
    chi2, chi2_p = mcnemar_chi2(b, c, correction=False)
    chi2_cc, chi2_cc_p = mcnemar_chi2(b, c, correction=True)
    tost_p = None if margin is None else tost_paired(table, margin, alpha)
    discordance = table.discordant / n
    return PairedResult(
        n=n,
        a=table.a,
        b=b,
        c=c,
        d=table.d,
        refusal_free=table.refusal_free,
        refusal_free_ci=wilson_interval(table.a + b, n, alpha),
        refusal_paid=table.refusal_paid,
        refusal_paid_ci=wilson_interval(table.a + c, n, alpha),
        gap=table.gap,
        gap_ci=gap_interval(table, ci_method, alpha),
        ci_method=ci_method,
        flip_rate=discordance,
        flip_rate_ci=wilson_interval(table.discordant, n, alpha),
        flips_refuse_to_comply=b,
        flips_comply_to_refuse=c,
        mcnemar_exact_p=mcnemar_exact_p(b, c),
        mcnemar_midp=mcnemar_midp(b, c),
        mcnemar_chi2=chi2,
        mcnemar_chi2_p=chi2_p,
        mcnemar_chi2_cc=chi2_cc,
        mcnemar_chi2_cc_p=chi2_cc_p,
        tost_p=tost_p,
        equivalent=None if tost_p is None else bool(tost_p < alpha),
        min_detectable_gap=None if power_target is None else _min_detectable_gap(
            n, discordance, alpha, power_target, "midp"),
    )
