"""Rate-limited user-facing messages: one per condition, not one per keystroke."""

from __future__ import annotations

import time
from collections.abc import Callable


class Notices:
    """Shows a message for a condition once, then again only after ``interval`` seconds
    or after the condition cleared (see :meth:`clear`)."""

    def __init__(
        self,
        show: Callable[[str, str], None],
        interval: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._show = show
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._sticky: set[str] = set()

    def notify(self, condition: str, message: str, level: str = "error", *, sticky: bool = False) -> bool:
        """Show ``message`` unless ``condition`` was shown recently; returns whether shown.

        A ``sticky`` condition is shown once per session: :meth:`clear` without a name keeps it.
        """
        now = self._clock()
        last = self._last.get(condition)
        if last is not None and (condition in self._sticky or now - last < self._interval):
            return False
        self._last[condition] = now
        if sticky:
            self._sticky.add(condition)
        self._show(level, message)
        return True

    def clear(self, condition: str | None = None) -> None:
        """Forget a condition (or all but the sticky ones), so its next occurrence is shown again."""
        if condition is None:
            self._last = {name: at for name, at in self._last.items() if name in self._sticky}
        else:
            self._last.pop(condition, None)
            self._sticky.discard(condition)
