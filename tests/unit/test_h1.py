"""fimls.h1: the HTTP/1.1 client DeepSeek's calls go through, against real loopback servers."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
from collections.abc import Awaitable, Callable

import pytest

from fimls import h1
from fimls.backend import AuthError, DeepSeekClient, FimRequest, NetworkError
from fimls.h1 import HIGH_WATER

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """A loopback server that records each request head and counts connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.heads: list[bytes] = []
        self.bodies: list[bytes] = []
        self.url = ""
        self._server: asyncio.Server | None = None

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await reader.readexactly(length)
        self.bodies.append(body)
        return body

    async def __aenter__(self) -> Server:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        self._server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/beta/completions?x=1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()


def ok(body: bytes, *extra: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % len(body)
    return head + b"".join(line + b"\r\n" for line in extra) + b"\r\n" + body


async def send_in_pieces(writer: asyncio.StreamWriter, data: bytes, size: int) -> None:
    for i in range(0, len(data), size):
        writer.write(data[i : i + size])
        await writer.drain()
        await asyncio.sleep(0)


async def exchange(server: Server, client: h1.H1Client, method: str = "POST") -> tuple[int, bytes]:
    answer = await client.request(method, server.url, b'{"a": 1}' if method == "POST" else b"", {})
    try:
        return answer.status_code, await answer.aread()
    finally:
        answer.close()


@pytest.fixture
async def client() -> h1.H1Client:
    import ssl

    instance = h1.H1Client(ssl.create_default_context(), read_timeout=2.0, headers={"User-Agent": "t"})
    yield instance
    await instance.aclose()


async def test_request_head_and_keep_alive(client):
    async def handler(reader, writer):
        while True:
            body = await server.read_request(reader)
            writer.write(ok(b"got " + body))

    async with Server(handler) as server:
        answers = [await exchange(server, client) for _ in range(3)]
        get = await exchange(server, client, "GET")
    assert answers == [(200, b'got {"a": 1}')] * 3
    assert get == (200, b"got ")
    assert server.connections == 1
    lines = server.heads[0].split(b"\r\n")
    port = server.url.split(":")[2].split("/")[0]
    assert lines[0] == b"POST /beta/completions?x=1 HTTP/1.1"
    assert b"Host: 127.0.0.1:" + port.encode() in lines
    assert b"User-Agent: t" in lines and b"Content-Length: 8" in lines
    assert not any(line.lower().startswith(b"content-length") for line in server.heads[3].split(b"\r\n"))


@pytest.mark.parametrize("piece", [1, 3, 64])
async def test_chunked_body_in_any_split(client, piece):
    chunks = [b"data: \xc3\xa9t\xc3\xa9\n\n", b"x" * 300, b"\r\n", b"end"]
    wire = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\nTrailer: yes\r\n\r\n"

    async def handler(reader, writer):
        while True:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            await send_in_pieces(writer, wire, piece)

    async with Server(handler) as server:
        first = await exchange(server, client)
        second = await exchange(server, client)
    assert first == second == (200, b"".join(chunks))
    assert server.connections == 1


async def test_bare_newlines_in_chunk_framing_are_accepted(client):
    async def handler(reader, writer):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n")

    async with Server(handler) as server:
        assert await exchange(server, client) == (200, b"abc")


async def test_interim_answers_are_skipped(client):
    async def handler(reader, writer):
        await server.read_request(reader)
        interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n"
        writer.write(interim + ok(b"final"))

    async with Server(handler) as server:
        assert await exchange(server, client) == (200, b"final")


async def test_gzip_body_is_decoded(client):
    async def handler(reader, writer):
        await server.read_request(reader)
        writer.write(ok(gzip.compress(b"packed " * 100), b"Content-Encoding: gzip"))

    async with Server(handler) as server:
        assert await exchange(server, client) == (200, b"packed " * 100)


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"SPDY/3 200 OK\r\n\r\n", "not HTTP/1.1"),
        (b"HTTP/1.1 200 OK\r\nbad header line\r\n\r\n", "malformed header"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", "invalid Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n", "malformed chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n", "malformed chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1_0\r\n", "malformed chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY\r\n", "malformed chunked"),
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 1\r\n\r\nx", "unsupported encoding"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "closed in the middle"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"y" * (h1.MAX_HEAD + 10), "too large"),
        (b"", "closed before DeepSeek answered"),
    ],
)
async def test_malformed_answers_are_protocol_errors(client, wire, message):
    async def handler(reader, writer):
        await server.read_request(reader)
        writer.write(wire)
        await writer.drain()
        writer.close()

    async with Server(handler) as server:
        with pytest.raises(h1.RemoteProtocolError, match=message):
            await exchange(server, client)
    assert client.open_connections() == 0


async def test_body_read_to_the_close_is_not_reused(client):
    async def handler(reader, writer):
        await server.read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nuntil the end")
        await writer.drain()
        writer.close()

    async with Server(handler) as server:
        assert await exchange(server, client) == (200, b"until the end")
        assert await exchange(server, client) == (200, b"until the end")
    assert server.connections == 2


@pytest.mark.parametrize(
    "extra", [(b"Connection: close",), (b"Connection: keep-alive, close",)], ids=["close", "list"]
)
async def test_connection_close_is_honoured(client, extra):
    async def handler(reader, writer):
        await server.read_request(reader)
        writer.write(ok(b"bye", *extra))
        await asyncio.sleep(1)  # leaves closing to the client

    async with Server(handler) as server:
        await exchange(server, client)
        assert client.open_connections() == 0
        await exchange(server, client)
    assert server.connections == 2


async def test_http10_keep_alive_is_reused(client):
    async def handler(reader, writer):
        while True:
            await server.read_request(reader)
            writer.write(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok")

    async with Server(handler) as server:
        await exchange(server, client)
        await exchange(server, client)
    assert server.connections == 1


async def test_a_kept_connection_closed_during_the_request_is_retried_once(client):
    async def handler(reader, writer):
        await server.read_request(reader)
        writer.write(ok(b"first"))
        await server.read_request(reader)  # the server gave up on this connection: no answer
        writer.transport.abort()

    async with Server(handler) as server:
        assert await exchange(server, client) == (200, b"first")
        assert await exchange(server, client) == (200, b"first")
    assert server.connections == 2
    assert len(server.bodies) == 3


async def test_idle_connections_expire(client):
    client._expiry = 0.05

    async def handler(reader, writer):
        while True:
            await server.read_request(reader)
            writer.write(ok(b"ok"))

    async with Server(handler) as server:
        await exchange(server, client)
        await asyncio.sleep(0.1)
        await exchange(server, client)
        assert client.open_connections() == 1
    assert server.connections == 2


async def test_only_max_idle_connections_are_kept(client):
    client._max_idle = 1
    release = asyncio.Event()

    async def handler(reader, writer):
        while True:
            await server.read_request(reader)
            await release.wait()
            writer.write(ok(b"ok"))

    async with Server(handler) as server:
        calls = [asyncio.create_task(exchange(server, client)) for _ in range(3)]
        await asyncio.sleep(0.1)
        assert client.open_connections() == 3
        release.set()
        assert [await call for call in calls] == [(200, b"ok")] * 3
        assert client.open_connections() == 1


async def test_cancel_mid_body_drops_the_connection(client):
    async def handler(reader, writer):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await asyncio.sleep(5)

    async with Server(handler) as server:
        call = asyncio.create_task(exchange(server, client))
        await asyncio.sleep(0.1)
        assert client.open_connections() == 1
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert client.open_connections() == 0


async def test_read_timeout(client):
    client.read_timeout = 0.1

    async def handler(reader, writer):
        await server.read_request(reader)
        await asyncio.sleep(5)

    async with Server(handler) as server:
        with pytest.raises(h1.ReadTimeout):
            await exchange(server, client)


async def test_big_body_pauses_and_resumes_reading(client):
    body = bytes(range(256)) * (3 * HIGH_WATER // 256)

    async def handler(reader, writer):
        await server.read_request(reader)
        writer.write(ok(body))
        await writer.drain()

    async with Server(handler) as server:
        answer = await client.request("POST", server.url, b"{}", {})
        await asyncio.sleep(0.2)  # let the socket fill the buffer past the mark
        assert answer._connection is not None and answer._connection.pipe.reading_paused
        received = await answer.aread()
        answer.close()
    assert received == body


async def test_closed_client_and_bad_urls_are_refused(client):
    with pytest.raises(h1.ConnectError, match="unsupported URL"):
        await client.request("GET", "ftp://example.com/x", b"", {})
    await client.aclose()
    with pytest.raises(h1.ConnectError, match="closed"):
        await client.request("GET", "http://127.0.0.1:9/x", b"", {})


async def test_header_values_that_would_split_the_request_are_refused(client):
    with pytest.raises(h1.InvalidHeader):
        await client.request("POST", "http://127.0.0.1:9/x", b"", {"X-Test": "a\r\nInjected: yes"})


async def test_an_api_key_with_a_line_break_is_an_auth_error_without_the_key():
    key = "sk-secret-123\nX-Evil: 1"
    client = DeepSeekClient("http://127.0.0.1:9/beta", key, max_retries=0)
    request = FimRequest("deepseek-chat", "a", "", 4, (), 0.0, 1.0, False)
    try:
        with pytest.raises(AuthError) as error:
            await client.fim(request)
        with pytest.raises(AuthError):
            await client.models()
    finally:
        await client.aclose()
    assert "sk-secret" not in str(error.value)


async def test_deepseek_client_uses_h1_unless_a_proxy_is_set(monkeypatch):
    async def handler(reader, writer):
        while True:
            await server.read_request(reader)
            body = json.dumps({"object": "list", "data": [{"id": "deepseek-chat"}]}).encode()
            writer.write(ok(body))

    async with Server(handler) as server:
        client = DeepSeekClient(server.url.split("/beta")[0], "sk-x")
        try:
            assert client._h1 is not None
            assert await client.models() == ["deepseek-chat"]
            assert client.open_connections() == 1
        finally:
            await client.aclose()
        assert client.open_connections() == 0
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    assert DeepSeekClient("https://api.deepseek.com", "sk-x")._h1 is None


async def test_connection_refused_is_a_network_error():
    client = DeepSeekClient("http://127.0.0.1:9/beta", "sk-x", max_retries=0)
    try:
        with pytest.raises(NetworkError, match="cannot reach DeepSeek: ConnectError"):
            await client.models()
    finally:
        await client.aclose()


async def test_requests_beyond_the_connection_limit_wait_their_turn(client):
    client._max_open = 2
    busy = 0
    most = 0

    async def handler(reader, writer):
        nonlocal busy, most
        while True:
            await server.read_request(reader)
            busy += 1
            most = max(most, busy)
            await asyncio.sleep(0.02)
            busy -= 1
            writer.write(ok(b"ok"))

    async with Server(handler) as server:
        calls = [asyncio.create_task(exchange(server, client)) for _ in range(7)]
        waiting = asyncio.create_task(exchange(server, client))
        await asyncio.sleep(0.01)
        assert len(client._waiters) == 6
        waiting.cancel()  # a request that gives up while queued does not block the others
        results = await asyncio.gather(*calls)
    assert results == [(200, b"ok")] * 7
    assert most == 2 and server.connections == 2
    assert client._waiters == []


async def test_closing_the_client_releases_queued_requests(client):
    client._max_open = 1

    async def handler(reader, writer):
        await server.read_request(reader)
        await asyncio.sleep(5)

    async with Server(handler) as server:
        first = asyncio.create_task(exchange(server, client))
        queued = asyncio.create_task(exchange(server, client))
        await asyncio.sleep(0.1)
        await client.aclose()
        with pytest.raises(h1.ConnectError, match="closed"):
            await queued
        with pytest.raises(h1.HTTPError):
            await first


async def test_an_answer_left_midway_leaves_a_spare_connection(client):
    async def handler(reader, writer):
        while True:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            await writer.drain()

    async with Server(handler) as server:
        for round in range(1, 4):
            answer = await client.request("POST", server.url, b"{}", {})
            assert [piece async for piece in _first(answer)] == [b"first"]
            answer.close()  # the rest is not needed: the connection cannot be reused
            await asyncio.sleep(0.05)
            assert client.open_connections() == 1  # a fresh one, ready for the next request
            assert server.connections == round + 1
        assert len(client._idle) == 1


async def _first(answer: h1.Response):
    async for piece in answer.aiter_bytes():
        yield piece
        return


async def test_no_spare_connection_after_a_complete_answer_or_a_closed_client(client):
    async def handler(reader, writer):
        await server.read_request(reader)
        writer.write(ok(b"done", b"Connection: close"))
        await writer.drain()

    async with Server(handler) as server:
        await exchange(server, client)
        await asyncio.sleep(0.05)
        assert server.connections == 1 and client.open_connections() == 0
        client._prepare(h1.split_url(server.url)[0])
        await client.aclose()
        await asyncio.sleep(0.05)
        assert client.open_connections() == 0


def test_httpx_is_loaded_only_when_a_proxy_needs_it():
    import subprocess
    import sys

    script = (
        "import sys\n"
        "import fimls.server\n"
        "from fimls.backend import DeepSeekClient\n"
        "client = DeepSeekClient('https://api.deepseek.com', 'sk-x')\n"
        "before = 'httpx' in sys.modules\n"
        "if client._h1 is None:\n"
        "    client._http\n"
        "print(before, 'httpx' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    plain = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    proxied = subprocess.run(
        [sys.executable, "-c", script],
        env={**env, "HTTPS_PROXY": "http://127.0.0.1:9"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert plain.stdout.split() == ["False", "False"]
    assert proxied.stdout.split() == ["False", "True"]


def test_tls_context_follows_ssl_cert_file(monkeypatch, tmp_path):
    import ssl

    import trustme

    bundle = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    context = h1.tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert len(context.get_ca_certs()) == 1
    monkeypatch.delenv("SSL_CERT_FILE")
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    assert len(h1.tls_context().get_ca_certs()) > 50  # certifi's bundle


def test_headers_match_names_in_any_case():
    headers = h1.Headers([("Retry-After", "3"), ("X-A", "1"), ("x-a", "2")])
    assert headers.get("retry-after") == "3" and headers["RETRY-AFTER"] == "3"
    assert headers["X-a"] == "1, 2" and len(headers) == 2 and headers.get("missing") is None
