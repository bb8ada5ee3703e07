"""fimls.early: the initialize answer sent before the server loads, and the bytes it keeps."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from typing import Any

import pytest
from pytest_lsp import client_capabilities

from fimls import early
from fimls.server import create_server


def frame(message: Any) -> bytes:
    body = json.dumps(message, ensure_ascii=False).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def caps_json(spec: str) -> dict[str, Any]:
    from lsprotocol import converters

    return converters.get_converter().unstructure(client_capabilities(spec))


CLIENTS: dict[str, dict[str, Any]] = {
    "empty": {},
    "neovim": caps_json("neovim@v0.11.0"),
    "vscode": caps_json("visual-studio-code"),
    "emacs": caps_json("emacs@v29.1"),
    "helix": {"general": {"positionEncodings": ["utf-8", "utf-32", "utf-16"]}},
    "utf32 only": {"general": {"positionEncodings": ["utf-32"]}},
    "unknown encodings": {"general": {"positionEncodings": ["ebcdic", "utf-7"]}},
    "unknown then utf-8": {"general": {"positionEncodings": ["latin-1", "utf-8"]}},
    "will save true": {"textDocument": {"synchronization": {"willSave": True, "willSaveWaitUntil": True}}},
    "will save false": {"textDocument": {"synchronization": {"willSave": False}}},
    "notebooks and file operations": {
        "notebookDocument": {"synchronization": {"dynamicRegistration": True}},
        "workspace": {"fileOperations": {"willCreate": True, "didRename": True}},
    },
}


async def pygls_answer(params: dict[str, Any]) -> Any:
    """What the server computes for ``initialize`` with ``params`` (no early answer involved)."""
    server = create_server()
    protocol = server.protocol
    sent: list[bytes] = []

    class Writer:
        def write(self, data: bytes) -> None:
            sent.append(data)

    protocol.set_writer(Writer())
    message = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}
    protocol.handle_message(json.loads(json.dumps(message), object_hook=protocol.structure_message))
    for _ in range(100):
        if sent:
            break
        await asyncio.sleep(0.01)
    assert server.engine is not None
    await server.engine.aclose()
    responses = [json.loads(data.split(b"\r\n\r\n", 1)[1]) for data in sent]
    return next(r for r in responses if r.get("id") == 1)


@pytest.mark.parametrize("client", sorted(CLIENTS))
async def test_early_answer_is_the_servers_answer(client):
    params = {"processId": None, "rootUri": None, "capabilities": CLIENTS[client]}
    assert early.answerable({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params})
    computed = await pygls_answer(params)
    assert computed["result"] == early.initialize_result(params)


@pytest.mark.parametrize(
    "message",
    [
        {"jsonrpc": "2.0", "id": 1, "method": "shutdown"},
        {"jsonrpc": "2.0", "method": "initialize", "params": {"capabilities": {}}},
        {"jsonrpc": "1.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}},
        {"jsonrpc": "2.0", "id": True, "method": "initialize", "params": {"capabilities": {}}},
        {"jsonrpc": "2.0", "id": 1.5, "method": "initialize", "params": {"capabilities": {}}},
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}},
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": []},
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": []}},
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}, "processId": "1"}},
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}, "rootUri": 3}},
        [1, 2],
    ],
)
def test_only_plain_initialize_requests_are_answered_early(message):
    assert not early.answerable(message)


def read_with_writer(*pieces: bytes, close: bool = False) -> tuple[bytes, bytes | None]:
    """Run read_first_message on a pipe that a thread fills piece by piece."""
    read_fd, write_fd = os.pipe()

    def writer() -> None:
        for piece in pieces:
            os.write(write_fd, piece)
        if close:
            os.close(write_fd)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        return early.read_first_message(read_fd)
    finally:
        thread.join()
        os.close(read_fd)
        if not close:
            os.close(write_fd)


def test_reads_exactly_one_message_and_keeps_what_follows():
    first = frame({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}})
    second = frame({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    raw, body = read_with_writer(first + second)
    assert body is not None and json.loads(body)["method"] == "initialize"
    assert raw == first + second  # the server replays all of it


def test_message_split_across_writes_mid_header_and_mid_utf8():
    message = frame({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"rootPath": "/tmp/é😀"}})
    cut = message.index("😀".encode()) + 2
    raw, body = read_with_writer(message[:9], message[9:cut], message[cut:])
    assert raw == message and body is not None and json.loads(body)["params"]["rootPath"] == "/tmp/é😀"


def test_bare_newline_framing_and_extra_headers():
    body = b'{"jsonrpc": "2.0", "id": 7, "method": "initialize", "params": {"capabilities": {}}}'
    message = b"content-length: %d\nContent-Type: application/vscode-jsonrpc; charset=utf-8\n\n" % len(body)
    raw, got = read_with_writer(message + body)
    assert got == body and raw == message + body


@pytest.mark.parametrize(
    "data",
    [
        b"Content-Type: x\r\n\r\n{}",  # no Content-Length
        b"Content-Length: 500\r\n\r\n{}",  # input ends inside the body
        b"Content-Length: 99999999999\r\n\r\n",  # absurd length
        b"garbage without any blank line",  # input ends inside the header
    ],
)
def test_unusable_input_is_handed_over_untouched(data):
    raw, body = read_with_writer(data, close=True)
    assert body is None and raw == data


def test_no_early_answer_when_stdin_is_a_file(tmp_path):
    path = tmp_path / "input"
    message = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}}
    path.write_bytes(frame(message))
    read_fd, write_fd = os.pipe()
    with path.open("rb") as stdin:
        try:
            assert early.answer(stdin.fileno(), write_fd) is None
        finally:
            os.close(read_fd)
            os.close(write_fd)
    assert stdin.closed


def test_answer_writes_one_framed_response_and_returns_everything_read():
    params = {"capabilities": {"general": {"positionEncodings": ["utf-32"]}}}
    data = frame({"jsonrpc": "2.0", "id": "a", "method": "initialize", "params": params})
    data += frame({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    in_read, in_write = os.pipe()
    out_read, out_write = os.pipe()
    os.write(in_write, data)
    try:
        result = early.answer(in_read, out_write)
        output = os.read(out_read, 65536)
    finally:
        for fd in (in_read, in_write, out_read, out_write):
            os.close(fd)
    assert result is not None and result.raw == data and result.msg_id == "a"
    header, _, body = output.partition(b"\r\n\r\n")
    assert header == b"Content-Length: %d" % len(body)
    response = json.loads(body)
    assert response == {"jsonrpc": "2.0", "id": "a", "result": result.result}
    assert response["result"]["capabilities"]["positionEncoding"] == "utf-32"
