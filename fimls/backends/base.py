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

from collections.abc import AsyncGenerator, Mapping
from typing import Any, Protocol

import attrs


class BackendError(Exception):
    """A backend call failed; ``str()`` is a message fit for the user."""

    kind = "error"

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class AuthError(BackendError):
    """The key is missing, wrong or unusable."""

    kind = "auth"


class BalanceError(BackendError):
    """The account has run out of balance or quota."""

    kind = "balance"


class RequestError(BackendError):
    """The backend rejected the request."""

    kind = "request"

    def __init__(self, message: str, status: int | None = None, *, model_missing: bool = False) -> None:
        super().__init__(message, status)
        self.model_missing = model_missing


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

    async def diagnose(self, model: str) -> list[Check]:
        """Backend-specific checks for ``fimls doctor`` (beyond listing models and one FIM call)."""
        ...

    async def aclose(self) -> None:
        """Close connections."""
        ...
