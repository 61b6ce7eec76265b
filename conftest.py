"""Root conftest. The evalkit plugin itself (options, fixtures, summary hook) is loaded by
its pytest11 entry point, so it works in any project that installs evalkit; this file
only adds what is particular to this repository's own test run."""


def pytest_report_header(config):
    engine = config.getoption("evalkit_engine", default=None)
    models = config.getoption("evalkit_model", default=None)
    if engine:
        return f"evalkit: engine={engine} models={','.join(models) if models else 'default'}"
    return None
