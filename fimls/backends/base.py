"""What every backend shares: the backend-neutral request, the results, the errors and the protocol.

Errors are :class:`BackendError` subclasses whose ``str()`` is a message fit for the user: it names
the URL (without credentials) and the cause, and any text the server sent back has already been
redacted when the error is built, so no output path can show an echoed key.

- :class:`AuthError` (401, 403, a key HTTP cannot send), :class:`BalanceError` (402, quota used
  up), :class:`RequestError` (400, 404, 422; ``model_missing`` tells "no such model" apart):
  never retried.
- :class:`RateLimitError` (429) and :class:`ServerError` (5xx, overloaded): retried with jittered
  backoff that honours ``Retry-After`` while the deadline allows.
- :class:`NetworkError`: connection refused, name not resolved, TLS, proxy, timeouts, deadline.
- :class:`ProtocolError`: an answer that is not the backend's wire format.
- :class:`InsecureError`: the URL would send code unencrypted over the network.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import attrs

from fimls.context import Chunk, comment_block

if TYPE_CHECKING:
    from fimls.backends.http import Http


class BackendError(Exception):
    """A backend call failed; ``str()`` is a message fit for the user."""

    kind = "error"

    def __init__(
        self, message: str, status: int | None = None, retry_after: float | None = None, detail: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.detail = detail
        """The server's own words (redacted), for backends that act on them."""


class AuthError(BackendError):
    """The key is missing, wrong or unusable."""

    kind = "auth"


class BalanceError(BackendError):
    """The account has run out of balance or quota."""

    kind = "balance"


class RequestError(BackendError):
    """The backend rejected the request."""

    kind = "request"

    def __init__(
        self, message: str, status: int | None = None, *, model_missing: bool = False, detail: str = ""
    ) -> None:
        super().__init__(message, status, detail=detail)
        self.model_missing = model_missing
        """The model is unknown or cannot do FIM: nothing works until the settings change."""


class RateLimitError(BackendError):
    """Too many requests."""

    kind = "rate-limit"


class ServerError(BackendError):
    """The backend is failing or overloaded."""

    kind = "server"


class NetworkError(BackendError):
    """The backend could not be reached, or did not answer in time."""

    kind = "network"


class ProtocolError(BackendError):
    """The answer was not in the backend's format."""

    kind = "protocol"


class InsecureError(BackendError):
    """The configured URL would send code unencrypted over the network."""

    kind = "insecure"


@attrs.frozen
class FimRequest:
    """One fill-in-the-middle request, independent of any wire format (and a cache key)."""

    model: str
    prefix: str
    """Text before the cursor (the prompt window)."""
    suffix: str
    """Text after the cursor (the suffix window)."""
    max_tokens: int
    stop: tuple[str, ...] = ()
    temperature: float = 0.0
    top_p: float = 1.0
    stream: bool = True
    context: tuple[tuple[str, str], ...] = ()
    """Code from other files as (workspace-relative path, text), in the order to send."""
    language_id: str = ""
    """The current file's language, for framing ``context`` as comments."""
    path: str = ""
    """The current file's workspace-relative path (raw templates with file separators name it)."""
    repo: str = ""
    """The workspace folder's name (Qwen2.5-Coder and StarCoder2 put it before the other files)."""
    speculative: bool = attrs.field(default=False, eq=False)
    """Asked ahead of need (prefetch); sent as a header so servers and fakes can tell."""


@attrs.frozen
class Usage:
    """Token accounting, where the backend reports it."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hit_tokens: int = 0
    cache_miss_tokens: int = 0

    @classmethod
    def parse(cls, raw: Any) -> Usage | None:
        """Read OpenAI-style ``usage`` (with DeepSeek's prompt-cache fields) defensively."""
        if not isinstance(raw, Mapping):
            return None

        def num(mapping: Mapping[str, Any], name: str) -> int:
            value = mapping.get(name)
            return value if isinstance(value, int) and not isinstance(value, bool) else 0

        hit = num(raw, "prompt_cache_hit_tokens")
        details = raw.get("prompt_tokens_details")
        if not hit and isinstance(details, Mapping):
            hit = num(details, "cached_tokens")
        prompt = num(raw, "prompt_tokens")
        miss = num(raw, "prompt_cache_miss_tokens") or max(prompt - hit, 0)
        return cls(prompt, num(raw, "completion_tokens"), hit, miss)


@attrs.frozen
class Finish:
    """The end of a generation: why it stopped, and what it cost."""

    reason: str | None
    usage: Usage | None = None


Event = str | Finish
"""What :meth:`Backend.generate` yields: pieces of text, then one :class:`Finish`."""


@attrs.frozen
class Price:
    """USD per million tokens."""

    input: float = 0.0
    cached_input: float = 0.0
    output: float = 0.0

    def cost(self, usage: Usage) -> float:
        """Estimated price of one answer."""
        return (
            usage.cache_hit_tokens * self.cached_input
            + usage.cache_miss_tokens * self.input
            + usage.completion_tokens * self.output
        ) / 1_000_000


@attrs.frozen
class Check:
    """One line of ``fimls doctor``."""

    ok: bool
    what: str
    detail: str


class Backend(Protocol):
    """A FIM engine reached over HTTP. The engine knows only this interface."""

    name: str
    """The ``backend`` setting's value, e.g. ``deepseek``."""
    default_model: str
    """The model to use when none is configured and the model list does not decide."""
    path: str
    """Where FIM requests go, e.g. ``/beta/completions``."""
    models_path: str
    """Where the model list comes from, e.g. ``/models``."""
    refusal: str | None
    """Why nothing may be sent (an insecure URL), or ``None``."""
    has_key: bool
    """Whether a key is configured (some backends need none)."""

    @property
    def label(self) -> str:
        """How messages name it, e.g. ``DeepSeek at https://api.deepseek.com``."""
        ...

    @property
    def url(self) -> str:
        """The base URL without credentials, for display."""
        ...

    def price(self, model: str) -> Price:
        """What a million tokens cost with ``model``."""
        ...

    def generate(self, request: FimRequest, deadline: float) -> AsyncGenerator[Event, None]:
        """Text pieces as they arrive, then one :class:`Finish`; raises :class:`BackendError`.

        Everything, reading included, ends by ``deadline`` (``time.monotonic``). Callers must
        close the generator (``contextlib.aclosing``) when they stop reading early.
        """
        ...

    async def models(self) -> list[str]:
        """Model ids the server offers."""
        ...

    def choose_model(self, available: list[str]) -> str | None:
        """The model to use when none is configured, or ``None`` to ask the user."""
        ...

    def lists(self, model: str, available: list[str]) -> bool:
        """Whether ``available`` holds ``model`` under one of its names."""
        ...

    async def diagnose(self, model: str) -> list[Check]:
        """Backend-specific checks for ``fimls doctor`` (beyond listing models and one FIM call)."""
        ...

    async def aclose(self) -> None:
        """Close connections."""
        ...


@attrs.frozen
class Options:
    """What the settings say about requests, beyond where they go."""

    template: str | None = None
    """A raw FIM template: a family name or a format string (``None``: guessed from the model)."""
    template_stop: tuple[str, ...] = ()
    """Stop strings added to a raw template's own."""
    price: Price | None = None
    """The configured price (``None``: the backend's list price)."""
    routing_id: str | None = None
    """A stable per-user id for prefix-aware routers, where the wire format has a place for it."""


def merge_stops(*groups: tuple[str, ...] | list[str], limit: int = 16) -> list[str]:
    """Stop strings without repeats, in order, at most ``limit`` (the request's own come first)."""
    seen: list[str] = []
    for group in groups:
        for stop in group:
            if stop and stop not in seen:
                seen.append(stop)
    return seen[:limit]


class HttpBackend(abc.ABC):
    """What every backend class shares: its HTTP client, key state, options, price and names."""

    name: str
    path: str
    models_path: str
    url_tails: tuple[str, ...] = ()
    """API paths a user may paste with the base URL; stripped."""
    default_model: str = ""
    list_price: ClassVar[Price] = Price()
    """USD per million tokens when no price is configured (0 for self-hosted engines)."""
    max_tokens_cap: ClassVar[int | None] = None
    """The most output tokens the engine accepts in one FIM request, where it documents a cap."""

    def __init__(
        self, http: Http, *, has_key: bool, refusal: str | None, options: Options | None = None
    ) -> None:
        self.http = http
        self.has_key = has_key
        self.refusal = refusal
        self.options = options or Options()

    @property
    def label(self) -> str:
        """How messages name this backend, e.g. ``Ollama at http://127.0.0.1:11434``."""
        return self.http.label

    @property
    def url(self) -> str:
        """The base URL without credentials, for display."""
        return self.http.public

    def price(self, model: str) -> Price:
        """What a million tokens cost with ``model``: the configured price, else the list price."""
        return self.options.price if self.options.price is not None else self.list_price

    def max_tokens(self, request: FimRequest) -> int:
        """``request.max_tokens`` within the engine's cap."""
        cap = self.max_tokens_cap
        return request.max_tokens if cap is None else max(1, min(request.max_tokens, cap))

    def prompt_text(self, request: FimRequest) -> str:
        """The prompt a suffix-field API gets (DeepSeek, OpenAI-compatible, Ollama, Codestral):
        context from other files framed as comments of ``request.language_id``, then the text
        before the cursor."""
        if not request.context:
            return request.prefix
        chunks = [Chunk(path=path, text=text, source="", uri="") for path, text in request.context]
        return comment_block(chunks, request.language_id) + request.prefix

    def headers(self, request: FimRequest) -> dict[str, str] | None:
        """Extra request headers: speculative requests say so."""
        return {"X-Fimls-Speculative": "1"} if request.speculative else None

    @abc.abstractmethod
    def generate(self, request: FimRequest, deadline: float) -> AsyncGenerator[Event, None]:
        """Text pieces as they arrive, then one :class:`Finish` (see :class:`Backend`)."""

    @abc.abstractmethod
    async def models(self) -> list[str]:
        """Model ids the server offers."""

    def listed(self, data: Any, key: str = "data", field: str = "id") -> list[str]:
        """The ``field`` of each item listed under ``key`` in an answer to ``GET models_path``."""
        items = data.get(key) if isinstance(data, Mapping) else None
        if not isinstance(items, list):
            raise ProtocolError(f"{self.label}: GET {self.models_path} returned no model list")
        return [str(item[field]) for item in items if isinstance(item, Mapping) and field in item]

    def choose_model(self, available: list[str]) -> str | None:
        """The only model served, when there is exactly one."""
        return available[0] if len(available) == 1 else None

    def lists(self, model: str, available: list[str]) -> bool:
        """Whether ``available`` holds ``model``."""
        return model in available

    async def diagnose(self, model: str) -> list[Check]:
        """No checks beyond listing models and one FIM call."""
        return []

    async def aclose(self) -> None:
        """Close connections."""
        await self.http.aclose()
