"""DeepSeekClient over plain TCP and TLS: keep-alive, certificates, streamed and large answers."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trustme

from fimls.backend import DeepSeekClient, FimRequest, NetworkError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def fim_request(stream: bool) -> FimRequest:
    return FimRequest(
        model="deepseek-chat",
        prompt="def f():\n    return ",
        suffix="\n",
        max_tokens=16,
        stop=(),
        temperature=0.0,
        top_p=1.0,
        stream=stream,
    )


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    return await reader.readexactly(length)


def answer(text: str, *, close: bool = False) -> bytes:
    body = json.dumps(
        {"choices": [{"text": text, "index": 0, "finish_reason": "stop"}], "usage": None}
    ).encode()
    connection = b"close" if close else b"keep-alive"
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: %s\r\n"
        b"Content-Length: %d\r\n\r\n" % (connection, len(body)) + body
    )


class Server:
    """A bare HTTP/1.1 server on 127.0.0.1 (optionally TLS) that counts connections."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.connections = 0
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

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=self.tls)
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


@pytest.fixture
def tls_server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    return context


@pytest.fixture
async def trusting(ca: trustme.CA, monkeypatch, tmp_path) -> AsyncIterator[None]:
    """Make fimls trust ``ca`` the way a user would: SSL_CERT_FILE."""
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    yield


async def keep_alive_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        await read_request(reader)
        writer.write(answer("ok"))
        await writer.drain()


async def test_plain_http_requests_reuse_one_connection():
    async with Server(keep_alive_answers) as server:
        client = DeepSeekClient(f"http://127.0.0.1:{server.port}/beta", "sk-x")
        try:
            texts = [(await client.fim(fim_request(stream=False))).text for _ in range(5)]
        finally:
            await client.aclose()
    assert texts == ["ok"] * 5
    assert server.connections == 1


async def test_tls_with_a_trusted_certificate(tls_server_context, trusting):
    async with Server(keep_alive_answers, tls_server_context) as server:
        client = DeepSeekClient(f"https://localhost:{server.port}/beta", "sk-x")
        try:
            first = await client.fim(fim_request(stream=False))
            second = await client.fim(fim_request(stream=False))
        finally:
            await client.aclose()
    assert (first.text, second.text) == ("ok", "ok")
    assert server.connections == 1


async def test_tls_with_an_untrusted_certificate_is_refused(tls_server_context):
    async with Server(keep_alive_answers, tls_server_context) as server:
        client = DeepSeekClient(f"https://localhost:{server.port}/beta", "sk-x", max_retries=0)
        try:
            with pytest.raises(NetworkError, match="cannot reach DeepSeek"):
                await client.fim(fim_request(stream=False))
        finally:
            await client.aclose()


async def test_streamed_answer_over_tls_in_tiny_pieces(tls_server_context, trusting):
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

    async with Server(stream, tls_server_context) as server:
        client = DeepSeekClient(f"https://localhost:{server.port}/beta", "sk-x")
        try:
            result = await client.fim(fim_request(stream=True))
        finally:
            await client.aclose()
    assert (result.text, result.finish_reason) == ("résumé 😀", "stop")


async def test_large_answer_is_read_whole():
    text = "x" * (3 << 20)  # above the backend's read-pause threshold

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(text))
        await writer.drain()

    async with Server(big) as server:
        client = DeepSeekClient(f"http://127.0.0.1:{server.port}/beta", "sk-x")
        try:
            result = await client.fim(fim_request(stream=False))
        finally:
            await client.aclose()
    assert result.text == text


async def test_connection_closed_by_the_server_while_idle_is_replaced():
    async def one_per_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer("ok"))  # says keep-alive, then hangs up anyway
        await writer.drain()

    async with Server(one_per_connection) as server:
        client = DeepSeekClient(f"http://127.0.0.1:{server.port}/beta", "sk-x", max_retries=0)
        try:
            first = await client.fim(fim_request(stream=False))
            await asyncio.sleep(0.1)  # the close reaches the idle pooled connection
            second = await client.fim(fim_request(stream=False))
        finally:
            await client.aclose()
    assert (first.text, second.text) == ("ok", "ok")
    assert server.connections == 2


async def test_refused_connection_and_read_timeout():
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(10)

    async with Server(silent) as server:
        port = server.port
        client = DeepSeekClient(f"http://127.0.0.1:{port}/beta", "sk-x", max_retries=0, read_timeout=0.2)
        try:
            with pytest.raises(NetworkError, match="timed out"):
                await client.fim(fim_request(stream=False), timeout=3)
        finally:
            await client.aclose()
    client = DeepSeekClient(f"http://127.0.0.1:{port}/beta", "sk-x", max_retries=0)
    try:
        with pytest.raises(NetworkError, match="cannot reach DeepSeek: ConnectError"):
            await client.fim(fim_request(stream=False))
    finally:
        await client.aclose()
