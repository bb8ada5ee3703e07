"""The backend fault matrix, end to end: real fimls over stdio against faults on 127.0.0.1.

Every fault runs the same scenario on its own fimls process:

1. a healthy warm-up completion (the model is resolved, a connection is pooled),
2. the fault is injected and the user types and asks ``REQUESTS`` times,
3. the fault clears and the next request must be answered correctly.

It checks that every request is answered (empty) within ``timeoutMs`` plus a small slack,
that the user sees exactly one message for the condition, that retries are bounded, and
that 401/402 stop requests until the configuration changes. Network-level faults (refused,
connect timeout, a server that never answers) replace the fake on the same loopback port,
so "the fault clears" means the same URL works again, as in real life.

Set ``FIMLS_REPORT=1`` to print the summary table that ``docs/reliability.md`` quotes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import TEST_KEY, change, inline, open_doc, server_env
from fake_deepseek import FakeDeepSeek, Reply
from lsprotocol import types

TIMEOUT_MS = 600  # short, so faults that hang cost little time
RETRY_TIMEOUT_MS = 1500  # room for both backoffs (at most 0.25 s + 0.5 s) of a fast-failing attempt
SLACK = 0.5  # seconds allowed on top of timeoutMs for IPC and scheduling
DEADLINE = TIMEOUT_MS / 1000 + SLACK
MAX_RETRIES = 2
REQUESTS = 3  # keystrokes (each followed by a completion request) while the fault lasts
OPTIONS = {"timeoutMs": TIMEOUT_MS, "maxRetries": MAX_RETRIES}


# -- loopback servers that misbehave at the TCP level ----------------------------------------------


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (right now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listener(port: int, backlog: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(backlog)
    return sock


class Blackhole:
    """Accepts connections and reads requests, but never writes a byte back."""

    def __init__(self, port: int) -> None:
        self.sock = listener(port, 16)
        self.sock.setblocking(False)
        self.requests = 0  # request lines seen ("POST /..." or "GET /...")
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"blackhole:{port}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.sock, selectors.EVENT_READ)
        conns: list[socket.socket] = []
        try:
            while not self._stop.is_set():
                for key, _ in selector.select(0.02):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if sock is self.sock:
                        conn, _ = self.sock.accept()
                        conn.setblocking(False)
                        conns.append(conn)
                        self.connections += 1
                        selector.register(conn, selectors.EVENT_READ)
                        continue
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        selector.unregister(sock)
                        sock.close()
                        continue
                    self.requests += data.count(b" HTTP/1.1\r\n")
        finally:
            for conn in conns:
                conn.close()
            selector.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


class Unaccepting:
    """A listener with backlog 0 that never calls accept(), its queue filled by dummies.

    On Linux a full accept queue makes the kernel drop further SYNs (whatever
    ``tcp_syncookies`` says), so the next ``connect()`` is never answered: a true connect
    timeout, without leaving the machine. ``test_unaccepting_listener_times_out`` checks it.
    """

    def __init__(self, port: int) -> None:
        self.sock = listener(port, 0)
        self.dummies: list[socket.socket] = []
        for _ in range(2):
            dummy = socket.socket()
            dummy.setblocking(False)
            dummy.connect_ex(("127.0.0.1", port))
            self.dummies.append(dummy)
        time.sleep(0.05)  # let the first dummy's handshake fill the queue

    def stop(self) -> None:
        for dummy in self.dummies:
            dummy.close()
        self.sock.close()


class Backend:
    """The loopback port fimls is pointed at, and whatever currently serves it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.fake: FakeDeepSeek | None = None
        self.odd: Blackhole | Unaccepting | None = None
        self.healthy("ok")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _release(self) -> None:
        if self.fake is not None:
            self.fake.stop()
            self.fake = None
        if self.odd is not None:
            self.odd.stop()
            self.odd = None

    def healthy(self, text: str) -> FakeDeepSeek:
        self._release()
        self.fake = FakeDeepSeek(api_key=TEST_KEY, port=self.port).start()
        self.fake.default = Reply(text=text)
        return self.fake

    def refuse(self) -> None:
        self._release()

    def blackhole(self) -> Blackhole:
        self._release()
        self.odd = Blackhole(self.port)
        return self.odd

    def unaccepting(self) -> Unaccepting:
        self._release()
        self.odd = Unaccepting(self.port)
        return self.odd

    def calls(self) -> int:
        """FIM requests that reached whatever serves the port now."""
        if self.fake is not None:
            return len(self.fake.fim_requests())
        if isinstance(self.odd, Blackhole):
            return self.odd.requests
        return 0


@pytest.fixture
def backend() -> Iterator[Backend]:
    server = Backend()
    try:
        yield server
    finally:
        server._release()


# -- the fault matrix ----------------------------------------------------------------------------------


@dataclass
class Fault:
    """One fault: how to inject it, and what the user must see."""

    name: str
    inject: Callable[[Backend, FakeDeepSeek], Any]
    message: str  # words of the one message the user sees
    kind: str  # "retry" (retried, bounded), "hang" (runs into timeoutMs), "once" (never retried),
    # "fatal" (401/402: one call, then paused until the configuration changes)
    stream: bool = True
    settle: float = 0.0  # seconds the server legitimately holds back after the fault (Retry-After)
    url: str | None = None  # a base URL that is the fault itself (DNS)

    @property
    def timeout_ms(self) -> int:
        return RETRY_TIMEOUT_MS if self.kind == "retry" else TIMEOUT_MS

    @property
    def deadline(self) -> float:
        return self.timeout_ms / 1000 + SLACK


def reply(**kwargs: Any) -> Callable[[Backend, FakeDeepSeek], None]:
    def inject(backend: Backend, _sink: FakeDeepSeek) -> None:
        assert backend.fake is not None
        backend.fake.default = Reply(**kwargs)

    return inject


def redirect(backend: Backend, sink: FakeDeepSeek) -> None:
    assert backend.fake is not None
    backend.fake.default = Reply(status=307, headers={"Location": f"{sink.url}/beta/completions"})


FAULTS = [
    Fault(
        "connection refused",
        lambda b, _s: b.refuse(),
        "(POST /beta/completions): connection refused",
        "retry",
    ),
    Fault(
        "DNS failure",
        lambda _b, _s: None,
        "cannot reach DeepSeek at https://fimls-test.invalid (POST /beta/completions): name not resolved",
        "retry",
        url="https://fimls-test.invalid",
    ),
    Fault(
        "connect timeout",
        lambda b, _s: b.unaccepting(),
        "did not answer POST /beta/completions within",
        "hang",
    ),
    Fault(
        "accepts, never answers", lambda b, _s: b.blackhole(), "did not answer POST /beta/completions", "hang"
    ),
    Fault("keep-alives forever (SSE)", reply(keepalive_forever=True), "did not answer within 0.6 s", "hang"),
    Fault(
        "keep-alives forever (JSON)",
        reply(keepalive_forever=True),
        "did not answer within 0.6 s",
        "hang",
        stream=False,
    ),
    Fault("stream cut mid-chunk", reply(text="abcdefghijklmnop", cut_stream=True), "DeepSeek", "retry"),
    Fault("JSON body cut short", reply(text="abcdefghijklmnop", cut_stream=True), "DeepSeek", "retry", False),
    Fault("malformed JSON", reply(raw_body=b"{malformed"), "malformed JSON", "once", stream=False),
    Fault("malformed SSE chunk", reply(raw_body=b"data: {malformed\n\n"), "malformed stream chunk", "once"),
    Fault(
        "JSON without choices",
        reply(raw_body=b'{"id": "x", "object": "text_completion"}'),
        "no choices",
        "once",
        stream=False,
    ),
    Fault("empty choices", reply(raw_body=b'{"choices": []}'), "no choices", "once", stream=False),
    Fault("HTTP 400", reply(status=400), "rejected the request (400)", "once"),
    Fault("HTTP 401", reply(status=401), "rejected the API key (401)", "fatal"),
    Fault("HTTP 402", reply(status=402), "insufficient balance", "fatal"),
    Fault("HTTP 422", reply(status=422), "rejected the request (422)", "once"),
    Fault("HTTP 429", reply(status=429), "rate limit reached (429)", "retry"),
    Fault(
        "HTTP 429 + Retry-After: 1",
        reply(status=429, headers={"Retry-After": "1"}),
        "rate limit reached (429)",
        "paused",
        settle=1.0,
    ),
    Fault("HTTP 500", reply(status=500), "server error (500)", "retry"),
    Fault("HTTP 503", reply(status=503), "server error (503)", "retry"),
    Fault(
        "HTTP 503 + Retry-After: 1",
        reply(status=503, headers={"Retry-After": "1"}),
        "server error (503)",
        "paused",
        settle=1.0,
    ),
    Fault("redirect (307)", redirect, "unexpected HTTP status 307", "once"),
]

ROWS: list[dict[str, Any]] = []


@pytest.fixture(scope="module", autouse=True)
def fault_table(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print the summary table after the module when FIMLS_REPORT is set."""
    yield
    if not os.environ.get("FIMLS_REPORT") or not ROWS:
        return
    lines = [
        "| fault | timeoutMs (s) | requests answered | max latency (s) | backend calls | retries "
        "| messages | message shown | recovered |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in ROWS:
        lines.append(
            f"| {row['fault']} | {row['timeout']:g} | {row['answered']}/{row['requests']} "
            f"| {row['max_latency']:.2f} "
            f"| {row['calls']} | {row['retries']} | {row['messages']} | {row['message']} "
            f"| {row['recovered']} |"
        )
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print("\n" + "\n".join(lines), flush=True)


async def status(client) -> dict[str, Any]:
    result = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="fimls.status"))
    assert isinstance(result, dict)
    return result


async def timed(client, uri: str, line: int, character: int) -> tuple[list[str], float]:
    """Ask once; the answer's texts and how long it took (never waits past a hard cap)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    items = await asyncio.wait_for(inline(client, uri, line, character), DEADLINE + 10)
    return [item.insert_text for item in items], loop.time() - started  # type: ignore[misc]


class Typist:
    """Types digits at the end of ``x = `` and asks after each keystroke."""

    def __init__(self, client, uri: str) -> None:
        self.client = client
        self.uri = uri
        self.column = 4
        self.version = 1
        self.asked = 0
        self.answered = 0

    async def keystroke(self) -> tuple[list[str], float]:
        self.version += 1
        change(self.client, self.uri, self.version, (0, self.column), (0, self.column), "1")
        self.column += 1
        self.asked += 1
        answer = await timed(self.client, self.uri, 0, self.column)
        self.answered += 1
        return answer


def messages(client) -> list[str]:
    return [m.message for m in client.messages]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
async def test_fault(start_server, fake, backend: Backend, fault: Fault):
    sink = fake  # the fixture's fake plays "another host" (the redirect target)
    url = fault.url or backend.url
    options = {**OPTIONS, "stream": fault.stream, "timeoutMs": fault.timeout_ms}
    client = await start_server("vscode", options, env=server_env(fake, DEEPSEEK_BASE_URL=url))
    uri = open_doc(client, "x = \n")
    typist = Typist(client, uri)
    if fault.url is None:
        # Healthy first: the model is resolved and a connection is pooled.
        assert (await timed(client, uri, 0, 4))[0] == ["ok"]
    before = await status(client)
    shown_before = len(client.messages)

    fault.inject(backend, sink)
    calls_before = backend.calls()
    latencies = []
    for _ in range(REQUESTS):
        texts, latency = await typist.keystroke()
        assert texts == []
        latencies.append(latency)
    assert max(latencies) <= fault.deadline, latencies
    await asyncio.sleep(0.05)
    during = await status(client)
    calls = backend.calls() - calls_before
    sent = during["requestsSent"] - before["requestsSent"]
    retries = during["retries"] - before["retries"]
    new_messages = messages(client)[shown_before:]

    # One clear message for the condition, not one per keystroke.
    assert len(new_messages) == 1, new_messages
    assert fault.message in new_messages[0]
    # Retries are bounded; nothing but the retry policy multiplies requests.
    attempts = sent + retries
    if fault.kind == "retry":
        assert sent == REQUESTS and retries <= REQUESTS * MAX_RETRIES
    elif fault.kind == "hang":
        assert sent == REQUESTS and retries == 0  # the deadline cut each one: no retry
    elif fault.kind == "once":
        assert sent == REQUESTS and retries == 0
    elif fault.kind == "paused":
        assert sent == 1 and retries == 0  # Retry-After beyond the deadline: held back instead
        assert during["paused"]
    else:  # fatal
        assert sent == 1 and retries == 0
        assert during["paused"]
    if fault.url is None and (backend.fake is not None or isinstance(backend.odd, Blackhole)):
        assert calls == attempts, (calls, attempts)  # the server saw exactly what fimls counted
    if fault.name.startswith("redirect"):
        assert sink.requests == []  # the redirect was not followed

    if fault.url is not None:
        # The URL is a machine-level setting: a workspace cannot change it, so recovering
        # from a wrong URL takes the user's own configuration and a restart.
        ROWS.append(row(fault, typist, latencies, attempts, retries, new_messages, "restart"))
        return
    # The fault clears.
    healthy = backend.fake or backend.healthy("back")
    healthy.default = Reply(text="back")
    if fault.kind == "fatal":
        # Still paused: nothing is sent, however often the user types.
        calls_paused = len(healthy.fim_requests())
        assert (await typist.keystroke())[0] == []
        assert len(healthy.fim_requests()) == calls_paused
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"fimls": {"apiKey": TEST_KEY}})
        )
    await asyncio.sleep(fault.settle)
    texts, latency = await typist.keystroke()
    assert texts == ["back"]
    after = await status(client)
    assert after["inFlight"] == 0 and after["pendingRequests"] == 0
    assert client._server.returncode is None  # still up
    recovered = "config change" if fault.kind == "fatal" else "yes"
    ROWS.append(row(fault, typist, [*latencies, latency], attempts, retries, new_messages, recovered))


def row(fault: Fault, typist, latencies, attempts, retries, new_messages, recovered: str) -> dict[str, Any]:
    return {
        "fault": fault.name,
        "requests": typist.asked,
        "answered": typist.answered,
        "max_latency": max(latencies),
        "timeout": fault.timeout_ms / 1000,
        "calls": attempts,
        "retries": retries,
        "messages": len(new_messages),
        "message": new_messages[0],
        "recovered": recovered,
    }


def test_unaccepting_listener_times_out():
    """The connect-timeout technique really leaves a SYN unanswered on this kernel."""
    port = free_port()
    server = Unaccepting(port)
    try:
        probe = socket.socket()
        probe.settimeout(0.3)
        with pytest.raises(TimeoutError):
            probe.connect(("127.0.0.1", port))
        probe.close()
    finally:
        server.stop()


async def test_fault_storm_is_reported_once_and_bounded(start_server, fake, backend: Backend):
    """Fast typing into a persistent 503 with a debounce: requests are superseded, not piled up."""
    client = await start_server(
        "vscode",
        {**OPTIONS, "timeoutMs": RETRY_TIMEOUT_MS, "debounceMs": 100},
        env=server_env(fake, DEEPSEEK_BASE_URL=backend.url),
    )
    uri = open_doc(client, "x = \n")
    assert backend.fake is not None
    backend.fake.default = Reply(status=503)
    pending = []
    for i in range(30):
        change(client, uri, i + 2, (0, 4 + i), (0, 4 + i), "1")
        params = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=0, character=5 + i),
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
        )
        # Sent at once, before the next keystroke, as an editor does.
        pending.append(client.protocol.send_request_async(types.TEXT_DOCUMENT_INLINE_COMPLETION, params))
        await asyncio.sleep(0.005)
    results = await asyncio.wait_for(asyncio.gather(*pending), RETRY_TIMEOUT_MS / 1000 + 2)
    assert all(r is not None and list(r.items) == [] for r in results)
    info = await status(client)
    # At most one request per pause in typing reaches the backend, plus its retries.
    assert info["requestsSent"] <= 2 and len(backend.fake.fim_requests()) <= 2 * (MAX_RETRIES + 1)
    await asyncio.sleep(0.05)
    assert sum("503" in m for m in messages(client)) == 1


@pytest.mark.parametrize("odd", ["unaccepting", "blackhole"])
async def test_first_request_within_deadline_when_backend_hangs_from_start(
    start_server, fake, backend: Backend, odd: str
):
    getattr(backend, odd)()
    client = await start_server("vscode", OPTIONS, env=server_env(fake, DEEPSEEK_BASE_URL=backend.url))
    uri = open_doc(client, "x = \n")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(inline(client, uri, 0, 4), DEADLINE + 0.5)
    assert loop.time() - started <= DEADLINE


async def test_slow_overload_is_reported_as_overload(start_server, fake):
    # Each 503 takes 0.25 s: the first retry always starts in time and always ends past 0.6 s.
    fake.default = Reply(status=503, delay=0.25)
    client = await start_server("vscode", OPTIONS)
    uri = open_doc(client, "x = \n")
    typist = Typist(client, uri)
    for _ in range(REQUESTS):
        assert (await typist.keystroke())[0] == []
    await asyncio.sleep(0.05)
    assert [m for m in messages(client) if "503" in m] and len(client.messages) == 1, messages(client)
