"""Hypothesis's pytest plugin is unregistered before the terminal summary only when that
summary would print nothing (evalkit.idle_plugins): no hypothesis test ran in the process, no
report carries its statistics or failing examples, no --hypothesis-show-statistics."""

import subprocess
import sys
import types

import pytest

from evalkit.idle_plugins import HYPOTHESIS_REPORT_KEYS, hypothesis_summary_is_idle


def _report(**extra):
    report = types.SimpleNamespace(outcome="passed")
    vars(report).update(extra)
    return report


def test_idle_only_without_hypothesis_reports_or_statistics(monkeypatch):
    monkeypatch.delitem(sys.modules, "hypothesis", raising=False)
    assert hypothesis_summary_is_idle(False, [_report(), _report(), "a warning, not a report"])
    assert not hypothesis_summary_is_idle(True, [_report()])
    for key in HYPOTHESIS_REPORT_KEYS:  # a worker's report, on the xdist controller
        assert not hypothesis_summary_is_idle(False, [_report(), _report(**{key: "[]"})])


def test_never_idle_once_hypothesis_ran_in_the_process(monkeypatch):
    monkeypatch.setitem(sys.modules, "hypothesis", types.ModuleType("hypothesis"))
    assert not hypothesis_summary_is_idle(False, [_report()])


def _pytest(tmp_path, body, *args):
    (tmp_path / "test_it.py").write_text(body)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    probe = tmp_path / "conftest.py"
    probe.write_text("import sys\n\ndef pytest_unconfigure(config):\n"
                     "    print('HYPOTHESIS-IMPORTED' if 'hypothesis' in sys.modules else 'HYPOTHESIS-NOT-IMPORTED')\n")
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-s", *args, str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)


def test_a_session_without_hypothesis_tests_never_imports_it(tmp_path):
    pytest.importorskip("hypothesis")
    done = _pytest(tmp_path, "def test_plain():\n    assert True\n")
    assert done.returncode == 0, done.stdout[-2000:]
    assert "HYPOTHESIS-NOT-IMPORTED" in done.stdout


def test_a_failing_hypothesis_test_is_still_reported_with_its_example(tmp_path):
    pytest.importorskip("hypothesis")
    done = _pytest(tmp_path, "from hypothesis import given, strategies as st\n\n"
                             "@given(st.integers())\ndef test_prop(x):\n    assert x < 5\n",
                   "--hypothesis-show-statistics")
    assert done.returncode == 1
    assert "Falsifying example" in done.stdout and "Hypothesis Statistics" in done.stdout
