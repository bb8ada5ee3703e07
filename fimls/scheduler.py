"""When to ask: an adaptive debounce learnt from the typing rhythm, and supersession per document.

The rhythm model keeps the recent intervals between keystrokes (pauses left out). After a
keystroke fimls waits just long enough to see whether typing goes on: a little more than the
person's usual longest gap between keys, never more than ``debounceMs``. Where a pause is
likely it asks at once: after Enter, at the end of a statement, and after a keystroke that ends
a word when the person types slowly.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import deque

import attrs

PAUSE = 1.0
"""Seconds between keystrokes from which the gap is a pause, not part of the rhythm."""
SAMPLES = 64
"""Intervals the rhythm model keeps."""
MIN_SAMPLES = 8
"""Intervals needed before the model is trusted (until then the wait is ``debounceMs``)."""
MARGIN = 1.25
"""How much longer than the usual longest gap between keys to wait."""
MIN_WAIT = 0.03
SLOW = 0.3
"""A typical gap between keys above this (in seconds) is slow typing."""
STATEMENT_ENDS = (";", "{", "}", ":")


class Rhythm:
    """The person's typing rhythm: recent intervals between keystrokes, pauses left out."""

    def __init__(self, samples: int = SAMPLES) -> None:
        self._intervals: deque[float] = deque(maxlen=samples)
        self._last: float | None = None

    def keystroke(self, at: float) -> None:
        """Note a keystroke that arrived at ``at`` (``time.monotonic``)."""
        if self._last is not None and 0 < at - self._last < PAUSE:
            self._intervals.append(at - self._last)
        self._last = at

    def usual_gap(self) -> float | None:
        """The 90th percentile of recent intervals; ``None`` while there are too few."""
        if len(self._intervals) < MIN_SAMPLES:
            return None
        return statistics.quantiles(self._intervals, n=10, method="inclusive")[-1]

    def typical(self) -> float | None:
        """The median interval; ``None`` while there are too few."""
        if len(self._intervals) < MIN_SAMPLES:
            return None
        return statistics.median(self._intervals)


@attrs.frozen
class Keystroke:
    """The last edit of a document: what it inserted, and when it arrived."""

    inserted: str
    at: float


def debounce(
    keystroke: Keystroke | None, line_prefix: str, line_suffix: str, rhythm: Rhythm, upper: float
) -> float:
    """Seconds to wait after ``keystroke`` before asking, at most ``upper``."""
    if keystroke is None:
        return upper
    inserted = keystroke.inserted
    at_line_end = not line_suffix.strip() or all(ch in ")]}>\"'`;," for ch in line_suffix.strip())
    if "\n" in inserted and at_line_end:
        return 0.0
    typed = line_prefix.rstrip()
    if (
        at_line_end
        and inserted.strip()
        and typed.endswith(STATEMENT_ENDS)
        and inserted.rstrip()[-1:] == typed[-1:]
    ):
        return 0.0
    gap = rhythm.usual_gap()
    if gap is None:
        return upper
    typical = rhythm.typical()
    ended_word = bool(inserted) and not (inserted[-1].isalnum() or inserted[-1] == "_")
    if ended_word and typical is not None and typical >= SLOW:
        return 0.0
    return min(upper, max(MIN_WAIT, gap * MARGIN))


class Ticket:
    """One request's claim on its document (implements the engine's ``Gate``)."""

    def __init__(self, delay: float, since: float | None = None) -> None:
        self.delay = delay
        self.deadline = (time.monotonic() if since is None else since) + delay
        self.abandoned: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def superseded(self) -> bool:
        """Whether a newer request for the same document took over."""
        return self.abandoned.done()

    def supersede(self) -> None:
        """Tell this request to give up at once."""
        if not self.abandoned.done():
            self.abandoned.set_result(None)

    async def wait(self) -> bool:
        """Wait out the debounce; returns ``False`` as soon as the ticket is superseded."""
        left = self.deadline - time.monotonic()
        if left > 0 and not self.superseded:
            await asyncio.wait((self.abandoned,), timeout=left)
        return not self.superseded


class Scheduler:
    """Hands out tickets; a new ticket for a document supersedes the previous one of its kind.

    Inline and classic requests are separate lines, so an editor that sends both for
    one keystroke gets both answered (and they share one backend call).
    """

    def __init__(self) -> None:
        self._current: dict[tuple[str, str], Ticket] = {}
        self.rhythm = Rhythm()
        self.keystrokes: dict[str, Keystroke] = {}

    def keystroke(self, uri: str, inserted: str, at: float | None = None) -> None:
        """Note an edit of ``uri`` (``inserted`` is the text it inserted, empty for a deletion)."""
        at = time.monotonic() if at is None else at
        self.rhythm.keystroke(at)
        self.keystrokes[uri] = Keystroke(inserted, at)

    def forget(self, uri: str) -> None:
        """Drop what is known about ``uri`` and give up its waiting requests."""
        self.keystrokes.pop(uri, None)
        self.supersede_all(uri)

    def claim(self, uri: str, delay: float, kind: str = "inline") -> Ticket:
        """A ticket for a new request on ``uri``, superseding any older one of ``kind``.

        The wait runs from the document's last keystroke, so time spent reading and
        dispatching the request is not added on top.
        """
        old = self._current.get((uri, kind))
        if old is not None:
            old.supersede()
        last = self.keystrokes.get(uri)
        ticket = Ticket(delay, last.at if last is not None else None)
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
