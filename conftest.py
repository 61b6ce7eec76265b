"""Root conftest. The evalkit plugin itself (options, fixtures, summary hook) is loaded by
its pytest11 entry point; this repository activates its short flags (--model, --seed, ...) with
``evalkit = true`` in pytest.ini. This file only adds what is particular to this repository's
own test run."""

import pytest


def pytest_report_header(config: pytest.Config) -> str | None:
    engine = config.getoption("evalkit_engine", default=None)
    models = config.getoption("evalkit_model", default=None)
    if engine:
        return f"evalkit: engine={engine} models={','.join(models) if models else 'default'}"
    return None
