"""OpenAI-compatible ``/v1/completions``: the suffix field, the raw-template fallback, the ``raw`` backend,
routing ids and usage, over httpx.MockTransport and against the fake's vLLM, SGLang and llama.cpp flavors."""

from __future__ import annotations

import json

import httpx
import pytest
from backend_kit import KEY, Recorder, make, request, run, sse
from fake_deepseek import FakeDeepSeek, Reply

from fimls.backends import RequestError, ServerError, Usage
from fimls.backends.openai import Completions, Raw

QWEN = "Qwen/Qwen2.5-Coder-7B"
VLLM_REFUSAL = {
    "error": {"message": "suffix is not currently supported", "type": "BadRequestError", "code": 400}
}


def completion(text: str, usage: dict | None = None) -> httpx.Response:
    body = {"choices": [{"text": text, "index": 0, "finish_reason": "stop"}], "usage": usage}
    return httpx.Response(200, json=body)


async def test_suffix_mode_body_headers_and_routing_id():
    answers = Recorder(completion("a + b"))
    backend = make(
        {"backend": "openai-compatible", "baseUrl": "http://127.0.0.1:9/v1", "routingId": "u-42"}, answers
    )
    assert isinstance(backend, Completions) and backend.name == "openai-compatible"
    pieces, finish = await run(backend, request(speculative=True))
    assert "".join(pieces) == "a + b" and finish.reason == "stop"
    [sent] = answers.requests
    assert str(sent.url) == "http://127.0.0.1:9/v1/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["x-user-id"] == "u-42" and sent.headers["x-fimls-speculative"] == "1"
    body = json.loads(sent.content)
    assert body == {
        "model": QWEN,
        "prompt": "def add(a, b):\n    return ",
        "suffix": "\n",
        "max_tokens": 32,
        "stop": ["\n"],
        "temperature": 0.0,
        "top_p": 1.0,
        "stream": False,
        "user": "u-42",
    }
    await backend.aclose()


async def test_a_server_refusing_suffix_gets_the_raw_template_at_once_and_from_then_on():
    answers = Recorder(httpx.Response(400, json=VLLM_REFUSAL), completion("a + b"))
    backend = make({"backend": "openai-compatible"}, answers)
    pieces, _ = await run(backend, request())
    assert "".join(pieces) == "a + b"
    first, second = answers.bodies()
    assert first["suffix"] == "\n" and first["prompt"] == "def add(a, b):\n    return "
    assert "suffix" not in second
    assert second["prompt"] == "<|fim_prefix|>def add(a, b):\n    return <|fim_suffix|>\n<|fim_middle|>"
    assert (
        second["stop"][0] == "\n" and "<|endoftext|>" in second["stop"] and "<|file_sep|>" in second["stop"]
    )
    # Remembered: the next request is raw without asking with a suffix first.
    await run(backend, request(prefix="x = "))
    assert len(answers.requests) == 3 and "suffix" not in answers.bodies()[2]
    checks = await backend.diagnose(QWEN)
    assert checks[0].ok and checks[0].what == "raw FIM template" and checks[0].detail.startswith("qwen")
    await backend.aclose()


async def test_refused_suffix_and_no_known_family_says_what_to_set():
    answers = Recorder(httpx.Response(400, json=VLLM_REFUSAL))
    backend = make({"backend": "openai-compatible"}, answers)
    with pytest.raises(RequestError) as caught:
        await run(backend, request(model="my-finetune"))
    message = str(caught.value)
    assert "does not take the suffix field" in message and "suffix is not currently supported" in message
    assert 'set "template"' in message and caught.value.model_missing
    assert len(answers.requests) == 1
    await backend.aclose()


async def test_other_400s_are_not_taken_for_a_suffix_refusal():
    answers = Recorder(httpx.Response(400, json={"error": {"message": "max_tokens must be at least 1"}}))
    backend = make({"backend": "openai-compatible"}, answers)
    with pytest.raises(RequestError, match="max_tokens must be at least 1"):
        await run(backend, request())
    assert len(answers.requests) == 1 and not backend.raw
    await backend.aclose()


async def test_raw_backend_with_a_custom_template_and_stops():
    answers = Recorder(completion("1"))
    backend = make(
        {"backend": "vllm", "template": "<PRE> {prefix} <SUF>{suffix} <MID>", "templateStop": ["<EOT>"]},
        answers,
    )
    assert isinstance(backend, Raw) and backend.name == "raw"
    await run(backend, request(model="anything", stop=("\n", "<EOT>")))
    [body] = answers.bodies()
    assert body["prompt"] == "<PRE> def add(a, b):\n    return  <SUF>\n <MID>" and "suffix" not in body
    assert body["stop"] == ["\n", "<EOT>"]
    await backend.aclose()


async def test_raw_backend_without_a_template_sends_nothing_and_says_why():
    answers = Recorder(completion("never"))
    backend = make({"backend": "raw"}, answers)
    with pytest.raises(RequestError, match="no raw FIM template is known for the model 'mystery-7b'"):
        await run(backend, request(model="mystery-7b"))
    assert answers.requests == []
    [check] = await backend.diagnose("mystery-7b")
    assert not check.ok and "template" in check.detail
    await backend.aclose()


async def test_openai_cached_tokens_are_read_from_prompt_tokens_details():
    usage = {"prompt_tokens": 120, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 96}}
    backend = make({"backend": "raw"}, lambda req: completion("x", usage))
    _, finish = await run(backend, request())
    assert finish.usage == Usage(120, 4, 96, 24)
    assert backend.price(QWEN).cost(finish.usage) == 0.0  # self-hosted: free unless priced
    await backend.aclose()


async def test_stream_with_a_mid_answer_error_event():
    body = sse(
        {"choices": [{"text": "a", "index": 0, "finish_reason": None}]}, {"error": {"message": "engine died"}}
    )
    backend = make({"backend": "raw", "maxRetries": 0}, lambda req: httpx.Response(200, content=body))
    with pytest.raises(ServerError, match="failed mid-answer: engine died"):
        await run(backend, request(stream=True))
    await backend.aclose()


def test_model_choice():
    backend = make({"backend": "openai-compatible"})
    assert backend.choose_model(["only"]) == "only"
    assert backend.choose_model(["llama3", "bigcode/starcoder2-7b", QWEN]) == "bigcode/starcoder2-7b"
    assert backend.choose_model(["llama3", "mistral"]) is None


# -- against the fake's engines ------------------------------------------------------------------------------


@pytest.fixture
def vllm():
    with FakeDeepSeek(api_key=KEY, flavor="vllm", models=[QWEN], first_token=0.01, token_rate=400) as server:
        yield server


async def test_vllm_real_400_triggers_the_raw_fallback_once(vllm):
    vllm.default = Reply(text="a + b")
    backend = make({"backend": "openai-compatible", "baseUrl": vllm.url, "routingId": "team-7"})
    pieces, finish = await run(backend, request(stream=True, context=(("util.py", "X = 1\n"),), path="m.py"))
    assert "".join(pieces) == "a + b" and len(pieces) > 1 and finish.reason == "stop"
    refused, answered = vllm.fim_requests()
    assert refused.status == 400 and refused.body["suffix"] == "\n"
    assert answered.status == 200 and "suffix" not in answered.body
    # The fake reads the raw prompt back: the same prefix, suffix and other file.
    assert (answered.prefix, answered.suffix) == ("def add(a, b):\n    return ", "\n")
    assert answered.extra == [{"filename": "util.py", "text": "X = 1"}]
    assert answered.body["user"] == "team-7" and answered.headers["X-User-Id"] == "team-7"
    assert finish.usage is not None and finish.usage.completion_tokens > 0
    await run(backend, request(prefix="y = "))
    assert len(vllm.fim_requests()) == 3  # no second refusal
    await backend.aclose()


async def test_vllm_unknown_model_is_a_missing_model(vllm):
    backend = make({"backend": "raw", "baseUrl": vllm.url})
    with pytest.raises(RequestError) as caught:
        await run(backend, request(model="Qwen/Qwen2.5-Coder-32B"))
    assert caught.value.model_missing and "does not exist" in str(caught.value)
    await backend.aclose()


async def test_sglang_with_a_completion_template_takes_the_suffix():
    with FakeDeepSeek(flavor="sglang", models=[QWEN], completion_template="qwen_coder") as sglang:
        sglang.default = Reply(text="a + b")
        backend = make({"backend": "openai-compatible", "baseUrl": sglang.url}, key=None)
        pieces, _ = await run(backend, request(stream=True))
        assert "".join(pieces) == "a + b"
        [logged] = sglang.fim_requests()
        assert logged.body["suffix"] == "\n" and "Authorization" not in logged.headers
        await backend.aclose()


async def test_llamacpp_v1_refuses_the_suffix_key_and_gets_raw_prompts():
    with FakeDeepSeek(flavor="llamacpp", models=["qwen2.5-coder-1.5b-q8_0.gguf"]) as server:
        server.default = Reply(text="a + b")
        backend = make({"backend": "openai-compatible", "baseUrl": server.url}, key=None)
        pieces, _ = await run(backend, request(model="qwen2.5-coder-1.5b-q8_0.gguf"))
        assert "".join(pieces) == "a + b"
        assert [r.status for r in server.fim_requests()] == [400, 200]
        await backend.aclose()
