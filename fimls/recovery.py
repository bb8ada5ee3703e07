"""Pauses after fatal backend answers, and getting out of them without a restart.

After 402 (balance), 401 (key) or an unknown model, requests stop. fimls then probes on a
backoff that starts near 30 s: for a balance it asks the free balance endpoint, for a key it
re-runs ``apiKeyCommand`` and resumes as soon as the key differs, for a model it lists the
models again. A probe that cannot tell lets the next request through when the backoff ends:
that request is the probe. The first success after a pause is announced once. A rate limit
with ``Retry-After`` pauses for that long, silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

logger = logging.getLogger(__name__)

BACKOFF = (30.0, 60.0, 120.0, 240.0, 300.0)
"""Seconds before each successive probe of the same condition."""

Probe = Callable[[str], Awaitable[bool | None]]
"""Checks a condition (``balance``, ``auth``, ``model``): ``True`` recovered, ``False`` not yet,
``None`` cannot tell (the next request will)."""


@attrs.define
class Pause:
    """Why requests are held back, and until when."""

    kind: str
    reason: str
    until: float
    attempt: int = 0
    fatal: bool = True


class Recovery:
    """The pause state of one engine and the background probe that ends it."""

    def __init__(
        self,
        probe: Probe,
        on_resume: Callable[[str], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self._probe = probe
        self._on_resume = on_resume
        self._clock = clock
        self._sleep = sleep
        self.pause: Pause | None = None
        self._task: asyncio.Task[None] | None = None
        self._announce: str | None = None

    @property
    def paused(self) -> bool:
        """Whether requests are held back now."""
        return self.pause is not None and self._clock() < self.pause.until

    def hold(self, kind: str, reason: str) -> None:
        """Stop requests after a fatal answer, and probe on the backoff until it clears."""
        attempt = self.pause.attempt + 1 if self.pause is not None and self.pause.kind == kind else 0
        delay = BACKOFF[min(attempt, len(BACKOFF) - 1)]
        self.pause = Pause(kind, reason, self._clock() + delay, attempt)
        self._announce = kind
        self._cancel_task()
        self._task = asyncio.ensure_future(self._probe_later(delay))

    def wait(self, reason: str, seconds: float) -> None:
        """Hold requests for ``seconds`` (a ``Retry-After``), with no probe and no announcement."""
        self.pause = Pause("rate-limit", reason, self._clock() + seconds, fatal=False)

    async def _probe_later(self, delay: float) -> None:
        await self._sleep(delay)
        await self._try()

    async def _try(self) -> bool:
        pause = self.pause
        if pause is None:
            return True
        try:
            recovered = await self._probe(pause.kind)
        except Exception as error:  # a probe that fails is "not yet"
            logger.info("probe for %s failed: %s", pause.kind, error)
            recovered = False
        if self.pause is not pause:
            return self.pause is None  # settings changed meanwhile
        if recovered:
            self.resume(f"fimls: {self._what(pause.kind)}; requests resume")
            return True
        if recovered is None:
            pause.until = self._clock()  # the next request finds out
            return False
        self.hold(pause.kind, pause.reason)
        return False

    @staticmethod
    def _what(kind: str) -> str:
        return {
            "balance": "the account has balance again",
            "auth": "a new API key",
            "model": "the model is available again",
        }.get(kind, f"{kind} cleared")

    async def retry_now(self) -> bool:
        """Probe at once (the ``fimls.resume`` command); ``True`` when nothing holds requests back."""
        if self.pause is None:
            return True
        self._cancel_task()
        if self.pause.fatal:
            if await self._try():
                return True
            if self.pause is not None and self.pause.until > self._clock():
                return False
        self.pause = None
        return True

    def resume(self, message: str | None = None) -> None:
        """Lift the pause (settings changed, or a probe succeeded); announce it once."""
        self._cancel_task()
        self.pause = None
        self._announce = None
        if message:
            self._on_resume(message)

    def succeeded(self) -> None:
        """A request worked: if it ended a fatal pause, say so once."""
        if self._announce is not None and not self.paused:
            kind, self._announce = self._announce, None
            self.pause = None
            self._on_resume(f"fimls: {self._what(kind)}; requests resume")

    def status(self) -> dict[str, Any]:
        """``paused`` (the reason, or ``null``) and ``nextTryInSeconds``."""
        if not self.paused or self.pause is None:
            return {"paused": None, "nextTryInSeconds": None}
        return {"paused": self.pause.reason, "nextTryInSeconds": round(self.pause.until - self._clock(), 1)}

    def _cancel_task(self) -> None:
        if self._task is not None and not self._task.done() and self._task is not _current_task():
            self._task.cancel()
        self._task = None

    async def aclose(self) -> None:
        """Stop probing."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None
