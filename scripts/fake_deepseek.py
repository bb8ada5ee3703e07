"""A fake FIM server (stdlib only) for fimls tests and benchmarks: DeepSeek and the other engines.

It serves, on one port, the wire formats fimls speaks, routed by path:

- DeepSeek: ``POST /beta/completions`` (JSON or SSE), ``GET /models``, ``GET /user/balance``,
  including what clients must survive: blank lines / ``: keep-alive`` comments while a
  request waits, 4xx/5xx error bodies, cut streams, prefix-cache usage accounting;
- OpenAI-compatible ``POST /v1/completions`` and ``GET /v1/models``, whose quirks the
  ``flavor`` selects (``openai``, ``vllm``, ``sglang``, ``ollama``, ``llamacpp``; see
  ``fake_openai``), and for ``codestral`` Mistral's ``/v1/models``;
- Codestral ``POST /v1/fim/completions`` (``fake_codestral``);
- Ollama ``POST /api/generate``, ``POST /api/show``, ``GET /api/tags`` (``fake_ollama``);
- llama.cpp ``POST /infill``, ``POST /completion``, ``GET /props``, ``GET /health``
  (``fake_llamacpp``).

Every format shares the generation-time model, the oracle and the prefix-cache
accounting, so a benchmark against any of them gives the same figures for the same
latency model.  Tests script replies; benchmarks use the oracle mode (answer with the
true continuation of a known file).

Generation time: the first token leaves ``first_token`` seconds after the request line
arrived (``latency`` is the older name of the same knob), then one token every
``1 / token_rate`` seconds, a token being ``chars_per_token`` characters.  A stream
carries one event per token, each in its own HTTP chunk; the finish event follows one
token later (the end-of-sequence token is generated too) unless the answer ran into
``max_tokens``.  A non-streamed answer is written when generation is complete.  When
the client hangs up, generation stops and ``Logged`` records how far it got.
``token_rate=None`` (or 0) is an infinitely fast model: the whole answer goes out at
once after ``first_token``, in ``Reply.chunk_size`` pieces.

Transport: ``ssl_context`` serves HTTPS, ``host="::1"`` binds IPv6 loopback, and
``Reply`` can write raw bytes after the headers, drip them, or reset the connection.

Run ``python scripts/fake_deepseek.py --help`` for the command line.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import contextlib
import dataclasses
import json
import math
import secrets
import select
import signal
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from fake_codestral import CodestralWire
from fake_core import (
    Answer,
    FimCall,
    Logged,
    Plan,
    Reply,
    Wire,
    WireError,
    account_key,
    bearer,
    common_prefix_len,
    cut_at_indent,
    cut_at_time,
    dumps,
    oracle_continuation,
    plan_answer,
    sse,
    token_pieces,
    trim_answer,
)
from fake_llamacpp import LlamaCppWire
from fake_ollama import CHAT_TEMPLATE, FIM_TEMPLATE, OllamaWire
from fake_openai import FLAVORS, OpenAIWire

__all__ = [
    "CHAT_TEMPLATE",
    "FIM_TEMPLATE",
    "FLAVORS",
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
HANDSHAKE_TIMEOUT = 10.0  # seconds a TLS client may take to say hello
MAX_FIM_TOKENS = 4096
MAX_STOP = 16
CACHE_UNIT = 64  # tokens per prefix-cache storage unit
CACHE_HISTORY = 256  # earlier prompts remembered for cache accounting
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


class _InvalidJson:
    """The body was not JSON at all."""


INVALID_JSON = _InvalidJson()


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


DefaultReply = Reply | Callable[[dict[str, Any]], Reply]


@dataclass(frozen=True)
class _Event:
    when: float
    data: bytes
    text: str  # completion text it carries


class _ClientGoneError(Exception):
    """The client hung up while we were waiting or writing."""


class _StoppingError(Exception):
    """The fake is shutting down."""


# -- DeepSeek's wire format ---------------------------------------------------------------------


class DeepSeekWire(Wire):
    """``POST /beta/completions`` as DeepSeek speaks it."""

    name = "deepseek"
    stream_keepalive = b": keep-alive\n\n"
    json_keepalive = b"\n"
    quirks = True

    def error(self, status: int, message: str | None = None) -> WireError:
        """DeepSeek/OpenAI style ``{"error": {...}}``."""
        return WireError(status, dumps(_error_body(status, message)))

    def authorize(self, cfg: Any, authorization: str | None, path: str) -> WireError | None:
        """A bearer key is always needed; any one when the fake has none set."""
        token = bearer(authorization)
        if token and (cfg.api_key is None or secrets.compare_digest(token.encode(), cfg.api_key.encode())):
            return None
        shown = (token or "")[-4:] if len(token or "") > 4 else ""
        return self.error(401, f"Authentication Fails, Your api key: ****{shown} is invalid")

    def parse(self, cfg: Any, body: Any, path: str) -> FimCall:
        """DeepSeek-like validation: 422 for type errors, 400 for bad values."""
        if body is INVALID_JSON:
            raise self.error(400, "Failed to parse the request body as JSON")
        if not isinstance(body, dict):
            raise self.error(422, _DESERIALIZE + "expected a JSON object")
        problem = _type_problem(body)
        if problem is not None:
            raise self.error(422, _DESERIALIZE + problem)
        if body["model"] not in cfg.models:
            raise self.error(400, "Model Not Exist")
        max_tokens = body.get("max_tokens")
        if max_tokens is not None and not 1 <= max_tokens <= MAX_FIM_TOKENS:
            raise self.error(
                400, f"Invalid max_tokens value, the valid range of max_tokens is [1, {MAX_FIM_TOKENS}]"
            )
        stop = body.get("stop")
        if isinstance(stop, list) and len(stop) > MAX_STOP:
            raise self.error(400, f"Invalid stop value, stop accepts at most {MAX_STOP} sequences")
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
                raise self.error(400, f"Invalid {name} value, the valid range of {name} is {shown}")
        stream = body.get("stream") is True
        return FimCall(
            model=body["model"],
            prefix=body["prompt"],
            suffix=body.get("suffix") or "",
            stream=stream,
            max_tokens=max_tokens if max_tokens is not None else MAX_FIM_TOKENS,
            stops=[stop] if isinstance(stop, str) else list(stop or []),
            include_usage=stream and (body.get("stream_options") or {}).get("include_usage") is True,
        )

    def _base(self, ans: Answer) -> dict[str, Any]:
        return {
            "id": ans.id,
            "object": "text_completion",
            "created": ans.created,
            "model": ans.call.model,
            "system_fingerprint": FINGERPRINT,
        }

    def usage(self, ans: Answer) -> dict[str, Any]:
        """DeepSeek's usage with its prompt-cache fields (a scripted one replaces it)."""
        if ans.usage is not None:
            return ans.usage
        return {
            "completion_tokens": ans.completion_tokens,
            "prompt_tokens": ans.prompt_tokens,
            "prompt_cache_hit_tokens": ans.cached_tokens,
            "prompt_cache_miss_tokens": ans.prompt_tokens - ans.cached_tokens,
            "total_tokens": ans.prompt_tokens + ans.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": ans.cached_tokens},
        }

    def _event(self, ans: Answer, text: str, finish: str | None) -> bytes:
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
        return sse({**self._base(ans), "choices": [choice], "usage": None})

    def piece_event(self, ans: Answer, i: int) -> bytes:
        """A content chunk; the last carries the finish reason when nothing follows it."""
        last = ans.plan.finish_on_last and i == len(ans.plan.pieces) - 1
        return self._event(ans, ans.plan.pieces[i], ans.finish if last else None)

    def final_events(self, ans: Answer) -> list[bytes]:
        """Finish chunk (unless it rode on the last piece), optional usage chunk, ``[DONE]``."""
        events: list[bytes] = []
        if not ans.plan.finish_on_last:
            events.append(self._event(ans, "", ans.finish))
        if ans.call.include_usage:
            events.append(sse({**self._base(ans), "choices": [], "usage": self.usage(ans)}))
        events.append(b"data: [DONE]\n\n")
        return events

    def body(self, ans: Answer) -> bytes:
        """The whole completion."""
        choice = {"text": ans.text, "index": 0, "logprobs": None, "finish_reason": ans.finish}
        return dumps({**self._base(ans), "choices": [choice], "usage": self.usage(ans)})


_DEEPSEEK = DeepSeekWire()
_CODESTRAL = CodestralWire()
_OLLAMA = OllamaWire()
_LLAMACPP = LlamaCppWire()
_GENERATE_PATHS = (
    "/beta/completions",
    "/v1/completions",
    "/v1/fim/completions",
    "/api/generate",
    "/infill",
    "/completion",
)
_INFO_ROUTES: dict[tuple[str, str], Wire] = {
    ("POST", "/api/show"): _OLLAMA,
    ("GET", "/api/tags"): _OLLAMA,
    ("GET", "/api/version"): _OLLAMA,
    ("GET", "/props"): _LLAMACPP,
    ("GET", "/health"): _LLAMACPP,
    ("GET", "/v1/health"): _LLAMACPP,
}


def _wire_for(method: str, path: str, flavor: str) -> tuple[Wire, bool] | None:
    """(wire, is a generation endpoint) serving method and path, or None (DeepSeek's 404)."""
    if method == "POST" and path in _GENERATE_PATHS:
        wire: Wire = {
            "/beta/completions": _DEEPSEEK,
            "/v1/fim/completions": _CODESTRAL,
            "/api/generate": _OLLAMA,
            "/infill": _LLAMACPP,
            "/completion": _LLAMACPP,
        }.get(path) or OpenAIWire(flavor)
        return wire, True
    if (method, path) == ("GET", "/v1/models"):
        chosen = {"codestral": _CODESTRAL, "llamacpp": _LLAMACPP}.get(flavor)
        return chosen or OpenAIWire(flavor), False
    found = _INFO_ROUTES.get((method, path))
    return (found, False) if found is not None else None


# -- the fake -------------------------------------------------------------------------------------


class FakeDeepSeek:
    """A scriptable FIM server (DeepSeek and the other engines' formats) in a daemon thread."""

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
        flavor: str = "openai",
        templates: dict[str, str] | None = None,
        completion_template: str | None = None,
        llamacpp_fim: bool = True,
        ssl_context: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        """Configure the fake; call start() (or use ``with``) to serve.

        ``first_token`` (seconds, default ``latency``) and ``token_rate`` (tokens per
        second, None or 0 for infinitely fast) are the generation-time model.
        ``flavor`` picks the engine behind ``/v1/completions`` and ``/v1/models``;
        ``templates`` maps Ollama model names to their templates (default
        ``FIM_TEMPLATE``, which uses ``.Suffix``); ``completion_template`` is SGLang's
        ``--completion-template`` (None: SGLang drops suffixes); ``llamacpp_fim=False``
        models a llama.cpp model without FIM tokens.  ``ssl_context`` serves HTTPS;
        ``host`` is the loopback address to bind (``"::1"`` for IPv6).
        """
        if chars_per_token < 1:
            raise ValueError("chars_per_token must be at least 1")
        if token_rate is not None and token_rate < 0:
            raise ValueError("token_rate must not be negative")
        if flavor not in (*FLAVORS, "codestral"):
            raise ValueError(f"unknown flavor {flavor!r}")
        self.api_key = api_key
        self.models: list[str] = list(models)
        self.first_token = latency if first_token is None else first_token
        self.token_rate = token_rate
        self.oracle_text = oracle_text
        self.chars_per_token = chars_per_token
        self.port = port
        self.flavor = flavor
        self.templates: dict[str, str] = dict(templates or {})
        self.completion_template = completion_template
        self.llamacpp_fim = llamacpp_fim
        self.ssl_context = ssl_context
        self.host = host
        self.script: collections.deque[Reply] = collections.deque()
        self.default: DefaultReply = Reply(text="pass")
        self.models_reply: Reply | None = None
        self.balance_reply: Reply | None = None
        self.overrides: dict[str, Reply] = {}  # path -> reply, for the other non-generation routes
        self.balance: dict[str, Any] = _default_balance()
        self.requests: list[Logged] = []
        self.connections = 0  # TCP connections accepted
        self.tls_handshakes = 0  # TLS handshakes completed
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
        """Bind host:port (0 = any free port) and serve in a daemon thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server((self.host, self.port), self)
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
        """Base URL, e.g. ``http://127.0.0.1:54321`` (no ``/beta``); https with ``ssl_context``."""
        if self._server is None:
            raise RuntimeError("FakeDeepSeek is not running; call start() first")
        scheme = "https" if self.ssl_context is not None else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    # -- inspection ----------------------------------------------------------

    def open_connections(self) -> int:
        """Client connections open right now."""
        with self._lock:
            return len(self._conns)

    def fim_requests(self) -> list[Logged]:
        """Logged generation requests of every wire format, oldest first."""
        with self._lock:
            return [r for r in self.requests if r.wire]

    def asked(self) -> list[Logged]:
        """Generation requests made for a request of the person, not ahead of need (speculative
        requests carry ``X-Fimls-Speculative``)."""
        return [r for r in self.fim_requests() if "x-fimls-speculative" not in {k.lower() for k in r.headers}]

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
        self.overrides.clear()

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

    def _count(self, *, handshake: bool = False) -> None:
        with self._lock:
            if handshake:
                self.tls_handshakes += 1
            else:
                self.connections += 1

    def _next_reply(self, body: dict[str, Any], call: FimCall) -> Reply:
        try:
            return self.script.popleft()
        except IndexError:
            pass
        default = self.default
        if self.oracle_text is not None:
            base = default if isinstance(default, Reply) else Reply()
            text = oracle_continuation(self.oracle_text, call.prefix, call.model_suffix)
            return dataclasses.replace(base, text=text)
        return default if isinstance(default, Reply) else default(body)

    def _shape(self, call: FimCall, reply: Reply) -> tuple[str, str, str, str]:
        """(text, finish_reason, stop string, what cut it) after the engine's limits."""
        cpt = self.chars_per_token
        text, finish, word = trim_answer(reply.text, reply.finish_reason, call.stops, call.max_tokens, cpt)
        cut_by = "word" if word else "length" if finish == "length" else "eos"
        indented = cut_at_indent(text, call.n_indent)
        if indented is not None:
            text, finish, word, cut_by = indented, "length", "", "indent"
        rate = reply.token_rate if reply.token_rate is not None else self.token_rate
        timed = cut_at_time(text, call.t_max_predict_ms, rate, cpt)
        if timed is not None:
            text, finish, word, cut_by = timed, "length", "", "time"
        return text, finish, word, cut_by

    def _account(self, call: FimCall, text: str) -> tuple[int, int, int]:
        """(prompt tokens, of which served from the prefix cache, completion tokens).

        The cache holds the prompts of the last 256 requests in 64-token units: a request
        hits the whole units of its longest common prefix with any of them.
        """
        cpt = self.chars_per_token
        key = account_key(call)
        prompt_tokens = math.ceil(len(call.context + call.prefix + call.model_suffix) / cpt)
        with self._lock:
            common = max((common_prefix_len(key, old) for old in self._history), default=0)
            self._history.append(key)
        hit = min(prompt_tokens, int(common / cpt) // CACHE_UNIT * CACHE_UNIT) if call.cache else 0
        return prompt_tokens, hit, math.ceil(len(text) / cpt)

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


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its FakeDeepSeek; TLS handshakes run per connection."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], fake: FakeDeepSeek) -> None:
        self.fake = fake
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Bind without the reverse DNS lookup HTTPServer does for server_name."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Count the connection, do the TLS handshake here (in the connection's thread)."""
        self.fake._count()
        context = self.fake.ssl_context
        if context is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            tls = context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # the client refused our certificate, spoke plain HTTP, or went away
        self.fake._count(handshake=True)
        tls.settimeout(None)
        try:
            super().finish_request(tls, client_address)
        finally:
            with contextlib.suppress(OSError):
                tls.shutdown(socket.SHUT_WR)
            tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about connections that broke."""


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
        self._drip = 0.0
        self._plan: Plan | None = None
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
        self._plan = None
        self._drip = 0.0
        fake = self.fake
        log = Logged(method=method, path=urlsplit(self.path).path, started=self._arrived, flavor=fake.flavor)
        log.headers = {k: v for k, v in self.headers.items() if k.lower() != "authorization"}
        try:
            raw = self._read_body()
        except (ValueError, OSError):
            raw = None
        log.raw = raw or b""
        body = _parse_json(raw or b"")
        log.body = body if isinstance(body, dict) else None
        fake._record(log)
        try:
            if raw is None:
                self.close_connection = True
                self._send_wire_error(log, _DEEPSEEK.error(400, "Invalid request body framing"))
            else:
                self._route(log, body)
        except _ClientGoneError:
            log.aborted = True
            self.close_connection = True
        except _StoppingError:
            self._hang_up()
        finally:
            log.finished = time.monotonic()
            if self._plan is not None:
                log.tokens_generated = bisect.bisect_right(self._plan.tokens, log.finished)

    def _route(self, log: Logged, body: Any) -> None:
        fake = self.fake
        authorization = self.headers.get("Authorization")
        target = _wire_for(log.method, log.path, fake.flavor)
        wire, generate = target if target is not None else (_DEEPSEEK, False)
        if generate:
            log.wire = wire.name
        refusal = wire.authorize(fake, authorization, log.path)
        log.authorized = refusal is None
        if refusal is not None:
            self._send_wire_error(log, refusal)
            return
        try:
            if generate:
                self._generate(log, wire, body)
            elif target is not None:
                self._info(log, wire, body)
            elif log.method == "GET" and log.path == "/models":
                data = [{"id": m, "object": "model", "owned_by": "deepseek"} for m in fake.models]
                self._send_simple(log, wire, fake.models_reply, {"object": "list", "data": data})
            elif log.method == "GET" and log.path == "/user/balance":
                self._send_simple(log, wire, fake.balance_reply, fake.balance)
            else:
                self._send_wire_error(log, _DEEPSEEK.error(404, "Not Found"))
        except WireError as refused:
            self._send_wire_error(log, refused)

    def _info(self, log: Logged, wire: Wire, body: Any) -> None:
        """A non-generation route of some wire, possibly overridden by a Reply."""
        result = wire.info(self.fake, log.method, log.path, body if isinstance(body, dict) else None)
        if result is None:
            raise wire.error(404)
        status, payload = result
        override = self.fake.overrides.get(log.path)
        if override is not None:
            self._send_simple(log, wire, override, payload)
            return
        self._send_bytes(log, status, dumps(payload), wire.json_type, {})

    # -- generation ------------------------------------------------------------

    def _generate(self, log: Logged, wire: Wire, body: Any) -> None:
        fake = self.fake
        call = wire.parse(fake, body, log.path)
        log.model, log.prefix, log.suffix, log.extra = call.model, call.prefix, call.suffix, call.extra
        log.stream_requested = call.stream
        reply = fake._next_reply(body if isinstance(body, dict) else {}, call)
        self._drip = reply.drip
        # The answer starts ``first_token`` after the request line arrived: the fake's own
        # reading and parsing are part of its latency, as they are of a real server's.
        delay = max(0.0, reply.delay + fake.first_token - (time.monotonic() - log.started))
        if reply.raw_wire is not None or reply.reset:
            self._wait(delay)
            self._fault(log, reply, wire.stream_type if call.stream else wire.json_type)
            return
        if reply.status >= 400 or reply.raw_body is not None:
            self._wait(delay)
            ctype = wire.stream_type if call.stream and reply.status < 400 else wire.json_type
            self._send_fixed(log, wire, reply, None, ctype)
            return
        text, finish, word, cut_by = fake._shape(call, reply)
        prompt_tokens, cached, completion = fake._account(call, text)
        plan = fake._plan(reply, text, finish, log.started)
        self._plan = plan
        ans = Answer(
            call=call,
            id=str(uuid.uuid4()) if wire is _DEEPSEEK else uuid.uuid4().hex,
            created=int(time.time()),
            started=log.started,
            text=text,
            finish=finish,
            stop_word=word,
            cut_by=cut_by,
            prompt_tokens=prompt_tokens,
            cached_tokens=cached,
            completion_tokens=completion,
            plan=plan,
            usage=reply.usage,
        )
        log.text, log.prompt_tokens, log.cached_tokens = text, prompt_tokens, cached
        log.usage = _usage_record(wire, ans)
        if call.stream:
            self._stream(log, reply, wire, ans)
        else:
            self._whole(log, reply, wire, ans)

    def _whole(self, log: Logged, reply: Reply, wire: Wire, ans: Answer) -> None:
        """Non-streamed answer, written once generation is complete.

        DeepSeek sends its headers at once and blank lines while it waits; the other
        engines send nothing until the answer is ready.
        """
        payload = wire.body(ans)
        delay = ans.plan.done - time.monotonic()
        if wire.json_keepalive is None or (delay <= 0 and not reply.keepalive_forever):
            if reply.keepalive_forever:
                self._keepalive(None, 0.0, forever=True)
                return
            self._wait(delay)
            self._send_bytes(log, reply.status, payload, wire.json_type, reply.headers, cut=reply.cut_stream)
            self._sent_all(log, ans.plan)
            return
        self._start_chunked(log, reply.status, wire.json_type, reply.headers)
        if not self._keepalive(wire.json_keepalive, delay, forever=reply.keepalive_forever):
            return
        if reply.cut_stream:
            self._cut_chunk(payload)
            return
        self._chunk(payload)
        self._sent_all(log, ans.plan)
        self._end_chunks(log)

    def _sent_all(self, log: Logged, plan: Plan) -> None:
        log.first_token_at = time.monotonic()
        log.tokens_sent = plan.token_count

    def _stream(self, log: Logged, reply: Reply, wire: Wire, ans: Answer) -> None:
        """A stream: keep-alives while waiting, content events on the plan's schedule, the rest."""
        plan = ans.plan
        headers = {"Cache-Control": "no-cache", **reply.headers}
        self._start_chunked(log, reply.status, wire.stream_type, headers)
        events = [
            _Event(when, wire.piece_event(ans, i), piece)
            for i, (when, piece) in enumerate(zip(plan.at, plan.pieces, strict=True))
        ]
        events.extend(_Event(plan.done, data, "") for data in wire.final_events(ans))
        if not self._keepalive(
            wire.stream_keepalive, events[0].when - time.monotonic(), forever=reply.keepalive_forever
        ):
            return
        cut_at = len(plan.pieces) // 2 if reply.cut_stream else -1
        quirks = wire.quirks and not plan.per_token
        if self._write_events(log, events, cut_at=cut_at, quirks=quirks, head=wire.stream_keepalive or b""):
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
        if cut_at < 0 and not self._drip and all(e.when == events[0].when for e in events):
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

    def _keepalive(self, frame: bytes | None, seconds: float, *, forever: bool) -> bool:
        """Send frame (if any) every 50 ms for seconds; False if we hung up (forever cap)."""
        end = time.monotonic() + (KEEPALIVE_CAP if forever else seconds)
        while (left := end - time.monotonic()) > 0:
            if frame:
                self._chunk(frame)
            self._wait(min(KEEPALIVE_INTERVAL, left))
        if forever:
            self._hang_up()
            return False
        return True

    # -- plain answers and faults ------------------------------------------------

    def _send_simple(self, log: Logged, wire: Wire, override: Reply | None, payload: Any) -> None:
        """A listing or status route, possibly overridden by a Reply."""
        if override is None:
            self._send_bytes(log, 200, dumps(payload), wire.json_type, {})
            return
        self._drip = override.drip
        self._wait(override.delay)
        if override.raw_wire is not None or override.reset:
            self._fault(log, override, wire.json_type)
            return
        self._send_fixed(log, wire, override, payload, wire.json_type)

    def _send_fixed(self, log: Logged, wire: Wire, reply: Reply, payload: Any, ctype: str) -> None:
        """raw_body, or the wire's error body for status >= 400, or payload."""
        if reply.raw_body is not None:
            data = reply.raw_body
        elif reply.status >= 400:
            refusal = wire.error(reply.status, reply.error_message)
            data, ctype = refusal.body, refusal.ctype
        else:
            data = dumps(payload)
        self._send_bytes(log, reply.status, data, ctype, reply.headers, cut=reply.cut_stream)

    def _send_wire_error(self, log: Logged, refusal: WireError) -> None:
        self._send_bytes(log, refusal.status, refusal.body, refusal.ctype, {})

    def _fault(self, log: Logged, reply: Reply, ctype: str) -> None:
        """Headers then ``raw_wire`` bytes, then a close (or a reset); a bare reset sends nothing."""
        if reply.raw_wire is None:
            self._reset()
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", ctype)
        if not any(name.lower() == "content-length" for name in reply.headers):
            self.send_header("Transfer-Encoding", "chunked")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        try:
            self.end_headers()
        except OSError as exc:
            raise self._gone() from exc
        log.status = reply.status
        self._write(reply.raw_wire)
        if reply.reset:
            self._reset()
        else:
            self._hang_up()

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
            if self._drip > 0:
                for i in range(len(data)):
                    if i:
                        self._wait(self._drip)
                    self.wfile.write(data[i : i + 1])
                    self.wfile.flush()
                return
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

    def _reset(self) -> None:
        """End the connection with a TCP reset (RST), not a close."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.flush()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

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
            if readable and not self._peek():
                raise self._gone()
        except (OSError, ValueError) as exc:
            raise self._gone() from exc
        if readable:
            self._peer_talked = True  # pipelined bytes: fall back to write errors

    def _peek(self) -> bytes:
        """The next byte the client sent, without consuming it; b"" at EOF.

        On TLS the raw record is peeked: a TLS alert (close_notify) counts as a hang-up.
        """
        conn = self.connection
        if isinstance(conn, ssl.SSLSocket):
            if conn.pending():
                return b"x"
            head: bytes = socket.socket.recv(conn, 1, socket.MSG_PEEK)
            return b"" if head == b"\x15" else head
        data: bytes = conn.recv(1, socket.MSG_PEEK)
        return data


# -- pure helpers ---------------------------------------------------------------


def _parse_json(raw: bytes) -> Any:
    """The request body as JSON: None when empty, INVALID_JSON when not JSON."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return INVALID_JSON


def _usage_record(wire: Wire, ans: Answer) -> dict[str, Any]:
    """What ``Logged.usage`` keeps: the usage the wire reports in its own shape, else the counts."""
    usage = wire.usage(ans)
    if usage is not None:
        return usage
    return {
        "prompt_tokens": ans.prompt_tokens,
        "cached_tokens": ans.cached_tokens,
        "completion_tokens": ans.completion_tokens,
    }


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


# -- command line ---------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fake until Ctrl-C (SIGINT) or SIGTERM."""
    parser = argparse.ArgumentParser(description="Fake FIM server (DeepSeek and other engines) for fimls.")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (::1 for IPv6)")
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
    parser.add_argument(
        "--flavor", default="openai", choices=(*FLAVORS, "codestral"), help="engine behind /v1/completions"
    )
    parser.add_argument(
        "--tls-cert", type=Path, metavar="PEM", help="serve HTTPS with this certificate chain"
    )
    parser.add_argument("--tls-key", type=Path, metavar="PEM", help="the certificate's private key")
    args = parser.parse_args(argv)
    oracle = args.oracle.read_text(encoding="utf-8") if args.oracle else None
    context = None
    if args.tls_cert is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
    fake = FakeDeepSeek(
        api_key=args.api_key,
        models=[m.strip() for m in args.models.split(",") if m.strip()],
        first_token=args.first_token,
        token_rate=args.token_rate or None,
        chars_per_token=args.chars_per_token,
        oracle_text=oracle,
        port=args.port,
        flavor=args.flavor,
        host=args.host,
        ssl_context=context,
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
