"""OpenAI-style ``/completions`` with ``prompt`` and ``suffix`` fields (SGLang, Ollama's ``/v1``).

DeepSeek's FIM endpoint speaks the same wire format (:mod:`fimls.backends.deepseek` builds on this).
A streamed answer is SSE with ``choices[0].text`` per event, an optional usage event, and
``data: [DONE]``; a plain answer is one JSON object, possibly after blank lines.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

import httpx

from fimls.backends.base import Check, Event, FimRequest, Finish, Price, ProtocolError, ServerError, Usage
from fimls.backends.http import Http, decode_event, error_detail, sse_data
from fimls.context import Chunk, comment_block

MAX_STOPS = 16


def strip_tails(url: str, tails: tuple[str, ...]) -> str:
    """``url`` without a query and without the API path a user may have pasted with it."""
    url = url.strip().split("#", 1)[0].split("?", 1)[0].rstrip("/")
    for tail in tails:
        if url.endswith(tail):
            url = url[: -len(tail)].rstrip("/")
    return url


def context_block(request: FimRequest) -> str:
    """``request.context`` as comments in the current file's language (empty when there is none)."""
    if not request.context:
        return ""
    chunks = [Chunk(path=path, text=text, source="", uri="") for path, text in request.context]
    return comment_block(chunks, request.language_id)


def choice_text(choice: Mapping[str, Any]) -> str:
    """The text of a ``/completions`` choice."""
    text = choice.get("text")
    return text if isinstance(text, str) else ""


def _choices(data: Any, label: str) -> list[Any]:
    if not isinstance(data, dict):
        raise ProtocolError(f"{label}: the answer is not a JSON object")
    choices = data.get("choices")
    if isinstance(choices, list):
        return choices
    if "error" in data:
        raise ServerError(f"{label} failed mid-answer: {error_detail(json.dumps(data))}")
    raise ProtocolError(f"{label}: the answer has no choices")


async def completion_events(
    response: httpx.Response, label: str, text_of: Any = choice_text
) -> AsyncIterator[Event]:
    """Text pieces of an SSE ``/completions`` answer, then its :class:`Finish`."""
    reason: str | None = None
    usage: Usage | None = None
    done = False
    async for data in sse_data(response):
        if done:
            continue  # read on to the end of the body so the connection can be reused
        if data.strip() == "[DONE]":
            done = True
            continue
        event = decode_event(data, label)
        if isinstance(event, dict) and event.get("usage"):
            usage = Usage.parse(event["usage"]) or usage
        choices = _choices(event, label)
        if not choices:
            continue
        choice = choices[0]
        if not isinstance(choice, dict):
            raise ProtocolError(f"{label}: a choice is not an object")
        text = text_of(choice)
        if isinstance(choice.get("finish_reason"), str):
            reason = choice["finish_reason"]
        if text:
            yield text
    if not done and reason is None:
        raise ProtocolError(f"{label}: the stream ended early")
    yield Finish(reason, usage)


def json_completion(raw: str, label: str, text_of: Any = choice_text) -> list[Event]:
    """Text and :class:`Finish` of a plain ``/completions`` answer."""
    try:
        data = json.loads(raw.strip())
    except ValueError:
        raise ProtocolError(f"{label} sent malformed JSON") from None
    choices = _choices(data, label)
    if not choices or not isinstance(choices[0], dict):
        raise ProtocolError(f"{label}: the answer has no choices")
    reason = choices[0].get("finish_reason")
    usage = Usage.parse(data.get("usage"))
    return [text_of(choices[0]), Finish(reason if isinstance(reason, str) else None, usage)]


class Completions:
    """A server with an OpenAI-style ``/v1/completions`` that accepts ``suffix``."""

    name = "openai-compatible"
    path = "/v1/completions"
    models_path = "/v1/models"
    url_tails: tuple[str, ...] = ("/completions", "/v1")

    def __init__(
        self,
        http: Http,
        *,
        has_key: bool,
        refusal: str | None,
        price: Price | None = None,
        routing_id: str | None = None,
    ) -> None:
        self.http = http
        self.has_key = has_key
        self.refusal = refusal
        self.routing_id = routing_id
        self._price = price or Price()

    @property
    def label(self) -> str:
        """How messages name this backend."""
        return self.http.label

    @property
    def url(self) -> str:
        """The base URL without credentials, for display."""
        return self.http.public

    def price(self, model: str) -> Price:
        """What one million tokens cost with ``model``."""
        return self._price

    def prompt_text(self, request: FimRequest) -> str:
        """The prompt: other files' code framed as comments, then the text before the cursor."""
        return context_block(request) + request.prefix

    def body(self, request: FimRequest) -> dict[str, Any]:
        """The JSON body for ``request``."""
        body: dict[str, Any] = {
            "model": request.model,
            "prompt": self.prompt_text(request),
            "suffix": request.suffix or None,
            "max_tokens": request.max_tokens,
            "stop": list(request.stop[:MAX_STOPS]) or None,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "stream": request.stream,
        }
        if request.stream:
            body["stream_options"] = {"include_usage": True}
        if self.routing_id:
            body["user"] = self.routing_id
        return body

    async def generate(self, request: FimRequest, deadline: float) -> AsyncGenerator[Event, None]:
        """Text pieces as they arrive, then one :class:`Finish`."""
        body = self.body(request)
        headers = {"X-Fimls-Speculative": "1"} if request.speculative else None
        post = self.http.stream(
            "POST", self.path, json_body=body, deadline=deadline, model=request.model, headers=headers
        )
        async with post as r:
            if request.stream:
                async for event in completion_events(r, self.label):
                    yield event
            else:
                raw = (await r.aread()).decode("utf-8", "replace")
                for event in json_completion(raw, self.label):
                    yield event

    async def models(self) -> list[str]:
        """Model ids from the OpenAI-style model list."""
        data = await self.http.request_json("GET", self.models_path)
        items = data.get("data") if isinstance(data, Mapping) else None
        if not isinstance(items, list):
            raise ProtocolError(f"{self.label}: GET {self.models_path} returned no model list")
        return [str(item["id"]) for item in items if isinstance(item, Mapping) and "id" in item]

    def choose_model(self, available: list[str]) -> str | None:
        """The only model served, when there is exactly one."""
        return available[0] if len(available) == 1 else None

    async def diagnose(self, model: str) -> list[Check]:
        """No checks beyond listing models and one FIM call."""
        return []

    async def aclose(self) -> None:
        """Close connections."""
        await self.http.aclose()
