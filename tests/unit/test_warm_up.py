"""The warm-up after ``initialized`` leaves no converter to build on the first keystroke."""

from __future__ import annotations

import json

import cattrs.converters
import cattrs.gen
import pytest

from fimls.document import Document
from fimls.engine import Suggestion
from fimls.items import completion_list, inline_items
from fimls.server import FimlsServer, _warm_up, create_server


@pytest.fixture
def built(monkeypatch) -> list[object]:
    """Classes cattrs generates a (de)serialiser for from now on."""
    classes: list[object] = []
    for module in (cattrs.gen, cattrs.converters):
        for name in ("make_dict_structure_fn", "make_dict_unstructure_fn"):
            original = getattr(module, name)

            def counting(cls, *args, _original=original, **kwargs):
                classes.append(cls)
                return _original(cls, *args, **kwargs)

            monkeypatch.setattr(module, name, counting)
    return classes


def server() -> FimlsServer:
    ls = create_server()
    ls.encoding, ls.snippets, ls.markdown, ls.as_is = "utf-16", True, True, False
    return ls


def keystroke(ls: FimlsServer) -> None:
    """What an editor's keystroke makes the server read and write."""
    uri = "file:///project/app.py"
    messages = [
        {
            "jsonrpc": "2.0",
            "method": "textDocument/didChange",
            "params": {
                "textDocument": {"uri": uri, "version": 7},
                "contentChanges": [
                    {
                        "range": {"start": {"line": 3, "character": 2}, "end": {"line": 3, "character": 2}},
                        "text": "é",
                    }
                ],
            },
        },
        {
            "jsonrpc": "2.0",
            "id": 41,
            "method": "textDocument/inlineCompletion",
            "params": {
                "textDocument": {"uri": uri},
                "position": {"line": 3, "character": 3},
                "context": {"triggerKind": 2, "selectedCompletionInfo": None},
            },
        },
        {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 40}},
        {
            "jsonrpc": "2.0",
            "id": 42,
            "method": "textDocument/completion",
            "params": {"textDocument": {"uri": uri}, "position": {"line": 3, "character": 3}},
        },
    ]
    for message in messages:
        assert not isinstance(ls.protocol.structure_message(message), dict)
    snap = Document(uri, "def f():\n    return\n").snapshot(
        1, 10, encoding="utf-16", max_prefix=100, max_suffix=100, anchor=1
    )
    found = [Suggestion(" value\n", 0), Suggestion(" None", 0)]
    for result in (inline_items(snap, found), completion_list(snap, found, snippets=True, markdown=True)):
        body = json.dumps(
            {"jsonrpc": "2.0", "id": 41, "result": result}, default=ls.protocol._serialize_message
        )
        assert '"insertText"' in body or '"label"' in body


def test_without_warm_up_the_first_keystroke_builds_converters(built):
    keystroke(server())
    assert built  # the check below would be meaningless otherwise


def test_after_warm_up_a_keystroke_builds_none(built):
    ls = server()
    _warm_up(ls)
    assert built
    built.clear()
    keystroke(ls)
    assert built == []
