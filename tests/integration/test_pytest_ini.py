"""A session configured by pytest.ini alone: every evalkit option has an ini key
(``evalkit_<dest>``); the command line wins over it. Run with pytester in a project that is
not this repository (its own pytest.ini, a copy of the behavioural tests)."""

import json
from pathlib import Path

import pytest

pytest_plugins = ("pytester",)
ROOT = Path(__file__).resolve().parents[2]


def project(pytester, harmbench_csv, tmp_path, models=("a=sim:null", "b=sim:training-aware"), **extra):
    lines = ["[pytest]", "evalkit_model =", *(f"    {m}" for m in models), "evalkit_suite = replication",
             "evalkit_n = 40", f"evalkit_harmbench = {harmbench_csv}", f"evalkit_results_dir = {tmp_path / 'results'}",
             "evalkit_max_flip_rate = 0.5", *(f"{k} = {v}" for k, v in extra.items())]
    pytester.makefile(".ini", pytest="\n".join(lines) + "\n")
    pytester.makepyfile(test_suite=(ROOT / "tests" / "behavioral" / "test_paired_framing.py").read_text())
    pytester.chdir()


def row_ns(tmp_path):
    summary = json.loads((tmp_path / "results" / "summary.json").read_text())
    return {(r["model"], r["suite"], r["pair"]): r["n"] for r in summary["rows"]}


def test_a_session_from_pytest_ini_alone(pytester, harmbench_csv, tmp_path):
    project(pytester, harmbench_csv, tmp_path)
    result = pytester.runpytest_subprocess("-v", "-p", "no:cacheprovider")
    ids = {line.split("[", 1)[1].split("]", 1)[0] for line in result.outlines
           if "test_suite.py::" in line and "[" in line}
    assert ids == {f"{m}-replication-{p}" for m in ("a", "b") for p in ("free-vs-paid", "aa-control")}
    assert set(row_ns(tmp_path).values()) == {40}
    # the ini's flip-rate bound (0.5, not the default 0.05) reached the checks
    assert json.loads((tmp_path / "results" / "summary.json").read_text())["meta"]["max_flip_rate"] == 0.5


def test_the_command_line_wins_over_the_ini(pytester, harmbench_csv, tmp_path):
    project(pytester, harmbench_csv, tmp_path)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--n", "30", "--model", "c=sim:null")
    assert result.ret == 0, result.outlines[-20:]
    assert row_ns(tmp_path) == {("c", "replication", "free-vs-paid"): 30, ("c", "replication", "aa-control"): 30}


def test_a_flag_given_at_its_default_value_still_wins_over_the_ini(pytester, harmbench_csv, tmp_path):
    from evalkit.options import all_options
    default = next(o.default for o in all_options() if o.dest == "max_flip_rate")
    assert default != 0.5  # the ini below sets 0.5: the flag restores the default explicitly
    project(pytester, harmbench_csv, tmp_path)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--n", "30", f"--max-flip-rate={default}")
    assert result.ret in (0, 1), result.outlines[-20:]
    meta = json.loads((tmp_path / "results" / "summary.json").read_text())["meta"]
    assert meta["max_flip_rate"] == float(default)


@pytest.mark.parametrize(("key", "value", "message"), [("evalkit_seed", "abc", "evalkit_seed = 'abc'"),
                                                        ("evalkit_ci_method", "nope", "choose from"),
                                                        # a repeatable key's items: this one ran the whole
                                                        # session, then crashed writing the summary
                                                        ("evalkit_summary_column", "nope",
                                                         "evalkit_summary_column = 'nope': choose from"),
                                                        # a value of the right type, out of range: checked
                                                        # later, with the flag's name, and now the key's
                                                        ("evalkit_alpha", "2", "set in "),
                                                        ("evalkit_max_tokens", "0", "pytest.ini: evalkit_max_tokens)")])
def test_a_bad_ini_value_is_a_usage_error_naming_the_key(pytester, harmbench_csv, tmp_path, key, value, message):
    project(pytester, harmbench_csv, tmp_path, **{key: value})
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert any(message in line and "pytest.ini" in line for line in result.errlines), result.errlines
    assert not (tmp_path / "results").exists()


def test_margins_pairs_columns_and_a_baseline_from_the_ini(pytester, harmbench_csv, tmp_path):
    """The rest of a project's pinned configuration: statistical margins, the pair, a summary column,
    and the --baseline comparison with its regression margin, all from pytest.ini."""
    models = ("a=sim:null", "b=sim:qwen-control")  # no framing effect: every test passes
    project(pytester, harmbench_csv, tmp_path, models, evalkit_seed="5")
    assert pytester.runpytest_subprocess("-p", "no:cacheprovider").ret == 0
    baseline = tmp_path / "baseline"
    (tmp_path / "results").rename(baseline)
    project(pytester, harmbench_csv, tmp_path, models, evalkit_alpha="0.01", evalkit_equivalence_margin="0.05",
            evalkit_seed="5", evalkit_pair="free-vs-paid", evalkit_summary_column="corrected-gap",
            evalkit_baseline=str(baseline), evalkit_regression_margin="0.2")
    pytester.makepyfile(test_baseline=(ROOT / "tests" / "behavioral" / "test_baseline.py").read_text())
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA")
    assert result.ret == 0, result.outlines[-30:]
    written = json.loads((tmp_path / "results" / "summary.json").read_text())
    meta = written["meta"]
    assert (meta["alpha"], meta["equivalence_margin"], meta["seed"], meta["summary_columns"]) == \
        (0.01, 0.05, 5, ["corrected-gap"])
    assert {(r["model"], r["pair"]) for r in written["rows"]} == {("a", "free-vs-paid"), ("b", "free-vs-paid")}
    # the column, in the terminal table, at the level of the ini's alpha (0.01)
    assert "gap corrected for judge error [99% CI]" in result.stdout.str()
    compared = json.loads((tmp_path / "results" / "compare.json").read_text())
    assert (compared["alpha"], compared["margin"], compared["baseline"]) == (0.01, 0.2, str(baseline))
    baseline_tests = [line for line in result.outlines if line.startswith("PASSED test_baseline.py::")]
    assert len(baseline_tests) == 4  # two tests x two models, collected because the ini names a baseline


@pytest.mark.parametrize(("flags", "message"), [
    (("--baseline=no-such-dir",), "no-such-dir is neither a results directory"),
    (("--baseline=.", "--regression-margin=-1"), "option --regression-margin: -1.0 is outside (0, 1)"),
])
def test_a_bad_baseline_stops_the_session_before_it_runs(pytester, harmbench_csv, tmp_path, flags, message):
    # these ran the whole session and then failed every baseline test with the same message
    project(pytester, harmbench_csv, tmp_path)
    (pytester.path / "summary.json").write_text('{"rows": []}')  # "." is a results directory
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *flags)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert any(message in line for line in result.errlines), result.errlines
    assert not any((tmp_path / "results").glob("runs/*")) and not (tmp_path / "results" / "summary.json").exists()
