"""Mode decisions, stop sequences and post-processing tables."""

from __future__ import annotations

import pytest

from fimls.config import Multiline
from fimls.prompt import Context, Mode, Plan, is_complete, plan, postprocess, stop_sequences, word_before


@pytest.mark.parametrize(
    ("line_prefix", "line_suffix", "setting", "expected"),
    [
        ("x = ", "", Multiline.AUTO, Plan(Mode.MULTI, 0)),
        ("print(", ")", Multiline.AUTO, Plan(Mode.MULTI, 1)),
        ("f(g(", '"])  ', Multiline.AUTO, Plan(Mode.MULTI, 3)),
        ("print(", ")", Multiline.NEVER, Plan(Mode.SINGLE, 1)),
        ("x = ", " + y", Multiline.AUTO, Plan(Mode.SINGLE, 0)),
        ("x = ", " + y", Multiline.ALWAYS, Plan(Mode.MULTI, 0)),  # code right of the cursor stays after it
        ("", "", Multiline.ALWAYS, Plan(Mode.MULTI, 0)),
        ("    ", "", Multiline.AUTO, Plan(Mode.MULTI, 0)),
        ("    return total", "", Multiline.AUTO, Plan(Mode.MULTI, 0)),
        ("value = compute(a)", ")", Multiline.AUTO, Plan(Mode.MULTI, 1)),
        ("value = compute(a)", ")", Multiline.NEVER, Plan(Mode.SINGLE, 1)),
        ("fo", "o = 1", Multiline.AUTO, None),  # inside a word
        ("x = ", "foo", Multiline.AUTO, None),  # right before a word
        ("é", "中", Multiline.AUTO, None),  # unicode word characters count
    ],
)
def test_plan(line_prefix, line_suffix, setting, expected):
    assert plan(line_prefix, line_suffix, setting) == expected


def test_word_before():
    assert word_before("    retu") == "retu"
    assert word_before("x = ") == ""
    assert word_before("naïve_名") == "naïve_名"


def test_stop_sequences():
    assert stop_sequences(Mode.SINGLE, "x = ", "python") == ("\n",)
    # At the top level the next definition is the suggestion; blank lines may come first.
    assert stop_sequences(Mode.MULTI, "", "python") == ("\n\n\n",)
    assert stop_sequences(Mode.MULTI, "}", "javascript") == ("\n\n\n",)
    nested = stop_sequences(Mode.MULTI, "    ", "python")
    assert nested[0] == "\n\n\n" and "\ndef " in nested and "\nclass " in nested
    assert stop_sequences(Mode.MULTI, "  x", "unknown-lang") == ("\n\n\n",)
    assert all(len(stop_sequences(Mode.MULTI, "", lang)) <= 16 for lang in ("python", "go", "rust"))


def ctx(line_prefix, line_suffix="", after="", mode=Mode.MULTI):
    return Context(line_prefix, line_suffix, line_suffix + after, mode)


@pytest.mark.parametrize(
    ("text", "context", "expected"),
    [
        # single-line: cut at the first newline, trailing whitespace trimmed
        ("a + b  \nmore", ctx("return ", " ", mode=Mode.SINGLE), "a + b"),
        # a tail repeating the closers after the cursor is removed
        ('"hello")', ctx("print(", ")", mode=Mode.SINGLE), '"hello"'),
        ('"hi", end="")', ctx("print(", ', end="")', mode=Mode.SINGLE), '"hi"'),
        # a closer that closes the model's own bracket is not a repeat
        ("o(1)", ctx("print(fo", ")", mode=Mode.SINGLE), "o(1)"),
        ('hello")', ctx('print("', '")', mode=Mode.SINGLE), "hello"),
        # a lone non-closer character shared with the suffix is kept
        ("x = 1", ctx("", "1", mode=Mode.SINGLE), "x = 1"),
        # empty and whitespace-only answers are dropped
        ("", ctx("x = "), None),
        ("   \n\t", ctx("x = "), None),
        # multi-line answers that repeat the following lines are cut there
        ("y = 2\n    return x", ctx("    ", "", "\n    return x\n"), "y = 2"),
        # a suggestion that is just the next non-empty line is dropped
        ("return x", ctx("    ", "", "\n\n    return x\n"), None),
        # ...even when the prefix already holds part of the line
        ("rn x", ctx("    retu", "", "\n    return x\n"), None),
        # closers alone repeating the next line are fine (they close the suggestion's own block)
        ("if (a) {\n    b();\n  }", ctx("  ", "", "\n}\n"), "if (a) {\n    b();\n  }"),
        # a closing brace of the enclosing block is out of scope
        ("return x;\n}", ctx("  ", "", "\n}\n"), "return x;"),
        # indentation scope: stop at the first line indented less than the cursor line
        ("return 1\n\ndef g():\n    pass", ctx("    "), "return 1"),
        # a block opened on the cursor line keeps its body and its closing line
        ("\n    a()\n    b()\n}\nnext()", ctx("function f() {"), "\n    a()\n    b()\n}"),
        ("\n    return 1\nx = 2", ctx("def f():"), "\n    return 1"),
        # a nested block does not end the scope: the line after it at the same level stays
        (
            "s = 0\n    for x in xs:\n        s += x\n    return s",
            ctx("    "),
            "s = 0\n    for x in xs:\n        s += x\n    return s",
        ),
        # else-like continuations of the block opened on the cursor line are kept
        ("\n    a()\nelse:\n    b()\nc()", ctx("if x:"), "\n    a()\nelse:\n    b()"),
        # statements at the same level continue when no block was opened
        ("a = 1\nb = 2", ctx(""), "a = 1\nb = 2"),
        # CRLF from the model becomes LF
        ("a\r\n    b", ctx("if x:"), "a\n    b"),
    ],
)
def test_postprocess(text, context, expected):
    assert postprocess(text, context) == expected


def test_is_complete_single_and_multi():
    assert not is_complete("abc", Mode.SINGLE, "x = ")
    assert is_complete("abc\n", Mode.SINGLE, "x = ")
    assert not is_complete("\n    a\n    b", Mode.MULTI, "def f():")
    assert is_complete("\n    a\nx = 1\n", Mode.MULTI, "def f():")
