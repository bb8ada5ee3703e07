"""An asyncio-native network layer for httpcore, and the httpx transport that uses it.

httpx reaches sockets through httpcore's anyio backend, which adds a cancel scope and an
extra event-loop turn to every read and write.  A completion request does a dozen of those
and a streamed answer one per chunk, so on a loaded laptop they add up to milliseconds.
This backend keeps httpx and httpcore (HTTP parsing, pooling, TLS setup, errors) and only
swaps the byte pipe underneath for an :class:`asyncio.Protocol`: data the event loop has
already received is handed over without yielding to the loop again.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, cast

import httpcore
import httpx

from fimls.h1 import _Pipe

logger = logging.getLogger(__name__)

SocketOption = tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection: reads return buffered bytes at once and only wait when there are none."""

    def __init__(self, transport: asyncio.Transport, pipe: _Pipe) -> None:
        self._transport = transport
        self._pipe = pipe

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        pipe = self._pipe
        if not pipe.buffer and not pipe.eof:
            try:
                async with asyncio.timeout(timeout):
                    while not pipe.buffer and not pipe.eof:
                        await pipe.wait_readable()
            except TimeoutError:
                raise httpcore.ReadTimeout("timed out waiting for data") from None
        if pipe.buffer:
            return pipe.take(max_bytes)
        if pipe.error is not None:
            raise httpcore.ReadError(f"connection lost: {type(pipe.error).__name__}")
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        pipe = self._pipe
        if pipe.error is not None or self._transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        self._transport.write(buffer)
        if pipe._writing_paused:
            try:
                async with asyncio.timeout(timeout):
                    await pipe.wait_drained()
            except TimeoutError:
                raise httpcore.WriteTimeout("timed out sending data") from None
            if pipe.error is not None:
                raise httpcore.WriteError(f"connection lost: {type(pipe.error).__name__}")

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                tls = await loop.start_tls(
                    self._transport, self._pipe, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError:
            self._transport.abort()
            raise httpcore.ConnectTimeout("timed out during the TLS handshake") from None
        except (OSError, ssl.SSLError) as exc:
            self._transport.abort()
            raise httpcore.ConnectError(f"TLS handshake failed: {exc}") from None
        if tls is None:  # pragma: no cover - only when the loop lost the transport
            raise httpcore.ConnectError("TLS handshake failed")
        self._pipe.transport = tls
        return AsyncioStream(tls, self._pipe)

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        if info == "is_readable":
            # An idle pooled connection with bytes or EOF pending was closed by the server.
            return bool(self._pipe.buffer) or self._pipe.eof
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Opens :class:`AsyncioStream` connections (TCP or Unix socket)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        return await self._connect(
            lambda pipe: loop.create_connection(
                lambda: pipe,
                host,
                port,
                local_addr=(local_address, 0) if local_address else None,
                happy_eyeballs_delay=0.25,
            ),
            f"{host}:{port}",
            timeout,
            socket_options,
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        return await self._connect(
            lambda pipe: loop.create_unix_connection(lambda: pipe, path), path, timeout, socket_options
        )

    async def _connect(
        self,
        open_connection: Callable[[_Pipe], Awaitable[tuple[asyncio.BaseTransport, Any]]],
        where: str,
        timeout: float | None,
        socket_options: Iterable[SocketOption] | None,
    ) -> AsyncioStream:
        pipe = _Pipe()
        try:
            async with asyncio.timeout(timeout):
                transport, _ = await open_connection(pipe)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"timed out connecting to {where}") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot connect to {where}: {exc.strerror or exc}") from None
        return self._finish(transport, pipe, socket_options)

    @staticmethod
    def _finish(
        transport: asyncio.BaseTransport, pipe: _Pipe, socket_options: Iterable[SocketOption] | None
    ) -> AsyncioStream:
        transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        for option in socket_options or ():
            if sock is not None:
                sock.setsockopt(*option)
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return AsyncioStream(transport, pipe)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def fast_transport(limits: httpx.Limits, context: ssl.SSLContext | None = None) -> httpx.AsyncHTTPTransport:
    """httpx's own transport (TLS settings, error mapping), running on :class:`AsyncioBackend`.

    Falls back to the stock network layer if this httpx keeps its pool elsewhere.
    """
    context = context or httpx.create_ssl_context()
    transport = httpx.AsyncHTTPTransport(verify=context, limits=limits)
    if isinstance(getattr(transport, "_pool", None), httpcore.AsyncConnectionPool):
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=AsyncioBackend(),
        )
    else:  # pragma: no cover - depends on the installed httpx
        logger.debug("httpx keeps no httpcore pool; using its default network backend")
    return transport
