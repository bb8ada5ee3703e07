"""A bounded ring of recently edited and recently viewed line ranges (llama.vim's idea).

The ring holds ranges, not text: the text is read from the open document when the context block
is recomputed, so a keystroke costs a scan of at most ``capacity`` entries. A new range that
overlaps a range of the same document replaces it (the cheap near-duplicate rule); near-duplicate
text across documents is dropped when the block is built (see ``ContextBuilder``).
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Span:
    """Lines ``start`` to ``end`` (exclusive) of the document at ``uri``."""

    uri: str
    start: int
    end: int


class Ring:
    """Recently touched spans, oldest first, at most ``capacity`` of them, each ``lines`` long."""

    def __init__(self, capacity: int = 16, lines: int = 40) -> None:
        self.capacity = capacity
        self.lines = lines
        self._spans: list[Span] = []

    @property
    def spans(self) -> tuple[Span, ...]:
        """The spans, oldest first."""
        return tuple(self._spans)

    def touch(self, uri: str, first: int, last: int) -> None:
        """Record that lines ``first``..``last`` (inclusive) of ``uri`` were edited or viewed."""
        first, last = max(0, min(first, last)), max(0, first, last)
        if last - first + 1 >= self.lines:
            start = first
        else:
            start = max(0, (first + last + 1) // 2 - self.lines // 2)
        span = Span(uri, start, start + self.lines)
        self._spans = [s for s in self._spans if s.uri != uri or s.end <= span.start or s.start >= span.end]
        self._spans.append(span)
        del self._spans[: -self.capacity]

    def shift(self, uri: str, after: int, delta: int) -> None:
        """Move the spans of ``uri`` that start after line ``after`` by ``delta`` lines."""
        if not delta:
            return
        self._spans = [
            attrs.evolve(s, start=max(0, s.start + delta), end=max(1, s.end + delta))
            if s.uri == uri and s.start > after
            else s
            for s in self._spans
        ]

    def forget(self, uri: str) -> None:
        """Drop the spans of a closed document."""
        self._spans = [s for s in self._spans if s.uri != uri]
