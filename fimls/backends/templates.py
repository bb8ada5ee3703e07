"""Raw FIM prompts: each model family's fill-in-the-middle tokens, byte for byte.

Servers that take no ``suffix`` field (vLLM, TGI, llama.cpp ``/completion``, Ollama with
``raw: true``) need the prompt already wrapped in the model's own FIM tokens, and the
family's stop strings, or the model runs on past the hole. The family is guessed from the
model name; the ``template`` setting names one or gives a format string with ``{prefix}`` and
``{suffix}``.

Other files (``FimRequest.context``) go into the prompt only where the family was trained with
file separators: Qwen2.5-Coder's ``<|repo_name|>``/``<|file_sep|>`` and StarCoder2's
``<repo_name>``/``<file_sep>``, in the given order, before the current file. The other families
(DeepSeek-Coder, CodeLlama, Codestral) and custom templates get no context in raw mode: text
before their prefix token is not something they learnt to read.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Sequence

import attrs

from fimls.backends.base import FimRequest

DEFAULT_REPO = "project"
"""The repository name when the request has none."""
DEFAULT_PATH = "file"
"""The current file's name when the request has none."""


@attrs.frozen
class Family:
    """The FIM tokens of one model family and where it puts other files."""

    name: str
    prefix: str
    """Opens the text before the hole."""
    suffix: str
    """Opens the text after the hole."""
    middle: str
    """After it the model writes the middle."""
    stops: tuple[str, ...]
    suffix_first: bool = False
    """Suffix, then prefix (Codestral's SPM order)."""
    repo_name: str = ""
    file_sep: str = ""
    repo_newline: bool = False
    """A line break after the repository name (Qwen; StarCoder2 has none)."""
    path_in_prefix: bool = False
    """The current file's path follows the prefix token (StarCoder2) instead of preceding it (Qwen)."""

    def render(
        self,
        prefix: str,
        suffix: str,
        context: Sequence[tuple[str, str]] = (),
        path: str = "",
        repo: str = "",
    ) -> str:
        """The raw prompt for ``prefix`` and ``suffix``, other files first where the family has separators."""
        if self.suffix_first:
            return f"{self.suffix}{suffix}{self.prefix}{prefix}{self.middle}"
        fim = f"{self.prefix}{prefix}{self.suffix}{suffix}{self.middle}"
        if not context or not self.file_sep:
            return fim
        head = self.repo_name + (repo or DEFAULT_REPO) + ("\n" if self.repo_newline else "")
        files = "".join(f"{self.file_sep}{name}\n{_lines(text)}" for name, text in context)
        current = path or DEFAULT_PATH
        if self.path_in_prefix:
            fim = f"{self.prefix}{current}\n{prefix}{self.suffix}{suffix}{self.middle}"
            return f"{head}{files}{self.file_sep}{fim}"
        return f"{head}{files}{self.file_sep}{current}\n{fim}"


def _lines(text: str) -> str:
    """A file's text ending in exactly the line break it has, or one added."""
    return text if text.endswith("\n") else text + "\n"


DEEPSEEK = Family(
    "deepseek",
    "<｜fim▁begin｜>",
    "<｜fim▁hole｜>",
    "<｜fim▁end｜>",
    stops=("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", "<｜end▁of▁sentence｜>"),
)
"""DeepSeek-Coder (v1, V2): full-width bars (U+FF5C) and U+2581 in its tokens."""
QWEN = Family(
    "qwen",
    "<|fim_prefix|>",
    "<|fim_suffix|>",
    "<|fim_middle|>",
    stops=(
        "<|endoftext|>",
        "<|fim_prefix|>",
        "<|fim_middle|>",
        "<|fim_suffix|>",
        "<|fim_pad|>",
        "<|repo_name|>",
        "<|file_sep|>",
        "<|im_start|>",
        "<|im_end|>",
    ),
    repo_name="<|repo_name|>",
    file_sep="<|file_sep|>",
    repo_newline=True,
)
"""Qwen2.5-Coder, with its repository-level format."""
STARCODER = Family(
    "starcoder",
    "<fim_prefix>",
    "<fim_suffix>",
    "<fim_middle>",
    stops=("<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<file_sep>", "<repo_name>", "<|endoftext|>"),
    repo_name="<repo_name>",
    file_sep="<file_sep>",
    path_in_prefix=True,
)
"""StarCoder and StarCoder2, with StarCoder2's repository context."""
CODELLAMA = Family("codellama", "<PRE> ", " <SUF>", " <MID>", stops=("<PRE>", "<SUF>", "<MID>", "<EOT>"))
"""CodeLlama: the spaces around its tokens are part of the format."""
CODESTRAL = Family("codestral", "[PREFIX]", "[SUFFIX]", "", stops=("[PREFIX]", "[SUFFIX]"), suffix_first=True)
"""Codestral's open weights: suffix first, then prefix, and the model writes on from there."""

FAMILIES: dict[str, Family] = {f.name: f for f in (DEEPSEEK, QWEN, STARCODER, CODELLAMA, CODESTRAL)}


def guess_family(model: str) -> Family | None:
    """The family a model name belongs to, or ``None`` when it is not recognisably one.

    Matches Hugging Face ids (``Qwen/Qwen2.5-Coder-7B``) and Ollama tags (``qwen2.5-coder:1.5b-base``).
    """
    name = model.lower().replace("_", "-")
    if "codestral" in name:
        return CODESTRAL
    if "qwen" in name and "coder" in name:
        return QWEN
    if "starcoder" in name or "star-coder" in name:
        return STARCODER
    if "codellama" in name or "code-llama" in name:
        return CODELLAMA
    if "deepseek" in name and "coder" in name:
        return DEEPSEEK
    return None


def format_problem(text: str) -> str | None:
    """Why ``text`` is not a usable template format string, or ``None``."""
    try:
        fields = [
            (name, spec, conv) for _, name, spec, conv in string.Formatter().parse(text) if name is not None
        ]
    except ValueError as exc:
        return f"not a format string ({exc}; write a literal brace as {{{{ or }}}})"
    names = [name for name, _, _ in fields]
    odd = sorted({name for name in names if name not in ("prefix", "suffix")})
    if odd:
        return "only {prefix} and {suffix} may appear, not " + ", ".join("{" + n + "}" for n in odd)
    if any(spec or conv for _, spec, conv in fields):
        return "{prefix} and {suffix} take no format spec or conversion"
    if names.count("prefix") != 1 or names.count("suffix") != 1:
        return "it must hold {prefix} and {suffix} once each"
    return None


@attrs.frozen
class Template:
    """A resolved raw template: a family or a format string, with every stop string it needs."""

    name: str
    """The family's name, or ``custom``."""
    stops: tuple[str, ...]
    family: Family | None = None
    text: str | None = None
    """The format string of a custom template."""

    @property
    def carries_context(self) -> bool:
        """Whether other files go into the prompt (the family has file separators)."""
        return self.family is not None and bool(self.family.file_sep)

    def render(self, request: FimRequest) -> str:
        """The raw prompt for ``request``."""
        if self.family is not None:
            return self.family.render(
                request.prefix, request.suffix, request.context, request.path, request.repo
            )
        assert self.text is not None
        return self.text.format(prefix=request.prefix, suffix=request.suffix)

    def describe(self) -> str:
        """E.g. ``qwen (<|fim_prefix|>…<|fim_suffix|>…<|fim_middle|>)``."""
        if self.family is None:
            return f"custom {self.text!r}"
        f = self.family
        if f.suffix_first:
            return f"{f.name} ({f.suffix}…{f.prefix}…{f.middle})"
        return f"{f.name} ({f.prefix}…{f.suffix}…{f.middle})"


@functools.lru_cache(maxsize=64)
def resolve(setting: str | None, model: str, extra_stops: tuple[str, ...] = ()) -> Template | None:
    """The template the ``template`` setting names (a family or a format string), else the one
    the model name suggests; ``None`` when neither says."""
    if setting is None:
        family = guess_family(model)
    elif setting in FAMILIES:
        family = FAMILIES[setting]
    else:
        if format_problem(setting) is not None:
            return None
        return Template("custom", tuple(dict.fromkeys(extra_stops)), text=setting)
    if family is None:
        return None
    return Template(family.name, tuple(dict.fromkeys(family.stops + extra_stops)), family=family)


NO_TEMPLATE_HINT = (
    'set "template" to one of ' + ", ".join(FAMILIES) + ", or to a format string with {prefix} and {suffix}"
)
