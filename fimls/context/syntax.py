"""What the imports source needs to know about Python and JavaScript/TypeScript text.

Regular expressions over lines, not parsers: the file being edited is usually incomplete, and a
line-based reading keeps working where a parser would give up. Three questions are answered:

- :func:`bindings`: which names a file imports, and from which module (as written);
- :func:`index`: where a file defines each name (functions, classes, constants, methods and
  members), and which names it re-exports from other modules;
- :func:`definition_end`: where the definition that starts on a line ends (indentation rules).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import attrs

from fimls.document import split_lines, strip_eol

PYTHON = "python"
JS = "js"

FAMILIES = {
    "python": PYTHON,
    "javascript": JS,
    "javascriptreact": JS,
    "typescript": JS,
    "typescriptreact": JS,
}
"""Language id -> the syntax family the imports source understands."""

SUFFIX_LANGUAGES = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascriptreact",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "typescriptreact",
}
"""File suffix -> language id, for files read from disk."""

DEFAULT = "default"
"""The name under which a JS module's default export is indexed."""

STAR = "*"
"""The local name of a wildcard import (``from x import *``, ``export * from './x'``)."""


@attrs.frozen
class Binding:
    """``local`` names ``name`` of ``module`` (``name`` ``None``: the module itself)."""

    local: str
    module: str
    name: str | None


@attrs.frozen
class Definition:
    """A name defined on ``line``; ``rank`` 0 top level, 1 nested definition, 2 member or local."""

    line: int
    indent: int
    rank: int


@attrs.frozen
class Index:
    """Where a file defines names, and what it imports (its re-exports)."""

    lines: tuple[str, ...]
    definitions: dict[str, tuple[Definition, ...]]
    bindings: dict[str, Binding]
    stars: tuple[str, ...]
    """Modules whose names are all re-exported (``from x import *``, ``export * from``)."""
    aliases: dict[str, str]
    """Exported name -> local name (``export { a as b }``, ``export default a``)."""

    def find(self, name: str) -> Definition | None:
        """The best definition of ``name``: top level first, then the earliest."""
        found = self.definitions.get(name)
        if not found:
            return None
        return min(found, key=lambda d: (d.rank, d.line))


# -- bindings ----------------------------------------------------------------------------------

_PY_FROM = re.compile(
    r"^[ \t]*from[ \t]+(\.+[\w.]*|[^\W\d][\w.]*)[ \t]+import[ \t]+(\([^)]*\)?|[^\n#;]*)", re.M
)
_PY_IMPORT = re.compile(r"^[ \t]*import[ \t]+([^\n#;]+)", re.M)
_PY_NAME_AS = re.compile(r"([^\W\d]\w*)(?:\s+as\s+([^\W\d]\w*))?")
_PY_MODULE_AS = re.compile(r"([^\W\d][\w.]*)(?:\s+as\s+([^\W\d]\w*))?")
_COMMENT = re.compile(r"#[^\n]*")

_JS_ID = r"[\w$]+"
_JS_IMPORT = re.compile(r"\bimport\s+(?:type\s+)?([\w$*{}\s,]+?)\s*\bfrom\s*(['\"])([^'\"\n]+)\2")
_JS_EXPORT_FROM = re.compile(
    r"\bexport\s+(?:type\s+)?(\*(?:\s+as\s+[\w$]+)?|\{[^}]*\})\s*from\s*(['\"])([^'\"\n]+)\2"
)
_JS_REQUIRE = re.compile(
    r"\b(?:const|let|var)\s+([\w$]+|\{[^}]*\})\s*=\s*require\(\s*(['\"])([^'\"\n]+)\2\s*\)(?:\.([\w$]+))?"
)
_JS_CLAUSE = re.compile(r"\s*(?:([\w$]+)\s*(?:,\s*)?)?(?:\*\s*as\s+([\w$]+)|\{([^}]*)\})?\s*")
_JS_ITEM = re.compile(r"(?:type\s+)?([\w$]+)(?:\s+as\s+([\w$]+))?")
_JS_PATTERN_ITEM = re.compile(r"([\w$]+)(?:\s*:\s*([\w$]+))?(?:\s*=.*)?", re.S)


def bindings(text: str, family: str) -> list[Binding]:
    """The imports of ``text``, in the order they appear."""
    return _python_bindings(text) if family == PYTHON else _js_bindings(text)


def _python_bindings(text: str) -> list[Binding]:
    found: list[tuple[int, Binding]] = []
    for match in _PY_FROM.finditer(text):
        module, names = match.group(1), _COMMENT.sub("", match.group(2)).strip("() \t\n\\")
        for item in names.split(","):
            item = " ".join(item.split())
            if item == STAR:
                found.append((match.start(), Binding(STAR, module, None)))
            elif parts := _PY_NAME_AS.fullmatch(item):
                found.append(
                    (match.start(), Binding(parts.group(2) or parts.group(1), module, parts.group(1)))
                )
    for match in _PY_IMPORT.finditer(text):
        for item in match.group(1).split(","):
            parts = _PY_MODULE_AS.fullmatch(" ".join(item.split()))
            if parts:
                module = parts.group(1).strip(".")
                found.append((match.start(), Binding(parts.group(2) or module, module, None)))
    return [binding for _, binding in sorted(found, key=lambda pair: pair[0])]


def _js_bindings(text: str) -> list[Binding]:
    found: list[tuple[int, Binding]] = []
    for match in _JS_IMPORT.finditer(text):
        clause, module = match.group(1), match.group(3)
        parts = _JS_CLAUSE.fullmatch(clause)
        if parts is None:
            continue
        default, namespace, braces = parts.groups()
        if default:
            found.append((match.start(), Binding(default, module, DEFAULT)))
        if namespace:
            found.append((match.start(), Binding(namespace, module, None)))
        for local, name in _js_items(braces or ""):
            found.append((match.start(), Binding(local, module, name)))
    for match in _JS_EXPORT_FROM.finditer(text):
        clause, module = match.group(1), match.group(3)
        if clause.startswith("*"):
            alias = clause[1:].strip()
            if alias:
                found.append((match.start(), Binding(alias.split()[-1], module, None)))
            else:
                found.append((match.start(), Binding(STAR, module, None)))
        else:
            for local, name in _js_items(clause.strip("{}")):
                found.append((match.start(), Binding(local, module, name)))
    for match in _JS_REQUIRE.finditer(text):
        target, module, member = match.group(1), match.group(3), match.group(4)
        if target.startswith("{"):
            for item in target.strip("{}").split(","):
                parts = _JS_PATTERN_ITEM.fullmatch(item.strip())
                if parts:
                    found.append(
                        (match.start(), Binding(parts.group(2) or parts.group(1), module, parts.group(1)))
                    )
        else:
            found.append((match.start(), Binding(target, module, member)))
    return [binding for _, binding in sorted(found, key=lambda pair: pair[0])]


def _js_items(braces: str) -> list[tuple[str, str]]:
    """(local, exported) pairs of ``a, b as c, type d``."""
    pairs: list[tuple[str, str]] = []
    for item in braces.split(","):
        parts = _JS_ITEM.fullmatch(" ".join(item.split()))
        if parts:
            pairs.append((parts.group(2) or parts.group(1), parts.group(1)))
    return pairs


# -- definitions -------------------------------------------------------------------------------

_Add = Callable[[str, int, str, int], None]

_PY_DEF = re.compile(r"([ \t]*)(?:async[ \t]+)?(?:def|class)[ \t]+([^\W\d]\w*)")
_PY_ASSIGN = re.compile(r"([ \t]*)([^\W\d]\w*)[ \t]*(?:(?::[^=\n]+)?=(?!=)|:[^=\n]+$)")
_PY_SELF = re.compile(r"([ \t]+)self\.([^\W\d]\w*)[ \t]*(?::[^=\n]+)?=(?!=)")

_JS_DECL = re.compile(
    r"([ \t]*)(export\s+)?(default\s+)?(?:declare\s+)?(?:abstract\s+)?(?:async\s+)?"
    r"(?:function\s*\*?\s*|class\s+|(?:const|let|var)\s+|interface\s+|type\s+|(?:const\s+)?enum\s+|namespace\s+)"
    r"([\w$]+)"
)
_JS_EXPORTS = re.compile(r"([ \t]*)(?:module\.)?exports\.([\w$]+)\s*=(?!=)")
_JS_MEMBER_FUNCTION = re.compile(
    r"((?:[\w$]+\.)+)([\w$]+)\s*=\s*(?:async\s+)?(?:function\b|\([^)]*\)\s*(?::[^=]+)?=>|[\w$]+\s*=>)"
)
_JS_METHOD = re.compile(
    r"([ \t]+)(?:(?:static|async|get|set|public|private|protected|readonly|override|abstract)\s+)*\*?"
    r"([\w$]+)\s*(?:<[^>]*>)?\s*\(.*\)\s*(?::[^{]+)?\{\s*$"
)
_JS_FIELD = re.compile(
    r"([ \t]+)(?:(?:static|public|private|protected|readonly|override|declare)\s+)*"
    r"([\w$]+)[?!]?\s*(?::|=(?![=>]))"
)
_JS_DEFAULT = re.compile(r"[ \t]*(?:export\s+default\b|module\.exports\s*=(?!=))\s*([\w$]+)?\s*(;?)")
_JS_EXPORT_LIST = re.compile(r"\bexport\s*\{([^}]*)\}(?!\s*from)")
_JS_EXPORTS_OBJECT = re.compile(r"\bmodule\.exports\s*=\s*\{([^}]*)\}")
_JS_NOT_METHODS = frozenset(
    "if for while switch catch function return with else do try typeof await yield new super".split()
    + ["constructor"]
)


def index(text: str, family: str) -> Index:
    """Index the definitions, imports and re-exports of ``text``."""
    lines = tuple(strip_eol(line) for line in split_lines(text))
    found: dict[str, list[Definition]] = {}
    aliases: dict[str, str] = {}

    def add(name: str, line: int, indent: str, rank: int) -> None:
        found.setdefault(name, []).append(Definition(line, len(indent.expandtabs(4)), rank))

    for number, line in enumerate(lines):
        if family == PYTHON:
            _index_python_line(line, number, add)
        else:
            _index_js_line(line, number, add, aliases)
    if family == JS:
        for match in _JS_EXPORT_LIST.finditer(text):
            for exported, local in _js_items(match.group(1)):
                if exported != local:
                    aliases.setdefault(exported, local)
        for match in _JS_EXPORTS_OBJECT.finditer(text):
            for item in match.group(1).split(","):
                parts = _JS_PATTERN_ITEM.fullmatch(item.strip())
                if parts and parts.group(2) and parts.group(2) != parts.group(1):
                    aliases.setdefault(parts.group(1), parts.group(2))
    imported = bindings(text, family)
    return Index(
        lines=lines,
        definitions={name: tuple(defs) for name, defs in found.items()},
        bindings={b.local: b for b in imported if b.local != STAR},
        stars=tuple(b.module for b in imported if b.local == STAR),
        aliases=aliases,
    )


def _index_python_line(line: str, number: int, add: _Add) -> None:
    if match := _PY_DEF.match(line):
        add(match.group(2), number, match.group(1), 0 if not match.group(1) else 1)
    elif match := _PY_SELF.match(line):
        add(match.group(2), number, match.group(1), 2)
    elif match := _PY_ASSIGN.match(line):
        add(match.group(2), number, match.group(1), 0 if not match.group(1) else 2)


def _index_js_line(line: str, number: int, add: _Add, aliases: dict[str, str]) -> None:
    if match := _JS_DECL.match(line):
        indent, exported, default, name = match.groups()
        add(name, number, indent, 0 if not indent or exported else 1)
        if default:
            add(DEFAULT, number, indent, 0)
        return
    if match := _JS_DEFAULT.match(line):
        name, semicolon = match.groups()
        if name and semicolon and name not in ("function", "class"):
            aliases.setdefault(DEFAULT, name)
        else:
            add(DEFAULT, number, "", 0)
        return
    if match := _JS_EXPORTS.match(line):
        add(match.group(2), number, match.group(1), 0)
    elif match := _JS_MEMBER_FUNCTION.match(line):
        add(match.group(2), number, "", 1)
    elif (match := _JS_METHOD.match(line)) and match.group(2) not in _JS_NOT_METHODS:
        add(match.group(2), number, match.group(1), 1)
    elif match := _JS_FIELD.match(line):
        add(match.group(2), number, match.group(1), 2)


_CLOSERS = (")", "]", "}")


def definition_end(lines: Sequence[str], definition: Definition, family: str, limit: int) -> int:
    """One past the last line of the definition on ``definition.line``, at most ``limit`` lines.

    A definition ends before the next non-blank line indented no deeper than its first line; a
    line there that starts with a closing bracket belongs to it (``):`` of a long signature, or
    the ``}`` that closes a JS body, which also ends it).
    """
    stop = min(len(lines), definition.line + limit)
    for number in range(definition.line + 1, stop):
        text = lines[number]
        stripped = text.lstrip()
        if not stripped:
            continue
        if len(text[: len(text) - len(stripped)].expandtabs(4)) > definition.indent:
            continue
        if stripped.startswith(_CLOSERS):
            if family == JS and stripped.startswith("}"):
                return number + 1
            continue
        return number
    return stop
