"""DeepSeek HTTP client: FIM completions (JSON or SSE), models and balance.

Errors are raised as :class:`BackendError` subclasses:

- :class:`AuthError` (401), :class:`BalanceError` (402), :class:`RequestError` (400, 422;
  ``model_missing`` tells a "model does not exist" answer apart): never retried.
- :class:`RateLimitError` (429) and :class:`ServerError` (5xx): retried with jittered
  backoff that honours ``Retry-After`` while the deadline allows, then raised.
- :class:`NetworkError`: connection failures, timeouts, the overall deadline.
- :class:`ProtocolError`: an answer that is not DeepSeek's wire format.

The API key only ever goes into the ``Authorization`` header; no message contains it.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import os
import random
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import attrs

from fimls import __version__, h1
from fimls.urls import insecure_reason

if TYPE_CHECKING:  # httpx is imported only when a proxy or an injected transport needs it
    import httpx

logger = logging.getLogger(__name__)

FIM_PATH = "/beta/completions"
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


class BackendError(Exception):
    """A DeepSeek call failed; ``str()`` is a message fit for the user."""

    kind = "error"

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class AuthError(BackendError):
    """401: the key is missing or wrong."""

    kind = "auth"


class BalanceError(BackendError):
    """402: the account has run out of balance."""

    kind = "balance"


class RequestError(BackendError):
    """400/422: DeepSeek rejected the request."""

    kind = "request"

    def __init__(self, message: str, status: int | None = None, *, model_missing: bool = False):
        super().__init__(message, status)
        self.model_missing = model_missing


class RateLimitError(BackendError):
    """429: too many requests."""

    kind = "rate-limit"


class ServerError(BackendError):
    """5xx: DeepSeek is failing or overloaded."""

    kind = "server"


class NetworkError(BackendError):
    """Could not reach DeepSeek in time."""

    kind = "network"


class ProtocolError(BackendError):
    """The answer was not in DeepSeek's format."""

    kind = "protocol"


class InsecureError(BackendError):
    """The configured URL would send code unencrypted over the network."""

    kind = "insecure"


MAX_CONNECTIONS = 16
MAX_IDLE = 8
KEEPALIVE_EXPIRY = 60.0


@attrs.frozen
class FimRequest:
    """One ``/beta/completions`` body (the cache key too)."""

    model: str
    prompt: str
    suffix: str
    max_tokens: int
    stop: tuple[str, ...]
    temperature: float
    top_p: float
    stream: bool

    def body(self) -> dict[str, Any]:
        """The JSON body."""
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": self.prompt,
            "suffix": self.suffix or None,
            "max_tokens": self.max_tokens,
            "stop": list(self.stop[:16]) or None,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stream": self.stream,
        }
        if self.stream:
            body["stream_options"] = {"include_usage": True}
        return body


@attrs.frozen
class Usage:
    """Token accounting from DeepSeek's ``usage``."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hit_tokens: int = 0
    cache_miss_tokens: int = 0

    @classmethod
    def parse(cls, raw: Any) -> Usage | None:
        """Read ``usage`` defensively; ``None`` if absent."""
        if not isinstance(raw, Mapping):
            return None

        def num(name: str) -> int:
            value = raw.get(name)
            return value if isinstance(value, int) and not isinstance(value, bool) else 0

        hit = num("prompt_cache_hit_tokens")
        if not hit and isinstance(raw.get("prompt_tokens_details"), Mapping):
            cached = raw["prompt_tokens_details"].get("cached_tokens")
            hit = cached if isinstance(cached, int) else 0
        prompt = num("prompt_tokens")
        miss = num("prompt_cache_miss_tokens") or max(prompt - hit, 0)
        return cls(prompt, num("completion_tokens"), hit, miss)


@attrs.frozen
class FimResult:
    """A completion as received."""

    text: str
    finish_reason: str | None
    usage: Usage | None = None
    early_close: bool = False
    """The stream was closed on our side once the answer was complete."""


@attrs.frozen
class Balance:
    """``GET /user/balance``."""

    is_available: bool
    balances: tuple[tuple[str, str], ...]
    """(currency, total_balance) pairs, amounts as DeepSeek's strings."""

    def describe(self) -> str:
        """E.g. ``12.34 USD (available)``."""
        amounts = ", ".join(f"{total} {currency}" for currency, total in self.balances) or "none"
        return f"{amounts} ({'available' if self.is_available else 'NOT available'})"


def root_url(base_url: str) -> str:
    """Accept ``https://api.deepseek.com`` with or without ``/beta`` or ``/completions``."""
    url = base_url.strip().split("#", 1)[0].split("?", 1)[0].rstrip("/")
    for tail in ("/completions", "/beta", "/v1"):
        if url.endswith(tail):
            url = url[: -len(tail)].rstrip("/")
    return url


def public_url(base_url: str) -> str:
    """The base URL without credentials or query string, for display."""
    parsed = urlsplit(root_url(base_url))
    return f"{parsed.scheme}://{parsed.netloc.rpartition('@')[2]}{parsed.path}"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delay or HTTP date), clamped to 0..300."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), 300.0)


def _error_message(response_text: str) -> str:
    try:
        data = json.loads(response_text.strip() or "null")
    except ValueError:
        return ""
    if isinstance(data, Mapping):
        error = data.get("error")
        if isinstance(error, Mapping) and isinstance(error.get("message"), str):
            return str(error["message"])[:300]
        if isinstance(error, str):
            return error[:300]
    return ""


def error_for(status: int, body: str, headers: Mapping[str, str], model: str = "") -> BackendError:
    """Map an HTTP error answer to a :class:`BackendError` with a clear message."""
    detail = _error_message(body)
    retry_after = parse_retry_after(headers.get("retry-after"))
    if status == 401:
        return AuthError("DeepSeek rejected the API key (401): invalid API key", status)
    if status == 402:
        return BalanceError("DeepSeek account has insufficient balance (402): top up to continue", status)
    if status in (400, 404, 422):
        if "model" in detail.lower() and ("exist" in detail.lower() or "not" in detail.lower()):
            return RequestError(
                f"DeepSeek says model {model!r} does not exist ({detail}); set fimls.model",
                status,
                model_missing=True,
            )
        return RequestError(f"DeepSeek rejected the request ({status}): {detail or 'no detail'}", status)
    if status == 429:
        return RateLimitError("DeepSeek rate limit reached (429)", status, retry_after)
    if status >= 500:
        return ServerError(f"DeepSeek server error ({status})", status, retry_after)
    return ProtocolError(f"unexpected HTTP status {status} from DeepSeek", status)


class DeepSeekClient:
    """Everything the server asks DeepSeek, over kept-alive connections (fimls.h1, or httpx)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_retries: int = 2,
        sleep: Callable[[float], Any] = asyncio.sleep,
        on_retry: Callable[[], None] | None = None,
        allow_insecure_http: bool = False,
    ) -> None:
        self.root = root_url(base_url)
        self.refusal = insecure_reason(self.root, allow_insecure_http)
        self._key = api_key
        self.max_retries = max_retries
        self._on_retry = on_retry or (lambda: None)
        self._sleep = sleep
        headers = {"User-Agent": f"fimls/{__version__}", "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._headers = headers
        self._timeouts = (connect_timeout, read_timeout)
        self._context = h1.tls_context()
        self._transport = transport
        self._httpx: httpx.AsyncClient | None = None
        # Requests go over fimls's own HTTP/1.1 client (fimls.h1) unless a proxy from the
        # environment or a transport given by the caller has to carry them.
        self._direct = not any(os.environ.get(name) for name in PROXY_VARIABLES)
        self._h1: h1.H1Client | None = None
        if self._direct and transport is None:
            self._h1 = h1.H1Client(
                self._context,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                max_connections=MAX_CONNECTIONS,
                max_idle=MAX_IDLE,
                keepalive_expiry=KEEPALIVE_EXPIRY,
                headers=headers,
            )

    @property
    def _http(self) -> httpx.AsyncClient:
        """httpx, for proxies and injected transports; loaded on first use."""
        if self._httpx is None:
            import httpx

            limits = httpx.Limits(
                max_connections=MAX_CONNECTIONS,
                max_keepalive_connections=MAX_IDLE,
                keepalive_expiry=KEEPALIVE_EXPIRY,
            )
            self._transport = self._transport or httpx.AsyncHTTPTransport(verify=self._context, limits=limits)
            connect, read = self._timeouts
            self._httpx = httpx.AsyncClient(
                headers=self._headers,
                timeout=httpx.Timeout(read, connect=connect),
                transport=self._transport,
                follow_redirects=False,
            )
        return self._httpx

    @property
    def has_key(self) -> bool:
        """Whether an API key is configured."""
        return bool(self._key)

    def open_connections(self) -> int:
        """Connections held by the pools (0 when it cannot tell, e.g. a mock transport)."""
        pool = getattr(self._transport, "_pool", None)
        connections = getattr(pool, "connections", None)
        held = len(connections) if isinstance(connections, list) else 0
        return held + (self._h1.open_connections() if self._h1 else 0)

    async def aclose(self) -> None:
        """Close all connections."""
        if self._h1 is not None:
            await self._h1.aclose()
        if self._httpx is not None:
            await self._httpx.aclose()

    async def fim(
        self,
        request: FimRequest,
        *,
        done: Callable[[str], bool] | None = None,
        timeout: float = 5.0,
    ) -> FimResult:
        """Run one FIM completion within ``timeout`` seconds, retries included.

        ``done(text)`` lets a streamed answer stop early once nothing more is needed; it is
        asked whenever a chunk brings a line break.
        """
        if self.refusal:
            raise InsecureError(self.refusal)
        deadline = time.monotonic() + timeout
        failures: list[BackendError] = []
        try:
            async with asyncio.timeout(timeout):
                return await self._with_retries(request, done, deadline, failures)
        except TimeoutError:
            if failures:
                raise failures[-1] from None  # the condition that used up the time
            raise NetworkError(f"DeepSeek did not answer within {timeout:g} s") from None

    async def _with_retries(
        self,
        request: FimRequest,
        done: Callable[[str], bool] | None,
        deadline: float,
        failures: list[BackendError],
    ) -> FimResult:
        attempt = 0
        while True:
            try:
                return await self._fim_once(request, done)
            except (RateLimitError, ServerError, NetworkError) as error:
                failures.append(error)
                if attempt >= self.max_retries:
                    raise
                delay = error.retry_after
                if delay is None:
                    delay = random.uniform(0.5, 1.0) * min(0.25 * 2**attempt, 2.0)
                if time.monotonic() + delay >= deadline:
                    raise
                attempt += 1
                self._on_retry()
                logger.info("%s; retry %d in %.2f s", error, attempt, delay)
                await self._sleep(delay)

    async def _fim_once(self, request: FimRequest, done: Callable[[str], bool] | None) -> FimResult:
        url = self.root + FIM_PATH
        try:
            # Lone surrogates (legal in JSON strings, not in UTF-8) become "?".
            content = json.dumps(request.body(), ensure_ascii=False).encode("utf-8", "replace")
            # Answers are small; uncompressed ones can be read straight off the wire.
            headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
            async with self._post(url, content, headers) as response:
                if response.status_code != 200:
                    body = (await response.aread()).decode("utf-8", "replace")
                    raise error_for(response.status_code, body, response.headers, request.model)
                if request.stream:
                    return await _read_stream(_body_chunks(response), done)
                raw = (await response.aread()).decode("utf-8", "replace")
                return _parse_json_completion(raw)
        except BackendError:
            raise
        except Exception as exc:
            failure = _http_failure(exc, "DeepSeek timed out ({})")
            if failure is None:
                raise
            raise failure from None

    @contextlib.asynccontextmanager
    async def _post(
        self, url: str, content: bytes, headers: dict[str, str]
    ) -> AsyncIterator[httpx.Response | h1.Response]:
        """POST with a streamed answer, closed on leaving the block."""
        if self._h1 is not None:
            answer = await self._h1.request("POST", url, content, headers)
            try:
                yield answer
            finally:
                answer.close()
            return
        request = self._http.build_request("POST", url, content=content, headers=headers)
        if self._direct:
            assert self._transport is not None  # set with the client
            response = await self._transport.handle_async_request(request)
            response.request = request
        else:
            response = await self._http.send(request, stream=True)
        try:
            yield response
        finally:
            await response.aclose()

    async def _get(self, path: str) -> Any:
        if self.refusal:
            raise InsecureError(self.refusal)
        headers: Mapping[str, str]
        try:
            if self._h1 is not None:
                answer = await self._h1.request("GET", self.root + path, b"", {})
                try:
                    raw = await answer.aread()
                finally:
                    answer.close()
                status, headers, text = answer.status_code, answer.headers, raw.decode("utf-8", "replace")
            else:
                response = await self._http.get(self.root + path)
                status, headers, text = response.status_code, response.headers, response.text
        except Exception as exc:
            failure = _http_failure(exc, f"GET {path} timed out")
            if failure is None:
                raise
            raise failure from None
        if status != 200:
            raise error_for(status, text, headers)
        try:
            return json.loads(text.strip())
        except ValueError:
            raise ProtocolError(f"GET {path} returned invalid JSON") from None

    async def models(self) -> list[str]:
        """Model ids from ``GET /models``."""
        data = await self._get("/models")
        items = data.get("data") if isinstance(data, Mapping) else None
        if not isinstance(items, list):
            raise ProtocolError("GET /models returned no model list")
        return [str(item["id"]) for item in items if isinstance(item, Mapping) and "id" in item]

    async def balance(self) -> Balance:
        """Account balance from ``GET /user/balance``."""
        data = await self._get("/user/balance")
        if not isinstance(data, Mapping):
            raise ProtocolError("GET /user/balance returned no object")
        infos = data.get("balance_infos")
        pairs = tuple(
            (str(info.get("currency", "?")), str(info.get("total_balance", "?")))
            for info in (infos if isinstance(infos, list) else [])
            if isinstance(info, Mapping)
        )
        return Balance(bool(data.get("is_available")), pairs)


def _first_choice(data: Any) -> tuple[str, str | None]:
    if type(data) is not dict:  # what json.loads makes of an object
        raise ProtocolError("DeepSeek answer is not a JSON object")
    choices = data.get("choices")
    if type(choices) is not list:
        raise ProtocolError("DeepSeek answer has no choices")
    if not choices:
        return "", None
    choice = choices[0]
    if type(choice) is not dict:
        raise ProtocolError("DeepSeek choice is not an object")
    text = choice.get("text")
    reason = choice.get("finish_reason")
    return (text if type(text) is str else ""), (reason if type(reason) is str else None)


def _parse_json_completion(raw: str) -> FimResult:
    """Parse a non-streamed answer; DeepSeek may send blank lines first while queued."""
    try:
        data = json.loads(raw.strip())
    except ValueError:
        raise ProtocolError("DeepSeek sent malformed JSON") from None
    text, reason = _first_choice(data)
    if isinstance(data, Mapping) and not data.get("choices"):
        raise ProtocolError("DeepSeek answer has no choices")
    return FimResult(text, reason, Usage.parse(data.get("usage")))


def _http_failure(exc: Exception, timed_out: str) -> BackendError | None:
    """The :class:`BackendError` for an HTTP client's exception (fimls.h1's, or httpx's once
    loaded); ``None`` for anything else.  ``timed_out`` may hold ``{}`` for the error's name."""
    httpx = sys.modules.get("httpx")
    timeouts: tuple[type[Exception], ...] = (h1.ReadTimeout, h1.WriteTimeout, h1.ConnectTimeout)
    broken: tuple[type[Exception], ...] = (h1.RemoteProtocolError,)
    failed: tuple[type[Exception], ...] = (h1.HTTPError,)
    if httpx is not None:
        timeouts += (httpx.TimeoutException,)
        broken += (httpx.RemoteProtocolError, httpx.ReadError)
        failed += (httpx.TransportError,)
    if isinstance(exc, h1.InvalidHeader):
        return AuthError("the API key holds characters HTTP cannot send (a line break?)")
    if isinstance(exc, timeouts):
        return NetworkError(timed_out.format(type(exc).__name__))
    if isinstance(exc, broken):
        return NetworkError("the connection to DeepSeek broke off in the middle of an answer")
    if isinstance(exc, failed):
        return NetworkError(f"cannot reach DeepSeek: {type(exc).__name__}")
    return None


def _body_chunks(response: httpx.Response | h1.Response) -> AsyncIterator[bytes]:
    """The decoded body as it arrives, straight off the wire when it is not encoded."""
    if isinstance(response, h1.Response):
        return response.aiter_bytes()
    plain = response.headers.get("Content-Encoding", "identity") == "identity"
    raw = plain and not response.is_stream_consumed  # in-memory bodies: bytes only
    return response.aiter_raw() if raw else response.aiter_bytes()


async def _sse_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[bytes]]:
    """Group a byte stream into complete lines (``\n``, ``\r\n`` or ``\r`` endings), per chunk."""
    pending = b""
    async for chunk in chunks:
        lines = (pending + chunk).splitlines(keepends=True)
        # An unfinished line, or a "\r" whose "\n" may come in the next chunk, waits.
        pending = lines.pop() if lines and not lines[-1].endswith(b"\n") else b""
        if lines:
            yield lines
    if pending:
        yield [pending]


EVENT_BATCH = 16
"""SSE events decoded per ``json.loads``: fewer calls, yet little wasted on events after
the point where the answer is complete."""


def _events(payloads: list[bytes]) -> Iterator[Any]:
    """Decode SSE ``data:`` payloads, several per ``json.loads`` when they are well formed."""
    for start in range(0, len(payloads), EVENT_BATCH):
        batch = payloads[start : start + EVENT_BATCH]
        if len(batch) > 1:
            try:
                decoded = json.loads(b"[" + b",".join(batch) + b"]")
            except ValueError:
                decoded = None
            if isinstance(decoded, list) and len(decoded) == len(batch):
                yield from decoded
                continue
        for payload in batch:  # find the bad one; the good ones before it still count
            try:
                yield json.loads(payload)
            except ValueError:
                raise ProtocolError("DeepSeek sent a malformed stream chunk") from None


async def _read_stream(chunks: AsyncIterator[bytes], done: Callable[[str], bool] | None) -> FimResult:
    """Collect an SSE answer, skipping blank lines and ``:`` comments (keep-alives)."""
    parts: list[str] = []
    reason: str | None = None
    usage: Usage | None = None
    finished = False
    async for lines in _sse_lines(chunks):
        if finished:
            continue  # read on to the end of the body so the connection is reused
        payloads = [raw[5:].strip() for raw in lines if raw.startswith(b"data:")]
        if b"[DONE]" in payloads:
            finished = True
            del payloads[payloads.index(b"[DONE]") :]
        for data in _events(payloads):
            if type(data) is dict:  # JSON objects; anything else fails in _first_choice
                if data.get("usage"):
                    usage = Usage.parse(data["usage"]) or usage
                if data.get("choices") == []:
                    continue
            text, chunk_reason = _first_choice(data)
            parts.append(text)
            reason = chunk_reason or reason
            # What is kept can only change when a line is complete.
            if done is not None and reason is None and "\n" in text and done("".join(parts)):
                return FimResult("".join(parts), "stop", usage, early_close=True)
    if not finished and reason is None:
        raise ProtocolError("DeepSeek stream ended early")
    return FimResult("".join(parts), reason, usage)
