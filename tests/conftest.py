"""Shared fixtures: the fake DeepSeek server and real fimls processes over stdio."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient, client_capabilities
from pytest_lsp.client import make_test_lsp_client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from fake_deepseek import FakeDeepSeek  # noqa: E402

TEST_KEY = "sk-fimls-test-0123456789abcdef"
SERVER = [sys.executable, "-m", "fimls"]


@pytest.fixture
def fake() -> Iterator[FakeDeepSeek]:
    """A fake DeepSeek on 127.0.0.1 that accepts only ``TEST_KEY``."""
    server = FakeDeepSeek(api_key=TEST_KEY).start()
    try:
        yield server
    finally:
        server.stop()


NO_USER_CONFIG = tempfile.mkdtemp(prefix="fimls-no-user-config-")
"""XDG_CONFIG_HOME for test servers: the user's own ~/.config/fimls/config.json stays out."""


def server_env(fake: FakeDeepSeek, **extra: str) -> dict[str, str]:
    """The environment for a fimls process talking to ``fake``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEEPSEEK_", "FIMLS_", "CODESTRAL_"))}
    env.update(
        DEEPSEEK_BASE_URL=fake.url,
        DEEPSEEK_API_KEY=TEST_KEY,
        PYTHONUNBUFFERED="1",
        XDG_CONFIG_HOME=NO_USER_CONFIG,
    )
    env.update(extra)
    return env


def capabilities(name: str) -> types.ClientCapabilities:
    """Capabilities of a real editor, by short name."""
    specs = {
        "neovim": "neovim@v0.11.0",
        "vscode": "visual-studio-code",
        "emacs": "emacs@v29.1",
    }
    caps = client_capabilities(specs[name])
    if name == "vscode":
        # vscode-languageclient 10+ declares inline completion and offers only utf-16.
        caps.text_document.inline_completion = types.InlineCompletionClientCapabilities(
            dynamic_registration=True
        )
        caps.general = types.GeneralClientCapabilities(position_encodings=["utf-16"])
    return caps


Start = Callable[..., Awaitable[LanguageClient]]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked ``tcp_too`` run over stdio and over ``fimls --tcp``."""
    if "lsp_transport" in metafunc.fixturenames and metafunc.definition.get_closest_marker("tcp_too"):
        metafunc.parametrize("lsp_transport", ["stdio", "tcp"])


@pytest.fixture
def lsp_transport() -> str:
    """How tests reach the server: ``stdio`` unless the test is marked ``tcp_too``."""
    return "stdio"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start_over_tcp(client: LanguageClient, args: list[str], env: dict[str, str]) -> None:
    """Run ``fimls --tcp`` and connect ``client`` to it (the process is kept as ``client._server``)."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *SERVER, "--tcp", "--port", str(port), *args, env=env, stderr=asyncio.subprocess.PIPE
    )
    client._server = proc
    for _ in range(200):
        try:
            await client.start_tcp("127.0.0.1", port)
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError("fimls --tcp did not listen")


@pytest.fixture
async def start_server(fake: FakeDeepSeek, lsp_transport: str) -> AsyncIterator[Start]:
    """Start fimls processes; each is shut down cleanly after the test."""
    clients: list[LanguageClient] = []

    async def start(
        caps: types.ClientCapabilities | str = "neovim",
        options: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        folders: list[Path] | None = None,
    ) -> LanguageClient:
        client = make_test_lsp_client()
        if lsp_transport == "tcp":
            await start_over_tcp(client, args or [], env or server_env(fake))
        else:
            await client.start_io(*SERVER, *(args or []), env=env or server_env(fake))
        clients.append(client)
        client.init_result = await client.initialize_session(  # type: ignore[attr-defined]
            types.InitializeParams(
                capabilities=capabilities(caps) if isinstance(caps, str) else caps,
                initialization_options={"debounceMs": 0, "prefetch": False, **(options or {})},
                workspace_folders=[types.WorkspaceFolder(uri=f.as_uri(), name=f.name) for f in folders or []]
                or None,
                client_info=types.ClientInfo(name="pytest"),
            )
        )
        # Timing-sensitive tests start once a request shows the server is up.
        await client.workspace_execute_command_async(types.ExecuteCommandParams(command="fimls.status"))
        return client

    yield start
    for client in clients:
        await stop_client(client)


async def stop_client(client: LanguageClient) -> None:
    """Shut the server down (``shutdown`` and ``exit``), then stop ``client``.

    pygls's ``stop()`` waits for the server process to end and never ends it, so a test that
    failed before its shutdown would hang there; a server still running 5 s after the
    attempt is killed instead.
    """
    server = client._server
    try:
        if server is None or server.returncode is None:
            await asyncio.wait_for(client.shutdown_session(), 10)
    finally:
        if server is not None and server.returncode is None:
            try:
                await asyncio.wait_for(server.wait(), 5)
            except TimeoutError:
                server.kill()
        await asyncio.wait_for(client.stop(), 10)


def open_doc(
    client: LanguageClient, text: str, uri: str = "file:///tmp/example.py", language: str = "python"
) -> str:
    """Send didOpen and return the URI."""
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id=language, version=1, text=text)
        )
    )
    return uri


def change(
    client: LanguageClient, uri: str, version: int, start: tuple[int, int], end: tuple[int, int], text: str
) -> None:
    """Send one incremental didChange."""
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(
                        start=types.Position(line=start[0], character=start[1]),
                        end=types.Position(line=end[0], character=end[1]),
                    ),
                    text=text,
                )
            ],
        )
    )


def inline_params(uri: str, line: int, character: int, invoked: bool = True) -> types.InlineCompletionParams:
    """Inline completion request parameters."""
    kind = (
        types.InlineCompletionTriggerKind.Invoked if invoked else types.InlineCompletionTriggerKind.Automatic
    )
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=line, character=character),
        context=types.InlineCompletionContext(trigger_kind=kind),
    )


async def inline(
    client: LanguageClient, uri: str, line: int, character: int, invoked: bool = True
) -> list[types.InlineCompletionItem]:
    """Ask for inline completions and return the items."""
    result = await client.text_document_inline_completion_async(inline_params(uri, line, character, invoked))
    if result is None:
        return []
    return list(result.items if isinstance(result, types.InlineCompletionList) else result)


async def classic(client: LanguageClient, uri: str, line: int, character: int) -> types.CompletionList:
    """Ask for classic completions."""
    result = await client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=line, character=character),
        )
    )
    assert isinstance(result, types.CompletionList)
    return result
