"""Bad LSP input gets the answer the spec prescribes, and the server keeps serving."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import pytest
from conftest import SERVER, change, inline, open_doc, server_env
from fake_deepseek import Reply

from fimls.config import Settings


class Raw:
    """A bare JSON-RPC peer over the server's stdio, for messages no real client sends."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, fake) -> Raw:
        proc = await asyncio.create_subprocess_exec(
            *SERVER, env=server_env(fake), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        return cls(proc)

    def send_bytes(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)

    def send(self, message: Any) -> None:
        body = message if isinstance(message, bytes) else json.dumps(message).encode()
        self.send_bytes(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def request(self, msg_id: Any, method: str, params: Any = None) -> None:
        self.send({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})

    def notify(self, method: str, params: Any = None) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    async def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        length = 0
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), 10)
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
            elif line in (b"\r\n", b"\n") and length:
                break
        return json.loads(await self.proc.stdout.readexactly(length))

    async def reply(self) -> dict[str, Any]:
        """The next message that is not a notification from the server."""
        while True:
            message = await self.read()
            if "method" not in message:
                return message

    async def response(self, msg_id: Any) -> dict[str, Any]:
        while True:
            message = await self.read()
            if "method" not in message and message.get("id") == msg_id:
                return message

    async def initialize(self) -> None:
        self.request(0, "initialize", {"capabilities": {}, "initializationOptions": {"debounceMs": 0}})
        assert "result" in await self.response(0)
        self.notify("initialized", {})

    async def finish(self) -> int:
        if self.proc.stdin and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        return await asyncio.wait_for(self.proc.wait(), 10)


def completion_params(uri: str = "file:///t/a.py", line: Any = 0, character: Any = 4) -> dict[str, Any]:
    return {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}


def open_params(text: str, uri: str = "file:///t/a.py") -> dict[str, Any]:
    return {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": text}}


@pytest.fixture
async def raw(fake):
    peer = await Raw.start(fake)
    yield peer
    if peer.proc.returncode is None:
        peer.proc.kill()
        await peer.proc.wait()


async def test_request_before_initialize(raw):
    raw.notify("textDocument/didOpen", open_params("x = "))  # dropped: not initialized
    raw.request(1, "textDocument/completion", completion_params())
    assert (await raw.response(1))["error"]["code"] == -32002
    await raw.initialize()
    raw.request(2, "textDocument/completion", completion_params())
    assert (await raw.response(2))["result"]["items"] == []  # the early didOpen was ignored


@pytest.mark.parametrize(
    ("method", "code"),
    [("no/such/method", -32601), ("$/private", -32601)],
)
async def test_unknown_methods(raw, method, code):
    await raw.initialize()
    raw.notify("$/ignored", {})
    raw.notify("no/such/notification", {})
    raw.request(7, method, {})
    assert (await raw.response(7))["error"]["code"] == code


@pytest.mark.parametrize(
    "params",
    [
        completion_params(line=-1),
        completion_params(character="four"),
        {"textDocument": "not an object"},
        None,
    ],
)
async def test_invalid_params(raw, fake, params):
    fake.default = Reply(text="ok")
    await raw.initialize()
    raw.request(5, "textDocument/inlineCompletion", params)
    assert (await raw.response(5))["error"]["code"] == -32602
    raw.notify("textDocument/didOpen", open_params("x = "))
    raw.request(6, "textDocument/inlineCompletion", {**completion_params(), "context": {"triggerKind": 1}})
    assert (await raw.response(6))["result"]["items"][0]["insertText"] == "ok"


async def test_malformed_messages_then_keeps_serving(raw, fake):
    fake.default = Reply(text="ok")
    await raw.initialize()
    raw.send(b"{this is not json")
    assert (await raw.reply())["error"]["code"] == -32700
    raw.send(b"[1, 2, 3]")
    assert (await raw.reply())["error"]["code"] == -32600
    raw.send({"id": 9, "method": "textDocument/completion"})  # no "jsonrpc"
    message = await raw.reply()
    assert message["error"]["code"] == -32600 and message["id"] == 9
    raw.send(b"\xff\xfe not utf-8")
    assert (await raw.reply())["error"]["code"] == -32700
    raw.send_bytes(b"Content-Length: many\r\n\r\n{}")
    assert (await raw.reply())["error"]["code"] == -32700
    # The stream resynchronises on the next header and the server keeps serving.
    raw.notify("textDocument/didOpen", open_params("x = "))
    raw.request(10, "textDocument/inlineCompletion", {**completion_params(), "context": {"triggerKind": 1}})
    assert (await raw.response(10))["result"]["items"][0]["insertText"] == "ok"


async def test_second_initialize_and_requests_after_shutdown(raw):
    await raw.initialize()
    raw.request(1, "initialize", {"capabilities": {}})
    assert (await raw.response(1))["error"]["code"] == -32600
    raw.request(2, "shutdown")
    assert (await raw.response(2))["result"] is None
    raw.request(3, "textDocument/completion", completion_params())
    assert (await raw.response(3))["error"]["code"] == -32600
    raw.notify("exit")
    assert await raw.finish() == 0


async def test_exit_without_shutdown_exits_1(raw):
    await raw.initialize()
    raw.notify("exit")
    assert await raw.finish() == 1


async def test_huge_documents(start_server, fake):
    fake.default = Reply(text="1")
    client = await start_server("vscode")
    big = "x = 1\n" * 1_750_000  # 10.5 MB
    uri = open_doc(client, big + "y = ", uri="file:///t/big.py")
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert [i.insert_text for i in await inline(client, uri, 1_750_000, 4)] == ["1"]
    assert loop.time() - started < 5
    prompt = fake.fim_requests()[0].body["prompt"]
    budget = Settings().max_prefix_chars
    assert len(prompt) <= budget and prompt.endswith("x = 1\ny = ")
    long_line = "z" * 1_000_000 + " = "
    uri2 = open_doc(client, long_line, uri="file:///t/long.py")
    assert await inline(client, uri2, 0, len(long_line))
    assert len(fake.fim_requests()[1].body["prompt"]) == budget
    change(client, uri2, 2, (0, 500_000), (0, 500_000), "edit")
    assert await inline(client, uri2, 0, len(long_line) + 4) is not None


async def test_binary_looking_content(start_server, fake):
    fake.default = Reply(text="ok")
    client = await start_server("vscode")
    text = "\x00\x01\x02\ufffd\udcff" + bytes(range(32)).decode("latin-1") + "\nx = "
    uri = open_doc(client, text, uri="file:///t/bin.dat")
    assert [i.insert_text for i in await inline(client, uri, 1, 4)] == ["ok"]


async def test_document_closed_while_request_in_flight(start_server, fake):
    fake.default = Reply(text="late", delay=0.5)
    client = await start_server("vscode")
    uri = open_doc(client, "x = \n")
    pending = asyncio.ensure_future(inline(client, uri, 0, 4))
    assert await asyncio.to_thread(fake.wait_for, lambda: len(fake.fim_requests()) == 1, 5)
    from lsprotocol import types

    client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    assert await pending == []
    uri = open_doc(client, "y = \n", uri="file:///t/other.py")
    fake.default = Reply(text="fine")
    assert [i.insert_text for i in await inline(client, uri, 0, 4)] == ["fine"]


def test_sys_executable_is_used():
    assert SERVER[0] == sys.executable


async def test_initialize_with_params_of_the_wrong_shape_is_refused_not_guessed(raw):
    # Not plain enough to be answered before the server loads, so the server checks it.
    raw.request(1, "initialize", {"processId": "not a number", "capabilities": {"textDocument": 5}})
    assert (await raw.response(1))["error"]["code"] == -32602
    await raw.initialize()  # a correct one afterwards still works
