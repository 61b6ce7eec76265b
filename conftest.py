"""Root conftest. The evalkit plugin itself (options, fixtures, summary hook) is loaded by
its pytest11 entry point; this repository activates its short flags (--model, --seed, ...) with
``evalkit = true`` in pytest.ini. This file only adds what is particular to this repository's
own test run."""

import pytest

from evalkit.pytest_plugin.options import option_value


def pytest_report_header(config: pytest.Config) -> str | None:
    if not config.pluginmanager.has_plugin("evalkit"):  # -p no:evalkit
        return None
    engine, models = option_value(config, "engine"), option_value(config, "model")
    if engine:
        return f"evalkit: engine={engine} models={','.join(models) if models else 'default'}"
    return None
