"""Fakes shared by the ``test_context*`` tests: a privacy gate that records what it was asked."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from pygls import uris

from fimls.document import Document


class FakeGate:
    """Models ``fimls.privacy.PrivacyGate``: workspace folders (symlinks resolved), a set of denied
    file names, an optional list of allowed languages; records every URI and path it is asked about."""

    def __init__(
        self, folders: Iterable[Path], denied: Iterable[str] = (), languages: Iterable[str] | None = None
    ) -> None:
        self.folders = [Path(os.path.realpath(folder)) for folder in folders]
        self.denied = set(denied)
        self.languages = None if languages is None else set(languages)
        self.asked: list[str] = []
        """Every URI or path any method was asked about."""
        self.allowed_paths: list[str] = []
        """Paths ``check_path`` allowed (the imports source reads only those)."""

    def _path(self, target: str | Path) -> str:
        if isinstance(target, Path):
            return str(target)
        return uris.to_fs_path(target) or target

    def _reason(self, path: str, language_id: str | None) -> str | None:
        if self.languages is not None and language_id is not None and language_id not in self.languages:
            return "language"
        if Path(path).name in self.denied or Path(os.path.realpath(path)).name in self.denied:
            return "denied"
        return None

    def check(self, uri: str, language_id: str | None = None) -> str | None:
        self.asked.append(uri)
        return self._reason(self._path(uri), language_id)

    def check_path(self, path: Path, language_id: str | None = None) -> str | None:
        self.asked.append(str(path))
        reason = self._reason(str(path), language_id)
        if reason is None:
            self.allowed_paths.append(str(path))
        return reason

    def in_workspace(self, target: str | Path) -> bool:
        path = self._path(target)
        self.asked.append(path)
        real = os.path.realpath(path)
        return any(real.startswith(str(folder) + os.sep) for folder in self.folders)


def write(root: Path, relative: str, text: str) -> Path:
    """Create ``root/relative`` with ``text``."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def open_document(
    documents: dict[str, Document], path: Path, language_id: str, text: str | None = None
) -> Document:
    """Add an open document for ``path`` (its text from disk unless given)."""
    document = Document(
        path.as_uri(), path.read_text(encoding="utf-8") if text is None else text, 1, language_id
    )
    documents[document.uri] = document
    return document
