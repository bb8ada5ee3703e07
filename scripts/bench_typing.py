#!/usr/bin/env python3
"""Typing benchmark for fimls, or any LSP server with ``textDocument/inlineCompletion``.

A neutral LSP client (raw JSON-RPC over stdio, Content-Length framing) drives the server the way
an editor does while a person types: one incremental ``didChange`` per keystroke (UTF-16
positions), one ``textDocument/inlineCompletion`` (trigger kind Automatic) per keystroke, and
``$/cancelRequest`` for the previous request still pending.  The "person" types a real source file
back in, 80-120 ms per character with longer pauses at line ends and every few lines, and presses
Tab when a suggestion arrives that matches what they are about to type.

The backend is ``scripts/fake_deepseek.py`` (run in a child process so its threads do not share
the client's GIL) with a fixed latency, the oracle mode (it answers with the file's true
continuation), SSE streaming and DeepSeek's prefix-cache accounting.

Scenarios: ``typing`` (each corpus file, several runs), ``many`` (50 open 5,000+ line documents,
rapid edits across them), ``cold`` (spawn to ``initialize`` response).  See docs/benchmarks.md
for what each figure means.  Examples::

    .venv/bin/python scripts/bench_typing.py                      # everything, real time
    .venv/bin/python scripts/bench_typing.py --scenario typing --files d3.js --runs 3
    .venv/bin/python scripts/bench_typing.py --quick --no-plot    # tiny smoke run (seconds)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import itertools
import json
import math
import os
import platform
import random
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
CORPUS = SCRIPTS / "bench_corpus"
DEFAULT_FILES = ["json_decoder.py.txt", "textwrap.py.txt", "argparse.py.txt", "_pydecimal.py.txt", "d3.js"]
MANY_FILE = "_pydecimal.py.txt"
LANGUAGES = {".py": "python", ".js": "javascript", ".ts": "typescript", ".go": "go", ".rs": "rust"}
API_KEY = "sk-bench-0000000000000000"
CANCELLED = -32800
MIN_ACCEPT = 3  # a suggestion shorter than this is not worth a Tab
PAUSE_CHARS = frozenset(" (.,=:")

# Targets from issue 4 (ms, MB, shares).
T_OVERHEAD_P50 = 2.0
T_OVERHEAD_P99 = 10.0
T_TTS_SLACK = 5.0
T_CACHE_SHARE = 0.80
T_COLD_START = 300.0
T_PEAK_RSS_MANY = 80.0
T_CPU_SHARE_20CPS = 0.10


# -- small helpers -------------------------------------------------------------------------------


def now() -> float:
    """The clock shared with the fake's Logged.started/finished (CLOCK_MONOTONIC, system-wide)."""
    return time.monotonic()


def utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units."""
    return len(text) if text.isascii() else len(text.encode("utf-16-le", "surrogatepass")) // 2


def percentile(values: Iterable[float], q: float) -> float | None:
    """Linear-interpolation percentile (q in 0..100); None for no values."""
    data = sorted(values)
    if not data:
        return None
    if len(data) == 1:
        return data[0]
    rank = (len(data) - 1) * q / 100
    lo = math.floor(rank)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (rank - lo)


def median(values: Iterable[float | None]) -> float | None:
    """Median of the non-None values; None if there are none."""
    data = [v for v in values if v is not None]
    return statistics.median(data) if data else None


def corpus_name(path: Path) -> str:
    """The file's real name: corpus Python files carry ``.txt`` so linters leave them alone."""
    return path.name[:-4] if path.name.endswith(".txt") else path.name


def language_of(path: Path) -> str:
    return LANGUAGES.get(Path(corpus_name(path)).suffix, "plaintext")


def read_source(path: Path) -> str:
    return path.read_text(encoding="utf-8").replace("\r\n", "\n")


def indentation(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


# -- process statistics (/proc) -------------------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    """pid and all its descendants (so a wrapper command is measured with its children)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def proc_stats(pid: int) -> dict[str, float]:
    """CPU seconds (utime+stime) and VmHWM/VmRSS in MB, summed over the process tree."""
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = hwm = rss = 0.0
    for member in _descendants(pid):
        try:
            stat = Path(f"/proc/{member}/stat").read_text()
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        cpu += (int(fields[11]) + int(fields[12])) / ticks
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                hwm += int(line.split()[1]) / 1024
            elif line.startswith("VmRSS:"):
                rss += int(line.split()[1]) / 1024
    return {"cpu_s": cpu, "hwm_mb": hwm, "rss_mb": rss}


# -- the fake DeepSeek, in a child process --------------------------------------------------------


def fake_child_main() -> int:
    """``--fake-child``: serve a FakeDeepSeek; commands on stdin, JSON answers on stdout."""
    sys.path.insert(0, str(SCRIPTS))
    from fake_deepseek import FakeDeepSeek, Reply

    config = json.loads(sys.stdin.readline())
    oracle = "\n".join(read_source(Path(p)) for p in config["oracle"]) if config["oracle"] else None
    fake = FakeDeepSeek(latency=config["latency"], oracle_text=oracle)

    def defaults() -> None:
        fake.default = Reply(text=config["text"], chunk_size=config["chunk_size"])

    defaults()
    fake.start()
    print(json.dumps({"url": fake.url}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "reset":
            fake.reset()
            defaults()
            print("{}", flush=True)
        elif command == "logs":
            rows = []
            for log in fake.fim_requests():
                body = log.body or {}
                rows.append(
                    {
                        "started": log.started,
                        "finished": log.finished,
                        "status": log.status,
                        "aborted": log.aborted,
                        "completed": log.completed,
                        "stream": log.stream,
                        "model": body.get("model"),
                        "prompt": body.get("prompt") or "",
                        "suffix": body.get("suffix") or "",
                        "text": log.text,
                        "usage": log.usage,
                    }
                )
            print(json.dumps(rows), flush=True)
        elif command == "quit":
            break
    fake.stop()
    return 0


class FakeProcess:
    """Parent side of ``--fake-child``."""

    def __init__(self, latency: float, oracle: list[Path], text: str = "pass", chunk_size: int = 4) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--fake-child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        config = {
            "latency": latency,
            "oracle": [str(p) for p in oracle],
            "text": text,
            "chunk_size": chunk_size,
        }
        self._send(json.dumps(config))
        self.url: str = self._answer()["url"]

    def _send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def _answer(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("fake DeepSeek child died")
        return json.loads(line)

    def reset(self) -> None:
        self._send("reset")
        self._answer()

    def logs(self) -> list[dict[str, Any]]:
        self._send("logs")
        rows: list[dict[str, Any]] = self._answer()
        return rows

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._send("quit")
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- a neutral LSP client -------------------------------------------------------------------------


class RpcError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code = error.get("code")


class LspClient:
    """JSON-RPC 2.0 over a child's stdio with Content-Length framing."""

    def __init__(self, command: list[str], env: dict[str, str], stderr_path: Path | None = None) -> None:
        self.command = command
        self.env = env
        self.stderr_path = stderr_path
        self.proc: asyncio.subprocess.Process | None = None
        self._next_id = 0
        self._futures: dict[int, asyncio.Future[tuple[float, dict[str, Any]]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.on_response: Callable[[int, dict[str, Any], float], None] | None = None
        self.notifications: list[dict[str, Any]] = []
        self.t_spawn = 0.0
        self.closed = asyncio.Event()
        self.attached: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> None:
        stderr: Any = asyncio.subprocess.DEVNULL
        if self.stderr_path is not None:
            stderr = open(self.stderr_path, "ab")
        self.t_spawn = now()
        self.proc = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env=self.env,
            limit=1 << 24,
        )
        if self.stderr_path is not None:
            stderr.close()
        self._reader = asyncio.create_task(self._read_loop())

    @staticmethod
    def frame(message: dict[str, Any]) -> bytes:
        body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def request_frame(self, method: str, params: Any) -> tuple[int, bytes]:
        rid = self.new_id()
        self._futures[rid] = asyncio.get_running_loop().create_future()
        return rid, self.frame({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})

    def notify_frame(self, method: str, params: Any) -> bytes:
        return self.frame({"jsonrpc": "2.0", "method": method, "params": params})

    async def write(self, data: bytes) -> float:
        """Write frames; returns the time just before the write."""
        assert self.proc is not None and self.proc.stdin is not None
        t = now()
        self.proc.stdin.write(data)
        await self.proc.stdin.drain()
        return t

    async def notify(self, method: str, params: Any) -> None:
        await self.write(self.notify_frame(method, params))

    async def call(self, method: str, params: Any, timeout: float = 30.0) -> Any:
        """Send a request and wait for its result (raises RpcError on an error answer)."""
        rid, data = self.request_frame(method, params)
        await self.write(data)
        _t, message = await asyncio.wait_for(self.response(rid), timeout)
        if "error" in message:
            raise RpcError(message["error"])
        return message.get("result")

    async def response(self, rid: int) -> tuple[float, dict[str, Any]]:
        return await self._futures[rid]

    async def _read_loop(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        stdout = self.proc.stdout
        try:
            while True:
                header = await stdout.readuntil(b"\r\n\r\n")
                length = 0
                for line in header.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await stdout.readexactly(length)
                t = now()
                message = json.loads(body)
                await self._dispatch(message, t)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed.set()
            for future in self._futures.values():
                if not future.done():
                    future.set_exception(ConnectionError("server closed its output"))

    async def _dispatch(self, message: dict[str, Any], t: float) -> None:
        if "method" in message:
            if "id" in message:  # a request from the server: answer it neutrally
                method = message["method"]
                result: Any = None
                if method == "workspace/configuration":
                    result = [None for _ in (message.get("params") or {}).get("items", [])]
                await self.write(self.frame({"jsonrpc": "2.0", "id": message["id"], "result": result}))
            else:
                self.notifications.append(message)
            return
        rid = message.get("id")
        if not isinstance(rid, int):
            return
        if self.on_response is not None:
            self.on_response(rid, message, t)
        future = self._futures.pop(rid, None)
        if future is not None and not future.done():
            future.set_result((t, message))

    def forget(self, rid: int) -> None:
        """Stop tracking a request whose answer nobody awaits."""
        self._futures.pop(rid, None)

    async def stop(self) -> int | None:
        """shutdown + exit; kill the process (by its pid) if it does not leave."""
        if self.proc is None:
            return None
        if self.attached is not None:  # a profiler we started: let it write its output
            self.attached.send_signal(signal.SIGINT)
            try:
                await asyncio.to_thread(self.attached.wait, 30)
            except subprocess.TimeoutExpired:
                self.attached.kill()
            self.attached = None
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                await self.call("shutdown", None, timeout=5)
            with contextlib.suppress(Exception):
                await self.notify("exit", None)  # also after an error answer to shutdown
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 2)
        return self.proc.returncode


CLIENT_CAPABILITIES: dict[str, Any] = {
    "general": {"positionEncodings": ["utf-16"]},
    "textDocument": {
        "synchronization": {"dynamicRegistration": False, "didSave": False},
        "inlineCompletion": {"dynamicRegistration": False},
    },
    "workspace": {"executeCommand": {"dynamicRegistration": False}, "configuration": False},
    "window": {"workDoneProgress": False},
}


PYCACHE = Path(tempfile.gettempdir()) / "fimls-bench-pycache"


def server_env(url: str) -> dict[str, str]:
    """The server's environment: the fake's URL and a key; Python bytecode cached outside the
    repository (as after an install), even where PYTHONDONTWRITEBYTECODE is set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPSEEK_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault("PYTHONPYCACHEPREFIX", str(PYCACHE))
    env.update(DEEPSEEK_BASE_URL=url, DEEPSEEK_API_KEY=API_KEY)
    return env


def init_params(options: dict[str, Any]) -> dict[str, Any]:
    return {
        "processId": os.getpid(),
        "clientInfo": {"name": "fimls-bench", "version": "1"},
        "rootUri": None,
        "workspaceFolders": None,
        "capabilities": CLIENT_CAPABILITIES,
        "initializationOptions": options,
    }


# -- documents and the typist ---------------------------------------------------------------------


class Doc:
    """A document as the editor sees it: head + target[:pos] + tail, cursor after target[:pos]."""

    def __init__(self, uri: str, language: str, head: str, target: str, tail: str, version: int) -> None:
        assert not tail or tail.startswith("\n"), "the cursor line must end where the target ends"
        self.uri, self.language = uri, language
        self.head, self.target, self.tail = head, target, tail
        self.version = version
        self.pos = 0
        self.line = head.count("\n")
        self.line_prefix = head[head.rfind("\n") + 1 :]
        self.final = head + target  # prefix_at(pos) == final[: len(head) + pos]
        self.start_line = self.line

    @property
    def text(self) -> str:
        return self.head + self.target[: self.pos] + self.tail

    @property
    def remaining(self) -> str:
        return self.target[self.pos :]

    def cursor(self) -> dict[str, int]:
        return {"line": self.line, "character": utf16_len(self.line_prefix)}

    def prefix_ends_with(self, pos: int, prompt: str) -> bool:
        end = len(self.head) + pos
        return end >= len(prompt) and self.final.startswith(prompt, end - len(prompt))

    def advance(self, text: str) -> None:
        assert self.target.startswith(text, self.pos), "only the true text is typed or accepted"
        self.pos += len(text)
        if "\n" in text:
            self.line += text.count("\n")
            self.line_prefix = text[text.rfind("\n") + 1 :]
        else:
            self.line_prefix += text


@dataclass
class Req:
    """One inlineCompletion request and what became of it."""

    rid: int
    doc: Doc
    version: int
    pos: int
    kind: str  # key | accept | delete
    t_send: float
    along: bool = False
    t_cancel: float | None = None
    t_next: float | None = None  # when the next edit was sent (the request became outdated)
    t_recv: float | None = None
    error: int | None = None
    text: str | None = None  # first item's insert text, when it applies at the cursor
    misplaced: bool = False
    stale: bool = False
    backend: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Visible:
    """The ghost text the editor shows now."""

    doc: Doc
    version: int
    text: str
    t_shown: float
    carried: bool = False  # kept by the editor while the user typed along it


@dataclass
class Action:
    t: float
    kind: str
    req: Req
    chars: int  # characters inserted
    pause: float = 0.0  # scheduled pause after this action (0 = normal typing)


def first_item(result: Any) -> tuple[str, dict[str, Any] | None] | None:
    """(insert text, range) of the first inline item, or None when there is none."""
    items = result.get("items") if isinstance(result, dict) else result
    if not isinstance(items, list) or not items:
        return None
    item = items[0]
    text = item.get("insertText")
    if isinstance(text, dict):  # StringValue (snippet)
        text = text.get("value")
    if not isinstance(text, str) or not text:
        return None
    return text, item.get("range")


class Session:
    """Edits, requests and ghost-text state of one server process."""

    def __init__(self, client: LspClient, sync_kind: int, speedup: float, rng: random.Random) -> None:
        self.client = client
        self.sync_kind = sync_kind
        self.speedup = speedup
        self.rng = rng
        self.reqs: dict[int, Req] = {}
        self.order: list[Req] = []
        self.actions: list[Action] = []
        self.pending: Req | None = None
        self.visible: Visible | None = None
        self.accept_at: float | None = None
        self.current: Doc | None = None
        self.event = asyncio.Event()
        self.shown = 0
        self.wrong = 0
        self.typing_through_client = 0
        self.accepting = True
        self.wrong_examples: list[dict[str, Any]] = []
        self.too_short = 0
        client.on_response = self.on_response

    # -- responses --

    def on_response(self, rid: int, message: dict[str, Any], t: float) -> None:
        req = self.reqs.get(rid)
        if req is None:
            return
        self.client.forget(rid)
        req.t_recv = t
        if self.pending is req:
            self.pending = None
        if "error" in message:
            req.error = message["error"].get("code")
            return
        got = first_item(message.get("result"))
        if got is None:
            return
        text, rng = got
        doc = req.doc
        if doc is not self.current or req.version != doc.version:
            req.stale = True  # a suggestion for an outdated document version
            return
        start = (rng or {}).get("start", doc.cursor())
        end = (rng or {}).get("end", start)
        if start != doc.cursor() or end != start:
            req.misplaced = True
            return
        req.text = text
        self.shown += 1
        vis = self.visible
        continuing = vis is not None and vis.doc is doc and vis.version == doc.version
        if continuing and vis is not None and vis.carried and vis.text == text:
            self.typing_through_client += 1
        t_shown = vis.t_shown if continuing and vis is not None and vis.text == text else t
        self.visible = Visible(doc, doc.version, text, t_shown)
        if self.matches(doc, text):
            if self.accept_at is None and self.accepting:
                self.accept_at = t + self.rng.uniform(0.15, 0.30) / self.speedup
        elif doc.target.startswith(text, doc.pos):
            self.too_short += 1  # right, but not worth a Tab
            self.accept_at = None
        else:
            self.wrong += 1
            if len(self.wrong_examples) < 10:
                self.wrong_examples.append({"expected": doc.remaining[:60], "got": text[:60], "rid": rid})
            self.accept_at = None
        self.event.set()

    @staticmethod
    def matches(doc: Doc, text: str) -> bool:
        return len(text) >= MIN_ACCEPT and bool(text.strip()) and doc.target.startswith(text, doc.pos)

    def acceptable(self) -> Visible | None:
        vis = self.visible
        doc = self.current
        if vis is None or doc is None or vis.doc is not doc or vis.version != doc.version:
            return None
        return vis if self.matches(doc, vis.text) else None

    # -- edits --

    async def open(self, doc: Doc) -> None:
        await self.client.notify(
            "textDocument/didOpen",
            {
                "textDocument": {
                    "uri": doc.uri,
                    "languageId": doc.language,
                    "version": doc.version,
                    "text": doc.text,
                }
            },
        )

    async def edit(
        self,
        doc: Doc,
        kind: str,
        text: str,
        start: dict[str, int] | None = None,
        end: dict[str, int] | None = None,
        *,
        advance: bool = True,
    ) -> Req:
        """Apply an edit (at the cursor unless start/end given), then request a suggestion."""
        frames = []
        prev = self.pending
        if prev is not None:
            frames.append(self.client.notify_frame("$/cancelRequest", {"id": prev.rid}))
        start = start or doc.cursor()
        end = end or start
        along = False
        vis = self.visible
        if kind == "key":
            along = self.acceptable() is not None and vis is not None and vis.text.startswith(text)
            if (
                vis is not None
                and vis.doc is doc
                and vis.version == doc.version
                and vis.text.startswith(text)
            ):
                rest = vis.text[len(text) :]
                self.visible = (
                    Visible(doc, doc.version + 1, rest, vis.t_shown, carried=True) if rest else None
                )
            else:
                self.visible = None
                self.accept_at = None
        else:
            self.visible = None
            self.accept_at = None
        if advance:
            doc.advance(text)
        doc.version += 1
        if self.sync_kind == 1:
            change: dict[str, Any] = {"text": doc.text}
        else:
            change = {"range": {"start": start, "end": end}, "text": text}
        frames.append(
            self.client.notify_frame(
                "textDocument/didChange",
                {"textDocument": {"uri": doc.uri, "version": doc.version}, "contentChanges": [change]},
            )
        )
        params = {
            "textDocument": {"uri": doc.uri},
            "position": doc.cursor(),
            "context": {"triggerKind": 2, "selectedCompletionInfo": None},
        }
        rid, frame = self.client.request_frame("textDocument/inlineCompletion", params)
        frames.append(frame)
        req = Req(rid, doc, doc.version, doc.pos, kind, 0.0, along=along)
        self.reqs[rid] = req
        self.order.append(req)
        self.current = doc
        t = await self.client.write(b"".join(frames))
        req.t_send = t
        if prev is not None:
            prev.t_cancel = t
        for older in reversed(self.order[:-1]):
            if older.t_next is not None:
                break
            older.t_next = t
        self.pending = req
        return req

    async def wait_until(self, deadline: float) -> None:
        """Sleep until deadline, or until a planned Tab press comes due first."""
        while True:
            wake = deadline
            if self.accept_at is not None and self.accept_at < wake:
                wake = self.accept_at
            left = wake - now()
            if left <= 0:
                return
            self.event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.event.wait(), left)

    async def type_through(
        self,
        doc: Doc,
        char_delay: Callable[[], float],
        pause_after: Callable[[str], float],
        limit: int | None = None,
    ) -> None:
        """Type doc.target from doc.pos to its end (or ``limit`` keystrokes), accepting matching
        suggestions."""
        t_next = now() + char_delay() / self.speedup
        keys = 0
        while doc.pos < len(doc.target) and (limit is None or keys < limit):
            await self.wait_until(t_next)
            vis = self.acceptable()
            if self.accept_at is not None and self.accept_at <= now() and vis is not None:
                req = await self.edit(doc, "accept", vis.text)
                self.actions.append(Action(req.t_send, "accept", req, len(vis.text)))
                t_next = now() + char_delay() / self.speedup
                continue
            if self.accept_at is not None and self.accept_at <= now():
                self.accept_at = None
            if now() < t_next:
                continue
            chars = self.next_keystroke(doc)
            keys += 1
            req = await self.edit(doc, "key", chars)
            pause = pause_after(chars)
            self.actions.append(Action(req.t_send, "key", req, len(chars), pause))
            t_next = now() + (pause or char_delay()) / self.speedup

    @staticmethod
    def next_keystroke(doc: Doc) -> str:
        """One character; Enter also inserts the next line's indentation (auto-indent)."""
        rest = doc.remaining
        if rest[0] != "\n":
            return rest[0]
        line = rest[1:].split("\n", 1)[0]
        return "\n" + indentation(line)

    async def settle(self, timeout: float) -> None:
        """Wait for the last request's answer (the person stopped typing)."""
        deadline = now() + timeout
        while self.pending is not None and now() < deadline:
            self.event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.event.wait(), min(0.05, max(0.0, deadline - now())))


# -- running one server ---------------------------------------------------------------------------


_ATTACHED = itertools.count()


async def launch(args: argparse.Namespace, url: str) -> tuple[LspClient, dict[str, Any]]:
    """Spawn the server, initialize it, return the client and the server capabilities."""
    stderr = Path(args.server_log) if args.server_log else None
    client = LspClient(args.server, server_env(url), stderr)
    await client.start()
    if args.attach:
        command = shlex.split(args.attach.format(pid=client.pid, n=next(_ATTACHED)))
        client.attached = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    options: dict[str, Any] = {"baseUrl": url, "apiKey": API_KEY, "debounceMs": args.debounce_ms}
    options.update(args.init_options)
    result = await client.call("initialize", init_params(options), timeout=30)
    await client.notify("initialized", {})
    caps = result.get("capabilities", {}) if isinstance(result, dict) else {}
    if caps.get("inlineCompletionProvider") in (None, False):
        raise SystemExit("the server does not offer textDocument/inlineCompletion")
    return client, caps


def sync_kind_of(caps: dict[str, Any]) -> int:
    sync = caps.get("textDocumentSync")
    if isinstance(sync, dict):
        return int(sync.get("change", 2))
    return int(sync) if isinstance(sync, int) else 2


async def status(client: LspClient) -> dict[str, Any] | None:
    """``fimls.status`` (None when the server has no such command)."""
    try:
        result = await client.call(
            "workspace/executeCommand", {"command": "fimls.status", "arguments": []}, 10
        )
    except (RpcError, TimeoutError):
        return None
    return result if isinstance(result, dict) else None


async def wait_ready(client: LspClient) -> None:
    """Give the server time to resolve its model (fimls: until status shows one)."""
    deadline = now() + 5
    while now() < deadline:
        info = await status(client)
        if info is None:
            await asyncio.sleep(0.5)
            return
        if info.get("model"):
            return
        await asyncio.sleep(0.05)


def attribute(reqs: list[Req], logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Match each backend call to the request that caused it: the latest one sent before the call
    whose text before the cursor ends with the prompt (else the latest one sent before it)."""
    ordered = sorted(reqs, key=lambda r: r.t_send)
    unmatched = []
    for entry in logs:
        started, prompt = entry["started"], entry["prompt"]
        candidates = [r for r in ordered if r.t_send <= started]
        owner = next((r for r in reversed(candidates) if r.doc.prefix_ends_with(r.pos, prompt)), None)
        if owner is None and candidates:
            owner = candidates[-1]
            unmatched.append(entry)
        if owner is not None:
            owner.backend.append(entry)
    return unmatched


def overheads(reqs: list[Req], debounce: float) -> dict[str, list[float]]:
    """Server overhead per answered request (ms), split by how it was served."""
    out: dict[str, list[float]] = {
        "backend": [],
        "backend_before": [],
        "backend_after": [],
        "local": [],
        "debounced": [],
        "cancel_ack": [],
    }
    for r in reqs:
        if r.t_recv is None:
            continue
        if r.error == CANCELLED and r.t_cancel is not None:
            out["cancel_ack"].append((r.t_recv - r.t_cancel) * 1000)
            continue
        if r.error is not None or (r.t_cancel is not None and r.t_cancel <= r.t_recv):
            continue  # answered after it was cancelled/superseded: not a latency sample
        total = r.t_recv - r.t_send
        if r.backend:
            done = [e for e in r.backend if e["finished"] is not None]
            if not done or not all(e["completed"] for e in r.backend):
                continue  # closed early or cut: the backend's share is unknown
            first = min(e["started"] for e in done)
            last = max(e["finished"] for e in done)
            out["backend"].append((total - debounce - (last - first)) * 1000)
            out["backend_before"].append((first - r.t_send - debounce) * 1000)
            out["backend_after"].append((r.t_recv - last) * 1000)
        elif total >= debounce:
            out["debounced"].append((total - debounce) * 1000)
        else:
            out["local"].append(total * 1000)
    return out


def price(usage: dict[str, Any], model: str) -> float:
    """USD for one answer at DeepSeek's list prices as fimls knows them."""
    from fimls.backends.base import Usage
    from fimls.backends.deepseek import DEFAULT_PRICE, PRICES

    parsed = Usage.parse(usage)
    return PRICES.get(model, DEFAULT_PRICE).cost(parsed) if parsed is not None else 0.0


def cost_of(logs: list[dict[str, Any]]) -> tuple[int, int, int, float]:
    """(prompt tokens, cache-hit tokens, completion tokens, USD) over every FIM call with usage.

    Calls the server closed early are billed in full (usage as the fake computed it): errs high.
    """
    prompt = hit = completion = 0
    usd = 0.0
    for entry in logs:
        usage = entry.get("usage")
        if not usage or entry.get("status") != 200:
            continue
        prompt += usage["prompt_tokens"]
        hit += usage["prompt_cache_hit_tokens"]
        completion += usage["completion_tokens"]
        usd += price(usage, entry.get("model") or "deepseek-flash")
    return prompt, hit, completion, usd


def summarize_latency(values: list[float]) -> dict[str, float | int | None]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else None,
    }


def common_figures(
    session: Session,
    logs: list[dict[str, Any]],
    debounce: float,
    stats_before: dict[str, float],
    stats_after: dict[str, float],
    keystrokes: int,
) -> dict[str, Any]:
    """Figures both scenarios report."""
    unmatched = attribute(session.order, logs)
    ov = overheads(session.order, debounce)
    served = ov["backend"] + ov["local"] + ov["debounced"]
    stale = [r for r in session.order if r.stale]
    cpu = stats_after["cpu_s"] - stats_before["cpu_s"]
    per_key = cpu / keystrokes * 1000 if keystrokes else None
    return {
        "backend_requests": len(logs),
        "backend_unattributed": len(unmatched),
        "backend_aborted": sum(1 for e in logs if e["aborted"]),
        "backend_time_ms": summarize_latency(
            [(e["finished"] - e["started"]) * 1000 for e in logs if e["completed"] and e["finished"]]
        ),
        "overhead_ms": summarize_latency(served),
        "overhead_backend_ms": summarize_latency(ov["backend"]),
        "overhead_backend_before_call_ms": summarize_latency(ov["backend_before"]),
        "overhead_backend_after_call_ms": summarize_latency(ov["backend_after"]),
        "overhead_local_ms": summarize_latency(ov["local"]),
        "overhead_debounced_ms": summarize_latency(ov["debounced"]),
        "cancel_ack_ms": summarize_latency(ov["cancel_ack"]),
        "stale_responses": len(stale),
        "stale_lag_ms": [round(((r.t_recv or 0) - (r.t_next or 0)) * 1000, 3) for r in stale],
        "misplaced_responses": sum(1 for r in session.order if r.misplaced),
        "suggestions_shown": session.shown,
        "suggestions_wrong": session.wrong,
        "suggestions_too_short": session.too_short,
        "wrong_examples": session.wrong_examples,
        "typing_through_client": session.typing_through_client,
        "peak_rss_mb": round(stats_after["hwm_mb"], 2),
        "rss_end_mb": round(stats_after["rss_mb"], 2),
        "cpu_s": round(cpu, 3),
        "cpu_ms_per_keystroke": per_key,
        "cpu_share_at_20cps": per_key * 20 / 1000 if per_key is not None else None,
        "_overhead_samples": served,
    }


def dump_requests(args: argparse.Namespace, label: str, session: Session) -> None:
    """Append one JSON line per request to ``--dump-requests`` (for profiling)."""
    if not args.dump_requests:
        return
    with open(args.dump_requests, "a", encoding="utf-8") as out:
        for r in session.order:
            row = {
                "label": label,
                "rid": r.rid,
                "kind": r.kind,
                "version": r.version,
                "t_send": r.t_send,
                "t_cancel": r.t_cancel,
                "t_next": r.t_next,
                "t_recv": r.t_recv,
                "error": r.error,
                "text_len": None if r.text is None else len(r.text),
                "stale": r.stale,
                "backend": [
                    {
                        **{k: e[k] for k in ("started", "finished", "completed", "aborted", "usage")},
                        "prompt_chars": len(e["prompt"]),
                        "suffix_chars": len(e["suffix"]),
                        "prompt_head": e["prompt"][:40],
                    }
                    for e in r.backend
                ],
            }
            out.write(json.dumps(row) + "\n")


def status_subset(info: dict[str, Any] | None) -> dict[str, Any] | None:
    if info is None:
        return None
    keys = (
        "model",
        "requestsSent",
        "responses",
        "errors",
        "cacheHits",
        "typingThroughHits",
        "sharedInFlight",
        "superseded",
        "staleDropped",
        "promptTokens",
        "promptCacheHitTokens",
        "promptCacheHitShare",
        "costUsd",
        "lastError",
    )
    return {k: info.get(k) for k in keys}


# -- scenario: typing a file back in --------------------------------------------------------------


def make_region(text: str, rng: random.Random, lines: int, layout: str, uri: str, language: str) -> Doc:
    """Cut the file at a random line in its middle half; the next ``lines`` lines are to be typed."""
    all_lines = text.split("\n")
    lines = max(1, min(lines, len(all_lines) // 2))
    lo = len(all_lines) // 4
    hi = max(lo + 1, (3 * len(all_lines)) // 4 - lines)
    start = rng.randrange(lo, hi)
    while start < len(all_lines) - 1 and not all_lines[start].strip():
        start += 1  # begin on a line with code, like someone starting a new statement
    region = all_lines[start : start + lines]
    indent = indentation(region[0])
    head = "\n".join(all_lines[:start]) + "\n" + indent
    target = "\n".join(region)[len(indent) :]
    tail = "\n" + "\n".join(all_lines[start + lines :]) if layout == "hole" else ""
    if layout == "hole" and start + lines >= len(all_lines):
        tail = ""
    return Doc(uri, language, head, target, tail, version=0)


async def typing_run(
    args: argparse.Namespace, fake: FakeProcess, path: Path, run: int
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    rng = random.Random(f"{args.seed}:{path.name}:{run}")
    text = read_source(path)
    uri = f"file:///bench/typing/{corpus_name(path)}"
    doc = make_region(text, rng, args.lines, args.layout, uri, language_of(path))
    speed = args.speedup
    debounce = args.debounce_ms / 1000
    client, caps = await launch(args, fake.url)
    try:
        session = Session(client, sync_kind_of(caps), speed, random.Random(rng.random()))
        await session.open(doc)
        session.current = doc
        await wait_ready(client)
        fake.reset()
        before = proc_stats(client.pid)
        t_start = now()
        line_count = 0
        think_every = rng.randint(3, 5)

        def char_delay() -> float:
            return rng.uniform(0.08, 0.12)

        def pause_after(chars: str) -> float:
            nonlocal line_count, think_every
            if chars.startswith("\n"):
                line_count += 1
                if line_count % think_every == 0:
                    think_every = rng.randint(3, 5)
                    return rng.uniform(1.2, 2.5)
                return rng.uniform(0.4, 0.9)
            if chars in PAUSE_CHARS and rng.random() < 0.05:
                return rng.uniform(0.3, 0.7)
            return 0.0

        await session.type_through(doc, char_delay, pause_after)
        t_end = now()
        if session.actions and not session.actions[-1].pause:
            session.actions[-1].pause = math.inf  # the person stops: the end is a pause too
        await session.settle(debounce + args.latency + 2.0)
        await asyncio.sleep(0.05)
        after = proc_stats(client.pid)
        info = await status(client)
    finally:
        await client.stop()
    await asyncio.sleep(0.1)  # let the fake notice closed connections
    logs = [e for e in fake.logs() if e["started"] >= t_start - 0.001]

    keys = [a for a in session.actions if a.kind == "key"]
    accepts = [a for a in session.actions if a.kind == "accept"]
    typed_chars = sum(a.chars for a in keys)
    accepted_chars = sum(a.chars for a in accepts)
    figures = common_figures(session, logs, debounce, before, after, len(keys))
    dump_requests(args, f"typing:{corpus_name(path)}:{run}", session)

    # Pauses: backend calls started in each, and the time to a suggestion.
    actions = session.actions
    per_pause, tts_all, tts_backend = [], [], []
    in_pause = 0
    pauses_without = 0
    for i, action in enumerate(actions):
        if not action.pause:
            continue
        end = actions[i + 1].t if i + 1 < len(actions) else t_end + 10
        count = sum(1 for e in logs if action.t <= e["started"] < end)
        per_pause.append(count)
        in_pause += count
        r = action.req
        if r.text is not None and r.t_recv is not None and r.t_recv < end:
            ms = (r.t_recv - r.t_send) * 1000
            tts_all.append(ms)
            if r.backend:
                tts_backend.append(ms)
        else:
            pauses_without += 1
    along = sum(len(r.backend) for r in session.order if r.along)
    prompt, hit, completion, usd = cost_of(logs)
    figures.update(
        {
            "file": corpus_name(path),
            "lines_in_file": text.count("\n") + 1,
            "run": run,
            "start_line": doc.start_line,
            "lines_typed": args.lines,
            "region_chars": len(doc.target),
            "completed": doc.pos == len(doc.target),
            "session_s": round(t_end - t_start, 3),
            "keystrokes": len(keys),
            "chars_typed": typed_chars,
            "accepts": len(accepts),
            "chars_accepted": accepted_chars,
            "accepted_share": accepted_chars / len(doc.target) if doc.target else None,
            "requests_per_100_typed": len(logs) / len(keys) * 100 if keys else None,
            "pauses": len(per_pause),
            "pauses_without_suggestion": pauses_without,
            "max_requests_per_pause": max(per_pause) if per_pause else 0,
            "pauses_over_one_request": sum(1 for c in per_pause if c > 1),
            "requests_outside_pauses": len(logs) - in_pause,
            "requests_while_typing_along": along,
            "typing_through_server": (info or {}).get("typingThroughHits"),
            "time_to_suggestion_ms": summarize_latency(tts_all),
            "time_to_suggestion_backend_ms": summarize_latency(tts_backend),
            "prompt_tokens": prompt,
            "prompt_cache_hit_tokens": hit,
            "completion_tokens": completion,
            "prompt_cache_hit_share": hit / prompt if prompt else None,
            "cost_usd": usd,
            "cost_per_1000_accepted_usd": usd / accepted_chars * 1000 if accepted_chars else None,
            "cpu_share_session": figures["cpu_s"] / (t_end - t_start) if t_end > t_start else None,
            "status": status_subset(info),
        }
    )
    samples = {"overhead": figures.pop("_overhead_samples"), "tts": tts_all, "tts_backend": tts_backend}
    return figures, samples


# -- scenario: many open documents ----------------------------------------------------------------


async def many_run(args: argparse.Namespace, fake: FakeProcess, path: Path, run: int) -> dict[str, Any]:
    rng = random.Random(f"{args.seed}:many:{run}")
    text = read_source(path)
    if args.many_lines:
        text = "\n".join(text.split("\n")[: args.many_lines]) + "\n"
    lines = text.split("\n")
    name = corpus_name(path)
    debounce = args.debounce_ms / 1000
    client, caps = await launch(args, fake.url)
    try:
        session = Session(client, sync_kind_of(caps), args.speedup, random.Random(rng.random()))
        versions: dict[str, int] = {}
        uris = [f"file:///bench/many/doc{i:02d}/{name}" for i in range(args.many_docs)]
        base = proc_stats(client.pid)
        t_open = now()
        for uri in uris:
            versions[uri] = 0
            await session.open(Doc(uri, language_of(path), text, "", "", 0))
        await wait_ready(client)
        open_s = now() - t_open
        opened = proc_stats(client.pid)
        fake.reset()
        before = proc_stats(client.pid)
        t_start = now()
        keystrokes = 0
        candidates = [i for i, line in enumerate(lines[:-1]) if len(line.strip()) >= 8]
        while keystrokes < args.many_keystrokes:
            uri = rng.choice(uris)
            index = rng.choice(candidates)
            line = lines[index]
            indent = indentation(line)
            head = "\n".join(lines[:index]) + "\n" + indent
            doc = Doc(
                uri, language_of(path), head, line[len(indent) :], "\n" + "\n".join(lines[index + 1 :]), 0
            )
            doc.version = versions[uri]
            start = doc.cursor()
            end = {"line": index, "character": utf16_len(line)}
            await session.edit(doc, "delete", "", start, end, advance=False)
            before_keys = len(session.actions)
            think_at = rng.randint(1, min(6, len(doc.target)))
            typed = 0

            def pause_after(_chars: str, think_at: int = think_at) -> float:
                nonlocal typed
                typed += 1
                return rng.uniform(0.5, 0.9) if typed == think_at else 0.0

            await session.type_through(doc, lambda: rng.uniform(0.03, 0.06), pause_after)
            keystrokes += sum(1 for a in session.actions[before_keys:] if a.kind == "key")
            versions[uri] = doc.version
            session.accept_at = None
            await asyncio.sleep(rng.uniform(0.3, 0.7) / args.speedup)
        t_end = now()
        await session.settle(debounce + args.latency + 2.0)
        after = proc_stats(client.pid)
        info = await status(client)
    finally:
        await client.stop()
    await asyncio.sleep(0.1)
    logs = [e for e in fake.logs() if e["started"] >= t_start - 0.001]
    keys = [a for a in session.actions if a.kind == "key"]
    accepts = [a for a in session.actions if a.kind == "accept"]
    figures = common_figures(session, logs, debounce, before, after, len(keys))
    samples = figures.pop("_overhead_samples")
    dump_requests(args, f"many:{run}", session)
    figures["_samples"] = samples
    accepted = sum(a.chars for a in accepts)
    typed = sum(a.chars for a in keys)
    figures.update(
        {
            "run": run,
            "file": name,
            "documents": len(uris),
            "lines_per_document": len(lines),
            "chars_per_document": len(text),
            "open_s": round(open_s, 3),
            "rss_before_open_mb": round(base["rss_mb"], 2),
            "rss_after_open_mb": round(opened["rss_mb"], 2),
            "session_s": round(t_end - t_start, 3),
            "keystrokes": len(keys),
            "accepts": len(accepts),
            "accepted_share": accepted / (accepted + typed) if accepted + typed else None,
            "cpu_share_session": figures["cpu_s"] / (t_end - t_start) if t_end > t_start else None,
            "status": status_subset(info),
        }
    )
    return figures


# -- scenario: steady typing at a fixed rate -----------------------------------------------------


async def steady_run(args: argparse.Namespace, fake: FakeProcess, path: Path, run: int) -> dict[str, Any]:
    """Type without pauses at ``--steady-cps`` into a big file, ignoring suggestions: the server's
    CPU share of a core is measured directly (no backend calls happen: every gap < debounce)."""
    rng = random.Random(f"{args.seed}:steady:{run}")
    text = read_source(path)
    uri = f"file:///bench/steady/{corpus_name(path)}"
    lines_needed = max(20, args.steady_keystrokes // 10)
    doc = make_region(text, rng, lines_needed, "hole", uri, language_of(path))
    debounce = args.debounce_ms / 1000
    client, caps = await launch(args, fake.url)
    try:
        session = Session(client, sync_kind_of(caps), args.speedup, random.Random(rng.random()))
        session.accepting = False
        await session.open(doc)
        session.current = doc
        await wait_ready(client)
        fake.reset()
        before = proc_stats(client.pid)
        t_start = now()
        interval = 1.0 / args.steady_cps
        await session.type_through(doc, lambda: interval, lambda _c: 0.0, limit=args.steady_keystrokes)
        t_end = now()
        after = proc_stats(client.pid)
        await session.settle(debounce + args.latency + 2.0)
        info = await status(client)
    finally:
        await client.stop()
    await asyncio.sleep(0.1)
    logs = [e for e in fake.logs() if e["started"] >= t_start - 0.001]
    keys = [a for a in session.actions if a.kind == "key"]
    figures = common_figures(session, logs, debounce, before, after, len(keys))
    figures.pop("_overhead_samples")
    dump_requests(args, f"steady:{run}", session)
    wall = t_end - t_start
    figures.update(
        {
            "run": run,
            "file": corpus_name(path),
            "lines_in_file": text.count("\n") + 1,
            "cps_target": args.steady_cps,
            "keystrokes": len(keys),
            "session_s": round(wall, 3),
            "cps_achieved": len(keys) / wall if wall > 0 else None,
            "cpu_share_session": figures["cpu_s"] / wall if wall > 0 else None,
            "status": status_subset(info),
        }
    )
    return figures


# -- scenario: cold start -------------------------------------------------------------------------


async def cold_start(args: argparse.Namespace, url: str) -> dict[str, Any]:
    """Spawn to ``initialize`` response, ``--cold-spawns`` times after one uncounted spawn that
    fills the bytecode cache (what an install does).  Also spawn to "ready": the answer to a
    ``shutdown`` request sent right after ``initialized``, which only a fully started server
    can give (a server may answer ``initialize`` before it has loaded everything)."""
    samples = []
    ready = []
    for i in range(args.cold_spawns + 1):
        client = LspClient(args.server, server_env(url))
        t0 = now()
        await client.start()
        options = {"baseUrl": url, "apiKey": API_KEY}
        await client.call("initialize", init_params(options), timeout=30)
        t_init = now()
        await client.notify("initialized", {})
        await client.call("shutdown", None, timeout=30)
        if i:
            samples.append((t_init - t0) * 1000)
            ready.append((now() - t0) * 1000)
        await client.notify("exit", None)
        assert client.proc is not None
        await asyncio.wait_for(client.proc.wait(), 10)
        await client.stop()
    return {
        "samples_ms": [round(s, 2) for s in samples],
        "median_ms": median(samples),
        "ready_samples_ms": [round(s, 2) for s in ready],
        "ready_median_ms": median(ready),
    }


# -- aggregation, table, plot ---------------------------------------------------------------------


def dig(run: dict[str, Any], key: str) -> Any:
    value: Any = run
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


TYPING_ROWS: list[tuple[str, str, str]] = [
    # (key, label, how runs are combined)
    ("requests_per_100_typed", "backend requests / 100 typed chars", "median"),
    ("max_requests_per_pause", "max backend requests in one pause", "max"),
    ("requests_outside_pauses", "backend requests while typing (all runs)", "sum"),
    ("requests_while_typing_along", "backend requests while typing along (all runs)", "sum"),
    ("typing_through_server", "typing-through hits (server)", "median"),
    ("typing_through_client", "typing-through hits (client)", "median"),
    ("accepted_share", "chars accepted / all chars", "median"),
    ("time_to_suggestion_ms.p50", "time to suggestion after pause p50 ms", "median"),
    ("time_to_suggestion_ms.p90", "time to suggestion after pause p90 ms", "median"),
    ("time_to_suggestion_backend_ms.p50", "  backend-served p50 ms", "median"),
    ("time_to_suggestion_backend_ms.p90", "  backend-served p90 ms", "median"),
    ("pauses_without_suggestion", "pauses without a suggestion (median)", "median"),
    ("overhead_ms.p50", "server overhead p50 ms", "median"),
    ("overhead_ms.p99", "server overhead p99 ms", "median"),
    ("overhead_ms.n", "  overhead samples per run", "median"),
    ("cancel_ack_ms.p50", "cancel answered p50 ms", "median"),
    ("stale_responses", "stale responses (all runs)", "sum"),
    ("prompt_cache_hit_share", "prompt-cache hit share", "median"),
    ("cost_per_1000_accepted_usd", "USD per 1,000 accepted chars", "median"),
    ("peak_rss_mb", "peak RSS MB", "median"),
    ("cpu_ms_per_keystroke", "CPU ms per keystroke", "median"),
    ("cpu_share_at_20cps", "CPU share of a core at 20 chars/s", "median"),
    ("keystrokes", "keystrokes per run", "median"),
]

STEADY_ROWS: list[tuple[str, str, str]] = [
    ("cps_achieved", "chars/s achieved", "median"),
    ("cpu_share_session", "server CPU share of a core (measured)", "median"),
    ("cpu_ms_per_keystroke", "CPU ms per keystroke", "median"),
    ("cancel_ack_ms.p50", "cancel answered p50 ms", "median"),
    ("cancel_ack_ms.p99", "cancel answered p99 ms", "median"),
    ("backend_requests", "backend requests per run", "median"),
    ("stale_responses", "stale responses (all runs)", "sum"),
    ("peak_rss_mb", "peak RSS MB", "median"),
    ("keystrokes", "keystrokes per run", "median"),
]

MANY_ROWS: list[tuple[str, str, str]] = [
    ("peak_rss_mb", "peak RSS MB", "median"),
    ("rss_after_open_mb", "RSS after opening MB", "median"),
    ("open_s", "open all documents s", "median"),
    ("overhead_ms.p50", "server overhead p50 ms", "median"),
    ("overhead_ms.p99", "server overhead p99 ms", "median"),
    ("overhead_ms.n", "  overhead samples per run", "median"),
    ("cancel_ack_ms.p50", "cancel answered p50 ms", "median"),
    ("cancel_ack_ms.p99", "cancel answered p99 ms", "median"),
    ("cpu_ms_per_keystroke", "CPU ms per keystroke", "median"),
    ("cpu_share_at_20cps", "CPU share of a core at 20 chars/s", "median"),
    ("stale_responses", "stale responses (all runs)", "sum"),
    ("backend_requests", "backend requests per run", "median"),
    ("keystrokes", "keystrokes per run", "median"),
]


def combine(runs: list[dict[str, Any]], key: str, how: str) -> float | None:
    values = [dig(r, key) for r in runs]
    values = [v for v in values if v is not None]
    if not values:
        return None
    if how == "max":
        return max(values)
    if how == "sum":
        return sum(values)
    return median(values)


def fmt(value: Any, key: str) -> str:
    if value is None:
        return "n/a"
    if "share" in key:
        return f"{value * 100:.1f}%"
    if "usd" in key:
        return f"{value:.5f}"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
    return str(int(value)) if isinstance(value, float) else str(value)


def checks(result: dict[str, Any], latency_ms: float, debounce_ms: float) -> list[dict[str, Any]]:
    """Every target of issue 4 with the measured value and PASS/MISS."""
    out: list[dict[str, Any]] = []

    def add(target: str, value: Any, ok: bool | None, where: str = "") -> None:
        verdict = "n/a" if ok is None else ("PASS" if ok else "MISS")
        out.append({"target": target, "where": where, "value": value, "verdict": verdict})

    typing = result.get("typing", {})
    for name, block in typing.get("files", {}).items():
        med = block["median"]
        p50, p99 = med.get("overhead_ms.p50"), med.get("overhead_ms.p99")
        add("server overhead p50 <= 2 ms", p50, None if p50 is None else p50 <= T_OVERHEAD_P50, name)
        add("server overhead p99 <= 10 ms", p99, None if p99 is None else p99 <= T_OVERHEAD_P99, name)
    if typing.get("runs"):
        runs = typing["runs"]
        worst = max(r["max_requests_per_pause"] for r in runs)
        add("at most one backend request per typing pause (max over runs)", worst, worst <= 1)
        outside = sum(r["requests_outside_pauses"] for r in runs)
        add("backend requests outside pauses (all runs)", outside, None)
        along = sum(r["requests_while_typing_along"] for r in runs)
        add("zero backend requests while typing along a suggestion", along, along == 0)
        limit = latency_ms + debounce_ms + T_TTS_SLACK
        for key, label in (("p50", "p50"), ("p90", "p90")):
            value = median(dig(r, f"time_to_suggestion_backend_ms.{key}") for r in runs)
            add(
                f"time to suggestion (backend-served) {label} <= {limit:g} ms",
                value,
                None if value is None else value <= limit,
            )
        share = median(r["prompt_cache_hit_share"] for r in runs)
        add("prompt-cache hit share >= 80%", share, None if share is None else share >= T_CACHE_SHARE)
        stale = sum(r["stale_responses"] for r in runs)
        add("stale responses (all runs)", stale, stale == 0)
        cpu = median(r["cpu_share_at_20cps"] for r in runs)
        add("CPU at 20 chars/s (extrapolated from CPU per keystroke, typing)", cpu, None)
    steady = result.get("steady")
    if steady and steady.get("runs"):
        cpu = steady["median"].get("cpu_share_session")
        name = steady["runs"][0]["file"]
        add(
            "CPU at 20 chars/s < 10% of a core (measured, steady typing)",
            cpu,
            None if cpu is None else cpu < T_CPU_SHARE_20CPS,
            name,
        )
    cold = result.get("cold_start")
    if cold:
        value = cold["median_ms"]
        add("cold start to initialize <= 300 ms", value, value <= T_COLD_START)
    many = result.get("many_docs")
    if many and many.get("runs"):
        med = many["median"]
        rss = med.get("peak_rss_mb")
        add(
            "peak RSS <= 80 MB with 50 open 5,000-line docs",
            rss,
            None if rss is None else rss <= T_PEAK_RSS_MANY,
        )
        p50, p99 = med.get("overhead_ms.p50"), med.get("overhead_ms.p99")
        add("server overhead p50 <= 2 ms", p50, None if p50 is None else p50 <= T_OVERHEAD_P50, "many docs")
        add("server overhead p99 <= 10 ms", p99, None if p99 is None else p99 <= T_OVERHEAD_P99, "many docs")
        cpu = med.get("cpu_share_at_20cps")
        add(
            "CPU at 20 chars/s < 10% of a core",
            cpu,
            None if cpu is None else cpu < T_CPU_SHARE_20CPS,
            "many docs",
        )
    return out


def tables(result: dict[str, Any]) -> str:
    """Markdown tables (also printed)."""
    lines: list[str] = []
    typing = result.get("typing", {})
    files = list(typing.get("files", {}))
    if files:
        runs = typing["runs"]
        header = ["figure", *files, "all runs"]
        lines.append(f"Typing scenario, medians over {result['meta']['runs']} runs per file:")
        lines.append("")
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for key, label, how in TYPING_ROWS:
            cells = [fmt(typing["files"][f]["median"].get(key), key) for f in files]
            cells.append(fmt(combine(runs, key, how), key))
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    steady = result.get("steady")
    if steady and steady.get("runs"):
        m = steady["runs"][0]
        lines.append(
            f"Steady typing at {m['cps_target']:g} chars/s into {m['file']} ({m['lines_in_file']} lines), "
            f"suggestions ignored, medians over {len(steady['runs'])} runs:"
        )
        lines.append("")
        lines.append("| figure | value |")
        lines.append("|---|---|")
        for key, label, how in STEADY_ROWS:
            lines.append(f"| {label} | {fmt(combine(steady['runs'], key, how), key)} |")
        lines.append("")
    many = result.get("many_docs")
    if many and many.get("runs"):
        m = many["runs"][0]
        lines.append(
            f"Many documents: {m['documents']} open copies of {m['file']} ({m['lines_per_document']} lines, "
            f"{m['chars_per_document']} chars each), medians over {len(many['runs'])} runs:"
        )
        lines.append("")
        lines.append("| figure | value |")
        lines.append("|---|---|")
        for key, label, how in MANY_ROWS:
            lines.append(f"| {label} | {fmt(combine(many['runs'], key, how), key)} |")
        lines.append("")
    cold = result.get("cold_start")
    if cold:
        lines.append(
            f"Cold start to `initialize` response: median {cold['median_ms']:.1f} ms "
            f"(samples: {', '.join(f'{s:.1f}' for s in cold['samples_ms'])})"
        )
        lines.append("")
        if cold.get("ready_median_ms") is not None:
            lines.append(
                f"Cold start to ready (answer to a `shutdown` sent right after `initialized`): "
                f"median {cold['ready_median_ms']:.1f} ms "
                f"(samples: {', '.join(f'{s:.1f}' for s in cold['ready_samples_ms'])})"
            )
            lines.append("")
    lines.append("| target | where | measured | verdict |")
    lines.append("|---|---|---|---|")
    for check in result["checks"]:
        value = check["value"]
        key = "share" if "share" in check["target"] or "CPU" in check["target"] else ""
        lines.append(f"| {check['target']} | {check['where']} | {fmt(value, key)} | {check['verdict']} |")
    return "\n".join(lines)


def plot(result: dict[str, Any], samples: dict[str, dict[str, list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    meta = result["meta"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.4))
    tts_files = [f for f in samples if samples[f]["tts"]]
    if tts_files:
        left.boxplot([samples[f]["tts"] for f in tts_files], whis=(5, 95), showfliers=True)
        left.set_xticks(range(1, len(tts_files) + 1), tts_files, fontsize=8)
    limit = meta["latency_ms"] + meta["debounce_ms"]
    left.axhline(
        limit + T_TTS_SLACK, color="tab:red", linestyle="--", label=f"target {limit + T_TTS_SLACK:g} ms"
    )
    left.axhline(limit, color="tab:gray", linestyle=":", label=f"debounce + latency = {limit:g} ms")
    left.set_ylabel("ms from the last keystroke before a pause")
    left.set_title("Time to suggestion after a pause (all runs; whiskers 5-95%)", fontsize=10)
    left.legend(loc="lower right", fontsize=8)
    for name, got in samples.items():
        values = sorted(max(v, 0.05) for v in got["overhead"])
        if not values:
            continue
        ys = [0.0] + [(i + 1) / len(values) for i in range(len(values))]
        right.step([values[0], *values], ys, where="post", label=f"{name} (n={len(values)})")
    right.set_xscale("log")
    ticks = [0.25, 0.5, 1, 2, 5, 10, 20, 50, 100]
    right.xaxis.set_major_locator(FixedLocator(ticks))
    right.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    right.xaxis.set_minor_formatter(NullFormatter())
    right.set_xlim(0.25, 100)
    right.axvline(T_OVERHEAD_P50, color="tab:green", linestyle="--", label="p50 target 2 ms")
    right.axvline(T_OVERHEAD_P99, color="tab:red", linestyle="--", label="p99 target 10 ms")
    right.axhline(0.5, color="tab:gray", linewidth=0.5)
    right.axhline(0.99, color="tab:gray", linewidth=0.5)
    right.set_xlabel("server overhead per answered request, ms (log scale)")
    right.set_ylabel("cumulative share of requests")
    right.set_title("Server overhead (response latency - debounce - backend time)", fontsize=10)
    right.legend(loc="upper left", fontsize=7)
    m = meta["machine"]
    fig.suptitle(
        f"{meta['server_label']} ({meta['fimls_git']}) vs fake DeepSeek "
        f"({meta['latency_ms']:g} ms, oracle, SSE), "
        f"{meta['date_utc']}; {m['cpu']} x{m['nproc']}, Python {m['python']}",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = None
    with contextlib.suppress(OSError):
        load = Path("/proc/loadavg").read_text().split()[:3]
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": load,
    }


def git_rev() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "fimls"], capture_output=True, text=True
        )
    except OSError:
        return None
    rev = out.stdout.strip() or None
    return f"{rev}+dirty" if rev and dirty.stdout.strip() else rev


# -- main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", default=None, help='server command (default: "<python> -m fimls")')
    p.add_argument("--server-log", help="append the server's stderr to this file")
    p.add_argument(
        "--attach",
        help="command started after each server spawn, e.g. a profiler: "
        '"py-spy record -f raw -o prof-{n}.txt --pid {pid}" ({n} counts spawns); '
        "it gets SIGINT before the server is shut down",
    )
    p.add_argument("--init-options", default="{}", help="JSON merged into initializationOptions")
    p.add_argument(
        "--scenario", nargs="+", choices=["all", "typing", "steady", "many", "cold"], default=["all"]
    )
    p.add_argument("--files", nargs="+", help=f"corpus files to type (default: {' '.join(DEFAULT_FILES)})")
    p.add_argument("--runs", type=int, default=5, help="runs per file (typing), default 5")
    p.add_argument("--lines", type=int, default=120, help="lines typed per run, default 120")
    p.add_argument("--layout", choices=["hole", "truncate"], default="hole", help="keep or drop text after")
    p.add_argument("--latency", type=float, default=0.3, help="fake backend latency in seconds, default 0.3")
    p.add_argument("--debounce-ms", type=int, default=150, help="server debounce (sent as debounceMs)")
    p.add_argument("--no-oracle", action="store_true", help="fake answers a fixed text instead")
    p.add_argument("--speedup", type=float, default=1.0, help="divide every human delay by this")
    p.add_argument("--seed", default="1")
    p.add_argument("--many-docs", type=int, default=50)
    p.add_argument("--many-file", default=MANY_FILE)
    p.add_argument("--many-keystrokes", type=int, default=400)
    p.add_argument(
        "--many-lines", type=int, help="cut each document to this many lines (default: whole file)"
    )
    p.add_argument("--many-runs", type=int, default=3)
    p.add_argument("--steady-file", default="d3.js")
    p.add_argument("--steady-cps", type=float, default=20.0)
    p.add_argument("--steady-keystrokes", type=int, default=400)
    p.add_argument("--steady-runs", type=int, default=3)
    p.add_argument("--cold-spawns", type=int, default=7)
    p.add_argument("--out", help="JSON output (default bench-results/bench-<time>.json)")
    p.add_argument("--plot", help="PNG output (default next to the JSON)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG (no matplotlib needed)")
    p.add_argument("--dump-requests", help="append per-request timings (JSON lines) to this file")
    p.add_argument("--quick", action="store_true", help="tiny smoke preset (seconds, not for figures)")
    p.add_argument("--fake-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    scenarios = [s for s in args.scenario if s != "all"] or ["typing", "steady", "many", "cold"]
    args.scenarios = scenarios
    args.server = shlex.split(args.server) if args.server else [sys.executable, "-m", "fimls"]
    args.init_options = json.loads(args.init_options)
    if args.quick:
        args.files = args.files or ["json_decoder.py.txt"]
        args.runs = 1
        args.lines = min(args.lines, 6)
        # Human delays / 4: keystroke gaps (20-30 ms) stay below the debounce (35 ms) and answers
        # (~55 ms after a keystroke) come well inside pauses (>= 75 ms), as in a real-time run.
        args.speedup = 4.0 if args.speedup == 1.0 else args.speedup
        args.latency = 0.01 if args.latency == 0.3 else args.latency
        args.debounce_ms = 35 if args.debounce_ms == 150 else args.debounce_ms
        args.many_docs = min(args.many_docs, 3)
        args.many_file = "json_decoder.py.txt" if args.many_file == MANY_FILE else args.many_file
        args.many_keystrokes = min(args.many_keystrokes, 25)
        args.many_runs = 1
        args.cold_spawns = min(args.cold_spawns, 2)
        args.steady_file = "json_decoder.py.txt" if args.steady_file == "d3.js" else args.steady_file
        args.steady_keystrokes = min(args.steady_keystrokes, 30)
        args.steady_runs = 1
    args.files = args.files or DEFAULT_FILES
    return args


def resolve(name: str) -> Path:
    path = Path(name)
    if path.exists():
        return path
    path = CORPUS / name
    if not path.exists():
        raise SystemExit(f"no such corpus file: {name}")
    return path


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    result: dict[str, Any] = {
        "meta": {
            "date_utc": stamp,
            "server": args.server,
            "server_label": "fimls" if args.server[-2:] == ["-m", "fimls"] else " ".join(args.server),
            "fimls_git": git_rev(),
            "machine": machine(),
            "latency_ms": args.latency * 1000,
            "debounce_ms": args.debounce_ms,
            "oracle": not args.no_oracle,
            "layout": args.layout,
            "lines_per_run": args.lines,
            "runs": args.runs,
            "speedup": args.speedup,
            "seed": args.seed,
            "init_options": args.init_options,
            "argv": sys.argv[1:],
        }
    }
    samples: dict[str, dict[str, list[float]]] = {}
    if "cold" in args.scenarios:
        fake = FakeProcess(args.latency, [])
        try:
            print(f"cold start: {args.cold_spawns} spawns ...", flush=True)
            result["cold_start"] = await cold_start(args, fake.url)
        finally:
            fake.close()
    if "typing" in args.scenarios:
        runs: list[dict[str, Any]] = []
        files: dict[str, Any] = {}
        for name in args.files:
            path = resolve(name)
            oracle = [] if args.no_oracle else [path]
            fake = FakeProcess(args.latency, oracle)
            label = corpus_name(path)
            samples[label] = {"tts": [], "tts_backend": [], "overhead": []}
            file_runs = []
            try:
                for run in range(args.runs):
                    figures, got = await typing_run(args, fake, path, run)
                    for key, values in got.items():
                        samples[label][key].extend(values)
                    file_runs.append(figures)
                    print(
                        f"typing {label} run {run + 1}/{args.runs}: {figures['keystrokes']} keys, "
                        f"{figures['accepts']} accepts ({fmt(figures['accepted_share'], 'share')}), "
                        f"{figures['backend_requests']} backend, overhead p50/p99 "
                        f"{fmt(dig(figures, 'overhead_ms.p50'), '')}/"
                        f"{fmt(dig(figures, 'overhead_ms.p99'), '')} ms, "
                        f"stale {figures['stale_responses']}, {figures['session_s']:.0f} s",
                        flush=True,
                    )
            finally:
                fake.close()
            runs.extend(file_runs)
            files[label] = {
                "runs": len(file_runs),
                "median": {key: combine(file_runs, key, how) for key, _label, how in TYPING_ROWS},
                "pooled_overhead_ms": summarize_latency(samples[label]["overhead"]),
                "pooled_time_to_suggestion_ms": summarize_latency(samples[label]["tts"]),
            }
        result["typing"] = {"files": files, "runs": runs}
    if "steady" in args.scenarios:
        path = resolve(args.steady_file)
        fake = FakeProcess(args.latency, [] if args.no_oracle else [path])
        steady_runs = []
        try:
            for run in range(args.steady_runs):
                figures = await steady_run(args, fake, path, run)
                steady_runs.append(figures)
                print(
                    f"steady run {run + 1}/{args.steady_runs}: {figures['keystrokes']} keys at "
                    f"{fmt(figures['cps_achieved'], '')} chars/s, server CPU "
                    f"{fmt(figures['cpu_share_session'], 'share')} of a core",
                    flush=True,
                )
        finally:
            fake.close()
        result["steady"] = {
            "runs": steady_runs,
            "median": {key: combine(steady_runs, key, how) for key, _label, how in STEADY_ROWS},
        }
    if "many" in args.scenarios:
        path = resolve(args.many_file)
        fake = FakeProcess(args.latency, [] if args.no_oracle else [path])
        many_runs = []
        try:
            for run in range(args.many_runs):
                figures = await many_run(args, fake, path, run)
                samples.setdefault("many docs", {"tts": [], "tts_backend": [], "overhead": []})
                samples["many docs"]["overhead"].extend(figures.pop("_samples"))
                many_runs.append(figures)
                print(
                    f"many docs run {run + 1}/{args.many_runs}: peak RSS {figures['peak_rss_mb']:.1f} MB, "
                    f"overhead p50/p99 {fmt(dig(figures, 'overhead_ms.p50'), '')}/"
                    f"{fmt(dig(figures, 'overhead_ms.p99'), '')} ms, "
                    f"CPU {fmt(figures['cpu_ms_per_keystroke'], '')} ms/key",
                    flush=True,
                )
        finally:
            fake.close()
        result["many_docs"] = {
            "runs": many_runs,
            "median": {key: combine(many_runs, key, how) for key, _label, how in MANY_ROWS},
        }
    result["checks"] = checks(result, args.latency * 1000, args.debounce_ms)
    result["_samples"] = samples
    return result


def main(argv: list[str] | None = None) -> int:
    if argv is None and "--fake-child" in sys.argv[1:]:
        return fake_child_main()
    args = parse_args(argv)
    result = asyncio.run(run_all(args))
    samples = result.pop("_samples")
    text = tables(result)
    print()
    print(text)
    out = Path(args.out) if args.out else ROOT / "bench-results" / f"bench-{result['meta']['date_utc']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(text + "\n", encoding="utf-8")
    print(f"\nwrote {out} and {out.with_suffix('.md')}")
    if not args.no_plot and samples:
        png = Path(args.plot) if args.plot else out.with_suffix(".png")
        try:
            plot(result, samples, png)
        except ImportError:
            print("matplotlib is not installed; no plot (pip install matplotlib, or --no-plot)")
        else:
            print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
