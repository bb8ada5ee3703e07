"""The fake server's Codestral ``POST /v1/fim/completions`` (Mistral's FIM API)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "scripts"))

from fake_deepseek import FakeDeepSeek, Reply

MODEL = "codestral-latest"
PATH = "/v1/fim/completions"


@pytest.fixture
def fake() -> Iterator[FakeDeepSeek]:
    with FakeDeepSeek(models=[MODEL], flavor="codestral", token_rate=1000) as server:
        yield server


def client(fake: FakeDeepSeek, key: str | None = "csk-test") -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=fake.url, headers=headers, trust_env=False, timeout=10.0)


def test_non_streamed_answer_in_mistral_shape(fake: FakeDeepSeek) -> None:
    fake.default = Reply(text="return a + b")
    with client(fake) as c:
        r = c.post(
            PATH, json={"model": MODEL, "prompt": "def add(a, b):\n    ", "suffix": "\n", "random_seed": 1}
        )
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == MODEL
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "tool_calls": None, "content": "return a + b", "prefix": False},
            "finish_reason": "stop",
        }
    ]
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}
    [log] = fake.fim_requests()
    assert (log.wire, log.prefix, log.suffix, log.model) == ("codestral", "def add(a, b):\n    ", "\n", MODEL)


def test_stream_deltas_role_finish_usage_done(fake: FakeDeepSeek) -> None:
    fake.default = Reply(text="abcdefg")
    events: list[Any] = []
    with (
        client(fake) as c,
        c.stream("POST", PATH, json={"model": MODEL, "prompt": "x", "stream": True}) as r,
    ):
        assert r.headers["content-type"] == "text/event-stream"
        for line in r.iter_lines():
            if line.startswith("data: "):
                data = line[6:]
                events.append(data if data == "[DONE]" else json.loads(data))
    *chunks, done = events
    assert done == "[DONE]"
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "abc"}
    assert [c["choices"][0]["delta"]["content"] for c in chunks] == ["abc", "def", "g", ""]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, None, "stop"]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "usage" not in chunks[0]
    assert chunks[-1]["usage"] == {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}


def test_length_finish_rides_on_the_last_delta(fake: FakeDeepSeek) -> None:
    fake.default = Reply(text="abcdefghij")
    with client(fake) as c:
        body = c.post(PATH, json={"model": MODEL, "prompt": "x", "max_tokens": 2}).json()
    assert body["choices"][0]["message"]["content"] == "abcdef"
    assert body["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("key", [None, "csk-wrong"])
def test_unauthorized(key: str | None) -> None:
    with FakeDeepSeek(models=[MODEL], api_key="csk-right") as fake, client(fake, key) as c:
        r = c.post(PATH, json={"model": MODEL, "prompt": "x"})
        assert r.status_code == 401
        body = r.json()
        assert set(body) == {"message", "request_id"}
        assert body["message"] == "Unauthorized"
        assert "csk-" not in r.text
        assert not fake.requests[0].authorized


@pytest.mark.parametrize(
    ("body", "kind", "loc"),
    [
        ({"model": MODEL}, "missing", ["body", "prompt"]),
        (
            {"model": MODEL, "prompt": "x", "max_completion_tokens": 9},
            "extra_forbidden",
            ["body", "max_completion_tokens"],
        ),
        ({"model": MODEL, "prompt": 3}, "string_type", ["body", "prompt"]),
        ({"model": MODEL, "prompt": "x", "max_tokens": "9"}, "int_type", ["body", "max_tokens"]),
        ({"model": MODEL, "prompt": "x", "top_p": 2}, "less_than_equal", ["body", "top_p"]),
    ],
)
def test_422_bodies(fake: FakeDeepSeek, body: dict[str, Any], kind: str, loc: list[str]) -> None:
    with client(fake) as c:
        r = c.post(PATH, json=body)
    assert r.status_code == 422
    error = r.json()
    assert (error["object"], error["type"], error["param"], error["code"]) == (
        "error",
        "invalid_request_error",
        None,
        None,
    )
    [detail] = error["message"]["detail"]
    assert (detail["type"], detail["loc"]) == (kind, loc)
    assert fake.fim_requests()[0].status == 422


def test_unknown_model(fake: FakeDeepSeek) -> None:
    with client(fake) as c:
        r = c.post(PATH, json={"model": "codestral-2099", "prompt": "x"})
    assert r.status_code == 400
    assert r.json()["message"] == "Invalid model: codestral-2099"


def test_scripted_rate_limit_and_models(fake: FakeDeepSeek) -> None:
    fake.script.append(Reply(status=429))
    with client(fake) as c:
        limited = c.post(PATH, json={"model": MODEL, "prompt": "x"})
        models = c.get("/v1/models").json()
    assert limited.status_code == 429
    assert limited.json()["object"] == "error"
    assert models["data"][0]["id"] == MODEL
    assert models["data"][0]["capabilities"]["completion_fim"] is True
