"""How the chosen chunks are written into a request, per kind of backend. Pure functions.

- Suffix-field APIs (DeepSeek, OpenAI-compatible, Ollama, Codestral): :func:`comment_block`, a
  text put before the prompt. Each chunk is a comment in the current file's language headed by
  its path. Nothing in it can end the comment early: line comments get a marker on every line,
  block comments have their terminator broken up, characters that some languages read as line
  breaks (U+2028, U+2029, NEL, FF, VT, FS/GS/RS) become spaces, and a block that would end in a
  backslash (which continues a comment in C and Make) gets one more empty comment line. Languages
  whose comment syntax is not in the table (JSON, plain text, unknown ids) get no block at all:
  no framing is safe for them.
- llama.cpp ``/infill``: :func:`infill_extra`, the ``input_extra`` list.
- Raw templates with file separators (Qwen ``<|file_sep|>``, StarCoder2 ``<file_sep>``): the
  backend renders ``(chunk.path, chunk.text)`` in the order given.

All three render the same ordered chunks; every chunk's text is whole lines ending in ``\\n``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from fimls.context.model import Chunk
from fimls.document import split_lines, strip_eol

_LINE_COMMENTS: dict[str, list[str]] = {
    "#": (
        "python shellscript ruby perl perl6 raku r yaml toml dockerfile makefile powershell coffeescript "
        "elixir julia nim crystal cmake graphql tcl properties gdscript starlark bazel nix terraform hcl"
    ).split(),
    "//": (
        "c cpp csharp java javascript javascriptreact typescript typescriptreact go rust swift kotlin scala "
        "dart php objective-c objective-cpp groovy fsharp jsonc scss less zig solidity proto cuda-cpp hlsl "
        "glsl d haxe"
    ).split(),
    "--": "sql lua haskell ada elm purescript vhdl".split(),
    ";": "clojure lisp scheme racket commonlisp fennel ini".split(),
    "%": "latex tex bibtex erlang matlab prolog".split(),
    "!": ["fortran"],
    "'": ["vb"],
}
LINE_COMMENT = {language: marker for marker, languages in _LINE_COMMENTS.items() for language in languages}
"""Language id -> line comment marker."""

BLOCK_COMMENT = {
    "css": ("/*", "*/"),
    "html": ("<!--", "-->"),
    "xml": ("<!--", "-->"),
    "xsl": ("<!--", "-->"),
    "markdown": ("<!--", "-->"),
    "vue": ("<!--", "-->"),
    "svelte": ("<!--", "-->"),
}
"""Language id -> (opener, closer), for languages without line comments."""

_ODD_BREAKS = re.compile("[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_NEUTRAL = {
    "*/": (re.compile(r"\*/"), "* /"),
    # XML forbids "--" anywhere in a comment; breaking every pair also breaks "-->" and "--!>".
    "-->": (re.compile(r"-(?=-)"), "- "),
}


def comment_block(chunks: Sequence[Chunk], language_id: str) -> str:
    """The chunks as comments of ``language_id``, to put before the prompt ("" if none or unknown)."""
    return _comment_block(tuple(chunks), language_id)


@functools.lru_cache(maxsize=32)
def _comment_block(chunks: tuple[Chunk, ...], language_id: str) -> str:
    if not chunks:
        return ""
    marker = LINE_COMMENT.get(language_id)
    if marker is not None:
        return _line_comments(chunks, marker)
    block = BLOCK_COMMENT.get(language_id)
    if block is not None:
        return _block_comments(chunks, *block)
    return ""


def _lines(text: str) -> list[str]:
    lines = [strip_eol(line) for line in split_lines(_ODD_BREAKS.sub(" ", text))]
    if len(lines) > 1 and not lines[-1]:
        lines.pop()  # the empty piece after the final line break
    return lines


def _line_comments(chunks: tuple[Chunk, ...], marker: str) -> str:
    out: list[str] = []
    for chunk in chunks:
        out.append(f"{marker} Path: {_ODD_BREAKS.sub(' ', chunk.path)}")
        out.extend(f"{marker} {line}" if line else marker for line in _lines(chunk.text))
    if out[-1].endswith("\\"):
        out.append(marker)
    return "\n".join(out) + "\n"


def _block_comments(chunks: tuple[Chunk, ...], opener: str, closer: str) -> str:
    pattern, replacement = _NEUTRAL[closer]
    out: list[str] = []
    for chunk in chunks:
        path = pattern.sub(replacement, _ODD_BREAKS.sub(" ", chunk.path))
        out.append(f"{opener} Path: {path}")
        out.extend(pattern.sub(replacement, line) for line in _lines(chunk.text))
        out.append(closer)
    return "\n".join(out) + "\n"


def infill_extra(chunks: Sequence[Chunk]) -> list[dict[str, str]]:
    """llama.cpp ``/infill`` ``input_extra``: ``{"filename", "text"}`` per chunk, in order."""
    return [{"filename": chunk.path, "text": chunk.text} for chunk in chunks]
