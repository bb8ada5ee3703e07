"""What pygls leaves to the server: lifecycle answers, resynchronising reads, and a leak workaround.

pygls reads and dispatches messages and answers ``initialize`` from the registered features.
This module adds only what it lacks, for stdio and ``--tcp`` alike (one input path, :func:`serve`):

- **Lifecycle answers the LSP specification prescribes.** Requests before ``initialize`` get
  -32002, a second ``initialize`` and requests after ``shutdown`` get -32600, and notifications
  then are dropped (``exit`` always works). A body that is not JSON gets -32700, JSON that is not
  a request -32600, and params of the wrong shape -32602, instead of being silently dropped.
- **Resynchronisation.** pygls's reader ignores a ``Content-Length`` it cannot parse and then
  misreads the body and the next header as one line, losing the next message too.
  :func:`read_messages` answers the bad header and resynchronises on the next one.
- **A leak.** pygls 2.1 keeps a future for every notification handled by a generator (its
  built-in ``didOpen``/``didChange``/``didClose``) in ``_request_futures`` forever: one per
  keystroke. fimls keeps its own documents, so those three are plain methods here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import threading
from collections.abc import Callable
from typing import Any

from lsprotocol import types
from pygls.exceptions import (
    JsonRpcException,
    JsonRpcInvalidRequest,
    JsonRpcParseError,
    JsonRpcServerNotInitialized,
)
from pygls.io_ import StdinAsyncReader, StdoutWriter
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.language_server import lsp_method

logger = logging.getLogger(__name__)


class _Rejected:
    """A message already answered with an error; nothing more to do."""

    jsonrpc = "rejected"


class FimlsProtocol(LanguageServerProtocol):
    """pygls's protocol with strict lifecycle and error answers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initialize_seen = False

    def send_error(self, msg_id: Any, error: JsonRpcException) -> None:
        """Answer ``msg_id`` (``None`` when unknown) with ``error``."""
        response = error.to_response_error()
        self._send_data(
            {"jsonrpc": "2.0", "id": msg_id, "error": {"code": response.code, "message": response.message}}
        )

    def structure_message(self, data: dict[str, Any]) -> Any:
        """Turn a JSON object into a message; answer shape errors in requests at once."""
        try:
            return super().structure_message(data)
        except JsonRpcException as error:
            if "id" in data and "method" in data:
                self.send_error(data["id"], error)
                return _Rejected()
            if "method" in data:  # a notification: nobody to answer
                logger.warning("dropped malformed %r notification", data.get("method"))
                return _Rejected()
            raise

    def reject_unparsable(self, error: Exception) -> None:
        """Answer a message that could not be read at all."""
        if isinstance(error, json.JSONDecodeError):
            self.send_error(None, JsonRpcParseError(f"invalid JSON: {error.msg}"))
        else:
            self.send_error(None, JsonRpcInvalidRequest("not a JSON-RPC message"))

    def handle_message(self, message: Any) -> None:
        """Apply the LSP lifecycle before pygls dispatches ``message``."""
        if isinstance(message, _Rejected):
            return
        if not hasattr(message, "jsonrpc"):
            msg_id = message.get("id") if isinstance(message, dict) else None
            self.send_error(msg_id, JsonRpcInvalidRequest("not a JSON-RPC 2.0 message"))
            return
        method = getattr(message, "method", None)
        is_request = method is not None and hasattr(message, "id")
        if method == types.EXIT:
            super().handle_message(message)
            return
        if self._shutdown:
            if is_request:
                self.send_error(message.id, JsonRpcInvalidRequest("the server is shut down"))
            return
        if method == types.INITIALIZE:
            if self.initialize_seen:
                self.send_error(message.id, JsonRpcInvalidRequest("initialize may only be sent once"))
                return
            self.initialize_seen = True
        elif method is not None and not self.initialize_seen:
            if is_request:
                self.send_error(message.id, JsonRpcServerNotInitialized("initialize first"))
            return
        super().handle_message(message)

    # Plain methods, not generators (see the module docstring).
    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params: types.DidOpenTextDocumentParams) -> None:
        self._user(types.TEXT_DOCUMENT_DID_OPEN, params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams) -> None:
        self._user(types.TEXT_DOCUMENT_DID_CHANGE, params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: types.DidCloseTextDocumentParams) -> None:
        self._user(types.TEXT_DOCUMENT_DID_CLOSE, params)

    def _user(self, method: str, params: Any) -> None:
        handler = self.fm.features.get(method)
        if handler is not None:
            handler(params)


_CONTENT_LENGTH = re.compile(rb"Content-Length:\s*(\S*)\s*$", re.IGNORECASE)


async def read_messages(
    stop_event: threading.Event,
    reader: Any,
    protocol: FimlsProtocol,
    on_error: Callable[[Exception, type[JsonRpcException]], Any],
) -> None:
    """Read framed messages like pygls does, but answer a bad ``Content-Length`` and
    resynchronise on the next header instead of losing every later message."""
    length = 0
    while not stop_event.is_set():
        try:
            header = await reader.readline()
        except (asyncio.LimitOverrunError, ValueError):
            protocol.send_error(None, JsonRpcParseError("header line too long"))
            continue
        if not header:
            break
        match = _CONTENT_LENGTH.search(header)
        if match:
            value = match.group(1)
            if value.isdigit():
                length = int(value)
            else:
                length = 0
                protocol.send_error(None, JsonRpcParseError("invalid Content-Length header"))
            continue
        if header.strip() or not length:
            continue
        try:
            body = await reader.readexactly(length)
        except asyncio.IncompleteReadError:
            break
        length = 0
        if not body:
            break
        try:
            protocol.handle_message(json.loads(body, object_hook=protocol.structure_message))
        except Exception as error:
            logger.warning("could not handle a message: %s", error)
            on_error(error, JsonRpcException)


class Transport:
    """Where the messages come from: stdio or one TCP client."""

    def __init__(self, protocol: FimlsProtocol, stop_event: threading.Event, on_error: Any) -> None:
        self.protocol = protocol
        self.stop_event = stop_event
        self.on_error = on_error
        self.server: asyncio.Server | None = None

    async def stdio(self, stdin: Any, stdout: Any, pool: Any) -> None:
        """Serve one client on stdin/stdout."""
        self.protocol.set_writer(StdoutWriter(stdout or sys.stdout.buffer))
        reader = StdinAsyncReader(stdin or sys.stdin.buffer, pool)
        await read_messages(self.stop_event, reader, self.protocol, self.on_error)

    async def tcp(self, host: str, port: int) -> None:
        """Serve the first client that connects to ``host:port``; end when it leaves."""
        done = asyncio.get_running_loop().create_future()

        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if self.protocol.writer is not None:  # one client at a time
                writer.close()
                return
            self.protocol.set_writer(writer)
            try:
                await read_messages(self.stop_event, reader, self.protocol, self.on_error)
            finally:
                if not done.done():
                    done.set_result(None)

        self.server = await asyncio.start_server(connection, host, port)
        logger.info("listening on %s", ", ".join(str(s.getsockname()) for s in self.server.sockets))
        async with self.server:
            await done
