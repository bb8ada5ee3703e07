"""The context block: chosen on coarse events, byte-identical in between.

The server tells the builder about documents (``opened``, ``closed``, ``saved``, ``edited``,
``viewed``); the engine asks ``chunks_for(uri, line)`` on every keystroke. The answer is a
cached tuple, recomputed only when

- a document was opened, closed or saved, or :meth:`ContextBuilder.invalidate` was called
  (settings, workspace folders or ignore files changed);
- the current document's line count moved ``refresh_lines`` or more since the last recompute
  (typing or deleting lines), or the cursor moved ``jump_lines`` or more;
- the current document is another one than before and has no valid cached block of its own
  (each document keeps its last block, so going back and forth keeps the prompt cache warm).

Edits and views only feed the ring between those events, so the block a keystroke sees stays the
same bytes and the backend's prompt cache keeps hitting.

Sources (each can be turned off):

- open documents of the workspace other than the current one (the ``max_open_documents`` most
  recently used), same language family first: the best window of each by Jaccard similarity
  over identifiers to the ``query_lines`` lines up to the cursor (windows are indexed when a
  document is opened, and again when its version changed; only those of the most recently used
  documents are kept);
- the ring of recently edited and viewed ranges (:mod:`fimls.context.ring`); a range that is
  more than 0.9 similar (Dice) to a newer one is dropped, and ranges of the current document
  are used only outside the part the prompt and suffix already send;
- definitions of names used near the cursor, found through the imports and in the open
  documents (:mod:`fimls.context.imports`).

The budget is filled and the block laid out as :mod:`fimls.context.selection` says: definitions
first, then open documents, then edits; in the block, open documents first and edits last.

Every source passes the gate: a document contributes only if ``gate.check(uri, language)``
allows it and it lies inside a workspace folder (so ``untitled:`` buffers and files outside the
folders never contribute, even when open); files on disk are handled by
:class:`fimls.context.imports.Files`. A window at least half of whose meaningful lines already
appear in the prompt or suffix window is skipped (a line-based test: a token-based one would also
drop the definitions of the very names the prompt uses).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import attrs
from cachetools import LRUCache
from pygls import uris

from fimls.context import imports as import_source
from fimls.context import syntax
from fimls.context.model import EDITS, IMPORTS, OPEN, Candidate, Chunk, Gate
from fimls.context.ring import Ring
from fimls.context.selection import FILL_ORDER, select
from fimls.context.tokens import dice, jaccard, token_set
from fimls.context.windows import Scored, Windows, repeat_lines, repeats, windows
from fimls.document import Document, strip_eol

_LANGUAGE_FAMILIES = {
    "javascript": "js",
    "javascriptreact": "js",
    "typescript": "js",
    "typescriptreact": "js",
    "c": "c",
    "cpp": "c",
    "objective-c": "c",
    "objective-cpp": "c",
    "cuda-cpp": "c",
}


def language_family(language_id: str) -> str:
    """Languages whose files help each other (JS and TS, C and C++) share a family."""
    return _LANGUAGE_FAMILIES.get(language_id, language_id)


def _rank(window: Scored) -> tuple[float, int]:
    """Most similar first; among equals, the earliest window."""
    return window.score, -window.start


@attrs.frozen
class Tuning:
    """Sizes and thresholds; the defaults are the ones the evaluation measured."""

    window_lines: int = 60
    window_step: int = 10
    query_lines: int = 30
    refresh_lines: int = 40
    """Lines the current document must grow or shrink by before the block is chosen again: each new
    block is a prompt-cache miss, so it changes rarely."""
    jump_lines: int = 64
    ring_chunks: int = 16
    ring_lines: int = 40
    import_lines: int = 40
    """Lines of one imported file's excerpts, at most."""
    import_excerpt: int = 12
    """Lines of one definition past its first line, at most."""
    duplicate: float = 0.9
    """Dice similarity above which a ring range counts as a copy of a newer one."""
    max_document_lines: int = 20000
    """Open documents longer than this are not scanned."""
    max_open_documents: int = 20
    """Only the most recently used open documents are scanned (as Copilot's neighbour tabs)."""
    max_file_bytes: int = import_source.MAX_BYTES
    max_files: int = import_source.MAX_FILES
    fill_order: tuple[str, ...] = FILL_ORDER
    """The order in which the sources take turns filling the budget."""


@attrs.frozen
class _Entry:
    chunks: tuple[Chunk, ...]
    generation: int
    line: int
    line_count: int


class ContextBuilder:
    """Chooses the chunks of other files to send with a completion (see the module docstring)."""

    def __init__(
        self,
        documents: Mapping[str, Document],
        gate: Gate,
        *,
        open_files: bool = True,
        recent_edits: bool = True,
        imports: bool = True,
        budget_chars: int = 4000,
        prompt_chars: int = 12000,
        suffix_chars: int = 800,
        tuning: Tuning | None = None,
    ) -> None:
        self.documents = documents
        self.gate = gate
        self.tuning = tuning or Tuning()
        self.open_files = open_files
        self.recent_edits = recent_edits
        self.imports = imports
        self.budget_chars = budget_chars
        self.prompt_chars = prompt_chars
        self.suffix_chars = suffix_chars
        self.recomputes = 0
        """How many times the block was chosen afresh (for tests and ``fimls.status``)."""
        self._ring = Ring(self.tuning.ring_chunks, self.tuning.ring_lines)
        self._generation = 0
        self._entries: LRUCache[str, _Entry] = LRUCache(8)
        self._windows: dict[str, tuple[tuple[int, int], Windows]] = {}
        self._line_counts: dict[str, int] = {}
        self._files = import_source.Files(
            gate, max_bytes=self.tuning.max_file_bytes, max_files=self.tuning.max_files
        )
        self._display: LRUCache[str, str] = LRUCache(4096)
        self._last: tuple[Chunk, ...] = ()
        self._recency: dict[str, int] = {}
        self._clock = 0

    # -- settings and events -----------------------------------------------------------------

    def configure(
        self,
        *,
        open_files: bool | None = None,
        recent_edits: bool | None = None,
        imports: bool | None = None,
        budget_chars: int | None = None,
        prompt_chars: int | None = None,
        suffix_chars: int | None = None,
    ) -> None:
        """Change settings (``None`` keeps one); the next block is chosen afresh."""
        if open_files is not None:
            self.open_files = open_files
        if recent_edits is not None:
            self.recent_edits = recent_edits
        if imports is not None:
            self.imports = imports
        if budget_chars is not None:
            self.budget_chars = budget_chars
        if prompt_chars is not None:
            self.prompt_chars = prompt_chars
        if suffix_chars is not None:
            self.suffix_chars = suffix_chars
        self.invalidate()

    def _used(self, uri: str) -> None:
        self._clock += 1
        self._recency[uri] = self._clock

    def invalidate(self) -> None:
        """Choose the next block afresh (call when the gate's folders, ignore files or languages change)."""
        self._generation += 1
        self._display.clear()

    def opened(self, uri: str) -> None:
        """A document was opened (its windows are indexed now, off the keystroke path)."""
        self._used(uri)
        document = self.documents.get(uri)
        if document is not None:
            self._line_counts[uri] = len(document.lines)
            if self.open_files and len(document.lines) <= self.tuning.max_document_lines:
                self._windows_of(document)
            path = uris.to_fs_path(uri)
            if self.imports and path:
                self._files.prepare(path, document)
        self._generation += 1

    def closed(self, uri: str) -> None:
        """A document was closed."""
        self._ring.forget(uri)
        self._line_counts.pop(uri, None)
        self._windows.pop(uri, None)
        self._entries.pop(uri, None)
        self._recency.pop(uri, None)
        self._generation += 1

    def saved(self, uri: str) -> None:
        """A document was saved."""
        self._generation += 1

    def edited(self, uri: str, start_line: int, end_line: int) -> None:
        """Lines ``start_line``..``end_line`` of ``uri`` hold new text (call after the change)."""
        document = self.documents.get(uri)
        if document is None:
            return
        count = len(document.lines)
        previous = self._line_counts.get(uri, count)
        self._line_counts[uri] = count
        self._ring.shift(uri, start_line, count - previous)
        self._used(uri)
        if self.recent_edits:
            self._ring.touch(uri, start_line, end_line)

    def viewed(self, uri: str, line: int) -> None:
        """The user looks at ``line`` of ``uri`` (focus, or a far cursor move)."""
        if uri in self.documents:
            self._used(uri)
            if self.recent_edits:
                self._ring.touch(uri, line, line)

    # -- the block ---------------------------------------------------------------------------

    @property
    def last_paths(self) -> tuple[str, ...]:
        """The paths of the chunks last returned by :meth:`chunks_for`, in block order."""
        return tuple(dict.fromkeys(chunk.path for chunk in self._last))

    def chunks_for(self, uri: str, line: int) -> tuple[Chunk, ...]:
        """The chunks to send with a completion in ``uri`` at ``line`` (cached between coarse events)."""
        document = self.documents.get(uri)
        if document is None:
            self._last = ()
            return ()
        count = len(document.lines)
        entry = self._entries.get(uri)
        if (
            entry is not None
            and entry.generation == self._generation
            and abs(count - entry.line_count) < self.tuning.refresh_lines
            and abs(line - entry.line) < self.tuning.jump_lines
        ):
            self._last = entry.chunks
            return entry.chunks
        chunks = self._compute(document, min(max(line, 0), count - 1))
        self._entries[uri] = _Entry(chunks, self._generation, line, count)
        self._last = chunks
        return chunks

    def display_path(self, uri_or_path: str | Path) -> str | None:
        """The workspace-relative posix path of a URI or path (``None`` outside the workspace)."""
        if isinstance(uri_or_path, Path):
            path: Path | None = uri_or_path
        else:
            fs_path = uris.to_fs_path(uri_or_path)
            path = Path(fs_path) if fs_path else None
        if path is None:
            return None
        key = str(path)
        if key not in self._display:
            real = Path(os.path.realpath(path))
            best: str | None = None
            best_depth = -1
            for folder in self.gate.folders:
                for candidate in (real, path):
                    try:
                        relative = candidate.relative_to(folder)
                    except ValueError:
                        continue
                    if len(folder.parts) > best_depth:
                        best, best_depth = relative.as_posix(), len(folder.parts)
            if best is None:
                return None
            self._display[key] = best
        return self._display[key]

    def _compute(self, document: Document, line: int) -> tuple[Chunk, ...]:
        self.recomputes += 1
        if self.budget_chars <= 0 or not (self.open_files or self.recent_edits or self.imports):
            return ()
        if self.gate.check(document.uri, document.language_id) is not None:
            return ()
        tuning = self.tuning
        query = token_set("".join(document.lines[max(0, line - tuning.query_lines + 1) : line + 1]))
        low, high = self._prompt_lines(document, line)
        seen = repeat_lines(document.lines[low:high])
        pools: dict[str, list[Candidate]] = {}
        if self.open_files:
            pools[OPEN] = self._open_candidates(document, query, seen)
        if self.recent_edits:
            pools[EDITS] = self._edit_candidates(document, query, seen, low, high)
        if self.imports:
            pools[IMPORTS] = [
                c for c in self._import_candidates(document, line) if not repeats(c.lines, seen)
            ]
        return select(pools, self.budget_chars, fill_order=tuning.fill_order)

    def _prompt_lines(self, document: Document, line: int) -> tuple[int, int]:
        """The lines the prompt and suffix windows of a completion at ``line`` cover (about)."""
        low, used = line, len(document.lines[line])
        while low > 0 and used + len(document.lines[low - 1]) <= self.prompt_chars:
            low -= 1
            used += len(document.lines[low])
        high, used = line + 1, 0
        while high < len(document.lines) and used + len(document.lines[high]) <= self.suffix_chars:
            used += len(document.lines[high])
            high += 1
        return low, high

    def _usable(self, document: Document) -> str | None:
        """The display path of a document that may feed the block, else ``None``."""
        if self.gate.check(document.uri, document.language_id) is not None:
            return None
        if not self.gate.in_workspace(document.uri):
            return None
        return self.display_path(document.uri)

    def _open_candidates(
        self, current: Document, query: frozenset[str], seen: frozenset[str]
    ) -> list[Candidate]:
        family = language_family(current.language_id)
        found: list[Candidate] = []
        for uri in self._recent_uris(current):
            other = self.documents[uri]
            if len(other.lines) > self.tuning.max_document_lines:
                continue
            path = self._usable(other)
            if path is None:
                continue
            tier = 0 if language_family(other.language_id) == family else 1
            candidate = self._best_window(other, path, query, seen, tier)
            if candidate is not None:
                found.append(candidate)
        return found

    def _best_window(
        self, document: Document, path: str, query: frozenset[str], seen: frozenset[str], tier: int
    ) -> Candidate | None:
        """The most similar window of ``document`` that does not repeat the prompt."""
        for window in sorted(self._windows_of(document).scored(query), key=_rank, reverse=True):
            lines = tuple(strip_eol(text) for text in document.lines[window.start : window.end])
            if not repeats(lines, seen):
                return Candidate(OPEN, document.uri, path, window.start, lines, window.score, tier)
        return None

    def _recent_uris(self, current: Document) -> list[str]:
        """The most recently used open documents other than ``current``, newest first."""
        recent = sorted(
            (uri for uri in self.documents if uri != current.uri),
            key=lambda uri: (-self._recency.get(uri, 0), uri),
        )
        return recent[: self.tuning.max_open_documents]

    def _windows_of(self, document: Document) -> Windows:
        stamp = (document.version, len(document.lines))
        cached = self._windows.get(document.uri)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        found = windows(document.lines, self.tuning.window_lines, self.tuning.window_step)
        self._windows[document.uri] = (stamp, found)
        kept = self.tuning.max_open_documents + 1  # the current document and the ones scanned
        if len(self._windows) > kept:
            newest = sorted(self._windows, key=lambda uri: -self._recency.get(uri, 0))[:kept]
            for uri in self._windows.keys() - set(newest):
                del self._windows[uri]
        return found

    def _edit_candidates(
        self, current: Document, query: frozenset[str], seen: frozenset[str], low: int, high: int
    ) -> list[Candidate]:
        best: dict[str, Candidate] = {}
        kept: list[frozenset[str]] = []
        for span in reversed(self._ring.spans):
            other = self.documents.get(span.uri)
            if other is None:
                continue
            start, end = min(span.start, len(other.lines)), min(span.end, len(other.lines))
            if start >= end or (span.uri == current.uri and start < high and end > low):
                continue
            path = self._usable(other)
            if path is None:
                continue
            lines = tuple(strip_eol(text) for text in other.lines[start:end])
            if repeats(lines, seen):
                continue
            tokens = token_set("\n".join(lines))
            if any(dice(tokens, earlier) > self.tuning.duplicate for earlier in kept):
                continue
            kept.append(tokens)
            candidate = Candidate(EDITS, span.uri, path, start, lines, jaccard(tokens, query))
            if span.uri not in best or candidate.score > best[span.uri].score:
                best[span.uri] = candidate
        return list(best.values())

    def _import_candidates(self, document: Document, line: int) -> list[Candidate]:
        family = syntax.FAMILIES.get(document.language_id)
        fs_path = uris.to_fs_path(document.uri)
        if family is None or not fs_path:
            return []
        by_path: dict[str, Document] = {}
        for uri, other in self.documents.items():
            other_path = uris.to_fs_path(uri)
            if other_path:
                by_path[other_path] = other
        self._files.start(by_path)
        resolver = import_source.Resolver(self._files, self.gate.folders, family)

        def display(path: Path) -> str:
            return self.display_path(path) or path.name

        neighbours = [
            Path(path)
            for uri in self._recent_uris(document)
            if syntax.FAMILIES.get(self.documents[uri].language_id) == family
            and (path := uris.to_fs_path(uri))
        ]
        return import_source.candidates(
            document,
            line,
            Path(fs_path),
            resolver,
            display,
            span=self.tuning.query_lines,
            window=self.tuning.import_lines,
            excerpt=self.tuning.import_excerpt,
            neighbours=neighbours,
        )
