"""Documents with LSP-correct lines, positions in any encoding, and cursor snapshots.

LSP breaks lines only at ``\\n``, ``\\r\\n`` and ``\\r``; ``str.splitlines`` also breaks at
``\\f``, ``\\v``, ``\\x1c``-``\\x1e``, ``\\x85``, U+2028 and U+2029, so this module never uses it.
A document is a list of lines, each keeping its terminator, so an edit touches only the
lines it spans and a keystroke costs time proportional to the line, not the file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import attrs

_BREAK = re.compile(r"\r\n|\r|\n")

UTF8 = "utf-8"
UTF16 = "utf-16"
UTF32 = "utf-32"


def split_lines(text: str) -> list[str]:
    """Split at LSP line breaks, keeping terminators; always returns at least one line."""
    lines: list[str] = []
    start = 0
    for match in _BREAK.finditer(text):
        lines.append(text[start : match.end()])
        start = match.end()
    lines.append(text[start:])
    return lines


def strip_eol(line: str) -> str:
    """The line without its terminator."""
    if line.endswith("\r\n"):
        return line[:-2]
    if line.endswith(("\n", "\r")):
        return line[:-1]
    return line


def units(text: str, encoding: str) -> int:
    """Length of ``text`` in code units of ``encoding``."""
    if encoding == UTF32 or text.isascii():
        return len(text)
    if encoding == UTF8:
        return len(text.encode("utf-8", "surrogatepass"))
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def column_to_index(line: str, character: int, encoding: str) -> int:
    """Code-point index in ``line`` (no terminator) for a client column.

    Columns past the end clamp to the end; a column inside a character (the middle of a
    surrogate pair or a UTF-8 sequence) rounds down to that character's start.
    """
    if character <= 0:
        return 0
    if encoding == UTF32 or line.isascii():
        return min(character, len(line))
    count = 0
    for index, ch in enumerate(line):
        if encoding == UTF8:
            width = len(ch.encode("utf-8", "surrogatepass"))
        else:
            width = 2 if ord(ch) > 0xFFFF else 1
        if count + width > character:
            return index
        count += width
    return len(line)


@attrs.frozen
class Snapshot:
    """What a completion needs from the document, captured before the first ``await``."""

    uri: str
    version: int
    language_id: str
    line: int
    """Zero-based line of the cursor."""
    column: int
    """Cursor column in code points."""
    line_prefix: str
    """Text of the cursor line before the cursor."""
    line_suffix: str
    """Text of the cursor line after the cursor, without the terminator."""
    prefix: str
    """Prompt window: text before the cursor, starting at a line start."""
    suffix: str
    """Suffix window: text after the cursor, ending at a line end."""
    encoding: str = UTF16
    context: tuple[tuple[str, str], ...] = ()
    """Code from other files to send along, as (workspace-relative path, text), in order."""
    path: str = ""
    """The document's workspace-relative path (empty outside the workspace)."""
    repo: str = ""
    """The name of the workspace folder that holds it."""

    def to_client(self, column: int) -> int:
        """Convert a code-point column on the cursor line to client units."""
        text = self.line_prefix + self.line_suffix
        return units(text[:column], self.encoding)


class Document:
    """An open text document kept as LSP lines."""

    __slots__ = ("language_id", "lines", "uri", "version")

    def __init__(self, uri: str, text: str, version: int = 0, language_id: str = "") -> None:
        self.uri = uri
        self.version = version
        self.language_id = language_id
        self.lines = split_lines(text)

    @property
    def text(self) -> str:
        """The whole text (O(size); not for the keystroke path)."""
        return "".join(self.lines)

    def line_text(self, line: int) -> str:
        """Line ``line`` without its terminator."""
        return strip_eol(self.lines[line])

    def index_at(self, line: int, character: int, encoding: str) -> tuple[int, int] | None:
        """(line, code-point column) of a client position; ``None`` if the line does not exist.

        A column past the end of its line clamps to the line end.
        """
        if line < 0 or character < 0 or line >= len(self.lines):
            return None
        return line, column_to_index(self.line_text(line), character, encoding)

    def apply_change(
        self,
        text: str,
        start: tuple[int, int] | None = None,
        end: tuple[int, int] | None = None,
        encoding: str = UTF16,
    ) -> None:
        """Apply a content change; ``start``/``end`` are client (line, character) pairs."""
        if start is None or end is None:
            self.lines = split_lines(text)
            return
        last = len(self.lines) - 1
        s_line, s_char = self._clamp(start, encoding)
        e_line, e_char = self._clamp(end, encoding)
        if (e_line, e_char) < (s_line, s_char):
            s_line, s_char, e_line, e_char = e_line, e_char, s_line, s_char
        # Re-split one line on each side too: an edit can join or split a "\r\n" pair.
        lo = max(0, s_line - 1)
        hi = min(last, e_line + 1)
        head = "".join(self.lines[lo:s_line]) + self.lines[s_line][:s_char]
        tail = self.lines[e_line][e_char:] + "".join(self.lines[e_line + 1 : hi + 1])
        replacement = split_lines(head + text + tail)
        if hi < last:
            # The region ends with a terminator, so splitting left an empty last piece
            # that belongs to the untouched line after it.
            replacement.pop()
        self.lines[lo : hi + 1] = replacement

    def _clamp(self, pos: tuple[int, int], encoding: str) -> tuple[int, int]:
        line, character = pos
        if line < 0:
            return 0, 0
        if line >= len(self.lines):
            last = len(self.lines) - 1
            return last, len(self.lines[last])
        return line, column_to_index(self.line_text(line), character, encoding)

    def snapshot(
        self,
        line: int,
        column: int,
        *,
        encoding: str,
        max_prefix: int,
        max_suffix: int,
        anchor: int,
    ) -> Snapshot:
        """Capture the cursor context; ``column`` is in code points (see :meth:`index_at`)."""
        current = self.line_text(line)
        line_prefix = current[:column]
        line_suffix = current[column:]
        return Snapshot(
            uri=self.uri,
            version=self.version,
            language_id=self.language_id,
            line=line,
            column=column,
            line_prefix=line_prefix,
            line_suffix=line_suffix,
            prefix=self._prefix_window(line, line_prefix, max_prefix, anchor),
            suffix=self._suffix_window(line, column, max_suffix),
            encoding=encoding,
        )

    def _prefix_window(self, line: int, line_prefix: str, budget: int, anchor: int) -> str:
        if len(line_prefix) >= budget:
            return line_prefix[len(line_prefix) - budget :]
        used = len(line_prefix)
        start = line
        while start > 0 and used + len(self.lines[start - 1]) <= budget:
            start -= 1
            used += len(self.lines[start])
        if start > 0:
            # Round the first line up to the anchor grid, so the prompt's start stays
            # byte-identical while the cursor moves within a few lines.
            aligned = -(-start // anchor) * anchor
            if aligned <= line:
                start = aligned
        return "".join(self.lines[start:line]) + line_prefix

    def _suffix_window(self, line: int, column: int, budget: int) -> str:
        rest = self.lines[line][column:]
        if len(rest) >= budget:
            return rest[:budget]
        parts = [rest]
        used = len(rest)
        for following in self._lines_from(line + 1):
            if used + len(following) > budget:
                break
            parts.append(following)
            used += len(following)
        return "".join(parts)

    def _lines_from(self, start: int) -> Iterator[str]:
        for index in range(start, len(self.lines)):
            yield self.lines[index]
