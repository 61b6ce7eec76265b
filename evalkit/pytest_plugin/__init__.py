"""evalkit's pytest plugin, in parts as pytest's own plugins are.

- ``core``: the plugin the ``pytest11`` entry point loads: options, parametrization over
  models x suites x framing pairs, generation before the first test, the hookspecs;
- ``fixtures``: ``evalkit_row`` and the fixtures around it (explain, baseline, snapshot);
- ``xdist``: registered only when pytest-xdist is loaded: one generation for all workers;
- ``reporting``: summary.json/summary.md, the terminal summary, the HTML report;
- ``hookspecs``: ``pytest_evalkit_row_checks`` and ``pytest_evalkit_summary_columns``, for a
  project's conftest.py or plugins;
- ``options``/``activate``: namespaced flags everywhere, short forms where evalkit is active.

Nothing is imported here, so ``import evalkit.pytest_plugin`` costs nothing.
"""
