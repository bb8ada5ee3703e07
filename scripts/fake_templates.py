"""Raw FIM prompts of the known model families, for the fake FIM server (stdlib only).

Servers that take no ``suffix`` field (vLLM, llama.cpp ``/completion``, Ollama with
``raw: true``) get the prompt already wrapped in the model's FIM tokens.  To answer
from the oracle and to account for the prefix cache, the fake recovers prefix,
suffix and the other files' text from such a prompt.  ``render`` builds the same
layouts (llama.cpp's ``/infill`` echoes its prompt in this form).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Family:
    """The FIM tokens of one model family."""

    name: str
    prefix: str  # the token that opens the prefix
    suffix: str  # the token that opens the suffix
    middle: str  # the token after which the model writes the middle
    file_sep: str = ""  # the repo-level separator before each file
    repo_name: str = ""  # the repo-level token before the repository name
    stops: tuple[str, ...] = ()


DEEPSEEK = Family(
    "deepseek",
    "<｜fim▁begin｜>",
    "<｜fim▁hole｜>",
    "<｜fim▁end｜>",
    stops=("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", "<｜end▁of▁sentence｜>"),
)
QWEN = Family(
    "qwen",
    "<|fim_prefix|>",
    "<|fim_suffix|>",
    "<|fim_middle|>",
    file_sep="<|file_sep|>",
    repo_name="<|repo_name|>",
    stops=(
        "<|endoftext|>",
        "<|fim_prefix|>",
        "<|fim_middle|>",
        "<|fim_suffix|>",
        "<|fim_pad|>",
        "<|file_sep|>",
    ),
)
STARCODER = Family(
    "starcoder",
    "<fim_prefix>",
    "<fim_suffix>",
    "<fim_middle>",
    file_sep="<file_sep>",
    repo_name="<repo_name>",
    stops=("<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<file_sep>", "<|endoftext|>"),
)
CODELLAMA = Family("codellama", "<PRE> ", " <SUF>", " <MID>", stops=("<PRE>", "<SUF>", "<MID>", "<EOT>"))
CODESTRAL = Family("codestral", "[PREFIX]", "[SUFFIX]", "", stops=("[PREFIX]", "[SUFFIX]"))
CODESTRAL_FILE = "+++++ "  # Codestral's multi-file header, inside the prefix

FAMILIES = (DEEPSEEK, QWEN, STARCODER, CODELLAMA, CODESTRAL)


@dataclass
class RawFim:
    """What a raw FIM prompt carries."""

    family: str
    prefix: str  # including any text after the middle token (the start of the middle)
    suffix: str
    context: str  # everything the prompt holds before the current file's prefix
    extra: list[dict[str, str]] = field(default_factory=list)


def family_named(name: str) -> Family:
    """The family called name (deepseek, qwen, starcoder, codellama, codestral)."""
    for fam in FAMILIES:
        if fam.name == name:
            return fam
    raise ValueError(f"unknown FIM family {name!r}")


def render(
    family: Family, prefix: str, suffix: str, extra: list[dict[str, str]] | None = None, path: str = "file"
) -> str:
    """A raw FIM prompt as the family lays it out, other files (if any) first, path the current file."""
    files = extra or []
    if family is CODESTRAL:
        head = "".join(f"{CODESTRAL_FILE}{f.get('filename', '')}\n{f['text']}\n\n" for f in files)
        if files:
            head += f"{CODESTRAL_FILE}{path}\n"
        return f"[SUFFIX]{suffix}[PREFIX]{head}{prefix}"
    context = ""
    if files and family.file_sep:
        context = (
            f"{family.repo_name}myproject\n"
            + "".join(f"{family.file_sep}{f.get('filename', '')}\n{f['text']}\n" for f in files)
            + f"{family.file_sep}{path}\n"
        )
    elif files:
        context = "".join(f["text"] + "\n" for f in files)
    return f"{context}{family.prefix}{prefix}{family.suffix}{suffix}{family.middle}"


def parse(prompt: str) -> RawFim | None:
    """Prefix, suffix and context of a raw FIM prompt of a known family, or None."""
    if CODESTRAL.suffix in prompt and CODESTRAL.prefix in prompt:
        return _parse_codestral(prompt)
    for fam in (DEEPSEEK, QWEN, STARCODER, CODELLAMA):
        found = _parse_family(fam, prompt)
        if found is not None:
            return found
    return None


def _parse_family(fam: Family, prompt: str) -> RawFim | None:
    p, s, m = prompt.find(fam.prefix), prompt.find(fam.suffix), prompt.find(fam.middle)
    if fam is CODELLAMA and p < 0 and prompt.startswith(fam.prefix.strip()):
        p = 0  # "<PRE>" at the very start with no space is still CodeLlama
    if min(p, s, m) < 0:
        return None
    if p < s < m:  # prefix, suffix, middle
        prefix = prompt[p + len(fam.prefix) : s] + prompt[m + len(fam.middle) :]
        suffix = prompt[s + len(fam.suffix) : m]
        first = p
    elif s < p < m:  # suffix first
        suffix = prompt[s + len(fam.suffix) : p]
        prefix = prompt[p + len(fam.prefix) : m] + prompt[m + len(fam.middle) :]
        first = s
    else:
        return None
    context = prompt[:first]
    return RawFim(fam.name, prefix, suffix, context, _files(fam, context))


def _files(fam: Family, context: str) -> list[dict[str, str]]:
    """Other files in a repo-level preamble; the current file's empty entry is dropped."""
    if not context:
        return []
    if not fam.file_sep or fam.file_sep not in context:
        return [{"filename": "", "text": context}] if context.strip() else []
    files: list[dict[str, str]] = []
    for chunk in context.split(fam.file_sep)[1:]:
        name, _, text = chunk.partition("\n")
        if text.endswith("\n"):
            text = text[:-1]
        if text:
            files.append({"filename": name, "text": text})
    return files


def _parse_codestral(prompt: str) -> RawFim | None:
    s, p = prompt.find(CODESTRAL.suffix), prompt.find(CODESTRAL.prefix)
    if not s < p:
        return None
    suffix = prompt[s + len(CODESTRAL.suffix) : p]
    body = prompt[p + len(CODESTRAL.prefix) :]
    extra: list[dict[str, str]] = []
    context = prompt[:s]
    if body.startswith(CODESTRAL_FILE):
        blocks = body[len(CODESTRAL_FILE) :].split("\n" + CODESTRAL_FILE)
        *others, current = blocks
        for block in others:
            name, _, text = block.partition("\n")
            extra.append({"filename": name, "text": text.rstrip("\n")})
        context += body[: len(body) - len(current) - len(CODESTRAL_FILE)]
        _, _, body = current.partition("\n")
    return RawFim("codestral", body, suffix, context, extra)
