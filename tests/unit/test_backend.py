"""DeepSeek client against httpx.MockTransport: wire format, errors, retries, deadlines."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from fimls.backend import (
    EVENT_BATCH,
    AuthError,
    BalanceError,
    DeepSeekClient,
    FimRequest,
    NetworkError,
    ProtocolError,
    RateLimitError,
    RequestError,
    ServerError,
    Usage,
    parse_retry_after,
    public_url,
    root_url,
)

KEY = "sk-unit-test-key-0123456789"


def request(stream: bool = False, **kw) -> FimRequest:
    fields = dict(
        model="deepseek-flash",
        prompt="def f():\n    return ",
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


def client_for(handler, **kw) -> tuple[DeepSeekClient, list[float]]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    client = DeepSeekClient(
        "https://api.deepseek.com/beta/", KEY, transport=httpx.MockTransport(handler), sleep=sleep, **kw
    )
    return client, slept


def test_root_url_variants():
    for url in (
        "https://api.deepseek.com",
        "https://api.deepseek.com/",
        "https://api.deepseek.com/beta",
        "https://api.deepseek.com/beta/completions",
        " https://api.deepseek.com/v1/ ",
    ):
        assert root_url(url) == "https://api.deepseek.com"
    assert public_url("https://user:pw@host.example/beta?key=1") == "https://host.example"


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
        seen["body"] = json.loads(req.content)
        return httpx.Response(200, content=b"\n\n\n" + json.dumps(completion_json("42")).encode())

    client, _ = client_for(handler)
    result = await client.fim(request(max_tokens=9999 if False else 64))
    assert result.text == "42" and result.finish_reason == "stop"
    assert result.usage == Usage(100, 3, 64, 36)
    assert seen["url"] == "https://api.deepseek.com/beta/completions"
    assert seen["auth"] == f"Bearer {KEY}"
    body = seen["body"]
    assert body["model"] == "deepseek-flash" and body["stop"] == ["\n"] and body["stream"] is False
    assert body["suffix"] == "\n" and "stream_options" not in body
    await client.aclose()


def sse(*chunks: dict | str) -> bytes:
    out = [": keep-alive", ""]
    for chunk in chunks:
        out += [chunk if isinstance(chunk, str) else "data: " + json.dumps(chunk), ""]
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

    client, _ = client_for(handler)
    result = await client.fim(request(stream=True))
    assert (result.text, result.finish_reason, result.usage.prompt_tokens) == ("a + b", "stop", 10)


async def test_stream_stops_early_once_done():
    body = sse(chunk("first line\nsec"), chunk("ond"), chunk("", "stop"), "data: [DONE]")
    client, _ = client_for(lambda req: httpx.Response(200, content=body))
    result = await client.fim(request(stream=True), done=lambda text: "\n" in text)
    assert result.early_close and result.text == "first line\nsec"


@pytest.mark.parametrize("events", [3, EVENT_BATCH + 5, 3 * EVENT_BATCH])
async def test_many_events_in_one_read_are_decoded_in_order(events):
    pieces = [f"p{i} " for i in range(events)]
    body = sse(*(chunk(piece) for piece in pieces), chunk("", "stop"), "data: [DONE]")
    client, _ = client_for(lambda req: httpx.Response(200, content=body))
    result = await client.fim(request(stream=True))
    assert result.text == "".join(pieces) and result.finish_reason == "stop"


async def test_a_malformed_event_after_a_complete_answer_is_never_read():
    good = [chunk(f"line {i}\n") for i in range(EVENT_BATCH + 2)]
    body = sse(*good, "data: {not json", "data: [DONE]")
    client, _ = client_for(lambda req: httpx.Response(200, content=body))
    result = await client.fim(request(stream=True), done=lambda text: text.count("\n") == 2)
    assert result.early_close and result.text == "line 0\nline 1\n"
    with pytest.raises(ProtocolError, match="malformed stream chunk"):
        await client.fim(request(stream=True), done=lambda text: False)


async def test_stream_cut_without_done_is_an_error():
    body = sse(chunk("abc"))
    client, _ = client_for(lambda req: httpx.Response(200, content=body), max_retries=0)
    with pytest.raises(ProtocolError):
        await client.fim(request(stream=True))


@pytest.mark.parametrize(
    ("status", "body", "error", "words"),
    [
        (401, {"error": {"message": "Authentication Fails"}}, AuthError, "invalid API key"),
        (402, {"error": {"message": "Insufficient Balance"}}, BalanceError, "insufficient balance"),
        (400, {"error": {"message": "Model Not Exist"}}, RequestError, "does not exist"),
        (422, {"error": {"message": "bad temperature"}}, RequestError, "bad temperature"),
    ],
)
async def test_client_errors_are_not_retried(status, body, error, words):
    calls = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(req)
        return httpx.Response(status, json=body)

    client, slept = client_for(handler)
    with pytest.raises(error) as info:
        await client.fim(request())
    assert words in str(info.value)
    assert KEY not in str(info.value)
    assert len(calls) == 1 and slept == []
    if status == 400:
        assert info.value.model_missing


async def test_429_retries_honouring_retry_after_then_succeeds():
    answers = [
        httpx.Response(429, headers={"Retry-After": "1"}, json={"error": {"message": "slow down"}}),
        httpx.Response(503),
        httpx.Response(200, json=completion_json("ok")),
    ]
    retries = []
    client, slept = client_for(lambda req: answers.pop(0), on_retry=lambda: retries.append(1))
    result = await client.fim(request(), timeout=30)
    assert result.text == "ok"
    assert slept[0] == 1.0 and 0 < slept[1] <= 0.5
    assert len(retries) == 2


async def test_retries_are_bounded():
    calls = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(req)
        return httpx.Response(500)

    client, _ = client_for(handler, max_retries=2)
    with pytest.raises(ServerError):
        await client.fim(request(), timeout=30)
    assert len(calls) == 3


async def test_retry_after_beyond_the_deadline_gives_up_at_once():
    client, slept = client_for(lambda req: httpx.Response(429, headers={"Retry-After": "60"}))
    with pytest.raises(RateLimitError) as info:
        await client.fim(request(), timeout=5)
    assert info.value.retry_after == 60 and slept == []


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"id": "x"}', b'{"choices": []}', b'{"choices": "nope"}', b"[1, 2]"],
)
async def test_malformed_answers(content):
    client, _ = client_for(lambda req: httpx.Response(200, content=content))
    with pytest.raises(ProtocolError):
        await client.fim(request())


async def test_overall_deadline_despite_keepalives():
    class Trickle(httpx.AsyncByteStream):
        async def __aiter__(self):
            while True:
                await asyncio.sleep(0.02)
                yield b": keep-alive\n\n"

    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Trickle())

    client = DeepSeekClient(
        "https://api.deepseek.com", KEY, transport=httpx.MockTransport(handler), max_retries=0
    )
    with pytest.raises(NetworkError, match=r"within 0\.3 s"):
        await client.fim(request(stream=True), timeout=0.3)


async def test_connection_errors_become_network_errors():
    def handler(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    client, _ = client_for(handler, max_retries=1)
    with pytest.raises(NetworkError, match="cannot reach DeepSeek"):
        await client.fim(request())


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

    client, _ = client_for(handler)
    assert await client.models() == ["deepseek-flash", "x"]
    balance = await client.balance()
    assert balance.is_available and balance.describe() == "110.00 CNY (available)"


async def test_completion_request_carries_the_clients_headers_and_timeouts():
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, json={"choices": [{"text": "x", "finish_reason": "stop"}]})

    client, _ = client_for(handler)
    await client.fim(request())
    [sent] = seen
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.headers["User-Agent"].startswith("fimls/")
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.extensions["timeout"]["read"] == 30.0
    assert json.loads(sent.content)["prompt"] == request().prompt


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "http_proxy", "ALL_PROXY"])
def test_a_proxy_in_the_environment_keeps_requests_on_the_client(monkeypatch, variable):
    assert DeepSeekClient("https://api.deepseek.com/beta", "sk-x")._direct
    monkeypatch.setenv(variable, "http://proxy.example:3128")
    # httpx picks the proxy per URL inside the client, so the client must send.
    assert not DeepSeekClient("https://api.deepseek.com/beta", "sk-x")._direct
