"""Mistral's Codestral ``POST /v1/fim/completions`` for the fake FIM server.

Request fields: ``model``, ``prompt``, ``suffix``, ``max_tokens``, ``min_tokens``,
``temperature``, ``top_p``, ``stream``, ``stop``, ``random_seed`` (and ``metadata``,
``prompt_cache_key``); any other field is a 422 ``extra_forbidden``, as Mistral's
validator does.  Streams are SSE chunks with ``choices[0].delta.content``, the first
one carrying the role, the last the finish reason and usage, then ``data: [DONE]``.
A missing or wrong key is a 401 ``{"message": "Unauthorized", "request_id": ...}``.
"""

from __future__ import annotations

from typing import Any

from fake_core import (
    Answer,
    FimCall,
    ServerConfig,
    Wire,
    WireError,
    bearer,
    dumps,
    hexid,
    is_int,
    is_number,
    sse,
    stop_list,
)

_FIELDS = {
    "model": "string",
    "prompt": "string",
    "suffix": "string",
    "max_tokens": "int",
    "min_tokens": "int",
    "temperature": "number",
    "top_p": "number",
    "stream": "bool",
    "stop": "stop",
    "random_seed": "int",
    "metadata": "dict",
    "prompt_cache_key": "string",
}
_TYPE_MESSAGES = {
    "string": ("string_type", "Input should be a valid string"),
    "int": ("int_type", "Input should be a valid integer"),
    "number": ("float_type", "Input should be a valid number"),
    "bool": ("bool_type", "Input should be a valid boolean"),
    "dict": ("dict_type", "Input should be a valid dictionary"),
    "stop": ("string_type", "Input should be a valid string"),
}


class CodestralWire(Wire):
    """Mistral's FIM API."""

    name = "codestral"

    def error(self, status: int, message: str | None = None) -> WireError:
        """Mistral's error body for the status."""
        if status == 401:
            return WireError(
                401,
                dumps({"message": message or "Unauthorized", "request_id": hexid(32)}),
                "application/json; charset=utf-8",
            )
        etype = {400: "invalid_request_error", 404: "invalid_request_error", 429: "rate_limited"}.get(
            status, "internal_server_error" if status >= 500 else "invalid_request_error"
        )
        default = {
            429: "Requests rate limit exceeded",
            500: "Internal server error",
            503: "Service unavailable",
        }
        body = {
            "object": "error",
            "message": message or default.get(status, "Bad request"),
            "type": etype,
            "param": None,
            "code": None,
        }
        return WireError(status, dumps(body))

    def authorize(self, cfg: ServerConfig, authorization: str | None, path: str) -> WireError | None:
        """A bearer key is always needed; any one when the fake has none set."""
        token = bearer(authorization)
        if token is not None and (cfg.api_key is None or token == cfg.api_key):
            return None
        return self.error(401)

    def _invalid(self, details: list[dict[str, Any]]) -> WireError:
        body = {
            "object": "error",
            "message": {"detail": details},
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
        return WireError(422, dumps(body))

    def parse(self, cfg: ServerConfig, body: Any, path: str) -> FimCall:
        """Validate like Mistral's API: missing, mistyped and unknown fields are 422s."""
        if not isinstance(body, dict):
            raise self._invalid(
                [
                    {
                        "type": "model_attributes_type",
                        "loc": ["body"],
                        "msg": "Input should be a valid dictionary or object to extract fields from",
                        "input": body,
                    }
                ]
            )
        details: list[dict[str, Any]] = []
        for name in ("model", "prompt"):
            if name not in body:
                details.append(
                    {"type": "missing", "loc": ["body", name], "msg": "Field required", "input": body}
                )
        for name, value in body.items():
            kind = _FIELDS.get(name)
            if kind is None:
                details.append(
                    {
                        "type": "extra_forbidden",
                        "loc": ["body", name],
                        "msg": "Extra inputs are not permitted",
                        "input": value,
                    }
                )
            elif value is not None and not _fits(kind, value):
                code, msg = _TYPE_MESSAGES[kind]
                details.append({"type": code, "loc": ["body", name], "msg": msg, "input": value})
        if details:
            raise self._invalid(details)
        model = body["model"]
        if model not in cfg.models:
            raise WireError(
                400,
                dumps(
                    {
                        "object": "error",
                        "message": f"Invalid model: {model}",
                        "type": "invalid_model",
                        "param": None,
                        "code": "1500",
                    }
                ),
            )
        for name, low, high in (("temperature", 0.0, 1.5), ("top_p", 0.0, 1.0)):
            value = body.get(name)
            if value is not None and not low <= value <= high:
                raise self._invalid(
                    [
                        {
                            "type": "less_than_equal" if value > high else "greater_than_equal",
                            "loc": ["body", name],
                            "msg": f"Input should be between {low} and {high}",
                            "input": value,
                        }
                    ]
                )
        for name in ("max_tokens", "min_tokens"):
            value = body.get(name)
            if value is not None and value < 0:
                raise self._invalid(
                    [
                        {
                            "type": "greater_than_equal",
                            "loc": ["body", name],
                            "msg": "Input should be greater than or equal to 0",
                            "input": value,
                        }
                    ]
                )
        return FimCall(
            model=model,
            prefix=body["prompt"],
            suffix=body.get("suffix") or "",
            stream=body.get("stream") is True,
            max_tokens=body.get("max_tokens") or None,
            stops=stop_list(body.get("stop")) or [],
            include_usage=True,
            options={k: body[k] for k in ("random_seed", "min_tokens") if body.get(k) is not None},
        )

    def usage(self, ans: Answer) -> dict[str, Any]:
        """Mistral's usage object (a scripted one replaces it)."""
        if ans.usage is not None:
            return ans.usage
        return {
            "prompt_tokens": ans.prompt_tokens,
            "completion_tokens": ans.completion_tokens,
            "total_tokens": ans.prompt_tokens + ans.completion_tokens,
        }

    def _chunk(self, ans: Answer, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "id": ans.id,
            "object": "chat.completion.chunk",
            "created": ans.created,
            "model": ans.call.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    def piece_event(self, ans: Answer, i: int) -> bytes:
        """A delta chunk; the first also names the role, the last may finish."""
        delta: dict[str, Any] = {"content": ans.plan.pieces[i]}
        if i == 0:
            delta = {"role": "assistant", **delta}
        last = ans.plan.finish_on_last and i == len(ans.plan.pieces) - 1
        chunk = self._chunk(ans, delta, ans.finish if last else None)
        if last:
            chunk["usage"] = self.usage(ans)
        return sse(chunk)

    def final_events(self, ans: Answer) -> list[bytes]:
        """The finish chunk with usage (unless it rode on the last piece), then ``[DONE]``."""
        events: list[bytes] = []
        if not ans.plan.finish_on_last:
            delta: dict[str, Any] = {"content": ""}
            if not ans.plan.pieces:
                delta = {"role": "assistant", **delta}
            events.append(sse({**self._chunk(ans, delta, ans.finish), "usage": self.usage(ans)}))
        events.append(b"data: [DONE]\n\n")
        return events

    def body(self, ans: Answer) -> bytes:
        """Mistral's chat-shaped completion."""
        message = {"role": "assistant", "tool_calls": None, "content": ans.text, "prefix": False}
        return dumps(
            {
                "id": ans.id,
                "object": "chat.completion",
                "model": ans.call.model,
                "usage": self.usage(ans),
                "created": ans.created,
                "choices": [{"index": 0, "message": message, "finish_reason": ans.finish}],
            }
        )

    def info(self, cfg: ServerConfig, method: str, path: str, body: Any) -> tuple[int, Any] | None:
        """``GET /v1/models`` as Mistral lists them."""
        if (method, path) != ("GET", "/v1/models"):
            return None
        caps = {
            "completion_chat": True,
            "completion_fim": True,
            "function_calling": True,
            "fine_tuning": False,
            "vision": False,
        }
        data = [
            {
                "id": m,
                "object": "model",
                "created": 1735142223,
                "owned_by": "mistralai",
                "capabilities": caps,
                "name": m,
                "max_context_length": 256000,
                "type": "base",
            }
            for m in cfg.models
        ]
        return 200, {"object": "list", "data": data}


def _fits(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "int":
        return is_int(value)
    if kind == "number":
        return is_number(value)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "dict":
        return isinstance(value, dict)
    return stop_list(value) is not None
