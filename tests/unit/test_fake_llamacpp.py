"""The fake server's llama.cpp endpoints: ``/infill``, ``/completion``, ``/props``, ``/health``."""

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

from fake_deepseek import FakeDeepSeek, Reply

MODEL = "qwen2.5-coder-1.5b-q8_0.gguf"


@pytest.fixture
def fake() -> Iterator[FakeDeepSeek]:
    with FakeDeepSeek(models=[MODEL], flavor="llamacpp") as server:
        yield server


@pytest.fixture
def c(fake: FakeDeepSeek) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, trust_env=False, timeout=10.0) as client:
        yield client


def infill(**fields: Any) -> dict[str, Any]:
    return {"input_prefix": "def f():\n    ", "input_suffix": "\n", **fields}


def events(c: httpx.Client, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    with c.stream("POST", path, json={**body, "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/event-stream"
        lines = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert "data: [DONE]" not in lines  # llama.cpp's native endpoints end without it
    return [json.loads(line[6:]) for line in lines]


def test_infill_stream_tokens_then_final(fake: FakeDeepSeek, c: httpx.Client) -> None:
    fake.token_rate = 1000
    fake.default = Reply(text="return 42")
    *parts, final = events(c, "/infill", infill(id_slot=0, cache_prompt=True, samplers=["top_k", "infill"]))
    assert [p["content"] for p in parts] == ["ret", "urn", " 42"]
    assert all(p["stop"] is False and p["id_slot"] == 0 for p in parts)
    assert [p["tokens_predicted"] for p in parts] == [1, 2, 3]
    assert final["stop"] is True
    assert final["content"] == ""  # streamed already
    assert final["stop_type"] == "eos"
    assert final["stopping_word"] == ""
    assert final["tokens_predicted"] == 3
    assert final["model"] == MODEL
    timings = final["timings"]
    assert set(timings) >= {
        "cache_n",
        "prompt_n",
        "prompt_ms",
        "predicted_n",
        "predicted_ms",
        "predicted_per_second",
    }
    assert timings["predicted_n"] == 3
    assert final["generation_settings"]["samplers"] == ["top_k", "infill"]
    [log] = fake.fim_requests()
    assert (log.wire, log.prefix, log.suffix, log.extra) == ("llamacpp", "def f():\n    ", "\n", [])


def test_infill_non_streamed_with_extra_files(fake: FakeDeepSeek, c: httpx.Client) -> None:
    fake.default = Reply(text="return helper()")
    extra = [{"filename": "util.py", "text": "def helper():\n    return 1\n"}, {"text": "NOTE = 1\n"}]
    body = c.post("/infill", json=infill(input_extra=extra, prompt="ret")).json()
    assert body["content"] == "return helper()"
    assert body["stop"] is True
    assert "<|file_sep|>util.py\ndef helper():" in body["prompt"]
    assert body["prompt"].endswith("<|fim_prefix|>def f():\n    <|fim_suffix|>\n<|fim_middle|>ret")
    [log] = fake.fim_requests()
    assert log.prefix == "def f():\n    ret"  # the prompt field continues the prefix after FIM_MID
    assert log.extra == [
        {"filename": "util.py", "text": "def helper():\n    return 1\n"},
        {"filename": "tmp", "text": "NOTE = 1\n"},
    ]


def test_tokens_cached_follows_the_prefix_cache(fake: FakeDeepSeek, c: httpx.Client) -> None:
    prefix = "x = 1\n" * 100  # 600 characters = 200 tokens
    first = c.post("/infill", json={"input_prefix": prefix, "input_suffix": ""}).json()
    second = c.post("/infill", json={"input_prefix": prefix + "y = 2\n", "input_suffix": ""}).json()
    fresh = c.post("/infill", json={"input_prefix": prefix, "input_suffix": "", "cache_prompt": False}).json()
    assert (first["tokens_cached"], first["timings"]["cache_n"]) == (0, 0)
    assert second["tokens_cached"] == 192  # 200 common tokens -> 3 units of 64
    assert second["timings"]["cache_n"] == 192
    assert second["timings"]["prompt_n"] == second["tokens_evaluated"] - 192
    assert fresh["tokens_cached"] == 0
    assert [log.cached_tokens for log in fake.fim_requests()] == [0, 192, 0]


def test_stop_words_and_n_predict(fake: FakeDeepSeek, c: httpx.Client) -> None:
    fake.default = Reply(text="a = 1\nb = 2\n")
    word = c.post("/infill", json=infill(stop=["\n"])).json()
    limit = c.post("/infill", json=infill(n_predict=1)).json()
    warm = c.post("/infill", json=infill(n_predict=0)).json()
    assert (word["content"], word["stop_type"], word["stopping_word"]) == ("a = 1", "word", "\n")
    assert (limit["content"], limit["stop_type"]) == ("a =", "limit")
    assert (warm["content"], warm["tokens_predicted"]) == ("", 0)  # only evaluates the prompt


def test_n_indent_stops_at_a_shallower_line(fake: FakeDeepSeek, c: httpx.Client) -> None:
    fake.default = Reply(text="x = 1\n        y = 2\n    return y\ndef g():\n")
    body = c.post("/infill", json=infill(n_indent=8)).json()
    assert body["content"] == "x = 1\n        y = 2\n"
    assert body["stop_type"] == "limit"


def test_t_max_predict_ms_stops_after_a_newline(fake: FakeDeepSeek, c: httpx.Client) -> None:
    fake.token_rate = 50  # 20 ms a token
    fake.default = Reply(text="aaa\nbbbcccdddeeefffggghhh")
    t0 = time.monotonic()
    body = c.post("/infill", json=infill(t_max_predict_ms=100)).json()
    # tokens "aaa", "\nbb", "bcc", ... 20 ms apart: the 7th (120 ms after the first) is past 100 ms
    assert body["content"] == "aaa\nbbbcccdddeeefffgg"
    assert body["stop_type"] == "limit"
    assert time.monotonic() - t0 >= 0.1 - 0.005


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"input_suffix": ""}, '"input_prefix" is required'),
        ({"input_prefix": ""}, '"input_suffix" is required'),
        (infill(prompt=3), '"prompt" must be a string'),
        (
            infill(input_extra={"text": "x"}),
            '"input_extra" must be an array of {"filename": string, "text": string}',
        ),
        (infill(input_extra=[{"filename": "a"}]), 'extra_context chunk must contain a "text" field'),
        (infill(input_extra=[{"text": "a", "filename": 1}]), '"filename" field must be a string'),
        (infill(n_predict="9"), "type must be number"),
    ],
)
def test_infill_validation(c: httpx.Client, body: dict[str, Any], message: str) -> None:
    r = c.post("/infill", json=body)
    assert r.status_code == 400
    error = r.json()["error"]
    assert (error["code"], error["type"]) == (400, "invalid_request_error")
    assert message in error["message"]


def test_model_without_fim_tokens_is_501() -> None:
    with (
        FakeDeepSeek(models=[MODEL], llamacpp_fim=False) as fake,
        httpx.Client(base_url=fake.url, trust_env=False) as c,
    ):
        r = c.post("/infill", json=infill())
        assert r.status_code == 501
        assert r.json()["error"]["type"] == "not_supported_error"
        assert r.json()["error"]["message"].startswith("Infill is not supported by this model")
        assert c.post("/completion", json={"prompt": "x"}).status_code == 200


def test_completion_reads_a_raw_prompt(fake: FakeDeepSeek, c: httpx.Client) -> None:
    fake.oracle_text = "def f():\n    return 42\n\nprint(f())\n"
    prompt = "<|fim_prefix|>def f():\n    <|fim_suffix|>\n\nprint(f())\n<|fim_middle|>"
    body = c.post("/completion", json={"prompt": prompt, "n_predict": 32}).json()
    assert body["content"] == "return 42"
    assert body["prompt"] == prompt
    log = fake.fim_requests()[-1]
    assert (log.prefix, log.suffix) == ("def f():\n    ", "\n\nprint(f())\n")


def test_props_health_models(c: httpx.Client) -> None:
    props = c.get("/props").json()
    assert props["total_slots"] == 1
    assert props["default_generation_settings"]["n_ctx"] > 0
    assert props["model_path"].endswith(MODEL)
    assert c.get("/health").json() == {"status": "ok"}
    models = c.get("/v1/models").json()["data"]
    assert [m["id"] for m in models] == [MODEL]
    assert models[0]["owned_by"] == "llamacpp"


def test_api_key_when_started_with_one() -> None:
    with FakeDeepSeek(models=[MODEL], flavor="llamacpp", api_key="lk") as fake:
        with httpx.Client(base_url=fake.url, trust_env=False) as c:
            refused = c.post("/infill", json=infill())
            assert refused.status_code == 401
            assert refused.json() == {
                "error": {"code": 401, "message": "Invalid API Key", "type": "authentication_error"}
            }
            assert c.get("/health").status_code == 200  # public
            assert c.get("/v1/models").status_code == 200  # public
            assert c.get("/props").status_code == 401
        with httpx.Client(base_url=fake.url, trust_env=False, headers={"Authorization": "Bearer lk"}) as c:
            assert c.post("/infill", json=infill()).status_code == 200
