"""The fake server's OpenAI-compatible ``/v1/completions`` and ``/v1/models``, per flavor.

openai (suffix accepted), vllm (suffix refused, raw FIM prompts, max_tokens 16), sglang
(suffix through its completion template or dropped), ollama (template check), llamacpp.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "scripts"))

from fake_deepseek import CHAT_TEMPLATE, FakeDeepSeek, Reply

MODEL = "qwen2.5-coder"
SOURCE = """import os


def read(path):
    with open(path) as fh:
        return fh.read()


def write(path, data):
    with open(path, "w") as fh:
        fh.write(data)
"""
CUT = SOURCE.index("return fh.read()")
END = SOURCE.index("\n\n\ndef write")
PREFIX, SUFFIX, MIDDLE = SOURCE[:CUT], SOURCE[END:], "return fh.read()"


def serve(**kwargs: Any) -> FakeDeepSeek:
    kwargs.setdefault("models", [MODEL])
    return FakeDeepSeek(**kwargs).start()


@pytest.fixture
def stack() -> Iterator[list[FakeDeepSeek]]:
    fakes: list[FakeDeepSeek] = []
    yield fakes
    for fake in fakes:
        fake.stop()


def client(fake: FakeDeepSeek, key: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=fake.url, headers=headers, trust_env=False, timeout=10.0)


def stream(c: httpx.Client, body: dict[str, Any]) -> list[Any]:
    out: list[Any] = []
    with c.stream("POST", "/v1/completions", json={**body, "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                data = line[len("data: ") :]
                out.append(data if data == "[DONE]" else json.loads(data))
    return out


def text_of(events: list[Any]) -> str:
    return "".join(e["choices"][0]["text"] for e in events if e != "[DONE]" and e["choices"])


# -- flavor openai ------------------------------------------------------------------------------


def test_openai_suffix_feeds_the_oracle_and_the_log(stack: list[FakeDeepSeek]) -> None:
    fake = serve(oracle_text=SOURCE)
    stack.append(fake)
    with client(fake) as c:
        r = c.post(
            "/v1/completions", json={"model": MODEL, "prompt": PREFIX, "suffix": SUFFIX, "max_tokens": 64}
        )
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"id", "object", "created", "model", "choices", "usage"}
    assert body["object"] == "text_completion"
    assert body["id"].startswith("cmpl-")
    assert body["choices"] == [{"index": 0, "text": MIDDLE, "logprobs": None, "finish_reason": "stop"}]
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens"] == 6  # ceil(16 / 3)
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0}
    [log] = fake.fim_requests()
    assert (log.wire, log.flavor, log.model) == ("openai", "openai", MODEL)
    assert (log.prefix, log.suffix, log.extra) == (PREFIX, SUFFIX, [])
    assert json.loads(log.raw) == {"model": MODEL, "prompt": PREFIX, "suffix": SUFFIX, "max_tokens": 64}
    assert log.authorized  # no key configured: none needed


def test_openai_stream_chunks_usage_and_done(stack: list[FakeDeepSeek]) -> None:
    fake = serve(token_rate=500)
    stack.append(fake)
    fake.default = Reply(text="abcdefgh")
    with client(fake) as c:
        events = stream(
            c, {"model": MODEL, "prompt": "x = ", "stream_options": {"include_usage": True}, "user": "u1"}
        )
    *chunks, usage, done = events
    assert done == "[DONE]"
    assert [c["choices"][0]["text"] for c in chunks] == ["abc", "def", "gh", ""]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, None, "stop"]
    assert all(c["object"] == "text_completion" and c["model"] == MODEL for c in chunks)
    assert len({c["id"] for c in events[:-1]}) == 1
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 3
    assert fake.fim_requests()[0].stream


def test_openai_stop_and_max_tokens(stack: list[FakeDeepSeek]) -> None:
    fake = serve()
    stack.append(fake)
    fake.default = Reply(text="one\ntwo\nthree")
    with client(fake) as c:
        stopped = c.post("/v1/completions", json={"model": MODEL, "prompt": "x", "stop": "\n"}).json()
        limited = c.post("/v1/completions", json={"model": MODEL, "prompt": "x", "max_tokens": 2}).json()
    assert stopped["choices"][0]["text"] == "one" and stopped["choices"][0]["finish_reason"] == "stop"
    assert limited["choices"][0]["text"] == "one\ntw" and limited["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"prompt": "x"}, 400, "model is required"),
        ({"model": "nope", "prompt": "x"}, 404, "does not exist"),
        ({"model": MODEL}, 400, "prompt"),
        ({"model": MODEL, "prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
        ({"model": MODEL, "prompt": "x", "stop": [1]}, 400, "stop"),
        ({"model": MODEL, "prompt": "x", "suffix": 3}, 400, "suffix"),
    ],
)
def test_openai_validation(stack: list[FakeDeepSeek], body: dict[str, Any], status: int, words: str) -> None:
    fake = serve()
    stack.append(fake)
    with client(fake) as c:
        r = c.post("/v1/completions", json=body)
    assert r.status_code == status
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert words in error["message"]


def test_openai_key_when_configured(stack: list[FakeDeepSeek]) -> None:
    fake = serve(api_key="sk-right")
    stack.append(fake)
    with client(fake, "sk-wrong") as c:
        r = c.post("/v1/completions", json={"model": MODEL, "prompt": "x"})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_api_key"
    assert "sk-wrong" not in r.text
    with client(fake, "sk-right") as c:
        assert c.post("/v1/completions", json={"model": MODEL, "prompt": "x"}).status_code == 200
    assert [log.authorized for log in fake.requests] == [False, True]


# -- flavor vllm -------------------------------------------------------------------------------


def test_vllm_refuses_suffix_with_its_real_400(stack: list[FakeDeepSeek]) -> None:
    fake = serve(flavor="vllm")
    stack.append(fake)
    with client(fake) as c:
        for suffix in ("tail", ""):  # vLLM checks `suffix is not None`: even "" is refused
            r = c.post("/v1/completions", json={"model": MODEL, "prompt": "x", "suffix": suffix})
            assert r.status_code == 400
            assert r.json() == {
                "error": {
                    "message": "suffix is not currently supported",
                    "type": "BadRequestError",
                    "param": None,
                    "code": 400,
                }
            }
    assert len(fake.fim_requests()) == 2
    assert all(log.status == 400 for log in fake.fim_requests())


def test_vllm_reads_a_raw_qwen_prompt_with_repo_context(stack: list[FakeDeepSeek]) -> None:
    fake = serve(flavor="vllm", oracle_text=SOURCE)
    stack.append(fake)
    prompt = (
        "<|repo_name|>demo\n<|file_sep|>util.py\nHELPER = 1\n<|file_sep|>io.py\n"
        f"<|fim_prefix|>{PREFIX}<|fim_suffix|>{SUFFIX}<|fim_middle|>"
    )
    with client(fake) as c:
        events = stream(c, {"model": MODEL, "prompt": prompt, "max_tokens": 64})
    assert text_of(events) == MIDDLE
    assert events[-1] == "[DONE]"
    assert all("stop_reason" in e["choices"][0] for e in events[:-1])
    [log] = fake.fim_requests()
    assert (log.prefix, log.suffix) == (PREFIX, SUFFIX)
    assert log.extra == [{"filename": "util.py", "text": "HELPER = 1"}]


def test_vllm_defaults_to_16_tokens(stack: list[FakeDeepSeek]) -> None:
    fake = serve(flavor="vllm")
    stack.append(fake)
    fake.default = Reply(text="x" * 200)
    with client(fake) as c:
        choice = c.post("/v1/completions", json={"model": MODEL, "prompt": "y"}).json()["choices"][0]
    assert (len(choice["text"]), choice["finish_reason"]) == (48, "length")


def test_vllm_stop_reason_names_the_stop_string(stack: list[FakeDeepSeek]) -> None:
    fake = serve(flavor="vllm")
    stack.append(fake)
    fake.default = Reply(text="a = 1\nb = 2")
    with client(fake) as c:
        choice = c.post("/v1/completions", json={"model": MODEL, "prompt": "y", "stop": ["\n"]}).json()[
            "choices"
        ][0]
    assert choice == {
        "index": 0,
        "text": "a = 1",
        "logprobs": None,
        "finish_reason": "stop",
        "stop_reason": "\n",
    }


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"model": "gpt-9", "prompt": "x"}, 404, "The model `gpt-9` does not exist."),
        ({"model": MODEL, "prompt": "x", "stream_options": {"include_usage": True}}, 400, "Stream options"),
    ],
)
def test_vllm_errors(stack: list[FakeDeepSeek], body: dict[str, Any], status: int, message: str) -> None:
    fake = serve(flavor="vllm")
    stack.append(fake)
    with client(fake) as c:
        r = c.post("/v1/completions", json=body)
    assert r.status_code == status
    assert r.json()["error"]["code"] == status
    assert message in r.json()["error"]["message"]


def test_vllm_api_key(stack: list[FakeDeepSeek]) -> None:
    fake = serve(flavor="vllm", api_key="team-key")
    stack.append(fake)
    with client(fake) as c:
        r = c.post("/v1/completions", json={"model": MODEL, "prompt": "x"})
        assert (r.status_code, r.json()) == (401, {"error": "Unauthorized"})
    with client(fake, "team-key") as c:
        assert c.post("/v1/completions", json={"model": MODEL, "prompt": "x"}).status_code == 200


# -- flavor sglang -------------------------------------------------------------------------------


def test_sglang_without_template_drops_the_suffix(stack: list[FakeDeepSeek]) -> None:
    fake = serve(flavor="sglang", oracle_text=SOURCE)
    stack.append(fake)
    with client(fake) as c:
        text = c.post(
            "/v1/completions", json={"model": MODEL, "prompt": PREFIX, "suffix": SUFFIX, "max_tokens": 200}
        ).json()["choices"][0]["text"]
    assert text == SOURCE[CUT:]  # the model never saw the suffix: it ran on to the end of the file
    [log] = fake.fim_requests()
    assert log.suffix == SUFFIX  # what was sent


def test_sglang_with_template_uses_the_suffix(stack: list[FakeDeepSeek]) -> None:
    fake = serve(flavor="sglang", oracle_text=SOURCE, completion_template="qwen_coder")
    stack.append(fake)
    with client(fake) as c:
        r = c.post("/v1/completions", json={"prompt": PREFIX, "suffix": SUFFIX})  # model is optional
        assert r.json()["choices"][0]["text"] == MIDDLE
        bad = c.post("/v1/completions", json={"model": MODEL, "prompt": 5})
    assert bad.status_code == 400
    assert set(bad.json()) == {"object", "message", "type", "param", "code"}  # SGLang's flat error


# -- flavors ollama and llamacpp ------------------------------------------------------------------


def test_ollama_v1_checks_the_template(stack: list[FakeDeepSeek]) -> None:
    fake = serve(flavor="ollama", models=["qwen2.5-coder:1.5b", "llama3.2:latest"])
    fake.templates["llama3.2:latest"] = CHAT_TEMPLATE
    stack.append(fake)
    with client(fake) as c:
        ok = c.post("/v1/completions", json={"model": "qwen2.5-coder:1.5b", "prompt": "a", "suffix": "b"})
        refused = c.post("/v1/completions", json={"model": "llama3.2", "prompt": "a", "suffix": "b"})
        missing = c.post("/v1/completions", json={"model": "nope", "prompt": "a"})
    assert ok.status_code == 200
    assert "usage" in ok.json() and "prompt_tokens_details" not in ok.json()["usage"]
    assert refused.status_code == 400
    assert refused.json()["error"] == {
        "message": "registry.ollama.ai/library/llama3.2:latest does not support insert",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"
    assert missing.json()["error"]["message"] == "model 'nope' not found"


def test_llamacpp_v1_refuses_suffix(stack: list[FakeDeepSeek]) -> None:
    fake = serve(flavor="llamacpp")
    stack.append(fake)
    with client(fake) as c:
        r = c.post("/v1/completions", json={"prompt": "a", "suffix": "b"})
    assert r.status_code == 400
    assert r.json() == {
        "error": {"code": 400, "message": "Unsupported param: suffix", "type": "invalid_request_error"}
    }


@pytest.mark.parametrize(
    ("flavor", "owner"),
    [
        ("openai", "system"),
        ("vllm", "vllm"),
        ("sglang", "sglang"),
        ("ollama", "library"),
        ("llamacpp", "llamacpp"),
    ],
)
def test_v1_models_per_flavor(stack: list[FakeDeepSeek], flavor: str, owner: str) -> None:
    fake = serve(flavor=flavor, models=["m1", "m2"])
    stack.append(fake)
    with client(fake) as c:
        listing = c.get("/v1/models").json()
    assert listing["object"] == "list"
    assert {m["owned_by"] for m in listing["data"]} == {owner}
    assert [m["id"] for m in listing["data"]] == (["m1"] if flavor == "llamacpp" else ["m1", "m2"])


def test_scripted_errors_use_the_flavor_shape(stack: list[FakeDeepSeek]) -> None:
    fake = serve(flavor="vllm")
    stack.append(fake)
    fake.script.append(Reply(status=503, headers={"Retry-After": "2"}))
    with client(fake) as c:
        r = c.post("/v1/completions", json={"model": MODEL, "prompt": "x"})
    assert r.status_code == 503
    assert r.headers["retry-after"] == "2"
    assert r.json()["error"]["type"] == "ServiceUnavailableError"
