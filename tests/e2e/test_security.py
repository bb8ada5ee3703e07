"""Secrets and private files never leave the machine."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import pytest
from conftest import SERVER, TEST_KEY, capabilities, inline, open_doc, server_env, stop_client
from fake_deepseek import FakeDeepSeek, Reply
from lsprotocol import types
from pytest_lsp.client import make_test_lsp_client


@pytest.mark.parametrize("name", [".env", "config/.env.production", "certs/server.pem", ".ssh/id_ed25519"])
async def test_denied_files_are_never_sent(start_server, fake, tmp_path: Path, name):
    fake.default = Reply(text="LEAK")
    client = await start_server("vscode")
    uri = open_doc(client, "API_TOKEN=", uri=(tmp_path / name).as_uri(), language="plaintext")
    assert await inline(client, uri, 0, 10) == []
    normal = open_doc(client, "x = ", uri=(tmp_path / "ok.py").as_uri())
    assert [i.insert_text for i in await inline(client, normal, 0, 4)] == ["LEAK"]
    assert all("API_TOKEN" not in (r.body or {}).get("prompt", "") for r in fake.requests)
    assert len(fake.fim_requests()) == 1


async def test_workspace_ignore_files_and_languages(fake, tmp_path: Path):
    (tmp_path / ".fimlsignore").write_text("private/\n", encoding="utf-8")
    (tmp_path / ".aiignore").write_text("*.sql\n", encoding="utf-8")
    fake.default = Reply(text="1")
    client = make_test_lsp_client()
    await client.start_io(*SERVER, env=server_env(fake))
    try:
        await client.initialize_session(
            types.InitializeParams(
                capabilities=capabilities("vscode"),
                root_uri=tmp_path.as_uri(),
                workspace_folders=[types.WorkspaceFolder(uri=tmp_path.as_uri(), name="w")],
                initialization_options={"debounceMs": 0, "languages": ["python", "sql"]},
            )
        )
        cases = {
            "private/a.py": ("python", False),
            "db/q.sql": ("sql", False),
            "notes.md": ("markdown", False),  # language not enabled
            "src/main.py": ("python", True),
        }
        for n, (rel, (language, allowed)) in enumerate(cases.items()):
            uri = open_doc(client, f"canary_{n} = ", uri=(tmp_path / rel).as_uri(), language=language)
            items = await inline(client, uri, 0, len(f"canary_{n} = "))
            assert bool(items) is allowed, rel
        # Only src/main.py was asked about (a prefetch may follow its answer).
        sent = " ".join(request.body.get("prompt", "") for request in fake.fim_requests())
        assert [n for n in range(4) if f"canary_{n}" in sent] == [3], sent
        assert len(fake.asked()) == 1
    finally:
        await stop_client(client)


async def test_plain_http_to_remote_host_is_refused(start_server, fake):
    env = server_env(fake, DEEPSEEK_BASE_URL="http://api.example.invalid")
    client = await start_server("vscode", env=env)
    uri = open_doc(client, "x = \n")
    assert await inline(client, uri, 0, 4) == []
    await asyncio.sleep(0.1)
    assert sum("refusing to send code over plain http://" in m.message for m in client.messages) == 1


def test_doctor_refuses_plain_http(fake):
    env = server_env(fake, DEEPSEEK_BASE_URL="http://api.example.invalid")
    result = subprocess.run([*SERVER, "doctor"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "FAIL  base URL: refusing" in result.stdout


async def test_key_from_command(start_server, fake, tmp_path: Path):
    script = tmp_path / "print-key"
    script.write_text(f"#!/bin/sh\necho {TEST_KEY}\n", encoding="utf-8")
    script.chmod(0o755)
    env = server_env(fake)
    del env["DEEPSEEK_API_KEY"]
    fake.default = Reply(text="ok")
    client = await start_server("vscode", {"apiKeyCommand": str(script)}, env=env, args=["-vv"])
    uri = open_doc(client, "x = \n")
    assert [i.insert_text for i in await inline(client, uri, 0, 4)] == ["ok"]
    assert fake.fim_requests()[0].authorized


@pytest.mark.parametrize("verbosity", [[], ["-v"], ["-vv"], ["-vvv"]])
def test_key_never_logged_at_any_verbosity(fake, tmp_path: Path, verbosity):
    """Run a whole LSP session over raw stdio with the key in initializationOptions and
    grep everything the server printed."""
    fake.script.append(Reply(status=401))
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"capabilities": {}, "initializationOptions": {"apiKey": TEST_KEY, "debounceMs": 0}},
    }
    messages = [
        init,
        {"jsonrpc": "2.0", "method": "initialized", "params": {}},
        {
            "jsonrpc": "2.0",
            "method": "textDocument/didOpen",
            "params": {
                "textDocument": {
                    "uri": "file:///t/a.py",
                    "languageId": "python",
                    "version": 1,
                    "text": "x = ",
                }
            },
        },
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "textDocument/inlineCompletion",
            "params": {
                "textDocument": {"uri": "file:///t/a.py"},
                "position": {"line": 0, "character": 4},
                "context": {"triggerKind": 1},
            },
        },
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "workspace/executeCommand",
            "params": {"command": "fimls.status"},
        },
        {"jsonrpc": "2.0", "id": 4, "method": "shutdown"},
        {"jsonrpc": "2.0", "method": "exit"},
    ]
    data = b""
    for message in messages:
        body = json.dumps(message).encode()
        data += b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    env = server_env(fake)
    del env["DEEPSEEK_API_KEY"]

    # Feed messages slowly enough that the completion finishes before shutdown.
    proc = subprocess.Popen(
        [*SERVER, *verbosity], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    head = data.split(b'"shutdown"', 1)[0]
    cut = head.rfind(b"Content-Length")
    assert proc.stdin is not None
    proc.stdin.write(data[:cut])
    proc.stdin.flush()
    assert fake.wait_for(lambda: len(fake.fim_requests()) == 1, 10)
    time.sleep(0.5)
    out, err = proc.communicate(input=data[cut:], timeout=30)
    assert proc.returncode == 0
    assert fake.fim_requests()[0].authorized  # the key was used...
    assert TEST_KEY.encode() not in out + err  # ...and never printed
    assert b"rejected the API key (401)" in out


@pytest.mark.parametrize("wrapped", [True, False], ids=["fimls-section", "whole-payload"])
async def test_workspace_configuration_cannot_redirect_code_or_keys_or_run_commands(
    start_server, fake, tmp_path: Path, wrapped
):
    """What a cloned repository's .dir-locals.el (eglot-workspace-configuration) would send."""
    evil = FakeDeepSeek().start()
    marker = tmp_path / "ran"
    canary = "CANARY" + "0a1b2c3d4e5f6789"
    try:
        fake.default = Reply(text="pass")
        evil.default = Reply(text="stolen")
        client = await start_server("vscode")
        hostile = {
            "baseUrl": evil.url,
            "backend": "openai-compatible",
            "apiKeyCommand": f"touch {marker}",
            "apiKey": "sk-attacker-000000000",
            "apiKeyEnv": "HOME",
            "allowInsecureHttp": True,
            "debounceMs": 0,
        }
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"fimls": hostile} if wrapped else hostile)
        )
        uri = open_doc(client, f"token = '{canary}'\nx = \n")
        assert [i.insert_text for i in await inline(client, uri, 1, 4)] == ["pass"]
        assert evil.requests == [] and not marker.exists()
        assert fake.fim_requests()[0].authorized  # the user's own key, to the user's own endpoint
        assert canary.encode() in fake.fim_requests()[0].raw
        await asyncio.sleep(0.1)
        warnings = [m.message for m in client.messages if "ignored from workspace configuration" in m.message]
        assert len(warnings) == 1
        for key in ("baseUrl", "backend", "apiKeyCommand", "apiKey", "apiKeyEnv", "allowInsecureHttp"):
            assert key in warnings[0]
        status = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="fimls.status")
        )
        assert status["baseUrl"] == fake.url and status["backend"] == "deepseek"
    finally:
        evil.stop()


async def test_a_key_echoed_by_the_backend_never_reaches_any_output(start_server, fake):
    echo = f"bad request; Authorization: Bearer {TEST_KEY}; your key {TEST_KEY} is fine"
    fake.default = Reply(status=400, error_message=echo)
    fake.models_reply = Reply(status=404, error_message=echo)
    fake.balance_reply = Reply(status=400, error_message=echo)
    client = await start_server("vscode", {"model": "deepseek-flash"})
    uri = open_doc(client, "x = \n")
    assert await inline(client, uri, 0, 4) == []
    replies = [
        await client.workspace_execute_command_async(types.ExecuteCommandParams(command="fimls.status"))
    ]
    for command in ("fimls.models", "fimls.balance"):
        with pytest.raises(Exception) as failed:
            await client.workspace_execute_command_async(types.ExecuteCommandParams(command=command))
        replies.append(str(failed.value))
    await asyncio.sleep(0.1)
    shown = [m.message for m in client.messages] + [m.message for m in client.log_messages]
    assert any("bad request" in m for m in shown) and "bad request" in json.dumps(replies)
    everything = json.dumps(shown) + json.dumps(replies, default=str)
    assert TEST_KEY not in everything and TEST_KEY[8:20] not in everything
    assert "***" in replies[0]["lastError"]
