"""``openai``: any OpenAI-compatible HTTP endpoint (a vLLM server, OpenAI, a gateway).

Chat-format prompts go to ``{base_url}/chat/completions``; raw-format prompts to
``{base_url}/completions`` as the exact string. Plain ``httpx`` (a vLLM dependency), so
every header, retry and timeout is visible here.

Options (``EngineConfig.options``; all optional):

==============  ===============================================================
base_url        endpoint root including ``/v1`` (default https://api.openai.com/v1)
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

import os
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError, EngineError
from ..safety import public_url, redact_error
from ._base import BaseEngine, EngineConfig, EngineRequest, Response, error_response, split_reasoning

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
RETRY_STATUSES = frozenset({408, 429})  # request timeout, rate limit; plus every 5xx
MAX_REASON_CHARS = 200


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: retry ``k`` (0-based) waits a uniform draw from
    [d/2, d] where d = min(max_delay_s, base_delay_s * 2**k), or the server's Retry-After
    when it asks for a longer wait (still capped)."""

    max_retries: int = 4
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0

    def delay(self, retry: int, rng: random.Random, retry_after_s: float | None = None) -> float:
        ceiling = min(self.max_delay_s, self.base_delay_s * (2 ** retry))
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
        key_env = str(opt.get("api_key_env") or DEFAULT_KEY_ENV)
        if not key_env.replace("_", "").isalnum():
            raise ConfigError(f"expected the NAME of an environment variable, got {key_env[:40]!r}",
                              option="--api-key-env")
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


def _number(value: Any, kind: type, option: str, minimum: float):
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"expected a number, got {value!r}", option=option) from None
    if number < minimum:
        raise ConfigError(f"must be at least {minimum}, got {number}", option=option)
    return number


class _Failure(Exception):
    """An attempt that failed; ``retryable`` says whether another attempt may succeed."""

    def __init__(self, reason: str, retryable: bool, retry_after_s: float | None = None):
        super().__init__(reason)
        self.reason, self.retryable, self.retry_after_s = reason, retryable, retry_after_s


class OpenAIEngine(BaseEngine):
    name = "openai"

    def __init__(self, config: EngineConfig):
        try:
            import httpx
        except ImportError:
            raise EngineError("the openai engine needs httpx (installed with vllm): pip install httpx") from None
        self._httpx = httpx
        self.config = config
        self.settings = OpenAISettings.from_config(config)
        s = self.settings
        self._client = httpx.Client(
            timeout=httpx.Timeout(s.timeout_s),
            limits=httpx.Limits(max_connections=s.concurrency, max_keepalive_connections=s.concurrency),
            headers={"Content-Type": "application/json"},
        )
        self._pool = ThreadPoolExecutor(max_workers=s.concurrency, thread_name_prefix="evalkit-openai")
        self._sleep = time.sleep  # replaceable in tests
        self._check_reachable()

    def _check_reachable(self) -> None:
        """Fail at boot, not after every request has walked through its retries, when
        nothing answers at the base URL. Any HTTP answer (even 401 or 404: not every
        provider serves /models) counts as reachable; only a connection failure does not."""
        try:
            self._client.get(f"{self.settings.base_url}/models", timeout=min(10.0, self.settings.timeout_s))
        except self._httpx.HTTPError as exc:
            self.close()
            raise EngineError(f"no OpenAI-compatible server answers at {public_url(self.settings.base_url)} "
                              f"({type(exc).__name__}); check --base-url") from None

    # ------------------------------------------------------------ engine protocol

    def generate(self, requests: Sequence[EngineRequest]) -> list[Response]:
        if self._client is None:
            raise EngineError("the openai engine is closed")
        # Every request of the batch finishes (or fails) before the next batch starts.
        futures = [self._pool.submit(self._run, request) for request in requests]
        responses = []
        for future in futures:
            try:
                responses.append(future.result())
            except Exception as exc:  # a bug here must not end the run, nor leak the key
                responses.append(error_response(self._scrub(f"internal error: {type(exc).__name__}: {exc}")))
        return responses

    def describe(self) -> dict[str, Any]:
        s = self.settings
        return {"engine": self.name, "model": s.model, "base_url": public_url(s.base_url),
                "api_key_env": s.api_key_env, "concurrency": s.concurrency, "request_timeout_s": s.timeout_s,
                "max_retries": s.retry.max_retries, "retry_backoff_s": s.retry.base_delay_s,
                "seed": s.seed, "max_tokens": s.max_tokens, "temperature": s.temperature,
                "latency": "wall time of the request including retries"}

    def close(self) -> None:
        pool, self._pool = self._pool, None
        client, self._client = self._client, None
        if pool is not None:
            pool.shutdown(wait=True)
        if client is not None:
            client.close()

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

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.settings.api_key_env, "")  # read now, never kept
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _attempt(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        httpx = self._httpx
        url = self.settings.base_url + path
        try:
            reply = self._client.post(url, json=body, headers=self._headers())
        except httpx.TimeoutException:
            raise _Failure(f"timeout after {self.settings.timeout_s:g} s", retryable=True) from None
        except httpx.TransportError as exc:  # refused, reset, DNS, protocol errors
            raise _Failure(f"connection error: {type(exc).__name__}", retryable=True) from None
        if reply.status_code != 200:
            raise _Failure(self._status_reason(reply), retryable=is_retryable_status(reply.status_code),
                           retry_after_s=_retry_after(reply.headers.get("retry-after")))
        try:
            return reply.json()
        except ValueError:
            raise _Failure("HTTP 200 with a body that is not JSON", retryable=False) from None

    def _status_reason(self, reply) -> str:
        status = reply.status_code
        if status in (401, 403):
            # Servers echo (parts of) a rejected key; say which variable to check instead.
            return f"HTTP {status}: not authorized; check the key in ${self.settings.api_key_env}"
        detail = ""
        try:
            error = reply.json().get("error")
            detail = error.get("message", "") if isinstance(error, dict) else str(error or "")
        except Exception:
            detail = reply.text
        detail = self._scrub(" ".join(str(detail).split()))
        reason = f"HTTP {status}"
        if detail:
            reason += f": {detail[:MAX_REASON_CHARS]}"
        return reason

    def _scrub(self, text: str) -> str:
        """Server text may quote the key, masked (sk-ab****wxyz) or re-cased: none of it is kept."""
        return redact_error(text, [os.environ.get(self.settings.api_key_env, "")])

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
