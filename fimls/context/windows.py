"""Fixed-size line windows over a text, indexed compactly, and their similarity to a query.

A window is ``size`` lines starting on a multiple of ``step``; the last window of a text ends at
its last line, so every line is in some window. The text is tokenized once, in blocks of
``step`` lines; a window is the union of size/step blocks. The index keeps each block's
identifiers as a tuple of interned strings and each window's identifier count, not a set per
window: fifty open 6,000-line files would otherwise hold some 130 MB of sets.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NamedTuple

import attrs

from fimls.context.tokens import token_set

MIN_REPEAT_LINE = 4
"""Lines shorter than this (stripped) say nothing about repetition: ``}``, ``else:``, ``end``."""


class Scored(NamedTuple):
    """Lines ``start`` to ``end`` (exclusive) of a text and their Jaccard similarity to a query."""

    score: float
    start: int
    end: int


@attrs.frozen
class Windows:
    """The windows of one text (see the module docstring)."""

    step: int
    per_window: int
    line_count: int
    blocks: tuple[tuple[str, ...], ...]
    sizes: tuple[int, ...]
    """The number of distinct identifiers of each window, in order."""

    def span(self, index: int) -> tuple[int, int]:
        """The lines of window ``index``."""
        start = index * self.step
        return start, min(start + self.per_window * self.step, self.line_count)

    def scored(self, query: frozenset[str]) -> list[Scored]:
        """Every window that shares an identifier with ``query``, with its Jaccard similarity."""
        if not query:
            return []
        hits = [[token for token in block if token in query] for block in self.blocks]
        per_window, wanted = self.per_window, len(query)
        counts: dict[str, int] = {}
        for block in hits[:per_window]:
            for token in block:
                counts[token] = counts.get(token, 0) + 1
        found: list[Scored] = []
        for index, size in enumerate(self.sizes):
            common = len(counts)
            if common:
                found.append(Scored(common / (size + wanted - common), *self.span(index)))
            for token in hits[index]:  # slide: the first block leaves, the next one enters
                if counts[token] == 1:
                    del counts[token]
                else:
                    counts[token] -= 1
            if index + per_window < len(hits):
                for token in hits[index + per_window]:
                    counts[token] = counts.get(token, 0) + 1
        return found


def windows(lines: Sequence[str], size: int, step: int) -> Windows:
    """Index the windows of ``lines`` (``step`` divides ``size``; see the module docstring)."""
    if size <= 0 or step <= 0 or size % step:
        raise ValueError(f"window size {size} must be a positive multiple of the step {step}")
    count = len(lines)
    intern = sys.intern
    blocks = tuple(
        tuple(intern(token) for token in token_set("".join(lines[at : at + step])))
        for at in range(0, count, step)
    )
    per_window = size // step
    sizes: list[int] = []
    for first in range(len(blocks)):
        sizes.append(len(frozenset().union(*blocks[first : first + per_window])))
        if first * step + size >= count:
            break
    return Windows(step, per_window, count, blocks, tuple(sizes))


def repeat_lines(lines: Sequence[str]) -> frozenset[str]:
    """The stripped lines of ``lines`` long enough to count in :func:`repeats`."""
    return frozenset(s for s in (line.strip() for line in lines) if len(s) >= MIN_REPEAT_LINE)


def repeats(lines: Sequence[str], seen: frozenset[str], share: float = 0.5) -> bool:
    """Whether at least ``share`` of the meaningful lines of ``lines`` are already in ``seen``.

    A window that repeats the prompt wastes the budget and nudges the model to copy it.
    """
    meaningful = [s for s in (line.strip() for line in lines) if len(s) >= MIN_REPEAT_LINE]
    if not meaningful:
        return True
    return sum(1 for s in meaningful if s in seen) >= share * len(meaningful)
