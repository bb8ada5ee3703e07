"""A loopback HTTP forward proxy (stdlib only) for fimls tests.

It forwards absolute-form requests (``POST http://127.0.0.1:8765/beta/completions HTTP/1.1``)
one per connection (``Connection: close`` both ways) and tunnels ``CONNECT host:port``,
byte for byte, so TLS and streams pass through untouched and a client's hang-up reaches
the server.  Every request is logged (method, target, authority, whether the proxy
credentials were right, the status the proxy answered), never the credentials
themselves.  ``auth=(user, password)`` demands ``Proxy-Authorization: Basic`` (407
otherwise); ``failure="refuse"`` answers 502 to everything, ``failure="close"`` hangs
up without a word, so "the proxy failed" can be tested.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import secrets
import select
import socket
import socketserver
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

__all__ = ["FakeProxy", "ProxyLog"]

HEAD_LIMIT = 65536
CONNECT_TIMEOUT = 5.0
_HOP_BY_HOP = {"proxy-authorization", "proxy-connection", "connection", "keep-alive"}


@dataclass
class ProxyLog:
    """One request the proxy received."""

    method: str
    target: str  # the request-target as sent (absolute URL, or host:port for CONNECT)
    authority: str  # host:port the client wanted
    authorized: bool | None = None  # None when the proxy needs no credentials
    status: int = 0  # what the proxy answered (200 for an established tunnel); 0 if it hung up
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None


class FakeProxy:
    """A forward proxy on loopback, served from daemon threads."""

    def __init__(
        self,
        *,
        auth: tuple[str, str] | None = None,
        failure: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """Configure; start() (or ``with``) serves. failure: None, "refuse" or "close"."""
        if failure not in (None, "refuse", "close"):
            raise ValueError(f"unknown failure mode {failure!r}")
        self.auth = auth
        self.failure = failure
        self.host = host
        self.port = port
        self.requests: list[ProxyLog] = []
        self._lock = threading.Lock()
        self._server: _ProxyServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FakeProxy:
        """Bind and serve in a daemon thread."""
        if self._server is None:
            server = _ProxyServer((self.host, self.port), self)
            self.port = int(server.server_address[1])
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.01},
                name=f"fake-proxy:{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting and hang up on open tunnels."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.hang_up_all()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def __enter__(self) -> FakeProxy:
        """Start and return self."""
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop."""
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (no credentials in it)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def url_with_credentials(self) -> str:
        """The proxy URL with ``user:password@`` when auth is set."""
        if self.auth is None:
            return self.url
        user, password = self.auth
        return self.url.replace("http://", f"http://{user}:{password}@", 1)

    def _record(self, log: ProxyLog) -> None:
        with self._lock:
            self.requests.append(log)

    def _credentials_ok(self, header: str | None) -> bool:
        if self.auth is None:
            return True
        scheme, _, value = (header or "").strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        expected = f"{self.auth[0]}:{self.auth[1]}".encode()
        return secrets.compare_digest(decoded, expected)


class _ProxyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], proxy: FakeProxy) -> None:
        self.proxy = proxy
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _ProxyHandler)

    def hang_up_all(self) -> None:
        with self.lock:
            socks = list(self.open)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about broken connections."""


class _ProxyHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server = self.server
        assert isinstance(server, _ProxyServer)
        proxy = server.proxy
        client: socket.socket = self.request
        head, rest = _read_head(client)
        if head is None:
            return
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = (lines[0].split(" ", 2) + ["", ""])[:3]
        headers = [line for line in lines[1:] if line]
        log = ProxyLog(method=method, target=target, authority=_authority(method, target))
        proxy._record(log)
        try:
            self._serve(server, proxy, client, log, headers, rest)
        finally:
            log.finished = time.monotonic()

    def _serve(
        self,
        server: _ProxyServer,
        proxy: FakeProxy,
        client: socket.socket,
        log: ProxyLog,
        headers: list[str],
        rest: bytes,
    ) -> None:
        if proxy.failure == "close":
            return
        if proxy.auth is not None:
            log.authorized = proxy._credentials_ok(_header(headers, "proxy-authorization"))
            if not log.authorized:
                _answer(client, log, 407, [("Proxy-Authenticate", 'Basic realm="fake-proxy"')])
                return
        if proxy.failure == "refuse" or not log.authority:
            _answer(client, log, 502 if proxy.failure == "refuse" else 400, [])
            return
        try:
            address = _host_port(log.authority)
        except ValueError:
            _answer(client, log, 400, [])
            return
        try:
            upstream = socket.create_connection(address, timeout=CONNECT_TIMEOUT)
        except OSError:
            _answer(client, log, 502, [])
            return
        upstream.settimeout(None)
        with server.lock:
            server.open.update((client, upstream))
        try:
            if log.method == "CONNECT":
                log.status = 200
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                _pump(client, upstream, rest)
            else:
                self._forward(client, upstream, log, headers, rest)
        except OSError:
            pass
        finally:
            with server.lock:
                server.open.difference_update((client, upstream))
            upstream.close()

    def _forward(
        self, client: socket.socket, upstream: socket.socket, log: ProxyLog, headers: list[str], rest: bytes
    ) -> None:
        """One absolute-form request: origin-form upstream, Connection: close both ways."""
        parts = urlsplit(log.target)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        kept = [h for h in headers if h.split(":", 1)[0].strip().lower() not in _HOP_BY_HOP]
        request = "\r\n".join([f"{log.method} {path} HTTP/1.1", *kept, "Connection: close", "", ""])
        _pump(client, upstream, request.encode("latin-1") + rest, log)


def _read_head(sock: socket.socket) -> tuple[bytes | None, bytes]:
    """(the head up to the blank line, the bytes read after it); (None, b"") if it never came."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > HEAD_LIMIT:
            return None, b""
        try:
            chunk = sock.recv(65536)
        except OSError:
            return None, b""
        if not chunk:
            return None, b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _pump(client: socket.socket, upstream: socket.socket, first: bytes, log: ProxyLog | None = None) -> None:
    """Copy bytes both ways until either side closes, then close both.

    With a log (a forwarded request), the answer's head gets ``Connection: close`` and its
    status is logged; the request body flows on while the answer is awaited.
    """
    if first:
        upstream.sendall(first)
    head: bytearray | None = bytearray() if log is not None else None
    socks = [client, upstream]
    while True:
        readable, _, broken = select.select(socks, [], socks, 1.0)
        if broken:
            return
        for sock in readable:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                with contextlib.suppress(OSError):
                    (upstream if sock is client else client).shutdown(socket.SHUT_RDWR)
                return
            if sock is upstream and head is not None and log is not None:
                head += data
                if b"\r\n\r\n" not in head:
                    continue
                data, head = _close_after(bytes(head), log), None
            (upstream if sock is client else client).sendall(data)


def _close_after(data: bytes, log: ProxyLog) -> bytes:
    """The answer with ``Connection: close`` in its head; its status goes to the log."""
    raw_head, _, body = data.partition(b"\r\n\r\n")
    lines = raw_head.decode("latin-1").split("\r\n")
    with contextlib.suppress(ValueError, IndexError):
        log.status = int(lines[0].split(" ", 2)[1])
    kept = [h for h in lines[1:] if h and h.split(":", 1)[0].strip().lower() not in _HOP_BY_HOP]
    return "\r\n".join([lines[0], *kept, "Connection: close", "", ""]).encode("latin-1") + body


def _answer(client: socket.socket, log: ProxyLog, status: int, headers: list[tuple[str, str]]) -> None:
    reason = {400: "Bad Request", 407: "Proxy Authentication Required", 502: "Bad Gateway"}[status]
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers)]
    lines += ["Content-Length: 0", "Connection: close", "", ""]
    log.status = status
    with contextlib.suppress(OSError):
        client.sendall("\r\n".join(lines).encode("latin-1"))


def _header(headers: list[str], name: str) -> str | None:
    for line in headers:
        key, _, value = line.partition(":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def _authority(method: str, target: str) -> str:
    """host:port the client asked for (port 80 when an http URL names none)."""
    if method == "CONNECT":
        return target
    parts = urlsplit(target)
    if parts.scheme != "http" or not parts.hostname:
        return ""
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{parts.port or 80}"


def _host_port(authority: str) -> tuple[str, int]:
    host, _, port = authority.rpartition(":")
    return host.strip("[]"), int(port)
