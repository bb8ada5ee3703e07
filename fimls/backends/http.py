"""The one HTTP client every backend uses: httpx, retries, deadlines, error mapping, line readers.

One long-lived :class:`httpx.AsyncClient` per backend configuration carries every call. It trusts
the environment (``HTTPS_PROXY``, ``NO_PROXY``, ``SSL_CERT_FILE``, ``SSL_CERT_DIR``) as httpx
documents, never follows redirects (the key must not travel to another host), and is given a
transport only when a test injects one.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import random
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx

from fimls import __version__, log
from fimls.backends.base import (
    AuthError,
    BackendError,
    BalanceError,
    NetworkError,
    ProtocolError,
    RateLimitError,
    RequestError,
    ServerError,
)
from fimls.urls import public_url

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
"""Seconds without a byte before a read fails (keep-alive lines reset it; deadlines bound the rest)."""
LIMITS = httpx.Limits(max_connections=16, max_keepalive_connections=8, keepalive_expiry=60.0)
RETRYABLE = frozenset({429, 500, 502, 503, 504})
MAX_DETAIL = 300


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


def error_detail(body: str) -> str:
    """The server's own words from an error body, redacted and shortened.

    Reads OpenAI-style ``{"error": {"message": ...}}``, Ollama's ``{"error": "..."}``, Mistral's
    ``{"message": ...}`` and FastAPI's ``{"detail": ...}``; plain text otherwise.
    """
    text = body.strip()
    try:
        data = json.loads(text or "null")
    except ValueError:
        data = None
    detail = ""
    if isinstance(data, Mapping):
        error = data.get("error")
        if isinstance(error, Mapping):
            error = error.get("message")
        for value in (error, data.get("message"), data.get("detail")):
            if isinstance(value, str) and value.strip():
                detail = value
                break
            if value is not None and not isinstance(value, str):
                detail = json.dumps(value, ensure_ascii=False)
                break
    elif data is None and text and not text.startswith("<"):
        detail = text
    detail = " ".join(detail.split())
    return log.REDACTOR.redact(detail)[:MAX_DETAIL]


_QUOTA_WORDS = ("insufficient_quota", "exceeded your current quota", "insufficient balance", "billing")


def status_error(
    label: str, status: int, body: str, headers: Mapping[str, str], model: str = ""
) -> BackendError:
    """The :class:`BackendError` for an HTTP error answer, naming the backend and the cause.

    Every backend's answers map the same way: 401/403 key, 402 or a used-up quota balance,
    400/404/422 naming the model an unknown model, 429 rate limit, 5xx failing or overloaded
    (retried), 501 a request the server cannot do (not retried).
    """
    detail = error_detail(body)
    said = f": {detail}" if detail else ""
    retry_after = parse_retry_after(headers.get("retry-after"))
    lowered = detail.lower()
    quota = any(word in body.lower() for word in _QUOTA_WORDS)
    if status == 402 or (status in (403, 429) and quota):
        return BalanceError(
            f"{label}: insufficient balance or quota ({status}); top up to continue{said}",
            status,
            detail=detail,
        )
    if status in (401, 403):
        return AuthError(f"{label} rejected the API key ({status}){said}", status, detail=detail)
    if (
        status in (400, 404, 422)
        and "model" in lowered
        and any(word in lowered for word in ("exist", "not found", "unknown", "invalid model", "pull"))
    ):
        return RequestError(
            f"{label} does not know the model {model!r} ({status}){said}; set the model setting",
            status,
            model_missing=True,
            detail=detail,
        )
    if status == 429:
        return RateLimitError(f"{label}: rate limit reached (429){said}", status, retry_after, detail=detail)
    if status == 501:
        return RequestError(f"{label} cannot do this request (501){said}", status, detail=detail)
    if status >= 500:
        return ServerError(f"{label}: server error ({status}){said}", status, retry_after, detail=detail)
    if 400 <= status < 500:
        return RequestError(
            f"{label} rejected the request ({status}){said or ': no detail'}", status, detail=detail
        )
    return ProtocolError(f"{label}: unexpected HTTP status {status}", status, detail=detail)


def _causes(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def describe_failure(exc: BaseException) -> str:
    """What went wrong on the network, in a few words a person understands."""
    chain = _causes(exc)
    for cause in chain:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS verification failed ({cause.verify_message or cause.reason})"
        if isinstance(cause, ssl.SSLError):
            return f"TLS failed ({cause.reason or cause})"
    if any(isinstance(c, httpx.ProxyError) for c in chain):
        return "the proxy failed"
    for cause in chain:
        if isinstance(cause, socket.gaierror):
            return "name not resolved"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, ConnectionResetError):
            return "connection reset"
    text = " ".join(str(c) for c in chain).lower()
    for words, meaning in (
        (("certificate verify failed", "certificate_verify_failed"), "TLS verification failed"),
        (
            ("name or service not known", "nodename nor servname", "getaddrinfo", "name resolution"),
            "name not resolved",
        ),
        (("connection refused",), "connection refused"),
        (("proxy",), "the proxy failed"),
    ):
        if any(word in text for word in words):
            return meaning
    if any(isinstance(c, httpx.TimeoutException | TimeoutError) for c in chain):
        return "timed out"
    if any(isinstance(c, httpx.RemoteProtocolError | httpx.ReadError) for c in chain):
        return "the connection broke off in the middle of an answer"
    return type(exc).__name__


class Http:
    """Calls to one backend: a base URL, its headers, and httpx underneath."""

    def __init__(
        self,
        base_url: str,
        *,
        label: str,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        http2: bool = False,
        max_retries: int = 2,
        on_retry: Callable[[], None] | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.label = label
        self.public = public_url(self.base_url)
        self.max_retries = max_retries
        self._on_retry = on_retry or (lambda: None)
        self._sleep = sleep
        self.client = httpx.AsyncClient(
            headers={"User-Agent": f"fimls/{__version__}", **(headers or {})},
            timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT),
            limits=LIMITS,
            http2=http2,
            transport=transport,
            trust_env=True,
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        """Close every connection."""
        await self.client.aclose()

    def _network_error(self, exc: BaseException, what: str) -> NetworkError:
        return NetworkError(f"cannot reach {self.label} ({what}): {describe_failure(exc)}")

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        deadline: float,
        model: str = "",
        headers: Mapping[str, str] | None = None,
        retries: int | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """A successful answer whose body is read inside the block; closed on leaving it.

        The answer must have begun (status line and headers) by ``deadline``
        (``time.monotonic``); reading the body is bounded by the caller. Connection failures,
        429 and 5xx are retried with jittered backoff (honouring ``Retry-After``) while the
        deadline allows; other errors raise at once. When time runs out after a failure,
        that failure is raised.
        """
        what = f"{method} {path}"
        response = await self._answer(method, path, json_body, what, model, headers, retries, deadline)
        try:
            yield response
        except httpx.HTTPError as exc:
            raise NetworkError(f"{self.label}: {describe_failure(exc)} ({what})") from None
        finally:
            await response.aclose()

    async def _answer(
        self,
        method: str,
        path: str,
        json_body: Any,
        what: str,
        model: str,
        headers: Mapping[str, str] | None,
        retries: int | None,
        deadline: float,
    ) -> httpx.Response:
        retries = self.max_retries if retries is None else retries
        failures: list[BackendError] = []
        budget = max(deadline - time.monotonic(), 0.0)
        try:
            async with asyncio.timeout(budget):
                attempt = 0
                while True:
                    try:
                        return await self._send(method, path, json_body, what, model, headers)
                    except (RateLimitError, ServerError, NetworkError) as error:
                        failures.append(error)
                        if attempt >= retries:
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
        except TimeoutError:
            if failures:
                raise failures[-1] from None  # the condition that used up the time
            raise NetworkError(f"{self.label} did not answer {what} within {budget:.3g} s") from None

    async def _send(
        self, method: str, path: str, json_body: Any, what: str, model: str, extra: Mapping[str, str] | None
    ) -> httpx.Response:
        """One attempt: a 200 answer with its body unread, or the error the answer means."""
        content = None
        headers = {"Accept": "application/json", **(extra or {})}
        if json_body is not None:
            # Lone surrogates (legal in JSON strings, not in UTF-8) become "?".
            content = json.dumps(json_body, ensure_ascii=False).encode("utf-8", "replace")
            headers["Content-Type"] = "application/json"
        try:
            url = self.base_url + path
            request = self.client.build_request(method, url, content=content, headers=headers)
            response = await self.client.send(request, stream=True)
        except httpx.InvalidURL as exc:
            raise NetworkError(f"{self.label}: the URL is not valid ({exc})") from None
        except httpx.HTTPError as exc:
            raise self._network_error(exc, what) from None
        if response.status_code == 200:
            return response
        try:
            body = (await response.aread()).decode("utf-8", "replace")
        except httpx.HTTPError as exc:
            raise self._network_error(exc, what) from None
        finally:
            await response.aclose()
        raise status_error(self.label, response.status_code, body, response.headers, model)

    async def request_json(
        self, method: str, path: str, json_body: Any = None, *, timeout: float = 10.0, model: str = ""
    ) -> Any:
        """A JSON answer (leading blank lines allowed), within ``timeout`` seconds; not retried."""
        deadline = time.monotonic() + timeout
        post = self.stream(method, path, json_body=json_body, deadline=deadline, model=model, retries=0)
        try:
            async with post as response, asyncio.timeout(max(deadline - time.monotonic(), 0.0)):
                raw = (await response.aread()).decode("utf-8", "replace")
        except TimeoutError:
            raise NetworkError(f"{self.label} did not answer {method} {path} within {timeout:g} s") from None
        try:
            return json.loads(raw.strip())
        except ValueError:
            raise ProtocolError(f"{self.label}: {method} {path} returned invalid JSON") from None


async def sse_data(response: httpx.Response) -> AsyncIterator[str]:
    """The ``data`` of each server-sent event, as the SSE format defines it.

    Comments (``: keep-alive``) and other fields are skipped; one space after the colon is
    dropped; several ``data:`` lines of one event are joined with ``\\n``.
    """
    data: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


async def ndjson(response: httpx.Response, label: str) -> AsyncIterator[Any]:
    """One JSON value per non-blank line (Ollama's streaming format)."""
    async for line in response.aiter_lines():
        if line.strip():
            try:
                yield json.loads(line)
            except ValueError:
                raise ProtocolError(f"{label} sent a malformed stream line") from None


def decode_event(data: str, label: str) -> Any:
    """One event's JSON, or a :class:`ProtocolError`."""
    try:
        return json.loads(data)
    except ValueError:
        raise ProtocolError(f"{label} sent a malformed stream chunk") from None


def decode_answer(raw: str, label: str) -> Mapping[str, Any]:
    """A whole (not streamed) answer's JSON object, or a :class:`ProtocolError`."""
    try:
        data = json.loads(raw.strip())
    except ValueError:
        raise ProtocolError(f"{label} sent malformed JSON") from None
    if not isinstance(data, Mapping):
        raise ProtocolError(f"{label}: the answer is not a JSON object")
    return data
