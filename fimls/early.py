"""Answer ``initialize`` while the rest of fimls is still loading.

Importing pygls and lsprotocol takes a few hundred milliseconds (lsprotocol builds about six
hundred classes), and an editor sends nothing else until ``initialize`` is answered.  So the
``fimls`` command first reads that one message with the standard library alone, answers it
by the same rules pygls applies to fimls's handlers, and only then imports the server.  The
server replays the message to set itself up, checks that its own answer matches the one sent,
and reads on from the bytes kept here.  Anything this module is unsure about (other methods,
odd framing, params of the wrong shape) is left to the server untouched.
"""

from __future__ import annotations

import json
import os
import re
import stat
from typing import Any

from fimls import __version__

TRIGGER_CHARACTERS = [".", "(", "[", "{", ",", " ", ":", "=", "\n"]
"""Characters after which classic-completion clients ask for suggestions."""
COMMANDS = ["fimls.status", "fimls.balance", "fimls.models"]
"""``workspace/executeCommand`` commands the server registers, in registration order."""
ENCODINGS = ("utf-8", "utf-16", "utf-32")
"""Position encodings fimls supports; UTF-16 is LSP's default."""

MAX_HEADER = 64 * 1024
MAX_BODY = 16 * 1024 * 1024
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_CONTENT_LENGTH = re.compile(rb"(?im)^content-length:[ \t]*(\d+)[ \t]*\r?$")


class Early:
    """What happened before the server started: bytes read and, if sent, the answer."""

    def __init__(self, raw: bytes, msg_id: int | str | None = None, result: Any = None) -> None:
        self.raw = raw
        """Every byte read from stdin so far; the server reads these first."""
        self.msg_id = msg_id
        """The id of the ``initialize`` request answered here (``None``: not answered)."""
        self.result = result
        """The ``InitializeResult`` sent, as JSON."""


def choose_encoding(capabilities: dict[str, Any]) -> str:
    """The client's first listed encoding that fimls supports, else UTF-16."""
    general = capabilities.get("general")
    listed = general.get("positionEncodings") if isinstance(general, dict) else None
    for name in listed if isinstance(listed, list) else ():
        if name in ENCODINGS:
            return str(name)
    return "utf-16"


def initialize_result(params: dict[str, Any]) -> dict[str, Any]:
    """The ``InitializeResult`` the server gives for ``params`` (a valid ``InitializeParams``)."""
    capabilities = params["capabilities"]
    text_document = capabilities.get("textDocument")
    sync = text_document.get("synchronization") if isinstance(text_document, dict) else None
    sync = sync if isinstance(sync, dict) else {}
    document_sync: dict[str, Any] = {"openClose": True, "change": 2}
    # fimls does not handle willSave: the flag is false when the client mentions it at all.
    for name in ("willSave", "willSaveWaitUntil"):
        if sync.get(name) is not None:
            document_sync[name] = False
    document_sync["save"] = False
    return {
        "capabilities": {
            "positionEncoding": choose_encoding(capabilities),
            "textDocumentSync": document_sync,
            "completionProvider": {"triggerCharacters": TRIGGER_CHARACTERS, "resolveProvider": False},
            "executeCommandProvider": {"commands": COMMANDS},
            "inlineCompletionProvider": {},
            "workspace": {
                "workspaceFolders": {"supported": True, "changeNotifications": True},
                "fileOperations": {},
            },
        },
        "serverInfo": {"name": "fimls", "version": __version__},
    }


def answerable(message: Any) -> bool:
    """Whether ``message`` is an ``initialize`` request plain enough to answer here."""
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return False
    if message.get("method") != "initialize":
        return False
    msg_id = message.get("id")
    if isinstance(msg_id, bool) or not isinstance(msg_id, (int, str)):
        return False
    params = message.get("params")
    if not isinstance(params, dict) or not isinstance(params.get("capabilities"), dict):
        return False
    process_id = params.get("processId")
    if process_id is not None and (isinstance(process_id, bool) or not isinstance(process_id, int)):
        return False
    return all(params.get(key) is None or isinstance(params[key], str) for key in ("rootUri", "rootPath"))


def read_first_message(fd: int) -> tuple[bytes, bytes | None]:
    """Read from ``fd`` until one framed message is complete: (all bytes read, its body).

    The body is ``None`` when the framing is not what LSP prescribes or the input ends first.
    """
    data = b""
    while True:
        blank = _BLANK_LINE.search(data)
        if blank is not None:
            match = _CONTENT_LENGTH.search(data[: blank.start()])
            if match is None or int(match.group(1)) > MAX_BODY:
                return data, None
            end = blank.end() + int(match.group(1))
            while len(data) < end:
                chunk = os.read(fd, max(end - len(data), 65536))
                if not chunk:
                    return data, None
                data += chunk
            return data, data[blank.end() : end]
        if len(data) > MAX_HEADER:
            return data, None
        chunk = os.read(fd, 65536)
        if not chunk:
            return data, None
        data += chunk


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd``."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def answer(stdin: int, stdout: int) -> Early | None:
    """Read the first message and answer it if it is ``initialize``; ``None`` if stdin is
    not a pipe or socket (the server then reads everything itself)."""
    try:
        mode = os.fstat(stdin).st_mode
    except OSError:
        return None
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        return None
    raw, body = read_first_message(stdin)
    if body is None:
        return Early(raw)
    try:
        message = json.loads(body)
    except ValueError:
        return Early(raw)
    if not answerable(message):
        return Early(raw)
    result = initialize_result(message["params"])
    response = json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result}).encode()
    write_all(stdout, b"Content-Length: %d\r\n\r\n" % len(response) + response)
    return Early(raw, message["id"], result)
