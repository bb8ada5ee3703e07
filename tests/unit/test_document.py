"""Documents: LSP line breaks, encodings, incremental edits, snapshots."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fimls.document import UTF8, UTF16, UTF32, Document, column_to_index, split_lines, units

ENCODINGS = [UTF8, UTF16, UTF32]


def ref_offset(text: str, line: int, character: int, encoding: str) -> int:
    """Reference: client position to string offset, written the slow obvious way."""
    starts = [0] + [m.end() for m in re.finditer(r"\r\n|\r|\n", text)]
    if line >= len(starts):
        return len(text)
    start = starts[line]
    end = len(text) if line + 1 >= len(starts) else starts[line + 1]
    content = text[start:end]
    if content.endswith("\r\n"):
        content = content[:-2]
    elif content.endswith(("\n", "\r")):
        content = content[:-1]
    count = 0
    for index, ch in enumerate(content):
        width = {UTF8: len(ch.encode("utf-8", "surrogatepass")), UTF16: 2 if ord(ch) > 0xFFFF else 1}.get(
            encoding, 1
        )
        if count + width > character:
            return start + index
        count += width
    return start + len(content)


def test_split_lines_breaks_only_at_lsp_terminators():
    text = "a\fb\x0bc\x1cd\x85e\u2028f\u2029g\r\nh\ri\nj"
    assert split_lines(text) == ["a\fb\x0bc\x1cd\x85e\u2028f\u2029g\r\n", "h\r", "i\n", "j"]
    assert split_lines("") == [""]
    assert split_lines("x\n") == ["x\n", ""]


@pytest.mark.parametrize(
    ("text", "encoding", "expected"),
    [
        ("é😀x", UTF8, 7),
        ("é😀x", UTF16, 4),
        ("é😀x", UTF32, 3),
        ("中文", UTF8, 6),
        ("中文", UTF16, 2),
        ("a\u2028b", UTF16, 3),
    ],
)
def test_units(text, encoding, expected):
    assert units(text, encoding) == expected


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_column_round_trip_emoji_and_cjk(encoding):
    line = "s = '😀中é' + x"
    for index in range(len(line) + 1):
        assert column_to_index(line, units(line[:index], encoding), encoding) == index


def test_column_inside_a_character_rounds_down_and_past_end_clamps():
    assert column_to_index("😀a", 1, UTF16) == 0
    assert column_to_index("😀a", 3, UTF8) == 0
    assert column_to_index("😀a", 99, UTF16) == 2


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_form_feed_and_line_separator_do_not_break_lines(encoding):
    doc = Document("file:///x", "a\fb\u2028c\nnext", 1)
    assert len(doc.lines) == 2
    # Line 1 really is "next" for an LSP client; splitlines would call it "b\u2028c".
    assert doc.line_text(1) == "next"
    doc.apply_change("X", (1, 0), (1, 0), encoding)
    assert doc.text == "a\fb\u2028c\nXnext"


def test_index_at_out_of_range():
    doc = Document("file:///x", "ab\ncd\n")
    assert doc.index_at(1, 99, UTF16) == (1, 2)
    assert doc.index_at(2, 0, UTF16) == (2, 0)
    assert doc.index_at(3, 0, UTF16) is None
    assert doc.index_at(-1, 0, UTF16) is None


def test_crlf_join_and_split_by_edits():
    doc = Document("file:///x", "a\rb")
    doc.apply_change("\n", (1, 0), (1, 0), UTF16)  # "\r" + "\n" become one break
    assert doc.lines == ["a\r\n", "b"]
    doc.apply_change("", (0, 1), (1, 0), UTF16)
    assert doc.lines == ["ab"]
    doc.apply_change("\r\n\r\n", (0, 1), (0, 1), UTF16)
    assert doc.lines == ["a\r\n", "\r\n", "b"]


def test_snapshot_windows_and_anchor():
    lines = [f"line {i}\n" for i in range(200)]
    doc = Document("file:///x", "".join(lines))
    snap = doc.snapshot(150, 4, encoding=UTF16, max_prefix=400, max_suffix=30, anchor=32)
    assert snap.line_prefix == "line"
    assert snap.line_suffix == " 150"
    assert snap.prefix.endswith("line 149\nline")
    assert snap.prefix.startswith("line 128\n")  # rounded up to the 32-line grid
    assert snap.suffix == " 150\nline 151\nline 152\n"
    # Moving the cursor a few lines keeps the same first line: the cache-friendly property.
    later = doc.snapshot(155, 2, encoding=UTF16, max_prefix=400, max_suffix=30, anchor=32)
    assert later.prefix.startswith("line 128\n")


def test_snapshot_huge_line_is_cut():
    doc = Document("file:///x", "x" * 5000)
    snap = doc.snapshot(0, 5000, encoding=UTF32, max_prefix=100, max_suffix=10, anchor=8)
    assert snap.prefix == "x" * 100
    assert snap.suffix == ""


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_snapshot_client_columns(encoding):
    doc = Document("file:///x", "a = '😀中' + b\n")
    line, column = doc.index_at(0, units("a = '😀中", encoding), encoding)
    snap = doc.snapshot(line, column, encoding=encoding, max_prefix=100, max_suffix=100, anchor=8)
    assert snap.line_prefix == "a = '😀中"
    assert snap.to_client(snap.column) == units("a = '😀中", encoding)


ALPHABET = st.sampled_from(list("ab \t\n\r") + ["\r\n", "é", "中", "😀", "\u0301", "\f", "\u2028", "\x85"])
TEXT = st.lists(ALPHABET, max_size=30).map("".join)


@settings(max_examples=300, deadline=None)
@given(
    start=TEXT,
    edits=st.lists(
        st.tuples(st.integers(0, 8), st.integers(0, 12), st.integers(0, 8), st.integers(0, 12), TEXT),
        max_size=12,
    ),
    encoding=st.sampled_from(ENCODINGS),
)
def test_incremental_edits_match_reference(start, edits, encoding):
    doc = Document("file:///x", start)
    model = start
    for l1, c1, l2, c2, new in edits:
        a = ref_offset(model, l1, c1, encoding)
        b = ref_offset(model, l2, c2, encoding)
        if b < a:
            a, b = b, a
        model = model[:a] + new + model[b:]
        doc.apply_change(new, (l1, c1), (l2, c2), encoding)
        assert doc.text == model
        assert doc.lines == split_lines(model)
