"""The context block layouts, byte for byte, and that a block never breaks the code after it."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from fimls.context import Chunk, comment_block, infill_extra

UTIL = Chunk("pkg/util.py", "def helper(x):\n\n    return x + 1\n", "imports", "file:///w/pkg/util.py", 3)
MODELS = Chunk("pkg/models.py", "class Thing:\n    size = 2\n", "open", "file:///w/pkg/models.py", 0)


def test_python_block_byte_for_byte() -> None:
    assert comment_block([MODELS, UTIL], "python") == (
        "# Path: pkg/models.py\n"
        "# class Thing:\n"
        "#     size = 2\n"
        "# Path: pkg/util.py\n"
        "# def helper(x):\n"
        "#\n"
        "#     return x + 1\n"
    )


def test_c_like_block_byte_for_byte() -> None:
    chunk = Chunk("src/a.ts", "export const a = 1;\n", "open", "file:///w/src/a.ts")
    assert comment_block([chunk], "typescript") == "// Path: src/a.ts\n// export const a = 1;\n"


def test_block_comment_terminator_in_text_and_path_is_broken_up() -> None:
    chunk = Chunk(
        "css/*/x.css", "a { b: c } /* note */\n.x::after { content: '*/'; }\n", "open", "file:///w/x.css"
    )
    assert comment_block([chunk], "css") == (
        "/* Path: css/* /x.css\na { b: c } /* note * /\n.x::after { content: '* /'; }\n*/\n"
    )


def test_html_comment_has_no_double_hyphen() -> None:
    chunk = Chunk("t.html", "<!-- x --> y -- z --->\n", "open", "file:///w/t.html")
    block = comment_block([chunk], "html")
    assert block == "<!-- Path: t.html\n<!- - x - -> y - - z - - ->\n-->\n"
    inner = block[len("<!--") : -len("-->\n")]
    assert "--" not in inner


@pytest.mark.parametrize("language", ["json", "plaintext", "", "no-such-language"])
def test_languages_without_safe_framing_get_no_block(language: str) -> None:
    assert comment_block([UTIL], language) == ""


def test_no_chunks_no_block() -> None:
    assert comment_block([], "python") == ""
    assert infill_extra([]) == []


def test_odd_line_breaks_become_spaces() -> None:
    chunk = Chunk("a\u2028b.js", "x\u2028y\x0cz\x85w\n", "open", "file:///w/a.js")
    assert comment_block([chunk], "javascript") == "// Path: a b.js\n// x y z w\n"


def test_trailing_backslash_cannot_continue_into_the_code() -> None:
    chunk = Chunk("m.h", "#define A \\\n  1 \\\n", "open", "file:///w/m.h")
    assert comment_block([chunk], "c") == "// Path: m.h\n// #define A \\\n//   1 \\\n//\n"


def test_lone_carriage_returns_in_text_are_line_breaks() -> None:
    chunk = Chunk("a.py", "x = 1\ry = 2\r\n", "open", "file:///w/a.py")
    assert comment_block([chunk], "python") == "# Path: a.py\n# x = 1\n# y = 2\n"


def test_infill_extra_byte_for_byte() -> None:
    assert infill_extra([MODELS, UTIL]) == [
        {"filename": "pkg/models.py", "text": "class Thing:\n    size = 2\n"},
        {"filename": "pkg/util.py", "text": "def helper(x):\n\n    return x + 1\n"},
    ]


NASTY = "\"\"\"\n'''\nx = 1 \\\n# -*- coding: latin-1 -*-\n*/ --> \u2028 \\\n"


def test_python_block_keeps_the_following_code_valid() -> None:
    chunk = Chunk("n.py", NASTY, "open", "file:///w/n.py")
    code = "def f():\n    return 1\n"
    compiled = compile(comment_block([chunk], "python") + code, "<block>", "exec")
    namespace: dict[str, object] = {}
    exec(compiled, namespace)
    assert namespace["f"]() == 1  # type: ignore[operator]


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
@pytest.mark.parametrize("language", ["javascript", "typescript"])
def test_js_block_keeps_the_following_code_valid(tmp_path, language: str) -> None:
    chunk = Chunk("n.js", NASTY + "`unterminated\n/* open\n", "open", "file:///w/n.js")
    source = tmp_path / "check.js"
    source.write_text(
        comment_block([chunk], language) + "const answer = 42;\nconsole.log(answer);\n", "utf-8"
    )
    result = subprocess.run(["node", str(source)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "42\n"


def test_rendering_is_cached_and_stable() -> None:
    chunks = (MODELS, UTIL)
    first = comment_block(chunks, "python")
    assert comment_block(list(chunks), "python") == first
    assert comment_block(chunks, "python") is first
