"""Ollama's native API: the suffix field when the template has ``.Suffix``, raw templates otherwise (decided
once from ``/api/show``), NDJSON streams, errors, doctor checks; over httpx.MockTransport and the fake."""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import pytest
from backend_kit import Recorder, make, ndjson, request, run
from fake_deepseek import CHAT_TEMPLATE, FIM_TEMPLATE, FakeDeepSeek, Reply

from fimls.backends import Finish, ProtocolError, RequestError, ServerError, Usage
from fimls.backends.ollama import Ollama

CODER = "qwen2.5-coder:1.5b-base"
CHATTY = "llama3.1:8b"
OLD_CODER = "deepseek-coder:6.7b"  # Ollama's deepseek-coder template has no .Suffix


def show(template: str, capabilities: list[str] | None = None) -> httpx.Response:
    body: dict = {"template": template, "details": {"family": "qwen2"}}
    if capabilities is not None:
        body["capabilities"] = capabilities
    return httpx.Response(200, json=body)


def final(**extra) -> dict:
    return {"model": CODER, "response": "", "done": True, "done_reason": "stop", **extra}


def settings(**extra) -> dict:
    return {"backend": "ollama", **extra}


async def test_suffix_template_gets_the_suffix_field_and_the_stream_is_read():
    answers = Recorder(
        show(FIM_TEMPLATE),
        httpx.Response(
            200,
            content=ndjson(
                {"model": CODER, "response": "a", "done": False},
                {"model": CODER, "response": " + b", "done": False},
                final(prompt_eval_count=12, eval_count=3),
            ),
        ),
    )
    backend = make(settings(), answers, key=None)
    assert isinstance(backend, Ollama) and backend.url == "http://127.0.0.1:11434"
    pieces, finish = await run(backend, request(model=CODER, stream=True))
    assert pieces == ["a", " + b"] and finish == Finish("stop", Usage(12, 3, 0, 12))
    assert answers.paths() == ["POST /api/show", "POST /api/generate"]
    show_body, body = answers.bodies()
    assert show_body == {"model": CODER}
    assert body == {
        "model": CODER,
        "prompt": "def add(a, b):\n    return ",
        "suffix": "\n",
        "stream": True,
        "options": {"num_predict": 32, "temperature": 0.0, "top_p": 1.0, "stop": ["\n"]},
    }
    assert "authorization" not in answers.requests[1].headers
    # Asked once per model and session.
    await run(backend, request(model=CODER, stream=True))
    assert answers.paths()[2:] == ["POST /api/generate"]
    await backend.aclose()


async def test_the_insert_capability_alone_is_enough():
    answers = Recorder(
        show("{{ .Prompt }}", ["completion", "insert"]), httpx.Response(200, json=final(response="x"))
    )
    backend = make(settings(), answers, key=None)
    await run(backend, request(model=CODER))
    assert answers.bodies()[1]["suffix"] == "\n"
    await backend.aclose()


async def test_template_without_suffix_gets_the_family_raw_template():
    answers = Recorder(
        show("{{ .System }} {{ .Prompt }}", ["completion"]), httpx.Response(200, json=final(response="x"))
    )
    backend = make(settings(templateStop=["<END>"]), answers, key=None)
    await run(backend, request(model=OLD_CODER, suffix=""))
    body = answers.bodies()[1]
    assert body["raw"] is True and "suffix" not in body
    assert body["prompt"] == "<｜fim▁begin｜>def add(a, b):\n    return <｜fim▁hole｜><｜fim▁end｜>"
    assert body["options"]["stop"] == [
        "\n",
        "<｜fim▁begin｜>",
        "<｜fim▁hole｜>",
        "<｜fim▁end｜>",
        "<｜end▁of▁sentence｜>",
        "<END>",
    ]
    await backend.aclose()


async def test_a_model_that_cannot_fill_in_the_middle_is_refused_with_the_reason_and_no_generate():
    answers = Recorder(show(CHAT_TEMPLATE, ["completion"]))
    backend = make(settings(), answers, key=None)
    for _ in range(2):
        with pytest.raises(RequestError) as caught:
            await run(backend, request(model=CHATTY))
        assert caught.value.model_missing
        assert "template has no suffix" in str(caught.value) and "qwen2.5-coder" in str(caught.value)
    assert answers.paths() == ["POST /api/show"]  # remembered
    await backend.aclose()


async def test_the_template_setting_sends_raw_prompts_without_asking():
    answers = Recorder(httpx.Response(200, json=final(response="x")))
    backend = make(settings(template="qwen"), answers, key=None)
    await run(backend, request(model=CHATTY))
    assert answers.paths() == ["POST /api/generate"]
    assert answers.bodies()[0]["prompt"].startswith("<|fim_prefix|>")
    await backend.aclose()


async def test_an_empty_prefix_is_sent_raw_because_ollama_reads_an_empty_prompt_as_load_only():
    answers = Recorder(show(FIM_TEMPLATE), httpx.Response(200, json=final(response="import os")))
    backend = make(settings(), answers, key=None)
    pieces, _ = await run(backend, request(model=CODER, prefix="", suffix="\nprint(1)\n"))
    assert pieces == ["import os"]
    body = answers.bodies()[1]
    assert body["raw"] is True and body["prompt"] == "<|fim_prefix|><|fim_suffix|>\nprint(1)\n<|fim_middle|>"
    await backend.aclose()


async def test_unknown_model_is_missing_and_suggests_a_pull():
    answers = Recorder(httpx.Response(404, json={"error": f"model '{CODER}' not found"}))
    backend = make(settings(), answers, key=None)
    with pytest.raises(RequestError) as caught:
        await run(backend, request(model=CODER))
    assert caught.value.model_missing and f"ollama pull {CODER}" in str(caught.value)
    await backend.aclose()


async def test_errors_mid_stream_and_cut_streams():
    line = {"model": CODER, "response": "a", "done": False}
    answers = Recorder(
        show(FIM_TEMPLATE),
        httpx.Response(200, content=ndjson(line, {"error": "model runner has unexpectedly stopped"})),
        httpx.Response(200, content=ndjson(line)),
        httpx.Response(200, content=b'{"response": "a", "do'),
    )
    backend = make(settings(maxRetries=0), answers, key=None)
    with pytest.raises(ServerError, match="failed mid-answer: model runner has unexpectedly stopped"):
        await run(backend, request(model=CODER, stream=True))
    with pytest.raises(ProtocolError, match="ended early"):
        await run(backend, request(model=CODER, stream=True))
    with pytest.raises(ProtocolError, match="malformed"):
        await run(backend, request(model=CODER, stream=True))
    await backend.aclose()


async def test_busy_server_is_retried():
    answers = Recorder(
        show(FIM_TEMPLATE),
        httpx.Response(
            503, json={"error": "server busy, please try again.  maximum pending requests exceeded"}
        ),
        httpx.Response(200, json=final(response="ok", done_reason="length")),
    )
    backend = make(settings(), answers, key=None)
    pieces, finish = await run(backend, request(model=CODER))
    assert pieces == ["ok"] and finish.reason == "length"
    assert answers.paths().count("POST /api/generate") == 2
    await backend.aclose()


def test_model_choice_prefers_a_known_base_model():
    backend = make(settings(), key=None)
    assert backend.choose_model(["llama3.1:8b", "qwen2.5-coder:7b", CODER]) == CODER
    assert backend.choose_model(["llama3.1:8b", "starcoder2:3b"]) == "starcoder2:3b"
    assert backend.choose_model(["llama3.1:8b", "mistral"]) is None
    assert backend.default_model == CODER


# -- against the fake Ollama ------------------------------------------------------------------------------


@pytest.fixture
def ollama():
    templates = {CHATTY: CHAT_TEMPLATE, OLD_CODER: CHAT_TEMPLATE}
    with FakeDeepSeek(
        models=[CODER, CHATTY, OLD_CODER], templates=templates, first_token=0.01, token_rate=500
    ) as server:
        yield server


async def test_fake_suffix_model_streams_tokens_with_usage(ollama):
    ollama.default = Reply(text="a + b + c")
    backend = make(settings(baseUrl=ollama.url), key=None)
    pieces, finish = await run(backend, request(model=CODER, stream=True))
    assert "".join(pieces) == "a + b + c" and len(pieces) > 2
    assert finish.usage.completion_tokens == 3 and finish.usage.prompt_tokens > 0
    show_log, generate_log = ollama.requests
    assert (
        show_log.path == "/api/show"
        and generate_log.body["suffix"] == "\n"
        and "raw" not in generate_log.body
    )
    await backend.aclose()


async def test_fake_refuses_suffix_for_a_chat_template_and_fimls_never_sends_it(ollama):
    # The fake really refuses: a suffix for a template without .Suffix is a 400.
    async with httpx.AsyncClient() as client:
        refused = await client.post(
            f"{ollama.url}/api/generate", json={"model": OLD_CODER, "prompt": "x", "suffix": "y"}
        )
    assert refused.status_code == 400 and "does not support insert" in refused.json()["error"]
    # fimls asks /api/show first and sends the raw template instead.
    ollama.default = Reply(text="a + b")
    backend = make(settings(baseUrl=ollama.url), key=None)
    pieces, _ = await run(backend, request(model=OLD_CODER, stream=True))
    assert "".join(pieces) == "a + b"
    generate = ollama.fim_requests()[-1]
    assert generate.status == 200 and generate.body["raw"] is True and "suffix" not in generate.body
    assert (generate.prefix, generate.suffix) == ("def add(a, b):\n    return ", "\n")
    with pytest.raises(RequestError, match="template has no suffix"):
        await run(backend, request(model=CHATTY))
    await backend.aclose()


async def test_fake_unknown_model_and_doctor_checks(ollama):
    backend = make(settings(baseUrl=ollama.url), key=None)
    assert await backend.models() == [CODER, CHATTY, OLD_CODER]
    version, template = await backend.diagnose(CODER)
    assert version.ok and "0.12.6" in version.detail
    assert template.ok and "uses .Suffix" in template.detail
    [_, raw] = await backend.diagnose(OLD_CODER)
    assert raw.ok and "raw deepseek" in raw.detail
    [_, chat] = await backend.diagnose(CHATTY)
    assert not chat.ok and chat.detail.startswith("this Ollama model's template has no suffix")
    [_, missing] = await backend.diagnose("codestral:22b")
    assert not missing.ok and "ollama pull codestral:22b" in missing.detail
    await backend.aclose()


async def test_fake_cancellation_closes_the_stream(ollama):
    ollama.default = Reply(text="x" * 600, token_rate=50)
    backend = make(settings(baseUrl=ollama.url), key=None)
    events = backend.generate(request(model=CODER, stream=True, stop=()), time.monotonic() + 5)
    async with contextlib.aclosing(events):
        assert isinstance(await anext(events), str)
    assert await asyncio.to_thread(ollama.wait_for, lambda: ollama.fim_requests()[-1].aborted, 3)
    await backend.aclose()


async def test_a_template_changed_since_show_is_detected_again_and_the_request_sent_raw():
    insert_refused = httpx.Response(
        400, json={"error": f"registry.ollama.ai/library/{OLD_CODER} does not support insert"}
    )
    answers = Recorder(
        show(FIM_TEMPLATE),
        insert_refused,
        show(CHAT_TEMPLATE, ["completion"]),
        httpx.Response(200, json=final(response="x")),
    )
    backend = make(settings(), answers, key=None)
    pieces, _ = await run(backend, request(model=OLD_CODER))
    assert pieces == ["x"]
    assert answers.paths() == ["POST /api/show", "POST /api/generate", "POST /api/show", "POST /api/generate"]
    assert "suffix" in answers.bodies()[1] and answers.bodies()[3]["raw"] is True
    await backend.aclose()


def test_a_name_without_a_tag_is_listed_as_latest():
    backend = make(settings(), key=None)
    assert backend.lists("qwen2.5-coder", ["qwen2.5-coder:latest"])
    assert backend.lists(CODER, [CODER]) and not backend.lists(CODER, ["qwen2.5-coder:latest"])
    assert not make({"backend": "raw"}).lists("qwen2.5-coder", ["qwen2.5-coder:latest"])
