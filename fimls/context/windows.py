"""Fixed-size line windows over a text and their identifier sets.

A window is ``size`` lines starting on a multiple of ``step``; the last window of a text ends at
its last line, so every line is in some window. Token sets are built from blocks of ``step``
lines, so a text of n lines is tokenized once and each window is the union of size/step blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from fimls.context.tokens import token_set, union

MIN_REPEAT_LINE = 4
"""Lines shorter than this (stripped) say nothing about repetition: ``}``, ``else:``, ``end``."""


@attrs.frozen
class Window:
    """Lines ``start`` to ``end`` (exclusive) of a text, and their identifiers."""

    start: int
    end: int
    tokens: frozenset[str]


def windows(lines: Sequence[str], size: int, step: int) -> list[Window]:
    """The windows of ``lines`` (``step`` divides ``size``; see the module docstring)."""
    if size <= 0 or step <= 0 or size % step:
        raise ValueError(f"window size {size} must be a positive multiple of the step {step}")
    count = len(lines)
    blocks = [token_set("".join(lines[at : at + step])) for at in range(0, count, step)]
    per_window = size // step
    result: list[Window] = []
    for first in range(len(blocks)):
        start = first * step
        end = min(start + size, count)
        result.append(Window(start, end, union(blocks[first : first + per_window])))
        if end >= count:
            break
    return result


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
