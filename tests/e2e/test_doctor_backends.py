"""``fimls doctor`` for every backend, in a working and a broken configuration (a real subprocess
against the fake engine): the backend's own model list, its own checks, one FIM call, and why not."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from conftest import SERVER, TEST_KEY, server_env
from fake_deepseek import CHAT_TEMPLATE

QWEN = "Qwen/Qwen2.5-Coder-7B"
CODER = "qwen2.5-coder:1.5b-base"
GGUF = "qwen2.5-coder-1.5b-q8_0.gguf"


def doctor(fake, config: dict[str, Any], **env: str) -> tuple[int, list[str]]:
    settings = {"baseUrl": fake.url, **config}
    result = subprocess.run(
        [*SERVER, "--config", json.dumps(settings), "doctor"],
        env=server_env(fake, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert TEST_KEY not in output
    return result.returncode, result.stdout.splitlines()


def line(lines: list[str], start: str) -> str:
    found = [text for text in lines if text.startswith(start)]
    assert len(found) == 1, (start, lines)
    return found[0]


GOOD = {
    "openai-compatible": (
        {"flavor": "sglang", "models": [QWEN], "completion_template": "qwen_coder"},
        {"FIMLS_API_KEY": TEST_KEY},
        [
            "PASS  API key: set",
            f"PASS  models (GET /v1/models): 1 model(s): {QWEN}; using {QWEN}",
            "PASS  FIM format: prompt and suffix fields",
            "PASS  FIM (POST /v1/completions): 'pass'",
        ],
        ["/v1/models", "/v1/completions"],
    ),
    "raw": (
        {"flavor": "vllm", "models": [QWEN]},
        {"FIMLS_API_KEY": TEST_KEY},
        [
            f"PASS  models (GET /v1/models): 1 model(s): {QWEN}; using {QWEN}",
            "PASS  raw FIM template: qwen (<|fim_prefix|>…<|fim_suffix|>…<|fim_middle|>), with other files",
            "PASS  FIM (POST /v1/completions): 'pass'",
        ],
        ["/v1/models", "/v1/completions"],
    ),
    "ollama": (
        {"models": [CODER]},
        {},
        [
            "PASS  API key: none needed",
            f"PASS  models (GET /api/tags): 1 model(s): {CODER}; using {CODER}",
            "PASS  GET /api/version: Ollama 0.12.6",
            "PASS  FIM template (POST /api/show): the template uses .Suffix: FIM through the suffix field",
            "PASS  FIM (POST /api/generate): 'pass'",
        ],
        ["/api/tags", "/api/version", "/api/show", "/api/generate"],
    ),
    "llamacpp": (
        {"models": [GGUF]},
        {"FIMLS_API_KEY": TEST_KEY},  # the fake llama-server runs with --api-key
        [
            f"PASS  models (GET /v1/models): 1 model(s): {GGUF}; using {GGUF}",
            "PASS  GET /health: ok",
            f"PASS  GET /props: model /models/{GGUF}, 1 slot(s), context 32768 tokens",
            "PASS  FIM (POST /infill): 'pass'",
        ],
        ["/v1/models", "/health", "/props", "/infill"],
    ),
    "codestral": (
        {"flavor": "codestral", "models": ["codestral-latest", "mistral-large-latest"]},
        {"CODESTRAL_API_KEY": TEST_KEY},
        [
            "PASS  API key: set",
            "PASS  models (GET /v1/models): 2 model(s): codestral-latest, mistral-large-latest; "
            "using codestral-latest",
            "PASS  FIM (POST /v1/fim/completions): 'pass'",
        ],
        ["/v1/models", "/v1/fim/completions"],
    ),
}


@pytest.mark.parametrize("backend", list(GOOD))
def test_doctor_passes(fake, backend):
    attributes, env, expected, paths = GOOD[backend]
    for name, value in attributes.items():
        setattr(fake, name, value)
    code, lines = doctor(fake, {"backend": backend}, **env)
    assert code == 0, lines
    assert lines[0].startswith("fimls ") and f"at {fake.url}" in lines[0]
    for start in expected:
        line(lines, start)
    assert lines[-1] == "all checks passed"
    assert [r.path for r in fake.requests] == paths


def test_doctor_openai_compatible_refusing_suffix_with_no_known_template(fake):
    fake.flavor, fake.models = "vllm", ["my-finetune"]
    code, lines = doctor(fake, {"backend": "openai-compatible"}, FIMLS_API_KEY=TEST_KEY)
    assert code == 1
    failed = line(lines, "FAIL  FIM (POST /v1/completions): ")
    assert "does not take the suffix field (suffix is not currently supported)" in failed
    assert 'set "template"' in failed


def test_doctor_raw_without_a_template_for_the_model(fake):
    fake.flavor, fake.models = "vllm", ["my-finetune"]
    code, lines = doctor(fake, {"backend": "raw"}, FIMLS_API_KEY=TEST_KEY)
    assert code == 1
    assert "none known for 'my-finetune'" in line(lines, "FAIL  raw FIM template: ")
    line(lines, "FAIL  FIM (POST /v1/completions): ")
    assert "/v1/completions" not in [r.path for r in fake.requests]  # nothing sent that cannot work


def test_doctor_ollama_chat_model_and_missing_model(fake):
    fake.models, fake.templates = ["llama3.1:8b"], {"llama3.1:8b": CHAT_TEMPLATE}
    code, lines = doctor(fake, {"backend": "ollama", "model": "llama3.1:8b"})
    assert code == 1
    assert line(lines, "FAIL  FIM template (POST /api/show): ") == (
        "FAIL  FIM template (POST /api/show): this Ollama model's template has no suffix; "
        "use a FIM model such as qwen2.5-coder:1.5b-base, or set a raw template"
    )
    fake.requests.clear()
    code, lines = doctor(fake, {"backend": "ollama", "model": CODER})
    assert code == 1
    assert "NOT listed" in line(lines, "FAIL  models (GET /api/tags): ")
    assert f"ollama pull {CODER}" in line(lines, "FAIL  FIM template (POST /api/show): ")


def test_doctor_llamacpp_model_without_fim_tokens(fake):
    fake.models, fake.llamacpp_fim = [GGUF], False
    code, lines = doctor(fake, {"backend": "llamacpp"}, FIMLS_API_KEY=TEST_KEY)
    assert code == 1
    failed = line(lines, "FAIL  FIM (POST /infill): ")
    assert "no FIM tokens" in failed and "(501)" not in failed and "Infill is not supported" in failed


def test_doctor_codestral_without_a_key(fake):
    fake.flavor = "codestral"
    code, lines = doctor(fake, {"backend": "codestral"})
    assert code == 1
    line(lines, "FAIL  API key: no API key: set CODESTRAL_API_KEY, apiKey or apiKeyCommand")
    assert fake.requests == []
