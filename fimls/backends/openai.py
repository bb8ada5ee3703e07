"""OpenAI-style ``/v1/completions``: with a ``suffix`` field (SGLang, Ollama's ``/v1``), or with a raw
FIM prompt and no ``suffix`` (vLLM, TGI, llama.cpp's ``/v1``: the ``raw`` backend).

DeepSeek's and Codestral's FIM endpoints speak the same format with small differences
(:mod:`fimls.backends.deepseek`, :mod:`fimls.backends.codestral` build on this). A streamed answer
is SSE with ``choices[0].text`` per event, an optional usage event, and ``data: [DONE]``; a plain
answer is one JSON object, possibly after blank lines.

A server that answers 400 to the ``suffix`` field (vLLM: "suffix is not currently supported",
llama.cpp: "Unsupported param: suffix") is asked again at once with the model family's raw
template, and gets raw templates for the rest of the session.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

import httpx

from fimls.backends import templates
from fimls.backends.base import (
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
from fimls.backends.http import decode_event, error_detail, sse_data

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
"""vLLM's port (SGLang's is 30000, TGI's container 8080: set ``baseUrl``)."""
MAX_STOPS = 16
ROUTING_HEADER = "X-User-Id"
"""The session header vLLM production-stack's router is configured with in its own examples
(``routingLogic: session``, ``sessionKey: x-user-id``)."""


def strip_tails(url: str, tails: tuple[str, ...]) -> str:
    """``url`` without a query and without the API path a user may have pasted with it."""
    url = url.strip().split("#", 1)[0].split("?", 1)[0].rstrip("/")
    for tail in tails:
        if url.endswith(tail):
            url = url[: -len(tail)].rstrip("/")
    return url


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


def rejects_suffix(error: RequestError) -> bool:
    """Whether a 400 says the server does not take the ``suffix`` field."""
    return error.status in (400, 422) and "suffix" in error.detail.lower()


class Completions(HttpBackend):
    """A server with an OpenAI-style ``/v1/completions`` that accepts ``suffix`` (until it refuses it)."""

    name = "openai-compatible"
    path = "/v1/completions"
    models_path = "/v1/models"
    url_tails: tuple[str, ...] = ("/completions", "/v1")
    default_model = "Qwen/Qwen2.5-Coder-7B"
    """Asked for only when the model list is unavailable and no model is configured."""
    raw = False
    """Send raw FIM templates instead of the ``suffix`` field."""
    fallback_to_raw = True
    """Switch to raw templates when the server refuses ``suffix``."""
    sends_routing_id = True

    def template(self, model: str) -> templates.Template | None:
        """The raw template for ``model`` (the setting's, else the model family's)."""
        return templates.resolve(self.options.template, model, self.options.template_stop)

    def _template_for(self, model: str, why: str) -> templates.Template:
        template = self.template(model)
        if template is None:
            raise RequestError(
                f"{self.label}: {why}, and no raw FIM template is known for the model {model!r}; "
                + templates.NO_TEMPLATE_HINT,
                model_missing=True,
            )
        return template

    def body(self, request: FimRequest) -> dict[str, Any]:
        """The JSON body for ``request``."""
        body: dict[str, Any] = {"model": request.model}
        if self.raw:
            template = self._template_for(request.model, "this backend sends raw FIM prompts")
            body["prompt"] = template.render(request)
            stop = merge_stops(request.stop, template.stops, limit=MAX_STOPS)
        else:
            body["prompt"] = self.prompt_text(request)
            body["suffix"] = request.suffix or None
            stop = merge_stops(request.stop, limit=MAX_STOPS)
        body.update(
            max_tokens=self.max_tokens(request),
            stop=stop or None,
            temperature=request.temperature,
            top_p=request.top_p,
            stream=request.stream,
        )
        if request.stream:
            body["stream_options"] = {"include_usage": True}
        if self.sends_routing_id and self.options.routing_id:
            body["user"] = self.options.routing_id
        return body

    def headers(self, request: FimRequest) -> dict[str, str] | None:
        """The speculative marker, and the routing id for session-affine routers."""
        headers = dict(super().headers(request) or {})
        if self.sends_routing_id and self.options.routing_id:
            headers[ROUTING_HEADER] = self.options.routing_id
        return headers or None

    def text_of(self, choice: Mapping[str, Any]) -> str:
        """The text of one choice."""
        return choice_text(choice)

    async def generate(self, request: FimRequest, deadline: float) -> AsyncGenerator[Event, None]:
        """Text pieces as they arrive, then one :class:`Finish`."""
        yielded = False
        try:
            async for event in self._events(request, deadline):
                yielded = True
                yield event
            return
        except RequestError as error:
            if yielded or self.raw or not self.fallback_to_raw or not rejects_suffix(error):
                raise
            self._template_for(request.model, f"it does not take the suffix field ({error.detail})")
            self.raw = True
            logger.warning(
                "%s does not take the suffix field (%s); sending raw FIM prompts from now on",
                self.label,
                error.detail,
            )
        async for event in self._events(request, deadline):
            yield event

    async def _events(self, request: FimRequest, deadline: float) -> AsyncIterator[Event]:
        post = self.http.stream(
            "POST",
            self.path,
            json_body=self.body(request),
            deadline=deadline,
            model=request.model,
            headers=self.headers(request),
        )
        async with post as r:
            if request.stream:
                async for event in completion_events(r, self.label, self.text_of):
                    yield event
            else:
                raw = (await r.aread()).decode("utf-8", "replace")
                for event in json_completion(raw, self.label, self.text_of):
                    yield event

    async def models(self) -> list[str]:
        """Model ids from the OpenAI-style model list."""
        data = await self.http.request_json("GET", self.models_path)
        return self.listed(data)

    def choose_model(self, available: list[str]) -> str | None:
        """The only model served, else the first one of a known FIM family."""
        if len(available) == 1:
            return available[0]
        return next((m for m in available if templates.guess_family(m) is not None), None)

    async def diagnose(self, model: str) -> list[Check]:
        """Which way FIM is asked for."""
        if not self.raw and not self.fallback_to_raw:
            return []
        if not self.raw:
            return [
                Check(
                    True,
                    "FIM format",
                    "prompt and suffix fields (raw templates if the server refuses suffix)",
                )
            ]
        return _template_check(self.template(model), model)


def _template_check(template: templates.Template | None, model: str) -> list[Check]:
    if template is None:
        return [Check(False, "raw FIM template", f"none known for {model!r}: {templates.NO_TEMPLATE_HINT}")]
    context = "with" if template.carries_context else "without"
    return [Check(True, "raw FIM template", f"{template.describe()}, {context} other files")]


class Raw(Completions):
    """``/v1/completions`` with a raw FIM prompt and no ``suffix`` (vLLM, TGI, llama.cpp ``/v1``)."""

    name = "raw"
    raw = True
