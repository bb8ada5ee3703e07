"""The production HTTP client (httpx, no injected transport) against real sockets on loopback.

Keep-alive, TLS trust and refusal, streamed and large answers, truncated chunked bodies, URL
credentials, IPv6, and proxies from the environment (a loopback proxy must see the request;
``NO_PROXY`` must bypass it).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import ssl
import time
from collections.abc import Awaitable, Callable

import pytest
import trustme
from fake_proxy import FakeProxy

from fimls.backends import FimRequest, Finish, NetworkError, build
from fimls.config import parse_settings

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def fim_request(stream: bool) -> FimRequest:
    return FimRequest(
        model="deepseek-chat", prefix="def f():\n    return ", suffix="\n", max_tokens=16, stream=stream
    )


def backend_at(url: str, key: str = "sk-x", **settings):
    parsed, problems = parse_settings({"baseUrl": url, "maxRetries": 0, **settings})
    assert problems == []
    return build(parsed, key, env={})


async def complete(backend, req: FimRequest, timeout: float = 5.0) -> tuple[str, Finish]:
    parts: list[str] = []
    try:
        async with contextlib.aclosing(backend.generate(req, time.monotonic() + timeout)) as events:
            async for event in events:
                if isinstance(event, Finish):
                    return "".join(parts), event
                parts.append(event)
    finally:
        await backend.aclose()
    raise AssertionError("no Finish")


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        ),
        0,
    )
    return head, await reader.readexactly(length)


def answer(text: str) -> bytes:
    body = json.dumps(
        {"choices": [{"text": text, "index": 0, "finish_reason": "stop"}], "usage": None}
    ).encode()
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    )


class Server:
    """A bare HTTP/1.1 server on loopback (optionally TLS) that counts connections."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        self.handler = handler
        self.tls = tls
        self.host = host
        self.connections = 0
        self.heads: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Server:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(serve, self.host, 0, ssl=self.tls)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def tls_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


@pytest.fixture
def trusting(ca: trustme.CA, monkeypatch, tmp_path) -> None:
    """Make fimls trust ``ca`` the way a user would: SSL_CERT_FILE."""
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def keep_alive(seen: list[bytes] | None = None) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, _ = await read_request(reader)
            if seen is not None:
                seen.append(head)
            writer.write(answer("ok"))
            await writer.drain()

    return handle


async def test_plain_http_requests_reuse_one_connection():
    async with Server(keep_alive()) as server:
        backend = backend_at(f"http://127.0.0.1:{server.port}/beta")
        texts = []
        for _ in range(5):
            async with contextlib.aclosing(
                backend.generate(fim_request(False), time.monotonic() + 5)
            ) as events:
                texts.append("".join([e async for e in events if isinstance(e, str)]))
        await backend.aclose()
    assert texts == ["ok"] * 5
    assert server.connections == 1


async def test_tls_with_a_trusted_certificate(ca, trusting):
    async with Server(keep_alive(), tls_context(ca, "localhost")) as server:
        text, _ = await complete(backend_at(f"https://localhost:{server.port}/beta"), fim_request(False))
    assert text == "ok"


async def test_tls_with_an_untrusted_certificate_is_refused(ca):
    async with Server(keep_alive(), tls_context(ca, "localhost")) as server:
        with pytest.raises(NetworkError, match="TLS verification failed"):
            await complete(backend_at(f"https://localhost:{server.port}/beta"), fim_request(False))


async def test_tls_with_a_certificate_for_another_host_is_refused(ca, trusting):
    async with Server(keep_alive(), tls_context(ca, "api.example.com")) as server:
        with pytest.raises(NetworkError, match=r"TLS verification failed.*(?i:hostname|match)"):
            await complete(backend_at(f"https://localhost:{server.port}/beta"), fim_request(False))


async def test_streamed_answer_over_tls_in_tiny_pieces(ca, trusting):
    events = [
        {"choices": [{"text": piece, "index": 0, "finish_reason": None}]} for piece in ["ré", "sumé", " 😀"]
    ]
    events.append({"choices": [{"text": "", "index": 0, "finish_reason": "stop"}]})
    body = b"".join(b"data: " + json.dumps(e, ensure_ascii=False).encode() + b"\r\n\r\n" for e in events)
    body += b"data: [DONE]\r\n\r\n"

    async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        for i in range(0, len(body), 3):  # 3-byte chunks split lines, CRLFs and UTF-8
            piece = body[i : i + 3]
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            await asyncio.sleep(0)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async with Server(stream, tls_context(ca, "localhost")) as server:
        text, finish = await complete(backend_at(f"https://localhost:{server.port}/beta"), fim_request(True))
    assert (text, finish.reason) == ("résumé 😀", "stop")


async def test_large_answer_is_read_whole():
    text = "x" * (3 << 20)

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(text))
        await writer.drain()

    async with Server(big) as server:
        got, _ = await complete(backend_at(f"http://127.0.0.1:{server.port}/beta"), fim_request(False))
    assert got == text


async def test_connection_closed_by_the_server_while_idle_is_replaced():
    async def one_per_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer("ok"))  # keep-alive by default, then hangs up anyway
        await writer.drain()

    async with Server(one_per_connection) as server:
        backend = backend_at(f"http://127.0.0.1:{server.port}/beta")
        texts = []
        for _ in range(2):
            async with contextlib.aclosing(
                backend.generate(fim_request(False), time.monotonic() + 5)
            ) as events:
                texts.append("".join([e async for e in events if isinstance(e, str)]))
            await asyncio.sleep(0.1)  # the close reaches the idle pooled connection
        await backend.aclose()
    assert texts == ["ok", "ok"]
    assert server.connections == 2


@pytest.mark.parametrize(
    "tail",
    [b"1", b"1\r", b"0\r\nX-Trailer: par", b"\r", b"5\r\nda"],
    ids=["partial-size-line", "size-then-lone-cr", "partial-trailer", "lone-cr", "short-chunk"],
)
async def test_truncated_chunked_answers_end_in_a_clear_error_within_the_deadline(tail):
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    event = b'data: {"choices":[{"text":"a","index":0,"finish_reason":null}]}\n\n'

    async def truncated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head + b"%x\r\n%s\r\n" % (len(event), event) + tail)
        await writer.drain()
        writer.transport.abort()  # the connection closes mid-frame

    async with Server(truncated) as server:
        started = time.monotonic()
        with pytest.raises(NetworkError, match=r"broke off|ended early|connection"):
            await complete(backend_at(f"http://127.0.0.1:{server.port}/beta"), fim_request(True), timeout=2)
        assert time.monotonic() - started < 2


async def test_a_silent_server_hits_the_deadline_and_a_closed_port_is_refused():
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(10)

    async with Server(silent) as server:
        port = server.port
        started = time.monotonic()
        with pytest.raises(NetworkError, match=r"did not answer POST /beta/completions within 0\.4 s"):
            await complete(backend_at(f"http://127.0.0.1:{port}/beta"), fim_request(False), timeout=0.4)
        assert time.monotonic() - started < 1.0
    with pytest.raises(NetworkError) as info:
        await complete(backend_at(f"http://127.0.0.1:{port}/beta"), fim_request(False))
    assert str(info.value) == (
        f"cannot reach DeepSeek at http://127.0.0.1:{port} (POST /beta/completions): connection refused"
    )


async def test_an_unknown_host_is_reported_as_name_not_resolved():
    with pytest.raises(NetworkError, match="name not resolved"):
        await complete(backend_at("https://fimls-test.invalid"), fim_request(False))


async def test_url_credentials_are_sent_as_basic_auth_and_never_shown():
    seen: list[bytes] = []
    async with Server(keep_alive(seen)) as server:
        backend = backend_at(f"http://user:pa%40ss@127.0.0.1:{server.port}/beta", key="")
        assert "pa%40ss" not in backend.label and "user" not in backend.label
        await complete(backend, fim_request(False))
    expected = b"Basic " + base64.b64encode(b"user:pa@ss")
    assert any(
        expected in line for line in seen[0].split(b"\r\n") if line.lower().startswith(b"authorization")
    )


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 on this machine")
async def test_ipv6_loopback():
    try:
        server = await Server(keep_alive(), host="::1").__aenter__()
    except OSError:
        pytest.skip("cannot bind ::1 here")
    try:
        text, _ = await complete(backend_at(f"http://[::1]:{server.port}/beta"), fim_request(False))
    finally:
        await server.__aexit__()
    assert text == "ok" and server.connections == 1


async def test_a_proxy_from_the_environment_carries_the_request(monkeypatch):
    async with Server(keep_alive()) as server:
        with FakeProxy() as proxy:
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
            url = f"http://127.0.0.1:{server.port}"
            text, _ = await complete(backend_at(url + "/beta"), fim_request(False))
    assert text == "ok"
    assert [(r.method, r.target) for r in proxy.requests] == [("POST", f"{url}/beta/completions")]


async def test_no_proxy_bypasses_the_proxy(monkeypatch):
    async with Server(keep_alive()) as server:
        with FakeProxy() as proxy:
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
            monkeypatch.setenv("NO_PROXY", "127.0.0.1")
            text, _ = await complete(backend_at(f"http://127.0.0.1:{server.port}/beta"), fim_request(False))
    assert text == "ok" and proxy.requests == [] and server.connections == 1


async def test_a_proxy_that_refuses_is_reported_as_such(monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{dead}")
    with pytest.raises(NetworkError, match=r"proxy|connection refused"):
        await complete(backend_at("https://api.deepseek.com"), fim_request(False))


async def test_pool_limits_and_timeouts_are_explicit():
    backend = backend_at("https://api.deepseek.com")
    client = backend.http.client
    assert client.timeout.connect == 5.0 and client.timeout.read == 30.0
    assert client.follow_redirects is False and client.trust_env is True
    await backend.aclose()
