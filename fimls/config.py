"""Settings: frozen attrs classes parsed once from camelCase JSON with cattrs.

Settings come, later ones winning, from the user's config file (``~/.config/fimls/config.json``),
``initializationOptions`` and workspace configuration (``workspace/didChangeConfiguration``,
section ``fimls``). Settings that decide where code and keys go, or that run a program
(:data:`MACHINE_ONLY`), are the user's machine-level choice: workspace configuration may not set
them (a cloned repository could otherwise send code and key anywhere); they are ignored there with
a warning. Unknown keys produce a warning; an invalid value falls back to its default with a
message. The API key is never part of ``repr`` or any message.
"""

from __future__ import annotations

import enum
import json
import os
import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs

FIM_MAX_TOKENS = 4096
"""DeepSeek caps FIM output at 4K tokens."""


class BackendKind(enum.StrEnum):
    """Which FIM engine, and so which wire format."""

    DEEPSEEK = "deepseek"
    OPENAI_COMPATIBLE = "openai-compatible"
    OLLAMA = "ollama"
    LLAMACPP = "llamacpp"
    CODESTRAL = "codestral"
    RAW = "raw"
    VLLM = "vllm"


class Multiline(enum.StrEnum):
    """When to ask for more than one line."""

    AUTO = "auto"
    ALWAYS = "always"
    NEVER = "never"


def _positive(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{_camel(attribute.name)} must be positive")


def _non_negative(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ValueError(f"{_camel(attribute.name)} must not be negative")


def _range(low: float, high: float) -> Any:
    def check(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
        if not low <= value <= high:
            raise ValueError(f"{_camel(attribute.name)} must be between {low} and {high}")

    return check


TEMPLATE_FAMILIES = ("deepseek", "qwen", "starcoder", "codellama", "codestral")
"""Model families whose raw FIM templates fimls knows (``fimls.backends.templates``)."""


def _template(_inst: object, _attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is None or value in TEMPLATE_FAMILIES:
        return
    try:
        fields = [
            (name, spec, conv) for _, name, spec, conv in string.Formatter().parse(value) if name is not None
        ]
    except ValueError as exc:
        raise ValueError(f"not a format string ({exc}); write a literal brace as {{{{ or }}}}") from None
    names = [name for name, _, _ in fields]
    if any(name not in ("prefix", "suffix") or spec or conv for name, spec, conv in fields) or sorted(
        names
    ) != [
        "prefix",
        "suffix",
    ]:
        raise ValueError(
            "expected one of "
            + ", ".join(TEMPLATE_FAMILIES)
            + ", or a format string with {prefix} and {suffix} "
            "once each and no other fields"
        )


def _stops(_inst: object, _attribute: attrs.Attribute[Any], value: list[str] | None) -> None:
    if value is not None and (len(value) > 16 or not all(value)):
        raise ValueError("expected at most 16 non-empty strings")


def _routing_id(_inst: object, _attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and not re.fullmatch(r"[\x21-\x7e]{1,200}", value):
        raise ValueError("expected 1 to 200 visible ASCII characters (it is sent as an HTTP header)")


@attrs.frozen
class TokenPrice:
    """USD per million tokens: prompt tokens, prompt tokens served from the prompt cache, output."""

    input: float = attrs.field(validator=_non_negative)
    cached_input: float = attrs.field(validator=_non_negative)
    output: float = attrs.field(validator=_non_negative)


def _token_price(value: Any) -> TokenPrice:
    if not isinstance(value, Mapping):
        raise TypeError('expected an object {"input": n, "cachedInput": n, "output": n}')
    unknown = sorted(str(k) for k in value if k not in ("input", "cachedInput", "output"))
    if unknown:
        raise ValueError("unknown key(s) " + ", ".join(unknown) + "; expected input, cachedInput, output")
    numbers: dict[str, float] = {}
    for key in ("input", "cachedInput", "output"):
        number = value.get(key, value.get("input") if key == "cachedInput" else None)
        if number is None:
            raise ValueError(f"{key} is missing")
        if not isinstance(number, (int, float)) or isinstance(number, bool) or number < 0:
            raise ValueError(f"{key} must be a number of at least 0")
        numbers[key] = float(number)
    return TokenPrice(numbers["input"], numbers["cachedInput"], numbers["output"])


@attrs.frozen
class Settings:
    """Everything a user can configure. Field docstrings are the reference for the README."""

    backend: BackendKind = BackendKind.DEEPSEEK
    """Which FIM engine to use (and so its wire format and defaults)."""

    api_key: str | None = attrs.field(default=None, repr=False)
    """API key. Prefer the environment variable (``apiKeyEnv``)."""

    api_key_env: str | None = None
    """Environment variable with the key; ``null``: the backend's (``DEEPSEEK_API_KEY``, ...)."""

    base_url: str | None = None
    """API base URL; ``null``: the backend's default (DeepSeek: ``https://api.deepseek.com``)."""

    model: str | None = None
    """Model id. ``null`` picks a FIM-capable model from ``GET /models``."""

    template: str | None = attrs.field(default=None, validator=_template)
    """Raw FIM template: a family name or a format string with ``{prefix}`` and ``{suffix}``;
    ``null`` guesses the family from the model name."""

    template_stop: list[str] | None = attrs.field(default=None, validator=_stops)
    """Extra stop strings for a raw template."""

    price_per_million_tokens: TokenPrice | None = None
    """USD per million tokens (``input``, ``cachedInput``, ``output``); ``null``: the backend's list
    price (0 for self-hosted)."""

    routing_id: str | None = attrs.field(default=None, validator=_routing_id)
    """A stable per-user id for prefix-aware routers (OpenAI ``user`` field, ``X-User-Id`` header)."""

    max_tokens: int = attrs.field(default=256, validator=_range(1, FIM_MAX_TOKENS))
    """Output limit for multi-line completions (at most 4096)."""

    max_tokens_single_line: int = attrs.field(default=64, validator=_range(1, FIM_MAX_TOKENS))
    """Output limit for single-line completions."""

    temperature: float = attrs.field(default=0.0, validator=_range(0.0, 2.0))
    """Sampling temperature (0 to 2)."""

    top_p: float = attrs.field(default=1.0, validator=_range(0.0, 1.0))
    """Nucleus sampling (0 to 1)."""

    stream: bool = True
    """Stream the answer (SSE) and stop reading as soon as the completion is complete."""

    debounce_ms: int = attrs.field(default=150, validator=_range(0, 10_000))
    """The longest wait after a keystroke before a request is sent (the fixed wait when
    ``adaptiveDebounce`` is off); explicit invocations never wait."""

    adaptive_debounce: bool = True
    """Learn the typing rhythm: ask at once where a pause is likely, wait only as long as needed."""

    early_answer: bool = True
    """Answer with the first complete line(s) while the rest of a multi-line answer streams on."""

    early_answer_ms: int = attrs.field(default=150, validator=_range(0, 10_000))
    """How long after the first token to wait for a complete line before answering with the
    words received so far."""

    prefetch: bool = True
    """After a suggestion, ask in the background for what follows it, as if it were accepted."""

    context_open_files: bool = True
    """Send code from other documents the editor has open (same language first)."""

    context_recent_edits: bool = True
    """Send recently edited and viewed ranges of other documents."""

    context_imports: bool = True
    """Send definitions of names used near the cursor, found through the file's imports."""

    context_budget_chars: int = attrs.field(default=4000, validator=_range(0, 100_000))
    """Characters of other files' code sent with a prompt (0 sends none)."""

    timeout_ms: int = attrs.field(default=5000, validator=_range(100, 600_000))
    """Overall deadline of one completion, retries included."""

    max_prefix_chars: int = attrs.field(default=12000, validator=_range(100, 1_000_000))
    """Characters of text before the cursor sent as the prompt (cut at line starts)."""

    max_suffix_chars: int = attrs.field(default=800, validator=_range(0, 1_000_000))
    """Characters of text after the cursor sent as the suffix (cut at line ends)."""

    prompt_anchor_lines: int = attrs.field(default=96, validator=_positive)
    """The prompt starts on a multiple of this many lines, so its start stays byte-identical
    while you type and DeepSeek's prompt cache keeps hitting."""

    multiline: Multiline = Multiline.AUTO
    """``auto`` (multi-line when nothing but closers follows the cursor), ``always`` or ``never``."""

    num_suggestions: int = attrs.field(default=1, validator=_range(1, 5))
    """Inline suggestions per request; more than one costs one extra request each."""

    cache_size: int = attrs.field(default=256, validator=_non_negative)
    """Completions kept in memory (LRU); 0 disables the cache."""

    cache_ttl_seconds: float = attrs.field(default=600.0, validator=_positive)
    """How long a cached completion stays valid."""

    max_retries: int = attrs.field(default=2, validator=_range(0, 5))
    """Retries after 429, 500 and 503 (with jittered backoff, honouring ``Retry-After``)."""

    api_key_command: str | None = None
    """A command that prints the API key (e.g. a password manager), used when ``apiKey`` is unset."""

    languages: list[str] | None = None
    """Language ids to complete in; ``null`` means all."""

    allow_insecure_http: bool = False
    """Allow sending code over plain ``http://`` to a host other than this machine."""

    @property
    def redacted(self) -> dict[str, Any]:
        """The settings as camelCase JSON with the key masked, for status output."""
        raw = _unstructure(self)
        if raw.get("apiKey"):
            raw["apiKey"] = "***"
        return raw


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


attrs.resolve_types(Settings)
_FIELDS: dict[str, attrs.Attribute[Any]] = {_camel(f.name): f for f in attrs.fields(Settings)}
_DEFAULTS = Settings()
_converter = cattrs.Converter()


def _unstructure(settings: Settings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, field in _FIELDS.items():
        value = getattr(settings, field.name)
        if isinstance(value, TokenPrice):
            value = {"input": value.input, "cachedInput": value.cached_input, "output": value.output}
        out[key] = value.value if isinstance(value, enum.Enum) else value
    return out


MACHINE_ONLY = ("backend", "baseUrl", "apiKey", "apiKeyCommand", "apiKeyEnv", "allowInsecureHttp")
"""Settings that decide where code and keys go or run a program: never from a workspace."""


def field_names() -> list[str]:
    """All camelCase option names, in declaration order."""
    return list(_FIELDS)


def user_config_path(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/fimls/config.json`` (``~/.config/fimls/config.json``)."""
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "fimls" / "config.json"


def load_user_config(env: Mapping[str, str] | None = None) -> tuple[dict[str, Any], list[str]]:
    """The user's config file as JSON (empty when absent), and any problem reading it."""
    path = user_config_path(env)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return {}, []
    except OSError as exc:
        return {}, [f"cannot read {path}: {exc.strerror or exc}"]
    try:
        data = json.loads(text)
    except ValueError as exc:
        return {}, [f"{path} is not valid JSON ({exc}); ignoring it"]
    if not isinstance(data, dict):
        return {}, [f"{path} must hold a JSON object; ignoring it"]
    return data, []


def from_workspace(raw: Any, in_force: Mapping[str, Any] | None = None) -> tuple[Any, list[str]]:
    """Workspace configuration without the machine-level settings, and a warning if any of them
    would have changed what is in force (``in_force``: the user's own settings)."""
    if not isinstance(raw, Mapping):
        return raw, []
    in_force = in_force or {}
    kept = {key: value for key, value in raw.items() if key not in MACHINE_ONLY}
    # Some clients (Helix) send the user's own initializationOptions again as workspace
    # configuration: the same values are no attempt to redirect anything.
    dropped = [key for key in MACHINE_ONLY if key in raw and raw[key] != in_force.get(key)]
    if not dropped:
        return kept, []
    return kept, [
        "ignored from workspace configuration (a repository may not choose where code and keys go): "
        + ", ".join(dropped)
        + f"; set them in {user_config_path()} or your editor's user settings"
    ]


def parse_settings(raw: Any) -> tuple[Settings, list[str]]:
    """Turn user JSON into :class:`Settings`.

    Returns the settings and the problems found. Each bad value is replaced by its
    default on its own, so one typo does not discard the rest of the configuration.
    The environment (keys, ``DEEPSEEK_BASE_URL``) is read where the backend is built.
    """
    problems: list[str] = []
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        problems.append(f"settings must be an object, not {type(raw).__name__}; using defaults")
        raw = {}
    unknown = sorted(str(k) for k in raw if k not in _FIELDS)
    if unknown:
        problems.append("unknown setting(s) ignored: " + ", ".join(unknown))
    settings = _DEFAULTS
    for key, value in raw.items():
        field = _FIELDS.get(key)
        if field is None or (value is None and field.default is not None):
            continue
        try:
            settings = attrs.evolve(settings, **{field.name: _structure(field, value)})
        except (TypeError, ValueError, cattrs.BaseValidationError) as exc:
            shown = "" if key == "apiKey" else f" {value!r}"
            problems.append(f"invalid value{shown} for {key} ({_reason(exc)}); using the default")
    return settings, problems


def _structure(field: attrs.Attribute[Any], value: Any) -> Any:
    """Convert one JSON value, rejecting what cattrs would silently coerce ("12" to 12)."""
    kind = field.type
    if kind is bool and not isinstance(value, bool):
        raise TypeError("expected true or false")
    if kind is int and (not isinstance(value, int) or isinstance(value, bool)):
        raise TypeError("expected an integer")
    if kind is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise TypeError("expected a number")
        return float(value)
    if kind in (str, str | None) and not isinstance(value, str) and value is not None:
        raise TypeError("expected a string")
    if (
        kind == list[str] | None
        and value is not None
        and (not isinstance(value, list) or not all(isinstance(item, str) for item in value))
    ):
        raise TypeError("expected a list of strings")
    if kind == TokenPrice | None:
        return None if value is None else _token_price(value)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        try:
            return kind(value)
        except ValueError:
            raise ValueError("expected one of " + ", ".join(m.value for m in kind)) from None
    assert kind is not None
    return _converter.structure(value, kind)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc))
    return str(exc)


def settings_from_change(settings_payload: Any) -> Any:
    """Pick the ``fimls`` section out of a ``didChangeConfiguration`` payload."""
    if isinstance(settings_payload, Mapping) and isinstance(settings_payload.get("fimls"), Mapping):
        return settings_payload["fimls"]
    return settings_payload
