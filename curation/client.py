"""The one LLM client every generating stage shares.

``chat_many`` sends chat completions to any OpenAI-compatible server through a single
``openai.AsyncOpenAI`` (its own retries off: this module owns them). It caps HTTP
requests in flight, optionally paces requests and tokens per minute, retries what a
retry can fix (429, 5xx, timeouts, dropped connections, malformed bodies) with
exponential backoff and full jitter, and stops the run on what it cannot (bad request,
bad key, no access, no quota). With a journal, every finished request is written down
as it lands, so a killed run resumes without sending finished work again.

The API key is read from the environment by the caller (see ``curation.endpoint``) and
lives only in ``Endpoint.api_key``: it is not in the config, the journal, the usage
figures or any message this module raises.
"""
from __future__ import annotations

import asyncio
import email.utils
import gc
import json
import random
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .errors import CurationError
from .journal import JournalWriter, fingerprint, load_journal

# Statuses a retry can fix. Every other 4xx is the caller's problem and stops the run.
RETRYABLE_STATUS = {408, 409, 429}
CHARS_PER_TOKEN = 4  # a cheap prompt-size estimate for the tokens-per-minute bucket
DEFAULT_COMPLETION_ESTIMATE = 256
MAX_PAUSE_S = 600.0  # a Retry-After longer than this is treated as this
_SECRET_LIKE = re.compile(r"\b(sk|rk|pk)-[A-Za-z0-9_\-*.]{6,}")


class EndpointConfig(BaseModel):
    """Recipe section ``endpoint``: which server, and how hard to push it."""

    model_config = ConfigDict(extra="forbid")

    base_url: str | None = Field(None, description="OpenAI-compatible base URL (…/v1), or `local` for the embedded llama.cpp server")
    model: str | None = Field(None, description="model name sent with each request")
    api_key_env: str = Field("OPENAI_API_KEY", description="name of the environment variable holding the API key")
    max_in_flight: int = Field(64, ge=1, description="HTTP requests in flight at once")
    requests_per_minute: float | None = Field(None, gt=0, description="pace requests to this rate (token bucket)")
    tokens_per_minute: float | None = Field(None, gt=0, description="pace estimated prompt+completion tokens to this rate")
    timeout_s: float = Field(120.0, gt=0, description="seconds before one HTTP request counts as timed out (and is retried)")
    max_retries: int = Field(8, ge=0, description="retries per request after the first attempt")
    price_input_per_million: float | None = Field(None, ge=0, description="price per million prompt tokens, for the cost figure")
    price_output_per_million: float | None = Field(None, ge=0, description="price per million completion tokens, for the cost figure")
    backoff_base_s: float = Field(0.5, gt=0, description="first retry waits up to this long; doubles per attempt (full jitter)")
    backoff_max_s: float = Field(60.0, gt=0, description="longest wait between two attempts, Retry-After aside")


@dataclass
class Endpoint:
    """A resolved server: where, which model, the key (never printed), and its config."""

    base_url: str
    model: str
    api_key: str = field(repr=False)
    config: EndpointConfig = field(default_factory=EndpointConfig)


@dataclass
class ChatRequest:
    """One chat completion. ``key`` is the caller's stable id, e.g. ``f"{row_id}:evolve:1"``."""

    key: str
    messages: list[dict]
    params: dict = field(default_factory=dict)


@dataclass
class ChatResponse:
    """What came back. ``error`` is set (and ``text`` None) when retries ran out."""

    key: str
    text: str | None
    finish_reason: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""
    error: str | None = None


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _RequestFailed(Exception):
    """This one request cannot succeed (e.g. it exceeds the context), the run goes on."""


def redact(text: str, secret: str | None) -> str:
    """Remove the key, and anything shaped like a key, from a server's message."""
    if secret and len(secret) >= 4:
        text = text.replace(secret, "***")
    return _SECRET_LIKE.sub("***", text)


def _without_userinfo(url: str) -> str:
    """``https://user:secret@host/v1`` -> ``https://***@host/v1``: URLs can carry secrets too."""
    return re.sub(r"//[^/@]+@", "//***@", url)


def estimate_tokens(request: ChatRequest) -> int:
    """Prompt characters / 4 plus the completion budget: cheap, and corrected afterwards."""
    chars = sum(len(str(m.get("content") or "")) + 8 for m in request.messages)
    budget = request.params.get("max_tokens") or request.params.get("max_completion_tokens")
    return chars // CHARS_PER_TOKEN + int(budget or DEFAULT_COMPLETION_ESTIMATE)


def retry_delay(attempt: int, config: EndpointConfig, retry_after: float | None) -> float:
    """Full jitter: uniform in [0, min(max, base * 2**attempt)]; at least Retry-After."""
    ceiling = min(config.backoff_max_s, config.backoff_base_s * (2**attempt))
    delay = random.uniform(0.0, ceiling)
    if retry_after is not None:
        delay = retry_after + random.uniform(0.0, min(ceiling, 1.0))
    return delay


def parse_retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_fields(body: object) -> tuple[str | None, str]:
    """(code, message) from an error body, whatever shape the server chose."""
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            code = err.get("code") or err.get("type")
            return (str(code) if code is not None else None), str(err.get("message") or "")
        return None, str(err)
    return None, str(body or "")[:200]


def _is_context_overflow(code: str | None, message: str) -> bool:
    text = f"{code or ''} {message}".lower()
    return "context_length" in text or "context length" in text or "context size" in text or "too many tokens" in text


def parse_completion(body: bytes) -> tuple[str | None, str | None, int, int, str]:
    """(text, finish_reason, prompt_tokens, completion_tokens, model) or ``_Retryable``."""
    try:
        data = json.loads(body)
        choice = data["choices"][0]
        message = choice["message"]
        text = message.get("content")
        if text is not None and not isinstance(text, str):
            raise TypeError("content is not a string")
        usage = data.get("usage") or {}
        return (
            text,
            choice.get("finish_reason"),
            int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0),
            str(data.get("model") or ""),
        )
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise _Retryable(f"malformed response body ({type(exc).__name__})") from None


def _empty_usage() -> dict:
    return {
        "requests": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost": None,
        "failures": 0,
        "retries": 0,
        "resumed_from_journal": 0,
    }


class _Run:
    """One ``chat_many`` call: the client, the limits, the counters, the journal."""

    def __init__(self, endpoint: Endpoint, writer: JournalWriter | None, progress: Any) -> None:
        self.endpoint = endpoint
        self.config = endpoint.config
        self.writer = writer
        self.progress = progress
        self.usage = _empty_usage()
        self.fatal: CurationError | None = None
        self.rpm = self.tpm = None
        # A 429 with Retry-After holds back every request, not just the one refused:
        # otherwise the other slots keep hitting a server that asked us to wait.
        self.paused_until = 0.0

    async def run(self, todo: list[tuple[str, ChatRequest]], results: dict[str, ChatResponse]) -> None:
        import openai

        from .ratelimit import TokenBucket

        cfg = self.config
        if cfg.requests_per_minute:
            self.rpm = TokenBucket(cfg.requests_per_minute)
        if cfg.tokens_per_minute:
            self.tpm = TokenBucket(cfg.tokens_per_minute)
        self.in_flight = asyncio.Semaphore(cfg.max_in_flight)
        self.client = openai.AsyncOpenAI(
            base_url=self.endpoint.base_url,
            api_key=self.endpoint.api_key or "unused",
            max_retries=0,
            timeout=cfg.timeout_s,
            http_client=_http_client(cfg),
        )
        pending = iter(todo)

        async def worker() -> None:
            for fp, request in pending:
                if self.fatal is not None:
                    return
                response = await self.complete(fp, request)
                if response is not None:
                    results[fp] = response

        # More workers than slots: a worker waiting out a backoff holds no slot.
        workers = [asyncio.create_task(worker()) for _ in range(min(len(todo), 2 * cfg.max_in_flight))]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            await self.client.close()

    async def complete(self, fp: str, request: ChatRequest) -> ChatResponse | None:
        attempt = 0
        while True:
            try:
                response = await self.send(request)
            except _Retryable as exc:
                if self.fatal is not None:
                    return None
                if attempt >= self.config.max_retries:
                    return self.failed(request, f"{exc.reason}; gave up after {attempt + 1} attempts")
                self.usage["retries"] += 1
                self.progress.retried()
                await asyncio.sleep(retry_delay(attempt, self.config, exc.retry_after))
                attempt += 1
                continue
            except _RequestFailed as exc:
                return self.failed(request, str(exc))
            except CurationError as exc:
                if self.fatal is None:
                    self.fatal = exc
                return None
            self.finished(fp, request, response)
            return response

    async def send(self, request: ChatRequest) -> ChatResponse:
        import openai

        estimate = estimate_tokens(request) if self.tpm else 0
        while (pause := self.paused_until - time.monotonic()) > 0:
            await asyncio.sleep(pause)
        if self.rpm:
            await self.rpm.acquire(1)
        if self.tpm:
            await self.tpm.acquire(estimate)
        used = 0
        try:
            async with self.in_flight:
                while (pause := self.paused_until - time.monotonic()) > 0:
                    await asyncio.sleep(pause)
                if self.fatal is not None:
                    raise _Retryable("run stopped")
                try:
                    # The raw POST skips the SDK's request transforms and response
                    # models: the body is parsed once, below, and checked as we need it.
                    raw = await self.client.post(
                        "/chat/completions",
                        body={**request.params, "model": self.endpoint.model, "messages": request.messages},
                        cast_to=_response_type(),
                    )
                    body = raw.content
                except openai.APIStatusError as exc:
                    self.classify(exc)
                except openai.APITimeoutError:
                    raise _Retryable(f"timed out after {self.config.timeout_s:g}s") from None
                except openai.APIConnectionError as exc:
                    raise _Retryable(f"connection error ({type(exc.__cause__ or exc).__name__})") from None
            text, finish, prompt_tokens, completion_tokens, model = parse_completion(body)
            used = prompt_tokens + completion_tokens
        finally:
            if self.tpm:
                self.tpm.adjust(estimate - used)
        return ChatResponse(request.key, text, finish, prompt_tokens, completion_tokens, model or self.endpoint.model)

    def classify(self, exc: Any) -> None:
        """Raise the right kind of failure for an HTTP error status."""
        status = exc.status_code
        code, message = _error_fields(exc.body)
        message = redact(message, self.endpoint.api_key)[:300]
        if status == 429 and code != "insufficient_quota" and "insufficient_quota" not in message:
            retry_after = parse_retry_after(exc.response.headers)
            if retry_after:
                self.paused_until = max(self.paused_until, time.monotonic() + min(retry_after, MAX_PAUSE_S))
            raise _Retryable("HTTP 429 rate limited", retry_after) from None
        if status in RETRYABLE_STATUS - {429} or status >= 500:
            raise _Retryable(f"HTTP {status}", parse_retry_after(exc.response.headers)) from None
        if status == 400 and _is_context_overflow(code, message):
            raise _RequestFailed(f"HTTP 400 prompt too long for the model: {message}") from None
        raise CurationError(self.fatal_message(status, code, message)) from None

    def fatal_message(self, status: int, code: str | None, message: str) -> str:
        where = f"endpoint {_without_userinfo(self.endpoint.base_url)} (model {self.endpoint.model})"
        if status == 429 or code == "insufficient_quota":
            hint = "the account has no quota left; add credit or use another endpoint"
        elif status == 401:
            hint = f"the API key was refused; check ${self.config.api_key_env}"
        elif status == 403:
            hint = f"the API key may not use this model; check ${self.config.api_key_env} and endpoint.model"
        elif status == 404:
            hint = "check endpoint.base_url (it usually ends in /v1) and endpoint.model"
        else:
            hint = "the server rejected the request; check the stage's parameters"
        detail = f" ({code})" if code else ""
        said = f": {message}" if message else ""
        return f"{where}: HTTP {status}{detail}{said} -- {hint}"

    def failed(self, request: ChatRequest, reason: str) -> ChatResponse:
        self.usage["failures"] += 1
        self.progress.advance(failed=True)
        return ChatResponse(request.key, None, None, 0, 0, self.endpoint.model, error=reason)

    def finished(self, fp: str, request: ChatRequest, response: ChatResponse) -> None:
        self.usage["requests"] += 1
        self.usage["prompt_tokens"] += response.prompt_tokens
        self.usage["completion_tokens"] += response.completion_tokens
        if self.writer is not None:
            self.writer.append(journal_record(fp, self.endpoint.model, request, response))
        self.progress.advance(tokens=response.prompt_tokens + response.completion_tokens, cost=self.cost_so_far())

    def cost_so_far(self) -> float | None:
        return usage_cost(self.usage["prompt_tokens"], self.usage["completion_tokens"], self.config)


def _http_client(config: EndpointConfig):
    """aiohttp under the SDK when installed (its connection pool stays cheap with
    hundreds of connections; httpx's pool scans every connection per request), else the
    SDK's default httpx client. Either way one pool, as many connections as slots."""
    import openai

    limits = _httpx().Limits(max_connections=config.max_in_flight, max_keepalive_connections=config.max_in_flight)
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return openai.DefaultAsyncHttpxClient(limits=limits, timeout=config.timeout_s)
    return openai.DefaultAioHttpClient(limits=limits, timeout=config.timeout_s)


def _httpx():
    """The HTTP library the installed SDK is built on (``httpx2`` in openai 3, else ``httpx``)."""
    try:
        import httpx2

        return httpx2
    except ImportError:
        import httpx

        return httpx


def _response_type():
    return _httpx().Response


def usage_cost(prompt_tokens: int, completion_tokens: int, config: EndpointConfig) -> float | None:
    """Money spent, when the recipe gives prices (per million tokens)."""
    if config.price_input_per_million is None and config.price_output_per_million is None:
        return None
    return (
        prompt_tokens * (config.price_input_per_million or 0.0)
        + completion_tokens * (config.price_output_per_million or 0.0)
    ) / 1_000_000


def journal_record(fp: str, model: str, request: ChatRequest, response: ChatResponse) -> dict:
    """What a journal line holds: the request and its answer, never headers or the key."""
    return {
        "fingerprint": fp,
        "key": request.key,
        "model": model,
        "params": request.params,
        "messages": request.messages,
        "response": {"text": response.text, "finish_reason": response.finish_reason, "model": response.model},
        "usage": {"prompt_tokens": response.prompt_tokens, "completion_tokens": response.completion_tokens},
        "time": round(time.time(), 3),
    }


def response_from_record(key: str, record: dict) -> ChatResponse:
    reply = record.get("response") or {}
    usage = record.get("usage") or {}
    return ChatResponse(
        key,
        reply.get("text"),
        reply.get("finish_reason"),
        int(usage.get("prompt_tokens") or 0),
        int(usage.get("completion_tokens") or 0),
        str(reply.get("model") or record.get("model") or ""),
    )


class ChatProgress:
    """Live line on stderr: done/total, requests/s, tokens/s, failures, cost.

    Disabled (a no-op) when asked to be, or when stderr is not a terminal.
    """

    def __init__(self, total: int, enabled: bool = True) -> None:
        from .console import console

        self.enabled = enabled and console.is_terminal
        self.total = total
        self.done = self.failures = self.tokens = self.retries = 0
        self.cost: float | None = None
        self.started = time.monotonic()
        self._bar = None
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("llm"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rates]}"),
                TimeElapsedColumn(), console=console, refresh_per_second=4,
            )
            self._task = self._bar.add_task("llm", total=total, rates="")

    def retried(self) -> None:
        self.retries += 1

    def advance(self, tokens: int = 0, cost: float | None = None, failed: bool = False) -> None:
        if self._bar is None:
            return
        self.done += 1
        self.tokens += tokens
        self.failures += failed
        self.cost = cost if cost is not None else self.cost
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rates = f"{self.done / elapsed:.1f} req/s  {self.tokens / elapsed:.0f} tok/s  {self.failures} failed  {self.retries} retries"
        if self.cost is not None:
            rates += f"  ${self.cost:.4f}"
        self._bar.update(self._task, advance=1, rates=rates)

    def __enter__(self) -> "ChatProgress":
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()


def chat_many(
    requests: list[ChatRequest],
    endpoint: Endpoint,
    journal: Path | None = None,
    progress: bool = True,
) -> tuple[list[ChatResponse], dict]:
    """Answer every request; responses come back in request order, with a usage dict.

    Requests with the same fingerprint (model, messages, params) are sent once and share
    the answer. With ``journal``, answers already journaled are reused, not sent again;
    only successful answers are journaled, so a request whose retries ran out is tried
    again by the next run. Fatal endpoint errors raise ``CurationError``.
    """
    usage = _empty_usage()
    if not requests:
        return [], usage
    fps = [fingerprint(endpoint.model, r.messages, r.params) for r in requests]
    journal_path = Path(journal) if journal is not None else None
    done = load_journal(journal_path) if journal_path is not None else {}
    todo: dict[str, ChatRequest] = {}
    for fp, request in zip(fps, requests):
        if fp not in done and fp not in todo:
            todo[fp] = request
    resumed = sum(1 for fp in fps if fp in done)

    results: dict[str, ChatResponse] = {}
    if todo:
        with ChatProgress(len(todo), enabled=progress) as bar:
            writer = JournalWriter(journal_path) if journal_path is not None else None
            run = _Run(endpoint, writer, bar)
            try:
                with _fewer_collections():
                    _run_coroutine(run.run(list(todo.items()), results))
            finally:
                if writer is not None:
                    writer.close()
        if run.fatal is not None:
            raise run.fatal
        usage = run.usage
    usage["resumed_from_journal"] = resumed
    usage["cost"] = usage_cost(usage["prompt_tokens"], usage["completion_tokens"], endpoint.config)

    out: list[ChatResponse] = []
    for fp, request in zip(fps, requests):
        if fp in done:
            out.append(response_from_record(request.key, done[fp]))
        else:
            got = results[fp]
            out.append(got if got.key == request.key else _rekey(got, request.key))
    return out, usage


def _rekey(response: ChatResponse, key: str) -> ChatResponse:
    return ChatResponse(key, response.text, response.finish_reason, response.prompt_tokens,
                        response.completion_tokens, response.model, response.error)


@contextmanager
def _fewer_collections():
    """Each request allocates a few hundred short-lived objects; with the default
    thresholds the collector runs every few requests and rescans the caller's whole
    heap (a stage holds its table as Python rows). Freezing the existing heap and
    collecting the young generation less often saved roughly 15% of the client's CPU
    per request in bench/bench_client.py. Restored on exit."""
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(threshold[0], 50_000), threshold[1], threshold[2])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed: the event loop is a good part of the per-request cost."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _run_coroutine(coro) -> None:
    """Run on a fresh loop, also from a thread that already runs one (e.g. a notebook)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        with asyncio.Runner(loop_factory=_new_loop) as runner:
            runner.run(coro)
        return
    failure: list[BaseException] = []

    def target() -> None:
        try:
            with asyncio.Runner(loop_factory=_new_loop) as runner:
                runner.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
