"""Tests for scripts/fake_deepseek.py, the fake DeepSeek server used by tests and benchmarks."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

SCRIPTS = Path(__file__).parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS))

from fake_deepseek import FakeDeepSeek, Reply, oracle_continuation  # noqa: E402

MODEL = "deepseek-flash"
AUTH = {"Authorization": "Bearer sk-test-key"}
FIM = "/beta/completions"


@pytest.fixture
def fake() -> Iterator[FakeDeepSeek]:
    with FakeDeepSeek() as server:
        yield server


@pytest.fixture
def client(fake: FakeDeepSeek) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, headers=AUTH, trust_env=False, verify=False, timeout=5.0) as c:
        yield c


def fim(client: httpx.Client, **fields: Any) -> httpx.Response:
    return client.post(FIM, json={"model": MODEL, "prompt": "def f():\n    ", **fields})


def read_sse(response: httpx.Response) -> tuple[list[Any], int, int]:
    """(data payloads, comment lines, blank lines) of an SSE response."""
    data: list[Any] = []
    comments = blanks = 0
    for line in response.iter_lines():
        if line.startswith(":"):
            comments += 1
        elif not line:
            blanks += 1
        elif line.startswith("data: "):
            payload = line[len("data: ") :]
            data.append(payload if payload == "[DONE]" else json.loads(payload))
    return data, comments, blanks


def stream_fim(client: httpx.Client, **fields: Any) -> tuple[httpx.Response, list[Any], int, int]:
    body = {"model": MODEL, "prompt": "x = ", "stream": True, **fields}
    with client.stream("POST", FIM, json=body) as r:
        data, comments, blanks = read_sse(r)
    return r, data, comments, blanks


def assert_error_shape(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    error: dict[str, Any] = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] is None
    assert isinstance(error["message"], str)
    return error


# -- JSON (non-streaming) -------------------------------------------------------------


def test_json_success_shape(fake: FakeDeepSeek, client: httpx.Client) -> None:
    r = fim(client, suffix="\n    return 1\n", max_tokens=64)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert "content-length" in r.headers
    assert r.content.startswith(b"{")
    body = r.json()
    assert set(body) == {
        "id",
        "object",
        "created",
        "model",
        "system_fingerprint",
        "choices",
        "usage",
    }
    assert body["object"] == "text_completion"
    assert body["model"] == MODEL
    assert body["choices"] == [{"text": "pass", "index": 0, "logprobs": None, "finish_reason": "stop"}]
    usage = body["usage"]
    assert usage["prompt_tokens"] == usage["prompt_cache_hit_tokens"] + usage["prompt_cache_miss_tokens"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens"] == 2  # ceil(len("pass") / 3)
    [log] = fake.fim_requests()
    assert log.authorized
    assert fake.wait_for(lambda: log.completed)  # marked just after the last byte is written
    assert not log.aborted
    assert log.status == 200
    assert log.text == "pass"
    assert log.usage == usage
    assert log.body is not None
    assert log.body["max_tokens"] == 64
    assert log.finished is not None
    assert log.finished >= log.started


def test_delayed_json_starts_with_blank_lines(fake: FakeDeepSeek, client: httpx.Client) -> None:
    fake.script.append(Reply(text="return 1", delay=0.15))
    t0 = time.monotonic()
    r = fim(client)
    assert time.monotonic() - t0 >= 0.15
    assert r.headers["content-type"] == "application/json"
    assert r.headers["transfer-encoding"] == "chunked"
    assert r.text.startswith("\n\n")  # one blank line per 50 ms, before the JSON
    assert json.loads(r.text.lstrip("\n"))["choices"][0]["text"] == "return 1"
    # with no delay there is no preamble
    assert fim(client).content.startswith(b"{")


def test_default_callable_and_finish_reason_passthrough(fake: FakeDeepSeek, client: httpx.Client) -> None:
    fake.default = lambda body: Reply(text=body["prompt"].upper(), finish_reason="content_filter")
    choice = fim(client, prompt="abc").json()["choices"][0]
    assert choice == {
        "text": "ABC",
        "index": 0,
        "logprobs": None,
        "finish_reason": "content_filter",
    }


# -- SSE streaming -------------------------------------------------------------------


def test_sse_keepalives_chunks_usage_and_done(fake: FakeDeepSeek, client: httpx.Client) -> None:
    fake.script.append(Reply(text="héllo wörld!", delay=0.12, chunk_size=4))
    r, data, comments, blanks = stream_fim(client, stream_options={"include_usage": True})
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/event-stream"
    assert comments >= 3  # keep-alives during the delay + one before the first chunk
    assert data[-1] == "[DONE]"
    *content, usage_chunk = data[:-1]
    assert [c["choices"][0]["text"] for c in content] == ["héll", "o wö", "rld!"]
    assert [c["choices"][0]["finish_reason"] for c in content] == [None, None, "stop"]
    assert all(c["usage"] is None and c["object"] == "text_completion" for c in content)
    assert len({c["id"] for c in data[:-1]}) == 1
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 4
    assert blanks > len(data)  # stray empty lines beyond the event separators
    [log] = fake.fim_requests()
    assert fake.wait_for(lambda: log.completed)
    assert log.stream
    assert log.text == "héllo wörld!"


def test_sse_without_include_usage(fake: FakeDeepSeek, client: httpx.Client) -> None:
    fake.script.append(Reply(text="ab", chunk_size=1))
    _, data, comments, _ = stream_fim(client)
    assert comments == 1
    assert [d["choices"][0]["text"] for d in data[:-1]] == ["a", "b"]
    assert data[-1] == "[DONE]"


def test_sse_empty_text_still_sends_finish_reason(fake: FakeDeepSeek, client: httpx.Client) -> None:
    fake.script.append(Reply(text=""))
    _, data, _, _ = stream_fim(client)
    assert data[0]["choices"][0] == {
        "text": "",
        "index": 0,
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert data[1] == "[DONE]"


# -- trimming ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fields", "want_text", "want_finish"),
    [
        ("abc\ndef", {"stop": "\n"}, "abc", "stop"),
        ("abc\ndef", {"stop": ["zz", "de", "c\n"]}, "ab", "stop"),
        ("x" * 100, {"max_tokens": 2}, "xxxxxx", "length"),
        ("abcdefgh", {"max_tokens": 2, "stop": "h"}, "abcdef", "length"),
        ("abcdef", {"max_tokens": 2, "stop": "f"}, "abcde", "stop"),
        ("tiny", {"stop": None}, "tiny", "stop"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_stop_and_max_tokens_trimming(
    fake: FakeDeepSeek,
    client: httpx.Client,
    text: str,
    fields: dict[str, Any],
    want_text: str,
    want_finish: str,
    stream: bool,
) -> None:
    fake.script.append(Reply(text=text))
    if stream:
        _, data, _, _ = stream_fim(client, **fields)
        got = "".join(d["choices"][0]["text"] for d in data[:-1])
        finish = data[-2]["choices"][0]["finish_reason"]
    else:
        choice = fim(client, **fields).json()["choices"][0]
        got, finish = choice["text"], choice["finish_reason"]
    assert (got, finish) == (want_text, want_finish)


# -- errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"model": "deepseek-nope", "prompt": "x"}, 400, "Model Not Exist"),
        ({"prompt": "x"}, 422, "missing field `model`"),
        ({"model": MODEL}, 422, "missing field `prompt`"),
        ({"model": MODEL, "prompt": 42}, 422, "prompt"),
        ({"model": MODEL, "prompt": "x", "suffix": 3}, 422, "suffix"),
        ({"model": MODEL, "prompt": "x", "max_tokens": "9"}, 422, "max_tokens"),
        (
            {"model": MODEL, "prompt": "x", "max_tokens": 0},
            400,
            "Invalid max_tokens value, the valid range of max_tokens is [1, 4096]",
        ),
        (
            {"model": MODEL, "prompt": "x", "max_tokens": 4097},
            400,
            "Invalid max_tokens value, the valid range of max_tokens is [1, 4096]",
        ),
        ({"model": MODEL, "prompt": "x", "stop": ["s"] * 17}, 400, "stop"),
        ({"model": MODEL, "prompt": "x", "stop": [1]}, 422, "stop"),
        ({"model": MODEL, "prompt": "x", "temperature": 2.5}, 400, "temperature"),
        ({"model": MODEL, "prompt": "x", "top_p": 1.5}, 400, "top_p"),
        ([1, 2], 422, "JSON"),
        (b"{not json", 400, "JSON"),
    ],
)
def test_validation_errors(
    fake: FakeDeepSeek, client: httpx.Client, body: Any, status: int, message: str
) -> None:
    fake.script.append(Reply(text="SCRIPTED"))
    if isinstance(body, bytes):
        r = client.post(FIM, content=body, headers={"Content-Type": "application/json"})
    else:
        r = client.post(FIM, json=body)
    error = assert_error_shape(r, status)
    assert message in error["message"]
    assert len(fake.script) == 1  # scripted replies only serve valid requests
    assert fake.fim_requests()[0].status == status
    assert fim(client, stop=["s"] * 16).json()["choices"][0]["text"] == "SCRIPTED"


@pytest.mark.parametrize(
    ("reply", "want_type", "want_message"),
    [
        (Reply(status=402), "unknown_error", "Insufficient Balance"),
        (Reply(status=429, headers={"Retry-After": "1"}), "rate_limit_error", "Rate Limit Reached"),
        (Reply(status=500), "server_error", "Server Error"),
        (Reply(status=503, error_message="busy, try later"), "server_error", "busy, try later"),
    ],
)
def test_scripted_error_replies(
    fake: FakeDeepSeek, client: httpx.Client, reply: Reply, want_type: str, want_message: str
) -> None:
    fake.script.append(reply)
    r = fim(client)
    error = assert_error_shape(r, reply.status)
    assert (error["type"], error["message"]) == (want_type, want_message)
    for name, value in reply.headers.items():
        assert r.headers[name] == value
    assert fim(client).json()["choices"][0]["text"] == "pass"  # script consumed, back to default


def test_retry_after_and_delayed_error(fake: FakeDeepSeek, client: httpx.Client) -> None:
    fake.script.append(Reply(status=429, delay=0.1, headers={"Retry-After": "2"}))
    t0 = time.monotonic()
    r = fim(client, stream=True)
    assert time.monotonic() - t0 >= 0.1
    assert r.status_code == 429
    assert r.headers["retry-after"] == "2"
    assert r.content.startswith(b"{")  # errors have no blank-line preamble


@pytest.mark.parametrize(
    "raw", [b'{"id": "x", "choices": ', b'{"id":"x","object":"text_completion"}', b"\xff\xfe"]
)
def test_raw_body_is_sent_verbatim(fake: FakeDeepSeek, client: httpx.Client, raw: bytes) -> None:
    fake.script.append(Reply(raw_body=raw, headers={"X-Extra": "1"}))
    r = fim(client)
    assert r.status_code == 200
    assert r.content == raw
    assert r.headers["x-extra"] == "1"


def test_raw_body_with_error_status(fake: FakeDeepSeek, client: httpx.Client) -> None:
    fake.script.append(Reply(status=500, raw_body=b"<html>oops</html>"))
    r = fim(client)
    assert r.status_code == 500
    assert r.content == b"<html>oops</html>"


def test_auth_is_checked_on_every_route() -> None:
    with (
        FakeDeepSeek(api_key="sk-right-1234") as fake,
        httpx.Client(base_url=fake.url, trust_env=False, verify=False) as c,
    ):
        bad = {"Authorization": "Bearer sk-wrong-abcd"}
        for method, path in [("POST", FIM), ("GET", "/models"), ("GET", "/user/balance")]:
            r = c.request(method, path, headers=bad, json={"model": MODEL, "prompt": "x"})
            error = assert_error_shape(r, 401)
            assert error == {
                "message": "Authentication Fails, Your api key: ****abcd is invalid",
                "type": "authentication_error",
                "param": None,
                "code": "invalid_request_error",
            }
        assert c.get("/models").status_code == 401  # no header at all
        assert c.get("/nope", headers=bad).status_code == 401
        good = {"Authorization": "Bearer sk-right-1234"}
        assert c.get("/models", headers=good).status_code == 200
        assert [r.authorized for r in fake.requests] == [False] * 5 + [True]
        assert "sk-wrong" not in repr(fake.requests)
        assert "sk-right" not in repr(fake.requests)


@pytest.mark.parametrize("header", ["Bearer", "Basic dXNlcjpwYXNz", "sk-no-scheme"])
def test_any_key_mode_still_needs_a_bearer(fake: FakeDeepSeek, header: str) -> None:
    with httpx.Client(base_url=fake.url, trust_env=False, verify=False) as c:
        assert c.get("/models", headers={"Authorization": header}).status_code == 401
        assert c.get("/models", headers={"Authorization": "Bearer anything"}).status_code == 200


def test_unknown_paths_and_non_beta_completions_are_404(fake: FakeDeepSeek, client: httpx.Client) -> None:
    assert_error_shape(client.post("/completions", json={"model": MODEL, "prompt": "x"}), 404)
    assert_error_shape(client.get("/v2/whatever"), 404)
    assert_error_shape(client.get(FIM), 404)
    assert [(r.method, r.path, r.status) for r in fake.requests][-1] == ("GET", FIM, 404)


def test_models_and_balance(fake: FakeDeepSeek, client: httpx.Client) -> None:
    assert client.get("/models").json() == {
        "object": "list",
        "data": [
            {"id": "deepseek-flash", "object": "model", "owned_by": "deepseek"},
            {"id": "deepseek-chat", "object": "model", "owned_by": "deepseek"},
        ],
    }
    balance = client.get("/user/balance").json()
    assert balance["is_available"] is True
    assert balance["balance_infos"][0]["total_balance"] == "12.34"
    fake.balance = {"is_available": False, "balance_infos": []}
    assert client.get("/user/balance").json()["is_available"] is False
    fake.models_reply = Reply(status=500)
    fake.balance_reply = Reply(status=200, raw_body=b"not json")
    assert_error_shape(client.get("/models"), 500)
    assert client.get("/user/balance").content == b"not json"
    fake.reset()
    assert client.get("/models").status_code == 200


# -- cache accounting ------------------------------------------------------------------


def test_prefix_cache_accounting(fake: FakeDeepSeek, client: httpx.Client) -> None:
    def usage(prompt: str) -> dict[str, int]:
        result: dict[str, int] = fim(client, prompt=prompt, suffix="").json()["usage"]
        return result

    first = usage("a" * 3000 + "b")
    assert first["prompt_tokens"] == 1001  # ceil(3001 / 3)
    assert first["prompt_cache_hit_tokens"] == 0
    assert first["prompt_cache_miss_tokens"] == 1001
    second = usage("a" * 3000 + "c" * 300)
    assert second["prompt_tokens"] == 1100
    assert second["prompt_cache_hit_tokens"] == 960  # 3000 chars = 1000 tokens -> 15 * 64
    assert second["prompt_cache_miss_tokens"] == 140
    assert usage("z" * 600)["prompt_cache_hit_tokens"] == 0
    assert usage("z" * 150)["prompt_cache_hit_tokens"] == 0  # < 64 tokens is never cached
    assert usage("z" * 600)["prompt_cache_hit_tokens"] == 192  # 600 chars = 200 tokens -> 3 * 64
    fake.reset()
    assert usage("a" * 3000 + "b")["prompt_cache_hit_tokens"] == 0


def test_usage_override(fake: FakeDeepSeek, client: httpx.Client) -> None:
    fake.script.append(Reply(text="x", usage={"prompt_tokens": 7}))
    assert fim(client).json()["usage"] == {"prompt_tokens": 7}


# -- oracle ----------------------------------------------------------------------------

SOURCE = """import os


def read(path):
    with open(path) as fh:
        return fh.read()


def write(path, data):
    with open(path, "w") as fh:
        fh.write(data)
"""


def test_oracle_returns_the_true_middle() -> None:
    k = SOURCE.index("return fh.read()")
    m = SOURCE.index("\n\n\ndef write")
    with (
        FakeDeepSeek(oracle_text=SOURCE) as fake,
        httpx.Client(base_url=fake.url, headers=AUTH, trust_env=False, verify=False) as c,
    ):
        body: dict[str, Any] = {"model": MODEL, "prompt": SOURCE[:k], "suffix": SOURCE[m:]}
        assert c.post(FIM, json=body).json()["choices"][0]["text"] == "return fh.read()"
        # a header before the prompt, no suffix, stop at the end of the line
        body = {"model": MODEL, "prompt": "# file: io.py\n" + SOURCE[:k], "stop": ["\n"]}
        assert c.post(FIM, json=body).json()["choices"][0]["text"] == "return fh.read()"
        # scripted replies still win over the oracle
        fake.script.append(Reply(text="scripted"))
        assert c.post(FIM, json=body).json()["choices"][0]["text"] == "scripted"


def test_oracle_disambiguates_repeated_text_with_the_suffix() -> None:
    oracle = "def a():\n    return 1\n\ndef b():\n    return 2\n"
    assert oracle_continuation(oracle, "    return ", "\n\ndef b():") == "1"
    assert oracle_continuation(oracle, "    return ", "\n") == "2"  # suffix = end of file
    assert oracle_continuation(oracle, "def b():\n    return ", "") == "2\n"
    assert oracle_continuation(oracle, "no such text", "") == ""
    assert oracle_continuation(oracle, "", "\ndef b():") == "def a():\n    return 1\n"


# -- cancellation, cut streams, concurrency --------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_client_closing_mid_delay_is_detected(fake: FakeDeepSeek, client: httpx.Client, stream: bool) -> None:
    fake.script.append(Reply(text="late", delay=3.0))
    body = {"model": MODEL, "prompt": "x", "stream": stream}
    with client.stream("POST", FIM, json=body) as r:
        assert r.status_code == 200  # headers go out before the wait
        closed_at = time.monotonic()
    [log] = fake.fim_requests()
    assert fake.wait_for(lambda: log.aborted, timeout=1.0)
    assert log.finished is not None
    assert log.finished - closed_at < 1.0
    assert not log.completed


@pytest.mark.asyncio
async def test_async_cancel_of_keepalive_forever_stream() -> None:
    with FakeDeepSeek() as fake:
        fake.script.append(Reply(keepalive_forever=True))
        async with httpx.AsyncClient(base_url=fake.url, headers=AUTH, trust_env=False, verify=False) as c:
            body = {"model": MODEL, "prompt": "x", "stream": True}
            task = asyncio.create_task(c.post(FIM, json=body))
            await asyncio.sleep(0.2)
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            [log] = fake.fim_requests()
            assert await asyncio.to_thread(fake.wait_for, lambda: log.aborted, 1.0)
            assert log.status == 200
            assert not log.completed


def test_cut_stream_sse(fake: FakeDeepSeek, client: httpx.Client) -> None:
    fake.script.append(Reply(text="abcdefghijklmnop", chunk_size=4, cut_stream=True))
    seen: list[str] = []
    body = {"model": MODEL, "prompt": "x", "stream": True}
    with (
        pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)),
        client.stream("POST", FIM, json=body) as r,
    ):
        seen.extend(r.iter_lines())
    data = [line for line in seen if line.startswith("data: ")]
    assert 1 <= len(data) <= 2
    assert "data: [DONE]" not in seen
    [log] = fake.fim_requests()
    assert fake.wait_for(lambda: log.finished is not None, 1.0)
    assert log.status == 200
    assert not log.completed
    assert not log.aborted


def test_cut_json_body(fake: FakeDeepSeek, client: httpx.Client) -> None:
    fake.script.append(Reply(text="return 1", cut_stream=True))
    with pytest.raises(httpx.RemoteProtocolError):
        fim(client)
    assert fim(client).json()["choices"][0]["text"] == "pass"  # next request: new connection


def test_latency_applies_and_requests_run_concurrently() -> None:
    with FakeDeepSeek(latency=0.2) as fake:

        def call(_: int) -> float:
            with httpx.Client(base_url=fake.url, headers=AUTH, trust_env=False, verify=False) as c:
                t0 = time.monotonic()
                assert fim(c).json()["choices"][0]["text"] == "pass"
                return time.monotonic() - t0

        t0 = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            durations = list(pool.map(call, range(4)))
        assert min(durations) >= 0.2
        assert time.monotonic() - t0 < 0.6
        with httpx.Client(base_url=fake.url, headers=AUTH, trust_env=False, verify=False) as c:
            assert c.get("/models").elapsed.total_seconds() < 0.15  # latency is FIM-only


def test_stop_ends_hanging_requests_quickly() -> None:
    fake = FakeDeepSeek().start()
    fake.script.append(Reply(keepalive_forever=True))
    errors: list[BaseException] = []

    def hang() -> None:
        with httpx.Client(base_url=fake.url, headers=AUTH, trust_env=False, verify=False) as c:
            try:
                fim(c)
            except httpx.HTTPError as exc:
                errors.append(exc)

    thread = threading.Thread(target=hang)
    thread.start()
    assert fake.wait_for(lambda: bool(fake.fim_requests()), 1.0)
    t0 = time.monotonic()
    fake.stop()
    thread.join(timeout=2.0)
    assert not thread.is_alive()
    assert time.monotonic() - t0 < 1.5
    assert len(errors) == 1
    assert not fake.requests[0].aborted  # a server stop is not a client abort


def test_wait_for_and_reset(fake: FakeDeepSeek, client: httpx.Client) -> None:
    assert fake.wait_for(lambda: False, timeout=0.05) is False
    fake.script.extend([Reply(text="one"), Reply(text="two")])
    assert fim(client).json()["choices"][0]["text"] == "one"
    fake.default = Reply(text="other")
    fake.reset()
    assert not fake.script
    assert not fake.requests
    assert fim(client).json()["choices"][0]["text"] == "pass"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_cli_runs_until_interrupted(signum: int) -> None:
    cmd = [sys.executable, str(SCRIPTS / "fake_deepseek.py"), "--port", "0", "--text", "return 42"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stderr is not None
            banner = proc.stderr.readline()
            found = re.search(r"DEEPSEEK_BASE_URL=(http://127\.0\.0\.1:\d+) DEEPSEEK_API_KEY=", banner)
            assert found, banner
            with httpx.Client(base_url=found.group(1), headers=AUTH, trust_env=False, verify=False) as c:
                assert fim(c).json()["choices"][0]["text"] == "return 42"
            proc.send_signal(signum)
            assert proc.wait(timeout=5) == 0
            assert proc.stdout is not None
            assert proc.stdout.read() == ""  # nothing on stdout, the banner is on stderr
        finally:
            if proc.poll() is None:
                proc.kill()
