"""llama.cpp ``/infill``: request fields (input_extra, cache_prompt, id_slot, n_indent, t_max_predict_ms),
SSE ``content``/``stop``, usage from ``timings`` and ``tokens_cached``, 501 for a model without FIM tokens,
models and doctor checks; over httpx.MockTransport and against the fake llama-server."""

from __future__ import annotations

import time

import attrs
import httpx
import pytest
from backend_kit import Recorder, make, request, run, sse
from fake_deepseek import FakeDeepSeek, Reply

from fimls.backends import Finish, ProtocolError, RequestError, ServerError, Usage
from fimls.backends.llamacpp import LlamaCpp, split_line, usage_of

MODEL = "qwen2.5-coder-1.5b-q8_0.gguf"
TIMINGS = {"cache_n": 40, "prompt_n": 8, "predicted_n": 3, "prompt_ms": 12.5, "predicted_ms": 30.0}


def settings(**extra) -> dict:
    return {"backend": "llamacpp", **extra}


def final(content: str = "", **extra) -> dict:
    return {
        "content": content,
        "stop": True,
        "stop_type": "eos",
        "tokens_predicted": 3,
        "tokens_evaluated": 48,
        "tokens_cached": 50,
        "timings": TIMINGS,
        **extra,
    }


async def test_single_line_body():
    answers = Recorder(httpx.Response(200, json=final("a + b")))
    backend = make(settings(), answers, key=None)
    assert isinstance(backend, LlamaCpp) and backend.url == "http://127.0.0.1:8012"
    context = (("src/util.py", "def helper():\n    return 1\n"),)
    pieces, finish = await run(backend, request(model=MODEL, context=context))
    assert pieces == ["a + b"] and finish == Finish("stop", Usage(48, 3, 40, 8))
    [sent] = answers.requests
    assert sent.url.path == "/infill" and "authorization" not in sent.headers
    body = answers.bodies()[0]
    assert body == {
        "input_prefix": "def add(a, b):\n",
        "input_suffix": "\n",
        "input_extra": [{"filename": "src/util.py", "text": "def helper():\n    return 1\n"}],
        "prompt": "    return ",
        "n_predict": 32,
        "temperature": 0.0,
        "top_p": 1.0,
        "stream": False,
        "cache_prompt": True,
        "id_slot": -1,
        "stop": ["\n"],
    }
    await backend.aclose()


async def test_multi_line_body_bounds_the_block_and_the_time():
    answers = Recorder(httpx.Response(200, json=final("x = 1\n")))
    backend = make(settings(), answers, key=None)
    started = time.monotonic()
    await run(
        backend, request(model=MODEL, prefix="def f():\n\tif x:\n\t    ", stop=("\n\n\n",)), timeout=3.0
    )
    body = answers.bodies()[0]
    assert body["prompt"] == "\t    " and body["n_indent"] == 5
    assert 2000 < body["t_max_predict_ms"] <= 3000 + (time.monotonic() - started) * 1000
    # No indentation: no n_indent.
    await run(backend, request(model=MODEL, prefix="x = 1\n", stop=("\n\n",)))
    assert "n_indent" not in answers.bodies()[1] and "t_max_predict_ms" in answers.bodies()[1]
    await backend.aclose()


def test_prefix_is_split_at_the_cursor_line():
    assert split_line("a\nb\n  c") == ("a\nb\n", "  c")
    assert split_line("no newline") == ("", "no newline")
    assert split_line("ends\n") == ("ends\n", "")


def test_usage_without_timings_falls_back_to_the_token_counts():
    assert usage_of({"tokens_evaluated": 30, "tokens_cached": 50, "tokens_predicted": 4}) == Usage(
        30, 4, 30, 0
    )
    assert usage_of({"tokens_evaluated": 30, "tokens_cached": 10, "tokens_predicted": 4}) == Usage(
        30, 4, 10, 20
    )
    assert usage_of({}) == Usage(0, 0, 0, 0)


async def test_stream_events_usage_and_limit():
    body = sse(
        {"content": "a", "stop": False},
        {"content": " + b", "stop": False},
        final(stop_type="limit"),
    )
    backend = make(settings(), lambda req: httpx.Response(200, content=body), key=None)
    pieces, finish = await run(backend, request(model=MODEL, stream=True))
    assert pieces == ["a", " + b"] and finish.reason == "length" and finish.usage.cache_hit_tokens == 40
    await backend.aclose()


async def test_stream_errors():
    cut = sse({"content": "a", "stop": False})
    failed = sse({"content": "a", "stop": False}, {"error": {"code": 500, "message": "failed to decode"}})
    answers = Recorder(httpx.Response(200, content=cut), httpx.Response(200, content=failed))
    backend = make(settings(maxRetries=0), answers, key=None)
    with pytest.raises(ProtocolError, match="ended early"):
        await run(backend, request(model=MODEL, stream=True))
    with pytest.raises(ServerError, match="failed mid-answer: failed to decode"):
        await run(backend, request(model=MODEL, stream=True))
    await backend.aclose()


async def test_a_model_without_fim_tokens_is_a_clear_501_and_not_retried():
    no_fim = {
        "error": {
            "code": 501,
            "message": "Infill is not supported by this model",
            "type": "not_supported_error",
        }
    }
    answers = Recorder(httpx.Response(501, json=no_fim))
    backend = make(settings(), answers, key=None)
    with pytest.raises(RequestError) as caught:
        await run(backend, request(model=MODEL))
    assert caught.value.model_missing and caught.value.status == 501
    assert "no FIM tokens" in str(caught.value) and "--fim-qwen" in str(caught.value)
    assert len(answers.requests) == 1
    await backend.aclose()


async def test_models_fall_back_to_props_on_servers_without_v1_models():
    answers = Recorder(
        httpx.Response(404, json={"error": {"code": 404, "message": "File Not Found"}}),
        httpx.Response(200, json={"model_path": f"/models/{MODEL}", "total_slots": 1}),
    )
    backend = make(settings(), answers, key=None)
    assert await backend.models() == [MODEL]
    assert answers.paths() == ["GET /v1/models", "GET /props"]
    await backend.aclose()


# -- against the fake llama-server ---------------------------------------------------------------------------


@pytest.fixture
def server():
    with FakeDeepSeek(models=[MODEL], first_token=0.01, token_rate=400) as fake:
        yield fake


async def test_fake_infill_stream_with_context_and_prefix_cache(server):
    server.default = Reply(text="a + b")
    backend = make(settings(baseUrl=server.url), key=None)
    context = (("src/util.py", "def helper():\n    return 1\n"),)
    req = request(
        model=MODEL, stream=True, context=context, prefix="x = 1\n" * 100 + "def add(a, b):\n    return "
    )
    pieces, finish = await run(backend, req)
    assert "".join(pieces) == "a + b" and len(pieces) > 1
    [logged] = server.fim_requests()
    assert logged.wire == "llamacpp" and logged.prefix == req.prefix and logged.suffix == "\n"
    assert logged.extra == [{"filename": "src/util.py", "text": "def helper():\n    return 1\n"}]
    assert finish.usage.cache_hit_tokens == 0
    # Typing on the line: the same start of the prompt comes from the cache.
    _, again = await run(backend, attrs.evolve(req, prefix=req.prefix + "a"))
    assert again.usage.cache_hit_tokens > 0 and again.usage.cache_miss_tokens < again.usage.prompt_tokens
    await backend.aclose()


async def test_fake_n_indent_ends_the_block(server):
    server.default = Reply(text="x = 1\n    y = 2\nprint(x)\n")
    backend = make(settings(baseUrl=server.url), key=None)
    pieces, finish = await run(
        backend, request(model=MODEL, stream=True, prefix="def f():\n    ", stop=("\n\n\n",))
    )
    assert "".join(pieces) == "x = 1\n    y = 2\n" and finish.reason == "length"
    await backend.aclose()


async def test_fake_model_without_fim_tokens_and_doctor_checks():
    with FakeDeepSeek(models=[MODEL], llamacpp_fim=False) as fake:
        backend = make(settings(baseUrl=fake.url), key=None)
        with pytest.raises(RequestError, match="no FIM tokens"):
            await run(backend, request(model=MODEL))
        assert await backend.models() == [MODEL]
        health, props = await backend.diagnose(MODEL)
        assert health.ok and health.detail == "ok"
        assert props.ok and MODEL in props.detail and "1 slot(s)" in props.detail and "32768" in props.detail
        await backend.aclose()
