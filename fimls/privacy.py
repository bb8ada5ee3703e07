"""Which files may leave the machine: a built-in deny list plus ignore files in gitignore syntax.

Nothing from a denied file is ever sent. The deny list covers secrets (``.env*``, keys,
certificates, password stores, cloud credentials); ``.fimlsignore`` and ``.aiignore`` in a
workspace folder add patterns, and ``!pattern`` there can re-allow a denied path.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

import attrs

logger = logging.getLogger(__name__)

IGNORE_FILES = (".fimlsignore", ".aiignore")

DENY_PATTERNS = (
    ".env",
    ".env.*",
    "*.env",
    ".envrc",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "*.kdbx",
    "*.gpg",
    "*.asc",
    "*.ppk",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    ".netrc",
    "_netrc",
    ".pgpass",
    ".git-credentials",
    ".npmrc",
    ".pypirc",
    "credentials",
    "credentials.json",
    "*.secret",
    "*.secrets",
    "secrets.*",
    ".ssh/",
    ".aws/",
    ".gnupg/",
    ".azure/",
    ".kube/",
    "**/.docker/config.json",
    "**/.config/gcloud/",
)


@attrs.frozen
class Rule:
    """One gitignore line compiled to a regular expression."""

    regex: re.Pattern[str]
    negated: bool
    directory_only: bool

    def matches(self, parts: Sequence[str]) -> bool:
        """Whether the rule matches the path ``parts`` (or one of its parent folders)."""
        for end in range(len(parts), 0, -1):
            if self.directory_only and end == len(parts):
                continue
            if self.regex.fullmatch("/".join(parts[:end])):
                return True
        return False


def _translate(glob: str) -> str:
    out = []
    i = 0
    while i < len(glob):
        ch = glob[i]
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if glob.startswith("/**", i) and i + 3 == len(glob):
            out.append("/.*")
            i += 3
            continue
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            close = glob.find("]", i + 1)
            if close == -1:
                out.append(re.escape(ch))
            else:
                body = glob[i + 1 : close].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = close
        elif ch == "\\" and i + 1 < len(glob):
            i += 1
            out.append(re.escape(glob[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def compile_rule(line: str) -> Rule | None:
    """Compile one line of an ignore file; ``None`` for blanks and comments."""
    line = line.rstrip("\n\r")
    if not line.strip() or line.startswith("#"):
        return None
    line = line.rstrip(" ") if not line.endswith("\\ ") else line
    negated = line.startswith("!")
    if negated:
        line = line[1:]
    directory_only = line.endswith("/")
    line = line.rstrip("/")
    anchored = "/" in line
    line = line.lstrip("/")
    pattern = _translate(line)
    if not anchored:
        pattern = "(?:.*/)?" + pattern
    return Rule(re.compile(pattern, re.S), negated, directory_only)


def compile_rules(lines: Iterable[str]) -> list[Rule]:
    """Compile the lines of an ignore file."""
    return [rule for rule in map(compile_rule, lines) if rule is not None]


_DENY_RULES = compile_rules(DENY_PATTERNS)


def uri_to_path(uri: str) -> Path | None:
    """The local path of a ``file:`` URI."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        return None
    return Path(unquote(parsed.path))


class Privacy:
    """Decides whether a document may be sent, for one set of workspace folders."""

    def __init__(self, roots: Iterable[str] = (), languages: Sequence[str] | None = None) -> None:
        self.roots: list[tuple[Path, list[Rule]]] = []
        for root_uri in roots:
            root = uri_to_path(root_uri)
            if root is not None:
                self.roots.append((root, self._load_rules(root)))
        self.languages = None if languages is None else frozenset(languages)

    @staticmethod
    def _load_rules(root: Path) -> list[Rule]:
        rules: list[Rule] = []
        for name in IGNORE_FILES:
            try:
                text = (root / name).read_text(encoding="utf-8")
            except OSError:
                continue
            rules.extend(compile_rules(text.splitlines()))
            logger.info("using %s", root / name)
        return rules

    def reason_to_block(self, uri: str, language_id: str) -> str | None:
        """Why the document must not be sent, or ``None`` if it may be."""
        if self.languages is not None and language_id not in self.languages:
            return f"language {language_id!r} is not enabled"
        path = uri_to_path(uri)
        if path is None:
            return None
        relative: PurePosixPath | None = None
        rules: list[Rule] = []
        for root, root_rules in self.roots:
            try:
                relative = PurePosixPath(path.relative_to(root).as_posix())
            except ValueError:
                continue
            rules = root_rules
            break
        parts = (relative or PurePosixPath(path.as_posix())).parts
        parts = tuple(p for p in parts if p != "/")
        blocked = any(rule.matches(parts) for rule in _DENY_RULES)
        reason = "matches the built-in deny list" if blocked else None
        for rule in rules:
            if rule.matches(parts):
                blocked = not rule.negated
                reason = "matches an ignore file" if blocked else None
        return reason if blocked else None
