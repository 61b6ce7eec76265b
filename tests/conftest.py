"""Shared fixtures for the developer tests (unit, integration, engines)."""

import contextlib
import http.server
import json
import os
import threading
from pathlib import Path

import pytest

from evalkit.engines import BaseEngine

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
SHARED_HARMBENCH = ROOT.parent / "shared" / "data" / "harmbench"
SHARED_XSTEST = ROOT.parent / "shared" / "data" / "xstest-v1"
XSTEST_FILES = ("xstest_v1_completions_gpt4.csv", "xstest_v1_completions_llama2.csv")


def harmbench_dir() -> Path | None:
    """HarmBench is never committed: tests read $EVALKIT_HARMBENCH or ../shared/data/harmbench."""
    env = os.environ.get("EVALKIT_HARMBENCH")
    candidate = (Path(env) if env else SHARED_HARMBENCH).resolve()
    if candidate.is_file():
        candidate = candidate.parent
    return candidate if (candidate / "harmbench_behaviors_text_all.csv").is_file() else None


@pytest.fixture(scope="session")
def harmbench_csv() -> Path:
    directory = harmbench_dir()
    if directory is None:
        pytest.skip("HarmBench CSV not found: set EVALKIT_HARMBENCH to the harmbench data directory")
    return directory / "harmbench_behaviors_text_all.csv"


@pytest.fixture(scope="session")
def xstest_dir() -> Path:
    """XSTest v1's human-labelled completions: never committed, read from ../shared/data/xstest-v1."""
    if not all((SHARED_XSTEST / name).is_file() for name in XSTEST_FILES):
        pytest.skip(f"XSTest v1 not found: expected {', '.join(XSTEST_FILES)} in {SHARED_XSTEST} "
                    "(human-labelled completions; never committed into this repository)")
    return SHARED_XSTEST


@pytest.fixture(scope="session")
def synthetic_csv() -> Path:
    return FIXTURES / "behaviors" / "synthetic_behaviors.csv"


@pytest.fixture(scope="session")
def synthetic_behaviors(synthetic_csv):
    from evalkit.datasets import load_behaviors
    return load_behaviors(synthetic_csv).behaviors


class JSONHandler(http.server.BaseHTTPRequestHandler):
    """A quiet request handler that answers with JSON (``self._send(status, payload)``)."""

    def log_message(self, *args):
        pass

    def _send(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextlib.contextmanager
def serve_http(handler_class):
    """A real HTTP server on 127.0.0.1 (a free port) in a thread; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class ScriptedEngine(BaseEngine):
    """An Engine that answers every prompt with ``reply(request)`` and records the calls."""

    name = "scripted"

    def __init__(self, reply):
        self.reply, self.calls, self.closed = reply, [], False

    def generate(self, requests):
        self.calls.append(list(requests))
        return [self.reply(r) for r in requests]

    def describe(self):
        return {"engine": self.name}

    def close(self):
        self.closed = True
