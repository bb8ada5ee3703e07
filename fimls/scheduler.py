"""Debounce and supersession: per document, the newest completion request wins."""

from __future__ import annotations

import asyncio
import time

SPIN = 0.0015
"""Seconds before a debounce deadline from which the wait polls instead of sleeping."""


class Ticket:
    """One request's claim on its document (implements the engine's ``Gate``)."""

    def __init__(self, delay: float, since: float | None = None) -> None:
        self.delay = delay
        # time.monotonic, not loop.time(): some event loops count whole milliseconds.
        self.deadline = (time.monotonic() if since is None else since) + delay
        self.abandoned: asyncio.Future[None] | None = asyncio.get_running_loop().create_future()

    @property
    def superseded(self) -> bool:
        """Whether a newer request for the same document took over."""
        return self.abandoned is not None and self.abandoned.done()

    def supersede(self) -> None:
        """Tell this request to give up at once."""
        if self.abandoned is not None and not self.abandoned.done():
            self.abandoned.set_result(None)

    async def wait(self) -> bool:
        """Wait out the debounce; returns ``False`` as soon as the ticket is superseded."""
        if self.superseded:
            return False
        left = self.deadline - time.monotonic()
        if left <= 0 or self.abandoned is None:
            return True
        # The event loop's timers wake up to 1 ms late (epoll counts whole milliseconds), so
        # sleep to just before the deadline and yield to the loop for the last stretch.
        if left > SPIN:
            await asyncio.wait((self.abandoned,), timeout=left - SPIN)
        while not self.superseded and time.monotonic() < self.deadline:
            await asyncio.sleep(0)
        return not self.superseded


class Scheduler:
    """Hands out tickets; a new ticket for a document supersedes the previous one of its kind.

    Inline and classic requests are separate lines, so an editor that sends both for
    one keystroke gets both answered (and they share one backend call).
    """

    def __init__(self) -> None:
        self._current: dict[tuple[str, str], Ticket] = {}

    def claim(self, uri: str, delay: float, kind: str = "inline", since: float | None = None) -> Ticket:
        """A ticket for a new request on ``uri``, superseding any older one of ``kind``.

        The debounce runs from ``since`` (when the request arrived, by ``time.monotonic``),
        so time spent reading and dispatching it is not added on top.
        """
        old = self._current.get((uri, kind))
        if old is not None:
            old.supersede()
        ticket = Ticket(delay, since)
        self._current[uri, kind] = ticket
        return ticket

    def release(self, uri: str, ticket: Ticket, kind: str = "inline") -> None:
        """Forget ``ticket`` once its request is answered."""
        if self._current.get((uri, kind)) is ticket:
            del self._current[uri, kind]

    def supersede_all(self, uri: str | None = None) -> None:
        """Give up waiting requests (for ``uri``, or everywhere)."""
        for (key, _kind), ticket in list(self._current.items()):
            if uri is None or key == uri:
                ticket.supersede()

    def __len__(self) -> int:
        return len(self._current)
