"""Ollama's native API for the fake FIM server: ``POST /api/generate``, ``POST /api/show``,
``GET /api/tags``, ``GET /api/version``.

``/api/generate`` streams by default (NDJSON, one object per token, then a final object
with ``done``, ``done_reason``, counts and durations in nanoseconds).  A ``suffix`` needs a
model whose template uses ``.Suffix`` (else 400 "... does not support insert", as Ollama
answers); ``raw: true`` skips the template, so the prompt is read as a raw FIM prompt.
Models and their templates come from the fake: ``models`` and ``templates`` (a model with
no entry gets ``FIM_TEMPLATE``).  Ollama checks no key.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from typing import Any

import fake_templates
from fake_core import Answer, FimCall, ServerConfig, Wire, WireError, dumps, is_int, is_number

# Qwen2.5-Coder's template on Ollama (abridged): FIM when a suffix is given, chat otherwise.
FIM_TEMPLATE = (
    "{{- if .Suffix }}<|fim_prefix|>{{ .Prompt }}<|fim_suffix|>{{ .Suffix }}<|fim_middle|>\n"
    "{{- else }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n{{ end }}"
)
# A chat model's template: no .Suffix, so no FIM.
CHAT_TEMPLATE = (
    "{{- if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}"
    "<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{{ .Response }}<|eot_id|>"
)
_SUFFIX_VAR = re.compile(r"\.Suffix\b")
_LOAD_NS = 5_012_083  # a warm model's load_duration


def template_of(cfg: ServerConfig, model: str) -> str:
    """The Go template Ollama applies for model."""
    return cfg.templates.get(model, FIM_TEMPLATE)


def capabilities(template: str) -> list[str]:
    """What ``/api/show`` reports: ``insert`` when the template uses ``.Suffix``."""
    return ["completion", "insert"] if _SUFFIX_VAR.search(template) else ["completion"]


def resolve(cfg: ServerConfig, model: str) -> str | None:
    """The installed model a name refers to (``name`` means ``name:latest``)."""
    for candidate in (model, f"{model}:latest"):
        if candidate in cfg.models:
            return candidate
    return None


def full_name(model: str) -> str:
    """Ollama's full model name, as its capability errors show it."""
    name = model if ":" in model else f"{model}:latest"
    return f"registry.ollama.ai/{name}" if "/" in name.split(":")[0] else f"registry.ollama.ai/library/{name}"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _details(model: str) -> dict[str, Any]:
    family = "qwen2" if "qwen" in model else "llama"
    return {
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": [family],
        "parameter_size": "1.5B",
        "quantization_level": "Q4_K_M",
    }


class OllamaWire(Wire):
    """``/api/*`` as Ollama speaks it."""

    name = "ollama"
    stream_type = "application/x-ndjson"
    json_type = "application/json; charset=utf-8"

    def error(self, status: int, message: str | None = None) -> WireError:
        """Ollama's ``{"error": "..."}``."""
        default = {
            404: "not found",
            500: "internal server error",
            503: "server busy, please try again.  maximum pending requests exceeded",
        }
        return WireError(
            status, dumps({"error": message or default.get(status, "bad request")}), self.json_type
        )

    def parse(self, cfg: ServerConfig, body: Any, path: str) -> FimCall:
        """Validate ``/api/generate`` as Ollama's handler does."""
        if body is None:
            raise self.error(400, "missing request body")
        if not isinstance(body, dict):
            raise self.error(400, "json: cannot unmarshal array into Go value of type api.GenerateRequest")
        for name, kind in (("model", str), ("prompt", str), ("suffix", str), ("raw", bool), ("stream", bool)):
            value = body.get(name)
            if value is not None and not isinstance(value, kind):
                gotype = {str: "string", bool: "bool"}[kind]
                raise self.error(
                    400,
                    f"json: cannot unmarshal {_json_kind(value)} into Go struct field GenerateRequest.{name} "
                    f"of type {gotype}",
                )
        options = body.get("options") or {}
        if not isinstance(options, dict):
            raise self.error(400, "json: cannot unmarshal into Go struct field GenerateRequest.options")
        asked = body.get("model") or ""
        if not asked:
            raise self.error(400, "model is required")
        model = resolve(cfg, asked)
        if model is None:
            raise self.error(404, f"model '{asked}' not found")
        prompt, suffix = body.get("prompt") or "", body.get("suffix") or ""
        raw = body.get("raw") is True
        if not prompt:  # an empty prompt only loads the model
            loaded = {
                "model": asked,
                "created_at": _now(),
                "response": "",
                "done": True,
                "done_reason": "load",
            }
            raise WireError(200, dumps(loaded), self.json_type)
        if raw and (body.get("template") or body.get("system") or body.get("context")):
            raise self.error(400, "raw mode does not support template, system, or context")
        if suffix and "insert" not in capabilities(template_of(cfg, model)):
            raise self.error(400, f"{full_name(model)} does not support insert")
        num_predict = options.get("num_predict")
        stops = options.get("stop") or []
        if (num_predict is not None and not is_int(num_predict)) or not (
            isinstance(stops, list) and all(isinstance(s, str) for s in stops)
        ):
            raise self.error(400, "invalid options")
        for name in ("temperature", "top_p"):
            if options.get(name) is not None and not is_number(options[name]):
                raise self.error(400, "invalid options")
        call = FimCall(
            model=model,
            prefix=prompt,
            suffix=suffix,
            stream=body.get("stream", True) is not False,
            max_tokens=num_predict if num_predict is not None and num_predict >= 0 else None,
            stops=list(stops),
            options={"raw": raw, "asked": asked},
        )
        if raw:
            call.suffix, call.suffix_ignored = suffix, bool(suffix)  # raw skips the template
            found = fake_templates.parse(prompt)
            if found is not None:
                call.prefix, call.suffix, call.context, call.extra = (
                    found.prefix,
                    found.suffix,
                    found.context,
                    found.extra,
                )
                call.suffix_ignored = False
        return call

    def _final(self, ans: Answer, response: str) -> dict[str, Any]:
        reason = "length" if ans.finish == "length" else "stop"
        out: dict[str, Any] = {
            "model": ans.call.options.get("asked", ans.call.model),
            "created_at": _now(),
            "response": response,
            "done": True,
            "done_reason": reason,
        }
        if not ans.call.options.get("raw"):
            out["context"] = list(range(1, ans.prompt_tokens + ans.completion_tokens + 1))
        prompt_ns = max(1, int(ans.prompt_seconds * 1e9))
        eval_ns = max(1, int(ans.generation_seconds * 1e9))
        out["total_duration"] = _LOAD_NS + prompt_ns + eval_ns
        out["load_duration"] = _LOAD_NS
        out["prompt_eval_count"] = ans.prompt_tokens
        out["prompt_eval_duration"] = prompt_ns
        if ans.completion_tokens:  # Go's omitempty: no count and no duration for an empty answer
            out["eval_count"] = ans.completion_tokens
            out["eval_duration"] = eval_ns
        if ans.usage is not None:
            out.update(ans.usage)
        return out

    def piece_event(self, ans: Answer, i: int) -> bytes:
        """One NDJSON line per token."""
        line = {
            "model": ans.call.options.get("asked", ans.call.model),
            "created_at": _now(),
            "response": ans.plan.pieces[i],
            "done": False,
        }
        return dumps(line) + b"\n"

    def final_events(self, ans: Answer) -> list[bytes]:
        """The closing object with ``done: true`` and the statistics."""
        return [dumps(self._final(ans, "")) + b"\n"]

    def body(self, ans: Answer) -> bytes:
        """The whole answer in one object."""
        return dumps(self._final(ans, ans.text))

    def info(self, cfg: ServerConfig, method: str, path: str, body: Any) -> tuple[int, Any] | None:
        """``/api/show``, ``/api/tags``, ``/api/version``."""
        if (method, path) == ("GET", "/api/version"):
            return 200, {"version": "0.12.6"}
        if (method, path) == ("GET", "/api/tags"):
            return 200, {"models": [_tag(m) for m in cfg.models]}
        if (method, path) == ("POST", "/api/show"):
            if not isinstance(body, dict):
                raise self.error(400, "missing request body")
            asked = body.get("model") or body.get("name") or ""
            if not asked:
                raise self.error(400, "model is required")
            model = resolve(cfg, asked)
            if model is None:
                shown = asked if ":" in asked else f"{asked}:latest"
                raise self.error(404, f"model '{shown}' not found")
            template = template_of(cfg, model)
            return 200, {
                "license": "Apache License 2.0",
                "modelfile": f'# Modelfile generated by "ollama show"\nFROM {model}\n'
                f'TEMPLATE """{template}"""\n',
                "parameters": 'stop                           "<|endoftext|>"',
                "template": template,
                "details": _details(model),
                "model_info": {
                    "general.architecture": _details(model)["family"],
                    "general.parameter_count": 1543714304,
                },
                "capabilities": capabilities(template),
                "modified_at": "2025-05-10T08:06:48.639712648-07:00",
            }
        return None


def _tag(model: str) -> dict[str, Any]:
    digest = hashlib.sha256(model.encode()).hexdigest()
    return {
        "name": model,
        "model": model,
        "modified_at": "2025-05-10T08:06:48.639712648-07:00",
        "size": 986061892,
        "digest": digest,
        "details": _details(model),
    }


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
