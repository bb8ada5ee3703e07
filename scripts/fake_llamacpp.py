"""llama.cpp's ``llama-server`` for the fake FIM server: ``POST /infill``, ``POST /completion``,
``GET /props``, ``GET /health`` and (flavor ``llamacpp``) ``GET /v1/models``.

``/infill`` takes ``input_prefix``, ``input_suffix``, ``input_extra`` (other files as
``{filename, text}``) and ``prompt`` (text after the middle token), plus the
``/completion`` options: ``n_predict``, ``stream``, ``cache_prompt`` (default true),
``id_slot``, ``n_indent`` (stop at a line indented less), ``t_max_predict_ms`` (stop at a
newline once generation took that long), ``stop``, ``samplers``...  Streams are SSE
``data: {"content": ..., "stop": false}`` per token and a final event with ``stop: true``,
``stop_type``, ``tokens_cached`` and ``timings``; there is no ``[DONE]``.  ``/completion``
takes a raw prompt.  A model without FIM tokens (``llamacpp_fim = False``) answers
``/infill`` with 501.  Keys are checked only when the server has one (``--api-key``).
"""

from __future__ import annotations

from typing import Any

import fake_templates
from fake_core import Answer, FimCall, ServerConfig, Wire, WireError, bearer, dumps, is_int, is_number, sse

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    500: "server_error",
    501: "not_supported_error",
    503: "unavailable_error",
}
_PUBLIC = ("/health", "/v1/health", "/models", "/v1/models")
_NO_FIM = (
    "Infill is not supported by this model: prefix token is missing. suffix token is missing. "
    "middle token is missing. "
)
_SAMPLERS = ["dry", "top_k", "typ_p", "top_p", "min_p", "xtc", "temperature"]


class LlamaCppWire(Wire):
    """llama-server's native endpoints."""

    name = "llamacpp"

    def error(self, status: int, message: str | None = None) -> WireError:
        """``{"error": {"code", "message", "type"}}``."""
        default = {404: "File Not Found", 500: "Internal Server Error", 503: "Loading model"}.get(
            status, "Bad Request"
        )
        body = {
            "error": {
                "code": status,
                "message": message or default,
                "type": _TYPES.get(status, "server_error"),
            }
        }
        return WireError(status, dumps(body), "application/json; charset=utf-8")

    def authorize(self, cfg: ServerConfig, authorization: str | None, path: str) -> WireError | None:
        """Only a server started with ``--api-key`` checks keys, and never on public routes."""
        if cfg.api_key is None or path in _PUBLIC or bearer(authorization) == cfg.api_key:
            return None
        return self.error(401, "Invalid API Key")

    def parse(self, cfg: ServerConfig, body: Any, path: str) -> FimCall:
        """Validate ``/infill`` or ``/completion`` as llama-server does."""
        if not isinstance(body, dict):
            raise self.error(
                400, "[json.exception.parse_error.101] parse error: syntax error while parsing value"
            )
        if path == "/infill":
            call = self._infill(cfg, body)
        else:
            prompt = body.get("prompt")
            if prompt is None:
                raise self.error(400, '"prompt" must be provided')
            if not isinstance(prompt, str):
                raise self.error(400, '"prompt" must be a string')
            call = FimCall(
                model=cfg.models[0] if cfg.models else "", prefix=prompt, options={"prompt": prompt}
            )
            found = fake_templates.parse(prompt)
            if found is not None:
                call.prefix, call.suffix, call.context, call.extra = (
                    found.prefix,
                    found.suffix,
                    found.context,
                    found.extra,
                )
        self._options(body, call)
        return call

    def _infill(self, cfg: ServerConfig, body: dict[str, Any]) -> FimCall:
        if not cfg.llamacpp_fim:
            raise self.error(501, _NO_FIM)
        prompt = body.get("prompt", "")
        if not isinstance(prompt, str):
            raise self.error(400, '"prompt" must be a string')
        for name in ("input_prefix", "input_suffix"):
            if name not in body:
                raise self.error(400, f'"{name}" is required')
            if not isinstance(body[name], str):
                raise self.error(
                    400, f"[json.exception.type_error.302] type must be string, but is {_kind(body[name])}"
                )
        extra = body.get("input_extra", [])
        if not isinstance(extra, list):
            raise self.error(400, '"input_extra" must be an array of {"filename": string, "text": string}')
        files: list[dict[str, str]] = []
        for chunk in extra:
            if not isinstance(chunk, dict) or not isinstance(chunk.get("text"), str):
                raise self.error(400, 'extra_context chunk must contain a "text" field with a string value')
            if "filename" in chunk and not isinstance(chunk["filename"], str):
                raise self.error(400, 'extra_context chunk\'s "filename" field must be a string')
            files.append({"filename": chunk.get("filename", "tmp"), "text": chunk["text"]})
        context = ""
        if files:
            context = "<|repo_name|>myproject\n" + "".join(
                f"<|file_sep|>{f['filename']}\n{f['text']}\n" for f in files
            )
            context += "<|file_sep|>filename\n"
        return FimCall(
            model=cfg.models[0] if cfg.models else "",
            prefix=body["input_prefix"] + prompt,
            suffix=body["input_suffix"],
            context=context,
            extra=files,
            options={"middle": prompt},
        )

    def _options(self, body: dict[str, Any], call: FimCall) -> None:
        """The ``/completion`` options every generation endpoint takes."""
        checks = (
            ("n_predict", is_int),
            ("id_slot", is_int),
            ("n_indent", is_int),
            ("t_max_predict_ms", is_number),
            ("temperature", is_number),
            ("top_k", is_number),
            ("top_p", is_number),
            ("stream", lambda v: isinstance(v, bool)),
            ("cache_prompt", lambda v: isinstance(v, bool)),
            ("stop", lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v)),
            ("samplers", lambda v: isinstance(v, list)),
        )
        for name, check in checks:
            value = body.get(name)
            if value is not None and not check(value):
                expected = (
                    "array" if name in ("stop", "samplers") else "number" if name != "stream" else "boolean"
                )
                raise self.error(
                    400, f"[json.exception.type_error.302] type must be {expected}, but is {_kind(value)}"
                )
        n_predict = body.get("n_predict", -1)
        call.max_tokens = n_predict if n_predict >= 0 else None
        call.stream = body.get("stream", False) is True
        call.cache = body.get("cache_prompt", True) is not False
        call.stops = list(body.get("stop") or [])
        call.n_indent = body.get("n_indent", 0) or 0
        call.t_max_predict_ms = float(body.get("t_max_predict_ms", 0) or 0)
        slot = body.get("id_slot", -1)
        call.options.update(
            {
                "id_slot": 0 if slot is None or slot < 0 else slot,
                "n_predict": n_predict,
                "samplers": body.get("samplers", _SAMPLERS),
                "temperature": body.get("temperature", 0.8),
                "response_fields": body.get("response_fields"),
            }
        )

    # -- answers -----------------------------------------------------------------------------

    def _stop_type(self, ans: Answer) -> str:
        return {"word": "word", "eos": "eos", "": "eos"}.get(ans.cut_by, "limit")

    def _timings(self, ans: Answer) -> dict[str, Any]:
        prompt_n = max(0, ans.prompt_tokens - ans.cached_tokens)
        prompt_ms = ans.prompt_seconds * 1000.0
        predicted_ms = ans.generation_seconds * 1000.0
        return {
            "cache_n": ans.cached_tokens,
            "prompt_n": prompt_n,
            "prompt_ms": prompt_ms,
            "prompt_per_token_ms": prompt_ms / prompt_n if prompt_n else 0.0,
            "prompt_per_second": 1000.0 * prompt_n / prompt_ms if prompt_ms > 0 else 0.0,
            "predicted_n": ans.completion_tokens,
            "predicted_ms": predicted_ms,
            "predicted_per_token_ms": predicted_ms / ans.completion_tokens if ans.completion_tokens else 0.0,
            "predicted_per_second": 1000.0 * ans.completion_tokens / predicted_ms
            if predicted_ms > 0
            else 0.0,
        }

    def _final(self, ans: Answer, content: str) -> dict[str, Any]:
        call = ans.call
        prompt = call.options.get("prompt")  # /completion: the prompt as sent
        if prompt is None:  # /infill: the prompt the server builds, the prompt field after FIM_MID
            middle = call.options.get("middle", "")
            before = call.prefix[: len(call.prefix) - len(middle)]
            prompt = f"{call.context}<|fim_prefix|>{before}<|fim_suffix|>{call.suffix}<|fim_middle|>{middle}"
        out: dict[str, Any] = {
            "index": 0,
            "content": content,
            "tokens": [],
            "id_slot": call.options["id_slot"],
            "stop": True,
            "model": call.model,
            "tokens_predicted": ans.completion_tokens,
            "tokens_evaluated": ans.prompt_tokens,
            "generation_settings": {
                "n_predict": call.options["n_predict"],
                "temperature": call.options["temperature"],
                "stop": call.stops,
                "n_indent": call.n_indent,
                "t_max_predict_ms": int(call.t_max_predict_ms),
                "samplers": call.options["samplers"],
                "stream": call.stream,
                "cache_prompt": call.cache,
            },
            "prompt": prompt,
            "has_new_line": "\n" in ans.text,
            "truncated": False,
            "stop_type": self._stop_type(ans),
            "stopping_word": ans.stop_word,
            "tokens_cached": ans.cached_tokens,
            "timings": self._timings(ans),
        }
        if ans.usage is not None:
            out.update(ans.usage)
        fields = call.options.get("response_fields")
        if isinstance(fields, list) and fields:
            out = {
                name.rsplit("/", 1)[-1]: _nested(out, name)
                for name in fields
                if _nested(out, name) is not None
            }
        return out

    def piece_event(self, ans: Answer, i: int) -> bytes:
        """``{"content": <token>, "stop": false}``."""
        event = {
            "index": 0,
            "content": ans.plan.pieces[i],
            "tokens": [],
            "stop": False,
            "id_slot": ans.call.options["id_slot"],
            "tokens_predicted": i + 1,
            "tokens_evaluated": ans.prompt_tokens,
        }
        return sse(event)

    def final_events(self, ans: Answer) -> list[bytes]:
        """The final result with ``stop: true`` and empty content (it was streamed)."""
        return [sse(self._final(ans, ""))]

    def body(self, ans: Answer) -> bytes:
        """The final result with the whole content."""
        return dumps(self._final(ans, ans.text))

    def info(self, cfg: ServerConfig, method: str, path: str, body: Any) -> tuple[int, Any] | None:
        """``/health``, ``/props``, ``/v1/models``."""
        model = cfg.models[0] if cfg.models else "model.gguf"
        if (method, path) in (("GET", "/health"), ("GET", "/v1/health")):
            return 200, {"status": "ok"}
        if (method, path) == ("GET", "/props"):
            params = {
                "n_predict": -1,
                "temperature": 0.8,
                "top_k": 40,
                "top_p": 0.95,
                "min_p": 0.05,
                "stop": [],
                "stream": True,
                "samplers": _SAMPLERS,
            }
            settings = {
                "id": 0,
                "id_task": -1,
                "n_ctx": 32768,
                "speculative": False,
                "is_processing": False,
                "params": params,
                "prompt": "",
            }
            return 200, {
                "default_generation_settings": settings,
                "total_slots": 1,
                "model_path": f"/models/{model}",
                "chat_template": "",
                "chat_template_caps": {},
                "modalities": {"vision": False, "audio": False},
                "build_info": "b0000-fake",
                "is_sleeping": False,
            }
        if (method, path) == ("GET", "/v1/models"):
            entry = {
                "id": model,
                "object": "model",
                "architecture": {"input_modalities": ["text"], "output_modalities": ["text"]},
                "created": 1735142223,
                "owned_by": "llamacpp",
                "meta": {
                    "vocab_type": 2,
                    "n_vocab": 151936,
                    "n_ctx_train": 32768,
                    "n_embd": 1536,
                    "n_params": 1543714304,
                    "size": 986061892,
                },
            }
            return 200, {"object": "list", "data": [entry]}
        return None


def _nested(obj: dict[str, Any], name: str) -> Any:
    """``response_fields`` lookup: ``a/b`` reads ``obj["a"]["b"]``."""
    value: Any = obj
    for part in name.split("/"):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"
