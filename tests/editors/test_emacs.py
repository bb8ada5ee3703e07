"""Emacs: editors/emacs/fimls.el in a real `emacs --batch -Q` with Eglot and fimls.

The driver (tests/editors/emacs/run-eglot.el) loads fimls.el unchanged, connects Eglot to
fimls (a wrapper named ``fimls`` on PATH runs this checkout; a fake DeepSeek answers),
types into a Python buffer and runs `completion-at-point` three times:

1. after "print(fo" on a line with é😀中 before the cursor: Eglot sends incremental
   changes and positions in UTF-16 columns (Eglot 1.9; Emacs 29+ negotiates UTF-32), and
   the textEdit must replace exactly the typed "fo" and the ")" after it;
2. on an indented empty line: a multi-line block is inserted whole;
3. after "label = ": text with "$" and "}" is inserted literally (Eglot without yasnippet
   declares no snippet support, so fimls must send plain text).

Needs `emacs` with Eglot (Emacs 29+, or Emacs 28 + Debian's elpa-eglot, which
.ci/install-editors.sh installs). Without it the tests skip locally and fail under CI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import fimls.config as fimls_config

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
from fake_deepseek import FakeDeepSeek, Reply  # noqa: E402

FIMLS_EL = REPO / "editors" / "emacs" / "fimls.el"
DRIVER = REPO / "tests" / "editors" / "emacs" / "run-eglot.el"

ANSWERS = {
    "print(fo": "o + 1",
    "def total(xs):\n    ": "s = 0\n    for x in xs:\n        s += x",
    "label = ": '"${}".format(cost)',
}


def _answer(body: dict[str, Any]) -> Reply:
    prompt = str(body.get("prompt") or "")
    for tail, text in ANSWERS.items():
        if prompt.endswith(tail):
            return Reply(text=text)
    return Reply(text="")


def _missing(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{why} (CI must run .ci/install-editors.sh first)")
    pytest.skip(f"{why}; run .ci/install-editors.sh to install it")


def _emacs_version(emacs: str) -> tuple[int, int]:
    out = subprocess.run([emacs, "--version"], capture_output=True, text=True, timeout=30).stdout
    match = re.search(r"GNU Emacs (\d+)\.(\d+)", out)
    assert match, out
    return int(match.group(1)), int(match.group(2))


@pytest.fixture(scope="module")
def emacs() -> str:
    path = shutil.which("emacs")
    if path is None:
        _missing("emacs is not installed")
    assert path is not None
    probe = subprocess.run(
        [
            path,
            "--batch",
            "-Q",
            "--eval",
            "(progn (require 'package)"
            " (unless (require 'eglot nil t)"
            ' (setq package-directory-list \'("/usr/share/emacs/site-lisp/elpa"))'
            ' (package-initialize) (require \'eglot)) (princ "eglot-ok"))',
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "eglot-ok" not in probe.stdout:
        _missing(f"Eglot is not available to emacs ({probe.stderr.strip()[-200:]})")
    return path


def _run_session(
    emacs: str,
    tmp: Path,
    fake: FakeDeepSeek,
    dir_locals: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run the driver once against ``fake``; ``dir_locals`` is written as the project's .dir-locals.el."""
    bin_dir, project = tmp / "bin", tmp / "project"
    bin_dir.mkdir()
    project.mkdir()
    wrapper = bin_dir / "fimls"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m fimls "$@"\n')
    wrapper.chmod(0o755)
    result_file = tmp / "result.json"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "DEEPSEEK_BASE_URL": fake.url,
        "DEEPSEEK_API_KEY": "sk-test",
        "FIMLS_EL": str(FIMLS_EL),
        "FIMLS_TEST_DIR": str(project),
        "FIMLS_RESULT": str(result_file),
        "HOME": str(tmp),  # no user init, no ~/.emacs.d writes
        "XDG_CONFIG_HOME": str(tmp / "config"),  # no user fimls config either
        **(extra_env or {}),
    }
    if dir_locals is not None:
        (project / ".dir-locals.el").write_text(dir_locals, encoding="utf-8")
        env["FIMLS_DIR_LOCALS"] = "1"
    started = time.monotonic()
    proc = subprocess.run(
        [emacs, "--batch", "-Q", "-l", str(DRIVER)],
        env=env,
        stdin=subprocess.DEVNULL,  # a prompt for unsafe local variables would fail, not hang
        capture_output=True,
        text=True,
        timeout=120,
        cwd=project,
    )
    elapsed = time.monotonic() - started
    results: dict[str, Any] = (
        json.loads(result_file.read_text(encoding="utf-8")) if result_file.exists() else {}
    )
    assert proc.returncode == 0 and "error" not in results, (
        f"emacs exited {proc.returncode}: {results.get('error')}\n{proc.stderr[-3000:]}"
    )
    fim = [(r.body or {}).get("prompt", "") for r in fake.asked()]
    print(f"emacs session: {elapsed:.2f} s, Emacs {_emacs_version(emacs)}, {len(fim)} FIM requests")
    return {
        "results": results,
        "fim_prompts": fim,
        "version": _emacs_version(emacs),
        "stderr": proc.stderr,
    }


@pytest.fixture(scope="module")
def session(emacs: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the driver once; every test below asserts on one part of its results."""
    fake = FakeDeepSeek(api_key="sk-test").start()
    fake.default = _answer
    try:
        return _run_session(emacs, tmp_path_factory.mktemp("emacs"), fake)
    finally:
        fake.stop()


def test_fimls_el_registers_the_server(session: dict[str, Any]) -> None:
    results = session["results"]
    assert results["entry_modes"] == "(python-mode python-ts-mode)"
    assert results["entry_program"].startswith('("fimls" "--stdio" :initializationOptions (')
    assert ":debounceMs 150" in results["entry_program"]
    assert results["capf"].startswith("(eglot-completion-at-point")
    assert "Connected!" in session["stderr"]


def test_single_line_after_non_ascii_text(session: dict[str, Any]) -> None:
    results = session["results"]
    major, _ = session["version"]
    # 'é😀中' then '"; print(fo': UTF-16 counts 😀 twice, UTF-32 once.
    expected_column = 20 if results["status"]["positionEncoding"] == "utf-16" else 19
    assert results["lsp_position"] == f"(:line 3 :character {expected_column})"
    if major < 29:
        assert results["status"]["positionEncoding"] == "utf-16"  # Eglot 1.9 has no positionEncodings
    assert results["call_line"] == 's = "é😀中"; print(foo + 1)'
    assert results["call_point_at"] == results["call_line"]


def test_multiline_block_inserted_whole(session: dict[str, Any]) -> None:
    assert session["results"]["block"] == "def total(xs):\n    s = 0\n    for x in xs:\n        s += x\n"


def test_dollar_and_brace_inserted_literally(session: dict[str, Any]) -> None:
    assert session["results"]["plain_line"] == 'label = "${}".format(cost)'


def test_server_state_after_the_session(session: dict[str, Any]) -> None:
    results = session["results"]
    status = results["status"]
    assert status["openDocuments"] == 1
    assert status["apiKey"] == "set"
    # eglot-workspace-configuration (:fimls (:debounceMs 100)) arrived as didChangeConfiguration,
    # on top of fimls.el's initializationOptions.
    assert status["settings"]["debounceMs"] == 100
    assert status["settings"]["maxTokens"] == 256
    assert results["whole_buffer"] == EXPECTED_BUFFER
    prompts = session["fim_prompts"]
    assert len(prompts) == 3
    assert prompts[0].endswith('s = "é😀中"; print(fo')
    assert prompts[1].endswith("def total(xs):\n    ")
    assert prompts[2].endswith("label = ")
    assert results["total_s"] < 30


EXPECTED_BUFFER = (
    "# fimls eglot test: é😀 and 中文 before the cursor\n"
    "def total(xs):\n"
    "    s = 0\n"
    "    for x in xs:\n"
    "        s += x\n"
    's = "é😀中"; print(foo + 1)\n'
    'label = "${}".format(cost)\n'
)
# The server's gate for machine-level settings in workspace configuration (issue 15 item 2)
# comes with the settings rewrite (fimls.config.MACHINE_ONLY).
WORKSPACE_GATE = hasattr(fimls_config, "MACHINE_ONLY")


@pytest.mark.skipif(
    not WORKSPACE_GATE, reason="this fimls has no workspace gate for machine-level settings yet"
)
def test_cloned_repository_dir_locals_cannot_redirect_code_or_keys(emacs: str, tmp_path: Path) -> None:
    """A .dir-locals.el such as a cloned repository could ship. Eglot marks
    `eglot-workspace-configuration' safe, so Emacs applies it without a prompt and Eglot sends it
    as workspace/didChangeConfiguration. fimls takes its completion settings and ignores the
    machine-level ones: no byte reaches the repository's endpoint and its key command never runs."""
    outside = tmp_path / "outside"
    outside.mkdir()
    marker = outside / "key-command-ran"
    command = outside / "print-key"
    command.write_text(f'#!/bin/sh\necho ran > "{marker}"\necho sk-test\n')
    command.chmod(0o755)
    fake = FakeDeepSeek(api_key="sk-test").start()
    fake.default = _answer
    elsewhere = FakeDeepSeek(api_key="sk-test").start()  # would accept the key, too
    elsewhere.default = _answer
    dir_locals = (
        "((nil . ((eglot-workspace-configuration\n"
        "          . (:fimls (:debounceMs 100\n"
        '                     :backend "openai-compatible"\n'
        f'                     :baseUrl "{elsewhere.url}"\n'
        '                     :apiKey "sk-from-the-repository"\n'
        f'                     :apiKeyCommand "{command}"\n'
        '                     :apiKeyEnv "REPOSITORY_KEY"\n'
        "                     :allowInsecureHttp t))))))\n"
    )
    try:
        session = _run_session(emacs, tmp_path, fake, dir_locals, {"REPOSITORY_KEY": "sk-from-the-env"})
        results = session["results"]
        # Emacs took the repository's settings without asking...
        applied = results["workspace_configuration"]
        assert f':baseUrl "{elsewhere.url}"' in applied and ":apiKeyCommand" in applied
        # ...and fimls applied the completion setting from them...
        assert results["status"]["settings"]["debounceMs"] == 100
        assert results["status"]["apiKey"] == "set"
        assert results["whole_buffer"] == EXPECTED_BUFFER
        assert len(session["fim_prompts"]) == 3
        assert all(r.authorized for r in fake.asked())
        # ...but not the ones that decide where code and keys go.
        assert elsewhere.requests == [], "code went to the repository's endpoint"
        assert not marker.exists(), "the repository's apiKeyCommand ran"
    finally:
        fake.stop()
        elsewhere.stop()


def test_setup_doc_embeds_the_file() -> None:
    setup = (REPO / "editors" / "SETUP-emacs.md").read_text(encoding="utf-8")
    assert setup.startswith("### Emacs (eglot)\n")
    assert "```elisp\n" + FIMLS_EL.read_text(encoding="utf-8") + "```\n" in setup
    # Both say which settings a repository's .dir-locals.el cannot set, and where they go instead.
    machine = ("backend", "baseUrl", "apiKey", "apiKeyCommand", "apiKeyEnv", "allowInsecureHttp")
    for text in (setup, FIMLS_EL.read_text(encoding="utf-8")):
        assert all(f"{name}," in text or f"{name}." in text or f"{name}`" in text for name in machine)
        assert "~/.config/fimls/config.json" in text
    assert "(#backends)" in setup
