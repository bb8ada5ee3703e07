"""Helix: editors/helix/languages.toml, and fimls under Helix's LSP client rules.

Helix cannot be installed here (not in Debian, PyPI or npm; crates.io is unreachable),
so the session tests replay what Helix sends, taken from helix-lsp/src/client.rs and
helix-term/src/handlers/completion/request.rs:

* ``general.positionEncodings = [utf-8, utf-32, utf-16]``: the server picks utf-8;
* completion with ``snippetSupport`` (``editor.lsp.snippets``, default true),
  ``insertReplaceSupport`` and ``resolveSupport``; no ``inlineCompletion`` at all;
* ``initializationOptions`` = the ``config`` table of ``[language-server.fimls]``, and the
  same table again as ``workspace/didChangeConfiguration`` right after ``initialized``
  (helix-term/src/application.rs), where fimls ignores machine-level settings: a ``baseUrl``
  in ``config`` must still hold, through ``initializationOptions``;
* incremental ``didChange`` in utf-8 columns;
* ``textDocument/completion`` after ``completion-timeout`` (250 ms) with trigger kind
  Invoked, at once for a trigger character, and again with
  TriggerForIncompleteCompletions on every keystroke while the menu shows an incomplete
  list. Helix filters items with the word typed so far (fuzzy, against ``filterText``)
  and applies ``textEdit`` ranges as given, so the range must start at the word start.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from lsprotocol.converters import get_converter
from pytest_lsp import ClientServerConfig, LanguageClient

from fimls.config import Multiline, field_names, parse_settings

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
from fake_deepseek import FakeDeepSeek, Reply  # noqa: E402

TOML_PATH = REPO / "editors" / "helix" / "languages.toml"

HELIX_COMPLETION_TIMEOUT_MS = 250
# Server names defined in Helix's built-in languages.toml (checked against helix master).
HELIX_BUILTIN_SERVERS = {
    "pylsp",
    "ty",
    "ruff",
    "jedi",
    "zuban",
    "pyright",
    "basedpyright",
    "rust-analyzer",
    "typescript-language-server",
    "vscode-eslint-language-server",
    "gopls",
    "golangci-lint-lsp",
    "clangd",
    "lua-language-server",
}

# The fake DeepSeek must exist before the server fixture below is defined (pytest-lsp
# fixes the server environment at import time), so it starts here and stops at the end.
FAKE = FakeDeepSeek(api_key="sk-test").start()
# The endpoint a user's own `config` names as baseUrl (the environment names FAKE).
USER_ENDPOINT = FakeDeepSeek(api_key="sk-test").start()
# Settings that decide where code and keys go: never from workspace configuration.
MACHINE_SERVER = {"backend", "baseUrl", "apiKey", "apiKeyCommand", "apiKeyEnv", "allowInsecureHttp"}

ANSWERS = {
    "value = comp": "ute_total(items)",
    "return math.": "sqrt(r)",
    "def area(r):\n    ": "s = r * r\n    return math.pi * s",
}


def answer(body: dict[str, Any]) -> Reply:
    prompt = str(body.get("prompt") or "")
    for tail, text in ANSWERS.items():
        if prompt.endswith(tail):
            return Reply(text=text)
    return Reply(text="")


@pytest.fixture(scope="module", autouse=True)
def _stop_fake() -> Any:
    yield
    FAKE.stop()
    USER_ENDPOINT.stop()
    shutil.rmtree(_NO_USER_CONFIG, ignore_errors=True)


@pytest.fixture(autouse=True)
def _fresh_fake() -> None:
    for fake in (FAKE, USER_ENDPOINT):
        fake.reset()
        fake.default = answer


def helix_toml() -> dict[str, Any]:
    with TOML_PATH.open("rb") as handle:
        return tomllib.load(handle)


def helix_config() -> dict[str, Any]:
    return dict(helix_toml()["language-server"]["fimls"]["config"])


# What Helix's Client::initialize sends (helix-lsp/src/client.rs), in LSP JSON.
HELIX_CAPABILITIES: dict[str, Any] = {
    "workspace": {
        "configuration": True,
        "didChangeConfiguration": {"dynamicRegistration": False},
        "workspaceFolders": True,
        "applyEdit": True,
        "symbol": {"dynamicRegistration": False},
        "executeCommand": {"dynamicRegistration": False},
        "inlayHint": {"refreshSupport": False},
        "workspaceEdit": {
            "documentChanges": True,
            "resourceOperations": ["create", "rename", "delete"],
            "failureHandling": "abort",
            "normalizesLineEndings": False,
        },
        "didChangeWatchedFiles": {"dynamicRegistration": True, "relativePatternSupport": False},
        "fileOperations": {"willRename": True, "didRename": True},
    },
    "textDocument": {
        "completion": {
            "completionItem": {
                "snippetSupport": True,
                "resolveSupport": {"properties": ["documentation", "detail", "additionalTextEdits"]},
                "insertReplaceSupport": True,
                "deprecatedSupport": True,
                "tagSupport": {"valueSet": [1]},
            },
            "completionItemKind": {},
        },
        "hover": {"contentFormat": ["markdown"]},
        "signatureHelp": {
            "signatureInformation": {
                "documentationFormat": ["markdown"],
                "parameterInformation": {"labelOffsetSupport": True},
                "activeParameterSupport": True,
            }
        },
        "rename": {"dynamicRegistration": False, "prepareSupport": True, "honorsChangeAnnotations": False},
        "formatting": {"dynamicRegistration": False},
        "publishDiagnostics": {"versionSupport": True, "tagSupport": {"valueSet": [1, 2]}},
        "inlayHint": {"dynamicRegistration": False},
    },
    "window": {"workDoneProgress": True},
    "general": {"positionEncodings": ["utf-8", "utf-32", "utf-16"]},
}

# No user config file (~/.config/fimls/config.json) of whoever runs the tests.
_NO_USER_CONFIG = tempfile.mkdtemp(prefix="fimls-helix-xdg-")
SERVER_ENV = {
    **os.environ,
    "DEEPSEEK_BASE_URL": FAKE.url,
    "DEEPSEEK_API_KEY": "sk-test",
    "XDG_CONFIG_HOME": _NO_USER_CONFIG,
}
ROOT = REPO / "tests" / "editors"
URI = (ROOT / "helix_example.py").as_uri()


async def start_like_helix(client: LanguageClient, config: dict[str, Any]) -> None:
    """Helix's start-up: `config` as initializationOptions, then again as didChangeConfiguration."""
    params = types.InitializeParams(
        process_id=os.getpid(),
        root_path=str(ROOT),
        root_uri=ROOT.as_uri(),
        workspace_folders=[types.WorkspaceFolder(uri=ROOT.as_uri(), name="editors")],
        initialization_options=config,
        capabilities=get_converter().structure(HELIX_CAPABILITIES, types.ClientCapabilities),
        client_info=types.ClientInfo(name="helix", version="25.07.1"),
    )
    result = await client.initialize_session(params)
    assert result.capabilities.position_encoding == types.PositionEncodingKind.Utf8
    assert result.capabilities.completion_provider is not None
    # Helix, like Neovim, repeats the config as didChangeConfiguration after `initialized`.
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=config))


@pytest_lsp.fixture(
    config=ClientServerConfig(server_command=[sys.executable, "-m", "fimls"], server_env=SERVER_ENV)
)
async def helix(lsp_client: LanguageClient) -> AsyncIterator[None]:
    await start_like_helix(lsp_client, helix_config())
    yield
    await lsp_client.shutdown_session()


@pytest_lsp.fixture(
    config=ClientServerConfig(server_command=[sys.executable, "-m", "fimls"], server_env=SERVER_ENV)
)
async def helix_base_url_in_config(lsp_client: LanguageClient) -> AsyncIterator[None]:
    await start_like_helix(lsp_client, {**helix_config(), "baseUrl": USER_ENDPOINT.url})
    yield
    await lsp_client.shutdown_session()


# -- helpers: Helix's view of a document ------------------------------------------------


class Buffer:
    """A document as Helix keeps it, with utf-8 columns on the wire."""

    def __init__(self, client: LanguageClient, text: str) -> None:
        self.client = client
        self.lines = text.split("\n")
        self.version = 1
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(uri=URI, language_id="python", version=1, text=text)
            )
        )

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def column(self, line: int, index: int) -> int:
        """utf-8 column of a code-point index."""
        return len(self.lines[line][:index].encode("utf-8"))

    def index(self, line: int, column: int) -> int:
        """Code-point index of a utf-8 column."""
        data = self.lines[line].encode("utf-8")
        return len(data[:column].decode("utf-8"))

    def end(self, line: int) -> types.Position:
        return types.Position(line=line, character=self.column(line, len(self.lines[line])))

    def type(self, line: int, index: int, text: str) -> None:
        """Insert text at a code-point index, sending Helix's incremental change."""
        at = types.Position(line=line, character=self.column(line, index))
        self.lines[line] = self.lines[line][:index] + text + self.lines[line][index:]
        self.version += 1
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=self.version),
                content_changes=[
                    types.TextDocumentContentChangePartial(range=types.Range(start=at, end=at), text=text)
                ],
            )
        )

    def delete(self, line: int, start: int, end: int) -> None:
        """Delete code points start..end of a line, sending Helix's incremental change."""
        span = types.Range(
            start=types.Position(line=line, character=self.column(line, start)),
            end=types.Position(line=line, character=self.column(line, end)),
        )
        self.lines[line] = self.lines[line][:start] + self.lines[line][end:]
        self.version += 1
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=self.version),
                content_changes=[types.TextDocumentContentChangePartial(range=span, text="")],
            )
        )

    async def complete(
        self, position: types.Position, kind: types.CompletionTriggerKind, char: str | None = None
    ) -> tuple[types.CompletionList, float]:
        started = time.perf_counter()
        result = await self.client.text_document_completion_async(
            types.CompletionParams(
                text_document=types.TextDocumentIdentifier(uri=URI),
                position=position,
                context=types.CompletionContext(trigger_kind=kind, trigger_character=char),
            )
        )
        elapsed_ms = (time.perf_counter() - started) * 1000
        assert isinstance(result, types.CompletionList), "Helix reads isIncomplete from a CompletionList"
        return result, elapsed_ms

    def apply(self, item: types.CompletionItem, cursor: types.Position) -> str:
        """Apply the item like helix-term's lsp_item_to_transaction; returns the new text."""
        edit = item.text_edit
        assert isinstance(edit, types.TextEdit), "a plain TextEdit (no InsertReplaceEdit) is applied as-is"
        assert edit.range.start.line == edit.range.end.line == cursor.line
        new_text = edit.new_text
        line = self.lines[cursor.line]
        if item.insert_text_format == types.InsertTextFormat.Snippet:
            # helix-core's snippet renderer repeats the line's indentation after every
            # newline (SnippetRender::push_newline), whatever insertTextMode says.
            indent = line[: len(line) - len(line.lstrip(" \t"))]
            new_text = unescape_snippet(new_text).replace("\n", "\n" + indent)
        start = self.index(cursor.line, edit.range.start.character)
        end = self.index(cursor.line, edit.range.end.character)
        replaced = line[:start] + new_text + line[end:]
        return "\n".join([*self.lines[: cursor.line], replaced, *self.lines[cursor.line + 1 :]])


def unescape_snippet(text: str) -> str:
    """Text of a snippet without tabstops/placeholders (what fimls sends: escapes only)."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in "\\$}":
            out.append(text[i + 1])
            i += 2
            continue
        assert text[i] != "$", f"unexpected snippet syntax in {text!r}"
        out.append(text[i])
        i += 1
    return "".join(out)


def typed_word(line_prefix: str) -> str:
    """Helix's filter fragment: the word characters right before the cursor."""
    count = 0
    for ch in reversed(line_prefix):
        if not (ch.isalnum() or ch == "_"):
            break
        count += 1
    return line_prefix[len(line_prefix) - count :]


def fuzzy_matches(pattern: str, text: str) -> bool:
    """Nucleo-style fuzzy match (case-insensitive subsequence), as Helix filters the menu."""
    rest = iter(text.lower())
    return all(ch in rest for ch in pattern.lower())


# -- the languages.toml file --------------------------------------------------------------


def test_languages_toml_structure() -> None:
    data = helix_toml()
    server = data["language-server"]["fimls"]
    assert server["command"] == "fimls"
    assert isinstance(server.get("args", []), list)
    assert all(isinstance(arg, str) for arg in server.get("args", []))
    assert set(server) <= {"command", "args", "config", "timeout", "environment", "required-root-patterns"}

    config = server["config"]
    unknown = set(config) - set(field_names())
    assert not unknown, f"not fimls options: {unknown}"
    # Helix echoes `config` as workspace configuration: the example keeps these out of it.
    assert not set(config) & MACHINE_SERVER
    settings, problems = parse_settings(config)
    assert problems == []
    assert settings.debounce_ms < HELIX_COMPLETION_TIMEOUT_MS, "Helix debounces already; keep ours short"
    assert settings.multiline in set(Multiline)

    languages = {entry["name"]: entry for entry in data["language"]}
    assert {"python", "rust", "typescript"} <= set(languages)
    for name, entry in languages.items():
        servers = [s if isinstance(s, str) else s["name"] for s in entry["language-servers"]]
        assert "fimls" in servers, name
        others = [s for s in servers if s != "fimls"]
        assert others, f"{name}: fimls should sit next to a regular language server"
        assert set(others) <= HELIX_BUILTIN_SERVERS | set(data["language-server"]), name
        assert set(entry) <= {"name", "language-servers"}, "examples only attach servers"


# -- sessions under Helix's rules -----------------------------------------------------------

DOC = "\n".join(
    [
        "import math",
        "",
        "def area(r):",
        "    ",
        "",
        '    label = "é😀中"; value = comp',
        "    return math.",
        "",
    ]
)


async def test_completion_replaces_typed_word_in_utf8_columns(helix: LanguageClient) -> None:
    buffer = Buffer(helix, DOC)
    line = 5
    cursor = buffer.end(line)
    # é is 2 bytes, 😀 4, 中 3: utf-8 columns differ from code points and from utf-16.
    assert cursor.character == len(buffer.lines[line]) + 1 + 3 + 2

    result, elapsed_ms = await buffer.complete(cursor, types.CompletionTriggerKind.Invoked)
    assert result.is_incomplete is True
    assert len(result.items) == 1
    item = result.items[0]
    word_start = buffer.column(line, buffer.lines[line].rindex("comp"))
    assert isinstance(item.text_edit, types.TextEdit)
    assert item.text_edit.range == types.Range(
        start=types.Position(line=line, character=word_start), end=cursor
    )
    assert item.text_edit.new_text == "compute_total(items)"
    assert item.insert_text_format == types.InsertTextFormat.Snippet  # Helix offers snippets
    assert item.insert_text_mode == types.InsertTextMode.AsIs
    assert item.filter_text is not None
    assert fuzzy_matches(typed_word(buffer.lines[line]), item.filter_text)
    # Applied the Helix way, the typed "comp" is replaced, not duplicated.
    assert buffer.apply(item, cursor).split("\n")[line] == '    label = "é😀中"; value = compute_total(items)'
    assert elapsed_ms < 2000, elapsed_ms

    requests = FAKE.asked()
    assert len(requests) == 1
    body = requests[0].body or {}
    assert body["prompt"].endswith('label = "é😀中"; value = comp')
    assert requests[0].authorized


async def test_incomplete_list_refresh_while_typing_is_fast(helix: LanguageClient) -> None:
    buffer = Buffer(helix, DOC)
    line = 5
    first, _ = await buffer.complete(buffer.end(line), types.CompletionTriggerKind.Invoked)
    assert first.items and first.items[0].text_edit is not None

    # The menu is open on an incomplete list: each keystroke re-requests at once
    # (TriggerForIncompleteCompletions). Typing along the suggestion must be answered
    # from memory, far inside Helix's completion-timeout, without another DeepSeek call.
    timings = []
    for ch in "ute_":
        buffer.type(line, len(buffer.lines[line]), ch)
        cursor = buffer.end(line)
        result, elapsed_ms = await buffer.complete(
            cursor, types.CompletionTriggerKind.TriggerForIncompleteCompletions
        )
        timings.append(elapsed_ms)
        assert result.is_incomplete is True
        assert len(result.items) == 1
        item = result.items[0]
        assert isinstance(item.text_edit, types.TextEdit)
        word = typed_word(buffer.lines[line])
        assert word.startswith("compu")
        assert item.text_edit.range.start.character == cursor.character - len(word.encode("utf-8"))
        assert item.text_edit.range.end == cursor
        assert item.text_edit.new_text == "compute_total(items)"
        assert buffer.apply(item, cursor).split("\n")[line].endswith("value = compute_total(items)")
    assert max(timings) < HELIX_COMPLETION_TIMEOUT_MS, timings

    # Backspace to where the suggestion was fetched and ask again (Ctrl-x): a cache hit,
    # also fast, and no new request.
    buffer.delete(line, len(buffer.lines[line]) - 4, len(buffer.lines[line]))
    result, elapsed_ms = await buffer.complete(buffer.end(line), types.CompletionTriggerKind.Invoked)
    assert result.items and result.items[0].text_edit is not None
    assert result.items[0].text_edit.new_text == "compute_total(items)"
    assert elapsed_ms < HELIX_COMPLETION_TIMEOUT_MS, elapsed_ms
    assert len(FAKE.asked()) == 1
    print(f"helix refresh timings (ms): {[round(t, 1) for t in timings]}, repeat {elapsed_ms:.1f}")


async def test_trigger_character_and_multiline_block(helix: LanguageClient) -> None:
    buffer = Buffer(helix, DOC)

    # "." is a trigger character: Helix asks at once with TriggerCharacter.
    dot = buffer.end(6)
    result, _ = await buffer.complete(dot, types.CompletionTriggerKind.TriggerCharacter, ".")
    assert result.is_incomplete is True
    item = result.items[0]
    assert isinstance(item.text_edit, types.TextEdit)
    assert item.text_edit.range == types.Range(start=dot, end=dot)  # nothing typed after "."
    assert buffer.apply(item, dot).split("\n")[6] == "    return math.sqrt(r)"

    # Ctrl-x on an indented empty line: a multi-line block, inserted as-is.
    cursor = buffer.end(3)
    result, _ = await buffer.complete(cursor, types.CompletionTriggerKind.Invoked)
    item = result.items[0]
    assert item.label == "s = r * r …"
    assert item.insert_text_mode == types.InsertTextMode.AsIs
    applied = buffer.apply(item, cursor).split("\n")
    assert applied[2:5] == ["def area(r):", "    s = r * r", "    return math.pi * s"]


async def test_no_item_inside_a_word(helix: LanguageClient) -> None:
    buffer = Buffer(helix, DOC)
    line = 5
    inside = types.Position(line=line, character=buffer.column(line, len(buffer.lines[line]) - 2))
    result, _ = await buffer.complete(inside, types.CompletionTriggerKind.Invoked)
    assert list(result.items) == []
    assert result.is_incomplete is True
    assert FAKE.fim_requests() == []


async def test_base_url_in_config_survives_helix_echo(helix_base_url_in_config: LanguageClient) -> None:
    """A user who puts baseUrl in their own `config`: it arrives as initializationOptions and
    again as didChangeConfiguration, where fimls ignores machine-level settings. Suggestions
    keep going to the user's endpoint, not to the environment's DEEPSEEK_BASE_URL."""
    buffer = Buffer(helix_base_url_in_config, DOC)
    line = 5
    result, _ = await buffer.complete(buffer.end(line), types.CompletionTriggerKind.Invoked)
    assert result.items and isinstance(result.items[0].text_edit, types.TextEdit)
    assert result.items[0].text_edit.new_text == "compute_total(items)"
    assert len(USER_ENDPOINT.asked()) == 1
    assert FAKE.requests == []


def test_setup_doc_embeds_the_file() -> None:
    setup = (REPO / "editors" / "SETUP-helix.md").read_text(encoding="utf-8")
    assert setup.startswith("### Helix\n")
    assert "```toml\n" + TOML_PATH.read_text(encoding="utf-8") + "```\n" in setup
    # Where machine-level settings belong, and what a project's .helix/languages.toml can do.
    for name in sorted(MACHINE_SERVER):
        assert f"`{name}`" in setup, name
    assert "~/.config/fimls/config.json" in setup
    assert "`.helix/languages.toml`" in setup and ":workspace-trust" in setup
    assert "(#backends)" in setup
