"""The backend setting and its defaults, and the new settings: template, templateStop,
pricePerMillionTokens, routingId."""

from __future__ import annotations

import json

import pytest
from backend_kit import make, request

from fimls.backends import KINDS, build, resolve_key
from fimls.backends.codestral import Codestral
from fimls.backends.deepseek import DeepSeek
from fimls.backends.llamacpp import LlamaCpp
from fimls.backends.ollama import Ollama
from fimls.backends.openai import Completions, Raw
from fimls.config import MACHINE_ONLY, BackendKind, parse_settings


@pytest.mark.parametrize(
    ("backend", "cls", "url", "key_env", "needs_key"),
    [
        ("deepseek", DeepSeek, "https://api.deepseek.com", "DEEPSEEK_API_KEY", True),
        ("openai-compatible", Completions, "http://127.0.0.1:8000", "FIMLS_API_KEY", False),
        ("ollama", Ollama, "http://127.0.0.1:11434", "FIMLS_API_KEY", False),
        ("llamacpp", LlamaCpp, "http://127.0.0.1:8012", "FIMLS_API_KEY", False),
        ("codestral", Codestral, "https://codestral.mistral.ai", "CODESTRAL_API_KEY", True),
        ("raw", Raw, "http://127.0.0.1:8000", "FIMLS_API_KEY", False),
        ("vllm", Raw, "http://127.0.0.1:8000", "FIMLS_API_KEY", False),
    ],
)
def test_each_backend_has_its_defaults(backend, cls, url, key_env, needs_key):
    settings, problems = parse_settings({"backend": backend})
    assert problems == []
    built = build(settings, None, env={})
    assert type(built) is cls and built.url == url and built.refusal is None and not built.has_key
    assert built.label == f"{KINDS[settings.backend].display} at {url}"
    assert built.default_model  # something to ask for when nothing is configured or listed
    key, problem = resolve_key(settings, {})
    assert key is None and (problem is not None) == needs_key
    assert resolve_key(settings, {key_env: " k-123 "}) == ("k-123", None)


def test_every_backend_kind_is_built():
    assert set(KINDS) == set(BackendKind)


@pytest.mark.parametrize("backend", ["ollama", "llamacpp", "raw", "openai-compatible"])
def test_plain_http_only_to_this_machine(backend):
    remote, _ = parse_settings({"backend": backend, "baseUrl": "http://gpu-box.example:8000"})
    assert "refusing to send code over plain http://" in (build(remote, None, env={}).refusal or "")
    local, _ = parse_settings({"backend": backend, "baseUrl": "http://localhost:9999"})
    assert build(local, None, env={}).refusal is None


def test_pasted_api_paths_are_stripped():
    assert (
        make({"backend": "ollama", "baseUrl": "http://127.0.0.1:11434/api/generate"}).url
        == "http://127.0.0.1:11434"
    )
    assert (
        make({"backend": "llamacpp", "baseUrl": "http://127.0.0.1:8012/infill"}).url
        == "http://127.0.0.1:8012"
    )
    assert make({"backend": "raw", "baseUrl": "https://llm.example.com/v1/"}).url == "https://llm.example.com"
    assert make({"backend": "codestral", "baseUrl": "https://api.mistral.ai/v1/fim/completions"}).url == (
        "https://api.mistral.ai"
    )


def test_deepseek_clamps_max_tokens_to_its_fim_cap():
    backend = make({"backend": "deepseek"})
    assert backend.body(request(max_tokens=9000))["max_tokens"] == 4096
    assert make({"backend": "raw", "template": "qwen"}).body(request(max_tokens=9000))["max_tokens"] == 9000


def test_price_setting():
    settings, problems = parse_settings(
        {"pricePerMillionTokens": {"input": 0.5, "cachedInput": 0.05, "output": 2}}
    )
    assert problems == []
    price = settings.price_per_million_tokens
    assert (price.input, price.cached_input, price.output) == (0.5, 0.05, 2.0)
    assert json.loads(json.dumps(settings.redacted))["pricePerMillionTokens"] == {
        "input": 0.5,
        "cachedInput": 0.05,
        "output": 2.0,
    }
    deepseek = make(
        {"backend": "deepseek", "pricePerMillionTokens": {"input": 0.5, "cachedInput": 0.05, "output": 2}}
    )
    assert deepseek.price("deepseek-chat").output == 2.0
    assert make({"backend": "deepseek"}).price("deepseek-chat").output == 1.2  # the list price
    assert make({"backend": "ollama"}).price("qwen2.5-coder:1.5b-base").output == 0.0


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({"input": 1}, "output is missing"),
        ({"input": -1, "output": 1}, "at least 0"),
        ({"input": True, "output": 1}, "at least 0"),
        ({"input": 1, "output": 1, "cached": 1}, "unknown key(s) cached"),
        (1.5, "expected an object"),
    ],
)
def test_bad_prices_fall_back_to_the_list_price(value, words):
    settings, problems = parse_settings({"pricePerMillionTokens": value})
    assert settings.price_per_million_tokens is None
    [problem] = problems
    assert "pricePerMillionTokens" in problem and words in problem


def test_routing_id_and_template_stop_validation():
    assert parse_settings({"routingId": "alice-7f3a"})[0].routing_id == "alice-7f3a"
    for bad in ("", "has space", "x" * 201, "ünï", "line\nbreak"):
        settings, problems = parse_settings({"routingId": bad})
        assert settings.routing_id is None and "routingId" in problems[0]
    assert parse_settings({"templateStop": ["<EOT>"]})[0].template_stop == ["<EOT>"]
    for bad in ([""], ["x"] * 17, "<EOT>"):
        settings, problems = parse_settings({"templateStop": bad})
        assert settings.template_stop is None and "templateStop" in problems[0]


def test_new_settings_may_come_from_a_workspace():
    """They shape requests, not where code and keys go."""
    for name in ("template", "templateStop", "pricePerMillionTokens", "routingId"):
        assert name not in MACHINE_ONLY
