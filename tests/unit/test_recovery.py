"""Pauses and recovery without a restart: backoff, probes, one announcement."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from fimls import recovery as recovery_module
from fimls.config import parse_settings
from fimls.document import Document
from fimls.engine import Engine
from fimls.recovery import BACKOFF, Recovery


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        self.wake = asyncio.Event()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def recovery_with(answers: list[bool | None]) -> tuple[Recovery, Clock, list[str], list[str]]:
    clock = Clock()
    probed: list[str] = []
    said: list[str] = []

    async def probe(kind: str) -> bool | None:
        probed.append(kind)
        return answers.pop(0)

    return Recovery(probe, said.append, clock=clock, sleep=clock.sleep), clock, probed, said


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_balance_is_probed_on_a_backoff_until_it_is_available():
    recovery, clock, probed, said = recovery_with([False, False, True])
    recovery.hold("balance", "insufficient balance (402)")
    assert recovery.paused
    assert recovery.status() == {"paused": "insufficient balance (402)", "nextTryInSeconds": 30.0}
    await settle()
    assert clock.slept == [30.0, 60.0, 120.0] and probed == ["balance"] * 3
    assert not recovery.paused
    assert said == ["fimls: the account has balance again; requests resume"]
    assert recovery.status() == {"paused": None, "nextTryInSeconds": None}


async def test_the_backoff_is_capped():
    recovery, clock, _probed, said = recovery_with([False] * 8 + [True])
    recovery.hold("balance", "402")
    await settle()
    assert clock.slept == [*BACKOFF, 300.0, 300.0, 300.0, 300.0]
    assert len(said) == 1


async def test_a_probe_that_cannot_tell_lets_the_next_request_find_out():
    recovery, _clock, probed, said = recovery_with([None])
    recovery.hold("auth", "rejected the API key (401)")
    await settle()
    assert probed == ["auth"] and not recovery.paused and said == []
    recovery.succeeded()  # that request worked
    assert said == ["fimls: a new API key; requests resume"]
    recovery.succeeded()
    assert len(said) == 1  # once


async def test_the_same_failure_again_backs_off_further():
    recovery, _clock, _probed, _said = recovery_with([None])
    recovery.hold("auth", "401")
    await settle()
    recovery.hold("auth", "401")  # the request after the backoff failed too
    assert recovery.status()["nextTryInSeconds"] == 60.0
    recovery.hold("balance", "402")  # another condition starts over
    assert recovery.status()["nextTryInSeconds"] == 30.0


async def test_retry_now_probes_at_once():
    recovery, clock, probed, said = recovery_with([False, True])
    recovery.hold("balance", "402")
    assert await recovery.retry_now() is False and recovery.paused
    assert await recovery.retry_now() is True and not recovery.paused
    assert probed == ["balance", "balance"] and len(said) == 1
    assert clock.slept == []  # no waiting for the backoff


async def test_rate_limits_wait_silently_and_settings_changes_resume_silently():
    recovery, clock, probed, said = recovery_with([])
    recovery.wait("rate limit (429)", 2.0)
    assert recovery.paused
    clock.now += 2.5
    assert not recovery.paused
    recovery.succeeded()
    recovery.hold("model", "unknown model")
    recovery.resume()
    await settle()
    assert not recovery.paused and probed == [] and said == []


async def test_engine_resumes_after_402_when_the_balance_endpoint_says_so(monkeypatch):
    monkeypatch.setattr(recovery_module, "BACKOFF", (0.05, 0.05))
    available = [False, True]
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path == "/user/balance":
            return httpx.Response(200, json={"is_available": available.pop(0), "balance_infos": []})
        if calls.count("/beta/completions") == 1:
            return httpx.Response(402, json={"error": {"message": "Insufficient Balance"}})
        return httpx.Response(200, json={"choices": [{"text": "ok", "finish_reason": "stop"}]})

    said: list[str] = []
    settings, _ = parse_settings(
        {"apiKey": "k", "model": "deepseek-chat", "stream": False, "prefetch": False}
    )
    engine = Engine(settings, transport=httpx.MockTransport(handler), on_resume=said.append)
    snap = Document("file:///a.py", "x = \n").snapshot(
        0, 4, encoding="utf-32", max_prefix=99, max_suffix=99, anchor=1
    )
    try:
        assert await engine.complete(snap) == []
        assert engine.paused and engine.status()["paused"].endswith(
            "top up to continue: Insufficient Balance"
        )
        assert await engine.complete(snap) == [] and calls.count("/beta/completions") == 1  # nothing sent
        for _ in range(100):
            if not engine.paused:
                break
            await asyncio.sleep(0.02)
        assert calls.count("/user/balance") == 2 and said
        assert [s.text for s in await engine.complete(snap)] == ["ok"]
        assert said == ["fimls: the account has balance again; requests resume"]
    finally:
        await engine.aclose()


@pytest.mark.parametrize("changed", [True, False])
async def test_engine_reruns_the_key_command_after_401(monkeypatch, tmp_path, changed):
    monkeypatch.setattr(recovery_module, "BACKOFF", (0.05, 0.05, 0.05))
    key_file = tmp_path / "key"
    key_file.write_text("sk-old-key-000000000\n")
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/beta/completions":
            seen.append(request.headers["authorization"])
        if request.headers["authorization"].endswith("old-key-000000000"):
            return httpx.Response(401, json={"error": {"message": "Authentication Fails"}})
        return httpx.Response(200, json={"choices": [{"text": "ok", "finish_reason": "stop"}]})

    said: list[str] = []
    raw = {"apiKeyCommand": f"cat {key_file}", "model": "deepseek-chat", "stream": False, "prefetch": False}
    engine = Engine(parse_settings(raw)[0], transport=httpx.MockTransport(handler), on_resume=said.append)
    snap = Document("file:///a.py", "x = \n").snapshot(
        0, 4, encoding="utf-32", max_prefix=99, max_suffix=99, anchor=1
    )
    try:
        assert await engine.complete(snap) == [] and engine.paused
        if changed:
            key_file.write_text("sk-new-key-111111111\n")
        await asyncio.sleep(0.3)
        if changed:
            assert not engine.paused and said == ["fimls: a new API key; requests resume"]
            assert [s.text for s in await engine.complete(snap)] == ["ok"]
            assert seen[-1] == "Bearer sk-new-key-111111111"
        else:
            assert engine.paused and said == [] and len(seen) == 1  # the old key is never sent again
    finally:
        await engine.aclose()
