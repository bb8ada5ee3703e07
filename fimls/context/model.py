"""The values the context package passes around, and the privacy gate it needs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import attrs

ELISION = "..."
"""The line that stands for lines left out between two excerpts of one file."""

OPEN = "open"
EDITS = "edits"
IMPORTS = "imports"


class Gate(Protocol):
    """The privacy gate every context source passes (``fimls.privacy.PrivacyGate`` fits it)."""

    @property
    def folders(self) -> Sequence[Path]:
        """The workspace folders (absolute, symlinks resolved)."""
        ...

    def check(self, uri: str, language_id: str | None = None) -> str | None:
        """Why the document at ``uri`` must not be sent, or ``None``."""
        ...

    def check_path(self, path: Path, language_id: str | None = None) -> str | None:
        """Why the file at ``path`` must not be sent, or ``None``."""
        ...

    def in_workspace(self, target: str | Path) -> bool:
        """Whether ``target`` (a URI or a path), symlinks resolved, lies inside a workspace folder."""
        ...


@attrs.frozen(cache_hash=True)
class Chunk:
    """One snippet of another file, as every layout renders it."""

    path: str
    """Workspace-relative posix path (for headers and ``fimls.status``)."""
    text: str
    """Whole lines, each ending with ``\\n``."""
    source: str
    """``"open"``, ``"edits"`` or ``"imports"``."""
    uri: str
    line: int = 0
    """Zero-based line of the file where ``text`` starts."""
    spans: tuple[tuple[int, int], ...] = ()
    """The line ranges of the file (end exclusive) that ``text`` holds, in order; between two
    ranges ``text`` has an elision line (:data:`ELISION`)."""


@attrs.frozen
class Candidate:
    """A window a source proposes; the selection turns the chosen ones into chunks."""

    source: str
    uri: str
    path: str
    start: int
    lines: tuple[str, ...]
    """The window's lines without terminators."""
    score: float
    tier: int = 0
    """Candidates of a lower tier go first whatever their score (same language before others)."""
    numbers: tuple[int, ...] = ()
    """The file's line number of each of ``lines`` (-1 for an elision line); empty when the lines
    are contiguous from ``start``."""

    def spans(self, first: int, count: int) -> tuple[tuple[int, int], ...]:
        """The file's line ranges held by ``lines[first : first + count]``."""
        numbers = self.numbers or tuple(range(self.start, self.start + len(self.lines)))
        spans: list[tuple[int, int]] = []
        for number in numbers[first : first + count]:
            if number < 0:
                continue
            if spans and spans[-1][1] == number:
                spans[-1] = (spans[-1][0], number + 1)
            else:
                spans.append((number, number + 1))
        return tuple(spans)

    @property
    def key(self) -> tuple[int, float, str, int]:
        """Ranking key: tier, best score, then path and line for a stable order."""
        return (self.tier, -self.score, self.path, self.start)
