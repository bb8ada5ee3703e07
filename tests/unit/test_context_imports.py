"""Imports: parsing, definitions, resolution on a temporary workspace, and the bounds on reading."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from context_support import FakeGate, open_document, write

from fimls.context import IMPORTS, ContextBuilder, comment_block, syntax
from fimls.context import imports as import_source
from fimls.context.syntax import DEFAULT, STAR, Binding
from fimls.document import Document

# -- parsing -----------------------------------------------------------------------------------


def test_python_bindings() -> None:
    text = (
        "import os, a.b as ab\n"
        "import pkg.util\n"
        "from .x import y, z as zz  # comment\n"
        "from ..up import (\n"
        "    first,  # why\n"
        "    second as two,\n"
        ")\n"
        "from . import sibling\n"
        "from star import *\n"
        "def f():\n"
        "    from late import thing\n"
    )
    assert syntax.bindings(text, syntax.PYTHON) == [
        Binding("os", "os", None),
        Binding("ab", "a.b", None),
        Binding("pkg.util", "pkg.util", None),
        Binding("y", ".x", "y"),
        Binding("zz", ".x", "z"),
        Binding("first", "..up", "first"),
        Binding("two", "..up", "second"),
        Binding("sibling", ".", "sibling"),
        Binding(STAR, "star", None),
        Binding("thing", "late", "thing"),
    ]


def test_js_bindings() -> None:
    text = (
        "import def1 from './a';\n"
        'import def2, { b, c as cc, type T } from "../b.js";\n'
        "import * as ns from './ns';\n"
        "import type { Shape } from './types';\n"
        "import {\n  multi,\n  line as ml,\n} from './m';\n"
        "export { re } from './re';\n"
        "export * from './all';\n"
        "const req = require('./req');\n"
        "const { one, two: second } = require('./destructure');\n"
        "const member = require('./mem').member;\n"
        "import 'side-effect';\n"
    )
    assert syntax.bindings(text, syntax.JS) == [
        Binding("def1", "./a", DEFAULT),
        Binding("def2", "../b.js", DEFAULT),
        Binding("b", "../b.js", "b"),
        Binding("cc", "../b.js", "c"),
        Binding("T", "../b.js", "T"),
        Binding("ns", "./ns", None),
        Binding("Shape", "./types", "Shape"),
        Binding("multi", "./m", "multi"),
        Binding("ml", "./m", "line"),
        Binding("re", "./re", "re"),
        Binding(STAR, "./all", None),
        Binding("req", "./req", None),
        Binding("one", "./destructure", "one"),
        Binding("second", "./destructure", "two"),
        Binding("member", "./mem", "member"),
    ]


def test_python_definitions_and_ranks() -> None:
    text = (
        "LIMIT = 10\n"
        "name: str = 'x'\n"
        "@decorator\n"
        "class Thing(Base):\n"
        "    size: int\n"
        "    def method(self):\n"
        "        self.cache = {}\n"
        "        local = 1\n"
        "async def fetch():\n"
        "    return LIMIT == 3\n"
        "from .impl import reexported as alias\n"
    )
    index = syntax.index(text, syntax.PYTHON)
    assert index.find("LIMIT") == syntax.Definition(0, 0, 0)
    assert index.find("name") == syntax.Definition(1, 0, 0)
    assert index.find("Thing") == syntax.Definition(3, 0, 0)
    assert index.find("size") == syntax.Definition(4, 4, 2)
    assert index.find("method") == syntax.Definition(5, 4, 1)
    assert index.find("cache") == syntax.Definition(6, 8, 2)
    assert index.find("fetch") == syntax.Definition(8, 0, 0)
    assert index.find("return") is None
    assert index.bindings["alias"] == Binding("alias", ".impl", "reexported")


def test_js_definitions_exports_and_aliases() -> None:
    text = (
        "export function parse(a) {\n"
        "  return a;\n"
        "}\n"
        "export default class Widget {\n"
        "  render(props) {\n"
        "    if (props) {\n"
        "    }\n"
        "  }\n"
        "  count = 0;\n"
        "}\n"
        "const inner = 1;\n"
        "export const OUTER = 2;\n"
        "export interface Shape { x: number }\n"
        "exports.helper = function () {};\n"
        "app.listen = function listen() {};\n"
        "export { inner as renamed };\n"
    )
    index = syntax.index(text, syntax.JS)
    assert index.find("parse") == syntax.Definition(0, 0, 0)
    assert index.find("Widget") == syntax.Definition(3, 0, 0)
    assert index.find(DEFAULT) == syntax.Definition(3, 0, 0)
    assert index.find("render") == syntax.Definition(4, 2, 1)
    assert index.find("if") is None
    assert index.find("count") == syntax.Definition(8, 2, 2)
    assert index.find("OUTER") == syntax.Definition(11, 0, 0)
    assert index.find("Shape") == syntax.Definition(12, 0, 0)
    assert index.find("helper") == syntax.Definition(13, 0, 0)
    assert index.find("listen") == syntax.Definition(14, 0, 1)
    assert index.aliases["renamed"] == "inner"
    commonjs = syntax.index("function create() {}\nmodule.exports = create;\n", syntax.JS)
    assert commonjs.aliases[DEFAULT] == "create"


def test_definition_end_follows_indentation() -> None:
    python = ["def f(", "    a,", "):", "    return a", "", "    # still", "x = 1"]
    assert syntax.definition_end(python, syntax.Definition(0, 0, 0), syntax.PYTHON, 30) == 6
    assert syntax.definition_end(python, syntax.Definition(0, 0, 0), syntax.PYTHON, 3) == 3
    js = ["function f(a,", "    b) {", "  return a;", "}", "const g = 1;"]
    assert syntax.definition_end(js, syntax.Definition(0, 0, 0), syntax.JS, 30) == 4
    one_liner = ["export const A = 1;", "export const B = 2;"]
    assert syntax.definition_end(one_liner, syntax.Definition(0, 0, 0), syntax.JS, 30) == 1


def test_uses_are_nearest_first_and_skip_imports() -> None:
    lines = ["import os\n", "a = mod.f(x)\n", "b = y\n", "<cursor>\n", "c = after.g\n"]
    assert import_source.uses(lines, 3, before=3, after=1) == [
        (0, "cursor"),
        (1, "b"),
        (1, "y"),
        (1, "c"),
        (1, "after.g"),
        (2, "a"),
        (2, "mod.f"),
        (2, "x"),
    ]


def test_js_candidate_files() -> None:
    current = Path("/w/src/a.ts")
    found = import_source.js_modules("./lib/util.js", current)
    assert found[:3] == [Path("/w/src/lib/util.js"), Path("/w/src/lib/util.ts"), Path("/w/src/lib/util.tsx")]
    assert Path("/w/src/lib/util.js/index.ts") in found
    assert import_source.js_modules("../x", Path("/w/src/a.js"))[0] == Path("/w/x.js")
    assert import_source.js_modules("lodash", current) == []


# -- resolution on a workspace -----------------------------------------------------------------


PKG_UTIL = (
    "import os\n"
    "\n"
    "CONSTANT = 3\n"
    "\n"
    "\n"
    "def helper(value):\n"
    "    '''Double it.'''\n"
    "    return value * 2\n"
    "\n"
    "\n"
    "class Store:\n"
    "    def fetch(self, key):\n"
    "        return key\n"
)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    write(root, "pkg/__init__.py", "from .impl import Exported\n")
    write(root, "pkg/impl.py", "class Exported:\n    pass\n")
    write(root, "pkg/util.py", PKG_UTIL)
    write(root, "pkg/sub/__init__.py", "")
    write(root, "pkg/sub/other.py", "def other_function():\n    return 1\n")
    return root


def imports_only(documents: dict[str, Document], gate: FakeGate, **kwargs) -> ContextBuilder:
    return ContextBuilder(documents, gate, open_files=False, recent_edits=False, imports=True, **kwargs)


def test_python_imports_resolve_in_the_workspace(workspace: Path) -> None:
    current = write(
        workspace,
        "pkg/sub/mod.py",
        "from ..util import helper\n"
        "from . import other\n"
        "from pkg import Exported\n"
        "import pkg.util as u\n"
        "\n"
        "def run():\n"
        "    a = helper(1)\n"
        "    b = other.other_function()\n"
        "    c = Exported()\n"
        "    return u.CONSTANT\n",
    )
    documents: dict[str, Document] = {}
    document = open_document(documents, current, "python")
    builder = imports_only(documents, FakeGate([workspace]))
    chunks = builder.chunks_for(document.uri, 9)
    by_path = {chunk.path: chunk for chunk in chunks}
    assert set(by_path) == {"pkg/util.py", "pkg/sub/other.py", "pkg/impl.py"}
    assert all(chunk.source == IMPORTS for chunk in chunks)
    # helper and CONSTANT both live in util.py: one window, covering both definitions.
    assert by_path["pkg/util.py"].line == 2
    assert (
        by_path["pkg/util.py"].text
        == "CONSTANT = 3\n\n\ndef helper(value):\n    '''Double it.'''\n    return value * 2\n"
    )
    assert by_path["pkg/sub/other.py"].text == "def other_function():\n    return 1\n"
    # Exported is re-exported by pkg/__init__.py; its definition is in pkg/impl.py.
    assert by_path["pkg/impl.py"].text == "class Exported:\n    pass\n"
    assert builder.last_paths == tuple(chunk.path for chunk in chunks)


def test_only_names_used_near_the_cursor_are_looked_up(workspace: Path) -> None:
    lines = ["from pkg.util import helper, Store\n", *["x = 1\n"] * 60, "Store().fetch(1)\n"]
    current = write(workspace, "main.py", "".join(lines))
    documents: dict[str, Document] = {}
    document = open_document(documents, current, "python")
    chunks = imports_only(documents, FakeGate([workspace])).chunks_for(document.uri, 61)
    assert [c.text.splitlines()[0] for c in chunks] == ["class Store:"]


def test_attribute_of_an_unimported_object_is_found_in_imported_modules(workspace: Path) -> None:
    current = write(
        workspace,
        "main.py",
        "from pkg.util import CONSTANT\n\ndef go(store):\n    return store.fetch(CONSTANT)\n",
    )
    documents: dict[str, Document] = {}
    document = open_document(documents, current, "python")
    chunks = imports_only(documents, FakeGate([workspace])).chunks_for(document.uri, 3)
    assert len(chunks) == 1
    assert "CONSTANT = 3\n" in chunks[0].text
    assert "        return key\n" in chunks[0].text  # Store.fetch, found by name in the imported module


def test_star_import(workspace: Path) -> None:
    current = write(workspace, "main.py", "from pkg.util import *\n\nprint(helper(2))\n")
    documents: dict[str, Document] = {}
    document = open_document(documents, current, "python")
    chunks = imports_only(documents, FakeGate([workspace])).chunks_for(document.uri, 2)
    assert [c.line for c in chunks] == [5]


def test_open_document_text_wins_over_the_disk(workspace: Path) -> None:
    current = write(workspace, "main.py", "from pkg.util import helper\nhelper(3)\n")
    documents: dict[str, Document] = {}
    document = open_document(documents, current, "python")
    open_document(documents, workspace / "pkg/util.py", "python", "def helper(value, extra):\n    return 0\n")
    chunks = imports_only(documents, FakeGate([workspace])).chunks_for(document.uri, 1)
    assert chunks[0].text == "def helper(value, extra):\n    return 0\n"


@pytest.fixture
def js_workspace(tmp_path: Path) -> Path:
    root = tmp_path / "web"
    write(root, "src/lib/util.ts", "export function format(x: number): string {\n  return String(x);\n}\n")
    write(root, "src/b.ts", "export default class Button {\n  click() {}\n}\n")
    write(root, "src/c/index.js", "function make() {\n  return 1;\n}\nmodule.exports = make;\n")
    write(root, "src/d.js", "export const first = 1;\nexport function bar() {\n  return 2;\n}\n")
    write(root, "src/e.ts", "export * from './lib/util';\nexport { default as Button } from './b';\n")
    return root


def test_js_and_ts_imports_resolve(js_workspace: Path) -> None:
    current = write(
        js_workspace,
        "src/a.ts",
        "import { format } from './lib/util';\n"
        "import Button from './b.js';\n"
        "const make = require('./c');\n"
        "import * as d from './d';\n"
        "\n"
        "const text = format(1) + make() + d.bar();\n"
        "new Button().click();\n",
    )
    documents: dict[str, Document] = {}
    document = open_document(documents, current, "typescript")
    chunks = imports_only(documents, FakeGate([js_workspace])).chunks_for(document.uri, 6)
    texts = {chunk.path: chunk.text for chunk in chunks}
    assert texts == {
        "src/lib/util.ts": "export function format(x: number): string {\n  return String(x);\n}\n",
        "src/b.ts": "export default class Button {\n  click() {}\n}\n",
        "src/c/index.js": "function make() {\n  return 1;\n}\n",
        "src/d.js": "export function bar() {\n  return 2;\n}\n",
    }


def test_js_reexports_are_followed(js_workspace: Path) -> None:
    current = write(js_workspace, "src/main.ts", "import { format, Button } from './e';\nformat(Button);\n")
    documents: dict[str, Document] = {}
    document = open_document(documents, current, "typescript")
    chunks = imports_only(documents, FakeGate([js_workspace])).chunks_for(document.uri, 1)
    assert sorted(chunk.path for chunk in chunks) == ["src/b.ts", "src/lib/util.ts"]


# -- bounds and caching ------------------------------------------------------------------------


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every file the imports source reads from disk."""
    seen: list[str] = []
    original = import_source._read_file

    def recording(path: Path, limit: int) -> bytes:
        seen.append(os.path.realpath(path))
        return original(path, limit)

    monkeypatch.setattr(import_source, "_read_file", recording)
    return seen


def test_files_are_cached_by_mtime(workspace: Path, reads: list[str]) -> None:
    current = write(workspace, "main.py", "from pkg.util import helper\nhelper(1)\n")
    documents: dict[str, Document] = {}
    document = open_document(documents, current, "python")
    builder = imports_only(documents, FakeGate([workspace]))
    util = os.path.realpath(workspace / "pkg/util.py")
    builder.chunks_for(document.uri, 1)
    assert reads.count(util) == 1
    builder.saved(document.uri)
    builder.chunks_for(document.uri, 1)
    assert reads.count(util) == 1  # unchanged file: from the cache
    path = workspace / "pkg/util.py"
    path.write_text(PKG_UTIL.replace("value * 2", "value * 3"), encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    builder.saved(str(path))
    chunks = builder.chunks_for(document.uri, 1)
    assert reads.count(util) == 2
    assert "value * 3" in chunks[0].text


def test_big_files_are_not_read(workspace: Path, reads: list[str]) -> None:
    write(workspace, "pkg/huge.py", "def giant():\n    pass\n" + "# padding\n" * 100_000)
    current = write(workspace, "main.py", "from pkg.huge import giant\ngiant()\n")
    documents: dict[str, Document] = {}
    document = open_document(documents, current, "python")
    assert imports_only(documents, FakeGate([workspace])).chunks_for(document.uri, 1) == ()
    assert not any(path.endswith("huge.py") for path in reads)


def test_number_of_files_read_is_bounded(tmp_path: Path, reads: list[str]) -> None:
    root = tmp_path / "many"
    names = [f"m{i:02}" for i in range(30)]
    for name in names:
        write(root, f"{name}.py", f"def f_{name}():\n    return 0\n")
    text = "".join(f"from {name} import f_{name}\n" for name in names) + "".join(f"f_{n}()\n" for n in names)
    current = write(root, "main.py", text)
    documents: dict[str, Document] = {}
    document = open_document(documents, current, "python")
    builder = ContextBuilder(
        documents, FakeGate([root]), open_files=False, recent_edits=False, budget_chars=100_000
    )
    chunks = builder.chunks_for(document.uri, len(document.lines) - 1)
    assert len(reads) == import_source.MAX_FILES
    assert len(chunks) == import_source.MAX_FILES


def test_far_apart_definitions_of_one_file_become_excerpts(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    filler = "".join(f"unused_{i} = {i}\n" for i in range(100))
    write(root, "lib.py", f"def first():\n    return 1\n{filler}def second():\n    return 2\n")
    current = write(root, "main.py", "from lib import first, second\n\nfirst() + second()\n")
    documents: dict[str, Document] = {}
    document = open_document(documents, current, "python")
    chunks = imports_only(documents, FakeGate([root])).chunks_for(document.uri, 2)
    assert len(chunks) == 1
    chunk = chunks[0]
    assert chunk.text == "def first():\n    return 1\n...\ndef second():\n    return 2\n"
    assert (chunk.line, chunk.spans) == (0, ((0, 2), (102, 104)))
    assert comment_block(chunks, "python") == (
        "# Path: lib.py\n# def first():\n#     return 1\n# ...\n# def second():\n#     return 2\n"
    )


def test_top_level_names_defined_in_open_documents_are_found(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    documents: dict[str, Document] = {}
    current = open_document(documents, write(root, "main.py", "x = 2\ncompute_total(x) + scale\n"), "python")
    helper = open_document(
        documents, write(root, "helpers.py", "def compute_total(v):\n    return v\n"), "python"
    )
    # ``scale`` is only a local of a function here: a bare name never matches such a definition.
    other = open_document(
        documents, write(root, "other.py", "def f():\n    scale = 3\n    return scale\n"), "python"
    )
    builder = imports_only(documents, FakeGate([root]))
    for uri in (helper.uri, other.uri):
        builder.opened(uri)
    chunks = builder.chunks_for(current.uri, 1)
    assert [(c.path, c.source, c.text) for c in chunks] == [
        ("helpers.py", IMPORTS, "def compute_total(v):\n    return v\n")
    ]


def test_an_open_document_is_indexed_when_prepared_and_only_if_the_gate_allows(tmp_path: Path) -> None:
    documents: dict[str, Document] = {}
    gate = FakeGate([tmp_path], denied={"secret.py"})
    files = import_source.Files(gate)
    allowed = open_document(
        documents, write(tmp_path, "pkg/shapes.py", "def area(r):\n    return r\n"), "python"
    )
    denied = open_document(documents, write(tmp_path, "pkg/secret.py", "TOKEN = 'x'\n"), "python")
    for document in (allowed, denied):
        files.prepare(str(tmp_path / "pkg" / Path(document.uri).name), document)
    files.start({str(tmp_path / "pkg" / "shapes.py"): allowed, str(tmp_path / "pkg" / "secret.py"): denied})
    prepared = files._cache.get(str(tmp_path / "pkg" / "shapes.py"))
    assert prepared is not None and files.index(tmp_path / "pkg" / "shapes.py") is prepared[1]
    assert files._cache.get(str(tmp_path / "pkg" / "secret.py")) is None
    assert files.index(tmp_path / "pkg" / "secret.py") is None
    # At the next recompute a later version is indexed again, not served from what was prepared.
    allowed.version += 1
    files.start({str(tmp_path / "pkg" / "shapes.py"): allowed})
    assert files.index(tmp_path / "pkg" / "shapes.py") is not prepared[1]
