"""A fake DeepSeek HTTP server (stdlib only) for fimls tests and benchmarks.

It speaks the wire format of ``POST /beta/completions`` (FIM, JSON or SSE),
``GET /models`` and ``GET /user/balance`` on 127.0.0.1, including the
behaviours clients must survive: leading blank lines / ``: keep-alive``
comments while a request waits, 4xx/5xx error bodies, cut streams, and
prefix-cache usage accounting.  Tests script replies; benchmarks use the
generation-time model and the oracle mode (answer with the true continuation
of a known file).

Generation time: the first token leaves ``first_token`` seconds after the
request line arrived (``latency`` is the older name of the same knob), then
one token every ``1 / token_rate`` seconds, a token being ``chars_per_token``
characters.  A stream carries one SSE event per token, each in its own HTTP
chunk; the finish event follows one token later (the end-of-sequence token
is generated too) unless the answer ran into ``max_tokens``.  A non-streamed
answer is written when generation is complete.  When the client hangs up,
generation stops and ``Logged`` records how far it got.  ``token_rate=None``
(or 0) is an infinitely fast model: the whole answer goes out at once after
``first_token``, in ``Reply.chunk_size`` pieces.

Run ``python scripts/fake_deepseek.py --help`` for the command line.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import contextlib
import dataclasses
import itertools
import json
import math
import secrets
import select
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "FakeDeepSeek",
    "Logged",
    "Plan",
    "Reply",
    "main",
    "oracle_continuation",
    "plan_answer",
    "token_pieces",
]

FIM_PATH = "/beta/completions"
KEEPALIVE_INTERVAL = 0.05  # seconds between blank lines / keep-alive comments
KEEPALIVE_CAP = 120.0  # keepalive_forever gives up after this many seconds
MAX_FIM_TOKENS = 4096
MAX_STOP = 16
CACHE_UNIT = 64  # tokens per prefix-cache storage unit
CACHE_HISTORY = 256  # earlier prompts remembered for cache accounting
ORACLE_TAIL = 200  # prompt characters matched against the oracle text
ORACLE_MIN_TAIL = 16  # shorter prompt-tail matches count as "not found"
ORACLE_SUFFIX_HEAD = 64  # suffix characters used to find where the middle ends
FINGERPRINT = "fp_fake_deepseek"
DEFAULT_MODELS = ("deepseek-flash", "deepseek-chat")

# status -> (error.type, error.code, default message).  Status codes and
# messages follow DeepSeek's error table; types/codes beyond 400/401/402 are
# plausible stand-ins (the docs do not show those bodies).
_ERRORS: dict[int, tuple[str, str, str]] = {
    400: ("invalid_request_error", "invalid_request_error", "Invalid request body format"),
    401: ("authentication_error", "invalid_request_error", "Authentication Fails"),
    402: ("unknown_error", "invalid_request_error", "Insufficient Balance"),
    404: ("invalid_request_error", "invalid_request_error", "Not Found"),
    422: ("invalid_request_error", "invalid_request_error", "Invalid Parameters"),
    429: ("rate_limit_error", "rate_limit_reached", "Rate Limit Reached"),
    500: ("server_error", "internal_error", "Server Error"),
    503: ("server_error", "server_overloaded", "Server Overloaded"),
}

_DESERIALIZE = "Failed to deserialize the JSON body into the target type: "


def _default_balance() -> dict[str, Any]:
    """A fresh copy of the default /user/balance answer."""
    return {
        "is_available": True,
        "balance_infos": [
            {
                "currency": "USD",
                "total_balance": "12.34",
                "granted_balance": "0.00",
                "topped_up_balance": "12.34",
            }
        ],
    }


@dataclass
class Reply:
    """One scripted answer to a request."""

    status: int = 200
    text: str = ""
    finish_reason: str = "stop"
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    error_message: str | None = None
    raw_body: bytes | None = None
    chunk_size: int = 4
    chunk_delay: float = 0.0
    cut_stream: bool = False
    keepalive_forever: bool = False
    usage: dict[str, Any] | None = None
    token_rate: float | None = None  # overrides FakeDeepSeek.token_rate for this reply


@dataclass
class Logged:
    """What the fake saw and did for one request (never the API key)."""

    method: str
    path: str
    body: dict[str, Any] | None = None
    authorized: bool = False
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    status: int = 0
    aborted: bool = False
    completed: bool = False
    text: str | None = None  # completion text actually served (after trimming)
    usage: dict[str, Any] | None = None  # usage actually served
    first_token_at: float | None = None  # monotonic time the first token was written
    tokens_sent: int = 0  # completion tokens written to the client
    tokens_generated: int = 0  # tokens the model produced before it finished or was stopped

    @property
    def stream(self) -> bool:
        """True when the request asked for SSE streaming."""
        return self.body is not None and self.body.get("stream") is True


DefaultReply = Reply | Callable[[dict[str, Any]], Reply]


@dataclass(frozen=True)
class Plan:
    """When each piece of one answer leaves, on the ``time.monotonic()`` clock."""

    pieces: tuple[str, ...]  # text of each content event, in order
    at: tuple[float, ...]  # when each piece is written
    done: float  # when the finish event (or a non-streamed body) is written
    tokens: tuple[float, ...]  # when each completion token is generated
    per_token: bool  # pieces are single tokens (finite token rate)

    @property
    def token_count(self) -> int:
        """Completion tokens in the answer."""
        return len(self.tokens)

    @property
    def finish_on_last(self) -> bool:
        """The finish reason rides on the last content event (no separate finish event)."""
        return bool(self.pieces) and self.done <= self.at[-1]


@dataclass(frozen=True)
class _Event:
    when: float
    data: bytes
    text: str  # completion text it carries


def token_pieces(text: str, chars_per_token: float) -> list[str]:
    """text cut into ``ceil(len / chars_per_token)`` tokens (the usage accounting's count)."""
    count = math.ceil(len(text) / chars_per_token)
    cuts = [min(len(text), math.floor(i * chars_per_token)) for i in range(count)] + [len(text)]
    return [text[a:b] for a, b in itertools.pairwise(cuts)]


def plan_answer(
    text: str,
    finish: str,
    *,
    start: float,
    token_rate: float | None,
    chars_per_token: float,
    chunk_size: int = 4,
    chunk_delay: float = 0.0,
) -> Plan:
    """The schedule of an answer whose first token is due at ``start``.

    With a token rate, token k (from 0) is due at ``start + k / rate`` and the finish one
    token after the last (the end-of-sequence token), or with the last when the answer
    was cut by ``max_tokens``.  Without one, the text leaves in ``chunk_size`` pieces at
    ``start``, ``chunk_delay`` apart.
    """
    tokens = token_pieces(text, chars_per_token)
    if token_rate:
        step = 1.0 / token_rate
        at = tuple(start + k * step for k in range(len(tokens)))
        eos = 0 if finish == "length" and tokens else 1
        done = start + (len(tokens) - 1 + eos) * step if tokens else start
        return Plan(tuple(tokens), at, done, at, per_token=True)
    size = max(1, chunk_size)
    pieces = tuple(text[i : i + size] for i in range(0, len(text), size)) or ("",)
    at = tuple(start + i * chunk_delay for i in range(len(pieces)))
    return Plan(pieces, at, at[-1], (start,) * len(tokens), per_token=False)


class _ClientGoneError(Exception):
    """The client hung up while we were waiting or writing."""


class _StoppingError(Exception):
    """The fake is shutting down."""


class FakeDeepSeek:
    """A scriptable DeepSeek look-alike served from a daemon thread."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        models: Sequence[str] = DEFAULT_MODELS,
        latency: float = 0.0,
        oracle_text: str | None = None,
        chars_per_token: float = 3.0,
        port: int = 0,
        first_token: float | None = None,
        token_rate: float | None = None,
    ) -> None:
        """Configure the fake; call start() (or use ``with``) to serve.

        ``first_token`` (seconds, default ``latency``) and ``token_rate`` (tokens
        per second, None or 0 for infinitely fast) are the generation-time model.
        """
        if chars_per_token < 1:
            raise ValueError("chars_per_token must be at least 1")
        if token_rate is not None and token_rate < 0:
            raise ValueError("token_rate must not be negative")
        self.api_key = api_key
        self.models: list[str] = list(models)
        self.first_token = latency if first_token is None else first_token
        self.token_rate = token_rate
        self.oracle_text = oracle_text
        self.chars_per_token = chars_per_token
        self.port = port
        self.script: collections.deque[Reply] = collections.deque()
        self.default: DefaultReply = Reply(text="pass")
        self.models_reply: Reply | None = None
        self.balance_reply: Reply | None = None
        self.balance: dict[str, Any] = _default_balance()
        self.requests: list[Logged] = []
        self._lock = threading.Lock()
        self._history: collections.deque[str] = collections.deque(maxlen=CACHE_HISTORY)
        self._conns: set[Any] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def latency(self) -> float:
        """The older name of ``first_token``: seconds before the answer starts."""
        return self.first_token

    @latency.setter
    def latency(self, seconds: float) -> None:
        self.first_token = seconds

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> FakeDeepSeek:
        """Bind 127.0.0.1:port (0 = any free port) and serve in a daemon thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server(("127.0.0.1", self.port), self)
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"fake-deepseek:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and hang up on every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    def __enter__(self) -> FakeDeepSeek:
        """Start (if needed) and return self."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (no ``/beta``)."""
        if self._server is None:
            raise RuntimeError("FakeDeepSeek is not running; call start() first")
        return f"http://127.0.0.1:{self.port}"

    # -- inspection ----------------------------------------------------------

    def fim_requests(self) -> list[Logged]:
        """Logged ``POST /beta/completions`` requests, oldest first."""
        with self._lock:
            return [r for r in self.requests if r.method == "POST" and r.path == FIM_PATH]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Poll predicate until it is true or timeout passes; return its last value."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                return predicate()
            time.sleep(0.01)
        return True

    def reset(self) -> None:
        """Forget script, log, cache history and overrides; default back to 'pass'."""
        with self._lock:
            self.script.clear()
            self.requests.clear()
            self._history.clear()
        self.default = Reply(text="pass")
        self.models_reply = None
        self.balance_reply = None

    # -- used by the handler -------------------------------------------------

    def _record(self, log: Logged) -> None:
        with self._lock:
            self.requests.append(log)

    def _track(self, conn: Any, *, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def _authorized(self, header: str | None) -> bool:
        token = _bearer(header)
        if not token:
            return False
        if self.api_key is None:
            return True
        return secrets.compare_digest(token.encode(), self.api_key.encode())

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        try:
            return self.script.popleft()
        except IndexError:
            pass
        default = self.default
        if self.oracle_text is not None:
            base = default if isinstance(default, Reply) else Reply()
            text = oracle_continuation(
                self.oracle_text, str(body.get("prompt") or ""), str(body.get("suffix") or "")
            )
            return dataclasses.replace(base, text=text)
        return default if isinstance(default, Reply) else default(body)

    def _plan(self, reply: Reply, text: str, finish: str, started: float) -> Plan:
        rate = reply.token_rate if reply.token_rate is not None else self.token_rate
        return plan_answer(
            text,
            finish,
            start=started + reply.delay + self.first_token,
            token_rate=rate,
            chars_per_token=self.chars_per_token,
            chunk_size=reply.chunk_size,
            chunk_delay=reply.chunk_delay,
        )

    def _usage(self, prompt: str, suffix: str, text: str) -> dict[str, Any]:
        cpt = self.chars_per_token
        key = prompt + "\x00" + suffix
        prompt_tokens = math.ceil(len(prompt + suffix) / cpt)
        with self._lock:
            common = max((_common_prefix_len(key, old) for old in self._history), default=0)
            self._history.append(key)
        hit = min(prompt_tokens, int(common / cpt) // CACHE_UNIT * CACHE_UNIT)
        completion = math.ceil(len(text) / cpt)
        return {
            "completion_tokens": completion,
            "prompt_tokens": prompt_tokens,
            "prompt_cache_hit_tokens": hit,
            "prompt_cache_miss_tokens": prompt_tokens - hit,
            "total_tokens": prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": hit},
        }

    def _validate(self, body: dict[str, Any]) -> tuple[int, str] | None:
        """DeepSeek-like validation: 422 for type errors, 400 for bad values."""
        problem = _type_problem(body)
        if problem is not None:
            return 422, _DESERIALIZE + problem
        if body["model"] not in self.models:
            return 400, "Model Not Exist"
        max_tokens = body.get("max_tokens")
        if max_tokens is not None and not 1 <= max_tokens <= MAX_FIM_TOKENS:
            return 400, (f"Invalid max_tokens value, the valid range of max_tokens is [1, {MAX_FIM_TOKENS}]")
        stop = body.get("stop")
        if isinstance(stop, list) and len(stop) > MAX_STOP:
            return 400, f"Invalid stop value, stop accepts at most {MAX_STOP} sequences"
        ranges = (
            ("temperature", 0.0, 2.0, "[0, 2]"),
            ("top_p", 0.0, 1.0, "(0, 1]"),
            ("frequency_penalty", -2.0, 2.0, "[-2, 2]"),
            ("presence_penalty", -2.0, 2.0, "[-2, 2]"),
            ("logprobs", 0, 20, "[0, 20]"),
        )
        for name, low, high, shown in ranges:
            value = body.get(name)
            if value is not None and not low <= value <= high:
                return 400, f"Invalid {name} value, the valid range of {name} is {shown}"
        return None


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its FakeDeepSeek."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], fake: FakeDeepSeek) -> None:
        self.fake = fake
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    """One connection; HTTP/1.1 keep-alive, chunked bodies for waits/streams."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small writes must not wait for delayed ACKs
    server_version = "fake-deepseek/1.0"
    sys_version = ""

    def setup(self) -> None:
        """Register the connection so stop() can hang up on it."""
        super().setup()
        self._peer_talked = False
        self.fake._track(self.connection, add=True)

    def finish(self) -> None:
        """Unregister the connection."""
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.fake._track(self.connection, add=False)

    @property
    def fake(self) -> FakeDeepSeek:
        """The FakeDeepSeek this handler serves."""
        server = self.server
        assert isinstance(server, _Server)
        return server.fake

    def parse_request(self) -> bool:
        """Note when the request line arrived: the backend's time starts there, so its own
        header parsing is not counted as the client's overhead."""
        self._arrived = time.monotonic()
        return super().parse_request()

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet (no per-request lines on stderr)."""

    def do_GET(self) -> None:
        """Handle GET."""
        self._dispatch("GET")

    def do_POST(self) -> None:
        """Handle POST."""
        self._dispatch("POST")

    # -- routing -------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        self._plan: Plan | None = None
        log = Logged(method=method, path=urlsplit(self.path).path, started=self._arrived)
        try:
            raw = self._read_body()
        except (ValueError, OSError):
            raw = None
        log.body = _json_object(raw)
        log.authorized = self.fake._authorized(self.headers.get("Authorization"))
        self.fake._record(log)
        try:
            if raw is None:
                self.close_connection = True
                self._send_error(log, 400, "Invalid request body framing")
            else:
                self._route(log, raw)
        except _ClientGoneError:
            log.aborted = True
            self.close_connection = True
        except _StoppingError:
            self._hang_up()
        finally:
            log.finished = time.monotonic()
            if self._plan is not None:
                log.tokens_generated = bisect.bisect_right(self._plan.tokens, log.finished)

    def _route(self, log: Logged, raw: bytes) -> None:
        fake = self.fake
        if not log.authorized:
            token = _bearer(self.headers.get("Authorization")) or ""
            shown = token[-4:] if len(token) > 4 else ""
            message = f"Authentication Fails, Your api key: ****{shown} is invalid"
            self._send_error(log, 401, message)
        elif log.method == "POST" and log.path == FIM_PATH:
            self._fim(log, raw)
        elif log.method == "GET" and log.path == "/models":
            data = [{"id": m, "object": "model", "owned_by": "deepseek"} for m in fake.models]
            self._send_simple(log, fake.models_reply, {"object": "list", "data": data})
        elif log.method == "GET" and log.path == "/user/balance":
            self._send_simple(log, fake.balance_reply, fake.balance)
        else:
            self._send_error(log, 404, "Not Found")

    def _fim(self, log: Logged, raw: bytes) -> None:
        fake = self.fake
        try:
            parsed: Any = json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError):
            self._send_error(log, 400, "Failed to parse the request body as JSON")
            return
        if not isinstance(parsed, dict):
            self._send_error(log, 422, _DESERIALIZE + "expected a JSON object")
            return
        body: dict[str, Any] = parsed
        invalid = fake._validate(body)
        if invalid is not None:
            self._send_error(log, *invalid)
            return
        reply = fake._next_reply(body)
        # The answer starts ``first_token`` after the request line arrived: the fake's own
        # reading and parsing are part of its latency, as they are of a real server's.
        delay = max(0.0, reply.delay + fake.first_token - (time.monotonic() - log.started))
        stream = body.get("stream") is True
        if reply.status >= 400 or reply.raw_body is not None:
            self._wait(delay)
            ctype = "text/event-stream" if stream and reply.status < 400 else "application/json"
            self._send_fixed(log, reply, {}, ctype)
            return
        prompt, suffix = body["prompt"], body.get("suffix") or ""
        text, finish = _trim(
            reply.text,
            reply.finish_reason,
            body.get("stop"),
            body.get("max_tokens"),
            fake.chars_per_token,
        )
        usage = reply.usage if reply.usage is not None else fake._usage(prompt, suffix, text)
        log.text, log.usage = text, usage
        plan = fake._plan(reply, text, finish, log.started)
        self._plan = plan
        base: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "object": "text_completion",
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": FINGERPRINT,
        }
        if stream:
            options = body.get("stream_options") or {}
            include_usage = options.get("include_usage") is True
            self._stream(log, reply, base, plan, finish, usage if include_usage else None)
        else:
            choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
            payload = _dumps({**base, "choices": [choice], "usage": usage})
            self._json_after_wait(log, reply, payload, plan)

    # -- FIM answers ----------------------------------------------------------

    def _json_after_wait(self, log: Logged, reply: Reply, payload: bytes, plan: Plan) -> None:
        """Non-streamed answer, written once generation is complete; blank lines go out while waiting."""
        delay = plan.done - time.monotonic()
        if delay <= 0 and not reply.keepalive_forever:
            self._send_bytes(
                log, reply.status, payload, "application/json", reply.headers, cut=reply.cut_stream
            )
            self._sent_all(log, plan)
            return
        self._start_chunked(log, reply.status, "application/json", reply.headers)
        if not self._keepalive(b"\n", delay, forever=reply.keepalive_forever):
            return
        if reply.cut_stream:
            self._cut_chunk(payload)
            return
        self._chunk(payload)
        self._sent_all(log, plan)
        self._end_chunks(log)

    def _sent_all(self, log: Logged, plan: Plan) -> None:
        log.first_token_at = time.monotonic()
        log.tokens_sent = plan.token_count

    def _stream(
        self,
        log: Logged,
        reply: Reply,
        base: dict[str, Any],
        plan: Plan,
        finish: str,
        usage: dict[str, Any] | None,
    ) -> None:
        """SSE answer: keep-alives, content events on the plan's schedule, optional usage, [DONE]."""
        headers = {"Cache-Control": "no-cache", **reply.headers}
        self._start_chunked(log, reply.status, "text/event-stream", headers)

        def event(piece: str, finish_reason: str | None) -> bytes:
            choice = {"text": piece, "index": 0, "logprobs": None, "finish_reason": finish_reason}
            return _sse({**base, "choices": [choice], "usage": None})

        events = [
            _Event(
                when,
                event(piece, finish if plan.finish_on_last and i == len(plan.pieces) - 1 else None),
                piece,
            )
            for i, (when, piece) in enumerate(zip(plan.at, plan.pieces, strict=True))
        ]
        if not plan.finish_on_last:
            events.append(_Event(plan.done, event("", finish), ""))
        if usage is not None:
            events.append(_Event(plan.done, _sse({**base, "choices": [], "usage": usage}), ""))
        events.append(_Event(plan.done, b"data: [DONE]\n\n", ""))
        if not self._keepalive(
            b": keep-alive\n\n", events[0].when - time.monotonic(), forever=reply.keepalive_forever
        ):
            return
        cut_at = len(plan.pieces) // 2 if reply.cut_stream else -1
        quirks = not plan.per_token
        if self._write_events(log, events, cut_at=cut_at, quirks=quirks, head=b": keep-alive\n\n"):
            log.completed = True

    def _write_events(
        self, log: Logged, events: list[_Event], *, cut_at: int, quirks: bool, head: bytes
    ) -> bool:
        """Write each event (one HTTP chunk) at its time, then the last chunk; False if cut.

        With ``quirks`` the first event is split across two HTTP chunks and a stray empty
        line follows the second, as proxies and some servers do; clients must cope.
        Events that are all due at once go out in one write, as from a backend that
        answers after a fixed latency; the HTTP chunks inside it stay as they are.
        """
        batch: list[bytes] | None = None
        if cut_at < 0 and all(e.when == events[0].when for e in events):
            batch = []

        def chunk(data: bytes) -> None:
            if batch is None:
                self._chunk(data)
            else:
                batch.append(b"%X\r\n%s\r\n" % (len(data), data))

        if head:
            chunk(head)
        chars = 0
        for i, ev in enumerate(events):
            if batch is None:
                self._wait(ev.when - time.monotonic())
            if i == cut_at:
                self._cut_chunk(ev.data)
                return False
            if quirks and i == 0:
                # Split mid-event (mid-UTF-8 too): clients must buffer partial lines.
                half = len(ev.data) // 2
                chunk(ev.data[:half])
                chunk(ev.data[half:])
            else:
                chunk(ev.data)
            if quirks and i == 1 and i < len(events) - 1:
                chunk(b"\n")  # a stray empty line clients must skip
            if ev.text and batch is None:
                chars += len(ev.text)
                self._count_sent(log, chars)
        if batch is None:
            self._write(b"0\r\n\r\n")
            return True
        self._write(b"".join(batch) + b"0\r\n\r\n")
        self._count_sent(log, sum(len(e.text) for e in events))
        return True

    def _count_sent(self, log: Logged, chars: int) -> None:
        if chars and log.first_token_at is None:
            log.first_token_at = time.monotonic()
        log.tokens_sent = math.ceil(chars / self.fake.chars_per_token)

    def _keepalive(self, frame: bytes, seconds: float, *, forever: bool) -> bool:
        """Send frame every 50 ms for seconds; False if we hung up (forever cap)."""
        end = time.monotonic() + (KEEPALIVE_CAP if forever else seconds)
        while (left := end - time.monotonic()) > 0:
            self._chunk(frame)
            self._wait(min(KEEPALIVE_INTERVAL, left))
        if forever:
            self._hang_up()
            return False
        return True

    # -- plain answers --------------------------------------------------------

    def _send_simple(self, log: Logged, override: Reply | None, payload: dict[str, Any]) -> None:
        """GET /models or /user/balance, possibly overridden by a Reply."""
        if override is None:
            self._send_bytes(log, 200, _dumps(payload), "application/json", {})
            return
        self._wait(override.delay)
        self._send_fixed(log, override, payload, "application/json")

    def _send_fixed(self, log: Logged, reply: Reply, payload: dict[str, Any], ctype: str) -> None:
        """raw_body, or an error body for status >= 400, or payload."""
        if reply.raw_body is not None:
            data = reply.raw_body
        elif reply.status >= 400:
            data = _dumps(_error_body(reply.status, reply.error_message))
        else:
            data = _dumps(payload)
        self._send_bytes(log, reply.status, data, ctype, reply.headers, cut=reply.cut_stream)

    def _send_error(self, log: Logged, status: int, message: str) -> None:
        self._send_bytes(log, status, _dumps(_error_body(status, message)), "application/json", {})

    # -- wire helpers ---------------------------------------------------------

    def _read_body(self) -> bytes:
        """Read the request body (Content-Length or chunked)."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline(65537).split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        return self.rfile.read(length) if length else b""

    def _headers_out(
        self, status: int, ctype: str, headers: dict[str, str], framing: tuple[str, str]
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header(*framing)
        for name, value in headers.items():
            self.send_header(name, value)
        try:
            self.end_headers()
        except OSError as exc:
            raise self._gone() from exc

    def _send_bytes(
        self,
        log: Logged,
        status: int,
        data: bytes,
        ctype: str,
        headers: dict[str, str],
        *,
        cut: bool = False,
    ) -> None:
        self._headers_out(status, ctype, headers, ("Content-Length", str(len(data))))
        log.status = status
        if cut:
            self._write(data[: len(data) // 2])
            self._hang_up()
            return
        self._write(data)
        log.completed = True

    def _start_chunked(self, log: Logged, status: int, ctype: str, headers: dict[str, str]) -> None:
        self._headers_out(status, ctype, headers, ("Transfer-Encoding", "chunked"))
        log.status = status

    def _chunk(self, data: bytes) -> None:
        if data:
            self._write(b"%X\r\n%s\r\n" % (len(data), data))

    def _cut_chunk(self, data: bytes) -> None:
        """Announce a whole chunk, send half of it, and hang up."""
        self._write(b"%X\r\n%s" % (len(data), data[: len(data) // 2]))
        self._hang_up()

    def _end_chunks(self, log: Logged) -> None:
        self._write(b"0\r\n\r\n")
        log.completed = True

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError as exc:
            raise self._gone() from exc

    def _gone(self) -> Exception:
        return _StoppingError() if self.fake._stopping.is_set() else _ClientGoneError()

    def _hang_up(self) -> None:
        """Close the connection abruptly."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _wait(self, seconds: float) -> None:
        """Sleep, but notice at once if the client hangs up or the fake stops."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self.fake._stopping.is_set():
                raise _StoppingError
            self._watch(min(left, KEEPALIVE_INTERVAL))

    def _watch(self, timeout: float) -> None:
        """Wait up to timeout for the socket to report EOF/reset."""
        if self._peer_talked:
            time.sleep(timeout)
            return
        try:
            readable, _, _ = select.select([self.connection], [], [], timeout)
            if readable and not self.connection.recv(1, socket.MSG_PEEK):
                raise self._gone()
        except (OSError, ValueError) as exc:
            raise self._gone() from exc
        if readable:
            self._peer_talked = True  # pipelined bytes: fall back to write errors


# -- pure helpers ---------------------------------------------------------------


def _bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _json_object(raw: bytes | None) -> dict[str, Any] | None:
    """raw parsed as a JSON object, else None."""
    if not raw:
        return None
    try:
        value: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + _dumps(obj) + b"\n\n"


def _error_body(status: int, message: str | None) -> dict[str, Any]:
    """DeepSeek/OpenAI style ``{"error": {...}}``."""
    etype, code, default = _ERRORS.get(status, ("api_error", "unknown_error", "Error"))
    return {
        "error": {
            "message": message if message is not None else default,
            "type": etype,
            "param": None,
            "code": code,
        }
    }


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "model": (str,),
    "prompt": (str,),
    "suffix": (str,),
    "echo": (bool,),
    "stream": (bool,),
    "max_tokens": (int,),
    "logprobs": (int,),
    "temperature": (int, float),
    "top_p": (int, float),
    "frequency_penalty": (int, float),
    "presence_penalty": (int, float),
    "stop": (str, list),
    "stream_options": (dict,),
}


def _type_problem(body: dict[str, Any]) -> str | None:
    """Why body would not deserialize (missing/mistyped field), or None."""
    for name in ("model", "prompt"):
        if body.get(name) is None:
            return f"missing field `{name}`"
    for name, types in _FIELD_TYPES.items():
        value = body.get(name)
        if value is None:
            continue
        is_bool = isinstance(value, bool)
        if not isinstance(value, types) or (is_bool and bool not in types):
            return f"{name}: invalid type"
    stop = body.get("stop")
    if isinstance(stop, list) and not all(isinstance(s, str) for s in stop):
        return "stop: invalid type, expected a string or a list of strings"
    include = (body.get("stream_options") or {}).get("include_usage")
    if include is not None and not isinstance(include, bool):
        return "stream_options.include_usage: invalid type"
    return None


def _trim(
    text: str, finish: str, stop: Any, max_tokens: int | None, chars_per_token: float
) -> tuple[str, str]:
    """Cut at the first stop string, then at ~max_tokens; return (text, finish_reason)."""
    stops: list[str] = [stop] if isinstance(stop, str) else list(stop or [])
    cuts = [i for s in stops if s and (i := text.find(s)) >= 0]
    if cuts:
        text, finish = text[: min(cuts)], "stop"
    limit = int((max_tokens if max_tokens is not None else MAX_FIM_TOKENS) * chars_per_token)
    if len(text) > limit:
        text, finish = text[:limit], "length"
    return text, finish


def _common_prefix_len(a: str, b: str) -> int:
    """Length of the longest common prefix (binary search on slices, C speed)."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo] and a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def _find_all(haystack: str, needle: str, limit: int = 10_000) -> list[int]:
    """Start offsets of (possibly overlapping) occurrences, at most limit."""
    found: list[int] = []
    i = haystack.find(needle)
    while i >= 0 and len(found) < limit:
        found.append(i)
        i = haystack.find(needle, i + 1)
    return found


def _longest_tail(haystack: str, prompt: str, limit: int) -> int:
    """Largest n <= limit with prompt[-n:] in haystack (0 if none)."""
    hi = min(len(prompt), limit)
    if hi == 0 or prompt[-hi:] in haystack:
        return hi
    lo = 0  # prompt[-lo:] occurs (trivially for 0); prompt[-hi:] does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if prompt[-mid:] in haystack:
            lo = mid
        else:
            hi = mid
    return lo


def oracle_continuation(oracle: str, prompt: str, suffix: str) -> str:
    """The text that truly follows prompt in oracle, up to where suffix resumes.

    The prompt's longest tail (<= 200 chars, >= 16 unless the prompt is
    shorter; else no match and "") locates the cursor; among several
    matches, the one followed soonest by the suffix wins (a suffix that is the
    end of the file pins the end of the middle), else the one nearest
    ``len(prompt)``.  Without a usable suffix the rest of the file is returned.
    """
    n = _longest_tail(oracle, prompt, ORACLE_TAIL)
    if n < min(len(prompt), ORACLE_MIN_TAIL):
        return ""
    ends = [i + n for i in _find_all(oracle, prompt[-n:])] if n else [0]
    if suffix and oracle.endswith(suffix):
        resume = len(oracle) - len(suffix)
        before = [e for e in ends if e <= resume]
        if before:
            return oracle[max(before) : resume]
    head = suffix[:ORACLE_SUFFIX_HEAD]
    if head.strip():
        starts = _find_all(oracle, head)
        best: tuple[tuple[int, int], int, int] | None = None
        for e in ends:
            k = bisect.bisect_left(starts, e)
            if k < len(starts):
                score = (starts[k] - e, abs(e - len(prompt)))
                if best is None or score < best[0]:
                    best = (score, e, starts[k])
        if best is not None:
            return oracle[best[1] : best[2]]
    start = min(ends, key=lambda e: abs(e - len(prompt)))
    return oracle[start:]


# -- command line ---------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fake until Ctrl-C (SIGINT) or SIGTERM."""
    parser = argparse.ArgumentParser(description="Fake DeepSeek API server for fimls.")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    timing = parser.add_mutually_exclusive_group()
    timing.add_argument(
        "--first-token", type=float, default=0.0, metavar="SECONDS", help="seconds to the first token"
    )
    timing.add_argument(
        "--latency", type=float, dest="first_token", metavar="SECONDS", help="the older name of --first-token"
    )
    parser.add_argument(
        "--token-rate",
        type=float,
        default=0.0,
        metavar="N",
        help="tokens per second after the first (0: all at once)",
    )
    parser.add_argument("--chars-per-token", type=float, default=3.0, help="characters in one token")
    parser.add_argument("--text", default="pass", help="completion text to return")
    parser.add_argument("--oracle", type=Path, help="answer with the true continuation of FILE")
    parser.add_argument("--api-key", help="accept only this key (default: any non-empty key)")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated ids")
    args = parser.parse_args(argv)
    oracle = args.oracle.read_text(encoding="utf-8") if args.oracle else None
    fake = FakeDeepSeek(
        api_key=args.api_key,
        models=[m.strip() for m in args.models.split(",") if m.strip()],
        first_token=args.first_token,
        token_rate=args.token_rate or None,
        chars_per_token=args.chars_per_token,
        oracle_text=oracle,
        port=args.port,
    )
    fake.default = Reply(text=args.text)
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    with fake:
        key = args.api_key or "anything"
        print(
            f"fake DeepSeek on {fake.url} (Ctrl-C to stop); point fimls at it with: "
            f"DEEPSEEK_BASE_URL={fake.url} DEEPSEEK_API_KEY={key}",
            file=sys.stderr,
            flush=True,
        )
        while not done.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
