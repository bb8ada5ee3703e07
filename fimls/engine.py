"""The completion pipeline, independent of LSP: decide, reuse, ask DeepSeek, clean up.

Both the language server and ``fimls complete`` drive the same :class:`Engine`.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import subprocess
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import attrs

from fimls import log, prompt
from fimls.backend import (
    AuthError,
    BackendError,
    BalanceError,
    DeepSeekClient,
    FimRequest,
    InsecureError,
    RequestError,
    public_url,
)
from fimls.cache import CompletionCache, Flights, TypingThrough
from fimls.config import Settings
from fimls.document import Snapshot
from fimls.stats import Stats

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger(__name__)

PREFERRED_MODELS = ("deepseek-flash", "deepseek-v4-flash", "deepseek-chat", "deepseek-coder")
"""Known FIM-capable, non-reasoning models, best first."""
FALLBACK_MODEL = "deepseek-chat"
PAUSE_SECONDS = 300.0
"""After 401, 402 or an unknown model, requests stop for this long or until settings change."""
MISSING_KEY = "no DeepSeek API key: set DEEPSEEK_API_KEY, apiKey or apiKeyCommand"
EMPTY_FINISH = frozenset({"content_filter", "insufficient_system_resource"})


class KeyCommandError(Exception):
    """``apiKeyCommand`` did not produce a key."""


def run_key_command(command: str, timeout: float = 15.0) -> str:
    """Run ``command`` (no shell) and return the first line it prints."""
    try:
        argv = shlex.split(command)
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise KeyCommandError(f"apiKeyCommand could not run: {type(exc).__name__}") from None
    if result.returncode != 0:
        raise KeyCommandError(f"apiKeyCommand failed with exit code {result.returncode}")
    key = result.stdout.strip().partition("\n")[0].strip()
    if not key:
        raise KeyCommandError("apiKeyCommand printed nothing")
    return key


class Gate(Protocol):
    """Scheduling hooks: the debounce, and the signal that a newer request took over."""

    abandoned: asyncio.Future[None] | None

    async def wait(self) -> bool:
        """Wait out the debounce; ``False`` if superseded meanwhile."""


@attrs.frozen
class Suggestion:
    """One completion for the cursor."""

    text: str
    """What to insert at the cursor (replacing ``replace`` code points after it)."""
    replace: int = 0
    source: str = "backend"


def choose_model(available: list[str]) -> str:
    """Pick the best known FIM model from ``GET /models``."""
    for name in PREFERRED_MODELS:
        if name in available:
            return name
    for name in available:
        if "reason" not in name and "think" not in name:
            return name
    return FALLBACK_MODEL


class Engine:
    """Turns snapshots into suggestions, reusing work wherever it can."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        on_error: Callable[[BackendError], None] | None = None,
        on_success: Callable[[], None] | None = None,
    ) -> None:
        self._transport = transport
        self._on_error = on_error or (lambda _e: None)
        self._on_success = on_success or (lambda: None)
        self.stats = Stats()
        self.typing = TypingThrough()
        self.flights: Flights[str | None] = Flights()
        self._closing: set[asyncio.Task[None]] = set()
        self._model_task: asyncio.Task[str] | None = None
        self.available_models: list[str] | None = None
        self._paused_until = 0.0
        self.pause_reason: str | None = None
        self.key_problem: str | None = None
        self.settings = settings
        self.client = self._new_client(settings)
        self.cache: CompletionCache[str] = CompletionCache(settings.cache_size, settings.cache_ttl_seconds)

    def _new_client(self, settings: Settings) -> DeepSeekClient:
        return DeepSeekClient(
            settings.base_url,
            self._api_key(settings),
            transport=self._transport,
            max_retries=settings.max_retries,
            on_retry=self._count_retry,
            allow_insecure_http=settings.allow_insecure_http,
        )

    def _api_key(self, settings: Settings) -> str | None:
        self.key_problem = None
        if settings.api_key or not settings.api_key_command:
            return settings.api_key
        try:
            key = run_key_command(settings.api_key_command)
        except KeyCommandError as error:
            self.key_problem = str(error)
            logger.warning("%s", error)
            return None
        log.add_secrets([key])
        return key

    def _count_retry(self) -> None:
        self.stats.retries += 1

    def configure(self, settings: Settings) -> None:
        """Apply new settings; a new key, URL or model lifts any pause."""
        old = self.settings
        self.settings = settings
        client_fields = ("base_url", "api_key", "api_key_command", "max_retries", "allow_insecure_http")
        if any(getattr(old, name) != getattr(settings, name) for name in client_fields):
            self._retire(self.client, old.timeout_ms / 1000)
            self.client = self._new_client(settings)
        if (old.base_url, old.api_key, old.model) != (settings.base_url, settings.api_key, settings.model):
            self._model_task = None
        if (old.cache_size, old.cache_ttl_seconds) != (settings.cache_size, settings.cache_ttl_seconds):
            self.cache = CompletionCache(settings.cache_size, settings.cache_ttl_seconds)
        self._paused_until = 0.0
        self.pause_reason = None

    async def aclose(self) -> None:
        """Close HTTP connections and background work."""
        if self._model_task is not None and not self._model_task.done():
            self._model_task.cancel()
        for task in list(self._closing):
            task.cancel()
        await self.client.aclose()

    def _retire(self, client: DeepSeekClient, grace: float) -> None:
        """Close a replaced client now, or once requests it still serves have hit their deadline."""

        idle = len(self.flights) == 0

        async def close_later() -> None:
            try:
                if not idle:
                    await asyncio.sleep(grace + 1)
            finally:
                await client.aclose()

        task = asyncio.ensure_future(close_later())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # -- model ---------------------------------------------------------------

    def start_model_resolution(self) -> asyncio.Task[str]:
        """Resolve the model in the background (once per configuration)."""
        if self._model_task is None or (self._model_task.done() and self._model_task.cancelled()):
            self._model_task = asyncio.ensure_future(self._resolve_model())
        return self._model_task

    async def model(self) -> str:
        """The model to use, resolving it via ``GET /models`` when not configured."""
        return await asyncio.shield(self.start_model_resolution())

    async def _model_within(self, timeout: float) -> str:
        """The model, without letting a slow ``GET /models`` eat a request's deadline."""
        if self.settings.model:
            self.start_model_resolution()  # validates in the background
            return self.settings.model
        task = self.start_model_resolution()
        if task.done() and not task.cancelled() and task.exception() is None:
            return task.result()
        try:
            return await asyncio.wait_for(self.model(), timeout)
        except TimeoutError:
            logger.warning("GET /models is slow; using %s for now", FALLBACK_MODEL)
            return FALLBACK_MODEL

    async def _resolve_model(self) -> str:
        configured = self.settings.model
        if not self.client.has_key:
            return configured or FALLBACK_MODEL
        try:
            self.available_models = await asyncio.wait_for(self.client.models(), 10)
        except (BackendError, TimeoutError) as error:
            chosen = configured or FALLBACK_MODEL
            logger.warning("could not list models (%s); using %s", error, chosen)
            return chosen
        if configured:
            if configured not in self.available_models:
                logger.warning(
                    "model %r is not listed by GET /models (available: %s)",
                    configured,
                    ", ".join(self.available_models) or "none",
                )
            return configured
        chosen = choose_model(self.available_models)
        logger.info("using model %s (available: %s)", chosen, ", ".join(self.available_models))
        return chosen

    # -- completion ----------------------------------------------------------

    @property
    def paused(self) -> bool:
        """Whether requests are held back after a fatal error."""
        return time.monotonic() < self._paused_until

    def request_for(self, snap: Snapshot, plan: prompt.Plan, model: str) -> FimRequest:
        """The FIM request for a snapshot (also the cache key)."""
        s = self.settings
        single = plan.mode is prompt.Mode.SINGLE
        return FimRequest(
            model=model,
            prompt=snap.prefix,
            suffix=snap.suffix,
            max_tokens=s.max_tokens_single_line if single else s.max_tokens,
            stop=prompt.stop_sequences(plan.mode, snap.line_prefix, snap.language_id),
            temperature=s.temperature,
            top_p=s.top_p,
            stream=s.stream,
        )

    async def complete(self, snap: Snapshot, gate: Gate | None = None) -> list[Suggestion]:
        """Suggestions for the cursor in ``snap``; empty when there is nothing to offer."""
        plan = prompt.plan(snap.line_prefix, snap.line_suffix, self.settings.multiline)
        if plan is None:
            self.stats.skipped += 1
            return []
        rest = self.typing.lookup(snap.uri, snap.prefix, snap.suffix)
        if rest is not None:
            self.stats.typing_through_hits += 1
            self.typing.remember(snap.uri, snap.prefix, snap.suffix, rest)
            return [Suggestion(rest, plan.replace, "typing-through")]
        if self.paused:
            return []
        if self.client.refusal:
            self._on_error(InsecureError(self.client.refusal))
            return []
        if not self.client.has_key:
            self._on_error(AuthError(self.key_problem or MISSING_KEY))
            return []
        started = time.monotonic()
        model = await self._model_within(self.settings.timeout_ms / 1000)
        budget = max(self.settings.timeout_ms / 1000 - (time.monotonic() - started), 0.2)
        base = self.request_for(snap, plan, model)
        requests = [base] + [
            attrs.evolve(base, temperature=max(base.temperature, 0.8), top_p=0.95 - 0.05 * i)
            for i in range(self.settings.num_suggestions - 1)
        ]
        ctx = prompt.Context(snap.line_prefix, snap.line_suffix, snap.suffix, plan.mode)
        texts: list[str | None] = []
        missing: list[FimRequest] = []
        for request in requests:
            cached = self.cache.get(request)
            if cached is None:
                missing.append(request)
            texts.append(cached)
        if missing:
            if gate is not None and not await gate.wait():
                self.stats.superseded += 1
                return []
            if len(missing) == 1:  # the usual case: no tasks just to gather one result
                results = [await self._fetch(missing[0], plan, snap, gate, budget)]
            else:
                results = await asyncio.gather(*(self._fetch(r, plan, snap, gate, budget) for r in missing))
            fetched = iter(results)
            texts = [text if text is not None else next(fetched) for text in texts]
        else:
            self.stats.cache_hits += 1
        suggestions: list[Suggestion] = []
        for raw in texts:
            if raw is None:
                continue
            cleaned = prompt.postprocess(raw, ctx)
            if cleaned and all(cleaned != s.text for s in suggestions):
                suggestions.append(Suggestion(cleaned, plan.replace))
        if suggestions:
            self.typing.remember(snap.uri, snap.prefix, snap.suffix, suggestions[0].text)
        return suggestions

    async def _fetch(
        self, request: FimRequest, plan: prompt.Plan, snap: Snapshot, gate: Gate | None, budget: float
    ) -> str | None:
        shared = request in self.flights
        joined, text = await self.flights.join(
            request,
            lambda: self._call(request, plan, snap.line_prefix, budget),
            gate.abandoned if gate is not None else None,
        )
        if shared:
            self.stats.shared_in_flight += 1
        if not joined:
            self.stats.superseded += 1
            return None
        return text

    async def _call(
        self, request: FimRequest, plan: prompt.Plan, line_prefix: str, budget: float
    ) -> str | None:
        self.stats.requests_sent += 1
        try:
            result = await self.client.fim(
                request,
                done=lambda text: prompt.is_complete(text, plan.mode, line_prefix),
                timeout=budget,
            )
        except BackendError as error:
            self._failed(error)
            return None
        self.stats.responses += 1
        self.stats.add_usage(result.usage, request.model)
        self._on_success()
        if result.finish_reason in EMPTY_FINISH:
            logger.info("DeepSeek finished with %s; nothing to show", result.finish_reason)
            return None
        self.cache.put(request, result.text)
        return result.text

    def _failed(self, error: BackendError) -> None:
        self.stats.record_error(str(error))
        logger.warning("%s", error)
        fatal = isinstance(error, (AuthError, BalanceError, InsecureError)) or (
            isinstance(error, RequestError) and error.model_missing
        )
        if fatal:
            self._paused_until = time.monotonic() + PAUSE_SECONDS
            self.pause_reason = str(error)
            if isinstance(error, RequestError) and not self.settings.model:
                self._model_task = None  # the auto choice went stale: ask /models again
        elif error.retry_after:
            self._paused_until = time.monotonic() + error.retry_after
            self.pause_reason = str(error)
        self._on_error(error)

    # -- status --------------------------------------------------------------

    def status(self) -> dict[str, object]:
        """Everything ``fimls.status`` reports (never the key)."""
        task = self._model_task
        model = task.result() if task is not None and task.done() and not task.cancelled() else None
        return {
            "model": model or self.settings.model,
            "backend": public_url(self.settings.base_url),
            "apiKey": "set" if self.client.has_key else "missing",
            "paused": self.pause_reason if self.paused else None,
            "cacheEntries": len(self.cache),
            "inFlight": len(self.flights),
            "openConnections": self.client.open_connections(),
            **self.stats.as_dict(),
        }
