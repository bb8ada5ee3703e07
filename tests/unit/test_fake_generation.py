"""The fake's generation-time model: first token, token rate, disconnects, per-request timing.

Timing checks have strict lower bounds (the fake must never answer early) and generous upper
bounds (the machine is shared and loaded).
"""

from __future__ import annotations

import json
import math
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

SCRIPTS = Path(__file__).parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS))

from fake_deepseek import FakeDeepSeek, Reply, plan_answer, token_pieces  # noqa: E402

MODEL = "deepseek-flash"
AUTH = {"Authorization": "Bearer sk-test-key"}
FIM = "/beta/completions"
EARLY = 0.005  # the fake may be this much early (clock granularity), never more
LATE = 0.3  # and this much late on a busy machine
TEXT_20 = "".join(f"t{i:02d}" for i in range(20))  # 60 characters = 20 tokens of 3


def client_for(fake: FakeDeepSeek) -> httpx.Client:
    return httpx.Client(base_url=fake.url, headers=AUTH, trust_env=False, timeout=10.0)


def timed_events(client: httpx.Client, **fields: Any) -> tuple[float, list[tuple[float, Any]]]:
    """Stream a FIM request; (time sent, [(arrival time, data payload)])."""
    body = {"model": MODEL, "prompt": "x = ", "stream": True, **fields}
    events: list[tuple[float, Any]] = []
    sent = time.monotonic()
    with client.stream("POST", FIM, json=body) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: "):
                payload = line[len("data: ") :]
                events.append((time.monotonic(), payload if payload == "[DONE]" else json.loads(payload)))
    return sent, events


def texts(events: list[tuple[float, Any]]) -> list[str]:
    return [e["choices"][0]["text"] for _, e in events if e != "[DONE]" and e["choices"]]


@pytest.fixture
def fake() -> Iterator[FakeDeepSeek]:
    with FakeDeepSeek(first_token=0.2, token_rate=50) as server:
        yield server


# -- the pure schedule ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cpt", "want"),
    [
        ("", 3.0, []),
        ("ab", 3.0, ["ab"]),
        ("abcdefg", 3.0, ["abc", "def", "g"]),
        ("abcdefghijklmn", 3.5, ["abc", "defg", "hij", "klmn"]),
        ("abcdefghijklm", 3.5, ["abc", "defg", "hij", "klm"]),
        ("héllo wörld", 4.0, ["héll", "o wö", "rld"]),
    ],
)
def test_token_pieces(text: str, cpt: float, want: list[str]) -> None:
    pieces = token_pieces(text, cpt)
    assert pieces == want
    assert "".join(pieces) == text
    assert len(pieces) == math.ceil(len(text) / cpt)  # the count usage reports


def test_plan_with_a_token_rate() -> None:
    plan = plan_answer(TEXT_20, "stop", start=10.0, token_rate=50, chars_per_token=3.0)
    assert plan.per_token
    assert plan.pieces == tuple(token_pieces(TEXT_20, 3.0))
    assert plan.at[0] == 10.0
    assert plan.at[-1] == pytest.approx(10.38)
    assert plan.done == pytest.approx(10.4)  # the end-of-sequence token takes one more step
    assert not plan.finish_on_last
    assert plan.token_count == 20
    cut = plan_answer(TEXT_20, "length", start=10.0, token_rate=50, chars_per_token=3.0)
    assert cut.done == cut.at[-1]  # max_tokens reached: no end-of-sequence token
    assert cut.finish_on_last
    empty = plan_answer("", "stop", start=10.0, token_rate=50, chars_per_token=3.0)
    assert (empty.pieces, empty.done, empty.token_count) == ((), 10.0, 0)


def test_plan_without_a_token_rate_is_all_at_once() -> None:
    plan = plan_answer("abcdefghij", "stop", start=5.0, token_rate=None, chars_per_token=3.0, chunk_size=4)
    assert not plan.per_token
    assert plan.pieces == ("abcd", "efgh", "ij")
    assert plan.at == (5.0, 5.0, 5.0)
    assert plan.done == 5.0
    assert plan.finish_on_last
    assert plan.token_count == 4
    spaced = plan_answer("abcdefghij", "stop", start=5.0, token_rate=0, chars_per_token=3.0, chunk_delay=0.1)
    assert spaced.at == pytest.approx((5.0, 5.1, 5.2))


def test_constructor_validates_and_latency_is_an_alias() -> None:
    assert FakeDeepSeek(latency=0.3).first_token == 0.3
    assert FakeDeepSeek(latency=0.3, first_token=0.1).first_token == 0.1
    fake = FakeDeepSeek()
    fake.latency = 0.25
    assert (fake.first_token, fake.latency) == (0.25, 0.25)
    with pytest.raises(ValueError, match="token_rate"):
        FakeDeepSeek(token_rate=-1)
    with pytest.raises(ValueError, match="chars_per_token"):
        FakeDeepSeek(chars_per_token=0.5)


# -- streamed answers -----------------------------------------------------------------------


def test_stream_paces_one_event_per_token(fake: FakeDeepSeek) -> None:
    fake.default = Reply(text=TEXT_20)
    with client_for(fake) as c:
        sent, events = timed_events(c, stream_options={"include_usage": True})
    content = [(t, e) for t, e in events if e != "[DONE]" and e["choices"] and e["choices"][0]["text"]]
    assert [e["choices"][0]["text"] for _, e in content] == token_pieces(TEXT_20, 3.0)
    assert all(e["choices"][0]["finish_reason"] is None for _, e in content)
    first, last = content[0][0] - sent, content[-1][0] - sent
    assert 0.2 - EARLY <= first < 0.2 + LATE
    # 19 steps of 20 ms between the first and the last token: about 0.38 s
    assert 0.2 + 0.38 - EARLY <= last < 0.58 + LATE
    for k, (arrived, _) in enumerate(content):  # paced: no token leaves before its time
        assert arrived - sent >= 0.2 + k * 0.02 - EARLY
    finish_t, finish = events[-3]
    assert finish["choices"][0] == {"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}
    assert finish_t - sent >= 0.2 + 0.4 - EARLY
    usage_event = events[-2][1]
    assert usage_event["choices"] == []
    assert usage_event["usage"]["completion_tokens"] == 20
    assert events[-1][1] == "[DONE]"
    [log] = fake.fim_requests()
    assert fake.wait_for(lambda: log.completed)
    assert (log.tokens_sent, log.tokens_generated) == (20, 20)
    assert log.first_token_at is not None
    assert log.finished is not None
    assert 0.2 - EARLY <= log.first_token_at - log.started < 0.2 + LATE
    assert 0.4 - EARLY <= log.finished - log.first_token_at < 0.4 + LATE
    assert not log.aborted


def test_each_token_is_its_own_http_chunk(fake: FakeDeepSeek) -> None:
    """Read the chunked framing by hand: one SSE event per HTTP chunk, nothing split or merged."""
    fake.first_token = 0.0
    fake.default = Reply(text="abcdefghi")
    body = json.dumps({"model": MODEL, "prompt": "x", "stream": True}).encode()
    with socket.create_connection(("127.0.0.1", fake.port), timeout=5) as sock:
        sock.sendall(
            b"POST /beta/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        reader = sock.makefile("rb")
        while reader.readline() not in (b"\r\n", b""):
            pass  # status line and headers
        chunks: list[bytes] = []
        while size := int(reader.readline().strip(), 16):
            chunks.append(reader.read(size))
            assert reader.readline() == b"\r\n"
    assert chunks[0] == b": keep-alive\n\n"
    data = chunks[1:]
    assert all(c.startswith(b"data: ") and c.endswith(b"\n\n") and c.count(b"\n\n") == 1 for c in data)
    assert [json.loads(c[6:])["choices"][0]["text"] for c in data[:3]] == ["abc", "def", "ghi"]
    assert data[-1] == b"data: [DONE]\n\n"


def test_max_tokens_puts_the_finish_on_the_last_token(fake: FakeDeepSeek) -> None:
    fake.default = Reply(text=TEXT_20)
    with client_for(fake) as c:
        _, events = timed_events(c, max_tokens=4)
    assert texts(events) == ["t00", "t01", "t02", "t03"]
    assert [e["choices"][0]["finish_reason"] for _, e in events[:-1]] == [None, None, None, "length"]


def test_empty_answer_sends_only_the_finish(fake: FakeDeepSeek) -> None:
    fake.default = Reply(text="")
    with client_for(fake) as c:
        sent, events = timed_events(c)
    assert len(events) == 2
    assert events[0][1]["choices"][0]["finish_reason"] == "stop"
    assert events[0][0] - sent >= 0.2 - EARLY


def test_reply_token_rate_overrides_the_fake() -> None:
    with FakeDeepSeek(token_rate=None) as fake, client_for(fake) as c:
        fake.script.append(Reply(text="abcdefghijkl", token_rate=20))  # 4 tokens, 50 ms apart
        sent, events = timed_events(c)
        assert texts(events)[:4] == ["abc", "def", "ghi", "jkl"]
        assert events[3][0] - sent >= 0.15 - EARLY
        _, burst = timed_events(c)  # back to all at once
        assert texts(burst) == ["pass"]


def test_fractional_chars_per_token_keeps_usage_and_events_consistent() -> None:
    text = "abcdefghijklmnopqrstu"  # 21 characters = 6 tokens of 3.5
    with FakeDeepSeek(token_rate=500, chars_per_token=3.5) as fake, client_for(fake) as c:
        fake.default = Reply(text=text)
        _, events = timed_events(c, stream_options={"include_usage": True})
        pieces = [t for t in texts(events) if t]
        assert "".join(pieces) == text
        assert len(pieces) == events[-2][1]["usage"]["completion_tokens"] == 6


# -- non-streamed answers -----------------------------------------------------------------------


def test_non_streamed_answer_arrives_when_generation_is_complete(fake: FakeDeepSeek) -> None:
    fake.default = Reply(text=TEXT_20)
    with client_for(fake) as c:
        t0 = time.monotonic()
        r = c.post(FIM, json={"model": MODEL, "prompt": "x = "})
        elapsed = time.monotonic() - t0
    assert r.json()["choices"][0]["text"] == TEXT_20
    assert 0.2 + 0.4 - EARLY <= elapsed < 0.6 + LATE  # first token + 20 tokens / 50 per second
    [log] = fake.fim_requests()
    assert fake.wait_for(lambda: log.completed)
    assert log.tokens_sent == 20
    assert log.first_token_at is not None
    assert log.first_token_at - log.started >= 0.6 - EARLY  # nothing usable before the end


# -- disconnects ------------------------------------------------------------------------------


def test_disconnect_mid_stream_stops_generation() -> None:
    text = "abc" * 300  # 300 tokens: 15 s at 20 tokens/s
    with FakeDeepSeek(first_token=0.05, token_rate=20) as fake, client_for(fake) as c:
        fake.default = Reply(text=text)
        got: list[str] = []
        body = {"model": MODEL, "prompt": "x", "stream": True}
        with c.stream("POST", FIM, json=body) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    got.append(json.loads(line[6:])["choices"][0]["text"])
                if len(got) == 5:
                    break
        closed_at = time.monotonic()
        [log] = fake.fim_requests()
        assert fake.wait_for(lambda: log.aborted, timeout=2.0)
        assert log.finished is not None
        assert log.finished - closed_at < 0.5
        assert not log.completed
        assert 5 <= log.tokens_sent <= 5 + 10  # what reached the socket before the hang-up was seen
        assert log.tokens_sent <= log.tokens_generated < 30
        sent_then = log.tokens_sent
        time.sleep(0.3)
        assert log.tokens_sent == sent_then  # nothing more is generated


def test_disconnect_while_a_non_streamed_answer_is_generated() -> None:
    with FakeDeepSeek(first_token=0.05, token_rate=20) as fake, client_for(fake) as c:
        fake.default = Reply(text="abc" * 300)
        with c.stream("POST", FIM, json={"model": MODEL, "prompt": "x"}) as r:
            assert r.status_code == 200  # blank lines flow while the answer is generated
            time.sleep(0.5)
        [log] = fake.fim_requests()
        assert fake.wait_for(lambda: log.aborted, timeout=2.0)
        assert log.tokens_sent == 0
        assert log.first_token_at is None
        assert 5 <= log.tokens_generated <= 25  # about 0.45 s of generation at 20 tokens/s


# -- oracle and the command line -----------------------------------------------------------------

SOURCE = """import os


def read(path):
    with open(path) as fh:
        return fh.read()


def write(path, data):
    with open(path, "w") as fh:
        fh.write(data)
"""


def test_oracle_streams_the_true_middle_token_by_token() -> None:
    k = SOURCE.index("return fh.read()")
    m = SOURCE.index("\n\n\ndef write")
    with FakeDeepSeek(oracle_text=SOURCE, token_rate=200) as fake, client_for(fake) as c:
        _, events = timed_events(c, prompt=SOURCE[:k], suffix=SOURCE[m:])
        pieces = texts(events)
        assert "".join(pieces) == "return fh.read()"
        assert [p for p in pieces if p] == token_pieces("return fh.read()", 3.0)
        _, events = timed_events(c, prompt=SOURCE[:k], stop=["\n"])
        assert "".join(texts(events)) == "return fh.read()"


def test_cli_timing_flags() -> None:
    cmd = [
        sys.executable,
        str(SCRIPTS / "fake_deepseek.py"),
        "--port",
        "0",
        "--text",
        "abcdefghijkl",
        "--first-token",
        "0.1",
        "--token-rate",
        "20",
    ]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stderr is not None
            found = re.search(r"DEEPSEEK_BASE_URL=(http://127\.0\.0\.1:\d+)", proc.stderr.readline())
            assert found
            with httpx.Client(base_url=found.group(1), headers=AUTH, trust_env=False, timeout=10) as c:
                sent, events = timed_events(c)
            assert texts(events)[:4] == ["abc", "def", "ghi", "jkl"]
            assert events[0][0] - sent >= 0.1 - EARLY
            assert events[3][0] - sent >= 0.1 + 0.15 - EARLY
        finally:
            proc.terminate()
            proc.wait(timeout=5)
