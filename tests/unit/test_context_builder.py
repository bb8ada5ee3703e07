"""ContextBuilder: sources, ranking, and a block that stays byte-identical between coarse events."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from context_support import FakeGate, open_document, write

from fimls.context import EDITS, OPEN, ContextBuilder, Tuning, comment_block
from fimls.context.ring import Ring
from fimls.document import Document

CURRENT = "".join(
    [
        "import json\n",
        *[f"# filler line {i}\n" for i in range(40)],
        "def summarize(orders):\n",
        "    totals = {}\n",
        "    for order in orders:\n",
        "        customer = order.customer\n",
        "        totals[customer] = totals.get(customer, 0) + order.amount\n",
        "    return totals\n",
        "\n",
    ]
)
LINE = CURRENT.count("\n") - 1

RELATED = "".join(
    [
        *[f"unrelated_{i} = {i}\n" for i in range(70)],
        "def by_customer(orders):\n",
        "    result = {}\n",
        "    for order in orders:\n",
        "        result.setdefault(order.customer, []).append(order.amount)\n",
        "    return result\n",
        *[f"other_{i} = {i}\n" for i in range(70)],
    ]
)


def editor(tmp_path: Path, **kwargs) -> tuple[ContextBuilder, dict[str, Document], Document, Path]:
    root = tmp_path / "ws"
    documents: dict[str, Document] = {}
    current = open_document(documents, write(root, "app/report.py", CURRENT), "python")
    builder = ContextBuilder(documents, FakeGate([root]), **kwargs)
    builder.opened(current.uri)
    return builder, documents, current, root


def type_text(document: Document, builder: ContextBuilder, line: int, column: int, text: str) -> None:
    """Insert ``text`` at (line, column) as an editor would, one change, then tell the builder."""
    document.apply_change(text, (line, column), (line, column))
    document.version += 1
    builder.edited(document.uri, line, line + text.count("\n"))


def test_open_file_window_is_the_most_similar_one(tmp_path: Path) -> None:
    builder, documents, current, root = editor(tmp_path, recent_edits=False, imports=False)
    related = open_document(documents, write(root, "app/related.py", RELATED), "python")
    builder.opened(related.uri)
    chunks = builder.chunks_for(current.uri, LINE)
    assert len(chunks) == 1
    chunk = chunks[0]
    assert (chunk.path, chunk.source, chunk.uri) == ("app/related.py", OPEN, related.uri)
    lines = chunk.text.splitlines()
    assert "def by_customer(orders):" in lines
    assert chunk.line % 10 == 0  # windows start on the 10-line grid
    assert lines[0] == related.line_text(chunk.line)
    assert builder.last_paths == ("app/related.py",)


def test_the_current_document_and_copies_of_its_prompt_are_skipped(tmp_path: Path) -> None:
    builder, documents, current, root = editor(tmp_path, recent_edits=False, imports=False)
    copy = open_document(documents, write(root, "app/copy.py", CURRENT), "python")
    builder.opened(copy.uri)
    assert builder.chunks_for(current.uri, LINE) == ()


def test_same_language_first(tmp_path: Path) -> None:
    builder, documents, current, root = editor(tmp_path, recent_edits=False, imports=False, budget_chars=60)
    js = open_document(
        documents, write(root, "web/orders.js", RELATED.replace("def ", "function ")), "javascript"
    )
    weak = "orders = []\nvalue = orders\nmore = value\n"  # 40 characters, a little similar
    py = open_document(documents, write(root, "app/weak.py", weak), "python")
    builder.opened(js.uri)
    builder.opened(py.uri)
    assert [c.path for c in builder.chunks_for(current.uri, LINE)] == ["app/weak.py"]
    builder.configure(budget_chars=4000)
    assert [c.path for c in builder.chunks_for(current.uri, LINE)] == ["web/orders.js", "app/weak.py"]


def test_budget_is_respected_with_many_open_files(tmp_path: Path) -> None:
    builder, documents, current, root = editor(tmp_path, recent_edits=False, imports=False, budget_chars=1500)
    for i in range(12):
        doc = open_document(
            documents, write(root, f"app/m{i}.py", RELATED.replace("result", f"result{i}")), "python"
        )
        builder.opened(doc.uri)
    chunks = builder.chunks_for(current.uri, LINE)
    assert sum(len(c.text) for c in chunks) <= 1500
    assert len({c.path for c in chunks}) == len(chunks) >= 2


def test_only_the_most_recently_used_documents_keep_their_window_index(tmp_path: Path) -> None:
    tuning = Tuning(max_open_documents=3)
    builder, documents, current, root = editor(tmp_path, recent_edits=False, imports=False, tuning=tuning)
    others = []
    for i in range(6):
        doc = open_document(documents, write(root, f"app/m{i}.py", RELATED), "python")
        builder.opened(doc.uri)
        others.append(doc)
    assert len(builder._windows) == 4  # the three most recent and the one opened last
    assert set(builder._windows) == {d.uri for d in others[2:]}
    builder.viewed(others[0].uri, 0)  # the oldest is used again: indexed again when scanned
    builder.viewed(current.uri, LINE)
    paths = [c.path for c in builder.chunks_for(current.uri, LINE)]
    assert "app/m0.py" in paths
    assert others[0].uri in builder._windows and len(builder._windows) <= 4


def test_block_is_byte_identical_across_keystrokes(tmp_path: Path) -> None:
    builder, documents, current, root = editor(tmp_path)
    for i in range(3):
        doc = open_document(
            documents, write(root, f"app/r{i}.py", RELATED.replace("orders", f"orders{i}")), "python"
        )
        builder.opened(doc.uri)
        builder.viewed(doc.uri, 72)
    first = builder.chunks_for(current.uri, LINE)
    block = comment_block(first, "python")
    assert block
    line, column = LINE, 0
    rng = random.Random(5)
    for _ in range(300):
        character = rng.choice("abcdefgh (),.=")
        type_text(current, builder, line, column, character)
        column += 1
        assert builder.chunks_for(current.uri, line) is first
        assert comment_block(builder.chunks_for(current.uri, line), "python") == block
    for _ in range(7):  # fewer new lines than refresh_lines
        type_text(current, builder, line, column, "\n")
        line, column = line + 1, 0
        type_text(current, builder, line, column, "x = 1")
        column = 5
        assert builder.chunks_for(current.uri, line) is first
    assert builder.recomputes == 1


def test_recomputed_after_coarse_events(tmp_path: Path) -> None:
    builder, documents, current, root = editor(tmp_path, tuning=Tuning(jump_lines=20, refresh_lines=8))
    other = open_document(documents, write(root, "app/related.py", RELATED), "python")
    builder.chunks_for(current.uri, LINE)
    assert builder.recomputes == 1
    builder.opened(other.uri)
    builder.chunks_for(current.uri, LINE)
    assert builder.recomputes == 2
    builder.saved(current.uri)
    builder.chunks_for(current.uri, LINE)
    assert builder.recomputes == 3
    builder.closed(other.uri)
    del documents[other.uri]
    builder.chunks_for(current.uri, LINE)
    assert builder.recomputes == 4
    for i in range(8):  # the eighth new line refreshes the block
        type_text(current, builder, LINE + i, 0, "\n")
        builder.chunks_for(current.uri, LINE + i + 1)
        assert builder.recomputes == (4 if i < 7 else 5)
    builder.chunks_for(current.uri, LINE + 8 - 19)  # a cursor move, not far yet
    assert builder.recomputes == 5
    builder.chunks_for(current.uri, LINE + 8 - 20)  # a far one
    assert builder.recomputes == 6
    builder.configure(budget_chars=100)
    builder.chunks_for(current.uri, 0)
    assert builder.recomputes == 7


def test_switching_documents_back_and_forth_keeps_each_block(tmp_path: Path) -> None:
    builder, documents, current, root = editor(tmp_path)
    other = open_document(documents, write(root, "app/related.py", RELATED), "python")
    builder.opened(other.uri)
    mine = builder.chunks_for(current.uri, LINE)
    theirs = builder.chunks_for(other.uri, 72)
    assert builder.recomputes == 2
    builder.viewed(current.uri, LINE)
    assert builder.chunks_for(current.uri, LINE) is mine
    builder.viewed(other.uri, 72)
    assert builder.chunks_for(other.uri, 72) is theirs
    assert builder.recomputes == 2


def test_same_inputs_same_block(tmp_path: Path) -> None:
    def run(order: list[int]) -> str:
        documents: dict[str, Document] = {}
        root = tmp_path / "ws"
        texts = {i: RELATED.replace("result", f"res{i}") for i in range(6)}
        uris = {
            i: open_document(documents, write(root, f"app/f{i}.py", texts[i]), "python").uri for i in order
        }
        current = open_document(documents, write(root, "app/report.py", CURRENT), "python")
        builder = ContextBuilder(documents, FakeGate([root]))
        for i in range(6):  # the same events, whatever the dictionary's order
            builder.opened(uris[i])
            builder.viewed(uris[i], 10 * i)
        builder.opened(current.uri)
        return comment_block(builder.chunks_for(current.uri, LINE), "python")

    first = run(list(range(6)))
    assert first
    assert run([5, 3, 1, 0, 2, 4]) == first
    assert run([4, 0, 5, 1, 3, 2]) == first


def test_recent_edits_of_other_documents(tmp_path: Path) -> None:
    builder, documents, current, root = editor(tmp_path, open_files=False, imports=False)
    notes = "".join(f"line_{i} = compute_{i}(orders)\n" for i in range(200))
    other = open_document(documents, write(root, "app/notes.py", notes), "python")
    builder.opened(other.uri)
    type_text(other, builder, 150, 0, "customer_total = 0\n")
    builder.opened(current.uri)
    chunks = builder.chunks_for(current.uri, LINE)
    assert [(c.path, c.source) for c in chunks] == [("app/notes.py", EDITS)]
    assert "customer_total = 0" in chunks[0].text
    assert chunks[0].line <= 150 < chunks[0].line + chunks[0].text.count("\n")


def test_ring_ranges_of_the_current_document_inside_the_prompt_are_skipped(tmp_path: Path) -> None:
    big = CURRENT + "".join(f"tail_{i} = helper_{i}(orders)\n" for i in range(400))
    root = tmp_path / "ws"
    documents: dict[str, Document] = {}
    current = open_document(documents, write(root, "app/report.py", big), "python")
    builder = ContextBuilder(
        documents, FakeGate([root]), open_files=False, imports=False, prompt_chars=2000, suffix_chars=200
    )
    builder.viewed(current.uri, LINE)  # inside the prompt: skipped
    assert builder.chunks_for(current.uri, LINE) == ()
    builder.viewed(current.uri, 400)  # far below the suffix window
    builder.saved(current.uri)
    chunks = builder.chunks_for(current.uri, LINE)
    assert [(c.path, c.source) for c in chunks] == [("app/report.py", EDITS)]
    assert chunks[0].line > LINE + 10


def test_ring_evicts_overlaps_and_keeps_the_newest() -> None:
    spans = Ring(capacity=2, lines=40)
    spans.touch("a", 100, 100)
    spans.touch("a", 110, 112)  # overlaps: replaces
    assert [(s.uri, s.start) for s in spans.spans] == [("a", 91)]
    spans.touch("b", 0, 0)
    spans.touch("c", 0, 0)  # capacity 2: "a" goes
    assert [s.uri for s in spans.spans] == ["b", "c"]
    spans.shift("c", -1, 5)
    assert spans.spans[-1].start == 5
    spans.forget("b")
    assert [s.uri for s in spans.spans] == ["c"]


def test_near_duplicate_ring_ranges_are_sent_once(tmp_path: Path) -> None:
    builder, documents, current, root = editor(
        tmp_path, open_files=False, imports=False, budget_chars=100_000
    )
    text = "".join(f"value_{i} = source_{i}\n" for i in range(60))
    first = open_document(documents, write(root, "app/one.py", text), "python")
    second = open_document(documents, write(root, "app/two.py", text), "python")
    builder.viewed(first.uri, 20)
    builder.viewed(second.uri, 20)
    chunks = builder.chunks_for(current.uri, LINE)
    assert [c.path for c in chunks] == ["app/two.py"]  # the newer copy


def test_sources_can_be_turned_off(tmp_path: Path) -> None:
    builder, documents, current, root = editor(tmp_path, open_files=False, recent_edits=False, imports=False)
    other = open_document(documents, write(root, "app/related.py", RELATED), "python")
    builder.opened(other.uri)
    builder.viewed(other.uri, 72)
    assert builder.chunks_for(current.uri, LINE) == ()
    builder.configure(open_files=True)
    assert [c.source for c in builder.chunks_for(current.uri, LINE)] == [OPEN]
    builder.configure(budget_chars=0)
    assert builder.chunks_for(current.uri, LINE) == ()


def test_unknown_document_has_no_context(tmp_path: Path) -> None:
    builder, *_ = editor(tmp_path)
    assert builder.chunks_for("file:///nowhere.py", 3) == ()
    assert builder.last_paths == ()


@pytest.mark.parametrize("line", [-5, 10_000])
def test_out_of_range_cursor_lines_are_clamped(tmp_path: Path, line: int) -> None:
    builder, documents, current, root = editor(tmp_path, recent_edits=False, imports=False)
    other = open_document(documents, write(root, "app/related.py", RELATED), "python")
    builder.opened(other.uri)
    assert isinstance(builder.chunks_for(current.uri, line), tuple)


def test_chunks_use_plain_line_feeds_and_keep_any_text(tmp_path: Path) -> None:
    builder, documents, current, root = editor(tmp_path, recent_edits=False, imports=False)
    text = RELATED.replace("\n", "\r\n").replace("result = {}", "result = {}  # 合計 🧾 café")
    other = open_document(documents, write(root, "app/crlf.py", ""), "python", text)
    builder.opened(other.uri)
    chunks = builder.chunks_for(current.uri, LINE)
    assert [c.path for c in chunks] == ["app/crlf.py"]
    assert "\r" not in chunks[0].text
    assert "    result = {}  # 合計 🧾 café\n" in chunks[0].text
    assert "#     result = {}  # 合計 🧾 café\n" in comment_block(chunks, "python")
