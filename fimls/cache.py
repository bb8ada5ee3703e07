"""Completion reuse: an LRU+TTL cache, typing-through memory, and shared in-flight calls."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import attrs
from cachetools import TLRUCache

T = TypeVar("T")


class CompletionCache(Generic[T]):
    """Results keyed by the exact request, least recently used first out, each with a TTL."""

    def __init__(self, size: int, ttl: float, timer: Callable[[], float] | None = None) -> None:
        self._ttl = ttl
        self._cache: TLRUCache[Hashable, T] | None = None
        if size > 0:
            if timer is None:
                self._cache = TLRUCache(maxsize=size, ttu=self._expiry)
            else:
                self._cache = TLRUCache(maxsize=size, ttu=self._expiry, timer=timer)

    def _expiry(self, _key: Hashable, _value: T, now: float) -> float:
        return now + self._ttl

    def get(self, key: Hashable) -> T | None:
        """The cached value, or ``None``."""
        return None if self._cache is None else self._cache.get(key)

    def put(self, key: Hashable, value: T) -> None:
        """Remember ``value`` for ``key``."""
        if self._cache is not None:
            self._cache[key] = value

    def __len__(self) -> int:
        if self._cache is None:
            return 0
        self._cache.expire()
        return len(self._cache)

    def clear(self) -> None:
        """Forget everything."""
        if self._cache is not None:
            self._cache.clear()


@attrs.frozen
class Shown:
    """A suggestion last offered for a document."""

    prefix: str
    suffix: str
    text: str


class TypingThrough:
    """Serve the rest of a shown suggestion while the user types its beginning."""

    def __init__(self, max_documents: int = 64) -> None:
        self._shown: dict[str, Shown] = {}
        self._max = max_documents

    def remember(self, uri: str, prefix: str, suffix: str, text: str) -> None:
        """Record what was offered at ``prefix``/``suffix``."""
        self._shown.pop(uri, None)
        if len(self._shown) >= self._max:
            self._shown.pop(next(iter(self._shown)))
        self._shown[uri] = Shown(prefix, suffix, text)

    def forget(self, uri: str) -> None:
        """Drop the memory of ``uri``."""
        self._shown.pop(uri, None)

    def lookup(self, uri: str, prefix: str, suffix: str) -> str | None:
        """The remainder of the shown suggestion if the user typed along it."""
        shown = self._shown.get(uri)
        if shown is None or suffix != shown.suffix or not prefix.startswith(shown.prefix):
            return None
        typed = prefix[len(shown.prefix) :]
        if not shown.text.startswith(typed) or len(typed) >= len(shown.text):
            return None
        rest = shown.text[len(typed) :]
        if not rest.strip():
            return None
        return rest


@attrs.define
class _Flight(Generic[T]):
    task: asyncio.Task[T]
    waiters: int = 0


class Flights(Generic[T]):
    """Identical requests in flight at once share one call.

    The call is cancelled when its last waiter leaves (superseded or cancelled).
    """

    def __init__(self) -> None:
        self._flights: dict[Hashable, _Flight[T]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._flights

    async def join(
        self,
        key: Hashable,
        start: Callable[[], Awaitable[T]],
        abandon: asyncio.Future[None] | None = None,
    ) -> tuple[bool, T | None]:
        """Await the shared call for ``key``, starting it if needed.

        Returns ``(True, result)``, or ``(False, None)`` when ``abandon`` resolved first.
        Exceptions of the call propagate to every waiter.
        """
        flight = self._flights.get(key)
        if flight is None:
            task: asyncio.Task[T] = asyncio.ensure_future(start())
            flight = _Flight(task)
            self._flights[key] = flight
            task.add_done_callback(functools.partial(self._done, key, flight))
        flight.waiters += 1
        try:
            waitables: set[asyncio.Future[object]] = {flight.task}  # type: ignore[arg-type]
            if abandon is not None:
                waitables.add(abandon)  # type: ignore[arg-type]
            await asyncio.wait(waitables, return_when=asyncio.FIRST_COMPLETED)
            if flight.task.done():
                return True, flight.task.result()
            return False, None
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():
                flight.task.cancel()
                self._flights.pop(key, None)

    def _done(self, key: Hashable, flight: _Flight[T], _task: object) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not flight.task.cancelled():
            flight.task.exception()  # mark retrieved; waiters re-raise it
