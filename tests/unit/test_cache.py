"""The TTL cache, and generations: typed-along text, divergence, one stream per document."""

from __future__ import annotations

import asyncio

from fimls.backends import FimRequest, Finish
from fimls.cache import CompletionCache, Generation, Streams
from fimls.prompt import Mode, Plan


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


PLAN = Plan(Mode.MULTI, 0)


def generation(uri: str = "u", prefix: str = "def f():\n    ret", suffix: str = "\n", **kw) -> Generation:
    request = FimRequest(model="m", prefix=prefix, suffix=suffix, max_tokens=16)
    return Generation(uri, request, PLAN, "    ret", **kw)


def test_typed_along_the_answer():
    g = generation()
    g.feed("urn x")
    assert g.typed("def f():\n    ret", "\n") == ""  # asked again at the same place
    assert g.typed("def f():\n    retur", "\n") == "ur"
    assert g.typed("def f():\n    return x + 1", "\n") == "urn x + 1"  # may still arrive
    assert g.typed("def f():\n    retX", "\n") is None  # typed something else
    assert g.typed("def f():\n    retur", "\nchanged") is None  # the suffix changed
    assert g.typed("def g():\n    retur", "\n") is None  # the prefix changed
    g.end(Finish("stop"))
    assert g.typed("def f():\n    return x + 1", "\n") is None  # nothing more will arrive
    assert g.typed("def f():\n    return x", "\n") == "urn x"


async def test_waiters_wake_on_text_and_on_end():
    g = generation()
    waiting = asyncio.ensure_future(g.changed(5))
    await asyncio.sleep(0)
    g.feed("a")
    await asyncio.wait_for(waiting, 1)
    waiting = asyncio.ensure_future(g.changed(5))
    await asyncio.sleep(0)
    g.end(Finish("stop"))
    await asyncio.wait_for(waiting, 1)
    await asyncio.wait_for(g.changed(5), 0.1)  # already done: no wait
    abandoned = asyncio.get_running_loop().create_future()
    other = generation()
    waiting = asyncio.ensure_future(other.changed(5, abandoned))
    await asyncio.sleep(0)
    abandoned.set_result(None)
    await asyncio.wait_for(waiting, 1)


async def test_one_live_stream_per_document_and_kind():
    streams = Streams()
    first, second = generation(), generation(prefix="def f():\n    return ")
    spec = generation(prefix="other", speculative=True)
    for g in (first, spec, second):
        streams.add(g)
    assert first.cancelled and second.live and spec.live  # the speculative one is another kind
    extra = generation(prefix="def f():\n    return ")
    streams.add(extra, alongside=True)
    assert second.live and extra.live
    assert streams.live() == 3
    streams.forget("u")
    assert streams.live() == 0 and list(streams) == []


def test_find_serves_the_newest_consistent_generation_and_drops_diverged_speculation():
    streams = Streams()
    main = generation(prefix="x = ")
    main.feed("compute(1)")
    main.end(Finish("stop"))
    spec = generation(prefix="x = compute(1)", speculative=True)
    streams.add(main)
    streams.add(spec)
    assert streams.find("u", "x = comp", "\n") == (main, "comp")  # typing along; the speculation waits
    assert spec.live
    assert streams.find("u", "x = compute(1)", "\n") == (spec, "")  # accepted: the speculation
    assert streams.find("u", "x = y", "\n") is None  # diverged from both
    assert spec.cancelled
    assert streams.find("other", "x = ", "\n") is None


def test_identical_live_requests_are_shared_until_they_end():
    streams = Streams()
    g = generation()
    streams.add(g)
    assert streams.sharing(g.request) is g
    streams.ended(g)
    assert streams.sharing(g.request) is None


async def test_aclose_cancels_and_awaits_every_task():
    streams = Streams()
    g = generation()
    streams.add(g)
    g.task = asyncio.ensure_future(asyncio.sleep(30))
    await streams.aclose()
    assert g.task.cancelled() and list(streams) == []
