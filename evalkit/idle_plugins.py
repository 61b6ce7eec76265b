"""Third-party pytest plugins that cost a session seconds for nothing, made to cost nothing.

Hypothesis's pytest plugin (``hypothesispytest``, loaded by entry point wherever hypothesis
is installed) imports the whole of hypothesis in its ``pytest_terminal_summary`` to look
for observation files, even in a session without a single hypothesis test: about 1.4 s of
CPU on every ``pytest`` here (0.6 s on a machine that caches bytecode), more than evalkit's
whole warm session. Its summary can only print something when a test used hypothesis in
this process (hypothesis is then imported), when a report carries its statistics or
failing examples (xdist workers' reports, on the controller), or under
``--hypothesis-show-statistics``. In every other session the plugin is unregistered just
before the summary, which then prints exactly what it would have printed: nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

HYPOTHESIS_PLUGIN = "hypothesispytest"
# what the plugin attaches to a report (hypothesis' _hypothesis_pytestplugin.py)
HYPOTHESIS_REPORT_KEYS = ("_hypothesis_stats", "_hypothesis_failing_examples")


def hypothesis_summary_is_idle(show_statistics: bool, reports: Iterable[Any]) -> bool:
    """Whether hypothesis's terminal summary would print nothing in this process."""
    if "hypothesis" in sys.modules or show_statistics:
        return False
    return not any(key in vars(report) for report in reports for key in HYPOTHESIS_REPORT_KEYS
                   if hasattr(report, "__dict__"))


def drop_idle_hypothesis_summary(config: Any) -> None:
    """Unregister hypothesis's plugin when its summary would be empty (call from
    ``pytest_sessionfinish``, which runs before the terminal summary)."""
    manager = config.pluginmanager
    plugin = manager.get_plugin(HYPOTHESIS_PLUGIN)
    reporter = manager.get_plugin("terminalreporter")
    if plugin is None or reporter is None:
        return
    try:
        show_statistics = bool(config.getoption("--hypothesis-show-statistics"))
    except ValueError:  # another hypothesis version without the option: leave it alone
        return
    reports = (report for reports in reporter.stats.values() for report in reports)
    if hypothesis_summary_is_idle(show_statistics, reports):
        manager.unregister(plugin)
