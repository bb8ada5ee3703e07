#!/usr/bin/env python3
"""Soak fimls: tens of thousands of keystrokes against the fake DeepSeek, watching memory.

A real fimls process (stdio) is driven the way an editor drives it while someone types fast:
one incremental ``didChange`` and one ``textDocument/inlineCompletion`` (trigger kind
Automatic) per keystroke, without waiting for the answer inside a word, waiting at pauses
(after a space, bracket, dot or newline). The "person" types real source files back in, so
the fake's oracle mode answers with the file's true continuation and typing-through serves
most keystrokes; typos (a wrong character, then backspace) give misses and cache hits; a
fresh document is opened every ``--doc-every`` keystrokes (the old one closed) so per-document
state must be released; and scripted faults are injected on a fixed schedule (500 and 429
answers that a retry absorbs, cut streams, malformed answers, 503 bursts that outlast the
retries and reach the user).

Every ``--sample-every`` keystrokes the server's RSS (``VmRSS`` of ``/proc/<pid>/status``)
and ``fimls.status`` are sampled. The run prints the RSS curve and writes everything as JSON.
Examples::

    .venv/bin/python scripts/soak.py                          # 20,000 keystrokes
    .venv/bin/python scripts/soak.py --keystrokes 2000 --json /tmp/soak.json

Exit code 1 when a check fails (a request unanswered, tasks or connections left behind,
the cache over its size, RSS growth over ``--max-growth-mib``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
sys.path.insert(0, str(SCRIPTS))

from fake_deepseek import FakeDeepSeek, Reply  # noqa: E402
from lsprotocol import types  # noqa: E402
from pygls.lsp.client import LanguageClient  # noqa: E402

CORPUS = SCRIPTS / "bench_corpus"
FILES = ["json_decoder.py.txt", "textwrap.py.txt", "argparse.py.txt"]
KEY = "sk-soak-00000000000000000000"
POOL_LIMIT = 16  # httpx max_connections of fimls's HTTP client (fimls/backends/http.py)
PAUSE_AFTER = frozenset(" \n(.,:=")
MAX_BURST = 12  # keystrokes typed without waiting for an answer
TYPO_RATE = 0.03  # a wrong character, deleted by the next keystroke
REWORD_RATE = 0.01  # delete the last few characters and type them again
TYPO_CHARS = "#$%@!~"
MAX_TOKENS = 24  # short answers (about 70 characters), so typing needs the backend often


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def sockets(pid: int) -> int:
    """Sockets the process holds open: its HTTP connections, plus the event loop's own."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    return count


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def faults_at(keystroke: int) -> list[tuple[str, Reply]]:
    """The scripted faults injected before ``keystroke`` (deterministic schedule)."""
    out: list[tuple[str, Reply]] = []
    if keystroke % 997 == 500:
        out.append(("500, absorbed by a retry", Reply(status=500)))
    if keystroke % 1499 == 700:
        out.append(("429, absorbed by a retry", Reply(status=429)))
    if keystroke % 3001 == 1500:
        out.append(("cut stream mid-answer (not retried)", Reply(text="abcdefghijklmnop", cut_stream=True)))
    if keystroke % 4001 == 2000:
        out.append(("malformed answer (not retried)", Reply(raw_body=b"{malformed")))
    if keystroke % 2503 == 1200:
        out.extend(("503 x3, outlasting the retries", Reply(status=503)) for _ in range(3))
    return out


class Editor:
    """One open document being typed at its end; keeps the LSP (UTF-16) end position."""

    def __init__(self, client: LanguageClient, uri: str, source: str) -> None:
        self.client = client
        self.uri = uri
        self.source = source
        self.typed = 0  # characters of ``source`` typed so far
        self.lines = [""]  # the document, ``\n``-separated (the corpus has no ``\r``)
        self.version = 1
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text="")
            )
        )

    @property
    def done(self) -> bool:
        return self.typed >= len(self.source)

    def _end(self) -> types.Position:
        return types.Position(line=len(self.lines) - 1, character=utf16(self.lines[-1]))

    def _send(self, start: types.Position, end: types.Position, text: str) -> None:
        self.version += 1
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=self.uri, version=self.version),
                content_changes=[
                    types.TextDocumentContentChangePartial(range=types.Range(start=start, end=end), text=text)
                ],
            )
        )

    def insert(self, ch: str) -> None:
        end = self._end()
        self._send(end, end, ch)
        if ch == "\n":
            self.lines.append("")
        else:
            self.lines[-1] += ch

    def type_next(self) -> str:
        ch = self.source[self.typed]
        self.typed += 1
        self.insert(ch)
        return ch

    def untype_last(self) -> None:
        """Delete the last character typed from the source (it will be typed again)."""
        self.typed -= 1
        self.backspace()

    def backspace(self) -> None:
        end = self._end()
        if self.lines[-1]:
            last = self.lines[-1][-1]
            self.lines[-1] = self.lines[-1][:-1]
            start = types.Position(line=end.line, character=end.character - utf16(last))
        else:
            self.lines.pop()
            start = types.Position(line=end.line - 1, character=utf16(self.lines[-1]))
        self._send(start, end, "")

    def request(self) -> types.InlineCompletionParams:
        return types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=self.uri),
            position=self._end(),
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
        )

    def close(self) -> None:
        self.client.text_document_did_close(
            types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=self.uri))
        )


async def _drain(stream: asyncio.StreamReader | None, sink: Any) -> None:
    """Read the server's stderr so a full pipe can never block it."""
    if stream is None:
        return
    while chunk := await stream.read(65536):
        if sink is not None:
            sink.write(chunk)


async def soak(
    keystrokes: int = 20_000,
    *,
    sample_every: int = 500,
    latency: float = 0.002,
    seed: int = 1,
    debounce_ms: int = 10,
    cache_size: int = 256,
    doc_every: int = 2_500,
    server_log: str | None = None,
    server_cmd: list[str] | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the soak; return every figure (see the module docstring)."""
    rng = random.Random(seed)
    sources = [(name, (CORPUS / name).read_text(encoding="utf-8")) for name in FILES]
    fake = FakeDeepSeek(api_key=KEY, oracle_text="\n\n".join(text for _, text in sources), latency=latency)
    fake.start()
    # Hang-ups are part of the test (cancelled requests, cut streams): no tracebacks for them.
    fake._server.handle_error = lambda *_args: None  # type: ignore[union-attr,method-assign]
    client = LanguageClient("fimls-soak", "1")
    shown: list[str] = []

    @client.feature(types.WINDOW_SHOW_MESSAGE)
    def _show(params: types.ShowMessageParams) -> None:
        shown.append(params.message)

    @client.feature(types.WINDOW_LOG_MESSAGE)
    def _log(_params: types.LogMessageParams) -> None:
        pass

    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPSEEK_")}
    env.update(DEEPSEEK_BASE_URL=fake.url, DEEPSEEK_API_KEY=KEY, PYTHONUNBUFFERED="1")
    log_file = open(server_log, "wb") if server_log else None
    started = time.monotonic()
    samples: list[dict[str, Any]] = []
    latencies: list[float] = []
    counts = {"asked": 0, "answered": 0, "nonempty": 0, "failed": 0}
    injected: dict[str, int] = {}
    actions = {"typed": 0, "typos": 0, "rewords": 0, "backspaces": 0, "documents": 0}
    outstanding: list[asyncio.Future[None]] = []
    try:
        cmd = server_cmd or [sys.executable, "-m", "fimls"]
        await client.start_io(*cmd, env=env, cwd=str(ROOT))
        server = client._server
        assert server is not None
        drain = asyncio.create_task(_drain(server.stderr, log_file))
        await client.initialize_async(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(
                    general=types.GeneralClientCapabilities(position_encodings=["utf-16"]),
                    text_document=types.TextDocumentClientCapabilities(
                        inline_completion=types.InlineCompletionClientCapabilities()
                    ),
                ),
                initialization_options={
                    "debounceMs": debounce_ms,
                    "cacheSize": cache_size,
                    "maxTokens": MAX_TOKENS,
                    "maxTokensSingleLine": MAX_TOKENS,
                },
                client_info=types.ClientInfo(name="soak"),
            )
        )
        client.initialized(types.InitializedParams())

        async def status() -> dict[str, Any]:
            result = await client.workspace_execute_command_async(
                types.ExecuteCommandParams(command="fimls.status")
            )
            assert isinstance(result, dict)
            return result

        def ask(params: types.InlineCompletionParams) -> asyncio.Future[None]:
            # Sent now, before the next keystroke's didChange, as an editor does.
            answer = client.protocol.send_request_async(types.TEXT_DOCUMENT_INLINE_COMPLETION, params)
            return asyncio.ensure_future(receive(answer))

        async def receive(answer: asyncio.Future[Any]) -> None:
            counts["asked"] += 1
            t0 = time.monotonic()
            try:
                result = await asyncio.wait_for(answer, 30)
            except Exception:
                counts["failed"] += 1
                return
            latencies.append(time.monotonic() - t0)
            counts["answered"] += 1
            items = result.items if isinstance(result, types.InlineCompletionList) else result
            if items:
                counts["nonempty"] += 1

        async def settle() -> None:
            if outstanding:
                await asyncio.gather(*outstanding)
                outstanding.clear()

        async def sample(keystroke: int) -> None:
            await settle()
            info = await status()
            row = {
                "keystroke": keystroke,
                "seconds": round(time.monotonic() - started, 2),
                "rss_kib": rss_kib(server.pid),
                "cacheEntries": info["cacheEntries"],
                "openConnections": sockets(server.pid),
                "asyncioTasks": info["asyncioTasks"],
                "inFlight": info["inFlight"],
                "openDocuments": info["openDocuments"],
                "pendingRequests": info["pendingRequests"],
            }
            samples.append(row)
            if progress is not None:
                progress(row)

        await sample(0)
        editor: Editor | None = None
        source_index = 0
        typo_pending = False
        untype = 0
        burst = 0
        for k in range(keystrokes):
            if editor is None or editor.done or (k % doc_every == 0 and k):
                await settle()
                if editor is not None:
                    editor.close()
                name, text = sources[source_index % len(sources)]
                source_index += 1
                editor = Editor(client, f"file:///soak/{source_index}/{name.removesuffix('.txt')}", text)
                actions["documents"] += 1
                typo_pending = False
            for label, reply in faults_at(k):
                fake.script.append(reply)
                injected[label] = injected.get(label, 0) + 1
            pause = False
            if untype:
                editor.untype_last()
                actions["backspaces"] += 1
                untype -= 1
                pause = untype == 0
            elif typo_pending:
                editor.backspace()
                actions["backspaces"] += 1
                typo_pending, pause = False, True
            elif rng.random() < TYPO_RATE:
                editor.insert(rng.choice(TYPO_CHARS))
                actions["typos"] += 1
                typo_pending = True
            elif editor.typed > 10 and editor.lines[-1] and rng.random() < REWORD_RATE:
                untype = min(rng.randint(1, 6), len(editor.lines[-1]))
                actions["rewords"] += 1
                editor.untype_last()
                actions["backspaces"] += 1
                untype -= 1
                pause = untype == 0
            else:
                ch = editor.type_next()
                actions["typed"] += 1
                pause = ch in PAUSE_AFTER
            outstanding.append(ask(editor.request()))
            burst += 1
            if pause or burst >= MAX_BURST:
                await settle()
                burst = 0
            if (k + 1) % sample_every == 0:
                await sample(k + 1)
        await settle()
        if keystrokes % sample_every:
            await sample(keystrokes)
        # Streams go on after their requests are answered, up to their deadline.
        for _ in range(120):
            if (await status())["inFlight"] == 0:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # let cancelled HTTP calls finish closing
        final = {**await status(), "openConnections": sockets(server.pid)}
        final_rss = rss_kib(server.pid)
        await asyncio.wait_for(client.shutdown_async(None), 10)
        client.exit(None)
        exit_code = await asyncio.wait_for(server.wait(), 10)
        await asyncio.wait_for(drain, 5)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.stop(), 10)
        fake_connections = fake.open_connections()  # connections the fake still holds (private, on purpose)
        fake.stop()
        if log_file is not None:
            log_file.close()
    duration = time.monotonic() - started
    fim = fake.fim_requests()
    ms = sorted(x * 1000 for x in latencies)
    baseline = samples[min(1, len(samples) - 1)]["rss_kib"]  # after the first interval: warmed up
    return {
        "keystrokes": keystrokes,
        "duration_s": round(duration, 1),
        "keystrokes_per_s": round(keystrokes / duration, 1),
        "settings": {
            "debounceMs": debounce_ms,
            "cacheSize": cache_size,
            "fake_latency_s": latency,
            "doc_every": doc_every,
            "seed": seed,
        },
        "actions": actions,
        "requests": counts,
        "latency_ms": {
            "p50": round(statistics.median(ms), 2) if ms else None,
            "p99": round(ms[int(len(ms) * 0.99) - 1], 2) if ms else None,
            "max": round(ms[-1], 2) if ms else None,
        },
        "backend": {
            "fim_requests": len(fim),
            "aborted": sum(r.aborted for r in fim),
            "connections_left_open_at_fake": fake_connections,
        },
        "injected_faults": injected,
        "messages": shown,
        "samples": samples,
        "rss_kib": {
            "start": samples[0]["rss_kib"],
            "after_first_interval": baseline,
            "end": final_rss,
            "max": max(s["rss_kib"] for s in samples),
            "growth_after_first_interval": final_rss - baseline,
        },
        "final_status": {
            key: final[key]
            for key in (
                "openDocuments",
                "pendingRequests",
                "asyncioTasks",
                "cacheEntries",
                "inFlight",
                "openConnections",
                "requestsSent",
                "responses",
                "errors",
                "retries",
                "cacheHits",
                "typingThroughHits",
                "sharedInFlight",
                "superseded",
                "staleDropped",
                "skipped",
            )
        },
        "exit_code": exit_code,
    }


def problems(result: dict[str, Any], max_growth_mib: float, cache_size: int) -> list[str]:
    """What the run violated (empty when all is well)."""
    out = []
    req, final = result["requests"], result["final_status"]
    if req["answered"] != req["asked"] or req["failed"]:
        out.append(f"{req['asked'] - req['answered']} requests unanswered")
    if final["inFlight"] or final["pendingRequests"]:
        out.append(f"left behind: inFlight {final['inFlight']}, pendingRequests {final['pendingRequests']}")
    if final["cacheEntries"] > cache_size:
        out.append(f"cache over its size: {final['cacheEntries']} > {cache_size}")
    if final["openConnections"] > POOL_LIMIT + 2:  # + the event loop's own pair
        out.append(f"{final['openConnections']} open connections > pool limit {POOL_LIMIT}")
    if final["openDocuments"] != 1:
        out.append(f"{final['openDocuments']} documents open, expected 1")
    growth = result["rss_kib"]["growth_after_first_interval"] / 1024
    if growth > max_growth_mib:
        out.append(f"RSS grew {growth:.1f} MiB > {max_growth_mib} MiB")
    if result["exit_code"] != 0:
        out.append(f"exit code {result['exit_code']}")
    return out


def print_report(result: dict[str, Any]) -> None:
    print(f"\n{result['keystrokes']} keystrokes in {result['duration_s']} s ({result['keystrokes_per_s']}/s)")
    print(
        "\n| keystroke | seconds | RSS (MiB) | Δ (MiB) | cache entries | open connections | asyncio tasks |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    first = result["samples"][0]["rss_kib"]
    for s in result["samples"]:
        print(
            f"| {s['keystroke']} | {s['seconds']} | {s['rss_kib'] / 1024:.1f} "
            f"| {(s['rss_kib'] - first) / 1024:+.1f} "
            f"| {s['cacheEntries']} | {s['openConnections']} | {s['asyncioTasks']} |"
        )
    print("\nrequests:", json.dumps(result["requests"]))
    print("latency (ms):", json.dumps(result["latency_ms"]))
    print("actions:", json.dumps(result["actions"]))
    print("backend:", json.dumps(result["backend"]))
    print("injected faults:", json.dumps(result["injected_faults"]))
    print("messages shown:", len(result["messages"]), json.dumps(sorted(set(result["messages"]))))
    print("RSS (KiB):", json.dumps(result["rss_kib"]))
    print("final fimls.status:", json.dumps(result["final_status"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keystrokes", type=int, default=20_000)
    parser.add_argument("--sample-every", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.002, help="fake DeepSeek latency per FIM (s)")
    parser.add_argument("--debounce-ms", type=int, default=10)
    parser.add_argument("--cache-size", type=int, default=256)
    parser.add_argument("--doc-every", type=int, default=2_500, help="open a fresh document this often")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-growth-mib", type=float, default=10.0)
    parser.add_argument(
        "--json",
        type=Path,
        default=Path(tempfile.gettempdir()) / "fimls-soak.json",
        help="where to write the figures (default: %(default)s)",
    )
    parser.add_argument("--server-log", help="write the server's stderr here (default: discard)")
    parser.add_argument("--server", help="server command line (default: this Python's -m fimls)")
    args = parser.parse_args(argv)

    def progress(row: dict[str, Any]) -> None:
        print(
            f"  {row['keystroke']:>6} keystrokes  {row['seconds']:>7.1f} s  "
            f"RSS {row['rss_kib'] / 1024:6.1f} MiB",
            file=sys.stderr,
            flush=True,
        )

    result = asyncio.run(
        soak(
            args.keystrokes,
            sample_every=args.sample_every,
            latency=args.latency,
            seed=args.seed,
            debounce_ms=args.debounce_ms,
            cache_size=args.cache_size,
            doc_every=args.doc_every,
            server_log=args.server_log,
            server_cmd=shlex.split(args.server) if args.server else None,
            progress=progress,
        )
    )
    result["problems"] = problems(result, args.max_growth_mib, args.cache_size)
    args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print_report(result)
    print(f"\nwrote {args.json}")
    for problem in result["problems"]:
        print("FAIL:", problem)
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
