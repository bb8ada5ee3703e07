"""llama.cpp's ``llama-server``: ``POST /infill``, ``GET /v1/models``, ``GET /props``, ``GET /health``.

``/infill`` builds the model's FIM prompt on the server from ``input_prefix``, ``input_suffix``
and ``input_extra`` (other files as ``{filename, text}``, laid out with the model's repository
tokens where it has them), so no template is needed here. Choices made:

- The cursor line's text goes into ``prompt`` (after the middle token) and only the lines above it
  into ``input_prefix``, as llama.vim does: typing on a line then changes only the end of the
  prompt, and ``cache_prompt`` reuses everything before it.
- ``id_slot`` is -1: llama-server gives the request the idle slot whose cached prompt shares the
  most with it, which for one person's anchored prompt is the same slot every time. A fixed slot
  (llama.vim sends 0) would make overlapping requests, or several people sharing a server, queue
  on one slot and evict each other's cache.
- ``n_indent`` (multi-line only) is the cursor line's indentation: the server stops at a line
  indented less, where the block ends. ``t_max_predict_ms`` (multi-line only) is the time left
  until the deadline: it ends generation at a line break once that time has passed.
- Usage comes from ``timings`` (``cache_n`` prompt tokens reused, ``prompt_n`` evaluated,
  ``predicted_n`` generated), else ``tokens_cached``/``tokens_evaluated``/``tokens_predicted``.
"""

from __future__ import annotations

import json
import posixpath
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

import httpx

from fimls.backends.base import (
    BackendError,
    Check,
    Event,
    FimRequest,
    Finish,
    HttpBackend,
    ProtocolError,
    RequestError,
    ServerError,
    Usage,
    merge_stops,
)
from fimls.backends.http import decode_answer, decode_event, error_detail, sse_data

DEFAULT_BASE_URL = "http://127.0.0.1:8012"
"""llama.vim's port (llama-server listens on 8080 unless given --port)."""
NO_FIM_HINT = (
    "the loaded model has no FIM tokens, so /infill cannot work; start llama-server with a FIM model, "
    "e.g. llama-server --fim-qwen-1.5b-default"
)
MIN_PREDICT_MS = 250


def split_line(prefix: str) -> tuple[str, str]:
    """``prefix`` as (the lines before the cursor line, the cursor line's text before the cursor)."""
    cut = prefix.rfind("\n") + 1
    return prefix[:cut], prefix[cut:]


def indentation(line: str) -> int:
    """Leading spaces and tabs of ``line``."""
    return len(line) - len(line.lstrip(" \t"))


def _num(mapping: Mapping[str, Any], name: str) -> int:
    value = mapping.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    return int(value)


def usage_of(final: Mapping[str, Any]) -> Usage:
    """Token accounting of llama-server's final result."""
    timings = final.get("timings")
    if isinstance(timings, Mapping) and ("prompt_n" in timings or "cache_n" in timings):
        hit, miss = _num(timings, "cache_n"), _num(timings, "prompt_n")
        predicted = _num(timings, "predicted_n") or _num(final, "tokens_predicted")
        return Usage(hit + miss, predicted, hit, miss)
    evaluated = _num(final, "tokens_evaluated")
    hit = min(_num(final, "tokens_cached"), evaluated)
    return Usage(evaluated, _num(final, "tokens_predicted"), hit, evaluated - hit)


def _finish(final: Mapping[str, Any]) -> Finish:
    reason = "length" if final.get("stop_type") == "limit" else "stop"
    return Finish(reason, usage_of(final))


def _check_error(event: Mapping[str, Any], label: str) -> None:
    if "error" in event:
        raise ServerError(f"{label} failed mid-answer: {error_detail(json.dumps(event))}")


async def stream_events(response: httpx.Response, label: str) -> AsyncIterator[Event]:
    """Text pieces of an SSE ``/infill`` answer (``content`` per event, ``stop`` at the end)."""
    finish: Finish | None = None
    async for data in sse_data(response):
        if finish is not None:
            continue
        event = decode_event(data, label)
        if not isinstance(event, Mapping):
            raise ProtocolError(f"{label}: a stream event is not an object")
        _check_error(event, label)
        content = event.get("content")
        if isinstance(content, str) and content:
            yield content
        if event.get("stop") is True:
            finish = _finish(event)
    if finish is None:
        raise ProtocolError(f"{label}: the stream ended early")
    yield finish


def json_answer(raw: str, label: str) -> list[Event]:
    """Text and :class:`Finish` of a non-streamed ``/infill`` answer."""
    data = decode_answer(raw, label)
    _check_error(data, label)
    content = data.get("content")
    return [content if isinstance(content, str) else "", _finish(data)]


class LlamaCpp(HttpBackend):
    """A llama.cpp ``llama-server`` with a FIM-capable model."""

    name = "llamacpp"
    path = "/infill"
    models_path = "/v1/models"
    url_tails = ("/infill", "/completion", "/v1")
    default_model = "default"
    """llama-server serves the model it was started with; ``/infill`` takes no model name."""

    def body(self, request: FimRequest, deadline: float) -> dict[str, Any]:
        """The ``/infill`` body."""
        above, line = split_line(request.prefix)
        body: dict[str, Any] = {
            "input_prefix": above,
            "input_suffix": request.suffix,
            "input_extra": [{"filename": path, "text": text} for path, text in request.context],
            "prompt": line,
            "n_predict": self.max_tokens(request),
            "temperature": request.temperature,
            "top_p": request.top_p,
            "stream": request.stream,
            "cache_prompt": True,
            "id_slot": -1,
        }
        stop = merge_stops(request.stop)
        if stop:
            body["stop"] = stop
        if "\n" not in request.stop:  # multi-line: let the server end the block and bound the time
            indent = indentation(line)
            if indent:
                body["n_indent"] = indent
            body["t_max_predict_ms"] = max(int((deadline - time.monotonic()) * 1000), MIN_PREDICT_MS)
        return body

    async def generate(self, request: FimRequest, deadline: float) -> AsyncGenerator[Event, None]:
        """Text pieces as they arrive, then one :class:`Finish`."""
        post = self.http.stream(
            "POST",
            self.path,
            json_body=self.body(request, deadline),
            deadline=deadline,
            model=request.model,
            headers=self.headers(request),
        )
        try:
            async with post as r:
                if request.stream:
                    async for event in stream_events(r, self.label):
                        yield event
                else:
                    raw = (await r.aread()).decode("utf-8", "replace")
                    for event in json_answer(raw, self.label):
                        yield event
        except RequestError as error:
            if error.status != 501:
                raise
            said = f" ({error.detail})" if error.detail else ""
            raise RequestError(f"{self.label}: {NO_FIM_HINT}{said}", 501, model_missing=True) from None

    async def models(self) -> list[str]:
        """The served model, from ``GET /v1/models`` (or ``GET /props`` on servers without it)."""
        try:
            data = await self.http.request_json("GET", self.models_path)
        except RequestError:
            props = await self.props()
            path = props.get("model_path")
            return [posixpath.basename(str(path).replace("\\", "/"))] if path else []
        return self.listed(data)

    def choose_model(self, available: list[str]) -> str | None:
        """The served model."""
        return available[0] if available else None

    async def props(self) -> Mapping[str, Any]:
        """``GET /props``: the model, slots and context size."""
        data = await self.http.request_json("GET", "/props")
        if not isinstance(data, Mapping):
            raise ProtocolError(f"{self.label}: GET /props returned no object")
        return data

    async def diagnose(self, model: str) -> list[Check]:
        """``/health`` (ready or still loading) and ``/props`` (model, slots, context)."""
        checks: list[Check] = []
        try:
            health = await self.http.request_json("GET", "/health")
            status = health.get("status") if isinstance(health, Mapping) else None
            checks.append(Check(status == "ok", "GET /health", str(status or "no status")))
        except BackendError as error:
            checks.append(Check(False, "GET /health", str(error)))
        try:
            props = await self.props()
        except BackendError as error:
            return [*checks, Check(False, "GET /props", str(error))]
        settings = props.get("default_generation_settings")
        n_ctx = settings.get("n_ctx") if isinstance(settings, Mapping) else None
        detail = (
            f"model {props.get('model_path', '?')}, {props.get('total_slots', '?')} slot(s), "
            f"context {n_ctx or '?'} tokens"
        )
        return [*checks, Check(True, "GET /props", detail)]
