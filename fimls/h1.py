"""A small HTTP/1.1 client for the calls to DeepSeek, above all the FIM ``POST``.

httpx, httpcore and h11 together spend about a millisecond of CPU on each request and tens
of microseconds on each streamed chunk, which is most of fimls's own latency.  This client
does only what DeepSeek's API needs: a request over a kept-alive TCP or TLS connection, and
an answer whose body is framed by ``Content-Length``, chunked, or read to the close, handed
over in batches of whatever has arrived.  Proxies and injected transports stay on httpx.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import ssl
import zlib
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, cast
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

HIGH_WATER = 1 << 20
"""Stop reading from the socket while this many received bytes wait to be consumed."""


class _Pipe(asyncio.Protocol):
    """Collects what the peer sends and wakes the reader or writer waiting on it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.reading_paused = False
        self._read_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._writing_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
            self.reading_paused = True
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake_reader()
        self._wake_writer()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake_writer()

    def discard(self, count: int) -> None:
        """Drop the first ``count`` buffered bytes, resuming reads once the buffer drains."""
        del self.buffer[:count]
        if self.reading_paused and len(self.buffer) <= HIGH_WATER // 4 and self.transport is not None:
            self.transport.resume_reading()
            self.reading_paused = False

    async def wait_readable(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._read_waiter = waiter
        try:
            await waiter
        finally:
            self._read_waiter = None

    async def wait_drained(self) -> None:
        while self._writing_paused and self.error is None and not self.eof:
            waiter = asyncio.get_running_loop().create_future()
            self._drain_waiter = waiter
            try:
                await waiter
            finally:
                self._drain_waiter = None

    def _wake_reader(self) -> None:
        if self._read_waiter is not None and not self._read_waiter.done():
            self._read_waiter.set_result(None)

    def _wake_writer(self) -> None:
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)


MAX_HEAD = 64 * 1024
"""Largest status line plus headers accepted."""

MAX_LINE = 4 * 1024
"""Largest chunk-size or trailer line accepted."""


class HTTPError(Exception):
    """The exchange failed; the class name says how, the message says where."""


class ConnectError(HTTPError):
    """No connection (refused, DNS, TLS handshake)."""


class ConnectTimeout(HTTPError):
    """The connection or TLS handshake took longer than the connect timeout."""


class ReadTimeout(HTTPError):
    """The peer sent nothing for longer than the read timeout."""


class WriteTimeout(HTTPError):
    """The peer did not take the request for longer than the read timeout."""


class RemoteProtocolError(HTTPError):
    """The connection closed mid-answer, or the answer was not HTTP/1.1."""


class InvalidHeader(HTTPError):
    """A request header value HTTP cannot carry (e.g. a line break)."""


class _Stale(Exception):
    """A kept-alive connection closed before answering: try a new one."""


Origin = tuple[str, str, int]


def tls_context() -> ssl.SSLContext:
    """A verifying TLS context: ``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` when set, else certifi's
    bundle (what httpx uses, so both clients trust the same certificates)."""
    if cafile := os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=cafile)
    if capath := os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=capath)
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


class Headers(Mapping[str, str]):
    """An answer's headers: names match in any case, repeated ones are joined with ", "."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._values: dict[str, str] = {}
        for name, value in pairs:
            key = name.lower()
            self._values[key] = f"{self._values[key]}, {value}" if key in self._values else value

    def __getitem__(self, name: str) -> str:
        return self._values[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def split_url(url: str) -> tuple[Origin, str]:
    """``(scheme, host, port)`` and the request target of an ``http``/``https`` URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ConnectError(f"unsupported URL for HTTP/1.1: {scheme}://")
    port = parts.port or (443 if scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return (scheme, parts.hostname, port), target


def _host_header(origin: Origin) -> str:
    scheme, host, port = origin
    name = f"[{host}]" if ":" in host else host
    default = 443 if scheme == "https" else 80
    return name if port == default else f"{name}:{port}"


class Connection:
    """One socket and what it has received."""

    __slots__ = ("idle_since", "origin", "pipe", "transport")

    def __init__(self, origin: Origin, transport: asyncio.Transport, pipe: _Pipe) -> None:
        self.origin = origin
        self.transport = transport
        self.pipe = pipe
        self.idle_since = 0.0

    def reusable(self) -> bool:
        """Still open, and the peer has neither sent anything nor hung up while idle."""
        pipe = self.pipe
        return not (pipe.buffer or pipe.eof or pipe.error or self.transport.is_closing())

    def close(self) -> None:
        """Drop the connection at once."""
        self.transport.abort()

    async def wait(self, timeout: float) -> None:
        """Wait for more bytes or the end of the connection."""
        pipe = self.pipe
        if pipe.eof:
            return
        try:
            async with asyncio.timeout(timeout):
                await pipe.wait_readable()
        except TimeoutError:
            raise ReadTimeout("timed out waiting for DeepSeek's answer") from None


_CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _DONE = range(5)
_CHUNK_LINE = re.compile(rb"[ \t]*([0-9A-Fa-f]{1,15})[ \t]*(?:;[^\r\n]*)?\r?\n")
"""A chunk-size line: hex digits, optional extensions, then the line end."""


class Response:
    """An answer's status and headers; the body is read on demand."""

    def __init__(
        self,
        client: H1Client,
        connection: Connection,
        status: int,
        headers: Headers,
        keep_alive: bool,
    ) -> None:
        self.status_code = status
        self.headers = headers
        self._client = client
        self._connection: Connection | None = connection
        self._keep_alive = keep_alive
        self._state = _CHUNK_SIZE
        self._left = -1  # bytes of the current chunk, or of a Content-Length body
        self._chunked = False
        self._to_close = False
        if status in (204, 304) or status < 200:
            self._state = _DONE
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._chunked = True
        elif (length := headers.get("content-length")) is not None:
            if not length.strip().isdigit():
                raise RemoteProtocolError("invalid Content-Length in DeepSeek's answer")
            self._left = int(length)
            self._state = _CHUNK_DATA if self._left else _DONE
        else:
            self._to_close = True
            self._keep_alive = False
            self._state = _CHUNK_DATA
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("gzip", "deflate", "x-gzip"):
            self._inflate: zlib._Decompress | None = zlib.decompressobj(wbits=47)
        elif encoding in ("identity", ""):
            self._inflate = None
        else:
            raise RemoteProtocolError(f"DeepSeek answered with unsupported encoding {encoding!r}")

    @property
    def complete(self) -> bool:
        """The whole body has been read."""
        return self._state == _DONE

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body, decoded, in pieces of whatever has arrived."""
        while self._state != _DONE:
            connection = self._connection
            if connection is None:
                raise RemoteProtocolError("the answer was already closed")
            data = self._take(connection.pipe)
            if self._inflate is not None:
                data = self._inflate.decompress(data)
                if self._state == _DONE:
                    data += self._inflate.flush()
            if data:
                yield data
            elif self._state != _DONE:
                if connection.pipe.eof and not connection.pipe.buffer:
                    if not self._to_close:
                        raise RemoteProtocolError("the connection closed in the middle of an answer")
                    self._state = _DONE
                else:
                    await connection.wait(self._client.read_timeout)

    async def aread(self) -> bytes:
        """The whole body."""
        return b"".join([piece async for piece in self.aiter_bytes()])

    async def aclose(self) -> None:
        """Give the connection back if the answer was read to its end, else close it."""
        self.close()

    def close(self) -> None:
        """Synchronous :meth:`aclose`."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._state == _DONE and self._keep_alive:
            self._client._release(connection)
        else:
            self._client._discard(connection)
            if self._state != _DONE:  # left mid-answer (complete enough, or cancelled)
                self._client._prepare(connection.origin)

    def _take(self, pipe: _Pipe) -> bytes:
        """Consume what the buffer holds of the body; advance the framing state."""
        buffer = pipe.buffer
        if not self._chunked:
            if self._to_close:
                data = bytes(buffer)
                pipe.discard(len(data))
                return data
            data = bytes(buffer[: self._left])
            pipe.discard(len(data))
            self._left -= len(data)
            if not self._left:
                self._state = _DONE
            return data
        pieces: list[bytes | bytearray] = []
        at = 0
        size = len(buffer)
        while self._state != _DONE and at < size:
            if self._state == _CHUNK_SIZE:
                match = _CHUNK_LINE.match(buffer, at)
                if match is None:
                    if buffer.find(b"\n", at) >= 0 or size - at > MAX_LINE:
                        raise RemoteProtocolError("malformed chunk size in DeepSeek's answer")
                    break
                left = int(match.group(1), 16)
                at = match.end()
                if not left:
                    self._state = _TRAILER
                    continue
                end = at + left
                if buffer[end : end + 2] == b"\r\n":  # the whole chunk is here
                    pieces.append(buffer[at:end])
                    at = end + 2
                    continue
                self._left = left
                self._state = _CHUNK_DATA
            elif self._state == _CHUNK_DATA:
                end = min(at + self._left, size)
                pieces.append(buffer[at:end])
                self._left -= end - at
                at = end
                if not self._left:
                    self._state = _CHUNK_END
            else:
                newline = buffer.find(b"\n", at)
                if newline < 0:
                    if size - at > MAX_LINE:
                        raise RemoteProtocolError("malformed chunked answer from DeepSeek")
                    break
                line = buffer[at:newline].rstrip(b"\r")
                at = newline + 1
                if self._state == _CHUNK_END:
                    if line:
                        raise RemoteProtocolError("malformed chunked answer from DeepSeek")
                    self._state = _CHUNK_SIZE
                elif not line:  # _TRAILER: an empty line ends the body
                    self._state = _DONE
        pipe.discard(at)
        return b"".join(pieces)


class H1Client:
    """Kept-alive HTTP/1.1 connections to a few origins."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_connections: int = 16,
        max_idle: int = 8,
        keepalive_expiry: float = 60.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.read_timeout = read_timeout
        self._ssl = ssl_context
        self._connect_timeout = connect_timeout
        self._max_open = max(1, max_connections)
        self._max_idle = max_idle
        self._expiry = keepalive_expiry
        try:
            self._headers: str | None = "".join(_header_lines(headers or {}))
        except InvalidHeader:
            self._headers = None  # reported by each request
        self._idle: list[Connection] = []
        self._open: set[Connection] = set()
        self._connecting = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._spares: set[asyncio.Task[None]] = set()
        self._closed = False

    def open_connections(self) -> int:
        """Connections open now, idle or in use."""
        return len(self._open)

    async def aclose(self) -> None:
        """Close every connection; later requests fail."""
        self._closed = True
        for task in list(self._spares):
            task.cancel()
        for connection in list(self._open):
            self._discard(connection)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def request(self, method: str, url: str, body: bytes, headers: Mapping[str, str]) -> Response:
        """Send a request and return once the answer's status and headers are in."""
        if self._closed:
            raise ConnectError("the client is closed")
        if self._headers is None:
            raise InvalidHeader("a configured header holds characters HTTP does not allow")
        origin, target = split_url(url)
        length = f"Content-Length: {len(body)}\r\n" if body or method == "POST" else ""
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: {_host_header(origin)}\r\n{self._headers}"
            f"{''.join(_header_lines(headers))}{length}\r\n"
        )
        message = head.encode("latin-1") + body
        while True:
            connection, reused = await self._connection(origin)
            try:
                await self._send(connection, message)
                status, response_headers, keep_alive = await self._read_head(connection, reused)
                return Response(self, connection, status, response_headers, keep_alive)
            except _Stale:
                self._discard(connection)
            except BaseException:
                self._discard(connection)
                raise

    async def _connection(self, origin: Origin) -> tuple[Connection, bool]:
        """An idle connection to ``origin``, else a new one once the limit allows."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            for connection in [c for c in self._idle if not _alive(c, now, self._expiry)]:
                self._discard(connection)
            for connection in reversed(self._idle):  # the most recently used first
                if connection.origin == origin:
                    self._idle.remove(connection)
                    return connection, True
            if len(self._open) + self._connecting < self._max_open:
                break
            if self._idle:  # idle, but to another origin
                self._discard(self._idle[0])
                continue
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                elif waiter.done() and not waiter.cancelled():
                    self._wake()  # woken, then cancelled: pass the turn on
                raise
            if self._closed:
                raise ConnectError("the client is closed")
        self._connecting += 1
        try:
            return await self._connect(origin), False
        finally:
            self._connecting -= 1
            self._wake()

    async def _connect(self, origin: Origin) -> Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        pipe = _Pipe()
        tls = scheme == "https"
        # Happy eyeballs (IPv6 and IPv4 raced) where the event loop offers it; uvloop does not.
        racing: dict[str, Any] = (
            {"happy_eyeballs_delay": 0.25} if isinstance(loop, asyncio.BaseEventLoop) else {}
        )
        try:
            async with asyncio.timeout(self._connect_timeout):
                transport, _ = await loop.create_connection(
                    lambda: pipe,
                    host,
                    port,
                    ssl=self._ssl if tls else None,
                    server_hostname=host if tls else None,
                    ssl_handshake_timeout=self._connect_timeout if tls else None,
                    **racing,
                )
        except TimeoutError:
            raise ConnectTimeout(f"timed out connecting to {host}:{port}") from None
        except OSError as exc:  # ssl.SSLError included
            raise ConnectError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = Connection(origin, transport, pipe)
        self._open.add(connection)
        return connection

    async def _send(self, connection: Connection, message: bytes) -> None:
        pipe = connection.pipe
        connection.transport.write(message)
        if pipe._writing_paused:
            try:
                async with asyncio.timeout(self.read_timeout):
                    await pipe.wait_drained()
            except TimeoutError:
                raise WriteTimeout("timed out sending the request to DeepSeek") from None

    async def _read_head(self, connection: Connection, reused: bool) -> tuple[int, Headers, bool]:
        pipe = connection.pipe
        while True:
            end = pipe.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(pipe.buffer) > MAX_HEAD:
                    raise RemoteProtocolError("DeepSeek's answer headers are too large")
                if pipe.eof:
                    if reused and not pipe.buffer:
                        raise _Stale
                    raise RemoteProtocolError("the connection closed before DeepSeek answered")
                await connection.wait(self.read_timeout)
                continue
            head = bytes(pipe.buffer[:end]).decode("latin-1")
            pipe.discard(end + 4)
            status_line, *lines = head.split("\r\n")
            version, _, rest = status_line.partition(" ")
            code = rest[:3]
            if not version.startswith("HTTP/1.") or not code.isdigit():
                raise RemoteProtocolError("DeepSeek's answer is not HTTP/1.1")
            pairs = []
            for line in lines:
                name, colon, value = line.partition(":")
                if not colon or not name or name != name.strip():
                    raise RemoteProtocolError("malformed header in DeepSeek's answer")
                pairs.append((name, value.strip()))
            status = int(code)
            if 100 <= status < 200:
                continue  # an interim answer; the real one follows
            headers = Headers(pairs)
            tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
            keep_alive = "keep-alive" in tokens if version == "HTTP/1.0" else "close" not in tokens
            return status, headers, keep_alive

    def _prepare(self, origin: Origin) -> None:
        """Open a spare connection to ``origin`` in the background, so the request after an
        abandoned answer does not wait for a TCP and TLS handshake."""
        if self._closed or self._spares or any(c.origin == origin for c in self._idle):
            return
        if len(self._open) + self._connecting >= self._max_open:
            return

        async def connect() -> None:
            self._connecting += 1
            try:
                connection = await self._connect(origin)
            except HTTPError as error:
                logger.debug("no spare connection: %s", error)
                return
            finally:
                self._connecting -= 1
            self._release(connection)

        task = asyncio.get_running_loop().create_task(connect())
        self._spares.add(task)
        task.add_done_callback(self._spares.discard)

    def _release(self, connection: Connection) -> None:
        if self._closed or not connection.reusable():
            self._discard(connection)
            return
        connection.idle_since = asyncio.get_running_loop().time()
        self._idle.append(connection)
        while len(self._idle) > self._max_idle:
            self._discard(self._idle[0])
        self._wake()

    def _discard(self, connection: Connection) -> None:
        if connection in self._idle:
            self._idle.remove(connection)
        self._open.discard(connection)
        connection.close()
        self._wake()

    def _wake(self) -> None:
        """Let the longest-waiting request look for a connection again."""
        while self._waiters:
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return


def _alive(connection: Connection, now: float, expiry: float) -> bool:
    return connection.reusable() and now - connection.idle_since < expiry


def _header_lines(headers: Mapping[str, str]) -> list[str]:
    lines = []
    for name, value in headers.items():
        if any(c in name + value for c in "\r\n\0") or not name.isascii() or not value.isascii():
            raise InvalidHeader(f"header {name!r} holds characters HTTP does not allow")
        lines.append(f"{name}: {value}\r\n")
    return lines
