"""The fake server's Ollama API: ``/api/generate`` (NDJSON), ``/api/show``, ``/api/tags``."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "scripts"))

from fake_deepseek import CHAT_TEMPLATE, FakeDeepSeek, Reply

CODER, CHAT = "qwen2.5-coder:1.5b", "llama3.2:latest"
SOURCE = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"
CUT = SOURCE.index("return a + b")
END = SOURCE.index("\n\n\ndef sub")


@pytest.fixture
def fake() -> Iterator[FakeDeepSeek]:
    with FakeDeepSeek(models=[CODER, CHAT], templates={CHAT: CHAT_TEMPLATE}, oracle_text=SOURCE) as server:
        yield server


@pytest.fixture
def c(fake: FakeDeepSeek) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, trust_env=False, timeout=10.0) as client:  # Ollama needs no key
        yield client


def ndjson(c: httpx.Client, body: dict[str, Any]) -> list[dict[str, Any]]:
    with c.stream("POST", "/api/generate", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/x-ndjson"
        return [json.loads(line) for line in r.iter_lines() if line]


def test_generate_streams_by_default(fake: FakeDeepSeek, c: httpx.Client) -> None:
    fake.token_rate = 1000
    lines = ndjson(c, {"model": "qwen2.5-coder:1.5b", "prompt": SOURCE[:CUT], "suffix": SOURCE[END:]})
    *parts, final = lines
    assert "".join(p["response"] for p in parts) == "return a + b"
    assert [p["response"] for p in parts] == ["ret", "urn", " a ", "+ b"]
    assert all(p["done"] is False and p["model"] == CODER for p in parts)
    assert final["done"] is True
    assert final["done_reason"] == "stop"
    assert final["response"] == ""
    assert final["eval_count"] == 4
    assert final["prompt_eval_count"] == 18  # ceil((19 + 35) / 3)
    for name in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(final[name], int) and final[name] > 0
    assert final["total_duration"] >= final["prompt_eval_duration"] + final["eval_duration"]
    assert len(final["context"]) == 22  # prompt and answer tokens
    assert final["created_at"].endswith("Z")
    [log] = fake.fim_requests()
    assert (log.wire, log.prefix, log.suffix, log.stream) == ("ollama", SOURCE[:CUT], SOURCE[END:], True)


def test_generate_without_stream(fake: FakeDeepSeek, c: httpx.Client) -> None:
    fake.first_token = 0.1
    t0 = time.monotonic()
    r = c.post("/api/generate", json={"model": "qwen2.5-coder:1.5b", "prompt": "x", "stream": False})
    assert time.monotonic() - t0 >= 0.1 - 0.005
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    assert "transfer-encoding" not in r.headers  # nothing goes out before the answer is complete
    body = r.json()
    assert body["done"] is True and body["response"] == ""  # no match in the oracle: empty answer
    assert "eval_count" not in body and "eval_duration" not in body  # Go's omitempty


def test_options_num_predict_and_stop(fake: FakeDeepSeek, c: httpx.Client) -> None:
    fake.oracle_text = None
    fake.default = Reply(text="alpha\nbeta\ngamma")
    one = c.post(
        "/api/generate", json={"model": CODER, "prompt": "x", "stream": False, "options": {"stop": ["\n"]}}
    )
    two = c.post(
        "/api/generate", json={"model": CODER, "prompt": "x", "stream": False, "options": {"num_predict": 1}}
    )
    assert (one.json()["response"], one.json()["done_reason"]) == ("alpha", "stop")
    assert (two.json()["response"], two.json()["done_reason"]) == ("alp", "length")


def test_suffix_needs_a_template_with_suffix(fake: FakeDeepSeek, c: httpx.Client) -> None:
    r = c.post("/api/generate", json={"model": "llama3.2", "prompt": "a", "suffix": "b"})
    assert r.status_code == 400
    assert r.json() == {"error": "registry.ollama.ai/library/llama3.2:latest does not support insert"}
    assert (
        c.post("/api/generate", json={"model": "llama3.2", "prompt": "a", "stream": False}).status_code == 200
    )


def test_unknown_model_and_bad_requests(c: httpx.Client) -> None:
    missing = c.post("/api/generate", json={"model": "nope", "prompt": "a"})
    assert (missing.status_code, missing.json()) == (404, {"error": "model 'nope' not found"})
    no_model = c.post("/api/generate", json={"prompt": "a"})
    assert (no_model.status_code, no_model.json()) == (400, {"error": "model is required"})
    typed = c.post("/api/generate", json={"model": CODER, "prompt": 5})
    assert typed.status_code == 400
    assert "cannot unmarshal number" in typed.json()["error"]
    empty = c.post("/api/generate", content=b"")
    assert empty.json() == {"error": "missing request body"}


def test_raw_prompt_is_read_for_the_oracle(fake: FakeDeepSeek, c: httpx.Client) -> None:
    prompt = f"<|fim_prefix|>{SOURCE[:CUT]}<|fim_suffix|>{SOURCE[END:]}<|fim_middle|>"
    body = c.post(
        "/api/generate", json={"model": "llama3.2", "prompt": prompt, "raw": True, "stream": False}
    ).json()
    assert body["response"] == "return a + b"
    assert "context" not in body  # raw mode returns no context
    log = fake.fim_requests()[-1]
    assert (log.prefix, log.suffix) == (SOURCE[:CUT], SOURCE[END:])


def test_empty_prompt_only_loads(c: httpx.Client) -> None:
    body = c.post("/api/generate", json={"model": CODER}).json()
    assert (body["done"], body["done_reason"], body["response"]) == (True, "load", "")


def test_show_reports_template_and_capabilities(c: httpx.Client) -> None:
    coder = c.post("/api/show", json={"model": CODER}).json()
    chat = c.post("/api/show", json={"model": "llama3.2"}).json()
    assert ".Suffix" in coder["template"]
    assert coder["capabilities"] == ["completion", "insert"]
    assert chat["template"] == CHAT_TEMPLATE
    assert chat["capabilities"] == ["completion"]
    assert coder["details"]["format"] == "gguf"
    missing = c.post("/api/show", json={"model": "ghost"})
    assert (missing.status_code, missing.json()) == (404, {"error": "model 'ghost:latest' not found"})


def test_tags_and_version(c: httpx.Client) -> None:
    tags = c.get("/api/tags").json()["models"]
    assert [t["name"] for t in tags] == [CODER, CHAT]
    assert all(len(t["digest"]) == 64 and t["details"]["family"] for t in tags)
    assert "version" in c.get("/api/version").json()


def test_scripted_error_and_override(fake: FakeDeepSeek, c: httpx.Client) -> None:
    fake.script.append(Reply(status=500, error_message="llama runner process has terminated"))
    r = c.post("/api/generate", json={"model": CODER, "prompt": "x"})
    assert (r.status_code, r.json()) == (500, {"error": "llama runner process has terminated"})
    fake.overrides["/api/tags"] = Reply(status=503)
    assert c.get("/api/tags").status_code == 503
