"""The privacy gate end to end: a unique canary in each refused file must never reach the backend.

Each test runs the real server (or ``fimls complete``) against the fake backend, puts a fresh canary in
the text of every file that must stay on the machine, and checks every request the fake logged for any
piece of it. An allowed control file in the same session must reach the backend, so a dead backend or
a server that sends nothing at all cannot make a test pass.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import SERVER, capabilities, inline, open_doc, server_env, stop_client
from fake_deepseek import FakeDeepSeek, Reply
from lsprotocol import types
from pytest_lsp import LanguageClient
from pytest_lsp.client import make_test_lsp_client

WINDOW = 8  # any 8 characters of a canary's random part in a request count as a leak
PREFIX = "CANARY"


def canary() -> str:
    return PREFIX + uuid.uuid4().hex


def sent(fake: FakeDeepSeek) -> str:
    """Everything the fake received: raw bytes where it keeps them, else the parsed bodies."""
    parts = []
    for request in fake.requests:
        raw = getattr(request, "raw", None)
        if isinstance(raw, (bytes, bytearray)):
            parts.append(raw.decode("utf-8", "replace"))
        else:
            parts.append(request.path + json.dumps(request.body))
    return "\n".join(parts)


def leaked(fake: FakeDeepSeek, secret: str) -> bool:
    """Whether any piece of ``secret`` (``WINDOW`` characters or more) reached the fake.

    Only the random part is searched: the shared prefix also starts every control file's marker.
    """
    seen = sent(fake)
    random_part = secret.removeprefix(PREFIX)
    return any(random_part[i : i + WINDOW] in seen for i in range(len(random_part) - WINDOW + 1))


def reached(fake: FakeDeepSeek, marker: str) -> bool:
    return marker in sent(fake)


Start = Callable[..., Awaitable[LanguageClient]]


@pytest.fixture
async def start(fake: FakeDeepSeek) -> AsyncIterator[Start]:
    """Start fimls with workspace folders (or only rootUri / rootPath) in ``initialize``."""
    clients: list[LanguageClient] = []

    async def run(
        folders: list[Path] | None = None,
        root_uri: str | None = None,
        root_path: str | None = None,
        options: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
    ) -> LanguageClient:
        fake.default = Reply(text="ok")
        client = make_test_lsp_client()
        await client.start_io(*SERVER, env=env or server_env(fake))
        clients.append(client)
        await client.initialize_session(
            types.InitializeParams(
                capabilities=capabilities("vscode"),
                root_uri=root_uri if root_uri or folders is None else folders[0].as_uri(),
                root_path=root_path,
                workspace_folders=None
                if folders is None
                else [types.WorkspaceFolder(uri=f.as_uri(), name=f.name) for f in folders],
                initialization_options={"debounceMs": 0, **(options or {})},
            )
        )
        return client

    yield run
    for client in clients:
        await stop_client(client)


async def ask(client: LanguageClient, uri: str, text: str, language: str = "plaintext") -> list[str]:
    """Open ``uri`` with ``text`` and ask for a completion at its end."""
    open_doc(client, text, uri=uri, language=language)
    lines = text.split("\n")
    items = await asyncio.wait_for(inline(client, uri, len(lines) - 1, len(lines[-1])), 30)
    return [item.insert_text for item in items]


async def refused(client: LanguageClient, fake: FakeDeepSeek, uri: str, language: str = "plaintext") -> None:
    """Assert that a file holding a fresh canary is not sent."""
    secret = canary()
    items = await ask(client, uri, f"TOKEN={secret}\nKEY={secret}", language)
    assert not leaked(fake, secret), uri
    assert items == [], uri


async def allowed(client: LanguageClient, fake: FakeDeepSeek, uri: str, language: str = "python") -> None:
    """Assert that a control file is sent (the backend is alive and reached)."""
    marker = canary()
    assert await ask(client, uri, f"x = '{marker}'\ny = ", language) == ["ok"], uri
    assert reached(fake, marker), uri


def write(path: Path, text: str | bytes = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# -- the deny list ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("folder", "file"),
    [
        (".kube", "config"),
        (".ssh", "config"),
        (".aws", "config"),
        (".config/gcloud", "configurations/config_default"),
    ],
)
async def test_workspace_folder_that_is_a_secret_directory(start, fake, tmp_path: Path, folder, file):
    root = tmp_path / "home" / folder
    secret = write(root / file)
    client = await start([root])
    await refused(client, fake, secret.as_uri())
    await allowed(client, fake, (tmp_path / "project" / "main.py").as_uri())


async def test_upper_case_names(start, fake, tmp_path: Path):
    client = await start([tmp_path])
    for name in (".ENV", "SERVER.PEM", "Id_Rsa", "config/.Env.Production"):
        await refused(client, fake, (tmp_path / name).as_uri())
    await allowed(client, fake, (tmp_path / "main.py").as_uri())


async def test_infrastructure_state_and_credentials(start, fake, tmp_path: Path):
    client = await start([tmp_path])
    for name in ("terraform.tfstate", "terraform.tfstate.backup", "prod.tfvars", "deploy/prod.kubeconfig"):
        await refused(client, fake, (tmp_path / name).as_uri())
    await allowed(client, fake, (tmp_path / "main.tf").as_uri(), "terraform")


async def test_symlink_to_a_secret(start, fake, tmp_path: Path):
    target = write(tmp_path / "home" / ".ssh" / "id_ed25519", "key")
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").symlink_to(target)
    client = await start([work])
    await refused(client, fake, (work / "notes.txt").as_uri())
    await allowed(client, fake, (work / "main.py").as_uri())


async def test_dot_dot_in_the_uri(start, fake, tmp_path: Path):
    write(tmp_path / ".aiignore", "private/\n")
    client = await start([tmp_path])
    await refused(client, fake, tmp_path.as_uri() + "/src/../.env")
    await refused(client, fake, tmp_path.as_uri() + "/public/%2E%2E/private/a.py", "python")
    await allowed(client, fake, tmp_path.as_uri() + "/private/../public/a.py")


async def test_non_file_uris_are_checked_by_name(start, fake, tmp_path: Path):
    client = await start([tmp_path])
    await refused(client, fake, "untitled:.env")
    await refused(client, fake, "vscode-remote://ssh-remote%2Bhost/home/u/project/.env")
    await refused(client, fake, "git:/home/u/project/secrets/db.py?%7B%22ref%22%3A%22HEAD%22%7D", "python")
    await allowed(client, fake, "untitled:Untitled-1")


# -- ignore files --------------------------------------------------------------


async def test_folder_added_later_with_an_ignore_file(start, fake, tmp_path: Path):
    first, added = tmp_path / "first", tmp_path / "added"
    first.mkdir()
    write(added / ".aiignore", "private/\n")
    client = await start([first])
    await allowed(client, fake, (first / "a.py").as_uri())
    client.workspace_did_change_workspace_folders(
        types.DidChangeWorkspaceFoldersParams(
            event=types.WorkspaceFoldersChangeEvent(
                added=[types.WorkspaceFolder(uri=added.as_uri(), name="added")], removed=[]
            )
        )
    )
    await refused(client, fake, (added / "private" / "a.py").as_uri(), "python")
    await allowed(client, fake, (added / "public" / "a.py").as_uri())


async def test_nested_folders(start, fake, tmp_path: Path):
    outer, inner = tmp_path, tmp_path / "packages" / "app"
    write(outer / ".aiignore", "*.sql\n")
    write(inner / ".fimlsignore", "/local/\n")
    client = await start([outer, inner])
    await refused(client, fake, (inner / "db" / "q.sql").as_uri(), "sql")  # the outer folder's rule
    await refused(client, fake, (inner / "local" / "a.py").as_uri(), "python")  # the inner folder's
    await allowed(client, fake, (outer / "local" / "a.py").as_uri())  # "/local/" is relative to inner


async def test_client_sending_only_root_path(start, fake, tmp_path: Path):
    write(tmp_path / ".aiignore", "private/\n")
    client = await start(root_path=str(tmp_path))
    await refused(client, fake, (tmp_path / "private" / "a.py").as_uri(), "python")
    await allowed(client, fake, (tmp_path / "src" / "a.py").as_uri())


async def test_ignore_file_created_and_edited_after_start(start, fake, tmp_path: Path):
    write(tmp_path / ".fimlsignore", "nothing-here/\n")
    client = await start([tmp_path])
    # A document already open and already sent once becomes private when a rule names it.
    uri = (tmp_path / "notes.md").as_uri()
    assert await ask(client, uri, "first draft ", "markdown") == ["ok"]
    write(tmp_path / ".aiignore", "notes.md\n")
    secret = canary()
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=f"{secret} ")],
        )
    )
    items = await asyncio.wait_for(inline(client, uri, 0, len(secret) + 1), 30)
    assert not leaked(fake, secret)
    assert items == []
    # An existing ignore file edited later.
    write(tmp_path / ".fimlsignore", "nothing-here/\nprivate/\n")
    await refused(client, fake, (tmp_path / "private" / "a.py").as_uri(), "python")
    await allowed(client, fake, (tmp_path / "src" / "a.py").as_uri())


async def test_broad_negation_does_not_re_allow_deny_listed_files(start, fake, tmp_path: Path):
    write(tmp_path / ".aiignore", "*.json\n!*.json\n!*.pem\n")
    client = await start([tmp_path])
    await refused(client, fake, (tmp_path / "credentials.json").as_uri(), "json")
    await refused(client, fake, (tmp_path / "certs" / "server.pem").as_uri())
    await allowed(client, fake, (tmp_path / "package.json").as_uri(), "json")
    assert not any("deny list" in m.message for m in client.messages)


async def test_exact_negation_re_allows_with_a_warning(start, fake, tmp_path: Path):
    write(tmp_path / ".aiignore", "!.env.example\n")
    client = await start([tmp_path])
    await refused(client, fake, (tmp_path / ".env").as_uri())
    await allowed(client, fake, (tmp_path / ".env.example").as_uri(), "dotenv")
    await asyncio.sleep(0.1)
    warnings = [m.message for m in client.messages if "deny list" in m.message]
    assert len(warnings) == 1 and ".env.example" in warnings[0] and "re-allows" in warnings[0]


async def test_malformed_ignore_file(start, fake, tmp_path: Path):
    write(tmp_path / ".aiignore", b"\xef\xbb\xbfprivate/\n[z-a]\nbad\xff\xfe\n*.sql\n")
    client = await start([tmp_path])
    await refused(client, fake, (tmp_path / "private" / "a.py").as_uri(), "python")  # first line, after BOM
    await refused(client, fake, (tmp_path / "db" / "q.sql").as_uri(), "sql")  # after the bad lines
    await allowed(client, fake, (tmp_path / "src" / "a.py").as_uri())
    await asyncio.sleep(0.1)
    notes = [m.message for m in client.messages if ".aiignore" in m.message]
    assert len(notes) == 1, notes
    assert "line 2" in notes[0] and "line 3" in notes[0]


async def test_languages_setting_and_its_change(start, fake, tmp_path: Path):
    client = await start([tmp_path], options={"languages": ["python"]})
    await refused(client, fake, (tmp_path / "notes.md").as_uri(), "markdown")
    await allowed(client, fake, (tmp_path / "a.py").as_uri(), "python")
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"fimls": {"languages": ["python", "markdown"]}})
    )
    await allowed(client, fake, (tmp_path / "other.md").as_uri(), "markdown")
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"fimls": {"languages": ["markdown"]}})
    )
    await refused(client, fake, (tmp_path / "b.py").as_uri(), "python")


# -- the base URL ----------------------------------------------------------------------


@pytest.mark.parametrize("base", ["http://127.evil.example:{port}", "http://127.0.0.1@evil.example:{port}"])
async def test_loopback_look_alikes_are_refused(start, fake, tmp_path: Path, base: str):
    port = fake.url.rsplit(":", 1)[1].rstrip("/")
    client = await start([tmp_path], env=server_env(fake, DEEPSEEK_BASE_URL=base.format(port=port)))
    secret = canary()
    assert await ask(client, (tmp_path / "a.py").as_uri(), f"x = '{secret}'\n", "python") == []
    await asyncio.sleep(0.1)
    assert any("refusing to send code over plain http://" in m.message for m in client.messages)
    assert fake.requests == []


# -- the command line -----------------------------------------------------------------


def complete(fake: FakeDeepSeek, target: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SERVER, "complete", target],
        env=server_env(fake),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_refuses_a_deny_listed_file(fake, tmp_path: Path):
    fake.default = Reply(text="leak")
    secret = canary()
    write(tmp_path / "some" / ".env", f"SECRET={secret}\nTOKEN=\n")
    result = complete(fake, "some/.env:2:7", tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert "not sending" in result.stderr and "deny list" in result.stderr
    assert not leaked(fake, secret) and fake.requests == []
    control = write(tmp_path / "some" / "ok.py", "x = 1\ny = \n")
    assert complete(fake, f"{control}:2:5", tmp_path).returncode == 0
    assert len(fake.fim_requests()) == 1


def test_cli_honours_ignore_files(fake, tmp_path: Path):
    fake.default = Reply(text="1")
    repo = tmp_path / "repo"
    write(repo / ".aiignore", "private/\n")
    secret = canary()
    write(repo / "src" / "private" / "a.py", f"key = '{secret}'\nx = \n")
    result = complete(fake, "repo/src/private/a.py:2:5", tmp_path)  # run from outside the repo
    assert result.returncode == 1 and result.stdout == ""
    assert "ignored by 'private/'" in result.stderr and ".aiignore" in result.stderr
    assert not leaked(fake, secret) and fake.requests == []
    marker = canary()
    write(repo / "src" / "ok.py", f"key = '{marker}'\nx = \n")
    allowed_run = complete(fake, "src/ok.py:2:5", repo)
    assert allowed_run.returncode == 0 and allowed_run.stdout == "1\n", allowed_run.stderr
    assert reached(fake, marker)
