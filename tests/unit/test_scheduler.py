"""Debounce tickets: the wait runs from the request's arrival, and supersession ends it."""

from __future__ import annotations

import asyncio

import pytest

from fimls.scheduler import Scheduler


def run_without_suspending(coro):
    """The result of a coroutine that must finish without waiting on anything."""
    with pytest.raises(StopIteration) as stop:
        coro.send(None)
    return stop.value.value


async def test_debounce_counts_from_arrival():
    loop = asyncio.get_running_loop()
    scheduler = Scheduler()
    arrived = loop.time() - 0.2
    ticket = scheduler.claim("file:///a", 0.15, since=arrived)
    assert ticket.deadline == pytest.approx(arrived + 0.15)
    # Time spent before the handler ran already covers the whole debounce: no waiting.
    assert run_without_suspending(ticket.wait()) is True


async def test_without_arrival_the_debounce_starts_now():
    loop = asyncio.get_running_loop()
    before = loop.time()
    ticket = Scheduler().claim("file:///a", 0.15)
    assert before + 0.15 <= ticket.deadline <= loop.time() + 0.15


async def test_newer_request_ends_the_wait_of_the_older_one():
    scheduler = Scheduler()
    old = scheduler.claim("file:///a", 30)
    waiting = asyncio.ensure_future(old.wait())
    await asyncio.sleep(0)
    scheduler.claim("file:///a", 30)
    assert await asyncio.wait_for(waiting, 5) is False
    assert old.superseded


async def test_kinds_and_documents_do_not_supersede_each_other():
    scheduler = Scheduler()
    inline = scheduler.claim("file:///a", 0)
    scheduler.claim("file:///a", 0, kind="classic")
    scheduler.claim("file:///b", 0)
    assert not inline.superseded and len(scheduler) == 3
    scheduler.supersede_all("file:///a")
    assert inline.superseded and len(scheduler) == 3
