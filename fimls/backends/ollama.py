"""Ollama's native API: ``POST /api/generate`` (NDJSON), ``POST /api/show``, ``GET /api/tags``.

FIM through the ``suffix`` field works only when the model's template uses ``.Suffix`` (Ollama
answers 400 "... does not support insert" otherwise; ``/api/show`` returns the template, and newer
Ollama lists an ``insert`` capability). fimls asks ``/api/show`` once per model and session, before
the first completion: a model whose template has no suffix gets its family's raw template with
``raw: true`` (Ollama then applies no template), and a model of no known family cannot do FIM,
which the error says. With the ``template`` setting, every request is a raw one.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

import attrs
import httpx

from fimls.backends import templates
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
from fimls.backends.http import decode_answer, error_detail, ndjson

DEFAULT_BASE_URL = "http://127.0.0.1:11434"
DEFAULT_MODEL = "qwen2.5-coder:1.5b-base"
SHOW_TIMEOUT = 10.0
_SUFFIX_VARIABLE = re.compile(r"\.Suffix\b")
NO_SUFFIX_HINT = "use a FIM model such as qwen2.5-coder:1.5b-base, or set a raw template"


@attrs.frozen
class Mode:
    """How one model is asked: the ``suffix`` field, a raw template, or not at all."""

    template: templates.Template | None = None
    """``None``: the suffix field."""
    problem: str | None = None
    """Why FIM cannot work with this model."""


def takes_suffix(info: Mapping[str, Any]) -> bool:
    """Whether ``/api/show`` describes a model whose template uses ``.Suffix``."""
    capabilities = info.get("capabilities")
    if isinstance(capabilities, list) and "insert" in capabilities:
        return True
    template = info.get("template")
    return isinstance(template, str) and bool(_SUFFIX_VARIABLE.search(template))


def usage_of(final: Mapping[str, Any]) -> Usage:
    """Token counts of the closing object (Ollama reports no prompt-cache figures)."""
    prompt = final.get("prompt_eval_count")
    completion = final.get("eval_count")
    prompt = prompt if isinstance(prompt, int) else 0
    completion = completion if isinstance(completion, int) else 0
    return Usage(prompt, completion, 0, prompt)


def _finish(final: Mapping[str, Any]) -> Finish:
    reason = "length" if final.get("done_reason") == "length" else "stop"
    return Finish(reason, usage_of(final))


async def stream_events(response: httpx.Response, label: str) -> AsyncIterator[Event]:
    """Text pieces of an NDJSON ``/api/generate`` answer, then its :class:`Finish`."""
    finish: Finish | None = None
    async for item in ndjson(response, label):
        if not isinstance(item, Mapping):
            raise ProtocolError(f"{label}: a stream line is not an object")
        if "error" in item:
            raise ServerError(f"{label} failed mid-answer: {error_detail(json.dumps(item))}")
        if finish is not None:
            continue
        text = item.get("response")
        if isinstance(text, str) and text:
            yield text
        if item.get("done") is True:
            finish = _finish(item)
    if finish is None:
        raise ProtocolError(f"{label}: the stream ended early")
    yield finish


def json_answer(raw: str, label: str) -> list[Event]:
    """Text and :class:`Finish` of a non-streamed ``/api/generate`` answer."""
    data = decode_answer(raw, label)
    if "error" in data:
        raise ServerError(f"{label} failed: {error_detail(raw)}")
    text = data.get("response")
    return [text if isinstance(text, str) else "", _finish(data)]


class Ollama(HttpBackend):
    """An Ollama server, asked through its native API."""

    name = "ollama"
    path = "/api/generate"
    models_path = "/api/tags"
    url_tails = ("/api/generate", "/api", "/v1")
    default_model = DEFAULT_MODEL

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._modes: dict[str, Mode] = {}

    # -- how to ask ----------------------------------------------------------------------

    async def show(self, model: str, timeout: float = SHOW_TIMEOUT) -> Mapping[str, Any]:
        """``POST /api/show``: the model's template, capabilities and details."""
        data = await self.http.request_json(
            "POST", "/api/show", {"model": model}, timeout=timeout, model=model
        )
        if not isinstance(data, Mapping):
            raise ProtocolError(f"{self.label}: POST /api/show returned no object")
        return data

    def _configured(self, model: str) -> Mode | None:
        if self.options.template is None:
            return None
        template = templates.resolve(self.options.template, model, self.options.template_stop)
        if template is None:
            return Mode(
                problem=f"{self.label}: the template setting is not usable; {templates.NO_TEMPLATE_HINT}"
            )
        return Mode(template)

    def decide(self, model: str, info: Mapping[str, Any]) -> Mode:
        """The mode ``/api/show``'s answer calls for."""
        if takes_suffix(info):
            return Mode()
        template = templates.resolve(None, model, self.options.template_stop)
        if template is not None:
            return Mode(template)
        return Mode(
            problem=f"{self.label}: this Ollama model's template has no suffix, so {model!r} cannot fill in "
            f"the middle, and no raw FIM template is known for it; {NO_SUFFIX_HINT}"
        )

    async def mode(self, model: str, deadline: float) -> Mode:
        """How to ask ``model``: decided once per session from ``/api/show`` (or the template setting)."""
        configured = self._configured(model)
        if configured is not None:
            return configured
        found = self._modes.get(model)
        if found is None:
            timeout = max(min(SHOW_TIMEOUT, deadline - time.monotonic()), 0.05)
            try:
                info = await self.show(model, timeout)
            except RequestError as error:
                raise self._pull_hint(error, model) from None
            found = self._modes[model] = self.decide(model, info)
        return found

    def _pull_hint(self, error: RequestError, model: str) -> RequestError:
        if not error.model_missing:
            return error
        return RequestError(
            f"{error}, or run: ollama pull {model}", error.status, model_missing=True, detail=error.detail
        )

    # -- requests ------------------------------------------------------------------------

    def body(self, request: FimRequest, template: templates.Template | None) -> dict[str, Any]:
        """The ``/api/generate`` body: the suffix field, or a raw template with ``raw: true``."""
        body: dict[str, Any] = {"model": request.model}
        if template is None:
            body["prompt"] = self.prompt_text(request)
            # A FIM template branches on `if .Suffix`: an empty suffix would turn it into a chat prompt.
            body["suffix"] = request.suffix or "\n"
            stop = merge_stops(request.stop)
        else:
            body["prompt"] = template.render(request)
            body["raw"] = True
            stop = merge_stops(request.stop, template.stops)
        options: dict[str, Any] = {
            "num_predict": self.max_tokens(request),
            "temperature": request.temperature,
            "top_p": request.top_p,
        }
        if stop:
            options["stop"] = stop
        body["stream"] = request.stream
        body["options"] = options
        return body

    async def generate(self, request: FimRequest, deadline: float) -> AsyncGenerator[Event, None]:
        """Text pieces as they arrive, then one :class:`Finish`."""
        mode = await self.mode(request.model, deadline)
        if mode.problem is not None:
            raise RequestError(mode.problem, model_missing=True)
        template = mode.template
        if template is None and not self.prompt_text(request):
            # Ollama reads an empty prompt as "load the model" and answers nothing.
            template = templates.resolve(None, request.model, self.options.template_stop)
        yielded = False
        try:
            async for event in self._events(request, template, deadline):
                yielded = True
                yield event
            return
        except RequestError as error:
            if yielded or template is not None or "does not support insert" not in error.detail:
                raise self._pull_hint(error, request.model) from None
            # The template changed since /api/show was asked: decide again, once.
            self._modes.pop(request.model, None)
            mode = await self.mode(request.model, deadline)
            if mode.problem is not None or mode.template is None:
                raise RequestError(mode.problem or str(error), error.status, model_missing=True) from None
        async for event in self._events(request, mode.template, deadline):
            yield event

    async def _events(
        self, request: FimRequest, template: templates.Template | None, deadline: float
    ) -> AsyncIterator[Event]:
        post = self.http.stream(
            "POST",
            self.path,
            json_body=self.body(request, template),
            deadline=deadline,
            model=request.model,
            headers=self.headers(request),
        )
        async with post as r:
            if request.stream:
                async for event in stream_events(r, self.label):
                    yield event
            else:
                raw = (await r.aread()).decode("utf-8", "replace")
                for event in json_answer(raw, self.label):
                    yield event

    # -- models and checks ---------------------------------------------------------------

    async def models(self) -> list[str]:
        """Installed models, from ``GET /api/tags``."""
        data = await self.http.request_json("GET", self.models_path)
        return self.listed(data, "models", "name")

    def lists(self, model: str, available: list[str]) -> bool:
        """Whether ``model`` is installed: a name without a tag means ``:latest``, as Ollama reads it."""
        return model in available or (":" not in model and f"{model}:latest" in available)

    def choose_model(self, available: list[str]) -> str | None:
        """The first installed model of a known FIM family (a base model first), else the only one."""
        known = [m for m in available if templates.guess_family(m) is not None]
        for model in known:
            if "base" in model.lower():
                return model
        if known:
            return known[0]
        return available[0] if len(available) == 1 else None

    async def diagnose(self, model: str) -> list[Check]:
        """Ollama's version, and whether (and how) ``model`` can fill in the middle."""
        checks: list[Check] = []
        try:
            data = await self.http.request_json("GET", "/api/version")
            version = data.get("version") if isinstance(data, Mapping) else None
            checks.append(Check(True, "GET /api/version", f"Ollama {version or 'of unknown version'}"))
        except BackendError as error:
            checks.append(Check(False, "GET /api/version", str(error)))
        what = "FIM template (POST /api/show)"
        configured = self._configured(model)
        if configured is not None:
            if configured.template is None:
                return [*checks, Check(False, what, configured.problem or "")]
            detail = f"raw prompts with the template setting's {configured.template.describe()} (raw: true)"
            return [*checks, Check(True, what, detail)]
        try:
            info = await self.show(model)
        except RequestError as error:
            return [*checks, Check(False, what, str(self._pull_hint(error, model)))]
        except BackendError as error:
            return [*checks, Check(False, what, str(error))]
        mode = self._modes[model] = self.decide(model, info)
        if mode.problem is not None:
            detail = f"this Ollama model's template has no suffix; {NO_SUFFIX_HINT}"
            return [*checks, Check(False, what, detail)]
        if mode.template is None:
            return [*checks, Check(True, what, "the template uses .Suffix: FIM through the suffix field")]
        detail = (
            f"the template has no .Suffix: fimls sends raw {mode.template.describe()} prompts (raw: true)"
        )
        return [*checks, Check(True, what, detail)]
