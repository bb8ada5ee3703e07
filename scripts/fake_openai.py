"""OpenAI-compatible ``POST /v1/completions`` and ``GET /v1/models`` for the fake FIM server.

Several engines share this path and differ in what the fake's ``flavor`` selects:

- ``openai``: accepts ``suffix`` (a generic OpenAI-compatible server).
- ``vllm``: rejects any ``suffix`` with a 400 "suffix is not currently supported" and
  expects a raw FIM prompt; ``max_tokens`` defaults to 16; ``stream_options`` only with
  ``stream``; an unknown model is a 404; ``--api-key`` gives ``{"error": "Unauthorized"}``.
- ``sglang``: wraps ``prompt`` and ``suffix`` in its completion template when started with
  one (``completion_template``), else silently drops the suffix; flat error bodies;
  ``max_tokens`` defaults to 16.
- ``ollama``: Ollama's ``/v1``: ``suffix`` only for a model whose template uses
  ``.Suffix``; unknown models are 404s; no key.
- ``llamacpp``: llama-server's ``/v1/completions``: "Unsupported param: suffix".

Without a ``suffix`` field, a prompt built with a known family's FIM tokens is read as
a raw FIM prompt (prefix, suffix and other files recovered for the oracle and the cache).
"""

from __future__ import annotations

from typing import Any

import fake_ollama
import fake_templates
from fake_core import (
    Answer,
    FimCall,
    ServerConfig,
    Wire,
    WireError,
    bearer,
    dumps,
    is_int,
    is_number,
    sse,
    stop_list,
)

FLAVORS = ("openai", "vllm", "sglang", "ollama", "llamacpp")
DEFAULT_MAX_TOKENS = {"vllm": 16, "sglang": 16}

# vLLM and SGLang name error types after the HTTP status.
_ERROR_TYPES = {
    400: "BadRequestError",
    401: "UnauthorizedError",
    404: "NotFoundError",
    422: "UnprocessableEntityError",
    429: "TooManyRequestsError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}
_DEFAULT_MESSAGES = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class OpenAIWire(Wire):
    """``/v1/completions`` as the flavor's engine speaks it."""

    name = "openai"

    def __init__(self, flavor: str) -> None:
        if flavor not in FLAVORS:
            raise ValueError(f"unknown OpenAI-compatible flavor {flavor!r}")
        self.flavor = flavor

    # -- errors and auth ---------------------------------------------------------------------

    def error(self, status: int, message: str | None = None) -> WireError:
        """The flavor's error body."""
        text = message if message is not None else _DEFAULT_MESSAGES.get(status, "Error")
        etype = _ERROR_TYPES.get(status, "InternalServerError")
        if self.flavor == "vllm":
            return WireError(
                status, dumps({"error": {"message": text, "type": etype, "param": None, "code": status}})
            )
        if self.flavor == "sglang":
            return WireError(
                status,
                dumps({"object": "error", "message": text, "type": etype, "param": None, "code": status}),
            )
        if self.flavor == "llamacpp":
            ltype = {
                401: "authentication_error",
                404: "not_found_error",
                500: "server_error",
                501: "not_supported_error",
                503: "unavailable_error",
            }.get(status, "invalid_request_error")
            return WireError(status, dumps({"error": {"code": status, "message": text, "type": ltype}}))
        otype = {404: "not_found_error", 400: "invalid_request_error"}.get(status, "api_error")
        if self.flavor == "openai" and status < 500:
            otype = "invalid_request_error"
        return WireError(
            status, dumps({"error": {"message": text, "type": otype, "param": None, "code": None}})
        )

    def authorize(self, cfg: ServerConfig, authorization: str | None, path: str) -> WireError | None:
        """No key unless the server was started with one; Ollama never checks."""
        if cfg.api_key is None or self.flavor == "ollama":
            return None
        if bearer(authorization) == cfg.api_key:
            return None
        if self.flavor == "llamacpp" and path in ("/v1/models", "/models", "/health"):
            return None
        if self.flavor in ("vllm", "sglang"):
            return WireError(401, dumps({"error": "Unauthorized"}))
        if self.flavor == "llamacpp":
            return self.error(401, "Invalid API Key")
        body = {
            "error": {
                "message": "Incorrect API key provided.",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
        }
        return WireError(401, dumps(body))

    # -- requests ----------------------------------------------------------------------------

    def parse(self, cfg: ServerConfig, body: Any, path: str) -> FimCall:
        """Validate a completion request the way the flavor's engine does."""
        if not isinstance(body, dict):
            raise self.error(400, "Invalid JSON body: expected an object")
        model = self._model(cfg, body)
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise self.error(400, "prompt: Input should be a valid string")
        for name, check in (("max_tokens", is_int), ("temperature", is_number), ("top_p", is_number)):
            value = body.get(name)
            if value is not None and not check(value):
                raise self.error(400, f"{name}: Input should be a valid number")
        max_tokens = body.get("max_tokens", DEFAULT_MAX_TOKENS.get(self.flavor))
        if max_tokens is not None and max_tokens < 1:
            raise self.error(400, f"max_tokens must be at least 1, got {max_tokens}.")
        stops = stop_list(body.get("stop"))
        if stops is None:
            raise self.error(400, "stop: Input should be a valid string or list of strings")
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise self.error(400, "stream: Input should be a valid boolean")
        options = body.get("stream_options")
        if options is not None and not isinstance(options, dict):
            raise self.error(400, "stream_options: Input should be a valid dictionary")
        if options is not None and not stream and self.flavor == "vllm":
            raise self.error(400, "Stream options can only be defined when `stream=True`.")
        user = body.get("user")
        if user is not None and not isinstance(user, str):
            raise self.error(400, "user: Input should be a valid string")
        call = FimCall(
            model=model,
            prefix=prompt,
            stream=stream,
            max_tokens=max_tokens,
            stops=stops,
            include_usage=bool(stream and options and options.get("include_usage") is True),
            options={"user": user} if user is not None else {},
        )
        self._suffix(cfg, body, call)
        return call

    def _model(self, cfg: ServerConfig, body: dict[str, Any]) -> str:
        model = body.get("model")
        if model is not None and not isinstance(model, str):
            raise self.error(400, "model: Input should be a valid string")
        if self.flavor in ("sglang", "llamacpp"):
            return model or (cfg.models[0] if cfg.models else "")
        if model is None and self.flavor == "vllm":
            return cfg.models[0] if cfg.models else ""
        if not model:
            raise self.error(400, "model is required")
        if self.flavor == "ollama":
            found = fake_ollama.resolve(cfg, model)
            if found is None:
                raise self.error(404, f"model '{model}' not found")
            return found
        if model not in cfg.models:
            if self.flavor == "vllm":
                raise self.error(404, f"The model `{model}` does not exist.")
            raise self.error(404, f"The model `{model}` does not exist or you do not have access to it.")
        return model

    def _suffix(self, cfg: ServerConfig, body: dict[str, Any], call: FimCall) -> None:
        """Apply the flavor's treatment of ``suffix``, or read a raw FIM prompt."""
        present = "suffix" in body and body["suffix"] is not None
        suffix = body.get("suffix")
        if present and not isinstance(suffix, str):
            raise self.error(400, "suffix: Input should be a valid string")
        if present and self.flavor == "vllm":
            raise self.error(400, "suffix is not currently supported")
        if "suffix" in body and self.flavor == "llamacpp":
            raise self.error(400, "Unsupported param: suffix")
        if present and suffix:
            assert isinstance(suffix, str)
            if self.flavor == "ollama":
                template = fake_ollama.template_of(cfg, call.model)
                if "insert" not in fake_ollama.capabilities(template):
                    raise self.error(400, f"{fake_ollama.full_name(call.model)} does not support insert")
            call.suffix = suffix
            call.suffix_ignored = self.flavor == "sglang" and cfg.completion_template is None
            return
        raw = fake_templates.parse(call.prefix)
        if raw is not None:
            call.prefix, call.suffix, call.context, call.extra = (
                raw.prefix,
                raw.suffix,
                raw.context,
                raw.extra,
            )

    # -- answers -----------------------------------------------------------------------------

    def _base(self, ans: Answer) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": f"cmpl-{ans.id}",
            "object": "text_completion",
            "created": ans.created,
            "model": ans.call.model,
        }
        if self.flavor in ("ollama", "llamacpp"):
            out["system_fingerprint"] = "fp_ollama" if self.flavor == "ollama" else "b0000-fake"
        return out

    def _choice(self, ans: Answer, text: str, finish: str | None) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        if self.flavor == "vllm":
            choice["stop_reason"] = (ans.stop_word or None) if finish else None
        if self.flavor == "sglang":
            choice["matched_stop"] = (ans.stop_word or None) if finish else None
        return choice

    def usage(self, ans: Answer) -> dict[str, Any]:
        """The usage object (a scripted one replaces it)."""
        if ans.usage is not None:
            return ans.usage
        usage: dict[str, Any] = {
            "prompt_tokens": ans.prompt_tokens,
            "completion_tokens": ans.completion_tokens,
            "total_tokens": ans.prompt_tokens + ans.completion_tokens,
        }
        if self.flavor != "ollama":
            usage["prompt_tokens_details"] = {"cached_tokens": ans.cached_tokens}
        return usage

    def piece_event(self, ans: Answer, i: int) -> bytes:
        """A content chunk; the last carries the finish reason when nothing follows it."""
        last = ans.plan.finish_on_last and i == len(ans.plan.pieces) - 1
        finish = ans.finish if last else None
        return sse({**self._base(ans), "choices": [self._choice(ans, ans.plan.pieces[i], finish)]})

    def final_events(self, ans: Answer) -> list[bytes]:
        """Finish chunk (unless it rode on the last piece), usage chunk, ``[DONE]``."""
        events: list[bytes] = []
        if not ans.plan.finish_on_last:
            events.append(sse({**self._base(ans), "choices": [self._choice(ans, "", ans.finish)]}))
        if ans.call.include_usage:
            events.append(sse({**self._base(ans), "choices": [], "usage": self.usage(ans)}))
        events.append(b"data: [DONE]\n\n")
        return events

    def body(self, ans: Answer) -> bytes:
        """The whole completion."""
        return dumps(
            {
                **self._base(ans),
                "choices": [self._choice(ans, ans.text, ans.finish)],
                "usage": self.usage(ans),
            }
        )

    # -- /v1/models --------------------------------------------------------------------------

    def info(self, cfg: ServerConfig, method: str, path: str, body: Any) -> tuple[int, Any] | None:
        """``GET /v1/models`` in the flavor's shape."""
        if (method, path) != ("GET", "/v1/models"):
            return None
        owner = {"vllm": "vllm", "sglang": "sglang", "ollama": "library", "llamacpp": "llamacpp"}.get(
            self.flavor, "system"
        )
        data: list[dict[str, Any]] = []
        for model in cfg.models:
            entry: dict[str, Any] = {"id": model, "object": "model", "created": 1735142223, "owned_by": owner}
            if self.flavor == "vllm":
                entry.update({"root": model, "parent": None, "max_model_len": 32768, "permission": []})
            data.append(entry)
        return 200, {"object": "list", "data": data}
