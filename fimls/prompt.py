"""Deciding whether and how to complete, and cleaning up what the model returns.

Everything here is pure: strings in, strings out.
"""

from __future__ import annotations

import enum
import re

import attrs

from fimls.config import Multiline

CLOSERS = frozenset(")]}>\"'`;,")
_WORD = re.compile(r"\w")
_TRAILING_WORD = re.compile(r"\w+$")
_MAX_STOPS = 16


class Mode(enum.Enum):
    """How much text to ask for."""

    SINGLE = "single"
    MULTI = "multi"


@attrs.frozen
class Plan:
    """The decision for one cursor position."""

    mode: Mode
    replace: int
    """Code points after the cursor that the suggestion replaces (closers only)."""


def plan(line_prefix: str, line_suffix: str, multiline: Multiline = Multiline.AUTO) -> Plan | None:
    """Decide whether to complete at the cursor, and in which mode.

    ``None`` means completing makes no sense here: a word character follows the cursor.
    ``auto`` asks for more than one line where nothing but closers (brackets, quotes, ``;``,
    ``,``) follows the cursor, and completes the line otherwise; ``always`` asks for more lines
    with code right of the cursor too (it stays after the suggestion); ``never`` stops at the
    end of the line.
    """
    if line_suffix[:1] and _WORD.match(line_suffix[0]):
        return None
    rest = line_suffix.rstrip()
    closers_only = all(ch in CLOSERS or ch.isspace() for ch in rest)
    replace = len(rest) if closers_only else 0
    if multiline is Multiline.NEVER or (multiline is Multiline.AUTO and not closers_only):
        return Plan(Mode.SINGLE, replace)
    return Plan(Mode.MULTI, replace)


def word_before(line_prefix: str) -> str:
    """The part of the current word already typed (for classic completion ranges)."""
    match = _TRAILING_WORD.search(line_prefix)
    return match.group(0) if match else ""


def indentation(line: str) -> str:
    """Leading whitespace of ``line``."""
    return line[: len(line) - len(line.lstrip(" \t"))]


_TOP_LEVEL = {
    "python": ("def ", "class ", "@", "if __name__"),
    "javascript": ("function ", "export ", "class "),
    "typescript": ("function ", "export ", "class ", "interface "),
    "javascriptreact": ("function ", "export ", "class "),
    "typescriptreact": ("function ", "export ", "class ", "interface "),
    "go": ("func ", "type "),
    "rust": ("fn ", "pub fn ", "impl ", "mod "),
    "c": ("int ", "void ", "static "),
    "cpp": ("int ", "void ", "static "),
    "java": ("public ", "private "),
}


def stop_sequences(mode: Mode, line_prefix: str, language_id: str) -> tuple[str, ...]:
    """Stop strings for the API (at most 16).

    Single-line stops at the newline. Multi-line stops at two blank lines; inside a block
    (an indented cursor line) also where a new top-level definition of the language begins.
    At the top level the next definition is what to suggest, and an answer may start with a
    blank line (the cursor on one, or at the end of a block), so one blank line is no stop.
    """
    if mode is Mode.SINGLE:
        return ("\n",)
    stops = ["\n\n\n"]
    if indentation(line_prefix):
        stops += ["\n" + keyword for keyword in _TOP_LEVEL.get(language_id, ())]
    return tuple(stops[:_MAX_STOPS])


@attrs.frozen
class Context:
    """What post-processing needs to know about the cursor."""

    line_prefix: str
    line_suffix: str
    suffix: str
    """The suffix window (starts with ``line_suffix``)."""
    mode: Mode


def postprocess(text: str, ctx: Context) -> str | None:
    """Clean the model's text; ``None`` when nothing useful is left."""
    text = text.replace("\r\n", "\n")
    if ctx.mode is Mode.SINGLE:
        text = text.split("\n", 1)[0]
    else:
        text = _limit_scope(text, ctx.line_prefix)
    text = _strip_suffix_overlap(text, ctx)
    text = _drop_repeated_lines(text, ctx)
    text = text.rstrip()
    if not text.strip():
        return None
    return text


def _strip_suffix_overlap(text: str, ctx: Context) -> str:
    """Remove a tail of ``text`` that repeats the start of what follows the cursor."""
    head = ctx.line_suffix.strip() if ctx.mode is Mode.SINGLE else ctx.suffix.lstrip(" \t")
    if not head:
        return text
    trimmed = text.rstrip()
    best = 0
    limit = min(len(trimmed), len(head))
    for size in range(1, limit + 1):
        if trimmed.endswith(head[:size]):
            best = size
    if best == 0:
        return text
    overlap = head[:best].strip()
    if all(ch in CLOSERS for ch in overlap):
        # Closers are only a repeat when they close something opened before the cursor:
        # in "print(fo|)", the ")" of "o(1)" closes the model's own "(".
        if not _closes_outside(trimmed, overlap):
            return text
    elif len(overlap) <= 1:
        return text  # one shared letter or digit is a coincidence, not a repeat
    return trimmed[: len(trimmed) - best]


_OPENERS = {")": "(", "]": "[", "}": "{"}


def _closes_outside(text: str, closers: str) -> bool:
    """Whether every bracket and quote in ``closers`` is left unmatched by ``text`` itself."""
    stack: list[str] = []
    unmatched = dict.fromkeys(_OPENERS, 0)
    for ch in text:
        if ch in "([{":
            stack.append(ch)
        elif ch in _OPENERS:
            if stack and stack[-1] == _OPENERS[ch]:
                stack.pop()
            else:
                unmatched[ch] += 1
    for ch in closers:
        if ch in unmatched:
            if unmatched[ch] == 0:
                return False
            unmatched[ch] -= 1
        elif ch in "'\"`" and text.count(ch) % 2 == 0:
            return False
    return True


def _meaningful(line: str) -> bool:
    return any(ch.isalnum() for ch in line)


def _drop_repeated_lines(text: str, ctx: Context) -> str:
    """Cut the suggestion where it starts repeating the next non-empty line."""
    after = ctx.suffix[len(ctx.line_suffix) :].split("\n")
    following = next((line.strip() for line in after if line.strip()), "")
    if not following or not _meaningful(following):
        return text
    lines = text.split("\n")
    for index, line in enumerate(lines):
        candidate = (ctx.line_prefix + line) if index == 0 else line
        if candidate.strip() == following:
            return "\n".join(lines[:index])
    return text


_CONTINUATIONS = ("else", "elif ", "except", "finally", "} else", "}else", "} catch", "catch")
_OPENS_BLOCK = re.compile(r"[:{(\[]\s*$|\b(then|do)\s*$")


def _limit_scope(text: str, line_prefix: str) -> str:
    """Keep a multi-line suggestion inside the indentation scope of the cursor line."""
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    first_line = line_prefix + lines[0]
    base = len(indentation(first_line)) if first_line.strip() else len(line_prefix)
    opened = bool(_OPENS_BLOCK.search(first_line))
    kept = [lines[0]]
    for line in lines[1:]:
        stripped = line.strip()
        width = len(indentation(line))
        if stripped and width < base:
            break
        if stripped and width == base and opened:
            # The block opened on the cursor line ends here: keep its closing line and
            # "else:"-like continuations, stop at anything else.
            if stripped.startswith(_CONTINUATIONS):
                kept.append(line)
                continue
            if stripped[0] in ")]}" or stripped.startswith("end"):
                kept.append(line)
            break
        kept.append(line)
    return "\n".join(kept)


def is_complete(text: str, mode: Mode, line_prefix: str) -> bool:
    """True once a streamed answer cannot change what :func:`postprocess` keeps."""
    if mode is Mode.SINGLE:
        return "\n" in text
    if "\n" not in text:
        return False
    complete_part = text[: text.rfind("\n")]
    return _limit_scope(complete_part, line_prefix) != complete_part
