"""A pytest plugin for benchmarks/warm_cold.py: the session's wall and CPU time, from
``pytest_sessionstart`` to the end of the last ``pytest_sessionfinish`` hook (the
evalkit summary included), written as JSON to $EVALKIT_SESSION_CLOCK."""

import json
import os
import time

import pytest

_started: dict[str, float] = {}


def pytest_sessionstart(session):
    _started.update(wall=time.perf_counter(), cpu=time.process_time())


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("EVALKIT_SESSION_CLOCK")
    if path and not hasattr(session.config, "workerinput"):
        with open(path, "w", encoding="utf-8") as handle:
            json.dump({"wall_s": time.perf_counter() - _started["wall"],
                       "cpu_s": time.process_time() - _started["cpu"]}, handle)
