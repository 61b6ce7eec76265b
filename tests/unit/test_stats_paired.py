"""paired_analysis: the study's check, the serialised shape, and package boundaries."""

import ast
import json
import pathlib
import subprocess
import sys

import pytest

from evalkit.stats import (
    CI_METHODS,
    PairedTable,
    gap_interval,
    min_detectable_gap_over_noise,
    paired_analysis,
    tost_paired,
    wilson_interval,
)

RESULT_KEYS = [
    "n",
    "a",
    "b",
    "c",
    "d",
    "refusal_free",
    "refusal_free_ci",
    "refusal_paid",
    "refusal_paid_ci",
    "gap",
    "gap_ci",
    "ci_method",
    "flip_rate",
    "flip_rate_ci",
    "flips_refuse_to_comply",
    "flips_comply_to_refuse",
    "mcnemar_exact_p",
    "mcnemar_midp",
    "mcnemar_chi2",
    "mcnemar_chi2_p",
    "mcnemar_chi2_cc",
    "mcnemar_chi2_cc_p",
    "tost_p",
    "equivalent",
    "min_detectable_gap",
]

PILOT = PairedTable(a=16, b=20, c=7, d=157)  # STUDY.md, DeepSeek pilot, n = 200


def test_study_pilot_numbers():
    result = paired_analysis(PILOT)
    assert result.n == 200
    assert result.refusal_free == pytest.approx(0.18)
    assert result.refusal_paid == pytest.approx(0.115)
    assert round(result.gap, 3) == -0.065
    assert round(result.mcnemar_chi2_cc, 3) == 5.333
    assert round(result.mcnemar_chi2_cc_p, 4) == 0.0209
    assert result.flip_rate == pytest.approx(0.135)  # "about 13-15%"
    assert result.flips_refuse_to_comply == 20 and result.flips_comply_to_refuse == 7
    assert result.gap_ci[1] < 0  # the pilot's gap excludes zero


def test_components_are_the_documented_methods():
    result = paired_analysis(PILOT, ci_method="tango", alpha=0.1)
    assert result.gap_ci == gap_interval(PILOT, "tango", 0.1)
    assert result.refusal_free_ci == wilson_interval(36, 200, 0.1)
    assert result.refusal_paid_ci == wilson_interval(23, 200, 0.1)
    assert result.flip_rate_ci == wilson_interval(27, 200, 0.1)
    assert result.min_detectable_gap == pytest.approx(min_detectable_gap_over_noise(200, 0.135, 0.1, 0.8))


def test_as_dict_has_exactly_the_documented_keys_and_is_json():
    for method in CI_METHODS:
        payload = paired_analysis(PILOT, ci_method=method, margin=0.05).as_dict()
        assert list(payload) == RESULT_KEYS
        assert isinstance(payload["gap_ci"], list) and len(payload["gap_ci"]) == 2
        json.dumps(payload, allow_nan=False)


@pytest.mark.parametrize(
    "table",
    [
        PairedTable(0, 0, 0, 1),
        PairedTable(1, 0, 0, 0),
        PairedTable(200, 0, 0, 0),
        PairedTable(20, 0, 0, 180),
        PairedTable(0, 1, 0, 0),
    ],
    ids=str,
)
def test_degenerate_tables_serialise(table):
    payload = paired_analysis(table, margin=0.1).as_dict()
    json.dumps(payload, allow_nan=False)
    assert -1 <= payload["gap_ci"][0] <= payload["gap_ci"][1] <= 1


def test_equivalence_only_with_a_margin():
    without = paired_analysis(PILOT)
    assert without.tost_p is None and without.equivalent is None
    tight = paired_analysis(PairedTable(20, 4, 4, 372), margin=0.03)
    assert tight.tost_p == pytest.approx(tost_paired(PairedTable(20, 4, 4, 372), 0.03))
    assert tight.equivalent is True
    assert paired_analysis(PILOT, margin=0.05).equivalent is False


def test_detectable_gap_grows_with_noise_and_shrinks_with_n():
    clean = paired_analysis(PairedTable(20, 0, 0, 180)).min_detectable_gap
    noisy = paired_analysis(PairedTable(20, 10, 10, 160)).min_detectable_gap
    larger = paired_analysis(PairedTable(40, 20, 20, 320)).min_detectable_gap
    assert 0 < clean < noisy < 1 and larger < noisy
    assert paired_analysis(PairedTable(1, 0, 0, 0)).min_detectable_gap is None  # n = 1 detects nothing
    assert paired_analysis(PILOT, power_target=None).min_detectable_gap is None


def test_invalid_calls_are_refused():
    with pytest.raises(ValueError, match="empty"):
        paired_analysis(PairedTable(0, 0, 0, 0))
    with pytest.raises(ValueError, match="unknown ci_method"):
        paired_analysis(PILOT, ci_method="exact")
    with pytest.raises(ValueError):
        paired_analysis(PILOT, alpha=0.0)
    with pytest.raises(ValueError):
        paired_analysis(PILOT, margin=2.0)
    with pytest.raises(ValueError):
        paired_analysis((16, 20, 7, 157))


def test_result_is_frozen():
    result = paired_analysis(PILOT)
    with pytest.raises(AttributeError):
        result.gap = 0.0  # type: ignore[misc]


STATS_DIR = pathlib.Path(__file__).resolve().parents[2] / "evalkit" / "stats"


def test_stats_imports_no_other_evalkit_module():
    # The parent package may import what it likes; importing evalkit.stats on top of it
    # must add only evalkit.stats modules (and at most evalkit.errors).
    code = (
        "import sys, evalkit; before = set(sys.modules); import evalkit.stats; "
        "print(sorted(m for m in set(sys.modules) - before if m.startswith('evalkit')))"
    )
    added = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=STATS_DIR.parents[1],
    ).stdout
    modules = [name.strip(" '\"") for name in added.strip().strip("[]").split(",") if name.strip()]
    assert modules and all(m == "evalkit.errors" or m.startswith("evalkit.stats") for m in modules), modules
    for source in STATS_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level <= 1, f"{source.name} reaches outside evalkit.stats"
                module = node.module or ""
                assert not module.startswith("evalkit") or module == "evalkit.errors", source.name
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("evalkit") or alias.name == "evalkit.errors"


def test_every_public_function_has_a_docstring():
    import evalkit.stats as package

    for name in package.__all__:
        value = getattr(package, name)
        if callable(value):
            assert value.__doc__ and value.__doc__.strip(), name


def test_the_power_search_runs_once_per_design_and_agrees_with_a_fresh_search(monkeypatch):
    """paired_analysis memoises the minimum detectable gap on (n, discordance, alpha, power):
    the same table asked again (each test's row, then the summary) searches no more, and a
    different alpha or power is a different search, equal to calling the search directly."""
    from evalkit.stats import _paired, _power

    _paired._min_detectable_gap.cache_clear()
    evaluations = []
    real = _power._power
    monkeypatch.setattr(_power, "_power", lambda *args: evaluations.append(args) or real(*args))
    first = paired_analysis(PILOT)
    searched = len(evaluations)
    assert searched > 10  # a real search: a grid scan then bisection
    assert paired_analysis(PILOT).min_detectable_gap == first.min_detectable_gap
    assert len(evaluations) == searched
    gaps = set()
    for alpha, power in [(0.05, 0.8), (0.01, 0.8), (0.05, 0.9)]:
        memoised = paired_analysis(PILOT, alpha=alpha, power_target=power).min_detectable_gap
        assert memoised == min_detectable_gap_over_noise(PILOT.n, PILOT.discordant / PILOT.n, alpha, power, "midp")
        gaps.add(memoised)
    assert len(gaps) == 3
    assert paired_analysis(PILOT, power_target=None).min_detectable_gap is None


def test_category_breakdowns_skip_the_power_search_unless_asked():
    from evalkit import analysis

    labels = {"RR": ("refusal", "refusal"), "RC": ("refusal", "compliance"), "CR": ("compliance", "refusal"),
              "CC": ("compliance", "compliance")}
    codes = ["RR", "RC", "CC", "CC", "CR", "CC", "CC", "RR"] * 25
    ids = tuple(f"b{i:02d}" for i in range(len(codes)))
    outcomes = analysis.PairedOutcomes(ids, tuple(labels[c][0] for c in codes), tuple(labels[c][1] for c in codes),
                                       ("free-first",) * len(ids), 2 * len(ids), 0)
    categories = {b: (("chemical", "illegal")[i % 2], "standard") for i, b in enumerate(ids)}
    thresholds = analysis.Thresholds()
    plain = analysis.category_breakdowns(outcomes, categories, thresholds)
    powered = analysis.category_breakdowns(outcomes, categories, thresholds, with_power=True)
    assert [(b.dimension, b.category, b.result.n) for b in plain] == \
        [("semantic", "chemical", 100), ("semantic", "illegal", 100), ("functional", "standard", 200)]
    assert all(b.result.min_detectable_gap is None for b in plain)
    assert all(b.result.min_detectable_gap is not None for b in powered)
    for without, with_ in zip(plain, powered):  # everything else is the same analysis
        assert (without.result.gap, without.result.gap_ci, without.result.mcnemar_midp) == \
            (with_.result.gap, with_.result.gap_ci, with_.result.mcnemar_midp)
