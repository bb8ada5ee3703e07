"""The completion pipeline, independent of LSP: decide, reuse, wait, ask the backend, clean up.

Both the language server and ``fimls complete`` drive the same :class:`Engine`.

A backend answer streams in the background into a :class:`~fimls.cache.Generation`. A request
is answered as soon as something useful has arrived: in single-line mode the first line, in
multi-line mode the complete lines received so far (or, when a line is slow to finish, the
words so far). The stream goes on, bounded by ``max_tokens``, the deadline and one stream per
document, so accepting the suggestion or typing along it is served from memory. When an answer
is complete, fimls asks in the background for what follows it, as if it were accepted
(``prefetch``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import attrs

from fimls import prompt
from fimls.backends import (
    AuthError,
    Backend,
    BackendError,
    BalanceError,
    FimRequest,
    Finish,
    InsecureError,
    NetworkError,
    RequestError,
    build,
    resolve_key,
)
from fimls.cache import CompletionCache, Generation, Streams
from fimls.config import Settings
from fimls.document import Snapshot
from fimls.recovery import Recovery
from fimls.stats import Stats

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger(__name__)

FALLBACK_MODEL = "deepseek-chat"
EMPTY_FINISH = frozenset({"content_filter", "insufficient_system_resource"})
SLACK = 0.1
"""Seconds the engine's first-token limit trails the HTTP layer's, which can name the failure."""
MIN_TOKEN_RATE = 10.0
"""Tokens per second below which a stream that has started is given up."""
MIN_BUDGET = 0.2
"""Seconds an answer gets at least, however long resolving the model took."""
MIN_PARTIAL = 4
"""Characters a partial first line needs before it is worth showing."""
EXTRA_TEMPERATURE = 0.8
SCOPE_ENDED = "scope"
"""The finish reason of a stream fimls closed because the answer left the cursor's scope."""


class Gate(Protocol):
    """Scheduling hooks: the debounce, and the signal that a newer request took over."""

    abandoned: asyncio.Future[None]

    async def wait(self) -> bool:
        """Wait out the debounce; ``False`` if superseded meanwhile."""


@attrs.frozen
class Suggestion:
    """One completion for the cursor."""

    text: str
    """What to insert at the cursor (replacing ``replace`` code points after it)."""
    replace: int = 0
    source: str = "backend"


class Engine:
    """Turns snapshots into suggestions, reusing work wherever it can."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        on_error: Callable[[BackendError], None] | None = None,
        on_success: Callable[[], None] | None = None,
        on_resume: Callable[[str], None] | None = None,
    ) -> None:
        self._transport = transport
        self._on_error = on_error or (lambda _e: None)
        self._on_success = on_success or (lambda: None)
        self.recovery = Recovery(self._probe, on_resume or (lambda _m: None))
        self.stats = Stats()
        self.streams = Streams()
        self._closing: set[asyncio.Task[None]] = set()
        self._model_task: asyncio.Task[str] | None = None
        self.available_models: list[str] | None = None
        self.key_problem: str | None = None
        self._key: str | None = None
        self.settings = settings
        self.backend = self._new_backend(settings)
        self.cache: CompletionCache[str] = CompletionCache(settings.cache_size, settings.cache_ttl_seconds)

    def _new_backend(self, settings: Settings, key: tuple[str | None, str | None] | None = None) -> Backend:
        self._key, self.key_problem = resolve_key(settings) if key is None else key
        if self.key_problem:
            logger.warning("%s", self.key_problem)
        return build(settings, self._key, transport=self._transport, on_retry=self._count_retry)

    def _count_retry(self) -> None:
        self.stats.retries += 1

    def configure(self, settings: Settings) -> None:
        """Apply new settings; a new key, URL or model lifts any pause."""
        old = self.settings
        self.settings = settings
        backend_fields = (
            "backend",
            "base_url",
            "api_key",
            "api_key_env",
            "api_key_command",
            "max_retries",
            "allow_insecure_http",
            "template",
            "template_stop",
            "price_per_million_tokens",
            "routing_id",
        )
        if any(getattr(old, name) != getattr(settings, name) for name in backend_fields):
            self._retire(self.backend)
            self.backend = self._new_backend(settings)
            self._model_task = None
        if old.model != settings.model:
            self._model_task = None
        if (old.cache_size, old.cache_ttl_seconds) != (settings.cache_size, settings.cache_ttl_seconds):
            self.cache = CompletionCache(settings.cache_size, settings.cache_ttl_seconds)
        self.recovery.resume()

    async def aclose(self) -> None:
        """Close streams, HTTP connections and background work."""
        if self._model_task is not None and not self._model_task.done():
            self._model_task.cancel()
        await self.recovery.aclose()
        await self.streams.aclose()
        for task in list(self._closing):
            task.cancel()
        await self.backend.aclose()

    def _retire(self, backend: Backend) -> None:
        """Close a replaced backend: its streams end first (they read through it)."""
        for generation in self.streams:
            generation.cancel()

        async def close() -> None:
            await asyncio.sleep(0)  # let cancelled streams unwind
            await backend.aclose()

        task = asyncio.ensure_future(close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def forget(self, uri: str) -> None:
        """A document closed: stop and drop its streams."""
        self.streams.forget(uri)

    # -- model ---------------------------------------------------------------

    def start_model_resolution(self) -> asyncio.Task[str]:
        """Resolve the model in the background (once per configuration)."""
        if self._model_task is None or (self._model_task.done() and self._model_task.cancelled()):
            self._model_task = asyncio.ensure_future(self._resolve_model())
        return self._model_task

    async def model(self) -> str:
        """The model to use, resolving it from the backend's model list when not configured."""
        return await asyncio.shield(self.start_model_resolution())

    def resolved_model(self) -> str | None:
        """The model if known without waiting."""
        if self.settings.model:
            return self.settings.model
        task = self._model_task
        if task is not None and task.done() and not task.cancelled() and task.exception() is None:
            return task.result()
        return None

    async def _model_within(self, timeout: float) -> str:
        """The model, without letting a slow model list eat a request's deadline."""
        if self.settings.model:
            self.start_model_resolution()  # validates in the background
            return self.settings.model
        task = self.start_model_resolution()
        if task.done() and not task.cancelled() and task.exception() is None:
            return task.result()
        try:
            return await asyncio.wait_for(self.model(), timeout)
        except TimeoutError:
            logger.warning("listing models is slow; using %s for now", self._fallback_model)
            return self._fallback_model

    @property
    def _fallback_model(self) -> str:
        return self.backend.default_model or FALLBACK_MODEL

    async def _resolve_model(self) -> str:
        configured = self.settings.model
        if self.key_problem or self.backend.refusal:
            return configured or self._fallback_model
        try:
            self.available_models = await asyncio.wait_for(self.backend.models(), 10)
        except (BackendError, TimeoutError) as error:
            chosen = configured or self._fallback_model
            logger.warning("could not list models (%s); using %s", error or "timed out", chosen)
            return chosen
        if configured:
            if not self.backend.lists(configured, self.available_models):
                logger.warning(
                    "model %r is not listed by the backend (available: %s)",
                    configured,
                    ", ".join(self.available_models) or "none",
                )
            return configured
        chosen = self.backend.choose_model(self.available_models) or self._fallback_model
        logger.info("using model %s (available: %s)", chosen, ", ".join(self.available_models))
        return chosen

    # -- completion ----------------------------------------------------------

    @property
    def paused(self) -> bool:
        """Whether requests are held back after a fatal error or a ``Retry-After``."""
        return self.recovery.paused

    async def _probe(self, kind: str) -> bool | None:
        """Whether the condition behind a pause has cleared (see :mod:`fimls.recovery`)."""
        backend = self.backend
        if kind == "balance":
            balance = getattr(backend, "balance", None)
            return None if balance is None else bool((await balance()).is_available)
        if kind == "auth":
            if not self.settings.api_key_command:
                return None
            found = await asyncio.to_thread(resolve_key, self.settings)
            if found[0] is None or found[0] == self._key:
                return False
            self._retire(backend)
            self.backend = self._new_backend(self.settings, found)
            return True
        if kind == "model":
            self._model_task = None
            model = await self.model()
            return self.available_models is not None and model in self.available_models
        return None

    async def resume_now(self) -> bool:
        """Retry at once (``fimls.resume``); ``True`` when requests flow again."""
        return await self.recovery.retry_now()

    def request_for(
        self, snap: Snapshot, prefix: str, suffix: str, plan: prompt.Plan, line_prefix: str, model: str
    ) -> FimRequest:
        """The FIM request for a cursor (also the cache key)."""
        s = self.settings
        single = plan.mode is prompt.Mode.SINGLE
        return FimRequest(
            model=model,
            prefix=prefix,
            suffix=suffix,
            max_tokens=s.max_tokens_single_line if single else s.max_tokens,
            stop=prompt.stop_sequences(plan.mode, line_prefix, snap.language_id),
            temperature=s.temperature,
            top_p=s.top_p,
            stream=s.stream,
            context=snap.context,
            language_id=snap.language_id,
            path=snap.path,
            repo=snap.repo,
        )

    def _blocked(self) -> bool:
        if self.paused:
            return True
        if self.backend.refusal:
            self._on_error(InsecureError(self.backend.refusal))
            return True
        if self.key_problem:
            self._on_error(AuthError(self.key_problem))
            return True
        return False

    async def complete(self, snap: Snapshot, gate: Gate | None = None) -> list[Suggestion]:
        """Suggestions for the cursor in ``snap``; empty when there is nothing to offer."""
        plan = prompt.plan(snap.line_prefix, snap.line_suffix, self.settings.multiline)
        if plan is None:
            self.stats.skipped += 1
            return []
        timeout = self.settings.timeout_ms / 1000
        found = self.streams.find(snap.uri, snap.prefix, snap.suffix)
        ctx = prompt.Context(snap.line_prefix, snap.line_suffix, snap.suffix, plan.mode)
        if found is not None:
            generation, typed = found
            served = await self._serve(generation, typed, ctx, gate, time.monotonic() + timeout)
            if served is not None:
                self.stats.typing_through_hits += 1
                if generation.speculative and not generation.served:
                    self.stats.speculative_hits += 1
                generation.served = True
                return self._suggest(snap, plan, generation, [served])
        if self._blocked():
            return []
        if gate is not None and not await gate.wait():
            self.stats.superseded += 1
            return []
        started = time.monotonic()
        model = await self._model_within(timeout)
        base = self.request_for(snap, snap.prefix, snap.suffix, plan, snap.line_prefix, model)
        requests = [base] + [
            attrs.evolve(base, temperature=max(base.temperature, EXTRA_TEMPERATURE), top_p=0.95 - 0.05 * i)
            for i in range(self.settings.num_suggestions - 1)
        ]
        cached = [self.cache.get(request) for request in requests]
        if all(text is not None for text in cached):
            self.stats.cache_hits += 1
            texts = [prompt.postprocess(text or "", ctx) for text in cached]
            return self._suggest(snap, plan, None, texts)
        # The model list may have taken part of the time; the answer still has a fair chance.
        deadline = max(started + timeout, time.monotonic() + MIN_BUDGET)
        generations = [
            self._start(snap.uri, request, plan, snap.line_prefix, alongside=i > 0, deadline=deadline)
            for i, request in enumerate(requests)
        ]
        texts = list(await asyncio.gather(*(self._serve(g, "", ctx, gate, deadline) for g in generations)))
        if gate is not None and gate.abandoned.done():
            self.stats.superseded += 1
            return []
        for generation, text in zip(generations, texts, strict=True):
            if text and generation.live:
                self.stats.early_answers += 1
        return self._suggest(snap, plan, generations[0], texts)

    def _suggest(
        self, snap: Snapshot, plan: prompt.Plan, source: Generation | None, texts: list[str | None]
    ) -> list[Suggestion]:
        suggestions: list[Suggestion] = []
        for text in texts:
            if text and all(text != s.text for s in suggestions):
                suggestions.append(Suggestion(text, plan.replace))
        # What follows an answer that left the cursor's scope lies outside it too: not worth asking.
        finish = source.finish if source is not None else None
        if suggestions and finish is not None and finish.reason != SCOPE_ENDED:
            self._prefetch(snap, suggestions[0])
        return suggestions

    async def _serve(
        self, generation: Generation, typed: str, ctx: prompt.Context, gate: Gate | None, deadline: float
    ) -> str | None:
        """What ``generation`` offers the cursor once something useful has arrived.

        ``None`` when it offers nothing: it ended without anything useful, failed, diverged
        from the typed text, or the request was given up (superseded, ``deadline`` passed).
        """
        budget = self.settings.early_answer_ms / 1000
        while True:
            if generation.text[: len(typed)] != typed[: len(generation.text)]:
                return None
            remainder = generation.text[len(typed) :]
            # The budget runs from the first token: along an answer that has streamed for a while
            # (after accepting part of it, say), the words so far are shown at once.
            first = generation.first_token_at
            budget_ends = None if first is None else first + budget
            budget_over = budget_ends is not None and time.monotonic() >= budget_ends
            useful = self._useful(remainder, generation, ctx, budget_over)
            if useful is not None or generation.done:
                return useful or None
            now = time.monotonic()
            if now >= deadline or (gate is not None and gate.abandoned.done()):
                return None
            wake = deadline
            if budget_ends is not None and not budget_over:
                wake = min(wake, budget_ends)
            await generation.changed(max(wake - now, 0.0), gate.abandoned if gate is not None else None)

    def _useful(
        self, remainder: str, generation: Generation, ctx: prompt.Context, budget_over: bool
    ) -> str | None:
        """The suggestion ``remainder`` makes now; ``None`` to wait for more (``""``: nothing)."""
        if generation.finish is not None:
            return prompt.postprocess(remainder, ctx) or ""
        lines_end = remainder.rfind("\n")
        complete = remainder[: max(lines_end, 0)]
        if generation.done:  # failed or cancelled midway: only its complete lines can be trusted
            return (prompt.postprocess(complete, ctx) if complete.strip() else None) or ""
        if ctx.mode is prompt.Mode.SINGLE:
            return prompt.postprocess(remainder, ctx) or "" if lines_end >= 0 else None
        if not self.settings.early_answer:
            if lines_end >= 0 and prompt.is_complete(remainder, ctx.mode, ctx.line_prefix):
                return prompt.postprocess(remainder, ctx) or ""
            return None
        if complete.strip():
            return prompt.postprocess(complete, ctx)
        if budget_over:
            # The first line is slow to finish: show the words so far rather than nothing.
            words = remainder[: max(remainder.rfind(" "), 0)]
            if len(words.strip()) >= MIN_PARTIAL:
                return prompt.postprocess(words, ctx)
        return None

    # -- streams --------------------------------------------------------------

    def _start(
        self,
        uri: str,
        request: FimRequest,
        plan: prompt.Plan,
        line_prefix: str,
        *,
        speculative: bool = False,
        alongside: bool = False,
        deadline: float | None = None,
    ) -> Generation:
        shared = self.streams.sharing(request)
        if shared is not None:
            self.stats.shared_in_flight += 1
            return shared
        generation = Generation(uri, request, plan, line_prefix, speculative=speculative)
        logger.debug(
            "asking%s (%s) after %r", " ahead" if speculative else "", plan.mode.value, request.prefix[-40:]
        )
        self.streams.add(generation, alongside=alongside)
        if deadline is None:
            deadline = generation.started + self.settings.timeout_ms / 1000
        generation.task = asyncio.ensure_future(self._run(generation, deadline))
        return generation

    async def _run(self, generation: Generation, deadline: float) -> None:
        """Read the backend's answer into ``generation`` until it ends or is no longer needed.

        The first token must come by ``deadline``; then the stream may go on as long as
        ``max_tokens`` takes at :data:`MIN_TOKEN_RATE`.
        """
        request = generation.request
        if generation.speculative:
            self.stats.speculative_requests += 1
        else:
            self.stats.requests_sent += 1
        timeout = self.settings.timeout_ms / 1000
        finish: Finish | None = None
        try:
            async with asyncio.timeout(deadline - time.monotonic() + SLACK) as limit:
                events = self.backend.generate(request, deadline)
                async with contextlib.aclosing(events):
                    async for event in events:
                        if isinstance(event, Finish):
                            finish = event
                            break
                        if generation.first_token_at is None:
                            loop = asyncio.get_running_loop()
                            limit.reschedule(loop.time() + timeout + request.max_tokens / MIN_TOKEN_RATE)
                        generation.feed(event)
                        # What is kept can only change when a line is complete.
                        mode, line_prefix = generation.plan.mode, generation.line_prefix
                        if "\n" in event and prompt.is_complete(generation.text, mode, line_prefix):
                            finish = Finish(SCOPE_ENDED)
                            break
        except TimeoutError:
            said = (
                "stopped answering mid-stream" if generation.text else f"did not answer within {timeout:g} s"
            )
            self._ended(generation, error=NetworkError(f"{self.backend.label} {said}"))
        except BackendError as error:
            self._ended(generation, error=error)
        except asyncio.CancelledError:
            self.stats.streams_cancelled += 1
            self._ended(generation)
            raise
        else:
            self._ended(generation, finish=finish)

    def _ended(
        self, generation: Generation, *, finish: Finish | None = None, error: BackendError | None = None
    ) -> None:
        self.streams.ended(generation)
        logger.debug(
            "stream%s after %r ended (%s), %d characters, %s",
            " ahead" if generation.speculative else "",
            generation.request.prefix[-40:],
            finish.reason if finish else error or "cancelled",
            len(generation.text),
            "used" if generation.served else "not used yet",
        )
        if error is not None:
            generation.end(error=error)
            self._failed(error)
            return
        if finish is None:
            if not generation.done:
                generation.end()  # cancelled
            return
        self.stats.responses += 1
        self.recovery.succeeded()
        if finish.usage is not None:
            cost = self.stats.add_usage(finish.usage, self.backend.price(generation.request.model))
            if generation.speculative:
                self.stats.speculative_cost_usd += cost
        self._on_success()
        if finish.reason in EMPTY_FINISH:
            logger.info("the backend finished with %s; nothing to show", finish.reason)
            generation.text = ""
        else:
            self.cache.put(generation.request, generation.text)
        generation.end(finish=finish)

    def _prefetch(self, snap: Snapshot, suggestion: Suggestion) -> None:
        """Ask for what follows ``suggestion``, as if it were accepted."""
        model = self.resolved_model()
        if not self.settings.prefetch or model is None or self.paused:
            return
        inserted = suggestion.text + snap.line_suffix[: suggestion.replace]
        prefix = snap.prefix + inserted
        suffix = snap.suffix[suggestion.replace :]
        line_prefix = (snap.line_prefix + inserted).rpartition("\n")[2]
        plan = prompt.plan(line_prefix, snap.line_suffix[suggestion.replace :], self.settings.multiline)
        if plan is None:
            return
        found = self.streams.find(snap.uri, prefix, suffix)
        if found is not None and (found[0].live or found[1] == ""):
            return  # what follows is still arriving, or was asked for at exactly this place
        request = self.request_for(snap, prefix, suffix, plan, line_prefix, model)
        if self.cache.get(request) is None:
            self._start(
                snap.uri, attrs.evolve(request, speculative=True), plan, line_prefix, speculative=True
            )

    def _failed(self, error: BackendError) -> None:
        self.stats.record_error(str(error))
        logger.warning("%s", error)
        if isinstance(error, BalanceError):
            self.recovery.hold("balance", str(error))
        elif isinstance(error, AuthError):
            self.recovery.hold("auth", str(error))
        elif isinstance(error, RequestError) and error.model_missing:
            self.recovery.hold("model", str(error))
            if not self.settings.model:
                self._model_task = None  # the auto choice went stale: ask for the model list again
        elif error.retry_after:
            self.recovery.wait(str(error), error.retry_after)
        self._on_error(error)

    # -- status --------------------------------------------------------------

    def status(self) -> dict[str, object]:
        """Everything ``fimls.status`` reports (never the key)."""
        return {
            "model": self.resolved_model(),
            "backend": self.backend.name,
            "baseUrl": self.backend.url,
            "apiKey": "set" if self.backend.has_key else "missing",
            **self.recovery.status(),
            "cacheEntries": len(self.cache),
            "inFlight": self.streams.live(),
            **self.stats.as_dict(),
        }
