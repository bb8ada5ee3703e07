"""Choosing windows within the budget and ordering them for the prompt cache. Pure functions.

Filling: the sources fill the budget one after the other in :data:`FILL_ORDER`, definitions of
names used near the cursor first, then open documents, then recent edits (strict priority gave a
higher definition recall than taking turns, see docs/benchmarks.md); each source's candidates go
by tier, score, then path and line. A file already used is skipped (one window per file); a
window longer than what is left is cut to whole lines, and one that would keep fewer than
:data:`MIN_LINES` lines is passed over for a smaller one.

Order in the block (:func:`select` returns it): groups in :data:`LAYOUT_ORDER`, open documents
first (they change least), then definitions, then recent edits (they change most); inside a
group the best-ranked window comes last, nearest the cursor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fimls.context.model import EDITS, ELISION, IMPORTS, OPEN, Candidate, Chunk

FILL_ORDER = (IMPORTS, OPEN, EDITS)
LAYOUT_ORDER = (OPEN, IMPORTS, EDITS)
MIN_LINES = 3


def fit(lines: Sequence[str], budget: int, min_lines: int = MIN_LINES) -> tuple[str, int] | None:
    """(text, index of its first line in ``lines``): the leading whole lines of ``lines`` (blank
    lines at either end dropped) that fit in ``budget`` characters, each ending in ``\\n``;
    ``None`` if fewer than ``min_lines`` (or all of them, when there are fewer) fit."""
    first = 0
    last = len(lines)
    while first < last and not lines[first].strip():
        first += 1
    while last > first and not lines[last - 1].strip():
        last -= 1
    kept: list[str] = []
    used = 0
    for line in lines[first:last]:
        if used + len(line) + 1 > budget:
            break
        kept.append(line)
        used += len(line) + 1
    while kept and (not kept[-1].strip() or kept[-1] == ELISION):
        kept.pop()
    if not kept or len(kept) < min(min_lines, last - first):
        return None
    return "\n".join(kept) + "\n", first


def select(
    pools: Mapping[str, Sequence[Candidate]],
    budget: int,
    *,
    fill_order: Sequence[str] = FILL_ORDER,
    layout_order: Sequence[str] = LAYOUT_ORDER,
) -> tuple[Chunk, ...]:
    """The chunks to send, in block order (see the module docstring)."""
    picked: dict[str, list[Chunk]] = {source: [] for source in fill_order}
    used: set[str] = set()
    remaining = budget
    for source in fill_order:
        for candidate in sorted(pools.get(source, ()), key=lambda c: c.key):
            if remaining <= 0:
                break
            if candidate.uri in used:
                continue
            fitted = fit(candidate.lines, remaining)
            if fitted is None:
                continue
            text, skipped = fitted
            used.add(candidate.uri)
            remaining -= len(text)
            spans = candidate.spans(skipped, text.count("\n"))
            picked[source].append(Chunk(candidate.path, text, source, candidate.uri, spans[0][0], spans))
    ordered: list[Chunk] = []
    for source in layout_order:
        ordered.extend(reversed(picked.get(source, [])))
    return tuple(ordered)
