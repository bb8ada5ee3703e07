"""Cache, typing-through and shared in-flight calls."""

from __future__ import annotations

import asyncio

import pytest

from fimls.cache import CompletionCache, Flights, TypingThrough


def test_lru_and_ttl():
    now = [0.0]
    cache: CompletionCache[str] = CompletionCache(2, ttl=10, timer=lambda: now[0])
    cache.put("a", "1")
    cache.put("b", "2")
    assert cache.get("a") == "1"
    cache.put("c", "3")  # evicts the least recently used: b
    assert cache.get("b") is None
    assert len(cache) == 2
    now[0] = 11
    assert cache.get("a") is None
    assert len(cache) == 0


def test_cache_disabled():
    cache: CompletionCache[str] = CompletionCache(0, ttl=10)
    cache.put("a", "1")
    assert cache.get("a") is None


def test_typing_through():
    memory = TypingThrough()
    memory.remember("u", "def f():\n    ret", "\n", "urn x + 1")
    assert memory.lookup("u", "def f():\n    retur", "\n") == "n x + 1"
    assert memory.lookup("u", "def f():\n    retX", "\n") is None  # typed something else
    assert memory.lookup("u", "def f():\n    ret", "\n") == "urn x + 1"  # asked again at the same place
    assert memory.lookup("u", "def f():\n    retur", "\nchanged") is None
    assert memory.lookup("other", "def f():\n    retur", "\n") is None
    assert memory.lookup("u", "def f():\n    return x + 1", "\n") is None  # all typed
    memory.forget("u")
    assert memory.lookup("u", "def f():\n    retur", "\n") is None


async def test_flights_share_one_call():
    calls = 0
    release = asyncio.Event()

    async def call():
        nonlocal calls
        calls += 1
        await release.wait()
        return "result"

    flights: Flights[str] = Flights()
    one = asyncio.ensure_future(flights.join("k", call))
    two = asyncio.ensure_future(flights.join("k", call))
    await asyncio.sleep(0.01)
    assert "k" in flights
    release.set()
    assert await one == (True, "result")
    assert await two == (True, "result")
    assert calls == 1
    assert len(flights) == 0


async def test_flight_cancelled_when_last_waiter_abandons():
    cancelled = asyncio.Event()

    async def call():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    flights: Flights[str] = Flights()
    abandon: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiter = asyncio.ensure_future(flights.join("k", call, abandon))
    await asyncio.sleep(0.01)
    abandon.set_result(None)
    assert await waiter == (False, None)
    await asyncio.wait_for(cancelled.wait(), 1)


async def test_flight_cancelled_with_its_waiter():
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def call():
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    flights: Flights[str] = Flights()
    waiter = asyncio.ensure_future(flights.join("k", call))
    await started.wait()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await asyncio.wait_for(cancelled.wait(), 1)
