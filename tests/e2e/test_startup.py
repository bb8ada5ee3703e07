"""Start-up over real stdio: pygls answers initialize from the registered features, and nothing
the editor sends right behind it is lost."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from conftest import SERVER, server_env
from fake_deepseek import Reply

from fimls.server import BALANCE, MODELS, RESUME, STATUS, TRIGGER_CHARACTERS


def frame(message: Any) -> bytes:
    body = json.dumps(message, ensure_ascii=False).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


async def read(stdout: asyncio.StreamReader) -> dict[str, Any]:
    header = await asyncio.wait_for(stdout.readuntil(b"\r\n\r\n"), 15)
    length = int(header.split(b":")[1].split(b"\r\n")[0])
    return json.loads(await stdout.readexactly(length))


async def session(fake, capabilities: dict[str, Any], text: str, character: int) -> tuple[list, str]:
    """initialize, then (in the same write) initialized, didOpen, an invoked inline request,
    shutdown and exit; returns every message the server sent and its stderr."""
    proc = await asyncio.create_subprocess_exec(
        *SERVER,
        env=server_env(fake),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin and proc.stdout and proc.stderr
    uri = "file:///tmp/start.py"
    params = {"processId": None, "capabilities": capabilities, "initializationOptions": {"debounceMs": 0}}
    proc.stdin.write(
        frame({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params})
        + frame({"jsonrpc": "2.0", "method": "initialized", "params": {}})
        + frame(
            {
                "jsonrpc": "2.0",
                "method": "textDocument/didOpen",
                "params": {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": text}},
            }
        )
        + frame(
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "textDocument/inlineCompletion",
                "params": {
                    "textDocument": {"uri": uri},
                    "position": {"line": 0, "character": character},
                    "context": {"triggerKind": 1},
                },
            }
        )
    )
    messages = [await read(proc.stdout)]
    while messages[-1].get("id") != 2:
        messages.append(await read(proc.stdout))
    proc.stdin.write(frame({"jsonrpc": "2.0", "id": 3, "method": "shutdown"}))
    while messages[-1].get("id") != 3:
        messages.append(await read(proc.stdout))
    proc.stdin.write(frame({"jsonrpc": "2.0", "method": "exit"}))
    stderr = (await asyncio.wait_for(proc.stderr.read(), 15)).decode()
    assert await asyncio.wait_for(proc.wait(), 15) == 0
    return messages, stderr


async def test_initialize_answered_first_and_everything_after_it_served(fake):
    fake.default = Reply(text="fib(n - 1)")
    capabilities = {"general": {"positionEncodings": ["utf-16"]}}
    messages, stderr = await session(fake, capabilities, "x = \n", 4)
    responses = [m for m in messages if "id" in m]
    assert [m["id"] for m in responses] == [1, 2, 3]  # initialize is the first answer
    result = responses[0]["result"]
    caps = result["capabilities"]
    assert result["serverInfo"]["name"] == "fimls"
    assert caps["positionEncoding"] == "utf-16"
    assert caps["textDocumentSync"]["change"] == 2  # incremental
    assert caps["completionProvider"]["triggerCharacters"] == TRIGGER_CHARACTERS
    assert sorted(caps["executeCommandProvider"]["commands"]) == sorted([STATUS, BALANCE, MODELS, RESUME])
    assert caps["inlineCompletionProvider"] == {}
    assert caps["workspace"]["workspaceFolders"] == {"supported": True, "changeNotifications": True}
    assert [i["insertText"] for i in responses[1]["result"]["items"]] == ["fib(n - 1)"]
    assert "Traceback" not in stderr


async def test_the_negotiated_encoding_is_the_one_positions_use(fake):
    fake.default = Reply(text="1")
    capabilities = {"general": {"positionEncodings": ["utf-8"]}}
    messages, _ = await session(fake, capabilities, "é = \n", len("é = ".encode()))
    responses = {m["id"]: m for m in messages if "id" in m}
    assert responses[1]["result"]["capabilities"]["positionEncoding"] == "utf-8"
    items = responses[2]["result"]["items"]
    assert [i["insertText"] for i in items] == ["1"]
    assert items[0]["range"]["start"] == {"line": 0, "character": 5}  # UTF-8 bytes
    assert fake.fim_requests()[0].body["prompt"] == "é = "
