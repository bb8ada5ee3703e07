"""Definitions of imported names used near the cursor, found in workspace files.

What is resolved:

- Python: ``import a.b [as m]``, ``from a.b import c [as d]``, ``from .x import y``,
  ``from . import mod``, ``from x import *``. Relative imports start at the current file's folder;
  absolute ones are tried against the root of the current file's package (the folder above the
  topmost folder with an ``__init__.py``), then each workspace folder, then its ``src``. A module
  is ``x.py``, ``x/__init__.py``, ``x.pyi`` or ``x/__init__.pyi``; ``from pkg import name`` is
  the submodule ``pkg/name.py`` where one exists.
- JavaScript/TypeScript: relative specifiers only (``./``, ``../``) in ``import ... from``,
  ``export ... from`` and ``require()``; the path as written, then with the usual extensions
  (TypeScript's first when the current file is TypeScript; ``./x.js`` also finds ``x.ts``), then
  ``x/index`` with each extension. Bare package names and ``tsconfig`` paths are not resolved.

Which names, nearest use first (the ``span`` lines up to the cursor and ``after`` lines below):

1. names an import binds, and for a module or namespace binding (``m.attr``, ``ns.attr``,
   ``Cls.method``) the attribute after it; a definition not found in the imported file is
   followed through that file's own imports and wildcard re-exports, up to two hops;
2. then other names used there, looked up by name in the files the current file imports and in
   the open documents of its language (most recently used first): attributes (``self.x.fetch``)
   match any definition, a plain name only a top-level one (so locals elsewhere never match).

What is taken, per file: excerpts around the wanted definitions, each from its decorators and
comments down to its end, at most ``excerpt`` lines past its first line; nearest uses first
until ``window`` lines; in file order, joined by an elision line (``...``) where they do not
touch. One chunk per file, however many of its definitions are wanted.

Privacy: a candidate path is looked at only if its folder, symlinks resolved, lies inside a
workspace folder and the gate says the file does (``in_workspace``), and read only if the gate
allows it for its language (``check_path``); files are read up to ``max_bytes``, at most
``max_files`` per recompute, and cached by (path, mtime, size, inode). An open document is taken
from the editor's text instead of the disk. Module resolutions are remembered for 30 seconds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from pathlib import Path

import attrs
from cachetools import LRUCache, TTLCache

from fimls.context import syntax
from fimls.context.model import ELISION, IMPORTS, Candidate, Gate
from fimls.context.tokens import STOP_WORDS
from fimls.document import Document, strip_eol

MAX_BYTES = 512 * 1024
MAX_FILES = 16
WINDOW = 40
EXCERPT = 12
HOPS = 2
LEAD_LINES = 6
MAX_STAR_NAMES = 24
MAX_LOOSE_NAMES = 48
RESOLVED_SECONDS = 30.0
CACHED_CHARS = 4_000_000
"""The indexes of files kept between recomputes hold at most this many characters of text (about
16 large files; each character costs about two bytes of memory as indexed lines)."""
MAX_MODULES = 48
ATTRIBUTE_PENALTY = 20
"""Added to the distance of an attribute found by name alone (``self.x.method``), so the definitions
of names an import binds come first."""

_PY_MODULE_FILES = (".py", "/__init__.py", ".pyi", "/__init__.pyi")
_TS_EXTENSIONS = (".ts", ".tsx", ".mts", ".cts", ".d.ts")
_JS_EXTENSIONS = (".js", ".jsx", ".mjs", ".cjs")
_CHAIN = re.compile(r"(?<![\w$.])(?:[^\W\d]|\$)[\w$]*(?:\.(?:[^\W\d]|\$)[\w$]*)*")
_IMPORT_LINE = re.compile(r"\s*(?:import\b|from\s+\S+\s+import\b|export\s.*\bfrom\b)|.*\brequire\(")
_LEAD = {
    syntax.PYTHON: ("@", "#"),
    syntax.JS: ("@", "//", "/*", "*"),
}


def _read_file(path: Path, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of ``path`` (the only place the imports source reads files)."""
    with open(path, "rb") as handle:
        return handle.read(limit + 1)


@attrs.frozen
class Found:
    """A definition of a wanted name, in the file at ``path``."""

    path: Path
    index: syntax.Index
    definition: syntax.Definition
    distance: int


class Files:
    """Gated, bounded, cached access to workspace files for the imports source."""

    def __init__(self, gate: Gate, *, max_bytes: int = MAX_BYTES, max_files: int = MAX_FILES) -> None:
        self.gate = gate
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.open: dict[str, Document] = {}
        """Open documents by file-system path, set by the caller before each recompute."""
        self._cache: LRUCache[str, tuple[tuple[int, ...], syntax.Index]] = LRUCache(
            CACHED_CHARS, getsizeof=_cached_size
        )
        self._consulted: set[str] = set()
        self._folders: tuple[str, ...] = ()
        self._inside: dict[str, bool] = {}
        self._indexed: dict[str, syntax.Index | None] = {}
        self.resolved: TTLCache[tuple[str, str, str], Path | None] = TTLCache(4096, RESOLVED_SECONDS)
        """Module resolutions, kept a short while: most imports resolve nowhere in the workspace
        (the standard library, installed packages), and each failed try costs a few file checks."""
        self.roots: TTLCache[Path, list[Path]] = TTLCache(256, RESOLVED_SECONDS)

    def start(self, open_documents: Mapping[str, Document]) -> None:
        """Begin a recompute: reset the per-recompute file count and folder checks."""
        self.open = open_documents if isinstance(open_documents, dict) else dict(open_documents)
        self._consulted = set()
        self._folders = tuple(str(folder) for folder in self.gate.folders)
        self._inside = {}
        self._indexed = {}

    def exists(self, path: Path) -> bool:
        """Whether ``path`` is a file inside the workspace.

        Only paths whose folder (symlinks resolved) lies in a workspace folder are looked at, and
        the gate's own verdict on the file decides.
        """
        folder = str(path.parent)
        inside = self._inside.get(folder)
        if inside is None:
            real = os.path.realpath(folder)
            inside = any(
                real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in self._folders
            )
            self._inside[folder] = inside
        if not inside:
            return False
        if str(path) not in self.open:
            try:
                if not path.is_file():
                    return False
            except OSError:
                return False
        return self.gate.in_workspace(path)

    def first(self, candidates: Iterable[Path]) -> Path | None:
        """The first candidate that :meth:`exists`."""
        return next((path for path in candidates if self.exists(path)), None)

    def index(self, path: Path) -> syntax.Index | None:
        """The index of an allowed workspace file, or ``None`` (blocked, too big, unreadable, or over
        the per-recompute file count); asked again in the same recompute, the same answer."""
        key = str(path)
        if key in self._indexed:
            return self._indexed[key]
        result = self._index(path, key)
        self._indexed[key] = result
        return result

    def _index(self, path: Path, key: str) -> syntax.Index | None:
        language = syntax.SUFFIX_LANGUAGES.get(_suffix(path))
        family = syntax.FAMILIES.get(language or "")
        if family is None or not self.gate.in_workspace(path):
            return None
        if key not in self._consulted:
            if len(self._consulted) >= self.max_files:
                return None
            self._consulted.add(key)
        document = self.open.get(key)
        if document is not None:
            if self.gate.check(document.uri, document.language_id) is not None:
                return None
            return self._indexed_text(key, _document_stamp(document), family, lambda: document.text)
        if self.gate.check_path(path, language) is not None:
            return None
        try:
            status = path.stat()
        except OSError:
            return None
        if status.st_size > self.max_bytes:
            return None
        stamp = (status.st_mtime_ns, status.st_size, status.st_ino)
        return self._indexed_text(key, stamp, family, lambda: self._read_text(path))

    def prepare(self, path: str, document: Document) -> None:
        """Index an open document now, off the keystroke path, for the recomputes to come."""
        family = syntax.FAMILIES.get(syntax.SUFFIX_LANGUAGES.get(_suffix(Path(path))) or "")
        if family is None or not self.gate.in_workspace(Path(path)):
            return
        if self.gate.check(document.uri, document.language_id) is None:
            self._indexed_text(path, _document_stamp(document), family, lambda: document.text)

    def _indexed_text(
        self, key: str, stamp: tuple[int, ...], family: str, text: Callable[[], str | None]
    ) -> syntax.Index | None:
        """The cached index of ``key`` if its stamp still holds, else ``text`` indexed and cached."""
        cached = self._cache.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        source = text()
        if source is None:
            return None
        result = syntax.index(source, family)
        self._cache[key] = (stamp, result)
        return result

    def _read_text(self, path: Path) -> str | None:
        try:
            data = _read_file(path, self.max_bytes)
        except OSError:
            return None
        if len(data) > self.max_bytes:
            return None
        return data.decode("utf-8", errors="replace")

    def uri(self, path: Path) -> str:
        """The URI of a file: the open document's own, else a ``file:`` URI."""
        document = self.open.get(str(path))
        return document.uri if document is not None else path.as_uri()


def _document_stamp(document: Document) -> tuple[int, ...]:
    return (-1, document.version, len(document.lines))


def _cached_size(entry: tuple[tuple[int, ...], syntax.Index]) -> int:
    return 1 + sum(len(line) for line in entry[1].lines)


def _suffix(path: Path) -> str:
    name = path.name
    return ".d.ts" if name.endswith(".d.ts") else path.suffix


# -- resolution --------------------------------------------------------------------------------


def python_modules(module: str, current: Path, roots: Sequence[Path]) -> list[Path]:
    """Candidate files of the Python ``module`` (``.x``, ``..x.y`` or ``a.b``) imported from ``current``."""
    level = len(module) - len(module.lstrip("."))
    parts = [part for part in module[level:].split(".") if part]
    if level:
        base = current.parent
        for _ in range(level - 1):
            base = base.parent
        bases = [base]
    else:
        if not parts:
            return []
        bases = list(roots)
    found: list[Path] = []
    for base in bases:
        stem = str(base.joinpath(*parts)) if parts else str(base)
        for ending in _PY_MODULE_FILES:
            if parts or ending.startswith("/"):
                found.append(Path(stem + ending))
    return found


def js_modules(spec: str, current: Path) -> list[Path]:
    """Candidate files of the relative JS/TS specifier ``spec`` imported from ``current``."""
    if not (spec.startswith(("./", "../")) or spec in (".", "..")):
        return []
    base = os.path.normpath(os.path.join(current.parent, spec))
    typescript = _suffix(current) in _TS_EXTENSIONS
    extensions = _TS_EXTENSIONS + _JS_EXTENSIONS if typescript else _JS_EXTENSIONS + _TS_EXTENSIONS
    found: list[Path] = []
    root, extension = os.path.splitext(base)
    if extension in _JS_EXTENSIONS + _TS_EXTENSIONS or extension == ".json":
        found.append(Path(base))
        if extension in _JS_EXTENSIONS:
            found.extend(Path(root + ext) for ext in _TS_EXTENSIONS[:4])
    found.extend(Path(base + ext) for ext in extensions)
    found.extend(Path(os.path.join(base, "index" + ext)) for ext in extensions)
    return found


def python_roots(current: Path, folders: Sequence[Path], files: Files) -> list[Path]:
    """Where absolute Python imports are looked for (see the module docstring)."""
    top = current.parent
    while files.exists(top / "__init__.py") and top.parent != top:
        top = top.parent
    roots = [top]
    for folder in folders:
        roots.extend((folder, folder / "src"))
    return list(dict.fromkeys(roots))


class Resolver:
    """Resolves import bindings to files and names to definitions, for one recompute."""

    def __init__(self, files: Files, folders: Sequence[Path], family: str) -> None:
        self.files = files
        self.folders = folders
        self.family = family

    def module(self, spec: str, importer: Path) -> Path | None:
        """The file of the module ``spec`` imported by ``importer`` (remembered for a short while)."""
        key = (self.family, spec, str(importer.parent))
        cache = self.files.resolved
        if key in cache:
            return cache[key]
        if self.family == syntax.PYTHON:
            parent = importer.parent
            roots = self.files.roots.get(parent)
            if roots is None:
                roots = self.files.roots[parent] = python_roots(importer, self.folders, self.files)
            found = self.files.first(python_modules(spec, importer, roots))
        else:
            found = self.files.first(js_modules(spec, importer))
        cache[key] = found
        return found

    def binding(self, binding: syntax.Binding, importer: Path) -> tuple[Path, str | None] | None:
        """(file, name in it) a binding refers to; name ``None`` when it binds the module itself."""
        path = self.module(binding.module, importer) if binding.module.strip(".") else None
        if self.family == syntax.PYTHON and binding.name is not None:
            # ``from pkg import name`` names a submodule only when pkg is a package.
            if path is None or path.stem == "__init__":
                sub = binding.module + ("" if binding.module.endswith(".") else ".") + binding.name
                submodule = self.module(sub, importer)
                if submodule is not None:
                    return submodule, None
            if path is None:
                path = self.module(binding.module, importer)
        return None if path is None else (path, binding.name)

    def locate(
        self, path: Path, name: str, hops: int = HOPS
    ) -> tuple[Path, syntax.Index, syntax.Definition] | None:
        """Where ``name`` (as ``path`` exports it) is defined, following re-exports ``hops`` deep."""
        index = self.files.index(path)
        if index is None:
            return None
        found = index.find(name)
        if found is not None:
            return path, index, found
        alias = index.aliases.get(name)
        if alias is not None and alias != name and (found := index.find(alias)) is not None:
            return path, index, found
        if hops <= 0:
            return None
        binding = index.bindings.get(alias or name)
        if binding is not None and binding.name is not None:
            target = self.binding(binding, path)
            if target is not None and target[1] is not None:
                located = self.locate(target[0], target[1], hops - 1)
                if located is not None:
                    return located
        for star in index.stars:
            target_path = self.module(star, path)
            if target_path is not None and target_path != path:
                located = self.locate(target_path, name, hops - 1)
                if located is not None:
                    return located
        return None


# -- uses near the cursor ----------------------------------------------------------------------


def uses(lines: Sequence[str], line: int, before: int, after: int = 0) -> list[tuple[int, str]]:
    """(distance from the cursor line, dotted name) for each name chain in the ``before`` lines up to
    ``line`` and the ``after`` lines below it, nearest first; import statements are skipped."""
    order: list[tuple[int, int]] = []
    for distance in range(max(before, after + 1)):
        if distance < before and 0 <= line - distance < len(lines):
            order.append((distance, line - distance))
        if 0 < distance <= after and 0 <= line + distance < len(lines):
            order.append((distance, line + distance))
    found: list[tuple[int, str]] = []
    for distance, number in order:
        text = strip_eol(lines[number])
        if not _IMPORT_LINE.match(text):
            found.extend((distance, chain) for chain in _CHAIN.findall(text))
    return found


def loose_names(
    chains: Iterable[tuple[int, str]], skip: Set[str], limit: int = MAX_LOOSE_NAMES
) -> list[tuple[int, str, bool]]:
    """(distance, name, top level only) for the names of chains that no import binds: each attribute
    (``b`` and ``c`` of ``a.b.c``), and each first name not in ``skip`` (bound or defined in the
    current file), which only a top-level definition may match. Nearest first, each name once."""
    found: dict[str, tuple[int, bool]] = {}
    for distance, chain in chains:
        head, *rest = chain.split(".")
        names = [] if head in skip or head in STOP_WORDS else [(head, True)]
        names.extend((name, False) for name in rest)
        for name, top_level_only in names:
            if name in found:
                if not top_level_only:
                    found[name] = (found[name][0], False)
            elif len(found) < limit:
                found[name] = (distance, top_level_only)
    return [(distance, name, top) for name, (distance, top) in found.items()]


def wanted(
    bindings: Sequence[syntax.Binding], chains: Iterable[tuple[int, str]]
) -> list[tuple[int, syntax.Binding, str | None]]:
    """(distance, binding, attribute) for each use of a bound name: ``attribute`` is the name after
    the binding (``m.attr``), ``None`` for a bare use. Nearest use first, each pair once."""
    by_local = {b.local: b for b in bindings if b.local != syntax.STAR}
    stars = [b.module for b in bindings if b.local == syntax.STAR]
    star_names = 0
    dotted = sorted((local for local in by_local if "." in local), key=len, reverse=True)
    seen: set[tuple[str, str | None]] = set()
    result: list[tuple[int, syntax.Binding, str | None]] = []
    for distance, chain in chains:
        head, _, rest = chain.partition(".")
        binding = by_local.get(head)
        for local in dotted:
            if chain.startswith(local + "."):
                binding, rest = by_local[local], chain[len(local) + 1 :]
                break
        if binding is None:
            if not stars or star_names >= MAX_STAR_NAMES or (head, None) in seen:
                continue
            # ``from x import *``: an unbound name may come from any of those modules.
            star_names += 1
            seen.add((head, None))
            result.extend((distance, syntax.Binding(head, module, head), None) for module in stars)
            continue
        attribute = rest.partition(".")[0] or None
        if (binding.local, attribute) in seen:
            continue
        seen.add((binding.local, attribute))
        result.append((distance, binding, attribute))
    return result


# -- the source --------------------------------------------------------------------------------


def candidates(
    document: Document,
    line: int,
    current: Path,
    resolver: Resolver,
    display: Callable[[Path], str],
    *,
    span: int = 30,
    after: int = 10,
    window: int = WINDOW,
    excerpt: int = EXCERPT,
    neighbours: Sequence[Path] = (),
) -> list[Candidate]:
    """Windows around the definitions of imported names used in the ``span`` lines up to ``line`` and
    the ``after`` lines below it; then of other names used there that an imported module or one of
    the ``neighbours`` (open documents) defines: attributes (``self.x.method``) and top-level names."""
    family = resolver.family
    bound = syntax.bindings(document.text, family)
    chains = uses(document.lines, line, span, after)
    found: dict[Path, list[Found]] = {}
    for distance, binding, attribute in wanted(bound, chains):
        target = resolver.binding(binding, current)
        if target is None:
            continue
        path, name = target
        names: list[str] = []
        if name is None:
            names.append(attribute if attribute else syntax.DEFAULT)
        else:
            names.append(name)
            if attribute:
                names.append(attribute)
        for wanted_name in names:
            if family == syntax.PYTHON and wanted_name == syntax.DEFAULT:
                continue
            located = resolver.locate(path, wanted_name)
            if located is None or located[0] == current:
                continue
            where, index, definition = located
            found.setdefault(where, []).append(Found(where, index, definition, distance))
    modules = list(dict.fromkeys([*_imported_modules(bound, current, resolver), *neighbours]))
    own = resolver.files.index(current)
    skip = {b.local.partition(".")[0] for b in bound} | set(own.definitions if own else ())
    indexes = [(path, resolver.files.index(path)) for path in modules if path != current]
    for distance, name, top_level_only in loose_names(chains, skip):
        for path, module_index in indexes:
            at = None if module_index is None else module_index.find(name)
            if module_index is not None and at is not None and (at.rank == 0 or not top_level_only):
                found.setdefault(path, []).append(Found(path, module_index, at, distance + ATTRIBUTE_PENALTY))
                break
    result: list[Candidate] = []
    for path, defs in found.items():
        lines, numbers = _excerpts(defs, family, window, excerpt)
        result.append(
            Candidate(
                source=IMPORTS,
                uri=resolver.files.uri(path),
                path=display(path),
                start=numbers[0],
                lines=lines,
                score=1.0 / (1 + min(d.distance for d in defs)),
                numbers=numbers,
            )
        )
    return result


def _imported_modules(bound: Sequence[syntax.Binding], current: Path, resolver: Resolver) -> list[Path]:
    """The workspace files the current file imports, in the order of its imports."""
    modules: dict[Path, None] = {}
    specs: set[str] = set()
    for binding in bound:
        specs.add(binding.module)
        if len(specs) > MAX_MODULES:
            break
        if binding.local == syntax.STAR:
            path = resolver.module(binding.module, current)
        else:
            target = resolver.binding(binding, current)
            path = None if target is None else target[0]
        if path is not None and path != current:
            modules[path] = None
    return list(modules)


def _lead(lines: Sequence[str], line: int, family: str) -> int:
    """The first line of the decorators and comments just above ``line``."""
    start = line
    while start > 0 and line - start < LEAD_LINES and lines[start - 1].lstrip().startswith(_LEAD[family]):
        start -= 1
    return start


def _excerpts(
    defs: Sequence[Found], family: str, window: int, excerpt: int
) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """(lines, their line numbers) of the excerpts of one file around ``defs``: each definition from
    its decorators and comments to its end, at most ``excerpt`` lines past its first line; the
    nearest uses first, until ``window`` lines are taken; in file order, an :data:`ELISION` line
    between excerpts that do not touch."""
    lines = defs[0].index.lines
    spans: list[tuple[int, int]] = []
    total = 0
    for found in sorted(defs, key=lambda d: (d.distance, d.definition.line)):
        if total >= window:
            break
        start = _lead(lines, found.definition.line, family)
        end = syntax.definition_end(lines, found.definition, family, excerpt)
        spans.append((start, end))
        total += end - start
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    texts: list[str] = []
    numbers: list[int] = []
    for start, end in merged:
        if numbers:
            texts.append(ELISION)
            numbers.append(-1)
        texts.extend(lines[start:end])
        numbers.extend(range(start, end))
    return tuple(texts), tuple(numbers)
