"""Every backend maps the same failures the same way, from each engine's own error bodies (the fake's):
the error class, a message naming the backend and its URL and the server's words, never the key."""

from __future__ import annotations

import httpx
import pytest
from backend_kit import KEY, Recorder, make, request, run
from fake_deepseek import FakeDeepSeek, Reply

from fimls import log
from fimls.backends import AuthError, BalanceError, NetworkError, RateLimitError, RequestError, ServerError

# backend setting, fake flavor, model served, display name
BACKENDS = [
    ("deepseek", "openai", "deepseek-chat", "DeepSeek"),
    ("openai-compatible", "openai", "Qwen/Qwen2.5-Coder-7B", "OpenAI-compatible server"),
    ("raw", "vllm", "Qwen/Qwen2.5-Coder-7B", "OpenAI-compatible server (raw FIM prompts)"),
    ("ollama", "openai", "qwen2.5-coder:1.5b-base", "Ollama"),
    ("llamacpp", "openai", "qwen2.5-coder-1.5b-q8_0.gguf", "llama.cpp server"),
    ("codestral", "codestral", "codestral-latest", "Codestral"),
]
FAULTS = [
    (401, AuthError, "rejected the API key (401)"),
    (402, BalanceError, "insufficient balance or quota (402)"),
    (429, RateLimitError, "rate limit reached (429)"),
    (503, ServerError, "server error (503)"),
]


@pytest.fixture(params=BACKENDS, ids=[b[0] for b in BACKENDS])
def setup(request):
    backend, flavor, model, display = request.param
    with FakeDeepSeek(flavor=flavor, models=[model], first_token=0.0) as fake:
        yield fake, make({"backend": backend, "baseUrl": fake.url, "maxRetries": 1}), model, display


@pytest.mark.parametrize(("status", "error", "words"), FAULTS, ids=[str(f[0]) for f in FAULTS])
async def test_http_failures_map_alike(setup, status, error, words):
    fake, backend, model, display = setup
    log.add_secrets([KEY])
    fake.default = Reply(
        status=status, error_message=f"refused, your key {KEY} is bad", headers={"Retry-After": "0"}
    )
    with pytest.raises(error) as caught:
        await run(backend, request(model=model))
    message = str(caught.value)
    assert message.startswith(f"{display} at {fake.url}") and words in message
    assert "refused, your key" in message and KEY not in message
    generations = len(fake.fim_requests())
    assert generations == (2 if error in (RateLimitError, ServerError) else 1)  # retried once, or not at all
    await backend.aclose()


async def test_an_unknown_model_is_missing_everywhere(setup):
    fake, backend, _, display = setup
    if backend.name == "llamacpp":  # llama-server serves the model it was started with: /infill names none
        pieces, _ = await run(backend, request(model="no-such-model"))
        assert pieces == ["pass"] and "model" not in fake.fim_requests()[0].body
        return
    with pytest.raises(RequestError) as caught:
        await run(backend, request(model="no-such-model"))
    assert caught.value.model_missing and str(caught.value).startswith(display)
    await backend.aclose()


async def test_a_stream_cut_mid_answer_is_an_error_everywhere(setup):
    fake, backend, model, display = setup
    fake.default = Reply(text="partial answer that never ends", cut_stream=True)
    with pytest.raises(NetworkError) as caught:
        await run(backend, request(model=model, stream=True))
    assert str(caught.value) == (
        f"{display} at {fake.url}: the connection broke off in the middle of an answer (POST {backend.path})"
    )
    await backend.aclose()


async def test_a_used_up_quota_is_a_balance_problem_not_a_rate_limit():
    quota = {"error": {"message": "You exceeded your current quota.", "type": "insufficient_quota"}}
    answers = Recorder(httpx.Response(429, json=quota))
    backend = make({"backend": "openai-compatible", "maxRetries": 2}, answers)
    with pytest.raises(BalanceError, match=r"insufficient balance or quota \(429\)"):
        await run(backend, request())
    assert len(answers.requests) == 1  # not retried
    await backend.aclose()
