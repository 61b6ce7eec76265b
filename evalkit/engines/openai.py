"""``openai``: any OpenAI-compatible HTTP endpoint (a vLLM server, OpenAI, a gateway).

Chat-format prompts go to ``{base_url}/chat/completions``; raw-format prompts to
``{base_url}/completions`` as the exact string. The standard library's ``http.client``
with keep-alive connections (a quarter of httpx's CPU per request, and no dependency), so
every header, retry and timeout is visible here.

Options (``EngineConfig.options``; all optional):

==============  ===============================================================
base_url        endpoint root including ``/v1`` (default https://api.openai.com/v1).
                ``user:password@`` in it is sent as Basic authorization (instead of
                the key), never described, stored or put in an error; a query
                (``?api-version=...``) follows every path. HTTP_PROXY, HTTPS_PROXY
                and NO_PROXY are honoured.
api_key_env     NAME of the environment variable holding the key (default
                OPENAI_API_KEY). The key is read at request time, sent only as a
                bearer token, and never stored, described or put in an error.
                Unset or empty: no Authorization header (a local vLLM server).
concurrency     requests in flight at once (default 8). A batch always completes
                before ``generate`` returns, so batches still run in schedule order.
request_timeout seconds an attempt may wait to connect or for the next bytes (default 120)
max_retries     retries after the first attempt (default 4) on timeouts, connection
                errors, 429 and 5xx; other 4xx fail at once
retry_backoff   first backoff in seconds (default 1); doubles per retry, with jitter
==============  ===============================================================
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import os
import random
import select
import ssl
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import SplitResult, unquote, urlsplit
from urllib.request import getproxies, proxy_bypass

from ..errors import ConfigError, EngineError
from ..safety import public_url, redact_error
from ._base import BaseEngine, EngineConfig, EngineRequest, Response, error_response, split_reasoning

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
RETRY_STATUSES = frozenset({408, 429})  # request timeout, rate limit; plus every 5xx
MAX_REASON_CHARS = 200
_N = TypeVar("_N", int, float)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: retry ``k`` (0-based) waits a uniform draw from
    [d/2, d] where d = min(max_delay_s, base_delay_s * 2**k), or the server's Retry-After
    when it asks for a longer wait (still capped)."""

    max_retries: int = 4
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0

    def delay(self, retry: int, rng: random.Random, retry_after_s: float | None = None) -> float:
        ceiling = min(self.max_delay_s, self.base_delay_s * (2.0 ** retry))
        wait = ceiling / 2 + rng.uniform(0, ceiling / 2)
        if retry_after_s is not None:
            wait = max(wait, min(retry_after_s, self.max_delay_s))
        return wait


def is_retryable_status(status: int) -> bool:
    return status in RETRY_STATUSES or 500 <= status < 600


@dataclass(frozen=True)
class OpenAISettings:
    model: str
    base_url: str
    api_key_env: str
    concurrency: int
    timeout_s: float
    retry: RetryPolicy
    seed: int
    max_tokens: int
    temperature: float

    @classmethod
    def from_config(cls, config: EngineConfig) -> OpenAISettings:
        opt = config.options
        base_url = str(opt.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
        try:
            parts = urlsplit(base_url)
        except ValueError:  # e.g. an unclosed IPv6 bracket
            parts = urlsplit("")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"expected an http(s) URL such as http://127.0.0.1:8000/v1, got {public_url(base_url)!r}",
                              option="--base-url")
        if "@" in f"{parts.path}{parts.query}{parts.fragment}":  # a password's unencoded '/', '?' or '#' cut it short
            raise ConfigError("'@' after the host: percent-encode '/', '?', '#' and '@' in a user name or password "
                              "(e.g. '/' as %2F); the URL is not shown, it may hold a password", option="--base-url")
        if not _has_valid_port(parts):
            raise ConfigError(f"the port of {public_url(base_url)!r} is not a number", option="--base-url")
        key_env = str(opt.get("api_key_env") or DEFAULT_KEY_ENV)
        if not key_env.replace("_", "").isalnum():
            # not echoed: what is given here by mistake is most often the key itself
            raise ConfigError("expected the NAME of an environment variable (letters, digits and '_'), such as "
                              "OPENAI_API_KEY, not the key", option="--api-key-env")
        return cls(
            model=str(config.model),
            base_url=base_url,
            api_key_env=key_env,
            concurrency=_number(_given(opt, "concurrency", 8), int, "--concurrency", 1),
            timeout_s=_number(_given(opt, "request_timeout", 120.0), float, "--request-timeout", 0.001),
            retry=RetryPolicy(max_retries=_number(_given(opt, "max_retries", 4), int, "--max-retries", 0),
                              base_delay_s=_number(_given(opt, "retry_backoff", 1.0), float, "--retry-backoff", 0.0)),
            seed=int(config.seed),
            max_tokens=int(config.max_tokens),
            temperature=float(config.temperature),
        )


def _given(options: dict[str, Any], key: str, default: Any) -> Any:
    value = options.get(key)
    return default if value is None else value


def _number(value: Any, kind: type[_N], option: str, minimum: float) -> _N:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"expected a number, got {value!r}", option=option) from None
    if not math.isfinite(number):
        raise ConfigError(f"expected a finite number, got {number}", option=option)
    if number < minimum:
        raise ConfigError(f"must be at least {minimum}, got {number}", option=option)
    return number


class _Failure(Exception):
    """An attempt that failed; ``retryable`` says whether another attempt may succeed."""

    def __init__(self, reason: str, retryable: bool, retry_after_s: float | None = None):
        super().__init__(reason)
        self.reason, self.retryable, self.retry_after_s = reason, retryable, retry_after_s


def _basic(username: str | None, password: str | None) -> str | None:
    if not (username or password):
        return None
    pair = f"{unquote(username or '')}:{unquote(password or '')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


def _has_valid_port(parts: SplitResult) -> bool:
    try:
        parts.port  # noqa: B018 - urllib parses (and may refuse) the port on access
    except ValueError:
        return False
    return True


class _Connections:
    """Keep-alive HTTP/1.1 connections to the base URL's origin, one per thread (a
    connection carries one request at a time), reopened when the server has closed one
    while it was idle. Credentials in the URL become Basic authorization, as in browsers.
    The proxy environment variables are honoured (HTTP_PROXY, HTTPS_PROXY, NO_PROXY): an
    https origin is reached through a CONNECT tunnel, an http one by absolute URLs."""

    def __init__(self, base_url: str, timeout_s: float) -> None:
        parts = urlsplit(base_url)
        self._https, self._host, self._timeout_s = parts.scheme == "https", parts.hostname or "", timeout_s
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._query = f"?{parts.query}" if parts.query else ""  # a gateway's ?api-version=..., after the path
        self._ssl = ssl.create_default_context() if self._https else None
        self.basic_auth = _basic(parts.username, parts.password)
        # what a server could echo back in an error: the URL's password and its Basic token
        self.secrets = [unquote(parts.password or ""), (self.basic_auth or "").removeprefix("Basic ")]
        proxy = None if proxy_bypass(self._host) else getproxies().get(parts.scheme)
        self._proxy = urlsplit(proxy if "://" in proxy else f"http://{proxy}") if proxy else None
        if self._proxy is not None and not _has_valid_port(self._proxy):
            # not shown: what urllib reads as the port may be the first half of a password
            raise ConfigError(f"the proxy for {parts.scheme} URLs (${parts.scheme.upper()}_PROXY) has a port that is "
                              "not a number: percent-encode '/', '?', '#' and '@' in its user name or password")
        self._proxy_headers: dict[str, str] = {}
        if self._proxy is not None and not self._https:  # requests name the origin in full
            self._prefix = f"http://{self._host}:{self._port}{self._prefix}"
            authorization = _basic(self._proxy.username, self._proxy.password)
            self._proxy_headers = {"Proxy-Authorization": authorization} if authorization else {}
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[http.client.HTTPConnection] = set()

    def _new(self, timeout_s: float) -> http.client.HTTPConnection:
        host, port = self._host, self._port
        if self._proxy is not None:
            host, port = self._proxy.hostname or "", self._proxy.port or 80
        if self._https:
            connection = http.client.HTTPSConnection(host, port, timeout=timeout_s, context=self._ssl)
            if self._proxy is not None:
                authorization = _basic(self._proxy.username, self._proxy.password)
                connection.set_tunnel(self._host, self._port,
                                      headers={"Proxy-Authorization": authorization} if authorization else None)
            return connection
        return http.client.HTTPConnection(host, port, timeout=timeout_s)

    def _mine(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        # An idle connection that is readable has been closed (or broken) by the server:
        # sending on it would fail, so open a new one instead.
        if connection is not None and connection.sock is not None and select.select([connection.sock], [], [], 0)[0]:
            self._drop(connection)
            connection = None
        if connection is None:
            connection = self._local.connection = self._new(self._timeout_s)
            with self._lock:
                self._open.add(connection)
        return connection

    def _drop(self, connection: http.client.HTTPConnection) -> None:
        connection.close()
        with self._lock:
            self._open.discard(connection)
        if getattr(self._local, "connection", None) is connection:
            self._local.connection = None

    def request(self, method: str, path: str, body: bytes | None, headers: dict[str, str],
                timeout_s: float | None = None) -> tuple[int, Any, bytes]:
        """(status, headers, body). Raises TimeoutError, OSError or http.client.HTTPException."""
        connection = self._mine() if timeout_s is None else self._new(timeout_s)
        try:
            connection.request(method, self._prefix + path + self._query, body=body,
                               headers={**headers, **self._proxy_headers})
            reply = connection.getresponse()
            data = reply.read()
        except BaseException:
            self._drop(connection)
            raise
        if reply.will_close or timeout_s is not None:
            self._drop(connection)
        return reply.status, reply.headers, data

    def close(self) -> None:
        with self._lock:
            connections, self._open = list(self._open), set()
        for connection in connections:
            connection.close()


class OpenAIEngine(BaseEngine):
    name = "openai"

    @classmethod
    def validate(cls, config: EngineConfig) -> OpenAISettings:
        """The settings, checked before any run directory is touched (not first at boot)."""
        return OpenAISettings.from_config(config)

    def __init__(self, config: EngineConfig):
        self.config = config
        self.settings = OpenAISettings.from_config(config)
        s = self.settings
        self._http: _Connections | None = _Connections(s.base_url, s.timeout_s)
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(max_workers=s.concurrency,
                                                                   thread_name_prefix="evalkit-openai")
        self._sleep = time.sleep  # replaceable in tests
        self._check_reachable()

    def _check_reachable(self) -> None:
        """Fail at boot, not after every request has walked through its retries, when
        nothing answers at the base URL. Any HTTP answer (even 401 or 404: not every
        provider serves /models) counts as reachable; only a connection failure does not."""
        try:
            self._connections().request("GET", "/models", None, self._headers(),
                                        timeout_s=min(10.0, self.settings.timeout_s))
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise EngineError(f"no OpenAI-compatible server answers at {public_url(self.settings.base_url)} "
                              f"({type(exc).__name__}); check --base-url") from None

    # ------------------------------------------------------------ engine protocol

    def generate(self, requests: Sequence[EngineRequest]) -> list[Response]:
        pool = self._pool
        if self._http is None or pool is None:
            raise EngineError("the openai engine is closed")
        # Every request of the batch finishes (or fails) before the next batch starts. One
        # request at a time (a batch of one, or --concurrency 1) runs in this thread: handing
        # it to a worker thread and back would cost two thread switches per request.
        if len(requests) == 1 or self.settings.concurrency == 1:
            return [self._guarded(request) for request in requests]
        return list(pool.map(self._guarded, requests))

    def _guarded(self, request: EngineRequest) -> Response:
        try:
            return self._run(request)
        except Exception as exc:  # a bug here must not end the run, nor leak the key
            return error_response(self._scrub(f"internal error: {type(exc).__name__}: {exc}"))

    def describe(self) -> dict[str, Any]:
        s = self.settings
        return {"engine": self.name, "model": s.model, "base_url": public_url(s.base_url),
                "api_key_env": s.api_key_env, "concurrency": s.concurrency, "request_timeout_s": s.timeout_s,
                "max_retries": s.retry.max_retries, "retry_backoff_s": s.retry.base_delay_s,
                "seed": s.seed, "max_tokens": s.max_tokens, "temperature": s.temperature,
                "latency": "wall time of the request including retries"}

    def close(self) -> None:
        pool, self._pool = self._pool, None
        connections, self._http = self._http, None
        if pool is not None:
            pool.shutdown(wait=True)
        if connections is not None:
            connections.close()

    # ------------------------------------------------------------ one request

    def _body(self, request: EngineRequest) -> tuple[str, dict[str, Any]]:
        s = self.settings
        common = {"model": s.model, "max_tokens": s.max_tokens, "temperature": s.temperature, "seed": s.seed}
        if request.prompt.format == "raw":
            return "/completions", {**common, "prompt": request.prompt.text}
        messages = [{"role": m.role, "content": m.content} for m in request.prompt.messages]
        return "/chat/completions", {**common, "messages": messages}

    def _run(self, request: EngineRequest) -> Response:
        started = time.perf_counter()
        try:
            path, body = self._body(request)
        except Exception as exc:
            return error_response(f"cannot build the request: {exc}", 0.0)
        # Jitter is seeded per request, so a rerun backs off identically whatever the
        # thread interleaving.
        rng = random.Random(self.settings.seed * 1_000_003 + request.id)
        attempts = self.settings.retry.max_retries + 1
        for attempt in range(attempts):
            try:
                payload = self._attempt(path, body)
                return self._parse(payload, path, time.perf_counter() - started)
            except _Failure as failure:
                if not failure.retryable or attempt == attempts - 1:
                    tries = f" after {attempt + 1} attempts" if attempt else ""
                    return error_response(f"{failure.reason}{tries}", time.perf_counter() - started)
                self._sleep(self.settings.retry.delay(attempt, rng, failure.retry_after_s))
        raise AssertionError("unreachable")

    def _connections(self) -> _Connections:
        if self._http is None:
            raise EngineError("the openai engine is closed")
        return self._http

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.settings.api_key_env, "")  # read now, never kept
        if self._http is not None and self._http.basic_auth:
            headers["Authorization"] = self._http.basic_auth  # credentials in the URL take precedence
        elif key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _attempt(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            status, headers, data = self._connections().request("POST", path, json.dumps(body).encode(),
                                                                self._headers())
        except TimeoutError:
            raise _Failure(f"timeout after {self.settings.timeout_s:g} s", retryable=True) from None
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, DNS, TLS, protocol errors
            raise _Failure(f"connection error: {type(exc).__name__}", retryable=True) from None
        if status != 200:
            raise _Failure(self._status_reason(status, data), retryable=is_retryable_status(status),
                           retry_after_s=_retry_after(headers.get("retry-after")))
        try:
            reply: dict[str, Any] = json.loads(data)
        except ValueError:
            raise _Failure("HTTP 200 with a body that is not JSON", retryable=False) from None
        return reply

    def _status_reason(self, status: int, data: bytes) -> str:
        if status in (401, 403):
            # Servers echo (parts of) a rejected key; say which variable to check instead.
            return f"HTTP {status}: not authorized; check the key in ${self.settings.api_key_env}"
        detail = ""
        try:
            error = json.loads(data).get("error")
            detail = error.get("message", "") if isinstance(error, dict) else str(error or "")
        except Exception:
            detail = data.decode("utf-8", "replace")
        detail = self._scrub(" ".join(str(detail).split()))
        reason = f"HTTP {status}"
        if detail:
            reason += f": {detail[:MAX_REASON_CHARS]}"
        return reason

    def _scrub(self, text: str) -> str:
        """Server text may quote the key, masked (sk-ab****wxyz) or re-cased: none of it is kept."""
        url_secrets = self._http.secrets if self._http is not None else []
        return redact_error(text, [os.environ.get(self.settings.api_key_env, ""), *url_secrets])

    def _parse(self, payload: dict[str, Any], path: str, latency_s: float) -> Response:
        try:
            choice = payload["choices"][0]
            usage = payload.get("usage") or {}
            if path == "/completions":
                raw, server_reasoning = choice.get("text") or "", None
            else:
                message = choice.get("message") or {}
                raw = message.get("content") or ""
                # vLLM's reasoning parsers return the trace apart: "reasoning" (vLLM >= 0.10)
                # or "reasoning_content" (older vLLM, DeepSeek's API).
                server_reasoning = message.get("reasoning_content") or message.get("reasoning")
        except (KeyError, IndexError, TypeError, AttributeError):
            return error_response("malformed response: no choices[0]", latency_s)
        if server_reasoning:
            text, reasoning = raw.strip(), str(server_reasoning).strip()
        else:
            text, reasoning = split_reasoning(raw)
        return Response(text=text, reasoning=reasoning, finish_reason=choice.get("finish_reason") or "",
                        prompt_tokens=usage.get("prompt_tokens"), output_tokens=usage.get("completion_tokens"),
                        latency_s=latency_s)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
