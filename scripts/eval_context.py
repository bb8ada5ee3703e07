#!/usr/bin/env python3
"""Retrieval evaluation of fimls's cross-file context (``fimls.context``).

Question: when a completion is asked for, does the context block hold the definitions of the
identifiers the next lines will use that are defined in other files of the project?

Projects: real packages nobody here wrote, fetched once with ``pip download`` and ``npm pack``
(pinned versions, see :data:`PROJECTS`) and unpacked into ``--workdir``; after that the run needs
no network. Ground truth: every definition site of every file, and the identifiers of each line of
code (strings and comments left out), from Python's ``ast`` and ``tokenize`` and from the
TypeScript compiler's parser (the ``typescript`` npm package run by Node.js) for JS/TS; neither
shares code with ``fimls.context``.

Holes (seeded): a line of a project file, uniformly over all lines, whose next 1-3 lines (the
hidden middle) use at least one *target*: an identifier of three or more characters defined in
another file of the project, neither defined nor bound (variable, parameter) anywhere in the
current file, with at most five definition sites in the project. Holes whose middle is an import
statement are skipped.

Editor session per hole: the current file is open with the middle removed, the cursor at the
start of the hole; also open are up to three files it imports (seeded choice among those that
resolve inside the project) and two other random files of the project in the same language. Each
file was opened and viewed (imported files at their top, random files at a random line), then the
current file, where the person has just typed at the hole (an edit there).

Measured per configuration (sources on and budget): *definition recall*, the share of (hole,
target) pairs for which some definition site of the target lies inside a chunk sent; and *name
present*, the share for which the target's name appears anywhere in what is sent (context block,
prompt window of 12,000 characters before the cursor on the 96-line grid, 800 after). The baseline
sends the nearest lines only (no context). Also: characters sent, the time of the first recompute
(empty caches) and of the next one after a save (warm caches), and a separate timing of a
workspace with 50 open documents of several thousand lines.

    .venv/bin/python scripts/eval_context.py                 # fetch once, then evaluate
    .venv/bin/python scripts/eval_context.py --holes 40      # quicker
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import keyword
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import tokenize
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fimls.context import ContextBuilder, Tuning, comment_block, syntax
from fimls.context import imports as import_source
from fimls.context.model import Chunk
from fimls.document import Document

PYTHON_PROJECTS = {
    # name: (requirement, package folder inside the wheel)
    "rich": ("rich==13.9.4", "rich"),
    "click": ("click==8.1.8", "click"),
    "jinja2": ("jinja2==3.1.5", "jinja2"),
    "httpx": ("httpx==0.28.1", "httpx"),
}
JS_PROJECTS = {
    # name: (npm spec, folders of sources inside the package, extensions)
    "axios": ("axios@1.7.9", ("lib",), (".js",)),
    "express": ("express@4.21.2", ("lib",), (".js",)),
    "rxjs": ("rxjs@7.8.1", ("src",), (".ts",)),
}
TYPESCRIPT = "typescript@5.6.3"
PROJECTS = [*PYTHON_PROJECTS, *JS_PROJECTS]

MAX_SITES = 5
MIN_NAME = 3
PREFIX_CHARS, SUFFIX_CHARS, ANCHOR = 12000, 800, 96
_NAME = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_PY_IMPORT = re.compile(r"^\s*(import|from)\s")
_JS_IMPORT = re.compile(r"^\s*import[\s{*]|\brequire\(|^\s*export\s.*\bfrom\b")

TS_DEFS = r"""
const fs = require('fs');
const ts = require(process.argv[2]);
const files = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));
const out = {};
for (const file of files) {
  const text = fs.readFileSync(file, 'utf8');
  const kind = file.endsWith('.ts') ? ts.ScriptKind.TS : ts.ScriptKind.JS;
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, kind);
  const defs = [];
  const add = (n) => {
    if (n && (ts.isIdentifier(n) || ts.isStringLiteral(n) || ts.isPrivateIdentifier(n))) {
      defs.push([n.text, sf.getLineAndCharacterOfPosition(n.getStart(sf)).line]);
    }
  };
  const members = (obj) => { for (const p of obj.properties) add(p.name); };
  const top = (n) => ts.isSourceFile(n.parent) || ts.isModuleBlock(n.parent);
  const visit = (n) => {
    if (ts.isFunctionDeclaration(n) || ts.isClassDeclaration(n) || ts.isInterfaceDeclaration(n) ||
        ts.isTypeAliasDeclaration(n) || ts.isEnumDeclaration(n) || ts.isModuleDeclaration(n) ||
        ts.isMethodDeclaration(n) || ts.isMethodSignature(n) || ts.isPropertyDeclaration(n) ||
        ts.isPropertySignature(n) || ts.isGetAccessorDeclaration(n) || ts.isSetAccessorDeclaration(n)) {
      add(n.name);
    } else if (ts.isVariableStatement(n) && top(n)) {
      for (const d of n.declarationList.declarations) {
        add(d.name);
        if (d.initializer && ts.isObjectLiteralExpression(d.initializer)) members(d.initializer);
      }
    } else if (ts.isExpressionStatement(n) && top(n) && ts.isBinaryExpression(n.expression) &&
               n.expression.operatorToken.kind === ts.SyntaxKind.EqualsToken) {
      const left = n.expression.left, right = n.expression.right;
      if (ts.isPropertyAccessExpression(left)) add(left.name);
      if (ts.isObjectLiteralExpression(right)) members(right);
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  const ids = [];
  const collect = (n) => {
    if (ts.isIdentifier(n) || ts.isPrivateIdentifier(n)) {
      ids.push([n.text, sf.getLineAndCharacterOfPosition(n.getStart(sf)).line]);
    }
    ts.forEachChild(n, collect);
  };
  collect(sf);
  const locals = [];
  const binds = (n) => {
    const binding = ts.isParameter(n) || ts.isVariableDeclaration(n) || ts.isBindingElement(n);
    if (binding && ts.isIdentifier(n.name)) {
      locals.push(n.name.text);
    }
    ts.forEachChild(n, binds);
  };
  binds(sf);
  out[file] = {defs, ids, locals};
}
process.stdout.write(JSON.stringify(out));
"""


# -- fetching ----------------------------------------------------------------------------------


def fetch(workdir: Path) -> None:
    """Download and unpack every project (once; later runs reuse ``workdir``)."""
    downloads = workdir / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    for name, (requirement, _) in PYTHON_PROJECTS.items():
        target = workdir / "py" / name
        if target.exists():
            continue
        print(f"fetching {requirement}", file=sys.stderr)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(downloads), requirement],
            check=True,
        )
        package, version = requirement.split("==")
        wheel = next(w for w in downloads.glob(f"*-{version}-*.whl") if w.name.lower().startswith(package))
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(target)
    for name, spec in [*((n, s[0]) for n, s in JS_PROJECTS.items()), ("typescript", TYPESCRIPT)]:
        target = workdir / "js" / name
        if target.exists():
            continue
        print(f"fetching {spec}", file=sys.stderr)
        packed = subprocess.run(
            ["npm", "pack", spec, "--pack-destination", str(downloads), "--json"],
            check=True,
            capture_output=True,
            text=True,
        )
        filename = json.loads(packed.stdout)[0]["filename"]
        with tarfile.open(downloads / filename) as archive:
            archive.extractall(target, filter="data")


# -- projects and ground truth -----------------------------------------------------------------


@dataclass
class Project:
    name: str
    root: Path
    language: str
    files: list[Path]
    texts: dict[Path, str] = field(default_factory=dict)
    defs: dict[Path, dict[str, list[int]]] = field(default_factory=dict)
    names: dict[Path, dict[int, list[str]]] = field(default_factory=dict)
    """The identifiers of each line of code (strings and comments excluded), from a real lexer."""
    sites: dict[str, list[tuple[Path, int]]] = field(default_factory=dict)
    locals: dict[Path, set[str]] = field(default_factory=dict)
    """Names each file binds itself (variables, parameters), whatever the depth."""


def load(workdir: Path, name: str) -> Project:
    if name in PYTHON_PROJECTS:
        root = workdir / "py" / name
        files = sorted((root / PYTHON_PROJECTS[name][1]).rglob("*.py"))
        project = Project(name, root, "python", files)
        for path in files:
            project.texts[path] = path.read_text(encoding="utf-8")
            project.defs[path] = python_defs(project.texts[path])
            project.names[path] = python_names(project.texts[path])
            project.locals[path] = python_locals(project.texts[path])
    else:
        _, folders, extensions = JS_PROJECTS[name]
        root = workdir / "js" / name / "package"
        files = sorted(
            p
            for folder in folders
            for p in (root / folder).rglob("*")
            if p.suffix in extensions and not p.name.endswith(".d.ts") and p.is_file()
        )
        language = "typescript" if extensions == (".ts",) else "javascript"
        project = Project(name, root, language, files)
        for path in files:
            project.texts[path] = path.read_text(encoding="utf-8")
        project.defs, project.names, project.locals = js_defs(workdir, files)
    for path, defs in project.defs.items():
        for ident, lines in defs.items():
            project.sites.setdefault(ident, []).extend((path, line) for line in lines)
    return project


def python_defs(text: str) -> dict[str, list[int]]:
    """Functions, classes, module and class attributes, and ``self.x =`` of a Python file."""
    found: dict[str, list[int]] = {}

    def add(name: str, line: int) -> None:
        found.setdefault(name, []).append(line - 1)

    def visit(node: ast.AST, scope: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                add(child.name, child.lineno)
                visit(child, "class" if isinstance(child, ast.ClassDef) else "function")
                continue
            if isinstance(child, ast.Assign | ast.AnnAssign):
                targets = child.targets if isinstance(child, ast.Assign) else [child.target]
                for target in targets:
                    if isinstance(target, ast.Name) and scope != "function":
                        add(target.id, target.lineno)
                    elif (
                        isinstance(target, ast.Attribute)
                        and isinstance(target.value, ast.Name)
                        and target.value.id == "self"
                    ):
                        add(target.attr, target.lineno)
            visit(child, scope)

    visit(ast.parse(text), "module")
    return found


def python_locals(text: str) -> set[str]:
    """Every name a Python file binds itself: assignments at any depth, parameters, ``as`` names."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            found.add(node.id)
        elif isinstance(node, ast.arg):
            found.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            found.add(node.name)
    return found


def python_names(text: str) -> dict[int, list[str]]:
    """Line -> the identifiers Python's tokenizer finds there (keywords, strings, comments excluded)."""
    found: dict[int, list[str]] = {}
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.NAME and not keyword.iskeyword(token.string):
            found.setdefault(token.start[0] - 1, []).append(token.string)
    return found


def js_defs(
    workdir: Path, files: Sequence[Path]
) -> tuple[dict[Path, dict[str, list[int]]], dict[Path, dict[int, list[str]]], dict[Path, set[str]]]:
    """Definitions and identifiers per line of JS/TS files, from the TypeScript parser."""
    typescript = workdir / "js" / "typescript" / "package" / "lib" / "typescript.js"
    with tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "ts_defs.js"
        script.write_text(TS_DEFS, encoding="utf-8")
        listing = Path(scratch) / "ts_files.json"
        listing.write_text(json.dumps([str(p) for p in files]), encoding="utf-8")
        result = subprocess.run(
            ["node", str(script), str(typescript), str(listing)], check=True, capture_output=True, text=True
        )
    found: dict[Path, dict[str, list[int]]] = {}
    names: dict[Path, dict[int, list[str]]] = {}
    bound: dict[Path, set[str]] = {}
    for file, parsed in json.loads(result.stdout).items():
        bound[Path(file)] = set(parsed["locals"])
        defs: dict[str, list[int]] = {}
        for ident, line in parsed["defs"]:
            defs.setdefault(ident, []).append(line)
        found[Path(file)] = defs
        per_line: dict[int, list[str]] = {}
        for ident, line in parsed["ids"]:
            per_line.setdefault(line, []).append(ident)
        names[Path(file)] = per_line
    return found, names, bound


# -- holes and sessions ------------------------------------------------------------------------


@dataclass
class Hole:
    path: Path
    line: int
    size: int
    targets: list[str]


def split(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def pick_holes(project: Project, count: int, rng: random.Random) -> list[Hole]:
    weights = [len(split(project.texts[p])) for p in project.files]
    importing = _PY_IMPORT if project.language == "python" else _JS_IMPORT
    holes: list[Hole] = []
    seen: set[tuple[Path, int]] = set()
    for _ in range(count * 60):
        if len(holes) >= count:
            break
        path = rng.choices(project.files, weights)[0]
        lines = split(project.texts[path])
        line = rng.randrange(len(lines))
        size = rng.choice((1, 2, 3))
        middle = lines[line : line + size]
        if (path, line) in seen or not middle or any(importing.search(m) for m in middle):
            continue
        seen.add((path, line))
        own = set(project.defs.get(path, {})) | project.locals.get(path, set())
        targets = []
        code = project.names.get(path, {})
        for ident in dict.fromkeys(
            name for number in range(line, line + size) for name in code.get(number, ())
        ):
            sites = project.sites.get(ident, [])
            if (
                len(ident) >= MIN_NAME
                and ident not in own
                and 0 < len(sites) <= MAX_SITES
                and any(site != path for site, _ in sites)
            ):
                targets.append(ident)
        if targets:
            holes.append(Hole(path, line, len(middle), targets))
    return holes


class Gate:
    """A gate that allows every file inside the project folder."""

    def __init__(self, root: Path) -> None:
        self.folders = [root.resolve()]
        self.asked: list[str] = []

    def check(self, uri: str, language_id: str | None = None) -> str | None:
        return None

    def check_path(self, path: Path, language_id: str | None = None) -> str | None:
        return None

    def in_workspace(self, target: str | Path) -> bool:
        raw = str(target)
        if raw.startswith("file:"):
            from pygls import uris

            raw = uris.to_fs_path(raw) or ""
        real = os.path.realpath(raw)
        return any(real.startswith(str(folder) + os.sep) for folder in self.folders)


def imported_files(project: Project, path: Path, gate: Gate) -> list[Path]:
    """Files of the project that ``path`` imports (what a person would open next to it)."""
    family = syntax.FAMILIES[project.language]
    files = import_source.Files(gate)
    files.start({})
    resolver = import_source.Resolver(files, gate.folders, family)
    found: list[Path] = []
    for binding in syntax.bindings(project.texts[path], family):
        if binding.local == syntax.STAR and family == syntax.JS:
            target = resolver.module(binding.module, path)
        else:
            resolved = resolver.binding(binding, path)
            target = None if resolved is None else resolved[0]
        if target is not None and target in project.texts and target != path and target not in found:
            found.append(target)
    return found


@dataclass
class Session:
    documents: dict[str, Document]
    current: Document
    opened: list[tuple[str, int]]
    snapshot_text: str


def session(project: Project, hole: Hole, rng: random.Random, gate: Gate) -> Session:
    lines = split(project.texts[hole.path])
    visible = "".join(lines[: hole.line] + lines[hole.line + hole.size :])
    current = Document(hole.path.as_uri(), visible, 1, project.language)
    imported = imported_files(project, hole.path, gate)
    chosen = rng.sample(imported, min(3, len(imported)))
    others = [p for p in project.files if p != hole.path and p not in chosen]
    randoms = rng.sample(others, min(2, len(others)))
    documents: dict[str, Document] = {}
    opened: list[tuple[str, int]] = []
    for path in [*chosen, *randoms]:
        document = Document(path.as_uri(), project.texts[path], 1, project.language)
        documents[document.uri] = document
        view = 0 if path in chosen else rng.randrange(len(document.lines))
        opened.append((document.uri, view))
    documents[current.uri] = current
    opened.append((current.uri, hole.line))
    snapshot = current.snapshot(
        min(hole.line, len(current.lines) - 1),
        0,
        encoding="utf-16",
        max_prefix=PREFIX_CHARS,
        max_suffix=SUFFIX_CHARS,
        anchor=ANCHOR,
    )
    return Session(documents, current, opened, snapshot.prefix + snapshot.suffix)


@dataclass
class Config:
    name: str
    open_files: bool = False
    recent_edits: bool = False
    imports: bool = False
    budget: int = 4000
    tuning: Tuning = field(default_factory=Tuning)


def run_config(
    config: Config, project: Project, hole: Hole, sess: Session, gate: Gate
) -> tuple[tuple[Chunk, ...], float, float]:
    builder = ContextBuilder(
        sess.documents,
        gate,
        open_files=config.open_files,
        recent_edits=config.recent_edits,
        imports=config.imports,
        budget_chars=config.budget,
        prompt_chars=PREFIX_CHARS,
        suffix_chars=SUFFIX_CHARS,
        tuning=config.tuning,
    )
    for uri, line in sess.opened:
        builder.opened(uri)
        builder.viewed(uri, line)
    builder.edited(sess.current.uri, hole.line, hole.line)
    start = time.perf_counter()
    chunks = builder.chunks_for(sess.current.uri, hole.line)
    first = (time.perf_counter() - start) * 1000
    builder.saved(sess.current.uri)  # a coarse event: chosen again, with the builder's caches warm
    start = time.perf_counter()
    again = builder.chunks_for(sess.current.uri, hole.line)
    assert again == chunks
    return chunks, first, (time.perf_counter() - start) * 1000


@dataclass
class Tally:
    targets: int = 0
    found: int = 0
    present: int = 0
    chars: list[int] = field(default_factory=list)
    ms: list[float] = field(default_factory=list)
    warm_ms: list[float] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.targets += other.targets
        self.found += other.found
        self.present += other.present
        self.chars += other.chars
        self.ms += other.ms
        self.warm_ms += other.warm_ms


def score(project: Project, hole: Hole, chunks: Sequence[Chunk], sess: Session) -> tuple[int, int]:
    spans: list[tuple[Path, int, int]] = []
    for chunk in chunks:
        from pygls import uris

        path = Path(uris.to_fs_path(chunk.uri) or "")
        spans.extend((path, start, end) for start, end in chunk.spans)
    sent = set(_NAME.findall(sess.snapshot_text + "".join(c.text for c in chunks)))
    found = present = 0
    for ident in hole.targets:
        sites = project.sites[ident]
        if any(p == sp and lo <= line < hi for sp, line in sites if sp != hole.path for p, lo, hi in spans):
            found += 1
        if ident in sent:
            present += 1
    return found, present


def evaluate(
    projects: Sequence[Project], configs: Sequence[Config], holes: int, seed: int
) -> dict[str, dict[str, Tally]]:
    results: dict[str, dict[str, Tally]] = {}
    for index, project in enumerate(projects):
        rng = random.Random(seed * 1000 + index)
        gate = Gate(project.root)
        chosen = pick_holes(project, holes, rng)
        per: dict[str, Tally] = {c.name: Tally() for c in configs}
        for hole in chosen:
            sess = session(project, hole, rng, gate)
            for config in configs:
                chunks, ms, warm = run_config(config, project, hole, sess, gate)
                found, present = score(project, hole, chunks, sess)
                tally = per[config.name]
                tally.targets += len(hole.targets)
                tally.found += found
                tally.present += present
                tally.chars.append(len(comment_block(chunks, project.language)))
                tally.ms.append(ms)
                tally.warm_ms.append(warm)
        results[project.name] = per
        print(f"{project.name}: {len(chosen)} holes, {per[configs[0].name].targets} targets", file=sys.stderr)
    return results


# -- 50 open documents -------------------------------------------------------------------------


def many_documents(project: Project, count: int = 50, lines_each: int = 4000) -> dict[str, float]:
    """Recompute times with ``count`` open documents of about ``lines_each`` lines each."""
    gate = Gate(project.root)
    pool = [project.texts[p] for p in project.files]
    rng = random.Random(7)
    documents: dict[str, Document] = {}
    for number in range(count):
        parts: list[str] = []
        while sum(t.count("\n") for t in parts) < lines_each:
            parts.append(rng.choice(pool))
        uri = (project.root / f"many_{number:02}.py").as_uri()
        documents[uri] = Document(uri, "".join(parts), 1, project.language)
    current = next(iter(documents))
    builder = ContextBuilder(documents, gate, prompt_chars=PREFIX_CHARS, suffix_chars=SUFFIX_CHARS)
    for uri in documents:
        builder.opened(uri)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    builder.chunks_for(current, 2000)
    timings["cold"] = (time.perf_counter() - start) * 1000
    warm: list[float] = []
    for step in range(10):
        builder.saved(current)  # a coarse event: the block is chosen afresh, windows are reused
        start = time.perf_counter()
        builder.chunks_for(current, 2000 + step * 40)
        warm.append((time.perf_counter() - start) * 1000)
    timings["warm"] = statistics.median(warm)
    repeats = 20000
    start = time.perf_counter()
    for _ in range(repeats):
        builder.chunks_for(current, 2000 + 9 * 40)
    timings["cached_us"] = (time.perf_counter() - start) * 1e6 / repeats
    timings["lines"] = sum(len(d.lines) for d in documents.values())
    return timings


# -- report ------------------------------------------------------------------------------------


def _p50_p95(values: Sequence[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return (
        f"{statistics.median(ordered):.2f} / {ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]:.2f}"
    )


def table(results: dict[str, dict[str, Tally]], configs: Sequence[Config]) -> str:
    names = list(results)
    head = (
        "| configuration | "
        + " | ".join(names)
        + " | all | name present (all) | block chars p50 | first ms p50 / p95 | again ms p50 / p95 |"
    )
    rule = "|---" * (len(names) + 6) + "|"
    rows = [head, rule]
    for config in configs:
        total = Tally()
        cells = []
        for name in names:
            tally = results[name][config.name]
            total.add(tally)
            cells.append(f"{100 * tally.found / max(1, tally.targets):.1f}")
        rows.append(
            f"| {config.name} | "
            + " | ".join(cells)
            + f" | {100 * total.found / max(1, total.targets):.1f}"
            + f" | {100 * total.present / max(1, total.targets):.1f}"
            + f" | {statistics.median(total.chars) if total.chars else 0:.0f}"
            + f" | {_p50_p95(total.ms)} | {_p50_p95(total.warm_ms)} |"
        )
    return "\n".join(rows)


def configs_for(budget: int) -> list[Config]:
    return [
        Config("nearest lines only (baseline)", budget=budget),
        Config("open files", open_files=True, budget=budget),
        Config("recent edits and views", recent_edits=True, budget=budget),
        Config("imports", imports=True, budget=budget),
        Config("combined", True, True, True, budget),
        Config("combined, budget 2000", True, True, True, 2000),
        Config("combined, budget 8000", True, True, True, 8000),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "fimls-eval-context")
    parser.add_argument("--holes", type=int, default=100, help="holes per project")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--budget", type=int, default=4000)
    parser.add_argument("--projects", nargs="*", default=PROJECTS, choices=PROJECTS)
    parser.add_argument("--fetch-only", action="store_true")
    parser.add_argument("--clean", action="store_true", help="delete the work folder first")
    args = parser.parse_args(argv)
    if args.clean and args.workdir.exists():
        shutil.rmtree(args.workdir)
    fetch(args.workdir)
    if args.fetch_only:
        return 0
    started = time.perf_counter()
    projects = [load(args.workdir, name) for name in args.projects]
    for project in projects:
        print(
            f"{project.name}: {len(project.files)} files, {sum(map(len, project.texts.values()))} chars",
            file=sys.stderr,
        )
    configs = configs_for(args.budget)
    results = evaluate(projects, configs, args.holes, args.seed)
    print(table(results, configs))
    print()
    for project in projects:
        if project.name in ("rich", "rxjs"):
            timing = many_documents(project)
            print(
                f"50 open documents from {project.name} ({timing['lines']:.0f} lines): first recompute "
                f"{timing['cold']:.0f} ms, later recomputes {timing['warm']:.1f} ms (median), "
                f"cached block {timing['cached_us']:.2f} µs"
            )
    print(f"\n(run took {time.perf_counter() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
