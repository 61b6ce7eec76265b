"""What start-up imports: `evalkit --help`, `pytest --help` and `evalkit stats` must not pay for
scipy.stats, scipy.optimize, pandas or matplotlib (seconds each; benchmarks/startup.py measures the
time); matplotlib loads only when a report is drawn."""

import subprocess
import sys

import pytest

HEAVY = ("scipy.stats", "scipy.optimize", "pandas")
PROBE = ("import sys\n{code}\n"
         "print(' '.join(sorted(m for m in sys.modules\n"
         "                      if m.split('.')[0] in ('numpy', 'scipy', 'pandas', 'matplotlib'))))")


def imported(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(code=code)], capture_output=True, text=True, timeout=120,
                         check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("code", [
    "import evalkit.cli; evalkit.cli.build_parser()",  # evalkit --help
    "import pytest, evalkit.pytest_plugin.core",  # pytest --help loads the plugin by entry point
    "import evalkit, evalkit.stats, evalkit.suites, evalkit.report, evalkit.compare, evalkit.html_report",
])
def test_help_imports_no_numeric_library(code):
    assert imported(code) == set()


def test_stats_commands_use_scipy_special_only():
    modules = imported("import contextlib, io, evalkit.cli as c\n"
                       "with contextlib.redirect_stdout(io.StringIO()):\n"
                       "    c.main(['stats', 'paired', '--table', '16,20,7,157', '--margin', '0.03'])\n"
                       "    c.main(['stats', 'crossover', '--free-first', '10,3,2,85', '--paid-first', '12,1,4,83'])")
    assert "scipy.special" in modules  # it did compute something
    assert not {m for m in modules for heavy in HEAVY if m == heavy or m.startswith(heavy + ".")}
