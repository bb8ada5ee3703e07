"""Every backend end to end over LSP, against the fake speaking its wire format: ghost text, an early
answer while the stream goes on, cancellation, and one fault each."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import TEST_KEY, inline, inline_params, open_doc, server_env
from fake_deepseek import CHAT_TEMPLATE, Reply
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled

QWEN = "Qwen/Qwen2.5-Coder-7B"
CODER = "qwen2.5-coder:1.5b-base"
GGUF = "qwen2.5-coder-1.5b-q8_0.gguf"
BODY = "    total = 0\n    for item in items:\n        total += item\n    return total\n"


@dataclass
class Setup:
    """A backend setting and the fake engine it talks to."""

    backend: str
    model: str
    wire: str
    fake: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)

    def apply(self, fake) -> None:
        for name, value in self.fake.items():
            setattr(fake, name, value)

    def options(self, fake, **extra: Any) -> dict[str, Any]:
        return {"backend": self.backend, "baseUrl": fake.url, "model": self.model, **extra}


SETUPS = {
    "openai-compatible": Setup(
        "openai-compatible",
        QWEN,
        "openai",
        {"flavor": "sglang", "models": [QWEN], "completion_template": "qwen_coder"},
        {"FIMLS_API_KEY": TEST_KEY},
    ),
    "raw": Setup("raw", QWEN, "openai", {"flavor": "vllm", "models": [QWEN]}, {"FIMLS_API_KEY": TEST_KEY}),
    "ollama": Setup("ollama", CODER, "ollama", {"models": [CODER, "llama3.1:8b"]}),
    "llamacpp": Setup("llamacpp", GGUF, "llamacpp", {"models": [GGUF]}, {"FIMLS_API_KEY": TEST_KEY}),
    "codestral": Setup(
        "codestral",
        "codestral-latest",
        "codestral",
        {"flavor": "codestral", "models": ["codestral-latest"]},
        {"CODESTRAL_API_KEY": TEST_KEY},
    ),
}
NAMES = list(SETUPS)


async def start(start_server, fake, name: str, **options: Any):
    setup = SETUPS[name]
    setup.apply(fake)
    client = await start_server("vscode", setup.options(fake, **options), env=server_env(fake, **setup.env))
    return client, setup


async def status(client) -> dict:
    return await client.workspace_execute_command_async(types.ExecuteCommandParams(command="fimls.status"))


@pytest.mark.parametrize("name", NAMES)
async def test_ghost_text_and_cancellation(start_server, fake, name):
    fake.default = Reply(text="compute(1)")
    client, setup = await start(start_server, fake, name)
    uri = open_doc(client, "import os\nx = \n")
    assert [i.insert_text for i in await inline(client, uri, 1, 4)] == ["compute(1)"]
    [sent] = fake.fim_requests()
    assert sent.wire == setup.wire and sent.status == 200
    assert (sent.prefix, sent.suffix) == ("import os\nx = ", "\n")  # as the model sees them, raw or not
    info = await status(client)
    assert (info["backend"], info["baseUrl"], info["model"]) == (setup.backend, fake.url, setup.model)
    assert info["apiKey"] == ("set" if setup.env else "missing")
    if name == "raw":
        assert "suffix" not in sent.body and sent.body["prompt"].startswith("<|fim_prefix|>import os\n")

    # Cancellation: the client gives up on a slow answer; the server answers -32800 at once.
    fake.default = Reply(text="slow", delay=10)
    future = asyncio.ensure_future(
        client.protocol.send_request_async(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, 0, 9), msg_id=f"slow-{name}"
        )
    )
    assert await asyncio.to_thread(fake.wait_for, lambda: len(fake.fim_requests()) == 2, 5)
    started = time.monotonic()
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=f"slow-{name}"))
    with pytest.raises(JsonRpcRequestCancelled):
        await future
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("name", NAMES)
async def test_an_early_answer_arrives_while_the_stream_goes_on(start_server, fake, name):
    fake.default = Reply(text=BODY)
    fake.first_token, fake.token_rate = 0.05, 10.0  # 24 tokens: about 2.4 s for the whole answer
    client, _ = await start(start_server, fake, name, earlyAnswerMs=2000)  # whole lines, not words
    uri = open_doc(client, "def total(items):\n")
    started = time.monotonic()
    [item] = await inline(client, uri, 1, 0)
    took = time.monotonic() - started
    assert item.insert_text == "    total = 0"
    [sent] = fake.fim_requests()
    assert sent.stream and not sent.completed
    assert took < 1.6  # the first line takes about 0.5 s
    info = await status(client)
    assert info["earlyAnswers"] == 1 and info["inFlight"] == 1


# -- one fault each ------------------------------------------------------------------------------------------


def shown(client) -> list[str]:
    return [m.message for m in client.messages]


async def wait_for_message(client, words: str) -> list[str]:
    for _ in range(100):
        found = [m for m in shown(client) if words in m]
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"no message with {words!r}: {shown(client)}")


async def test_openai_compatible_vllm_refusing_suffix_falls_back_to_raw_once(start_server, fake):
    fake.default = Reply(text="compute(1)")
    client, _ = await start(start_server, fake, "openai-compatible")
    fake.flavor = "vllm"  # the same settings, but the server is vLLM
    uri = open_doc(client, "x = \ny = \n")
    assert [i.insert_text for i in await inline(client, uri, 0, 4)] == ["compute(1)"]
    assert [r.status for r in fake.fim_requests()] == [400, 200]
    assert [i.insert_text for i in await inline(client, uri, 1, 4)] == ["compute(1)"]
    assert [r.status for r in fake.fim_requests()] == [400, 200, 200]  # remembered
    assert "suffix" not in fake.fim_requests()[2].body
    assert shown(client) == []  # handled, nothing for the user to do


async def test_raw_with_a_model_of_no_known_family_says_what_to_set(start_server, fake):
    client, _ = await start(start_server, fake, "raw", model="my-finetune")
    fake.models = ["my-finetune"]
    uri = open_doc(client, "x = \n")
    assert await inline(client, uri, 0, 4) == []
    [message] = await wait_for_message(client, "no raw FIM template is known for the model 'my-finetune'")
    assert 'set "template"' in message
    assert fake.fim_requests() == []


async def test_ollama_model_without_suffix_template_is_explained_and_never_asked(start_server, fake):
    fake.templates = {"llama3.1:8b": CHAT_TEMPLATE}
    client, _ = await start(start_server, fake, "ollama", model="llama3.1:8b")
    uri = open_doc(client, "x = \n")
    assert await inline(client, uri, 0, 4) == []
    await wait_for_message(client, "this Ollama model's template has no suffix")
    assert fake.fim_requests() == [] and [r.path for r in fake.requests].count("/api/show") == 1


async def test_llamacpp_model_without_fim_tokens_pauses_with_the_reason(start_server, fake):
    fake.llamacpp_fim = False
    client, _ = await start(start_server, fake, "llamacpp")
    uri = open_doc(client, "x = \ny = \n")
    assert await inline(client, uri, 0, 4) == []
    [message] = await wait_for_message(client, "no FIM tokens")
    assert "--fim-qwen" in message
    assert await inline(client, uri, 1, 4) == []
    assert len(fake.fim_requests()) == 1  # not retried, and paused until the settings change
    assert (await status(client))["paused"] == message.removeprefix("fimls: ")


async def test_codestral_wrong_key_is_named_and_never_shown(start_server, fake):
    setup = SETUPS["codestral"]
    setup.apply(fake)
    wrong = "wrong-codestral-key-0123456789"
    client = await start_server("vscode", setup.options(fake), env=server_env(fake, CODESTRAL_API_KEY=wrong))
    uri = open_doc(client, "x = \n")
    assert await inline(client, uri, 0, 4) == []
    [message] = await wait_for_message(client, "rejected the API key (401)")
    assert message.startswith(f"fimls: Codestral at {fake.url}")
    assert wrong not in " ".join(shown(client)) and wrong not in str(await status(client))
