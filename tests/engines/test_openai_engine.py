"""The openai engine: against a real vLLM OpenAI-compatible server on 127.0.0.1, and against
a scripted local HTTP server for retries, failures and key handling."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from evalkit.engines import EngineConfig, engine_requests
from evalkit.errors import ConfigError, EngineError
from evalkit.protocols import build_schedule

from .conftest import MAX_TOKENS, SERVED_NAME, make_behaviors, openai_config, start_vllm_server

pytestmark = pytest.mark.vllm

FAKE_KEY = "sk-evalkit-FAKE-0123456789abcdef"
KEY_ENV = "EVALKIT_TEST_API_KEY"


def openai_engine(config):
    from evalkit.engines.openai import OpenAIEngine
    return OpenAIEngine(config)


# ---------------------------------------------------------------- against a real vLLM server


@pytest.mark.parametrize("framing", ["raw", "chat"])
def test_real_server_matches_the_in_process_engine(vllm_server, vllm_engine, behaviors, raw_pair, chat_pair,
                                                   framing, monkeypatch):
    """Same checkpoint, same greedy decoding: the HTTP path (raw -> /v1/completions, chat ->
    /v1/chat/completions with the server's chat template) gives the in-process text."""
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)  # vLLM without --api-key ignores it; it must not break anything
    pair = raw_pair if framing == "raw" else chat_pair
    schedule = build_schedule(behaviors, pair, "fixed", seed=0, batch_size=4)
    engine = openai_engine(openai_config(vllm_server.base_url, api_key_env=KEY_ENV, concurrency=4))
    try:
        remote = [r for batch in schedule.batches() for r in engine.generate(engine_requests(batch))]
    finally:
        engine.close()
    local = [r for batch in schedule.batches() for r in vllm_engine.generate(engine_requests(batch))]
    assert all(r.ok for r in remote), [r.error for r in remote]
    assert [r.text for r in remote] == [r.text for r in local]
    assert [r.prompt_tokens for r in remote] == [r.prompt_tokens for r in local]
    assert [r.output_tokens for r in remote] == [r.output_tokens for r in local]
    assert [r.finish_reason for r in remote] == [r.finish_reason for r in local]
    assert all(r.latency_s > 0 for r in remote)


def test_real_server_rejection_is_an_error_response_not_retried(vllm_server, behaviors, raw_pair):
    from evalkit.datasets import Behavior

    too_long = Behavior("too_long", "harmful " * 2000, "standard", "misc")
    schedule = build_schedule((behaviors[0], too_long), raw_pair, "fixed", seed=0, batch_size=4)
    engine = openai_engine(openai_config(vllm_server.base_url, max_retries=3, retry_backoff=5.0))
    slept = []
    engine._sleep = slept.append  # a 400 is final: no backoff may be slept
    try:
        responses = engine.generate(engine_requests(schedule.requests))
    finally:
        engine.close()
    assert slept == []
    assert [r.ok for r in responses] == [True, True, False, False]
    for response in responses[2:]:
        assert response.error.startswith("HTTP 400") and "maximum context length" in response.error
        assert response.text == "" and "attempts" not in response.error


def test_server_killed_mid_run_turns_every_later_request_into_an_error(tiny_model_dir, tmp_path, raw_pair):
    """A run of several batches; the server dies (SIGKILL) after the first batch. Nothing is
    dropped, nothing fails silently: every later request is an error Response with no text."""
    server = start_vllm_server(tiny_model_dir, tmp_path)
    engine = openai_engine(openai_config(server.base_url, concurrency=2, max_retries=2, retry_backoff=0.05,
                                         request_timeout=10))
    schedule = build_schedule(make_behaviors(8), raw_pair, "fixed", seed=0, batch_size=4)
    batches = schedule.batches()
    results: list[list] = []
    first_batch_done, server_killed = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def run_all():
        try:
            for i, batch in enumerate(batches):
                results.append(engine.generate(engine_requests(batch)))
                if i == 0:
                    first_batch_done.set()
                    server_killed.wait(timeout=60)
        except BaseException as exc:  # surfaced below: generate must not raise
            failures.append(exc)

    runner = threading.Thread(target=run_all)
    try:
        runner.start()
        assert first_batch_done.wait(timeout=120), "first batch never finished"
        server.kill()
        server_killed.set()
        runner.join(timeout=120)
        assert not runner.is_alive()
    finally:
        server_killed.set()
        server.stop()
        engine.close()
    assert not failures
    assert [len(r) for r in results] == [len(b) for b in batches]
    assert all(r.ok and r.output_tokens for r in results[0])
    for response in (r for batch in results[1:] for r in batch):
        assert not response.ok and response.text == "" and response.finish_reason == "error"
        assert "connection error" in response.error and "after 3 attempts" in response.error


# ---------------------------------------------------------------- a scripted local server


@dataclass
class Step:
    status: int = 200
    body: dict | str | None = None  # None: a canned completion echoing the prompt
    delay_s: float = 0.0
    headers: dict = field(default_factory=dict)


class ScriptedServer:
    """An OpenAI-shaped server on 127.0.0.1 that answers from a script of Steps (then 200s)
    and records every request it receives."""

    def __init__(self, keep_alive: bool = False):
        self.script: list[Step] = []
        self.seen: list[dict] = []
        self.connections = 0  # TCP connections accepted
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        self.delay_for = None  # optional callable(body) -> seconds
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            # HTTP/1.1 keeps a connection open for the next request; 1.0 closes it after each
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def log_message(self, *args):
                pass

            def setup(self):  # once per connection
                super().setup()
                with scripted.lock:
                    scripted.connections += 1

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with scripted.lock:
                    scripted.seen.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                          "headers": dict(self.headers), "body": body})
                    step = scripted.script.pop(0) if scripted.script else Step()
                    scripted.in_flight += 1
                    scripted.max_in_flight = max(scripted.max_in_flight, scripted.in_flight)
                try:
                    delay = step.delay_s or (scripted.delay_for(body) if scripted.delay_for else 0)
                    time.sleep(delay)
                    payload = step.body if step.body is not None else scripted.completion(self.path, body)
                    if isinstance(payload, str):
                        payload = payload.replace("{auth}", self.headers.get("Authorization") or "")
                        data = payload.encode()
                    else:
                        data = json.dumps(payload).replace("{auth}", self.headers.get("Authorization") or "").encode()
                    self.send_response(step.status)
                    for key, value in step.headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)
                finally:
                    with scripted.lock:
                        scripted.in_flight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @staticmethod
    def completion(path: str, body: dict) -> dict:
        usage = {"prompt_tokens": 7, "completion_tokens": 3}
        if path.endswith("/chat/completions"):
            echo = " | ".join(m["content"] for m in body["messages"])
            return {"choices": [{"message": {"role": "assistant", "content": f"echo: {echo}"},
                                 "finish_reason": "stop"}], "usage": usage}
        return {"choices": [{"text": f"echo: {body['prompt']}", "finish_reason": "length"}], "usage": usage}

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted():
    server = ScriptedServer()
    yield server
    server.close()


@pytest.fixture
def one_raw_request(raw_pair):
    return build_schedule(make_behaviors(1), raw_pair, "fixed", seed=0, batch_size=1).requests[:1]


def engine_with_recorded_sleeps(config):
    engine = openai_engine(config)
    sleeps: list[float] = []
    engine._sleep = sleeps.append  # no real waiting; the delays are checked instead
    return engine, sleeps


@pytest.mark.parametrize("statuses", [(429, 429), (500, 502, 503), (408,)])
def test_retryable_statuses_are_retried_until_success(scripted, one_raw_request, statuses):
    scripted.script = [Step(status, {"error": {"message": "busy"}}) for status in statuses]
    engine, sleeps = engine_with_recorded_sleeps(openai_config(scripted.base_url, max_retries=4))
    [response] = engine.generate(engine_requests(one_raw_request))
    engine.close()
    assert response.ok and response.text.startswith("echo: ")
    assert len(scripted.seen) == len(statuses) + 1
    assert len(sleeps) == len(statuses)


@pytest.mark.parametrize("status", [400, 404, 409, 422])
def test_other_4xx_are_not_retried(scripted, one_raw_request, status):
    scripted.script = [Step(status, {"error": {"message": "bad   request\n field"}})]
    engine, sleeps = engine_with_recorded_sleeps(openai_config(scripted.base_url, max_retries=4))
    [response] = engine.generate(engine_requests(one_raw_request))
    engine.close()
    assert len(scripted.seen) == 1 and sleeps == []
    assert not response.ok and response.text == "" and response.error == f"HTTP {status}: bad request field"


def test_persistent_5xx_gives_up_after_max_retries(scripted, one_raw_request):
    scripted.script = [Step(500, "internal error")] * 10
    engine, _sleeps = engine_with_recorded_sleeps(openai_config(scripted.base_url, max_retries=2))
    [response] = engine.generate(engine_requests(one_raw_request))
    engine.close()
    assert len(scripted.seen) == 3
    assert not response.ok and response.error == "HTTP 500: internal error after 3 attempts"


def test_timeouts_are_retried_then_reported(scripted, one_raw_request):
    scripted.script = [Step(delay_s=1.0), Step(delay_s=1.0)]
    engine, _sleeps = engine_with_recorded_sleeps(openai_config(scripted.base_url, max_retries=1,
                                                               request_timeout=0.2))
    [response] = engine.generate(engine_requests(one_raw_request))
    engine.close()
    assert len(scripted.seen) == 2
    assert not response.ok and response.error.startswith("timeout after 0.2 s") and "2 attempts" in response.error


def test_unreachable_server_fails_at_boot_with_the_url(monkeypatch):
    from evalkit.engines.openai import OpenAIEngine

    from .conftest import free_port

    base_url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with pytest.raises(EngineError, match=f"no OpenAI-compatible server answers at {base_url}"):
        OpenAIEngine(openai_config(base_url))


def test_connection_refused_is_retried_then_reported(one_raw_request, monkeypatch):
    from evalkit.engines.openai import OpenAIEngine

    from .conftest import free_port

    # the server was up at boot and went away: requests are retried, then recorded as errors
    monkeypatch.setattr(OpenAIEngine, "_check_reachable", lambda self: None)
    base_url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    engine, sleeps = engine_with_recorded_sleeps(openai_config(base_url, max_retries=2))
    [response] = engine.generate(engine_requests(one_raw_request))
    engine.close()
    assert len(sleeps) == 2
    assert not response.ok and "connection error" in response.error and "3 attempts" in response.error


def test_backoff_is_exponential_with_seeded_jitter(scripted, one_raw_request):
    scripted.script = [Step(503)] * 5
    engine, sleeps = engine_with_recorded_sleeps(openai_config(scripted.base_url, max_retries=4,
                                                               retry_backoff=1.0))
    engine.generate(engine_requests(one_raw_request))
    engine.close()
    assert len(sleeps) == 4
    for retry, delay in enumerate(sleeps):
        ceiling = 1.0 * 2 ** retry
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(sleeps)) == 4  # jittered, not a fixed ladder
    # The same seed and request back off identically on a rerun; another seed does not.
    import random

    from evalkit.engines.openai import RetryPolicy
    policy = RetryPolicy(max_retries=4, base_delay_s=1.0)
    rng = random.Random(0 * 1_000_003 + one_raw_request[0].index)
    assert sleeps == [policy.delay(k, rng) for k in range(4)]
    other = random.Random(1 * 1_000_003 + one_raw_request[0].index)
    assert sleeps != [policy.delay(k, other) for k in range(4)]


def test_retry_after_header_is_respected(scripted, one_raw_request):
    scripted.script = [Step(429, {"error": "slow down"}, headers={"Retry-After": "7"})]
    engine, sleeps = engine_with_recorded_sleeps(openai_config(scripted.base_url, retry_backoff=0.01))
    [response] = engine.generate(engine_requests(one_raw_request))
    engine.close()
    assert response.ok and sleeps == [7.0]


def test_raw_goes_to_completions_and_chat_to_chat_completions(scripted, raw_pair, chat_pair):
    raw = build_schedule(make_behaviors(1), raw_pair, "fixed", seed=0, batch_size=2).requests
    chat = build_schedule(make_behaviors(1), chat_pair, "fixed", seed=0, batch_size=2).requests
    engine = openai_engine(openai_config(scripted.base_url, concurrency=1))
    raw_out, chat_out = engine.generate(engine_requests(raw)), engine.generate(engine_requests(chat))
    engine.close()
    paths = [s["path"] for s in scripted.seen]
    assert paths == ["/v1/completions"] * 2 + ["/v1/chat/completions"] * 2
    assert [s["body"]["prompt"] for s in scripted.seen[:2]] == [r.prompt.text for r in raw]
    assert [s["body"]["messages"] for s in scripted.seen[2:]] == \
        [[{"role": m.role, "content": m.content} for m in r.prompt.messages] for r in chat]
    for seen in scripted.seen:
        body = seen["body"]
        assert (body["model"], body["max_tokens"], body["temperature"], body["seed"]) == (SERVED_NAME, MAX_TOKENS,
                                                                                          0.0, 0)
    assert [r.text for r in raw_out] == [f"echo: {r.prompt.text}".strip() for r in raw]
    assert all(r.finish_reason == "length" for r in raw_out) and all(r.finish_reason == "stop" for r in chat_out)
    assert all(r.prompt_tokens == 7 and r.output_tokens == 3 for r in raw_out + chat_out)


def test_bounded_concurrency_keeps_request_order(scripted, chat_pair):
    schedule = build_schedule(make_behaviors(6), chat_pair, "fixed", seed=0, batch_size=12)
    # Earlier requests answer later, so completion order is the reverse of request order.
    def key(messages):
        return json.dumps([[m["role"], m["content"]] for m in messages])

    order = {key([{"role": m.role, "content": m.content} for m in r.prompt.messages]): i
             for i, r in enumerate(schedule.requests)}
    assert len(order) == len(schedule)
    scripted.delay_for = lambda body: 0.03 * (len(order) - order[key(body["messages"])])
    engine = openai_engine(openai_config(scripted.base_url, concurrency=3))
    responses = engine.generate(engine_requests(schedule.requests))
    engine.close()
    # Responses come back in request order, though later requests finished first.
    assert [r.text for r in responses] == [f"echo: {' | '.join(m.content for m in r.prompt.messages)}"
                                           for r in schedule.requests]
    assert all(r.ok for r in responses)
    assert scripted.max_in_flight == 3


@pytest.mark.parametrize("message,expected", [
    ({"content": "The answer.", "reasoning_content": "plan"}, ("The answer.", "plan")),
    ({"content": "The answer.", "reasoning": "plan"}, ("The answer.", "plan")),
    ({"content": "<think>plan</think> The answer."}, ("The answer.", "plan")),
    ({"content": None, "reasoning_content": "cut off while planning"}, ("", "cut off while planning")),
])
def test_reasoning_from_the_server_or_split_from_the_text(scripted, chat_pair, message, expected):
    scripted.script = [Step(200, {"choices": [{"message": {"role": "assistant", **message},
                                               "finish_reason": "stop"}]})]
    request = build_schedule(make_behaviors(1), chat_pair, "fixed", seed=0, batch_size=1).requests[0]
    engine = openai_engine(openai_config(scripted.base_url))
    [response] = engine.generate(engine_requests([request]))
    engine.close()
    assert (response.text, response.reasoning) == expected
    assert response.prompt_tokens is None  # no usage block: unknown, not zero


@pytest.mark.parametrize("body", ["not json", {"choices": []}, {"no": "choices"}])
def test_malformed_success_is_an_error_not_retried(scripted, one_raw_request, body):
    scripted.script = [Step(200, body)]
    engine = openai_engine(openai_config(scripted.base_url))
    [response] = engine.generate(engine_requests(one_raw_request))
    engine.close()
    assert not response.ok and len(scripted.seen) == 1


def test_the_api_key_is_sent_but_never_described_or_reported(scripted, one_raw_request, monkeypatch):
    """The fake server echoes the Authorization header in its error bodies; the key must
    reach the server and nowhere else."""
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    scripted.script = [Step(401, {"error": {"message": "Incorrect API key provided: {auth}"}}),
                       Step(400, {"error": {"message": "rejected {auth}"}}),
                       Step(500, "{auth} exploded"), Step(500, "{auth} exploded")]
    engine = openai_engine(openai_config(scripted.base_url, api_key_env=KEY_ENV, max_retries=1,
                                         retry_backoff=0.0))
    responses = [engine.generate(engine_requests(one_raw_request))[0] for _ in range(3)]
    described = json.dumps(engine.describe())
    engine.close()
    assert [s["auth"] for s in scripted.seen] == [f"Bearer {FAKE_KEY}"] * 4
    assert FAKE_KEY not in described and KEY_ENV in described
    assert all(not r.ok for r in responses)
    errors = [r.error for r in responses]
    assert errors[0] == f"HTTP 401: not authorized; check the key in ${KEY_ENV}"
    assert errors[1].startswith("HTTP 400: rejected Bearer ***")
    assert errors[2].startswith("HTTP 500: Bearer *** exploded")
    assert not any(FAKE_KEY in e or FAKE_KEY[6:] in e for e in errors)


def test_the_key_is_read_at_request_time(scripted, one_raw_request, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    engine = openai_engine(openai_config(scripted.base_url, api_key_env=KEY_ENV))
    engine.generate(engine_requests(one_raw_request))
    monkeypatch.setenv(KEY_ENV, "sk-rotated")
    engine.generate(engine_requests(one_raw_request))
    engine.close()
    assert [s["auth"] for s in scripted.seen] == [None, "Bearer sk-rotated"]


def test_describe_has_no_url_credentials(monkeypatch):
    from evalkit.engines.openai import OpenAIEngine

    monkeypatch.setattr(OpenAIEngine, "_check_reachable", lambda self: None)  # the host does not exist
    engine = openai_engine(openai_config("https://user:hunter2@gateway.example/v1", concurrency=2))
    described = engine.describe()
    engine.close()
    assert described["base_url"] == "https://gateway.example/v1"
    assert "hunter2" not in json.dumps(described)
    assert described["concurrency"] == 2 and described["api_key_env"] == "OPENAI_API_KEY"


@pytest.mark.parametrize("options,flag", [({"base_url": "127.0.0.1:8000"}, "--base-url"),
                                          ({"concurrency": 0}, "--concurrency"),
                                          ({"max_retries": "many"}, "--max-retries"),
                                          ({"api_key_env": "sk-abc def"}, "--api-key-env")])
def test_invalid_options_are_config_errors(options, flag):
    config = EngineConfig(engine="openai", model="m", options={"base_url": "http://127.0.0.1:1/v1", **options})
    with pytest.raises(ConfigError) as info:
        openai_engine(config)
    assert info.value.option == flag


def test_credentials_in_the_url_are_sent_as_basic_authorization_and_never_reported(scripted, one_raw_request,
                                                                                  monkeypatch):
    """user:password@ in the base URL (percent-encoded, as in a URL) becomes the Basic
    Authorization header, instead of the key; a server echoing that header back in an error
    leaves neither the password nor its Basic token in the stored error or the description.
    (End to end, no file of a run holds them: tests/unit/test_paths_and_secrets.py.)"""
    import base64

    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    password = "p:ss-w0rd-9f3a"
    base_url = scripted.base_url.replace("http://", f"http://gate%40user:{password.replace(':', '%3A')}@")
    token = base64.b64encode(f"gate@user:{password}".encode()).decode()
    scripted.script = [Step(200), Step(400, {"error": {"message": "rejected {auth}"}}),
                       Step(500, "{auth} and gate@user:" + password + " exploded")]
    engine = openai_engine(openai_config(base_url, api_key_env=KEY_ENV, max_retries=0))
    responses = [engine.generate(engine_requests(one_raw_request))[0] for _ in range(3)]
    described = json.dumps(engine.describe())
    engine.close()
    assert [s["auth"] for s in scripted.seen] == [f"Basic {token}"] * 3
    assert responses[0].ok and not responses[1].ok and not responses[2].ok
    assert responses[1].error.startswith("HTTP 400: rejected Basic ***")
    for text in [described, responses[1].error, responses[2].error]:
        assert password not in text and token not in text and FAKE_KEY not in text
    assert "gate" not in described


def test_a_query_in_the_base_url_follows_every_path(scripted, one_raw_request):
    engine = openai_engine(openai_config(scripted.base_url + "?api-version=2024-06-01"))
    [response] = engine.generate(engine_requests(one_raw_request))
    engine.close()
    assert response.ok and scripted.seen[-1]["path"] == "/v1/completions?api-version=2024-06-01"


@pytest.mark.parametrize("concurrency, batch_size", [(1, 1), (1, 4), (3, 6)])
def test_keep_alive_connections_are_reused(one_raw_request, raw_pair, concurrency, batch_size):
    """An HTTP/1.1 server that keeps connections open: 24 requests reuse one connection per
    thread that sends (the calling thread at batch size 1 or concurrency 1, else each of the
    concurrency workers), besides the boot check's own short-lived one."""
    server = ScriptedServer(keep_alive=True)
    try:
        schedule = build_schedule(make_behaviors(12), raw_pair, "fixed", seed=0, batch_size=batch_size)
        engine = openai_engine(openai_config(server.base_url, concurrency=concurrency))
        assert server.connections == 1  # the boot check (GET /models), closed after it
        responses = [r for batch in schedule.batches() for r in engine.generate(engine_requests(batch))]
        engine.close()
    finally:
        server.close()
    assert len(responses) == 24 and all(r.ok for r in responses)
    assert [r.text for r in responses] == [f"echo: {r.prompt.text}".strip() for r in schedule.requests]
    assert 2 <= server.connections <= 1 + concurrency


def test_a_keep_alive_connection_the_server_closed_while_idle_is_reopened(one_raw_request, monkeypatch):
    """HTTP/1.1 keep-alive, but the server drops each connection soon after answering (as
    servers do with idle connections): the next request opens a new connection at once,
    with no error, no retry and no backoff."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    connections = []
    body = json.dumps({"choices": [{"text": "fine", "finish_reason": "stop"}]}).encode()

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            connections.append(conn)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, rest = data.split(b"\r\n\r\n", 1)
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(rest) < length:
                rest += conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
            time.sleep(0.05)
            conn.close()  # keep-alive promised, then the idle connection is closed

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    from evalkit.engines.openai import OpenAIEngine
    monkeypatch.setattr(OpenAIEngine, "_check_reachable", lambda self: None)  # one answer per connection
    engine, sleeps = engine_with_recorded_sleeps(
        openai_config(f"http://127.0.0.1:{listener.getsockname()[1]}/v1", max_retries=0))
    try:
        responses = []
        for _ in range(3):
            responses += engine.generate(engine_requests(one_raw_request))
            time.sleep(0.2)  # the server has closed the connection by now
    finally:
        engine.close()
        listener.close()
    assert [r.text for r in responses] == ["fine"] * 3, [r.error for r in responses]
    assert sleeps == [] and len(connections) == 3


def clear_proxy_environment(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def test_the_proxy_environment_is_honoured(scripted, one_raw_request, monkeypatch):
    """HTTP_PROXY set: requests to an http origin go to the proxy, naming the origin in full,
    with the proxy's credentials as Proxy-Authorization and the origin's as Authorization
    (the scripted server plays the proxy); NO_PROXY naming the origin goes direct."""
    import base64

    clear_proxy_environment(monkeypatch)
    proxy = scripted.base_url.rsplit("/v1", 1)[0].replace("http://", "http://squid:proxy-pw@")
    monkeypatch.setenv("http_proxy", proxy)
    engine = openai_engine(openai_config("http://alice:origin-pw@upstream.example:8000/v1"))
    [response] = engine.generate(engine_requests(one_raw_request))
    engine.close()
    assert response.ok and response.text.startswith("echo: ")
    seen = scripted.seen[-1]
    assert seen["path"] == "http://upstream.example:8000/v1/completions"
    assert seen["headers"]["Host"] == "upstream.example:8000"
    assert seen["headers"]["Proxy-Authorization"] == "Basic " + base64.b64encode(b"squid:proxy-pw").decode()
    assert seen["auth"] == "Basic " + base64.b64encode(b"alice:origin-pw").decode()
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    engine = openai_engine(openai_config(scripted.base_url))
    engine.generate(engine_requests(one_raw_request))
    engine.close()
    assert scripted.seen[-1]["path"] == "/v1/completions" and "Proxy-Authorization" not in scripted.seen[-1]["headers"]


def test_an_https_origin_is_reached_through_a_connect_tunnel(monkeypatch):
    """HTTPS_PROXY set: the engine asks the proxy for a CONNECT tunnel to the origin (with the
    proxy's credentials); a proxy that refuses is a boot error naming the public URL, with
    no credential in it."""
    import base64
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    heads = []

    def refuse_tunnels():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            heads.append(data.decode("latin-1"))
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            conn.close()

    threading.Thread(target=refuse_tunnels, daemon=True).start()
    clear_proxy_environment(monkeypatch)
    monkeypatch.setenv("https_proxy", f"http://squid:proxy-pw@127.0.0.1:{listener.getsockname()[1]}")
    try:
        with pytest.raises(EngineError) as info:
            openai_engine(openai_config("https://alice:origin-pw@gateway.example/v1"))
    finally:
        listener.close()
    [head] = heads
    lines = head.split("\r\n")
    assert lines[0] == "CONNECT gateway.example:443 HTTP/1.0"
    assert f"Proxy-Authorization: Basic {base64.b64encode(b'squid:proxy-pw').decode()}" in lines
    assert "origin-pw" not in head and not any(line.startswith("Authorization") for line in lines)
    message = str(info.value)
    assert "https://gateway.example/v1" in message and "pw" not in message
