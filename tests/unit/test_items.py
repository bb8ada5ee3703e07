"""LSP item construction."""

from __future__ import annotations

from lsprotocol import types

from fimls.document import UTF16, Document
from fimls.engine import Suggestion
from fimls.items import completion_list, escape_snippet, inline_items, label_for, reindent_for_snippet


def snap(text: str, line: int, column: int):
    return Document("file:///x.py", text, 3, "python").snapshot(
        line, column, encoding=UTF16, max_prefix=1000, max_suffix=1000, anchor=8
    )


def test_escape_snippet():
    assert escape_snippet("a$b}c\\d{e") == "a\\$b\\}c\\\\d{e"


def test_label_for():
    assert label_for("return x") == "return x"
    assert label_for("\n    return x\n") == "return x"
    assert label_for("if a:\n    b()") == "if a: …"
    assert label_for("x" * 100).endswith("…") and len(label_for("x" * 100)) == 60


def test_reindent_for_snippet():
    assert reindent_for_snippet("if a:\n        b()\n    c()", "    ") == "if a:\n    b()\nc()"
    assert reindent_for_snippet("one line", "    ") == "one line"
    assert reindent_for_snippet("a\nb", "") == "a\nb"


def test_inline_items_utf16_range_over_closers():
    s = snap("f('😀', )\n", 0, 7)
    result = inline_items(s, [Suggestion("x", replace=1)])
    [item] = result.items
    assert item.insert_text == "x)"
    assert item.range.start == types.Position(line=0, character=8)
    assert item.range.end == types.Position(line=0, character=9)


def test_completion_list_as_is_keeps_indentation():
    s = snap("def f():\n    ret\n", 1, 7)
    suggestion = [Suggestion("urn [\n        1,\n    ]")]
    as_is = completion_list(s, suggestion, snippets=True, as_is=True).items[0]
    adjusted = completion_list(s, suggestion, snippets=True, as_is=False).items[0]
    plain = completion_list(s, suggestion, snippets=False).items[0]
    assert as_is.text_edit.new_text == "return [\n        1,\n    ]"
    assert adjusted.text_edit.new_text == "return [\n    1,\n]"
    assert plain.text_edit.new_text == "return [\n        1,\n    ]"
    assert plain.insert_text_format == types.InsertTextFormat.PlainText
    assert as_is.filter_text == "return ["
    assert isinstance(plain.documentation, types.MarkupContent)
    assert completion_list(s, suggestion, snippets=False, markdown=False).items[0].documentation == (
        "    return [\n        1,\n    ]"
    )
