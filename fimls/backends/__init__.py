"""FIM backends: one small module per wire format behind the :class:`Backend` protocol.

:func:`build` turns settings into a backend: its base URL, its key (setting, command or
environment variable), and the one :class:`~fimls.backends.http.Http` client it talks through.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import attrs

from fimls import log
from fimls.backends import codestral, deepseek, llamacpp, ollama, openai
from fimls.backends.base import (
    AuthError,
    Backend,
    BackendError,
    BalanceError,
    Check,
    Event,
    FimRequest,
    Finish,
    HttpBackend,
    InsecureError,
    NetworkError,
    Options,
    Price,
    ProtocolError,
    RateLimitError,
    RequestError,
    ServerError,
    Usage,
)
from fimls.backends.codestral import Codestral
from fimls.backends.deepseek import DeepSeek
from fimls.backends.http import Http
from fimls.backends.llamacpp import LlamaCpp
from fimls.backends.ollama import Ollama
from fimls.backends.openai import Completions, Raw, strip_tails
from fimls.config import BackendKind, Settings
from fimls.urls import insecure_reason, public_url

if TYPE_CHECKING:
    import httpx

__all__ = [
    "AuthError",
    "Backend",
    "BackendError",
    "BalanceError",
    "Check",
    "Event",
    "FimRequest",
    "Finish",
    "InsecureError",
    "NetworkError",
    "Options",
    "Price",
    "ProtocolError",
    "RateLimitError",
    "RequestError",
    "ServerError",
    "Usage",
    "build",
    "resolve_key",
]


FIMLS_KEY_ENV = "FIMLS_API_KEY"
"""Where the self-hosted backends find a key, when their server wants one."""


@attrs.frozen
class Kind:
    """What differs between backends before any request: defaults and the module to use."""

    display: str
    factory: type[HttpBackend]
    base_url: str
    key_env: str
    needs_key: bool


_RAW = Kind("OpenAI-compatible server (raw FIM prompts)", Raw, openai.DEFAULT_BASE_URL, FIMLS_KEY_ENV, False)

KINDS: dict[BackendKind, Kind] = {
    BackendKind.DEEPSEEK: Kind("DeepSeek", DeepSeek, deepseek.DEFAULT_BASE_URL, deepseek.KEY_ENV, True),
    BackendKind.OPENAI_COMPATIBLE: Kind(
        "OpenAI-compatible server", Completions, openai.DEFAULT_BASE_URL, FIMLS_KEY_ENV, False
    ),
    BackendKind.OLLAMA: Kind("Ollama", Ollama, ollama.DEFAULT_BASE_URL, FIMLS_KEY_ENV, False),
    BackendKind.LLAMACPP: Kind("llama.cpp server", LlamaCpp, llamacpp.DEFAULT_BASE_URL, FIMLS_KEY_ENV, False),
    BackendKind.CODESTRAL: Kind("Codestral", Codestral, codestral.DEFAULT_BASE_URL, codestral.KEY_ENV, True),
    BackendKind.RAW: _RAW,
    BackendKind.VLLM: _RAW,
}
"""Per backend: display name, module class, base URL, key variable, whether a key is needed."""


def kind_of(settings: Settings) -> Kind:
    """The defaults of the configured backend."""
    return KINDS[settings.backend]


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


def key_env(settings: Settings) -> str:
    """The environment variable the key comes from."""
    return settings.api_key_env or kind_of(settings).key_env


def resolve_key(settings: Settings, env: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
    """The key (setting, then command, then environment variable) and, if none, why not.

    A key found is registered with the log filter, so it is masked everywhere.
    """
    env = os.environ if env is None else env
    key: str | None = settings.api_key
    problem: str | None = None
    if not key and settings.api_key_command:
        try:
            key = run_key_command(settings.api_key_command)
        except KeyCommandError as error:
            problem = str(error)
    if not key and not problem:
        key = (env.get(key_env(settings)) or "").strip() or None
    if key:
        log.add_secrets([key])
        if not key.isprintable() or not key.isascii():
            # An HTTP header cannot carry it (a line break pasted along, say).
            return (
                None,
                "the API key holds characters HTTP cannot send (a line break or a control character?)",
            )
    elif problem is None and kind_of(settings).needs_key:
        problem = f"no API key: set {key_env(settings)}, apiKey or apiKeyCommand"
    return key, problem


def base_url(settings: Settings, env: Mapping[str, str] | None = None) -> str:
    """The configured base URL, else ``DEEPSEEK_BASE_URL`` for DeepSeek, else the default."""
    env = os.environ if env is None else env
    if settings.base_url:
        return settings.base_url
    if settings.backend is BackendKind.DEEPSEEK and env.get("DEEPSEEK_BASE_URL", "").strip():
        return env["DEEPSEEK_BASE_URL"].strip()
    return kind_of(settings).base_url


def build(
    settings: Settings,
    key: str | None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    on_retry: Callable[[], None] | None = None,
    env: Mapping[str, str] | None = None,
) -> Backend:
    """The backend the settings describe, talking through one new HTTP client."""
    kind = kind_of(settings)
    root = strip_tails(base_url(settings, env), kind.factory.url_tails)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    http = Http(
        root,
        label=f"{kind.display} at {public_url(root)}",
        headers=headers,
        transport=transport,
        max_retries=settings.max_retries,
        on_retry=on_retry,
    )
    return kind.factory(
        http,
        has_key=bool(key),
        refusal=insecure_reason(root, settings.allow_insecure_http),
        options=options_of(settings),
    )


def options_of(settings: Settings) -> Options:
    """What the settings say about requests."""
    price = settings.price_per_million_tokens
    return Options(
        template=settings.template,
        template_stop=tuple(settings.template_stop or ()),
        price=None if price is None else Price(price.input, price.cached_input, price.output),
        routing_id=settings.routing_id,
    )
