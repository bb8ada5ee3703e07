"""Mistral's Codestral: ``POST /v1/fim/completions`` with ``prompt`` and ``suffix``.

The default host is ``https://codestral.mistral.ai`` with a Codestral key (``CODESTRAL_API_KEY``);
``https://api.mistral.ai`` serves the same endpoint with a La Plateforme key (set ``baseUrl`` and
``apiKeyEnv: MISTRAL_API_KEY``): the two keys are not interchangeable. Streams carry
``choices[0].delta.content``; a plain answer carries ``choices[0].message.content``. Mistral's
validator refuses fields it does not know, so only documented ones are sent; the routing id
becomes ``prompt_cache_key``, which Mistral documents for FIM requests sharing a prefix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fimls.backends.base import FimRequest, Price, merge_stops
from fimls.backends.openai import MAX_STOPS, Completions

DEFAULT_BASE_URL = "https://codestral.mistral.ai"
KEY_ENV = "CODESTRAL_API_KEY"
DEFAULT_MODEL = "codestral-latest"
MAX_TEMPERATURE = 1.5
LIST_PRICE = Price(input=0.30, cached_input=0.03, output=0.90)
"""USD per million tokens for codestral-latest; cached prompt tokens at 10% of the input price."""


class Codestral(Completions):
    """Codestral's FIM API."""

    name = "codestral"
    path = "/v1/fim/completions"
    models_path = "/v1/models"
    url_tails = ("/fim/completions", "/v1")
    default_model = DEFAULT_MODEL
    list_price = LIST_PRICE
    fallback_to_raw = False
    sends_routing_id = False  # no `user` field or header here: see prompt_cache_key

    def body(self, request: FimRequest) -> dict[str, Any]:
        """The JSON body: only fields Mistral's validator knows."""
        body: dict[str, Any] = {
            "model": request.model,
            "prompt": self.prompt_text(request),
            "suffix": request.suffix,
            "max_tokens": self.max_tokens(request),
            "temperature": min(request.temperature, MAX_TEMPERATURE),
            "top_p": request.top_p,
            "stream": request.stream,
        }
        stop = merge_stops(request.stop, limit=MAX_STOPS)
        if stop:
            body["stop"] = stop
        if self.options.routing_id:
            body["prompt_cache_key"] = self.options.routing_id
        return body

    def text_of(self, choice: Mapping[str, Any]) -> str:
        """``delta.content`` of a chunk, ``message.content`` of a whole answer."""
        for key in ("delta", "message"):
            part = choice.get(key)
            if isinstance(part, Mapping):
                content = part.get("content")
                return content if isinstance(content, str) else ""
        text = choice.get("text")
        return text if isinstance(text, str) else ""

    def choose_model(self, available: list[str]) -> str | None:
        """``codestral-latest`` where listed, else the newest-looking Codestral."""
        if DEFAULT_MODEL in available:
            return DEFAULT_MODEL
        named = sorted(m for m in available if "codestral" in m and "mamba" not in m)
        return named[-1] if named else DEFAULT_MODEL
