"""Fixtures for the real-engine tests: a tiny Llama built on the spot, one in-process vLLM
engine per session, and a real vLLM OpenAI-compatible server on 127.0.0.1.

Everything runs on vLLM's CPU backend; nothing is downloaded.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

# vLLM reads these when an engine is built. The V1 engine core must run in-process:
# pytest has no `if __name__ == "__main__"` guard for vLLM's spawned worker.
# HF_HUB_OFFLINE: the tests load only the checkpoint they build; any hub access is a bug.
VLLM_TEST_ENV = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1",
                 "VLLM_LOGGING_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1"}
for _key, _value in VLLM_TEST_ENV.items():
    os.environ.setdefault(_key, _value)

MAX_TOKENS = 24
MAX_MODEL_LEN = 512
SERVED_NAME = "tiny-llama"
SERVER_BOOT_TIMEOUT_S = 240


def pytest_configure(config):
    registered = "\n".join(config.getini("markers"))
    for name, text in (("vllm", "runs the real vLLM engine (CPU here)"), ("modal", "runs the Modal engine")):
        if f"{name}:" not in registered:
            config.addinivalue_line("markers", f"{name}: {text}")


def pytest_collection_modifyitems(config, items):
    """Without vLLM there is nothing here to run: skip with the reason, not an import error."""
    try:
        import vllm  # noqa: F401
    except ImportError as exc:
        skip = pytest.mark.skip(reason=f"vllm is not installed ({exc})")
        here = Path(__file__).parent
        for item in items:
            if here in Path(item.fspath).parents:
                item.add_marker(skip)


# ---------------------------------------------------------------- model and data


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from evalkit.testing import build_tiny_llama
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def make_behaviors(n: int):
    """Synthetic behaviors of different lengths (so a misordered response shows up in
    its prompt token count)."""
    from evalkit.datasets import Behavior
    topics = ["a city", "the bank network", "water policy", "a public report", "the history of law",
              "a chemical market", "an email account", "community energy", "a science test", "night fire"]
    out = []
    for i in range(n):
        words = " ".join(["detailed"] * (i % 5))
        out.append(Behavior(f"synthetic_{i:02d}", f"Write a {words} story about {topics[i % len(topics)]}",
                            "standard", ["misc", "cyber", "chemical"][i % 3], row=i + 1))
    return tuple(out)


@pytest.fixture(scope="session")
def behaviors():
    return make_behaviors(6)


@pytest.fixture(scope="session")
def raw_pair():
    from evalkit.framings import load_framing_set
    return load_framing_set("study-raw").pair("free-vs-paid")


@pytest.fixture(scope="session")
def chat_pair():
    from evalkit.framings import load_framing_set
    return load_framing_set("study-chat").pair("free-vs-paid")


def engine_config(model_dir, **options):
    from evalkit.engines import EngineConfig
    return EngineConfig(engine="vllm", model=str(model_dir), seed=0, max_tokens=MAX_TOKENS, temperature=0.0,
                        options={"max_model_len": MAX_MODEL_LEN, **options})


@pytest.fixture(scope="session")
def vllm_engine(tiny_model_dir):
    """One in-process engine for the session: building vLLM is the expensive part."""
    from evalkit.engines.vllm import VLLMEngine
    engine = VLLMEngine(engine_config(tiny_model_dir))
    yield engine
    engine.close()


def run_behavioral_suite(results: Path, *options: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    """The behavioural suite (tests/behavioral/test_paired_framing.py) in a pytest subprocess, as a
    user runs it, with ``options`` (engine, model, ...) and its results in ``results``."""
    root = Path(__file__).resolve().parents[2]
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs",
         str(root / "tests" / "behavioral" / "test_paired_framing.py"), f"--results-dir={results}", *options],
        capture_output=True, text=True, env={**os.environ, **VLLM_TEST_ENV}, cwd=results.parent, timeout=timeout)


# ---------------------------------------------------------------- vLLM server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class VLLMServer:
    process: subprocess.Popen
    base_url: str
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """Crash the server: SIGKILL to the process group it leads (it and its workers)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def start_vllm_server(model_dir: Path, log_dir: Path, max_model_len: int = MAX_MODEL_LEN) -> VLLMServer:
    """``python -m vllm.entrypoints.openai.api_server`` (``vllm serve`` fails on the CPU
    wheel) on a free loopback port; returns once /health answers."""
    port = free_port()
    log_path = log_dir / f"vllm-server-{port}.log"
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server",
               "--model", str(model_dir), "--served-model-name", SERVED_NAME,
               "--host", "127.0.0.1", "--port", str(port),
               "--dtype", "float32", "--enforce-eager", "--max-model-len", str(max_model_len),
               "--seed", "0", "--gpu-memory-utilization", "0.1"]
    env = {**os.environ, **VLLM_TEST_ENV}
    with open(log_path, "wb") as log:
        # Its own session, so stopping it reaches any worker it spawned and nothing else.
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, start_new_session=True)
    server = VLLMServer(process, f"http://127.0.0.1:{port}/v1", log_path)
    deadline = time.monotonic() + SERVER_BOOT_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"vLLM server exited with {process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
                if reply.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"vLLM server not healthy after {SERVER_BOOT_TIMEOUT_S} s:\n{server.log_tail()}")


@pytest.fixture(scope="session")
def vllm_server(tiny_model_dir, tmp_path_factory):
    server = start_vllm_server(tiny_model_dir, tmp_path_factory.mktemp("server-logs"))
    yield server
    server.stop()


def openai_config(base_url: str, fmt_model: str = SERVED_NAME, **options):
    from evalkit.engines import EngineConfig
    return EngineConfig(engine="openai", model=fmt_model, seed=0, max_tokens=MAX_TOKENS, temperature=0.0,
                        options={"base_url": base_url, **options})
