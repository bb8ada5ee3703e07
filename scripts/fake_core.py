"""What every wire format of the fake FIM server shares (stdlib only).

Scripted replies (``Reply``), the request log (``Logged``), the generation-time
model (``plan_answer``: first token, then one token per ``1 / token_rate``
seconds), stop/length trimming, the oracle (the file's true continuation) and
the neutral form of a FIM request (``FimCall``) and of its answer (``Answer``)
that each wire module parses into and encodes from.  ``fake_deepseek`` serves
them; the wire modules (``fake_openai``, ``fake_codestral``, ``fake_ollama``,
``fake_llamacpp``) speak the formats.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

ORACLE_TAIL = 200  # prompt characters matched against the oracle text
ORACLE_MIN_TAIL = 16  # shorter prompt-tail matches count as "not found"
ORACLE_SUFFIX_HEAD = 64  # suffix characters used to find where the middle ends


@dataclass
class Reply:
    """One scripted answer to a request.

    ``raw_wire`` bytes go out right after the status line and headers (chunked framing
    announced unless ``headers`` set Content-Length) and the connection is then closed:
    truncated chunked bodies and other byte-level faults.  ``reset`` ends the connection
    with a TCP reset instead of a close (before any byte when there is no ``raw_wire``).
    ``drip`` writes everything after the headers one byte at a time, that many seconds
    apart.
    """

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
    raw_wire: bytes | None = None
    reset: bool = False
    drip: float = 0.0


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
    usage: dict[str, Any] | None = None  # usage actually served, in the wire's own shape
    first_token_at: float | None = None  # monotonic time the first token was written
    tokens_sent: int = 0  # completion tokens written to the client
    tokens_generated: int = 0  # tokens the model produced before it finished or was stopped
    raw: bytes = b""  # the request body as received
    wire: str = ""  # "deepseek", "openai", "codestral", "ollama", "llamacpp" for generation requests
    flavor: str = ""  # the fake's flavor when the request came (shared paths differ by it)
    model: str = ""
    prefix: str | None = None  # text before the hole as the model sees it
    suffix: str | None = None  # text after the hole as sent
    extra: list[dict[str, str]] = field(default_factory=list)  # other files sent: filename, text
    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens served from the prefix cache
    stream_requested: bool | None = None
    headers: dict[str, str] = field(default_factory=dict)  # request headers, Authorization left out

    @property
    def stream(self) -> bool:
        """True when the request asked for a streamed answer."""
        if self.stream_requested is not None:
            return self.stream_requested
        return self.body is not None and self.body.get("stream") is True


class WireError(Exception):
    """An answer the engine gives without generating, in its own shape: almost always a
    refusal (4xx/5xx), sometimes a 200 (Ollama's empty prompt only loads the model)."""

    def __init__(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body
        self.ctype = ctype


@dataclass
class FimCall:
    """One FIM request in neutral form, as the model will see it."""

    model: str
    prefix: str  # the text before the hole (for a raw template: what it wraps)
    suffix: str = ""  # the text after the hole, as sent
    context: str = ""  # raw text the engine puts before the prefix (other files, repo header)
    extra: list[dict[str, str]] = field(default_factory=list)
    stream: bool = False
    max_tokens: int | None = None  # None: no limit
    stops: list[str] = field(default_factory=list)
    include_usage: bool = False
    cache: bool = True  # the prompt may reuse the prefix cache
    suffix_ignored: bool = False  # the engine drops the suffix (SGLang without a template)
    n_indent: int = 0  # llama.cpp: stop at a line indented less than this
    t_max_predict_ms: float = 0.0  # llama.cpp: stop at a newline once generation took this long
    options: dict[str, Any] = field(default_factory=dict)  # wire-specific echoes

    @property
    def model_suffix(self) -> str:
        """The suffix as the model sees it."""
        return "" if self.suffix_ignored else self.suffix


@dataclass
class Answer:
    """One generated answer, ready for a wire to encode."""

    call: FimCall
    id: str
    created: int
    started: float  # monotonic time the request line arrived
    text: str
    finish: str  # "stop", "length" or a scripted reason
    stop_word: str  # the stop string that ended it, "" if none
    cut_by: str  # "" | "eos" | "word" | "length" | "indent" | "time"
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    plan: Plan
    usage: dict[str, Any] | None = None  # a scripted usage object that replaces the wire's

    @property
    def prompt_seconds(self) -> float:
        """Time from the request to the first token (prompt processing)."""
        first = self.plan.at[0] if self.plan.at else self.plan.done
        return max(0.0, first - self.started)

    @property
    def generation_seconds(self) -> float:
        """Time from the first token to the end of generation."""
        first = self.plan.at[0] if self.plan.at else self.plan.done
        return max(0.0, self.plan.done - first)


class ServerConfig(Protocol):
    """What the wire modules read from the fake."""

    models: list[str]
    templates: dict[str, str]
    flavor: str
    completion_template: str | None
    llamacpp_fim: bool
    chars_per_token: float
    api_key: str | None


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


def trim_answer(
    text: str, finish: str, stops: Sequence[str], max_tokens: int | None, chars_per_token: float
) -> tuple[str, str, str]:
    """Cut at the first stop string, then at max_tokens; (text, finish_reason, stop string)."""
    word = ""
    cuts = sorted((i, s) for s in stops if s and (i := text.find(s)) >= 0)
    if cuts:
        (at, word), finish = cuts[0], "stop"
        text = text[:at]
    if max_tokens is not None and len(text) > int(max_tokens * chars_per_token):
        text, finish, word = text[: int(max_tokens * chars_per_token)], "length", ""
    return text, finish, word


def cut_at_indent(text: str, n_indent: int) -> str | None:
    """llama.cpp's ``n_indent``: text up to the first later line indented less, or None."""
    if n_indent <= 0:
        return None
    start = text.find("\n")
    while start >= 0:
        line_start = start + 1
        end = text.find("\n", line_start)
        line = text[line_start:] if end < 0 else text[line_start:end]
        body = line.lstrip(" \t")
        if body and len(line) - len(body) < n_indent:
            return text[:line_start]
        start = end
    return None


def cut_at_time(text: str, t_max_ms: float, token_rate: float | None, chars_per_token: float) -> str | None:
    """llama.cpp's ``t_max_predict_ms``: where generation stops once it took that long and a
    newline was generated (time counted from the first token), or None."""
    if t_max_ms <= 0 or not token_rate:
        return None
    sent = 0
    for k, piece in enumerate(token_pieces(text, chars_per_token)):
        sent += len(piece)
        if k / token_rate * 1000.0 > t_max_ms and "\n" in text[:sent]:
            return text[:sent] if sent < len(text) else None
    return None


# -- JSON and headers ----------------------------------------------------------------------


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON, as the engines send it."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sse(obj: Any) -> bytes:
    """One SSE ``data:`` event."""
    return b"data: " + dumps(obj) + b"\n\n"


def json_object(raw: bytes | None) -> dict[str, Any] | None:
    """raw parsed as a JSON object, else None."""
    if not raw:
        return None
    try:
        value: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def is_int(value: Any) -> bool:
    """A JSON integer (not a boolean)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A JSON number (not a boolean)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def stop_list(value: Any) -> list[str] | None:
    """A ``stop`` field (string or list of strings) as a list; None if malformed."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return list(value)
    return None


# -- the oracle ------------------------------------------------------------------------------


def common_prefix_len(a: str, b: str) -> int:
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


# -- the interface every wire format implements -------------------------------------------------


class Wire:
    """One wire format: who may call, what a request means, how answers look.

    ``piece_event(ans, i)`` is the stream event carrying ``ans.plan.pieces[i]`` (with the
    finish reason when ``ans.plan.finish_on_last`` and i is the last); ``final_events``
    follow at ``ans.plan.done``.  ``body`` is the non-streamed answer.
    """

    name = ""
    stream_type = "text/event-stream"
    json_type = "application/json"
    stream_keepalive: bytes | None = None  # written every 50 ms before the first stream event
    json_keepalive: bytes | None = None  # written every 50 ms before a non-streamed answer
    quirks = False  # split the first event across HTTP chunks, add stray blank lines

    def error(self, status: int, message: str | None = None) -> WireError:
        """The engine's error answer for status."""
        return WireError(status, dumps({"error": message or "error"}))

    def authorize(self, cfg: ServerConfig, authorization: str | None, path: str) -> WireError | None:
        """None when the request may proceed, else the engine's refusal."""
        return None

    def parse(self, cfg: ServerConfig, body: Any, path: str) -> FimCall:
        """The request as a FimCall; raises WireError when the engine would refuse it."""
        raise self.error(404)

    def piece_event(self, ans: Answer, i: int) -> bytes:
        """The stream event for piece i."""
        raise NotImplementedError

    def final_events(self, ans: Answer) -> list[bytes]:
        """The events after the last piece: finish, usage, end marker."""
        raise NotImplementedError

    def body(self, ans: Answer) -> bytes:
        """The non-streamed answer."""
        raise NotImplementedError

    def usage(self, ans: Answer) -> dict[str, Any] | None:
        """The usage object this format reports, if it has one."""
        return ans.usage

    def info(self, cfg: ServerConfig, method: str, path: str, body: Any) -> tuple[int, Any] | None:
        """A non-generation route's (status, JSON payload), or None when not handled here."""
        return None


def account_key(call: FimCall) -> str:
    """The text whose prefix the engines' prefix caches match, in one neutral layout."""
    return call.context + call.prefix + "\x00" + call.model_suffix


def hexid(n: int = 24) -> str:
    """A random lowercase hex id."""
    return secrets.token_hex(n // 2)
