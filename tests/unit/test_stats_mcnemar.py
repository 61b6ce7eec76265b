"""McNemar tests against published values and their defining properties."""

import math

import pytest

from evalkit.stats import mcnemar_chi2, mcnemar_exact_p, mcnemar_midp


# Fagerland, Lydersen & Laake (2013) BMC Med Res Methodol 13:91 and (2017) ch. 8, Cavo et
# al. example with b = 6, c = 16, as printed to 6 decimals by the authors' contingencytables.
def test_cavo_example_matches_published():
    statistic, p = mcnemar_chi2(6, 16, correction=False)
    assert p == pytest.approx(0.033006, abs=5e-7)
    assert math.sqrt(statistic) == pytest.approx(2.132, abs=5e-4)  # |Z| as printed
    statistic_cc, p_cc = mcnemar_chi2(6, 16, correction=True)
    assert p_cc == pytest.approx(0.055009, abs=5e-7)
    assert math.sqrt(statistic_cc) == pytest.approx(1.919, abs=5e-4)
    assert mcnemar_exact_p(6, 16) == pytest.approx(0.052479, abs=5e-7)
    assert mcnemar_midp(6, 16) == pytest.approx(0.034690, abs=5e-7)


def test_bentur_example_by_hand():
    # b = 1, c = 7 (Fagerland et al. 2013 supplement's worked example): 2 * 9/256 exactly,
    # and mid-p subtracts the point probability 8/256.
    assert mcnemar_exact_p(1, 7) == pytest.approx(18 / 256, rel=1e-12)
    assert mcnemar_midp(1, 7) == pytest.approx(10 / 256, rel=1e-12)


def test_study_pilot_check():
    # STUDY.md: 20 refuse->comply, 7 comply->refuse, chi-square with CC = 5.33, p = 0.021.
    statistic, p = mcnemar_chi2(20, 7, correction=True)
    assert statistic == pytest.approx(144 / 27)
    assert round(statistic, 3) == 5.333 and round(p, 4) == 0.0209


def test_balanced_midp_follows_fagerland_convention():
    # b = c: the observed split is the only one as extreme, so p = 1 - P(X = b) / 2.
    assert mcnemar_midp(3, 3) == pytest.approx(1 - 0.5 * math.comb(6, 3) / 64)
    assert mcnemar_exact_p(3, 3) == 1.0


def test_no_discordant_pairs():
    assert mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_midp(0, 0) == 1.0
    assert mcnemar_chi2(0, 0, correction=True) == (0.0, 1.0)
    assert mcnemar_chi2(0, 0, correction=False) == (0.0, 1.0)


def test_continuity_correction_never_crosses_zero():
    assert mcnemar_chi2(5, 5, correction=True) == (0.0, 1.0)
    assert mcnemar_chi2(5, 6, correction=True) == (0.0, 1.0)


@pytest.mark.parametrize("b, c", [(0, 9), (2, 11), (13, 4), (30, 45)])
def test_tests_are_symmetric_and_ordered(b, c):
    for test in (mcnemar_exact_p, mcnemar_midp):
        assert test(b, c) == pytest.approx(test(c, b))
    assert mcnemar_chi2(b, c, True) == pytest.approx(mcnemar_chi2(c, b, True))
    # mid-p is less conservative than exact; the correction makes chi-square more so.
    assert mcnemar_midp(b, c) < mcnemar_exact_p(b, c)
    assert mcnemar_chi2(b, c, True)[1] > mcnemar_chi2(b, c, False)[1]


def test_invalid_counts_are_refused():
    with pytest.raises(ValueError):
        mcnemar_exact_p(-1, 3)
    with pytest.raises(ValueError):
        mcnemar_chi2(1.5, 3, correction=False)
