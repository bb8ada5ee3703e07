#!/usr/bin/env python3
"""HTTP/1.1 against HTTP/2 for a typing run with cancelled streams, through fimls's own HTTP client.

fimls cancels a backend stream whenever a newer request for the document replaces it, which
while someone types is most of them.  Over HTTP/1.1 a stream cut short cannot be resumed, so
httpx closes the connection and the next request pays a new TCP and TLS handshake.  Over
HTTP/2 the stream could be reset (``RST_STREAM``) and the connection kept.  This script
measures what actually happens, end to end:

- the server is hypercorn over TLS (a ``trustme`` test CA) speaking HTTP/2 and HTTP/1.1 (ALPN),
  serving a small ASGI app with OpenAI-style ``/v1/completions`` that streams SSE at a token
  rate after a first-token delay and stops generating when the client goes away;
- in front of it a TCP forwarder that counts connections and adds a round-trip time (half
  each way) to model a backend that is not on this machine; TLS handshakes are counted by the
  server's SNI callback;
- the client is fimls's :class:`fimls.backends.http.Http` (httpx, ``trust_env``, the test CA
  through ``SSL_CERT_FILE``) with ``http2`` off and on, driving
  :class:`fimls.backends.openai.Completions` the way the engine does: a request at each pause
  of a seeded typist, the previous stream cancelled when the next request starts.

Figures per protocol and round-trip time: requests, streams cancelled, new TCP connections,
TLS handshakes, time to first token (p50/p90, from the call to the first text), streams the
server saw end early, and tokens the server generated (what a provider bills).

    .venv/bin/python scripts/bench_http2.py                       # 0 and 50 ms RTT, 60 requests each
    .venv/bin/python scripts/bench_http2.py --rtt-ms 0 --requests 20   # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOST = "localhost"  # a name, so the client sends SNI and the server can count handshakes
ANSWER_TOKENS = 100  # tokens in every answer by default (a multi-line completion)
MAX_TOKENS = 256
DEBOUNCE = 0.15


# -- the server side (a child process) ------------------------------------------------------------


class Counters:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.connections = 0
        self.handshakes = 0
        self.requests = 0
        self.versions: dict[str, int] = {}
        self.ended_early = 0
        self.completed = 0
        self.tokens_generated = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


COUNTERS = Counters()


def sse(data: Any) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def make_app(first_token: float, token_rate: float, answer_tokens: int) -> Any:
    """An ASGI app: ``GET /v1/models`` and a streamed ``POST /v1/completions`` at a token rate."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        arrived = time.monotonic()
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(b"content-type", b"application/json")]
        if scope["path"] == "/v1/models":
            payload = json.dumps({"object": "list", "data": [{"id": "bench-coder"}]}).encode()
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
            return
        COUNTERS.requests += 1
        version = scope.get("http_version", "?")
        COUNTERS.versions[version] = COUNTERS.versions.get(version, 0) + 1
        request = json.loads(body or b"{}")
        count = min(answer_tokens, int(request.get("max_tokens") or answer_tokens))
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.ensure_future(watch())
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        base = {"id": "cmpl-bench", "object": "text_completion", "model": "bench-coder"}
        try:
            for k in range(count):
                due = arrived + first_token + k / token_rate
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(gone.wait(), max(due - time.monotonic(), 0))
                if gone.is_set():
                    COUNTERS.ended_early += 1
                    COUNTERS.tokens_generated += k
                    return
                choice = {"text": "ab " if k % 10 else "\n  ", "index": 0, "finish_reason": None}
                await send(
                    {
                        "type": "http.response.body",
                        "body": sse({**base, "choices": [choice]}),
                        "more_body": True,
                    }
                )
            COUNTERS.tokens_generated += count
            COUNTERS.completed += 1
            end = {"text": "", "index": 0, "finish_reason": "length" if count == MAX_TOKENS else "stop"}
            tail = sse({**base, "choices": [end]}) + b"data: [DONE]\n\n"
            await send({"type": "http.response.body", "body": tail, "more_body": False})
        finally:
            watcher.cancel()

    return app


async def forward(listen: socket.socket, upstream_port: int, one_way: float) -> None:
    """Accept on ``listen``; pipe each connection to the server, ``one_way`` seconds late each way."""
    loop = asyncio.get_running_loop()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                if not data:
                    writer.close()
                    return
                writer.write(data)
                await writer.drain()

        task = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await reader.read(65536)
                queue.put_nowait((loop.time() + one_way, data))
                if not data:
                    break
            await task
        except (ConnectionError, OSError):
            writer.close()
        finally:
            task.cancel()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        COUNTERS.connections += 1
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", upstream_port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w), return_exceptions=True)

    server = await asyncio.start_server(handle, sock=listen)
    async with server:
        await server.serve_forever()


def server_child() -> int:
    """``--server-child``: hypercorn behind the forwarder; commands on stdin, JSON on stdout."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    options = json.loads(sys.stdin.readline())

    class Counted(Config):  # type: ignore[misc]
        def create_ssl_context(self) -> ssl.SSLContext | None:
            context = super().create_ssl_context()
            if context is not None:
                context.sni_callback = lambda _sock, name, _ctx: self._count(name)
            return context

        @staticmethod
        def _count(name: str | None) -> None:
            if name == HOST:
                COUNTERS.handshakes += 1

    config = Counted()
    inner = socket.socket()
    inner.bind(("127.0.0.1", 0))
    port = inner.getsockname()[1]
    inner.close()
    config.bind = [f"127.0.0.1:{port}"]
    config.certfile, config.keyfile = options["cert"], options["key"]
    config.accesslog = config.errorlog = None
    config.keep_alive_timeout = 120
    listen = socket.socket()
    listen.bind(("127.0.0.1", 0))
    listen.listen(64)

    async def main() -> None:
        stop = asyncio.Event()
        app = make_app(options["first_token"], options["token_rate"], options["answer_tokens"])
        tasks = [
            asyncio.ensure_future(serve(app, config, shutdown_trigger=stop.wait)),
            asyncio.ensure_future(forward(listen, port, options["rtt"] / 2)),
        ]
        await asyncio.sleep(0.3)
        print(json.dumps({"port": listen.getsockname()[1]}), flush=True)
        while True:
            command = (await asyncio.to_thread(sys.stdin.readline)).strip()
            if command == "stats":
                print(json.dumps(COUNTERS.as_dict()), flush=True)
            elif command == "reset":
                COUNTERS.reset()
                print("{}", flush=True)
            else:
                break
        stop.set()
        await asyncio.sleep(0.2)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    return 0


class ServerProcess:
    def __init__(self, options: dict[str, Any]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--server-child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self.port = self._ask(json.dumps(options))["port"]

    def _ask(self, line: str) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise RuntimeError("the HTTP/2 server's process died")
        return json.loads(answer)

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._ask("stats")
        return result

    def reset(self) -> None:
        self._ask("reset")

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- the client side ------------------------------------------------------------------------------


def schedule(seed: str, requests: int) -> list[float]:
    """Seconds from the start at which fimls asks: at each typing pause longer than the
    debounce, the debounce after its last keystroke (the typist of bench_typing.py)."""
    rng = random.Random(seed)
    t, out, lines, think = 0.0, [], 0, rng.randint(3, 5)
    while len(out) < requests:
        for _word in range(rng.randint(3, 7)):
            t += sum(rng.uniform(0.08, 0.12) for _ in range(rng.randint(2, 8)))
            if rng.random() < 0.125:
                gap = rng.uniform(0.2, 0.6)
                out.append(t + DEBOUNCE)
                t += gap
            else:
                t += rng.uniform(0.08, 0.12)
        lines += 1
        out.append(t + DEBOUNCE)
        if lines >= think:
            think = lines + rng.randint(3, 5)
            t += rng.uniform(2.0, 4.0)
        else:
            t += rng.uniform(0.4, 1.2)
    return out[:requests]


async def typing_run(url: str, http2: bool, times: list[float]) -> dict[str, Any]:
    """Requests at ``times``; each one cancels the stream before it if still running."""
    from fimls.backends.base import FimRequest
    from fimls.backends.http import Http
    from fimls.backends.openai import Completions

    http = Http(url, label="bench server", headers={"Authorization": "Bearer sk-bench"}, http2=http2)
    backend = Completions(http, has_key=True, refusal=None)
    ttft: list[float] = []
    errors: list[str] = []
    cancelled = 0
    versions: dict[str, int] = {}

    async def one(i: int) -> None:
        request = FimRequest(
            model="bench-coder", prefix=f"def f{i}(x):\n    return ", suffix="\n", max_tokens=MAX_TOKENS
        )
        started = time.monotonic()
        try:
            async with contextlib.aclosing(backend.generate(request, started + 10)) as events:
                async for event in events:
                    if isinstance(event, str) and event:
                        ttft.append((time.monotonic() - started) * 1000)
                        break
                async for _event in events:
                    pass
        except Exception as exc:  # a failure is a figure here, not a crash
            errors.append(f"{type(exc).__name__}: {exc}")

    def note_version(response: Any) -> None:
        versions[response.http_version] = versions.get(response.http_version, 0) + 1

    http.client.event_hooks["response"].append(lambda r: _async(note_version, r))
    t0 = time.monotonic()
    live: asyncio.Task[None] | None = None
    for i, at in enumerate(times):
        await asyncio.sleep(max(t0 + at - time.monotonic(), 0))
        if live is not None and not live.done():
            live.cancel()
            cancelled += 1
            with contextlib.suppress(asyncio.CancelledError):
                await live
        live = asyncio.ensure_future(one(i))
    if live is not None:
        await live
    window = _inbound_window(http)
    await backend.aclose()
    return {
        "requests": len(times),
        "cancelled": cancelled,
        "ttft_ms": ttft,
        "errors": errors,
        "client_versions": versions,
        "h2_inbound_window": window,
    }


async def _async(fn: Any, arg: Any) -> None:
    fn(arg)


def _inbound_window(http: Any) -> int | None:
    """The HTTP/2 connection's inbound flow-control window left (httpcore internals; None if
    unknown): data of streams the client dropped without a reset is never acknowledged."""
    with contextlib.suppress(Exception):
        for connection in http.client._transport._pool.connections:
            state = getattr(getattr(connection, "_connection", None), "_h2_state", None)
            if state is not None:
                return int(state.inbound_flow_control_window)
    return None


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    data = sorted(values)
    rank = (len(data) - 1) * q / 100
    lo = int(rank)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (rank - lo)


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| RTT | protocol | requests | cancelled | new TCP connections | TLS handshakes | TTFT p50 ms | "
        "TTFT p90 ms | streams the server saw end early | tokens generated | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['rtt_ms']:g} ms | {r['protocol']} | {r['requests']} | {r['cancelled']} | "
            f"{r['connections']} | {r['handshakes']} | {r['ttft_p50_ms']:.0f} | {r['ttft_p90_ms']:.0f} | "
            f"{r['ended_early']} | "
            f"{r['tokens_generated']} | {r['errors']} |"
        )
    return "\n".join(out)


async def measure(args: argparse.Namespace, cert_dir: Path) -> list[dict[str, Any]]:
    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert(HOST, "127.0.0.1")
    ca_path, cert, key = cert_dir / "ca.pem", cert_dir / "cert.pem", cert_dir / "key.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    os.environ["SSL_CERT_FILE"] = str(ca_path)  # what a user with a private CA sets; httpx trusts it
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        os.environ.pop(name, None)
    if args.burst_gap_ms:
        times = [i * args.burst_gap_ms / 1000 for i in range(args.requests)]
    else:
        times = schedule(args.seed, args.requests)
    rows = []
    for rtt in args.rtt_ms:
        server = ServerProcess(
            {
                "first_token": args.first_token_ms / 1000,
                "token_rate": args.token_rate,
                "answer_tokens": args.answer_tokens,
                "rtt": rtt / 1000,
                "cert": str(cert),
                "key": str(key),
            }
        )
        try:
            url = f"https://{HOST}:{server.port}"
            for protocol in ("HTTP/1.1", "HTTP/2"):
                server.reset()
                got = await typing_run(url, protocol == "HTTP/2", times)
                await asyncio.sleep(args.first_token_ms / 1000 + args.answer_tokens / args.token_rate + 0.5)
                seen = server.stats()
                row = {
                    "rtt_ms": rtt,
                    "protocol": protocol,
                    "requests": got["requests"],
                    "cancelled": got["cancelled"],
                    "connections": seen["connections"],
                    "handshakes": seen["handshakes"],
                    "server_versions": seen["versions"],
                    "client_versions": got["client_versions"],
                    "ttft_p50_ms": percentile(got["ttft_ms"], 50),
                    "ttft_p90_ms": percentile(got["ttft_ms"], 90),
                    "ttft_ms": [round(v, 1) for v in got["ttft_ms"]],
                    "ended_early": seen["ended_early"],
                    "completed": seen["completed"],
                    "tokens_generated": seen["tokens_generated"],
                    "errors": len(got["errors"]),
                    "error_examples": got["errors"][:3],
                    "h2_inbound_window": got["h2_inbound_window"],
                }
                rows.append(row)
                print(
                    f"RTT {rtt:g} ms {protocol}: {row['connections']} connections, "
                    f"{row['handshakes']} handshakes, "
                    f"TTFT p50 {row['ttft_p50_ms']:.0f} ms, {row['ended_early']} streams ended early, "
                    f"{row['tokens_generated']} tokens generated, {row['errors']} errors",
                    flush=True,
                )
        finally:
            server.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    if argv is None and "--server-child" in sys.argv[1:]:
        return server_child()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rtt-ms", type=float, nargs="+", default=[0, 50], help="round-trip times to model")
    p.add_argument("--requests", type=int, default=60, help="requests per run")
    p.add_argument("--first-token-ms", type=float, default=400)
    p.add_argument("--token-rate", type=float, default=60)
    p.add_argument("--seed", default="1")
    p.add_argument("--answer-tokens", type=int, default=ANSWER_TOKENS, help="tokens in every answer")
    p.add_argument(
        "--burst-gap-ms",
        type=float,
        default=0,
        help="instead of a typist: a request every this many ms, each cancelling the one before",
    )
    p.add_argument("--out", help="JSON output")
    p.add_argument("--server-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rows = asyncio.run(measure(args, Path(tmp)))
    text = table(rows)
    print()
    print(text)
    if args.out:
        meta = {k: v for k, v in vars(args).items() if k != "server_child"}
        Path(args.out).write_text(json.dumps({"meta": meta, "runs": rows}, indent=1) + "\n", encoding="utf-8")
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
