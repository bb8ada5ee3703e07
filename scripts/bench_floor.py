"""What this machine allows: the floors under fimls's server overhead.

``bench_typing.py`` reports fimls's overhead per completion.  This script measures the parts
of it no server code can remove, so the two can be compared on the same machine:

- ``pipe round trip``: one 300-byte message to a child process over a pipe and back (what
  an editor and a language server pay per request at least);
- ``raw HTTP round trip``: a hand-written HTTP/1.1 request to the fake DeepSeek and its
  answer over one kept-alive loopback connection, minus the fake's own time;
- ``fimls HTTP client``: the same through :class:`fimls.backend.DeepSeekClient` (fimls's
  own HTTP/1.1 client, :mod:`fimls.h1`, on asyncio's event loop), JSON and SSE answers;
- ``asyncio timer lateness``: how late ``asyncio.sleep`` wakes up (epoll counts whole
  milliseconds).

Prints medians over ``--rounds`` and writes JSON with ``--out``::

    .venv/bin/python scripts/bench_floor.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_typing import FakeProcess

from fimls.backend import DeepSeekClient, FimRequest

ECHO = "import os\nwhile (d := os.read(0, 65536)):\n    os.write(1, d)\n"
ANSWER = "    for item in items:\n        total += weigh(item)\n    return total\n"


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


async def pipe_round_trip(rounds: int) -> float:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ECHO, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stdout is not None
    samples = []
    for _ in range(rounds):
        start = time.monotonic()
        proc.stdin.write(b"x" * 300)
        got = 0
        while got < 300:
            got += len(await proc.stdout.read(65536))
        samples.append((time.monotonic() - start) * 1000)
        await asyncio.sleep(0.02)  # idle in between, like keystrokes
    proc.stdin.close()
    await proc.wait()
    return median(samples)


def fim_body(stream: bool) -> dict[str, Any]:
    return {
        "model": "deepseek-flash",
        "prompt": "def total(items):\n" + "    # a line of context\n" * 400,
        "suffix": "\n",
        "max_tokens": 128,
        "stream": stream,
    }


async def raw_http(fake: FakeProcess, rounds: int) -> float:
    url = urlsplit(fake.url)
    assert url.hostname is not None and url.port is not None
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    stamps = []
    for _ in range(rounds):
        body = json.dumps(fim_body(stream=False)).encode()
        start = time.monotonic()
        writer.write(
            b"POST /beta/completions HTTP/1.1\r\nHost: fake\r\nAuthorization: Bearer sk-floor\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )
        data = b""
        while not data.endswith(b"0\r\n\r\n"):
            data += await reader.read(65536)
        stamps.append((start, time.monotonic()))
        await asyncio.sleep(0.02)
    writer.close()
    return median(beyond_backend(stamps, fake.logs()[-rounds:]))


async def fimls_client(fake: FakeProcess, rounds: int, stream: bool) -> float:
    client = DeepSeekClient(fake.url, "sk-floor")
    body = fim_body(stream)
    request = FimRequest(
        model=body["model"],
        prompt=body["prompt"],
        suffix=body["suffix"],
        max_tokens=body["max_tokens"],
        stop=(),
        temperature=0.0,
        top_p=1.0,
        stream=stream,
    )
    await client.fim(request)  # connect once, like a running server
    stamps = []
    for _ in range(rounds):
        start = time.monotonic()
        await client.fim(request)
        stamps.append((start, time.monotonic()))
        await asyncio.sleep(0.02)
    await client.aclose()
    return median(beyond_backend(stamps, fake.logs()[-rounds:]))


def beyond_backend(stamps: list[tuple[float, float]], logs: list[dict[str, Any]]) -> list[float]:
    """Client time minus the fake's time (request line to last byte), per call, in ms."""
    return [
        ((end - start) - (log["finished"] - log["started"])) * 1000
        for (start, end), log in zip(stamps, logs, strict=True)
    ]


async def timer_lateness(rounds: int) -> float:
    loop = asyncio.get_running_loop()
    samples = []
    for _ in range(rounds):
        deadline = loop.time() + 0.05
        await asyncio.sleep(deadline - loop.time())
        samples.append((loop.time() - deadline) * 1000)
    return median(samples)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"rounds": args.rounds, "runs": []}
    for _ in range(args.runs):
        fake = FakeProcess(latency=0.05, oracle=[], text=ANSWER, chunk_size=4)
        try:
            figures = {
                "pipe round trip ms": await pipe_round_trip(args.rounds),
                "raw HTTP round trip beyond the fake ms": await raw_http(fake, args.rounds),
                "fimls HTTP client, JSON, beyond the fake ms": await fimls_client(fake, args.rounds, False),
                "fimls HTTP client, SSE in 4-char events, beyond the fake ms": await fimls_client(
                    fake, args.rounds, True
                ),
                "asyncio timer lateness ms": await timer_lateness(args.rounds),
            }
        finally:
            fake.close()
        result["runs"].append(figures)
    result["median"] = {key: median([run[key] for run in result["runs"]]) for key in result["runs"][0]}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=40, help="samples per figure and run")
    parser.add_argument("--runs", type=int, default=3, help="runs; the table shows medians over them")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(f"| floor (median of {args.runs} runs, each a median of {args.rounds}) | ms |")
    print("|---|---|")
    for key, value in result["median"].items():
        print(f"| {key.removesuffix(' ms')} | {value:.3f} |")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
