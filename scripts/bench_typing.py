#!/usr/bin/env python3
"""Typing benchmark for fimls (or any LSP server with ``textDocument/inlineCompletion``) against a
backend that generates at a model's speed.

A neutral LSP client (raw JSON-RPC over stdio) drives the server the way an editor does while a
person types: one incremental ``didChange`` per keystroke (UTF-16 positions), one
``textDocument/inlineCompletion`` (trigger kind Automatic) per keystroke, and ``$/cancelRequest``
for the previous request still pending.  The person types a real source file back in: keystrokes
80-120 ms apart, now and then a short pause after a word, 0.4-1.2 s after Enter, a few seconds
every few lines (all seeded).  They press Tab when a suggestion on screen matches what they are
about to type, after a human reaction delay, and type along a suggestion otherwise.

The backend is ``scripts/fake_deepseek.py`` in a child process (its threads do not share the
client's GIL) in oracle mode (it answers with the file's true continuation): the first token
comes after ``first token`` ms, then one SSE event per token at ``token rate`` tokens/s, three
characters a token; generation stops when the client hangs up; DeepSeek's prefix-cache
accounting.

Scenarios:

- ``sweep``: first token 200/400/800 ms x 30/60/120 tokens/s; in every cell fimls's default
  configuration and the plain one (no early answer, no prefetch, fixed 150 ms debounce) type the
  same regions with the same typist, so the gain is a ratio from the same run.  The target cell
  (400 ms, 60 tokens/s) also runs against the OpenAI-compatible wire format.
- ``overhead``: server overhead in the plain configuration on single-line holes, each answer
  complete before the next keystroke.
- ``steady`` (CPU at 20 chars/s, suggestions ignored), ``many`` (50 open 5,000+ line files),
  ``cold`` (spawn to the first served request).

See docs/benchmarks.md for what each figure means.  Examples::

    .venv/bin/python scripts/bench_typing.py --runs 3 --out bench-results/sweep.json   # figures of record
    .venv/bin/python scripts/bench_typing.py --scenario sweep --first-token-ms 400 --token-rate 60 \\
        --files d3.js --runs 1 --lines 8                                              # one short cell
    .venv/bin/python scripts/bench_typing.py --quick --no-plot                          # smoke run (seconds)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import math
import os
import platform
import random
import shlex
import shutil
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
TARGET_FILES = ["json_decoder.py.txt", "argparse.py.txt", "d3.js"]
OTHER_FILES = ["json_decoder.py.txt"]
MANY_FILE = "_pydecimal.py.txt"
LANGUAGES = {".py": "python", ".js": "javascript", ".ts": "typescript", ".go": "go", ".rs": "rust"}
API_KEY = "sk-bench-0000000000000000"
MIN_ACCEPT = 3  # a suggestion shorter than this is not worth a Tab
WORD_ENDS = frozenset(" (.,=:")
CHARS_PER_TOKEN = 3.0
PAUSE_MIN = 0.4  # seconds: a gap from this long on is a pause (time to suggestion is measured there)

CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},
    "plain": {"earlyAnswer": False, "prefetch": False, "adaptiveDebounce": False, "debounceMs": 150},
    # The default, with the typed file in a workspace folder and other corpus files open in
    # the editor: context from other files goes into every prompt.
    "context": {},
}
ATTRIBUTION_CHARS = 400
"""Characters at the end of a prompt that tie a backend call to the request that made it."""
CONTEXT_OPEN = 4
"""Other corpus files open beside the typed one in the ``context`` configuration."""
WIRES = {
    # wire: (initializationOptions besides baseUrl, fake flavor, models the fake lists)
    "deepseek": ({}, "openai", ("deepseek-flash", "deepseek-chat")),
    "openai": ({"backend": "openai-compatible"}, "openai", ("bench-coder",)),
}

# Targets (issue 10 at 400 ms / 60 tokens/s; issue 11 for overhead and cold start).
TARGET_CELL = (400, 60)
T_ACCEPTED = 0.90
T_TTS_SLACK_MS = 150.0
T_REQUESTS_PER_100 = 15.0
T_CACHE_SHARE = 0.85
T_OVERHEAD_P50 = 5.0
T_OVERHEAD_P99 = 15.0
T_COLD_START_MS = 1000.0
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
    rank = (len(data) - 1) * q / 100
    lo = math.floor(rank)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (rank - lo)


def median(values: Iterable[float | None]) -> float | None:
    """Median of the non-None values; None if there are none."""
    data = [v for v in values if v is not None]
    return statistics.median(data) if data else None


def summarize(values: list[float]) -> dict[str, float | int | None]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else None,
    }


def corpus_name(path: Path) -> str:
    """The file's real name: corpus Python files carry ``.txt`` so linters leave them alone."""
    return path.name[:-4] if path.name.endswith(".txt") else path.name


def language_of(path: Path) -> str:
    return LANGUAGES.get(Path(corpus_name(path)).suffix, "plaintext")


def read_source(path: Path) -> str:
    return path.read_text(encoding="utf-8").replace("\r\n", "\n")


def indentation(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def resolve(name: str) -> Path:
    path = Path(name)
    if path.exists():
        return path
    path = CORPUS / name
    if not path.exists():
        raise SystemExit(f"no such corpus file: {name}")
    return path


def proc_stats(pid: int) -> dict[str, float]:
    """CPU seconds (utime+stime), VmHWM and VmRSS in MB of one process (/proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {"cpu_s": 0.0, "hwm_mb": 0.0, "rss_mb": 0.0}
    fields = stat[stat.rfind(")") + 2 :].split()
    out = {
        "cpu_s": (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"),
        "hwm_mb": 0.0,
        "rss_mb": 0.0,
    }
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            out["hwm_mb"] = int(line.split()[1]) / 1024
        elif line.startswith("VmRSS:"):
            out["rss_mb"] = int(line.split()[1]) / 1024
    return out


# -- the fake backend, in a child process ---------------------------------------------------------


def fake_child_main() -> int:
    """``--fake-child``: serve a FakeDeepSeek; commands on stdin, JSON answers on stdout."""
    sys.path.insert(0, str(SCRIPTS))
    from fake_deepseek import FakeDeepSeek

    config = json.loads(sys.stdin.readline())
    oracle = "\n".join(read_source(Path(p)) for p in config["oracle"]) if config["oracle"] else None
    fake = FakeDeepSeek(
        first_token=config["first_token"],
        token_rate=config["token_rate"],
        chars_per_token=CHARS_PER_TOKEN,
        oracle_text=oracle,
        flavor=config["flavor"],
        models=config["models"],
    )
    fake.start()
    print(json.dumps({"url": fake.url}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "reset":
            fake.reset()
            print("{}", flush=True)
        elif command == "logs":
            rows = []
            for log in fake.fim_requests():
                headers = {k.lower(): v for k, v in log.headers.items()}
                rows.append(
                    {
                        "started": log.started,
                        "finished": log.finished,
                        "first_token_at": log.first_token_at,
                        "status": log.status,
                        "aborted": log.aborted,
                        "completed": log.completed,
                        "wire": log.wire,
                        "speculative": headers.get("x-fimls-speculative") == "1",
                        "prefix": log.prefix or "",
                        "suffix": log.suffix or "",
                        "prompt_tokens": log.prompt_tokens,
                        "cached_tokens": log.cached_tokens,
                        "tokens_generated": log.tokens_generated,
                        "tokens_sent": log.tokens_sent,
                    }
                )
            print(json.dumps(rows), flush=True)
        elif command == "quit":
            break
    fake.stop()
    return 0


class FakeProcess:
    """Parent side of ``--fake-child``."""

    def __init__(
        self, first_token: float, token_rate: float | None, oracle: list[Path], wire: str = "deepseek"
    ) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--fake-child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        _options, flavor, models = WIRES[wire]
        config = {
            "first_token": first_token,
            "token_rate": token_rate,
            "oracle": [str(p) for p in oracle],
            "flavor": flavor,
            "models": list(models),
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
            raise RuntimeError("the fake backend's process died")
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

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> None:
        stderr: Any = asyncio.subprocess.DEVNULL
        if self.stderr_path is not None:
            stderr = open(self.stderr_path, "ab")
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

    def request_frame(self, method: str, params: Any) -> tuple[int, bytes]:
        self._next_id += 1
        rid = self._next_id
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
        _t, message = await asyncio.wait_for(self._futures[rid], timeout)
        if "error" in message:
            raise RpcError(message["error"])
        return message.get("result")

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
                await self._dispatch(json.loads(body), t)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for future in self._futures.values():
                if not future.done():
                    future.set_exception(ConnectionError("server closed its output"))

    async def _dispatch(self, message: dict[str, Any], t: float) -> None:
        if "method" in message:
            if "id" in message:  # a request from the server: answer it neutrally
                result: Any = None
                if message["method"] == "workspace/configuration":
                    result = [None for _ in (message.get("params") or {}).get("items", [])]
                await self.write(self.frame({"jsonrpc": "2.0", "id": message["id"], "result": result}))
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

    async def stop(self) -> None:
        """shutdown + exit; kill the process (by its pid) if it does not leave."""
        if self.proc is None:
            return
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                await self.call("shutdown", None, timeout=5)
            with contextlib.suppress(Exception):
                await self.notify("exit", None)
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 2)


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
CONFIG_HOME = Path(tempfile.gettempdir()) / "fimls-bench-config"  # no user config file in there


def server_env(url: str, wire: str) -> dict[str, str]:
    """The server's environment: the key where the backend looks for it, no user config file, and
    bytecode cached outside the repository (as after an install)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEEPSEEK_", "FIMLS_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault("PYTHONPYCACHEPREFIX", str(PYCACHE))
    env["XDG_CONFIG_HOME"] = str(CONFIG_HOME)
    if wire == "deepseek":
        env.update(DEEPSEEK_BASE_URL=url, DEEPSEEK_API_KEY=API_KEY)
    else:
        env["FIMLS_API_KEY"] = API_KEY
    return env


def server_options(url: str, wire: str, config: str, extra: dict[str, Any]) -> dict[str, Any]:
    """initializationOptions for one wire format and configuration."""
    return {"baseUrl": url, **WIRES[wire][0], **CONFIGS[config], **extra}


def init_params(options: dict[str, Any], folder: Path | None = None) -> dict[str, Any]:
    root = folder.as_uri() if folder is not None else None
    return {
        "processId": os.getpid(),
        "clientInfo": {"name": "fimls-bench", "version": "2"},
        "rootUri": root,
        "workspaceFolders": [{"uri": root, "name": folder.name}] if folder is not None else None,
        "capabilities": CLIENT_CAPABILITIES,
        "initializationOptions": options,
    }


# -- documents, the typist and the editor ---------------------------------------------------------


class Doc:
    """A document as the editor sees it: head + target[:pos] + tail, cursor after target[:pos]."""

    def __init__(self, uri: str, language: str, head: str, target: str, tail: str) -> None:
        self.uri, self.language = uri, language
        self.head, self.target, self.tail = head, target, tail
        self.version = 0
        self.pos = 0
        self.line = head.count("\n")
        self.line_prefix = head[head.rfind("\n") + 1 :]
        self.final = head + target
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


def make_region(text: str, rng: random.Random, lines: int, uri: str, language: str) -> Doc:
    """Cut a hole at a random line in the file's middle half: the next ``lines`` lines are typed."""
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
    tail = "\n" + "\n".join(all_lines[start + lines :]) if start + lines < len(all_lines) else ""
    return Doc(uri, language, head, target, tail)


class Typist:
    """When the person types: seeded gaps between keys and pauses.

    80-120 ms between keys; after one word in eight a short pause (0.2-0.6 s); after Enter
    0.4-1.2 s; every 3-5 lines a longer one (2-4 s).  Lines accepted count as lines passed.
    A suggestion is accepted a reaction time (0.15-0.3 s) after it appears; after Tab the person
    takes the same time to see what was inserted before the next key.
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.next_think = rng.randint(3, 5)

    def gap(self) -> float:
        return self.rng.uniform(0.08, 0.12)

    def pause_after(self, chars: str, lines_passed: int) -> float:
        rng = self.rng
        if chars.startswith("\n"):
            if lines_passed >= self.next_think:
                self.next_think = lines_passed + rng.randint(3, 5)
                return rng.uniform(2.0, 4.0)
            return rng.uniform(0.4, 1.2)
        if chars in WORD_ENDS and rng.random() < 0.125:
            return rng.uniform(0.2, 0.6)
        return 0.0

    def reaction(self) -> float:
        """Seconds from a suggestion on screen to Tab."""
        return self.rng.uniform(0.15, 0.30)


@dataclass
class Req:
    """One inlineCompletion request and what became of it."""

    rid: int
    doc: Doc
    version: int
    pos: int
    kind: str  # key | accept | delete
    t_send: float = 0.0
    t_cancel: float | None = None
    t_recv: float | None = None
    error: int | None = None
    text: str | None = None  # first item's insert text, when it applies at the cursor
    backend: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Visible:
    """The ghost text the editor shows now."""

    doc: Doc
    version: int
    text: str


@dataclass
class Action:
    t: float
    kind: str
    req: Req
    chars: int
    pause: float = 0.0  # the pause the person takes after this action (0: typing on)


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
    """The editor and the person: edits, requests, ghost text and Tab presses."""

    def __init__(self, client: LspClient, typist: Typist, speedup: float, *, accepting: bool = True) -> None:
        self.client = client
        self.typist = typist
        self.speedup = speedup
        self.accepting = accepting
        self.reqs: dict[int, Req] = {}
        self.order: list[Req] = []
        self.actions: list[Action] = []
        self.pending: Req | None = None
        self.visible: Visible | None = None
        self.accept_at: float | None = None
        self.current: Doc | None = None
        self.event = asyncio.Event()
        self.shown_span: bytearray = bytearray()  # target characters ever shown correctly
        self.wrong_chars = 0  # characters of suggestions that did not match
        self.wrong = 0
        client.on_response = self.on_response

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
        doc = req.doc
        if got is None or doc is not self.current or req.version != doc.version:
            return  # nothing, or for a version the editor no longer has
        text, rng = got
        start = (rng or {}).get("start", doc.cursor())
        if start != doc.cursor() or (rng or {}).get("end", start) != start:
            return
        req.text = text
        self.visible = Visible(doc, doc.version, text)
        if doc.target.startswith(text, doc.pos):
            if len(self.shown_span) < len(doc.target):
                self.shown_span = bytearray(len(doc.target))
            self.shown_span[doc.pos : doc.pos + len(text)] = b"\x01" * len(text)
            if self.accepting and self.accept_at is None and len(text) >= MIN_ACCEPT and text.strip():
                self.accept_at = t + self.typist.reaction() / self.speedup
        else:
            self.wrong += 1
            self.wrong_chars += len(text)
            self.accept_at = None
        self.event.set()

    def acceptable(self) -> Visible | None:
        vis, doc = self.visible, self.current
        if vis is None or doc is None or vis.doc is not doc or vis.version != doc.version:
            return None
        ok = len(vis.text) >= MIN_ACCEPT and vis.text.strip() and doc.target.startswith(vis.text, doc.pos)
        return vis if ok else None

    async def open(self, doc: Doc) -> None:
        item = {"uri": doc.uri, "languageId": doc.language, "version": doc.version, "text": doc.text}
        await self.client.notify("textDocument/didOpen", {"textDocument": item})

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
        vis = self.visible
        if (
            kind == "key"
            and vis is not None
            and vis.doc is doc
            and vis.version == doc.version
            and vis.text.startswith(text)
        ):
            rest = vis.text[len(text) :]  # typing along: the editor keeps the rest on screen
            self.visible = Visible(doc, doc.version + 1, rest) if rest else None
        else:
            self.visible = None
            self.accept_at = None
        if advance:
            doc.advance(text)
        doc.version += 1
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
        req = Req(rid, doc, doc.version, doc.pos, kind)
        self.reqs[rid] = req
        self.order.append(req)
        self.current = doc
        req.t_send = await self.client.write(b"".join(frames))
        if prev is not None:
            prev.t_cancel = req.t_send
        self.pending = req
        return req

    async def wait_until(self, deadline: float) -> None:
        """Sleep until deadline, or until a planned Tab press comes due first."""
        while True:
            wake = deadline if self.accept_at is None else min(deadline, self.accept_at)
            left = wake - now()
            if left <= 0:
                return
            self.event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.event.wait(), left)

    async def type_through(
        self,
        doc: Doc,
        gap: Callable[[], float] | None = None,
        pause_after: Callable[[str, int], float] | None = None,
        limit: int | None = None,
    ) -> None:
        """Type doc.target from doc.pos to its end (or ``limit`` keystrokes), accepting matching
        suggestions."""
        gap = gap or self.typist.gap
        pause_after = pause_after or self.typist.pause_after
        t_next = now() + gap() / self.speedup
        keys = 0
        while doc.pos < len(doc.target) and (limit is None or keys < limit):
            await self.wait_until(t_next)
            vis = self.acceptable()
            if self.accept_at is not None and self.accept_at <= now():
                self.accept_at = None
                if vis is not None:
                    req = await self.edit(doc, "accept", vis.text)
                    self.actions.append(Action(req.t_send, "accept", req, len(vis.text)))
                    # The text jumped: the person looks at what Tab inserted before typing on.
                    t_next = now() + self.typist.reaction() / self.speedup
                    continue
            if now() < t_next:
                continue
            chars = self.next_keystroke(doc)
            keys += 1
            req = await self.edit(doc, "key", chars)
            pause = pause_after(chars, doc.line - doc.start_line)
            self.actions.append(Action(req.t_send, "key", req, len(chars), pause))
            t_next = now() + (pause or gap()) / self.speedup

    @staticmethod
    def next_keystroke(doc: Doc) -> str:
        """One character; Enter also inserts the next line's indentation (auto-indent)."""
        rest = doc.remaining
        if rest[0] != "\n":
            return rest[0]
        return "\n" + indentation(rest[1:].split("\n", 1)[0])

    async def settle(self, timeout: float) -> None:
        """Wait for the last request's answer (the person stopped typing)."""
        deadline = now() + timeout
        while self.pending is not None and now() < deadline:
            self.event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.event.wait(), min(0.05, max(0.0, deadline - now())))


# -- running one server ---------------------------------------------------------------------------


async def launch(
    args: argparse.Namespace, url: str, wire: str, config: str, folder: Path | None = None
) -> tuple[LspClient, dict[str, Any]]:
    """Spawn the server and initialize it; the client and the server's capabilities."""
    stderr = Path(args.server_log) if args.server_log else None
    client = LspClient(args.server, server_env(url, wire), stderr)
    await client.start()
    options = server_options(url, wire, config, args.init_options)
    if wire == "deepseek":
        options["apiKey"] = API_KEY
    result = await client.call("initialize", init_params(options, folder), timeout=30)
    await client.notify("initialized", {})
    caps = result.get("capabilities", {}) if isinstance(result, dict) else {}
    if caps.get("inlineCompletionProvider") in (None, False):
        raise SystemExit("the server does not offer textDocument/inlineCompletion")
    return client, caps


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


def cost(entry: dict[str, Any]) -> float:
    """USD of one call at DeepSeek's list price for deepseek-flash, whatever the wire: the prompt
    (cache hits at the cached price) and every token generated, shown or not."""
    from fimls.backends.base import Usage
    from fimls.backends.deepseek import DEFAULT_PRICE

    prompt, hit = entry["prompt_tokens"], entry["cached_tokens"]
    return DEFAULT_PRICE.cost(Usage(prompt, entry["tokens_generated"], hit, prompt - hit))


def attribute(reqs: list[Req], logs: list[dict[str, Any]]) -> None:
    """Give each non-speculative backend call to the latest request sent before it whose text
    before the cursor ends with the end of the call's prompt (its start may be context from
    other files)."""
    ordered = sorted(reqs, key=lambda r: r.t_send)
    for entry in logs:
        if entry["speculative"]:
            continue
        started, prompt = entry["started"], entry["prefix"][-ATTRIBUTION_CHARS:]
        owner = next(
            (r for r in reversed(ordered) if r.t_send <= started and r.doc.prefix_ends_with(r.pos, prompt)),
            None,
        )
        if owner is not None:
            owner.backend.append(entry)


def overheads(reqs: list[Req], debounce: float, parts: dict[str, list[float]] | None = None) -> list[float]:
    """Server overhead (ms) of requests answered from their own, complete backend call: response
    time minus the fixed debounce minus the fake's time from request line to last byte.

    Only meaningful with a fixed debounce and no early answer (the plain configuration). ``parts``
    collects its two halves: ``before`` (end of the debounce to the fake's request line) and
    ``after`` (the fake's last byte to the answer at the client)."""
    out = []
    for r in reqs:
        if r.t_recv is None or r.error is not None or r.text is None:
            continue
        if r.t_cancel is not None and r.t_cancel <= r.t_recv:
            continue  # answered after it was superseded
        if len(r.backend) != 1:
            continue
        call = r.backend[0]
        if not call["completed"] or call["finished"] is None or call["started"] < r.t_send:
            continue
        out.append((r.t_recv - r.t_send - debounce - (call["finished"] - call["started"])) * 1000)
        if parts is not None:
            parts.setdefault("before", []).append((call["started"] - r.t_send - debounce) * 1000)
            parts.setdefault("after", []).append((r.t_recv - call["finished"]) * 1000)
    return out


def status_subset(info: dict[str, Any] | None) -> dict[str, Any] | None:
    if info is None:
        return None
    keys = (
        "model",
        "requestsSent",
        "speculativeRequests",
        "speculativeHits",
        "speculativeCostUsd",
        "earlyAnswers",
        "typingThroughHits",
        "streamsCancelled",
        "cacheHits",
        "superseded",
        "promptTokens",
        "promptCacheHitTokens",
        "promptCacheHitShare",
        "costUsd",
        "errors",
        "lastError",
    )
    return {k: info.get(k) for k in keys}


# -- scenario: typing a file back in --------------------------------------------------------------


async def open_workspace(session: Session, folder: Path, typed: Path) -> None:
    """Put the corpus into ``folder`` and open a few other files of it, as tabs in an editor."""
    others = sorted(p for p in CORPUS.iterdir() if p.suffix in (".txt", ".js") and p != typed)
    for other in others:
        (folder / corpus_name(other)).write_text(read_source(other), encoding="utf-8")
    same = [p for p in others if language_of(p) == language_of(typed)]
    for other in (same + [p for p in others if p not in same])[:CONTEXT_OPEN]:
        await did_open(session.client, folder / corpus_name(other), other)


async def did_open(client: LspClient, path: Path, source: Path) -> None:
    """Open ``path`` in the editor with the text of corpus file ``source``."""
    text = read_source(source)
    item = {"uri": path.as_uri(), "languageId": language_of(source), "version": 1, "text": text}
    await client.notify("textDocument/didOpen", {"textDocument": item})


async def typing_run(
    args: argparse.Namespace, fake: FakeProcess, path: Path, run: int, config: str, wire: str
) -> tuple[dict[str, Any], list[float]]:
    """One person types one region in one configuration; (figures, overhead samples)."""
    seed = f"{args.seed}:{corpus_name(path)}:{run}"  # the same region and typist in every configuration
    rng = random.Random(seed)
    text = read_source(path)
    folder = Path(tempfile.mkdtemp(prefix="fimls-bench-workspace-")) if config == "context" else None
    uri = (folder / corpus_name(path)).as_uri() if folder else f"file:///bench/typing/{corpus_name(path)}"
    doc = make_region(text, rng, args.lines, uri, language_of(path))
    client, _caps = await launch(args, fake.url, wire, config, folder)
    try:
        session = Session(client, Typist(random.Random(seed + ":typist")), args.speedup)
        if folder is not None:
            await open_workspace(session, folder, path)
        await session.open(doc)
        session.current = doc
        await wait_ready(client)
        fake.reset()
        before = proc_stats(client.pid)
        t_start = now()
        await session.type_through(doc)
        t_end = now()
        if session.actions and not session.actions[-1].pause:
            session.actions[-1].pause = math.inf  # the person stops: the end is a pause too
        await session.settle(args.first_token + 3.0)
        await asyncio.sleep(0.3)  # let background streams end or be cut
        after = proc_stats(client.pid)
        info = await status(client)
    finally:
        await client.stop()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    await asyncio.sleep(0.1)  # let the fake notice closed connections
    logs = [e for e in fake.logs() if e["started"] >= t_start - 0.001]
    attribute(session.order, logs)
    keys = [a for a in session.actions if a.kind == "key"]
    accepts = [a for a in session.actions if a.kind == "accept"]
    accepted = sum(a.chars for a in accepts)

    # Pauses: from the last keystroke before a pause to a suggestion on screen.
    tts: list[float] = []
    without = 0
    pauses = 0
    for i, action in enumerate(session.actions):
        if action.pause < PAUSE_MIN / args.speedup:
            continue
        pauses += 1
        end = session.actions[i + 1].t if i + 1 < len(session.actions) else math.inf
        shown = [
            r.t_recv
            for r in session.order
            if r.text is not None and r.t_recv is not None and action.t <= r.t_send and r.t_recv < end
        ]
        if shown:
            tts.append((min(shown) - action.t) * 1000)
        else:
            without += 1

    speculative = [e for e in logs if e["speculative"]]
    generated = sum(e["tokens_generated"] for e in logs)
    shown_tokens = (sum(session.shown_span) + session.wrong_chars) / CHARS_PER_TOKEN
    prompt = sum(e["prompt_tokens"] for e in logs)
    hit = sum(e["cached_tokens"] for e in logs)
    warm = sorted(logs, key=lambda e: e["started"])[1:]
    warm_prompt = sum(e["prompt_tokens"] for e in warm)
    warm_hit = sum(e["cached_tokens"] for e in warm)
    usd = sum(cost(e) for e in logs)
    spec_usd = sum(cost(e) for e in speculative)
    debounce = CONFIGS[config]["debounceMs"] / 1000 if config == "plain" else None
    samples = overheads(session.order, debounce) if debounce is not None else []
    cpu = after["cpu_s"] - before["cpu_s"]
    figures = {
        "file": corpus_name(path),
        "run": run,
        "config": config,
        "wire": wire,
        "start_line": doc.start_line,
        "region_chars": len(doc.target),
        "completed": doc.pos == len(doc.target),
        "session_s": round(t_end - t_start, 3),
        "keystrokes": len(keys),
        "chars_typed": sum(a.chars for a in keys),
        "accepts": len(accepts),
        "chars_accepted": accepted,
        # A keystroke is one character typed, Enter's auto-indentation included (the editor's work).
        "accepted_share": accepted / (accepted + len(keys)) if accepted + len(keys) else None,
        "accepted_share_of_region": accepted / len(doc.target) if doc.target else None,
        "pauses": pauses,
        "pauses_without_suggestion": without,
        "pauses_without_share": without / pauses if pauses else None,
        "time_to_suggestion_ms": summarize(tts),
        "backend_requests": len(logs),
        "speculative_requests": len(speculative),
        "requests_per_100_typed": len(logs) / len(keys) * 100 if keys else None,
        "requests_per_100_chars": len(logs) / len(doc.target) * 100 if doc.target else None,
        "speculative_per_100_typed": len(speculative) / len(keys) * 100 if keys else None,
        "requests_aborted": sum(1 for e in logs if e["aborted"]),
        "prompt_tokens": prompt,
        "prompt_cache_hit_tokens": hit,
        "prompt_cache_hit_share": hit / prompt if prompt else None,
        # Without the run's first call, which meets an empty cache (a real session is hours long).
        "prompt_cache_hit_share_warm": warm_hit / warm_prompt if warm_prompt else None,
        "cost_usd": usd,
        "speculative_cost_usd": spec_usd,
        "cost_per_1000_accepted_usd": usd / accepted * 1000 if accepted else None,
        "tokens_generated": generated,
        "tokens_shown": round(shown_tokens, 1),
        "waste_share": max(generated - shown_tokens, 0) / generated if generated else None,
        "suggestions_wrong": session.wrong,
        "overhead_ms": summarize(samples),
        "peak_rss_mb": round(after["hwm_mb"], 2),
        "cpu_ms_per_keystroke": cpu / len(keys) * 1000 if keys else None,
        "status": status_subset(info),
    }
    return figures, samples


# -- scenario: steady typing at a fixed rate -----------------------------------------------------


async def steady_run(args: argparse.Namespace, fake: FakeProcess, path: Path, run: int) -> dict[str, Any]:
    """Type without pauses at ``--steady-cps`` into a big file, ignoring suggestions: the server's
    CPU share of a core."""
    rng = random.Random(f"{args.seed}:steady:{run}")
    doc = make_region(
        read_source(path),
        rng,
        max(20, args.steady_keystrokes // 10),
        "file:///bench/steady/f",
        language_of(path),
    )
    client, _caps = await launch(args, fake.url, "deepseek", "default")
    try:
        session = Session(client, Typist(rng), args.speedup, accepting=False)
        await session.open(doc)
        session.current = doc
        await wait_ready(client)
        fake.reset()
        before = proc_stats(client.pid)
        t_start = now()
        interval = 1.0 / args.steady_cps
        await session.type_through(doc, lambda: interval, lambda _c, _n: 0.0, limit=args.steady_keystrokes)
        t_end = now()
        after = proc_stats(client.pid)
        await session.settle(args.first_token + 3.0)
    finally:
        await client.stop()
    keys = sum(1 for a in session.actions if a.kind == "key")
    wall = t_end - t_start
    cpu = after["cpu_s"] - before["cpu_s"]
    return {
        "run": run,
        "file": corpus_name(path),
        "keystrokes": keys,
        "cps_achieved": keys / wall if wall > 0 else None,
        "cpu_share": cpu / wall if wall > 0 else None,
        "cpu_ms_per_keystroke": cpu / keys * 1000 if keys else None,
        "peak_rss_mb": round(after["hwm_mb"], 2),
    }


# -- scenario: many open documents ----------------------------------------------------------------


async def many_run(args: argparse.Namespace, fake: FakeProcess, path: Path, run: int) -> dict[str, Any]:
    """``--many-docs`` open copies of a big file, short edits across them: memory and CPU."""
    rng = random.Random(f"{args.seed}:many:{run}")
    text = read_source(path)
    lines = text.split("\n")
    name = corpus_name(path)
    client, _caps = await launch(args, fake.url, "deepseek", "default")
    try:
        session = Session(client, Typist(rng), args.speedup)
        uris = [f"file:///bench/many/doc{i:02d}/{name}" for i in range(args.many_docs)]
        versions = dict.fromkeys(uris, 0)
        t_open = now()
        for uri in uris:
            await session.open(Doc(uri, language_of(path), text, "", ""))
        await wait_ready(client)
        open_s = now() - t_open
        opened = proc_stats(client.pid)
        fake.reset()
        before = proc_stats(client.pid)
        keystrokes = 0
        candidates = [i for i, line in enumerate(lines[:-1]) if len(line.strip()) >= 8]
        while keystrokes < args.many_keystrokes:
            uri = rng.choice(uris)
            index = rng.choice(candidates)
            line = lines[index]
            indent = indentation(line)
            head = "\n".join(lines[:index]) + "\n" + indent
            doc = Doc(uri, language_of(path), head, line[len(indent) :], "\n" + "\n".join(lines[index + 1 :]))
            doc.version = versions[uri]
            end = {"line": index, "character": utf16_len(line)}
            await session.edit(doc, "delete", "", doc.cursor(), end, advance=False)
            count = len(session.actions)
            await session.type_through(doc, lambda: rng.uniform(0.08, 0.12), lambda _c, _n: 0.0)
            keystrokes += sum(1 for a in session.actions[count:] if a.kind == "key")
            versions[uri] = doc.version
            session.accept_at = None
            await asyncio.sleep(rng.uniform(0.3, 0.7) / args.speedup)
        after = proc_stats(client.pid)
        await session.settle(args.first_token + 3.0)
    finally:
        await client.stop()
    return {
        "run": run,
        "file": name,
        "documents": len(uris),
        "lines_per_document": len(lines),
        "open_s": round(open_s, 3),
        "rss_after_open_mb": round(opened["rss_mb"], 2),
        "peak_rss_mb": round(after["hwm_mb"], 2),
        "keystrokes": keystrokes,
        "cpu_ms_per_keystroke": (after["cpu_s"] - before["cpu_s"]) / keystrokes * 1000
        if keystrokes
        else None,
    }


# -- scenario: cold start -------------------------------------------------------------------------


def overhead_docs(text: str, rng: random.Random, count: int, language: str) -> list[Doc]:
    """Single-line holes: a few characters cut from the middle of a line, before a space or a
    comma, so the rest of the line is the suffix and the answer ends with the line."""
    lines = text.split("\n")
    docs: list[Doc] = []
    candidates = [i for i, line in enumerate(lines) if len(line.strip()) >= 30]
    while len(docs) < count and candidates:
        i = rng.choice(candidates)
        line = lines[i]
        indent = len(indentation(line))
        cuts = [b for b in range(indent + 12, len(line) - 4) if line[b] in " ," and line[b - 1].isalnum()]
        if not cuts:
            continue
        b = rng.choice(cuts)
        a = max(indent + 1, b - rng.randint(6, 12))
        head = "\n".join(lines[:i]) + "\n" + line[:a]
        tail = line[b:] + "\n" + "\n".join(lines[i + 1 :])
        docs.append(Doc(f"file:///bench/overhead/{len(docs)}.txt", language, head, line[a:b], tail))
    return docs


async def overhead_run(
    args: argparse.Namespace, fake: FakeProcess, path: Path, open_files: int = 0
) -> tuple[list[float], dict[str, list[float]]]:
    """Server overhead where it is well defined: the plain configuration (fixed debounce, an answer
    only once complete), single-line holes, one keystroke and then a wait until the whole answer
    is in.  Per request: response time - the debounce - the fake's time from request line to
    last byte.  So it covers fimls's own work and both hops (client pipe, loopback HTTP).

    With ``open_files``, the holes lie in a workspace folder where that many other files are open
    (copies of the corpus), so context from other files is chosen and sent with each prompt."""
    docs = overhead_docs(
        read_source(path), random.Random(f"{args.seed}:overhead"), args.overhead_samples, language_of(path)
    )
    folder = Path(tempfile.mkdtemp(prefix="fimls-bench-open-")) if open_files else None
    if folder is not None:
        for doc in docs:
            doc.uri = (folder / doc.uri.rpartition("/")[2].replace(".txt", ".py")).as_uri()
    client, _caps = await launch(args, fake.url, "deepseek", "plain", folder)
    try:
        session = Session(client, Typist(random.Random(args.seed)), 1.0, accepting=False)
        if folder is not None:
            corpus = sorted(p for p in CORPUS.iterdir() if p.suffix in (".txt", ".js"))
            for i in range(open_files):
                source = corpus[i % len(corpus)]
                copy = folder / f"open{i}_{corpus_name(source)}"
                copy.write_text(read_source(source), encoding="utf-8")
                await did_open(client, copy, source)
        await wait_ready(client)
        fake.reset()
        t_start = now()
        for doc in docs:
            await session.open(doc)
            session.current = doc
            await asyncio.sleep(0.05)
            await session.edit(doc, "key", doc.target[0])
            await session.settle(args.first_token + 3.0)
            await asyncio.sleep(0.1)
    finally:
        await client.stop()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    logs = [e for e in fake.logs() if e["started"] >= t_start - 0.001]
    attribute(session.order, logs)
    parts: dict[str, list[float]] = {}
    return overheads(session.order, CONFIGS["plain"]["debounceMs"] / 1000, parts), parts


async def cold_start(args: argparse.Namespace, url: str) -> dict[str, Any]:
    """Spawn to the first served request: ``initialize``, ``didOpen``, then an invoked
    ``inlineCompletion`` answered from the fake (which answers at once), ``--cold-spawns`` times
    after one uncounted spawn that fills the bytecode cache (what an install does)."""
    samples, init = [], []
    text = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return "
    for i in range(args.cold_spawns + 1):
        client = LspClient(args.server, server_env(url, "deepseek"))
        t0 = now()
        await client.start()
        try:
            await client.call("initialize", init_params({"baseUrl": url, "apiKey": API_KEY}), timeout=30)
            t_init = now()
            await client.notify("initialized", {})
            doc = {"uri": "file:///bench/cold.py", "languageId": "python", "version": 0, "text": text}
            await client.notify("textDocument/didOpen", {"textDocument": doc})
            params = {
                "textDocument": {"uri": doc["uri"]},
                "position": {"line": 5, "character": 11},
                "context": {"triggerKind": 1, "selectedCompletionInfo": None},
            }
            result = await client.call("textDocument/inlineCompletion", params, timeout=30)
            t_served = now()
        finally:
            await client.stop()
        if first_item(result) is None:
            raise SystemExit(f"cold start: the first request got no suggestion ({result!r})")
        if i:
            samples.append((t_served - t0) * 1000)
            init.append((t_init - t0) * 1000)
    return {
        "samples_ms": [round(s, 1) for s in samples],
        "median_ms": median(samples),
        "initialize_samples_ms": [round(s, 1) for s in init],
        "initialize_median_ms": median(init),
    }


# -- aggregation ----------------------------------------------------------------------------------


def dig(run: dict[str, Any], key: str) -> Any:
    value: Any = run
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


FIGURES: list[tuple[str, str]] = [
    ("accepted_share", "chars accepted / chars accepted + typed"),
    ("accepted_share_of_region", "chars accepted / all chars (auto-indent counted)"),
    ("time_to_suggestion_ms.p50", "time to suggestion p50 ms"),
    ("time_to_suggestion_ms.p90", "time to suggestion p90 ms"),
    ("pauses_without_share", "pauses without a suggestion"),
    ("requests_per_100_typed", "backend requests / 100 typed chars"),
    ("speculative_per_100_typed", "  of which speculative"),
    ("requests_per_100_chars", "backend requests / 100 chars of code"),
    ("prompt_cache_hit_share", "prompt-cache hit share"),
    ("prompt_cache_hit_share_warm", "  without each run's first call"),
    ("cost_per_1000_accepted_usd", "USD per 1,000 accepted chars"),
    ("waste_share", "tokens generated never shown"),
    ("keystrokes", "keystrokes per run"),
    ("session_s", "seconds per run"),
]


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {key: median(dig(r, key) for r in runs) for key, _label in FIGURES}


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


def checks(result: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    """The targets this run can judge, each with the measured value and PASS/MISS.

    A target needs its own conditions: real time (no ``--speedup``), the target cell for the
    issue-10 targets, both configurations for the comparison, enough samples for percentiles.
    """
    out: list[dict[str, Any]] = []

    def add(target: str, value: Any, ok: bool, where: str = "") -> None:
        out.append({"target": target, "where": where, "value": value, "verdict": "PASS" if ok else "MISS"})

    real_time = args.speedup == 1.0
    cells = result.get("sweep", [])
    for cell in cells:
        where = f"{cell['first_token_ms']:g} ms, {cell['token_rate']:g} tok/s, {cell['wire']}"
        default = cell["configs"].get("default", {}).get("median")
        plain = cell["configs"].get("plain", {}).get("median")
        if not real_time or default is None:
            continue
        context = cell["configs"].get("context", {}).get("median")
        if context is not None:
            if (v := context["prompt_cache_hit_share"]) is not None:
                add("context on: prompt-cache hit share >= 85%", v, v >= T_CACHE_SHARE, where)
            # Per 100 characters of code written: the context may change how much is typed.
            ours, theirs = context["requests_per_100_chars"], default["requests_per_100_chars"]
            if ours is not None and theirs:
                add(
                    "context on: requests / 100 chars of code unchanged (within 10%)",
                    ours / theirs,
                    ours <= theirs * 1.1,
                    where,
                )
        if (cell["first_token_ms"], cell["token_rate"]) == TARGET_CELL and cell["wire"] == "deepseek":
            ft = cell["first_token_ms"]
            if (v := default["accepted_share"]) is not None:
                add("chars accepted >= 90%", v, v >= T_ACCEPTED, where)
            if (v := default["time_to_suggestion_ms.p50"]) is not None:
                add(
                    f"time to suggestion p50 <= {ft + T_TTS_SLACK_MS:g} ms",
                    v,
                    v <= ft + T_TTS_SLACK_MS,
                    where,
                )
            if (v := default["requests_per_100_typed"]) is not None:
                add(
                    "backend requests (speculative incl.) <= 15 / 100 typed chars",
                    v,
                    v <= T_REQUESTS_PER_100,
                    where,
                )
            if (v := default["prompt_cache_hit_share"]) is not None:
                add("prompt-cache hit share >= 85%", v, v >= T_CACHE_SHARE, where)
        if (
            plain is not None
            and default["accepted_share"] is not None
            and plain["accepted_share"] is not None
        ):
            add(
                "default >= plain on chars accepted",
                default["accepted_share"] / max(plain["accepted_share"], 1e-9),
                default["accepted_share"] >= plain["accepted_share"],
                where,
            )
    overhead = result.get("overhead_ms")
    if overhead and overhead["n"] >= 20:
        add(
            "server overhead p50 <= 5 ms",
            overhead["p50"],
            overhead["p50"] <= T_OVERHEAD_P50,
            "plain, single-line",
        )
    if overhead and overhead["n"] >= 50:
        add(
            "server overhead p99 <= 15 ms",
            overhead["p99"],
            overhead["p99"] <= T_OVERHEAD_P99,
            "plain, single-line",
        )
    cold = result.get("cold_start")
    if cold and len(cold["samples_ms"]) >= 3:
        add(
            "cold start to first served request < 1 s", cold["median_ms"], cold["median_ms"] < T_COLD_START_MS
        )
    steady = result.get("steady")
    if steady and real_time:
        v = median(r["cpu_share"] for r in steady)
        add("CPU at 20 chars/s < 10% of a core", v, v is not None and v < T_CPU_SHARE_20CPS, "steady typing")
    many = result.get("many_docs")
    if many and many[0]["documents"] >= 50:
        v = median(r["peak_rss_mb"] for r in many)
        add("peak RSS <= 80 MB with 50 open 5,000+ line files", v, v is not None and v <= T_PEAK_RSS_MANY)
    return out


def tables(result: dict[str, Any]) -> str:
    """Markdown: the sweep, the wire comparison, the other scenarios, the verdicts."""
    lines: list[str] = []
    cells = [c for c in result.get("sweep", []) if c["wire"] == "deepseek"]
    if cells:
        keys = [k for k, _ in FIGURES if k not in ("keystrokes", "session_s")]
        short = [
            "accepted",
            "of all chars",
            "TTS p50 ms",
            "TTS p90 ms",
            "pauses w/o",
            "req/100",
            "spec/100",
            "req/100 code",
            "cache hit",
            "warm cache hit",
            "USD/1k acc.",
            "waste",
        ]
        lines.append("| first token | tok/s | config | " + " | ".join(short) + " | accepted vs plain |")
        lines.append("|---|---|---|" + "---|" * (len(short) + 1))
        for cell in cells:
            plain = cell["configs"].get("plain", {}).get("median", {})
            for config, block in cell["configs"].items():
                med = block["median"]
                ratio = ""
                if config == "default" and plain.get("accepted_share") and med["accepted_share"] is not None:
                    ratio = f"x{med['accepted_share'] / plain['accepted_share']:.2f}"
                cells_text = " | ".join(fmt(med.get(k), k) for k in keys)
                lines.append(
                    f"| {cell['first_token_ms']:g} ms | {cell['token_rate']:g} | {config} "
                    f"| {cells_text} | {ratio} |"
                )
        lines.append("")
        runs = {len(c["configs"][cfg]["runs"]) for c in cells for cfg in c["configs"]}
        lines.append(f"Medians over the runs of each cell ({', '.join(str(n) for n in sorted(runs))} runs).")
        lines.append("")
    wires = [c for c in result.get("sweep", []) if c["wire"] != "deepseek"]
    for cell in wires:
        same = next(
            (
                c
                for c in cells
                if (c["first_token_ms"], c["token_rate"]) == (cell["first_token_ms"], cell["token_rate"])
            ),
            None,
        )
        lines.append(
            f"Wire formats at {cell['first_token_ms']:g} ms / {cell['token_rate']:g} tok/s "
            f"(default configuration):"
        )
        lines.append("")
        lines.append("| figure | deepseek | " + cell["wire"] + " |")
        lines.append("|---|---|---|")
        for key, label in FIGURES:
            theirs = cell["configs"]["default"]["median"].get(key)
            ours = same["configs"]["default"]["median"].get(key) if same else None
            lines.append(f"| {label} | {fmt(ours, key)} | {fmt(theirs, key)} |")
        lines.append("")
    overhead = result.get("overhead_ms")
    if overhead and overhead["n"]:
        lines.append(
            f"Server overhead (plain configuration, {overhead['n']} single-line requests, each answered "
            f"once its backend call was complete): p50 {fmt(overhead['p50'], '')} ms, "
            f"p90 {fmt(overhead['p90'], '')} ms, "
            f"p99 {fmt(overhead['p99'], '')} ms, max {fmt(overhead['max'], '')} ms."
        )
        lines.append("")
    parts = result.get("overhead_parts_ms")
    if overhead and parts:
        lines.append(
            f"Of which from the end of the debounce to the fake's request line: p50 "
            f"{fmt(parts['before']['p50'], '')} ms; from its last byte to the answer at the client: p50 "
            f"{fmt(parts['after']['p50'], '')} ms."
        )
        lines.append("")
    cold = result.get("cold_start")
    if cold:
        lines.append(
            f"Cold start to the first served request: median {cold['median_ms']:.0f} ms "
            f"(samples {', '.join(f'{s:.0f}' for s in cold['samples_ms'])}); to the `initialize` answer: "
            f"median {cold['initialize_median_ms']:.0f} ms."
        )
        lines.append("")
    steady = result.get("steady")
    if steady:
        lines.append(
            f"Steady typing at {result['meta']['steady_cps']:g} chars/s into {steady[0]['file']}, "
            f"suggestions ignored: server CPU "
            f"{fmt(median(r['cpu_share'] for r in steady), 'share')} of a core, "
            f"{fmt(median(r['cpu_ms_per_keystroke'] for r in steady), '')} ms per keystroke, peak RSS "
            f"{fmt(median(r['peak_rss_mb'] for r in steady), '')} MB."
        )
        lines.append("")
    many = result.get("many_docs")
    if many:
        m = many[0]
        lines.append(
            f"Many documents ({m['documents']} open copies of {m['file']}, {m['lines_per_document']} lines): "
            f"peak RSS {fmt(median(r['peak_rss_mb'] for r in many), '')} MB, opening all "
            f"{fmt(median(r['open_s'] for r in many), '')} s, "
            f"{fmt(median(r['cpu_ms_per_keystroke'] for r in many), '')} CPU ms per keystroke."
        )
        lines.append("")
    if result["checks"]:
        lines.append("| target | where | measured | verdict |")
        lines.append("|---|---|---|---|")
        for check in result["checks"]:
            key = "share" if "%" in check["target"] else ""
            value = check["value"]
            shown = f"x{value:.2f}" if "plain" in check["target"] else fmt(value, key)
            lines.append(f"| {check['target']} | {check['where']} | {shown} | {check['verdict']} |")
    else:
        lines.append("(No target verdicts: this run cannot judge any target.)")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    """Chars accepted and time to suggestion (p50, p90) against token rate; a line per first-token
    time, solid for the default configuration, dashed for the plain one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    cells = [c for c in result.get("sweep", []) if c["wire"] == "deepseek"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    panels = [
        ("accepted_share", 100.0, "Characters accepted", "% of characters accepted + typed"),
        ("time_to_suggestion_ms.p50", 1.0, "Time to suggestion p50", "ms from the last keystroke of a pause"),
        ("time_to_suggestion_ms.p90", 1.0, "Time to suggestion p90", "ms from the last keystroke of a pause"),
    ]
    colors = {200: "tab:green", 400: "tab:blue", 800: "tab:red"}
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlim(25, 145)
    for ft in sorted({c["first_token_ms"] for c in cells}):
        row = sorted((c for c in cells if c["first_token_ms"] == ft), key=lambda c: c["token_rate"])
        color = colors.get(int(ft))
        for config, style in (("default", "-"), ("plain", "--")):
            used = [c for c in row if config in c["configs"]]
            rates = [c["token_rate"] for c in used]
            for ax, (key, scale, _title, _label) in zip(axes, panels, strict=True):
                values = [c["configs"][config]["median"].get(key) for c in used]
                ys = [None if v is None else v * scale for v in values]
                ax.plot(rates, ys, style, marker="o", color=color, label=f"{ft:g} ms, {config}")
        for ax in axes[1:]:
            ax.axhline(ft + T_TTS_SLACK_MS, color=color, linewidth=0.7, linestyle=":")
    for ax, (_key, _scale, title, label) in zip(axes, panels, strict=True):
        ax.set_xticks([30, 60, 120], ["30", "60", "120"])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("token rate (tokens/s)")
        ax.set_ylabel(label)
        ax.set_title(
            title + (" (dotted: first token + 150 ms)" if ax is not axes[0] else " (dotted: 90%)"),
            fontsize=10,
        )
        ax.grid(alpha=0.3)
    axes[0].axhline(T_ACCEPTED * 100, color="gray", linewidth=0.7, linestyle=":")
    axes[0].legend(fontsize=7, ncol=2)
    meta = result["meta"]
    fig.suptitle(
        f"fimls ({meta['fimls_git']}) against the fake backend (oracle, SSE, 3 chars/token), medians over "
        f"runs: solid default, dashed plain; {meta['date_utc']}, {meta['machine']['nproc']} shared cores",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
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
    p.add_argument("--init-options", default="{}", help="JSON merged into initializationOptions")
    p.add_argument(
        "--scenario",
        nargs="+",
        choices=["all", "sweep", "overhead", "steady", "many", "cold"],
        default=["all"],
    )
    p.add_argument("--first-token-ms", type=float, nargs="+", default=[200, 400, 800])
    p.add_argument("--token-rate", type=float, nargs="+", default=[30, 60, 120], help="tokens per second")
    p.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    p.add_argument(
        "--wires",
        nargs="+",
        choices=list(WIRES),
        default=list(WIRES),
        help="wire formats; those but deepseek run in the target cell only",
    )
    p.add_argument(
        "--files", nargs="+", help=f"corpus files in the target cell (default: {' '.join(TARGET_FILES)})"
    )
    p.add_argument(
        "--other-files", nargs="+", help=f"corpus files in other cells (default: {' '.join(OTHER_FILES)})"
    )
    p.add_argument("--runs", type=int, default=3, help="runs per file and configuration")
    p.add_argument("--lines", type=int, default=24, help="lines typed per run")
    p.add_argument("--speedup", type=float, default=1.0, help="divide every human delay by this")
    p.add_argument("--seed", default="1")
    p.add_argument("--debounce-ms", type=int, default=150, help="the plain configuration's fixed debounce")
    p.add_argument("--many-docs", type=int, default=50)
    p.add_argument("--many-keystrokes", type=int, default=300)
    p.add_argument("--steady-cps", type=float, default=20.0)
    p.add_argument("--steady-keystrokes", type=int, default=300)
    p.add_argument("--cold-spawns", type=int, default=7)
    p.add_argument("--overhead-samples", type=int, default=100)
    p.add_argument(
        "--overhead-open",
        type=int,
        default=50,
        help="measure the overhead again with this many other files open in the workspace (0: skip)",
    )
    p.add_argument("--out", help="JSON output (default bench-results/bench-<time>.json; .md beside it)")
    p.add_argument("--plot", help="PNG output (default next to the JSON)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG (no matplotlib needed)")
    p.add_argument(
        "--merge",
        nargs="+",
        metavar="JSON",
        help="no run: tables, verdicts and plot from saved results (later files' cells win)",
    )
    p.add_argument("--quick", action="store_true", help="tiny smoke preset (seconds; judges no target)")
    p.add_argument("--fake-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.scenarios = [s for s in args.scenario if s != "all"] or [
        "sweep",
        "overhead",
        "steady",
        "many",
        "cold",
    ]
    args.server = shlex.split(args.server) if args.server else [sys.executable, "-m", "fimls"]
    args.init_options = json.loads(args.init_options)
    if args.server[-2:] != ["-m", "fimls"]:
        args.configs = ["default"]  # the plain configuration is fimls's own
    if args.quick:
        # Human delays / 4 against a fast fake: every code path in seconds, figures of no value.
        args.files = args.files or ["json_decoder.py.txt"]
        args.other_files = []
        args.first_token_ms = [50]
        args.token_rate = [400]
        args.wires = ["deepseek"]
        args.runs = 1
        args.lines = min(args.lines, 5)
        args.speedup = 4.0 if args.speedup == 1.0 else args.speedup
        args.debounce_ms = 40 if args.debounce_ms == 150 else args.debounce_ms
        args.many_docs = min(args.many_docs, 3)
        args.many_keystrokes = min(args.many_keystrokes, 20)
        args.steady_keystrokes = min(args.steady_keystrokes, 30)
        args.cold_spawns = min(args.cold_spawns, 2)
        args.overhead_samples = min(args.overhead_samples, 4)
        args.overhead_open = min(args.overhead_open, 3)
    args.files = args.files or TARGET_FILES
    args.other_files = OTHER_FILES if args.other_files is None else args.other_files
    CONFIGS["plain"]["debounceMs"] = args.debounce_ms
    args.first_token = max(args.first_token_ms) / 1000
    return args


def cells_of(args: argparse.Namespace) -> list[tuple[float, float, str, list[str]]]:
    """(first token ms, token rate, wire, files) of every cell to run, the target cell first."""
    out = []
    for ft in args.first_token_ms:
        for rate in args.token_rate:
            target = (ft, rate) == TARGET_CELL or len(args.first_token_ms) * len(args.token_rate) == 1
            files = args.files if target else (args.other_files or args.files[:1])
            wires = args.wires if target else ["deepseek"]
            out.extend((ft, rate, wire, files) for wire in wires)
    out.sort(key=lambda c: ((c[0], c[1]) != TARGET_CELL, c[2] != "deepseek"))
    return out


async def run_sweep(args: argparse.Namespace, result: dict[str, Any]) -> None:
    cells = []
    overhead: list[float] = []
    for ft, rate, wire, files in cells_of(args):
        runs: dict[str, list[dict[str, Any]]] = {c: [] for c in args.configs}
        configs = args.configs if wire == "deepseek" else ["default"]
        if (ft, rate) != TARGET_CELL and len(cells_of(args)) > 1:
            configs = [c for c in configs if c != "context"]  # context is measured in the target cell
        for name in files:
            path = resolve(name)
            fake = FakeProcess(ft / 1000, rate, [path], wire)
            try:
                for run in range(args.runs):
                    for config in configs:  # interleaved, so drift of the machine hits both alike
                        figures, samples = await typing_run(args, fake, path, run, config, wire)
                        runs[config].append(figures)
                        overhead.extend(samples)
                        print(
                            f"{ft:g} ms {rate:g} tok/s {wire} {config:7} {figures['file']} run {run + 1}: "
                            f"accepted {fmt(figures['accepted_share'], 'share')}, TTS p50 "
                            f"{fmt(dig(figures, 'time_to_suggestion_ms.p50'), '')} ms, "
                            f"{figures['backend_requests']} requests "
                            f"({figures['speculative_requests']} spec.) for {figures['keystrokes']} keys, "
                            f"cache {fmt(figures['prompt_cache_hit_share'], 'share')}, "
                            f"{figures['session_s']:.0f} s",
                            flush=True,
                        )
            finally:
                fake.close()
        cells.append(
            {
                "first_token_ms": ft,
                "token_rate": rate,
                "wire": wire,
                "files": [corpus_name(resolve(f)) for f in files],
                "configs": {c: {"median": medians(r), "runs": r} for c, r in runs.items() if r},
            }
        )
    result["sweep"] = cells
    # Plain requests of the typing runs answered from their own complete call: few, and noisier.
    result["sweep_overhead_ms"] = summarize(overhead)


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    result: dict[str, Any] = {
        "meta": {
            "date_utc": stamp,
            "server": args.server,
            "fimls_git": git_rev(),
            "machine": machine(),
            "lines_per_run": args.lines,
            "runs": args.runs,
            "speedup": args.speedup,
            "seed": args.seed,
            "chars_per_token": CHARS_PER_TOKEN,
            "configs": {c: CONFIGS[c] for c in args.configs},
            "init_options": args.init_options,
            "steady_cps": args.steady_cps,
            "argv": sys.argv[1:],
        }
    }
    started = now()
    if "cold" in args.scenarios:
        fake = FakeProcess(0.0, None, [])
        try:
            print(f"cold start: {args.cold_spawns} spawns ...", flush=True)
            result["cold_start"] = await cold_start(args, fake.url)
        finally:
            fake.close()
    if "sweep" in args.scenarios:
        await run_sweep(args, result)
    target_ft = TARGET_CELL[0] / 1000 if not args.quick else args.first_token_ms[0] / 1000
    target_rate = TARGET_CELL[1] if not args.quick else args.token_rate[0]
    if "overhead" in args.scenarios:
        path = resolve(args.files[0])
        fake = FakeProcess(target_ft, target_rate, [path])
        try:
            samples, parts = await overhead_run(args, fake, path)
        finally:
            fake.close()
        result["overhead_ms"] = summarize(samples)
        result["overhead_samples_ms"] = [round(v, 3) for v in samples]
        result["overhead_parts_ms"] = {k: summarize(v) for k, v in parts.items()}
        print(f"overhead: {len(samples)} samples, p50 {fmt(percentile(samples, 50), '')} ms", flush=True)
        if args.overhead_open:
            fake = FakeProcess(target_ft, target_rate, [path])
            try:
                samples, _parts = await overhead_run(args, fake, path, args.overhead_open)
            finally:
                fake.close()
            result["overhead_open_ms"] = {"open_files": args.overhead_open, **summarize(samples)}
            print(
                f"overhead with {args.overhead_open} open files: {len(samples)} samples, "
                f"p50 {fmt(percentile(samples, 50), '')} ms",
                flush=True,
            )
    if "steady" in args.scenarios:
        path = resolve("d3.js" if not args.quick else args.files[0])
        fake = FakeProcess(target_ft, target_rate, [path])
        try:
            result["steady"] = [
                await steady_run(args, fake, path, run) for run in range(1 if args.quick else 3)
            ]
        finally:
            fake.close()
        print(
            f"steady: CPU {fmt(median(r['cpu_share'] for r in result['steady']), 'share')} of a core",
            flush=True,
        )
    if "many" in args.scenarios:
        path = resolve(MANY_FILE if not args.quick else args.files[0])
        fake = FakeProcess(target_ft, target_rate, [path])
        try:
            result["many_docs"] = [
                await many_run(args, fake, path, run) for run in range(1 if args.quick else 2)
            ]
        finally:
            fake.close()
        print(
            f"many docs: peak RSS {fmt(median(r['peak_rss_mb'] for r in result['many_docs']), '')} MB",
            flush=True,
        )
    result["meta"]["wall_s"] = round(now() - started, 1)
    result["checks"] = checks(result, args)
    return result


def merge(paths: list[Path]) -> dict[str, Any]:
    """Saved results as one: the sweep's cells by (first token, token rate, wire), the last file
    winning, or pooled when they typed other files; the other scenarios from the last file that
    has them."""
    results = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    merged: dict[str, Any] = {"meta": {**results[-1]["meta"], "merged_from": [str(p) for p in paths]}}
    cells: dict[tuple[float, float, str], dict[str, Any]] = {}
    for result in results:
        for cell in result.get("sweep", []):
            key = (cell["first_token_ms"], cell["token_rate"], cell["wire"])
            old = cells.get(key)
            if old is not None and not set(old["files"]) & set(cell["files"]):
                for config, block in cell["configs"].items():
                    old["configs"].setdefault(config, {"runs": []})["runs"].extend(block["runs"])
                old["files"] = old["files"] + cell["files"]
            else:
                cells[key] = cell
        keys = (
            "cold_start",
            "steady",
            "many_docs",
            "overhead_ms",
            "overhead_samples_ms",
            "overhead_parts_ms",
        )
        for key in keys:
            if key in result:
                merged[key] = result[key]
    merged["sweep"] = sorted(
        cells.values(), key=lambda c: (c["wire"] != "deepseek", c["first_token_ms"], c["token_rate"])
    )
    for cell in merged["sweep"]:
        for block in cell["configs"].values():
            block["median"] = medians(block["runs"])
    return merged


def main(argv: list[str] | None = None) -> int:
    if argv is None and "--fake-child" in sys.argv[1:]:
        return fake_child_main()
    args = parse_args(argv)
    if args.merge:
        result = merge([Path(p) for p in args.merge])
        args.speedup = result["meta"]["speedup"]
        result["checks"] = checks(result, args)
    else:
        result = asyncio.run(run_all(args))
    text = tables(result)
    print()
    print(text)
    out = Path(args.out) if args.out else ROOT / "bench-results" / f"bench-{result['meta']['date_utc']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(text + "\n", encoding="utf-8")
    print(f"\nwrote {out} and {out.with_suffix('.md')} ({result['meta']['wall_s']:.0f} s)")
    if not args.no_plot and result.get("sweep"):
        png = Path(args.plot) if args.plot else out.with_suffix(".png")
        try:
            plot(result, png)
        except ImportError:
            print("matplotlib is not installed; no plot (pip install matplotlib, or --no-plot)")
        else:
            print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
