"""Which files may leave the machine: one gate for the server, ``fimls complete`` and context sources.

A file is blocked when

- its language is not in ``languages`` (when that setting is a list);
- its full, normalised absolute path, or the resolved path behind symlinks, matches
  :data:`DENY_PATTERNS` (case-insensitively, at any depth, whatever the workspace folder is);
- a ``.fimlsignore`` or ``.aiignore`` at the root of a workspace folder that contains it ignores
  it (gitignore syntax through ``pathspec``, matched against the folder-relative path; the
  folders' rules apply outer folder first).

A ``!pattern`` line re-includes a file ignored by earlier lines, but a deny-listed file only
when the line names that very path without wildcards (``!config/dev.env``), and then with a
warning. Ignore files are re-read when their modification time, size or inode changes.
"""

from __future__ import annotations

import logging
import ntpath
import os
import posixpath
from collections.abc import Callable, Collection, Iterable
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from urllib.parse import unquote, urlsplit

import attrs
from cachetools import LRUCache
from pathspec import GitIgnoreSpec, RegexPattern
from pygls import uris

logger = logging.getLogger(__name__)

IGNORE_FILES = (".fimlsignore", ".aiignore")
"""Ignore files read at the root of each workspace folder, in this order (later lines win)."""

WORKSPACE_MARKERS = (".git", *IGNORE_FILES)
"""What makes a directory the workspace folder of a file named on the command line."""

# The one list of secret files. SECURITY.md shows it verbatim (a test compares them). Gitignore
# syntax, lower case; matched case-insensitively against the whole absolute path, so a pattern
# with a slash inside needs ``**/`` to match at any depth.
DENY_PATTERNS: tuple[str, ...] = (
    # environment files
    ".env",
    ".env.*",
    "*.env",
    ".envrc",
    # keys, certificates, key stores
    "*.pem",
    "*.key",
    "*.p8",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "*.ppk",
    "*.gpg",
    "*.asc",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    # password stores and credential files
    "*.kdbx",
    ".netrc",
    "_netrc",
    ".pgpass",
    ".my.cnf",
    ".htpasswd",
    ".git-credentials",
    ".npmrc",
    ".pypirc",
    ".vault-token",
    "*.ovpn",
    "credentials",
    "credentials.*",
    "secret.*",
    "secrets.*",
    "*.secret",
    "*.secrets",
    "secrets/",
    # infrastructure state and variables
    "*.tfstate",
    "*.tfstate.*",
    "*.tfvars",
    # kubeconfig files
    "kubeconfig",
    "*.kubeconfig",
    ".kube/",
    # credential folders
    ".ssh/",
    ".aws/",
    ".azure/",
    ".gnupg/",
    "**/.config/gcloud/",
    "**/.docker/config.json",
)

_DENY = GitIgnoreSpec.from_lines(DENY_PATTERNS)
# The regex group pathspec's gitignore patterns use where a match ends at a directory boundary.
_PARENT_MARK = "ps_d"
_WILDCARDS = frozenset("*?[\\")
_CACHE_SIZE = 4096

ProblemCallback = Callable[[str], None]


def _windows() -> bool:
    """Whether pygls's URI helpers work in Windows mode (read where they read it, so tests can switch)."""
    return bool(getattr(uris, "IS_WIN", False))


def uri_to_path(uri: str) -> PurePath | None:
    """The file-system path of a ``file:`` URI (``None`` for other schemes), through pygls's helper.

    On Windows (as pygls detects it) ``file:///c%3A/Users/x/.env`` becomes ``C:\\Users\\x\\.env``.
    """
    try:
        value = uris.to_fs_path(uri)
    except ValueError:  # urllib rejects some malformed netlocs
        return None
    if value is None:
        return None
    if _windows():
        if len(value) >= 2 and value[1] == ":":
            value = value[0].upper() + value[1:]
        return PureWindowsPath(value)
    return PurePosixPath(value)


def deny_match(path: PurePath) -> str | None:
    """The deny-list pattern that matches ``path`` (any case, any depth), or ``None``."""
    parts = path.parts[1:] if path.anchor else path.parts
    text = "/".join(part for part in parts if part not in ("", ".")).lower()
    if not text:
        return None
    result = _DENY.check_file(text)
    if result.include and result.index is not None:
        return DENY_PATTERNS[result.index]
    return None


@attrs.frozen
class Line:
    """One usable line of an ignore file."""

    file: str
    number: int
    text: str

    def describe(self) -> str:
        return f"{self.text!r} ({self.file} line {self.number})"

    def names_exactly(self, relative: str) -> bool:
        """Whether this negation names ``relative`` itself, without wildcards or a directory."""
        body = self.text[1:].rstrip()
        if not body or body.endswith("/") or _WILDCARDS & set(body):
            return False
        if "/" in body:
            return body.lstrip("/") == relative
        return body == relative.rpartition("/")[2]


@attrs.frozen
class Verdict:
    """What one folder's ignore files say about one path."""

    ignored: bool
    line: Line


@attrs.frozen
class Rules:
    """The lines of a folder's ignore files, compiled with ``pathspec``'s ``GitIgnoreSpec``."""

    lines: tuple[Line, ...]
    spec: GitIgnoreSpec

    @classmethod
    def compile(cls, lines: Iterable[Line]) -> Rules:
        kept = tuple(lines)
        return cls(kept, GitIgnoreSpec.from_lines([line.text for line in kept]))

    def decide(self, relative: str) -> Verdict | None:
        """The verdict for a folder-relative posix path; ``None`` when no line matches.

        As in git, a file inside an excluded directory cannot be re-included. pathspec 1.1's
        ``GitIgnoreSpec`` lets a later line re-include it (cpburnz/python-pathspec#129), so each
        parent directory is checked first, top down, with git's last-match rule.
        """
        parts = relative.split("/")
        for depth in range(1, len(parts)):
            directory = "/".join(parts[:depth])
            last: int | None = None
            for index, (line, pattern) in enumerate(zip(self.lines, self.spec.patterns, strict=True)):
                if _matches_directory(line, pattern, directory):
                    last = index
            if last is not None and self.spec.patterns[last].include:
                return Verdict(True, self.lines[last])
        result = self.spec.check_file(relative)
        if result.include is None or result.index is None:
            return None
        return Verdict(bool(result.include), self.lines[result.index])


def _matches_directory(line: Line, pattern: RegexPattern, directory: str) -> bool:
    """Whether an ignore line matches the directory ``directory`` itself (not something above it).

    pathspec's patterns match a path or any of its parents; this tells the two apart.
    """
    regex = pattern.regex
    if pattern.include is None or regex is None:
        return False
    body = line.text.removeprefix("!").rstrip(" ")
    if body in ("*/", "**/"):  # any directory
        return True
    whole = regex.fullmatch(directory + "/")
    if whole is not None and whole.groupdict().get(_PARENT_MARK) is not None:
        return True  # the pattern's last segment is this directory
    found = regex.search(directory)
    if found is None:
        return False
    if found.groupdict().get(_PARENT_MARK) is not None:
        return False  # matched a directory above this one
    # Matched up to the end ("name" patterns), or a parent's contents ("dir/**"), or everything ("*").
    return (
        found.end() == len(directory) or found.group(0).endswith("/") or _PARENT_MARK not in regex.groupindex
    )


def read_ignore_file(path: Path, problems: list[str]) -> list[Line]:
    """The usable lines of one ignore file; each unusable line is skipped and listed in ``problems``.

    A leading UTF-8 byte order mark is dropped. Raises ``OSError`` when the file exists but
    cannot be read; returns ``[]`` when it does not exist.
    """
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return []
    data = data.removeprefix(b"\xef\xbb\xbf")
    lines: list[Line] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            text = raw.removesuffix(b"\r").decode("utf-8")
        except UnicodeDecodeError:
            problems.append(f"line {number} is not UTF-8")
            continue
        if not text.strip() or text.startswith("#"):
            continue
        try:
            GitIgnoreSpec.from_lines([text])
        except Exception as error:  # pathspec raises ValueError, re.error and others
            problems.append(f"line {number} {text[:60]!r}: {error}")
            continue
        lines.append(Line(str(path), number, text))
    return lines


def _stamp(path: Path) -> tuple[int, ...] | None:
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        return (-1, error.errno or 0)
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


def _is_within(path: PurePath, folder: PurePath) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def _relative(path: PurePath, folder: PurePath) -> str | None:
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return None


def _normalise(path: PurePath) -> PurePath:
    """``path`` with ``.`` and ``..`` folded, in its own flavour (Windows or posix)."""
    if isinstance(path, PureWindowsPath):
        return PureWindowsPath(ntpath.normpath(path))
    return PurePosixPath(posixpath.normpath(path))


def _resolve(path: PurePath) -> PurePath:
    """The absolute path with symlinks resolved, where the file system allows."""
    if isinstance(path, PureWindowsPath) != (os.name == "nt"):
        return path  # a Windows path seen on another system (tests): nothing to resolve
    try:
        return Path(os.path.realpath(path))
    except (OSError, ValueError):
        return path


class _Folder:
    """One workspace folder: where it is, and its ignore rules (reloaded when the files change)."""

    def __init__(self, path: PurePath) -> None:
        self.given = path
        self.real = _resolve(path)
        self.stamps: tuple[tuple[int, ...] | None, ...] = ()
        self.rules = Rules.compile(())
        self.unreadable: str | None = None

    def ignore_paths(self) -> list[Path]:
        return [Path(self.real) / name for name in IGNORE_FILES]

    def refresh(self, report: ProblemCallback) -> bool:
        """Reload the rules if an ignore file appeared, changed or went away; whether it did."""
        stamps = tuple(_stamp(path) for path in self.ignore_paths())
        if stamps == self.stamps:
            return False
        self.stamps = stamps
        lines: list[Line] = []
        self.unreadable = None
        for path, stamp in zip(self.ignore_paths(), stamps, strict=True):
            if stamp is None:
                continue
            problems: list[str] = []
            try:
                lines.extend(read_ignore_file(path, problems))
            except OSError as error:
                self.unreadable = f"cannot read {path} ({error.strerror or error})"
                report(f"{self.unreadable}; nothing in {self.real} is sent until it can be read")
                continue
            if problems:
                report(f"skipped unusable lines of {path}: {'; '.join(problems)}; the other lines apply")
            logger.info("using %s", path)
        self.rules = Rules.compile(lines)
        return True

    def contains(self, path: PurePath) -> str | None:
        """``path`` relative to this folder (as posix), or ``None`` when it is outside."""
        relative = _relative(path, self.real)
        if relative is None:
            relative = _relative(path, self.given)
        return relative


class PrivacyGate:
    """Decides whether a file may be sent, for the current workspace folders and languages.

    ``folders`` are URIs (non-``file`` URIs are ignored). ``on_problem`` receives one message per
    unusable ignore file and per deny-list override, for the user; each is logged as well.
    """

    def __init__(
        self,
        folders: Iterable[str] = (),
        languages: Collection[str] | None = None,
        on_problem: ProblemCallback | None = None,
    ) -> None:
        self._on_problem = on_problem
        self._folders: list[_Folder] = []
        self._languages: frozenset[str] | None = None
        self._cache: LRUCache[tuple[str, str, str | None], str | None] = LRUCache(_CACHE_SIZE)
        self._warned: set[tuple[str, str, int]] = set()
        self.set_languages(languages)
        self.set_folders(folders)

    # -- configuration -------------------------------------------------------

    @property
    def folders(self) -> list[Path]:
        """The workspace folders (symlinks resolved), outer folders first."""
        return [Path(folder.real) for folder in self._folders]

    def set_folders(self, folders: Iterable[str]) -> None:
        """Replace the workspace folders (URIs)."""
        self._folders = []
        self.change_folders(folders, ())

    def change_folders(self, added: Iterable[str], removed: Iterable[str]) -> None:
        """Apply ``workspace/didChangeWorkspaceFolders``: folder URIs added and removed."""
        gone = {folder.real for folder in map(self._folder, removed) if folder is not None}
        kept = [folder for folder in self._folders if folder.real not in gone]
        known = {folder.real for folder in kept}
        for folder in map(self._folder, added):
            if folder is not None and folder.real not in known:
                folder.refresh(self._report)
                kept.append(folder)
                known.add(folder.real)
        kept.sort(key=lambda folder: len(folder.real.parts))
        self._folders = kept
        self._cache.clear()
        logger.info("workspace folders: %s", ", ".join(str(f.real) for f in kept) or "none")

    def set_languages(self, languages: Collection[str] | None) -> None:
        """Only these language ids may be sent (``None``: all)."""
        self._languages = None if languages is None else frozenset(languages)
        self._cache.clear()

    # -- decisions -----------------------------------------------------------

    def check(self, uri: str, language_id: str | None = None) -> str | None:
        """Why the document at ``uri`` must not be sent, or ``None`` when it may.

        ``language_id`` ``None`` skips the language check (for files whose language is unknown).
        """
        return self._cached("uri", uri, language_id)

    def check_path(self, path: Path, language_id: str | None = None) -> str | None:
        """:meth:`check` for a path on disk (relative paths are taken from the current directory)."""
        return self._cached("path", os.path.abspath(path), language_id)

    def in_workspace(self, target: str | Path) -> bool:
        """Whether ``target`` (a URI or a path), symlinks resolved, lies inside a workspace folder."""
        path = self._local_path(target)
        if path is None:
            return False
        real = _resolve(path)
        return any(_is_within(real, folder.real) for folder in self._folders)

    def relative_path(self, target: str | Path) -> str | None:
        """``target``'s posix path relative to the innermost folder that contains it, for display."""
        found = self.locate(target)
        return None if found is None else found[0]

    def locate(self, target: str | Path) -> tuple[str, str] | None:
        """``target``'s posix path relative to the innermost folder that contains it, and that
        folder's name; ``None`` outside every folder."""
        path = self._local_path(target)
        if path is None:
            return None
        for candidate in (_resolve(path), path):
            for folder in reversed(self._folders):
                relative = folder.contains(candidate)
                if relative is not None:
                    return relative, Path(folder.real).name
        return None

    # -- internals -----------------------------------------------------------

    def _report(self, message: str) -> None:
        logger.warning("%s", message)
        if self._on_problem is not None:
            self._on_problem(message)

    def _folder(self, uri: str) -> _Folder | None:
        path = uri_to_path(uri)
        if path is None or not path.is_absolute():
            logger.info("not a local workspace folder, its ignore files are not read: %s", uri)
            return None
        return _Folder(_normalise(path))

    @staticmethod
    def _local_path(target: str | Path) -> PurePath | None:
        if isinstance(target, PurePath):
            return PurePath(os.path.abspath(target))
        if urlsplit(target).scheme.lower() == "file":
            path = uri_to_path(target)
            return None if path is None or not path.is_absolute() else path
        if len(urlsplit(target).scheme) > 1:
            return None  # another scheme: not on this disk
        return PurePath(os.path.abspath(target))

    def _cached(self, kind: str, target: str, language_id: str | None) -> str | None:
        changed = False
        for folder in self._folders:
            changed |= folder.refresh(self._report)
        if changed:
            self._cache.clear()
        key = (kind, target, language_id)
        try:
            return self._cache[key]
        except KeyError:
            pass
        reason = self._decide(kind, target, language_id)
        self._cache[key] = reason
        return reason

    def _decide(self, kind: str, target: str, language_id: str | None) -> str | None:
        if self._languages is not None and language_id is not None and language_id not in self._languages:
            return f"language {language_id!r} is not enabled"
        local = PurePath(target) if kind == "path" else uri_to_path(target)
        path: PurePath
        if local is None:
            # Other schemes (untitled:, vscode-remote:, git:, ...): the rules apply to the URI's path.
            path = PurePosixPath(posixpath.normpath(unquote(urlsplit(target).path) or "."))
        else:
            path = _normalise(local)
        if "\x00" in str(path):
            return "the path contains a NUL character"
        candidates: list[PurePath] = [path]
        if local is not None and path.is_absolute():
            real = _resolve(path)  # the file behind symbolic links, checked as well
            if real != path:
                candidates.append(real)
        for candidate in candidates:
            reason = self._decide_one(candidate)
            if reason is not None:
                return reason
        return None

    def _decide_one(self, path: PurePath) -> str | None:
        """The verdict for one spelling of the file's location (as written, or resolved)."""
        pattern = deny_match(path)
        denied = f"built-in deny list ({pattern!r} matches {path})" if pattern else None
        ignored: str | None = None
        broad: Line | None = None
        for folder in self._folders:
            relative = folder.contains(path) if path.is_absolute() else None
            if relative is None or relative == ".":
                continue
            if folder.unreadable:
                return folder.unreadable
            verdict = folder.rules.decide(relative)
            if verdict is None:
                continue
            if verdict.ignored:
                ignored = f"ignored by {verdict.line.describe()}"
                continue
            ignored = None
            if denied is None:
                continue
            if verdict.line.names_exactly(relative):
                self._warn_override(path, pattern or "", verdict.line)
                denied = None
            else:
                broad = verdict.line
        if denied is not None:
            if broad is not None:
                denied += f"; {broad.describe()} cannot re-allow it, only a line naming the exact path can"
            return denied
        return ignored

    def _warn_override(self, path: PurePath, pattern: str, line: Line) -> None:
        key = (str(path), line.file, line.number)
        if key in self._warned:
            return
        self._warned.add(key)
        self._report(
            f"{path} is on the built-in deny list ({pattern!r}) but {line.describe()} re-allows it; "
            "fimls will send it"
        )


def gate_for_file(
    path: Path,
    languages: Collection[str] | None = None,
    on_problem: ProblemCallback | None = None,
) -> PrivacyGate:
    """The gate for a file named on the command line.

    Its workspace folder is the nearest ancestor directory holding ``.git``, ``.fimlsignore`` or
    ``.aiignore``; else the current directory when the file is under it; else the file's own directory.
    """
    absolute = Path(os.path.abspath(path))
    folder: Path | None = None
    for parent in absolute.parents:
        if any((parent / marker).exists() for marker in WORKSPACE_MARKERS):
            folder = parent
            break
    if folder is None:
        cwd = Path.cwd()
        folder = cwd if _is_within(absolute, cwd) else absolute.parent
    return PrivacyGate([folder.as_uri()], languages, on_problem)
