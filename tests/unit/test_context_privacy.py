"""Privacy: every context source passes the gate; nothing outside the workspace is read."""

from __future__ import annotations

import builtins
import os
from pathlib import Path

import pytest
from context_support import FakeGate, open_document, write

from fimls.context import ContextBuilder, comment_block
from fimls.context import imports as import_source
from fimls.document import Document

SECRET_CODE = "".join(
    f"def customer_total_{i}(orders):\n    return sum(order.amount for order in orders)\n" for i in range(30)
)
CURRENT = "".join(
    [
        "from pkg import secrets\n",
        "from pkg.link import leak_linked\n",
        "from ..outside import leak_relative\n",
        "\n",
        "def customer_totals(orders):\n",
        "    a = secrets.token()\n",
        "    b = leak_linked() + leak_relative()\n",
        "    return sum(order.amount for order in orders)\n",
    ]
)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "ws"
    outside = tmp_path / "outside"
    write(outside, "leak.py", "def leak_linked():\n    return 'outside secret'\n")
    write(tmp_path, "outside.py", "def leak_relative():\n    return 'outside secret'\n")
    write(root, "pkg/__init__.py", "")
    write(root, "pkg/secrets.py", "def token():\n    return 'denied secret'\n")
    os.symlink(outside / "leak.py", root / "pkg" / "link.py")
    write(root, "main.py", CURRENT)
    return root, outside


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every file opened (by any code) while the test runs, resolved."""
    seen: list[str] = []
    original = builtins.open

    def recording(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        if isinstance(file, (str, os.PathLike)):
            seen.append(os.path.realpath(file))
        return original(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", recording)
    return seen


def test_denied_and_outside_imports_are_never_read(setup: tuple[Path, Path], opened: list[str]) -> None:
    root, outside = setup
    documents: dict[str, Document] = {}
    current = open_document(documents, root / "main.py", "python")
    gate = FakeGate([root], denied={"secrets.py"})
    builder = ContextBuilder(documents, gate, budget_chars=100_000)
    chunks = builder.chunks_for(current.uri, 6)
    assert "secret" not in comment_block(chunks, "python")
    assert chunks == ()
    assert opened == []  # nothing was allowed, so nothing was opened at all
    assert str(root / "pkg" / "secrets.py") in gate.asked  # asked, and refused, before any read
    assert gate.allowed_paths == []
    assert str(root.parent / "outside.py") not in gate.asked  # outside the folders: not even looked at
    assert str(outside / "leak.py") not in gate.asked


def test_allowed_import_is_read_and_outside_ones_still_are_not(
    setup: tuple[Path, Path], opened: list[str]
) -> None:
    root, _ = setup
    documents: dict[str, Document] = {}
    current = open_document(documents, root / "main.py", "python")
    builder = ContextBuilder(documents, FakeGate([root]), budget_chars=100_000)
    chunks = builder.chunks_for(current.uri, 6)
    assert [c.path for c in chunks] == ["pkg/secrets.py"]
    workspace = os.path.realpath(root) + os.sep
    assert opened and all(path.startswith(workspace) for path in opened)


def test_symlinked_import_to_outside_is_not_read_even_when_open_files_list_it(
    setup: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = setup
    reads: list[str] = []
    original = import_source._read_file
    monkeypatch.setattr(import_source, "_read_file", lambda p, n: reads.append(str(p)) or original(p, n))
    documents: dict[str, Document] = {}
    current = open_document(documents, root / "main.py", "python")
    ContextBuilder(documents, FakeGate([root]), open_files=False, recent_edits=False).chunks_for(
        current.uri, 6
    )
    assert str(root / "pkg" / "link.py") not in reads
    assert all(os.path.realpath(p).startswith(os.path.realpath(root) + os.sep) for p in reads)


def test_denied_open_document_never_contributes(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    documents: dict[str, Document] = {}
    current = open_document(documents, write(root, "main.py", CURRENT), "python")
    secret = open_document(documents, write(root, ".env.py", SECRET_CODE), "python")
    allowed = open_document(
        documents,
        write(root, "fine.py", SECRET_CODE.replace("customer", "client").replace("sum(", "len(")),
        "python",
    )
    gate = FakeGate([root], denied={".env.py"})
    builder = ContextBuilder(documents, gate, imports=False, budget_chars=100_000)
    for document in (secret, allowed):
        builder.opened(document.uri)
        builder.viewed(document.uri, 10)  # in the ring too
        builder.edited(document.uri, 12, 12)
    builder.opened(current.uri)
    chunks = builder.chunks_for(current.uri, 6)
    assert {c.path for c in chunks} == {"fine.py"}
    assert "customer_total_" not in comment_block(chunks, "python")
    assert ".env.py" not in builder.last_paths


def test_documents_of_a_disabled_language_never_contribute(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    documents: dict[str, Document] = {}
    current = open_document(documents, write(root, "main.py", CURRENT), "python")
    other = open_document(documents, write(root, "notes.rb", SECRET_CODE), "ruby")
    builder = ContextBuilder(documents, FakeGate([root], languages={"python"}), imports=False)
    builder.opened(other.uri)
    builder.viewed(other.uri, 3)
    assert builder.chunks_for(current.uri, 6) == ()


def test_open_documents_outside_the_workspace_never_contribute(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    documents: dict[str, Document] = {}
    current = open_document(documents, write(root, "main.py", CURRENT), "python")
    stray = open_document(documents, write(tmp_path / "elsewhere", "stray.py", SECRET_CODE), "python")
    untitled = Document("untitled:Untitled-1", SECRET_CODE, 1, "python")
    documents[untitled.uri] = untitled
    builder = ContextBuilder(documents, FakeGate([root]), imports=False)
    for uri in (stray.uri, untitled.uri):
        builder.opened(uri)
        builder.viewed(uri, 3)
    assert builder.chunks_for(current.uri, 6) == ()


def test_blocked_current_document_gets_no_context(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    documents: dict[str, Document] = {}
    current = open_document(documents, write(root, "secrets.py", CURRENT), "python")
    other = open_document(documents, write(root, "fine.py", SECRET_CODE), "python")
    builder = ContextBuilder(documents, FakeGate([root], denied={"secrets.py"}))
    builder.opened(other.uri)
    assert builder.chunks_for(current.uri, 6) == ()


def test_js_import_outside_the_workspace_is_not_read(tmp_path: Path, opened: list[str]) -> None:
    root = tmp_path / "web"
    write(tmp_path, "shared/util.js", "export function leak() { return 'outside'; }\n")
    documents: dict[str, Document] = {}
    current = open_document(
        documents,
        write(root, "src/a.js", "import { leak } from '../../shared/util';\nleak();\n"),
        "javascript",
    )
    gate = FakeGate([root])
    assert ContextBuilder(documents, gate).chunks_for(current.uri, 1) == ()
    assert opened == []
    assert not any("shared" in asked for asked in gate.asked)  # not even asked: its folder is outside
