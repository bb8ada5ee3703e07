"""The DeepSeek backend over httpx.MockTransport: wire format, errors, retries, deadlines, redaction."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import httpx
import pytest

from fimls import log
from fimls.backends import (
    AuthError,
    BalanceError,
    FimRequest,
    Finish,
    NetworkError,
    ProtocolError,
    RateLimitError,
    RequestError,
    ServerError,
    Usage,
    build,
)
from fimls.backends.deepseek import DeepSeek
from fimls.backends.http import parse_retry_after, sse_data
from fimls.backends.openai import strip_tails
from fimls.config import parse_settings
from fimls.document import Document
from fimls.engine import Engine
from fimls.urls import public_url

KEY = "sk-unit-test-key-0123456789"


def request(stream: bool = False, **kw) -> FimRequest:
    fields = dict(
        model="deepseek-flash",
        prefix="def f():\n    return ",
        suffix="\n",
        max_tokens=64,
        stop=("\n",),
        temperature=0.0,
        top_p=1.0,
        stream=stream,
    )
    fields.update(kw)
    return FimRequest(**fields)


def completion_json(text: str, reason: str = "stop") -> dict:
    return {
        "id": "x",
        "object": "text_completion",
        "created": 0,
        "model": "deepseek-flash",
        "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": reason}],
        "usage": {
            "completion_tokens": 3,
            "prompt_tokens": 100,
            "prompt_cache_hit_tokens": 64,
            "prompt_cache_miss_tokens": 36,
            "total_tokens": 103,
        },
    }


def backend_for(handler, **settings) -> tuple[DeepSeek, list[float]]:
    slept: list[float] = []
    raw = {"baseUrl": "https://api.deepseek.com/beta/", **settings}
    parsed, problems = parse_settings(raw)
    assert problems == []
    backend = build(parsed, KEY, transport=httpx.MockTransport(handler), env={})
    assert isinstance(backend, DeepSeek)

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    backend.http._sleep = sleep
    return backend, slept


async def run(backend, req: FimRequest, timeout: float = 5.0) -> tuple[str, Finish]:
    parts: list[str] = []
    async with contextlib.aclosing(backend.generate(req, time.monotonic() + timeout)) as events:
        async for event in events:
            if isinstance(event, Finish):
                return "".join(parts), event
            parts.append(event)
    raise AssertionError("no Finish")


def test_base_url_variants():
    for url in (
        "https://api.deepseek.com",
        "https://api.deepseek.com/",
        "https://api.deepseek.com/beta",
        "https://api.deepseek.com/beta/completions",
        " https://api.deepseek.com/v1/ ",
    ):
        assert strip_tails(url, DeepSeek.url_tails) == "https://api.deepseek.com"
    assert public_url("https://user:pw@host.example/beta?key=1") == "https://host.example/beta"


def test_parse_retry_after():
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after("99999") == 300.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


async def test_json_answer_with_leading_blank_lines_and_body_shape():
    seen = {}

    def handler(req: httpx.Request) -> httpx.Response:
        seen["url"] = str(req.url)
        seen["auth"] = req.headers["authorization"]
        seen["agent"] = req.headers["user-agent"]
        seen["body"] = json.loads(req.content)
        return httpx.Response(200, content=b"\n\n\n" + json.dumps(completion_json("42")).encode())

    backend, _ = backend_for(handler)
    text, finish = await run(backend, request())
    assert text == "42" and finish.reason == "stop"
    assert finish.usage == Usage(100, 3, 64, 36)
    assert seen["url"] == "https://api.deepseek.com/beta/completions"
    assert seen["auth"] == f"Bearer {KEY}" and seen["agent"].startswith("fimls/")
    body = seen["body"]
    assert body["model"] == "deepseek-flash" and body["stop"] == ["\n"] and body["stream"] is False
    assert body["prompt"] == "def f():\n    return " and body["suffix"] == "\n"
    assert "stream_options" not in body
    await backend.aclose()


def sse(*events: dict | str) -> bytes:
    out = [": keep-alive", ""]
    for event in events:
        out += [event if isinstance(event, str) else "data: " + json.dumps(event), ""]
    return ("\n".join(out) + "\n").encode()


def chunk(text: str, reason: str | None = None) -> dict:
    return {"choices": [{"text": text, "index": 0, "finish_reason": reason}], "usage": None}


async def test_stream_skips_keepalives_and_reads_usage():
    usage = {
        "prompt_tokens": 10,
        "completion_tokens": 2,
        "prompt_cache_hit_tokens": 0,
        "prompt_cache_miss_tokens": 10,
    }
    body = sse(
        chunk("a + "), ": keep-alive", chunk("b", "stop"), {"choices": [], "usage": usage}, "data: [DONE]"
    )

    def handler(req: httpx.Request) -> httpx.Response:
        assert json.loads(req.content)["stream_options"] == {"include_usage": True}
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    backend, _ = backend_for(handler)
    text, finish = await run(backend, request(stream=True))
    assert (text, finish.reason, finish.usage.prompt_tokens) == ("a + b", "stop", 10)


async def test_sse_events_follow_the_format():
    """Several data lines join with a newline; one space after the colon goes; CRLF and CR end lines."""
    raw = b"data: one\r\ndata:two\r\n\r\n: comment\rid: 7\rdata:  three\r\r" + b"data: four"

    response = httpx.Response(200, content=raw)
    assert [e async for e in sse_data(response)] == ["one\ntwo", " three", "four"]


async def test_stream_text_arrives_piece_by_piece():
    gate = asyncio.Event()

    class Slow(httpx.AsyncByteStream):
        async def __aiter__(self):
            yield sse(chunk("first\n"))
            await gate.wait()
            yield sse(chunk("second", "stop"), "data: [DONE]")

    backend, _ = backend_for(lambda req: httpx.Response(200, stream=Slow()))
    async with contextlib.aclosing(backend.generate(request(stream=True), time.monotonic() + 5)) as events:
        assert await anext(events) == "first\n"  # before the rest of the answer exists
        gate.set()
        assert await anext(events) == "second"
        assert isinstance(await anext(events), Finish)


async def test_stream_cut_without_done_is_an_error():
    backend, _ = backend_for(lambda req: httpx.Response(200, content=sse(chunk("abc"))), maxRetries=0)
    with pytest.raises(ProtocolError, match="ended early"):
        await run(backend, request(stream=True))


async def test_malformed_stream_event():
    backend, _ = backend_for(lambda req: httpx.Response(200, content=sse(chunk("a"), "data: {not json")))
    with pytest.raises(ProtocolError, match="malformed stream chunk"):
        await run(backend, request(stream=True))


@pytest.mark.parametrize(
    ("status", "body", "error", "words"),
    [
        (401, {"error": {"message": "Authentication Fails"}}, AuthError, "rejected the API key (401)"),
        (402, {"error": {"message": "Insufficient Balance"}}, BalanceError, "insufficient balance"),
        (400, {"error": {"message": "Model Not Exist"}}, RequestError, "does not know the model"),
        (422, {"error": {"message": "bad temperature"}}, RequestError, "bad temperature"),
    ],
)
async def test_client_errors_are_not_retried(status, body, error, words):
    calls = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(req)
        return httpx.Response(status, json=body)

    backend, slept = backend_for(handler)
    with pytest.raises(error) as info:
        await run(backend, request())
    assert words in str(info.value)
    assert "DeepSeek at https://api.deepseek.com" in str(info.value)
    assert len(calls) == 1 and slept == []
    if status == 400:
        assert info.value.model_missing


@pytest.mark.parametrize("status", [400, 404, 401, 500])
async def test_an_echoed_key_is_redacted_where_the_error_is_built(status):
    """A server that repeats the Authorization header (or the key) in its error body."""
    log.add_secrets([KEY])
    echo = {"error": {"message": f"bad request; headers were Authorization: Bearer {KEY}; key={KEY}"}}
    backend, _ = backend_for(lambda req: httpx.Response(status, json=echo), maxRetries=0)
    with pytest.raises(Exception) as info:
        await run(backend, request())
    assert KEY not in str(info.value) and "***" in str(info.value)


async def test_429_retries_honouring_retry_after_then_succeeds():
    answers = [
        httpx.Response(429, headers={"Retry-After": "1"}, json={"error": {"message": "slow down"}}),
        httpx.Response(503),
        httpx.Response(200, json=completion_json("ok")),
    ]
    retries = []
    backend, slept = backend_for(lambda req: answers.pop(0))
    backend.http._on_retry = lambda: retries.append(1)
    text, _ = await run(backend, request(), timeout=30)
    assert text == "ok"
    assert slept[0] == 1.0 and 0 < slept[1] <= 0.5
    assert len(retries) == 2


async def test_retries_are_bounded():
    calls = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(req)
        return httpx.Response(500)

    backend, _ = backend_for(handler, maxRetries=2)
    with pytest.raises(ServerError, match=r"server error \(500\)"):
        await run(backend, request(), timeout=30)
    assert len(calls) == 3


async def test_retry_after_beyond_the_deadline_gives_up_at_once():
    backend, slept = backend_for(lambda req: httpx.Response(429, headers={"Retry-After": "60"}))
    with pytest.raises(RateLimitError) as info:
        await run(backend, request(), timeout=5)
    assert info.value.retry_after == 60 and slept == []


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"id": "x"}', b'{"choices": []}', b'{"choices": "nope"}', b"[1, 2]"],
)
async def test_malformed_answers(content):
    backend, _ = backend_for(lambda req: httpx.Response(200, content=content))
    with pytest.raises(ProtocolError):
        await run(backend, request())


async def test_an_answer_that_never_begins_ends_at_the_deadline():
    async def silent(req: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        raise AssertionError("unreachable")

    backend, _ = backend_for(silent, maxRetries=0)
    started = time.monotonic()
    with pytest.raises(NetworkError, match=r"did not answer POST /beta/completions within 0\.3 s"):
        await run(backend, request(stream=True), timeout=0.3)
    assert time.monotonic() - started < 1.0


async def test_keepalives_do_not_hold_the_engine_past_its_deadline():
    """The body is bounded by the engine: keep-alive comments forever end in an empty answer."""

    class Trickle(httpx.AsyncByteStream):
        async def __aiter__(self):
            while True:
                await asyncio.sleep(0.02)
                yield b": keep-alive\n\n"

    errors: list[Exception] = []
    settings, _ = parse_settings(
        {"apiKey": KEY, "model": "deepseek-flash", "timeoutMs": 300, "prefetch": False}
    )
    engine = Engine(
        settings,
        transport=httpx.MockTransport(lambda req: httpx.Response(200, stream=Trickle())),
        on_error=errors.append,
    )
    snap = Document("file:///a.py", "x = \n").snapshot(
        0, 4, encoding="utf-32", max_prefix=99, max_suffix=99, anchor=1
    )
    started = time.monotonic()
    try:
        assert await engine.complete(snap) == []
        assert time.monotonic() - started < 1.0
        await asyncio.sleep(0.3)  # the stream ends at its deadline too
        assert engine.streams.live() == 0
        assert errors and "did not answer within 0.3 s" in str(errors[-1])
    finally:
        await engine.aclose()


async def test_the_failure_that_used_up_the_time_is_reported():
    async def slow_503(req: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.2)
        return httpx.Response(503)

    backend, _ = backend_for(slow_503)
    backend.http._sleep = asyncio.sleep
    with pytest.raises(ServerError, match="503"):
        await run(backend, request(), timeout=0.5)


async def test_connection_errors_name_the_url_and_cause():
    def handler(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("All connection attempts failed") from ConnectionRefusedError(111, "refused")

    backend, _ = backend_for(handler, maxRetries=1)
    with pytest.raises(NetworkError) as info:
        await run(backend, request())
    assert str(info.value) == (
        "cannot reach DeepSeek at https://api.deepseek.com (POST /beta/completions): connection refused"
    )


async def test_models_and_balance():
    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path == "/models":
            return httpx.Response(
                200, json={"object": "list", "data": [{"id": "deepseek-flash"}, {"id": "x"}]}
            )
        assert req.url.path == "/user/balance"
        return httpx.Response(
            200,
            json={"is_available": True, "balance_infos": [{"currency": "CNY", "total_balance": "110.00"}]},
        )

    backend, _ = backend_for(handler)
    assert await backend.models() == ["deepseek-flash", "x"]
    assert backend.choose_model(["x", "deepseek-chat", "deepseek-flash"]) == "deepseek-flash"
    balance = await backend.balance()
    assert balance.is_available and balance.describe() == "110.00 CNY (available)"
    [check] = await backend.diagnose("deepseek-flash")
    assert check.ok and check.detail == "110.00 CNY (available)"


def test_price_of_a_known_model_and_the_setting_that_overrides_it():
    backend, _ = backend_for(lambda req: httpx.Response(500))
    usage = Usage(
        prompt_tokens=1_000_000,
        completion_tokens=1_000_000,
        cache_hit_tokens=500_000,
        cache_miss_tokens=500_000,
    )
    assert backend.price("deepseek-flash").cost(usage) == pytest.approx(0.5 * 0.006 + 0.5 * 0.30 + 1.20)
