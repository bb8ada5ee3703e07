"""Codestral ``/v1/fim/completions``: the fields Mistral's validator accepts, ``delta.content`` streams,
``message.content`` answers, the list price, and the fake's strict validation."""

from __future__ import annotations

import httpx
import pytest
from backend_kit import KEY, Recorder, make, request, run, sse
from fake_deepseek import FakeDeepSeek, Reply

from fimls.backends import AuthError, RequestError, Usage, resolve_key
from fimls.backends.codestral import Codestral
from fimls.config import parse_settings

MODEL = "codestral-latest"


def settings(**extra) -> dict:
    return {"backend": "codestral", **extra}


def chunk(content: str, finish: str | None = None, usage: dict | None = None) -> dict:
    event: dict = {"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]}
    if usage:
        event["usage"] = usage
    return event


async def test_body_has_only_mistral_fields_and_the_stream_reads_delta_content():
    usage = {"prompt_tokens": 20, "completion_tokens": 2, "total_tokens": 22}
    body = sse(chunk("a"), chunk(" + b", "stop", usage), "data: [DONE]")
    answers = Recorder(httpx.Response(200, content=body))
    backend = make(settings(temperature=2.0, routingId="u-1"), answers)
    assert isinstance(backend, Codestral) and backend.url == "https://codestral.mistral.ai"
    pieces, finish = await run(backend, request(model=MODEL, stream=True, temperature=2.0, speculative=True))
    assert pieces == ["a", " + b"] and finish.reason == "stop" and finish.usage == Usage(20, 2, 0, 20)
    [sent] = answers.requests
    assert str(sent.url) == "https://codestral.mistral.ai/v1/fim/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}" and "x-user-id" not in sent.headers
    assert answers.bodies()[0] == {
        "model": MODEL,
        "prompt": "def add(a, b):\n    return ",
        "suffix": "\n",
        "max_tokens": 32,
        "temperature": 1.5,  # Mistral's upper bound
        "top_p": 1.0,
        "stream": True,
        "stop": ["\n"],
        "prompt_cache_key": "u-1",
    }
    await backend.aclose()


async def test_a_whole_answer_reads_message_content():
    whole = {
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "42"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 1},
    }
    backend = make(settings(baseUrl="https://api.mistral.ai/v1"), lambda req: httpx.Response(200, json=whole))
    assert backend.url == "https://api.mistral.ai"
    pieces, _ = await run(backend, request(model=MODEL))
    assert pieces == ["42"]
    await backend.aclose()


def test_list_price_and_configured_price():
    backend = make(settings())
    price = backend.price(MODEL)
    assert (price.input, price.cached_input, price.output) == (0.30, 0.03, 0.90)
    assert price.cost(Usage(1_000_000, 1_000_000, 0, 1_000_000)) == pytest.approx(1.20)
    priced = make(settings(pricePerMillionTokens={"input": 1, "output": 3}))
    assert (priced.price(MODEL).input, priced.price(MODEL).cached_input, priced.price(MODEL).output) == (
        1,
        1,
        3,
    )


def test_model_choice_and_key_variable():
    backend = make(settings())
    assert backend.choose_model(["mistral-large-latest", "codestral-2508", MODEL]) == MODEL
    assert (
        backend.choose_model(["codestral-2501", "codestral-2508", "codestral-mamba-2407"]) == "codestral-2508"
    )
    assert backend.choose_model([]) == MODEL
    parsed, _ = parse_settings(settings())
    assert resolve_key(parsed, {"CODESTRAL_API_KEY": "c-key"}) == ("c-key", None)
    key, problem = resolve_key(parsed, {"DEEPSEEK_API_KEY": "wrong-service"})
    assert key is None and "CODESTRAL_API_KEY" in problem
    mistral, _ = parse_settings(settings(apiKeyEnv="MISTRAL_API_KEY"))
    assert resolve_key(mistral, {"MISTRAL_API_KEY": "m-key"}) == ("m-key", None)


# -- against the fake Mistral API ----------------------------------------------------------------------------


@pytest.fixture
def mistral():
    with FakeDeepSeek(
        api_key=KEY, flavor="codestral", models=[MODEL], first_token=0.01, token_rate=400
    ) as fake:
        yield fake


async def test_fake_accepts_every_field_we_send(mistral):
    mistral.default = Reply(text="a + b")
    backend = make(settings(baseUrl=mistral.url, routingId="u-1"))
    for stream in (True, False):
        pieces, finish = await run(backend, request(model=MODEL, stream=stream, stop=("\n", "\n\n")))
        assert "".join(pieces) == "a + b" and finish.usage.completion_tokens > 0
    assert [r.status for r in mistral.fim_requests()] == [200, 200]
    assert mistral.fim_requests()[0].body["prompt_cache_key"] == "u-1"
    assert await backend.models() == [MODEL]
    await backend.aclose()


async def test_fake_wrong_key_and_unknown_model(mistral):
    backend = make(settings(baseUrl=mistral.url), key="wrong-key-0000")
    with pytest.raises(AuthError, match=r"Codestral at http://127\.0\.0\.1:\d+ rejected the API key \(401\)"):
        await run(backend, request(model=MODEL))
    await backend.aclose()
    backend = make(settings(baseUrl=mistral.url))
    with pytest.raises(RequestError) as caught:
        await run(backend, request(model="codestral-2099"))
    assert caught.value.model_missing and "Invalid model: codestral-2099" in str(caught.value)
    await backend.aclose()
