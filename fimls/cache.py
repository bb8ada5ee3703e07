"""Completion reuse: generations still streaming or finished, and a TTL cache of finished answers.

A :class:`Generation` is one backend answer, read in the background into memory. A later
request whose text before the cursor extends the generation's prompt by text the answer also
starts with (the person accepted part of it, or typed along) is served from that memory,
with no new request. :class:`Streams` keeps a few generations per document, at most one
live main and one live speculative stream each.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

from cachetools import TTLCache

from fimls.backends import BackendError, FimRequest, Finish
from fimls.prompt import Plan

T = TypeVar("T")
KEEP_PER_DOCUMENT = 8
"""Generations remembered per document for serving typed-along text."""


class CompletionCache(Generic[T]):
    """Results keyed by the exact request, least recently used first out, each with a TTL."""

    def __init__(self, size: int, ttl: float, timer: Callable[[], float] = time.monotonic) -> None:
        self._cache: TTLCache[Hashable, T] | None = (
            TTLCache(maxsize=size, ttl=ttl, timer=timer) if size > 0 else None
        )

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


class Generation:
    """One backend answer for one prompt, its text growing as it streams in."""

    def __init__(
        self, uri: str, request: FimRequest, plan: Plan, line_prefix: str, *, speculative: bool = False
    ) -> None:
        self.uri = uri
        self.request = request
        self.plan = plan
        self.line_prefix = line_prefix
        """The cursor line before the cursor when asked (for the scope of a multi-line answer)."""
        self.speculative = speculative
        self.served = False
        """Whether any request was answered from it (for speculative ones: a hit)."""
        self.text = ""
        self.started = time.monotonic()
        self.first_token_at: float | None = None
        self.finish: Finish | None = None
        self.error: BackendError | None = None
        self.cancelled = False
        self.task: asyncio.Task[None] | None = None
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def done(self) -> bool:
        """Whether no more text will come."""
        return self.finish is not None or self.error is not None or self.cancelled

    @property
    def live(self) -> bool:
        """Whether it is still streaming."""
        return not self.done

    def feed(self, piece: str) -> None:
        """Append text that arrived."""
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
        self.text += piece
        self._wake()

    def end(self, finish: Finish | None = None, error: BackendError | None = None) -> None:
        """No more text: finished, failed or (with neither) cancelled."""
        self.finish, self.error = finish, error
        self.cancelled = finish is None and error is None
        self._wake()

    def cancel(self) -> None:
        """Stop streaming (closing the connection's stream)."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
        elif not self.done:
            self.end()

    async def changed(self, timeout: float | None, also: asyncio.Future[None] | None = None) -> None:
        """Wait until more text arrives, the generation ends, ``also`` resolves, or ``timeout``
        seconds pass."""
        if self.done:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait(
                (waiter,) if also is None else (waiter, also),
                timeout=timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def typed(self, prefix: str, suffix: str) -> str | None:
        """What was typed since this prompt, if a cursor at ``prefix``/``suffix`` may follow it.

        ``None`` when the text around the cursor diverged: another suffix, a prefix that does
        not extend this prompt, or typed text the answer does not start with.
        """
        if suffix != self.request.suffix or not prefix.startswith(self.request.prefix):
            return None
        typed = prefix[len(self.request.prefix) :]
        known = min(len(typed), len(self.text))
        if typed[:known] != self.text[:known] or (self.done and len(typed) > len(self.text)):
            return None
        return typed

    def ahead(self, prefix: str, suffix: str) -> bool:
        """Whether this (speculative) prompt may still become the text before the cursor."""
        return suffix == self.request.suffix and self.request.prefix.startswith(prefix)


class Streams:
    """The generations of each document: a few recent ones, at most one live main and one live
    speculative stream per document, and live ones shared between identical requests."""

    def __init__(self, keep: int = KEEP_PER_DOCUMENT) -> None:
        self._keep = keep
        self._docs: dict[str, list[Generation]] = {}
        self._live: dict[FimRequest, Generation] = {}

    def __iter__(self) -> Iterator[Generation]:
        for generations in self._docs.values():
            yield from generations

    def live(self) -> int:
        """Generations still streaming."""
        return sum(g.live for g in self)

    def find(self, uri: str, prefix: str, suffix: str) -> tuple[Generation, str] | None:
        """The newest generation of ``uri`` the cursor may be served from, and what was typed.

        Live speculative streams the text has diverged from are cancelled on the way.
        """
        found: tuple[Generation, str] | None = None
        for generation in self._docs.get(uri, ()):
            typed = generation.typed(prefix, suffix)
            if typed is not None:
                if found is None and not (generation.done and not generation.text):
                    found = generation, typed
            elif generation.speculative and generation.live and not generation.ahead(prefix, suffix):
                generation.cancel()
        return found

    def sharing(self, request: FimRequest) -> Generation | None:
        """A live generation for exactly ``request`` (from any document)."""
        generation = self._live.get(request)
        return generation if generation is not None and generation.live else None

    def add(self, generation: Generation, *, alongside: bool = False) -> None:
        """Keep ``generation``; the document's previous live stream of its kind is cancelled,
        unless it runs ``alongside`` (another suggestion for the same request)."""
        generations = self._docs.setdefault(generation.uri, [])
        for old in generations:
            if old.live and old.speculative == generation.speculative and not alongside:
                old.cancel()
        generations.insert(0, generation)
        for old in generations[self._keep :]:
            old.cancel()
        del generations[self._keep :]
        self._live[generation.request] = generation

    def ended(self, generation: Generation) -> None:
        """Forget ``generation`` as shareable once it has ended."""
        if self._live.get(generation.request) is generation:
            del self._live[generation.request]

    def forget(self, uri: str) -> None:
        """Cancel and drop every generation of ``uri``."""
        for generation in self._docs.pop(uri, []):
            generation.cancel()

    async def aclose(self) -> None:
        """Cancel every live generation and wait for their tasks to end."""
        tasks = [g.task for g in self if g.task is not None and not g.task.done()]
        for generation in self:
            generation.cancel()
        self._docs.clear()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
