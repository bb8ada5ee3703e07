"""Helpers for the per-backend unit tests: build a backend, run one request, write SSE bodies."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from fimls.backends import FimRequest, Finish, build
from fimls.config import parse_settings

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

KEY = "sk-backend-unit-key-0123456789"


def make(
    settings: dict[str, Any],
    handler: Callable[[httpx.Request], httpx.Response] | None = None,
    key: str | None = KEY,
):
    """The backend ``settings`` describe; through ``handler`` (httpx.MockTransport) when given."""
    parsed, problems = parse_settings(settings)
    assert problems == []
    transport = httpx.MockTransport(handler) if handler is not None else None
    backend = build(parsed, key, transport=transport, env={})

    async def no_sleep(_seconds: float) -> None:
        return None

    backend.http._sleep = no_sleep
    return backend


def request(stream: bool = False, **kw: Any) -> FimRequest:
    fields: dict[str, Any] = dict(
        model="Qwen/Qwen2.5-Coder-7B",
        prefix="def add(a, b):\n    return ",
        suffix="\n",
        max_tokens=32,
        stop=("\n",),
        stream=stream,
    )
    fields.update(kw)
    return FimRequest(**fields)


async def run(backend: Any, req: FimRequest, timeout: float = 5.0) -> tuple[list[str], Finish]:
    """The text pieces and the Finish of one generation."""
    pieces: list[str] = []
    async with contextlib.aclosing(backend.generate(req, time.monotonic() + timeout)) as events:
        async for event in events:
            if isinstance(event, Finish):
                return pieces, event
            pieces.append(event)
    raise AssertionError("no Finish")


def sse(*events: dict[str, Any] | str) -> bytes:
    """An SSE body: dicts as ``data:`` JSON, strings as raw lines."""
    out: list[str] = []
    for event in events:
        out += [event if isinstance(event, str) else "data: " + json.dumps(event), ""]
    return ("\n".join(out) + "\n").encode()


def ndjson(*items: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


class Recorder:
    """A MockTransport handler that answers from a list and remembers the requests."""

    def __init__(self, *answers: httpx.Response | Callable[[httpx.Request], httpx.Response]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, req: httpx.Request) -> httpx.Response:
        self.requests.append(req)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return answer(req) if callable(answer) else answer

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) if r.content else {} for r in self.requests]

    def paths(self) -> list[str]:
        return [f"{r.method} {r.url.path}" for r in self.requests]
