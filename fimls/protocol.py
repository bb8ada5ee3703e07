"""JSON-RPC and LSP lifecycle rules pygls leaves to the server, and the document hooks.

- Requests before ``initialize`` get -32002, a second ``initialize`` and requests after
  ``shutdown`` get -32600; notifications then are dropped (``exit`` always works).
- A body that is not JSON gets -32700, JSON that is not a request -32600, and params
  of the wrong shape -32602, each answered instead of silently dropped.
- Documents live in fimls's own LSP-correct store, not in pygls's workspace.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Generator, Iterable
from contextvars import ContextVar
from typing import Any, SupportsIndex

from lsprotocol import types
from pygls.exceptions import (
    JsonRpcException,
    JsonRpcInvalidRequest,
    JsonRpcParseError,
    JsonRpcServerNotInitialized,
)
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.language_server import lsp_method

from fimls import log
from fimls.early import Early, choose_encoding

logger = logging.getLogger(__name__)


class _Rejected:
    """A message already answered with an error; nothing more to do."""

    jsonrpc = "rejected"


class FimlsProtocol(LanguageServerProtocol):
    """pygls's protocol with strict lifecycle and error answers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initialize_seen = False
        self.early: Early | None = None

    # -- the initialize answered before the server started (fimls.early) ------------

    def _early_id(self, data: Any) -> bool:
        early = self.early
        if early is None or early.msg_id is None:
            return False
        if isinstance(data, dict):
            return "method" not in data and data.get("id") == early.msg_id
        return not hasattr(data, "method") and getattr(data, "id", None) == early.msg_id

    def _send_data(self, data: Any) -> None:
        """Send ``data``, except the second answer to an ``initialize`` answered early."""
        if self._early_id(data):
            assert self.early is not None
            sent, self.early = self.early.result, None
            computed = json.loads(json.dumps(data, default=self._serialize_message))
            if computed.get("result") != sent:
                logger.warning(
                    "the early initialize answer differs from the server's: sent %s, computed %s",
                    json.dumps(sent, sort_keys=True),
                    json.dumps(computed.get("result", computed.get("error")), sort_keys=True),
                )
            return
        super()._send_data(data)

    # -- errors the spec prescribes -----------------------------------------------

    def send_error(self, msg_id: Any, error: JsonRpcException) -> None:
        """Answer ``msg_id`` (``None`` when unknown) with ``error``."""
        response = error.to_response_error()
        self._send_data(
            {
                "jsonrpc": "2.0",
                "id": msg_id,
                "error": {"code": response.code, "message": response.message},
            }
        )

    def structure_message(self, data: dict[str, Any]) -> Any:
        """Turn a JSON object into a message; answer shape errors in requests at once."""
        try:
            return super().structure_message(data)
        except JsonRpcException as error:
            if data.get("method") == types.INITIALIZE and self._early_id({"id": data.get("id")}):
                return self._structure_early_initialize(data)
            if "id" in data and "method" in data:
                self.send_error(data["id"], error)
                return _Rejected()
            if "method" in data:  # a notification: nobody to answer
                logger.warning("dropped malformed %r notification", data.get("method"))
                return _Rejected()
            raise

    def _structure_early_initialize(self, data: dict[str, Any]) -> Any:
        """An ``initialize`` already answered but not valid LSP deep down: keep what fimls
        uses (encoding, root, options) and drop the rest of the client's capabilities."""
        params = data["params"]
        encoding = choose_encoding(params["capabilities"])
        logger.warning("the client's initialize capabilities do not follow LSP; ignoring them")
        kept = {k: params[k] for k in ("processId", "rootUri", "rootPath") if k in params}
        options = params.get("initializationOptions")
        plain = {
            **kept,
            "initializationOptions": options,
            "capabilities": {"general": {"positionEncodings": [encoding]}},
        }
        return super().structure_message({**data, "params": plain})

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

    # -- warm-up -------------------------------------------------------------------

    def warm_up(self, samples: Iterable[dict[str, Any]], results: Iterable[Any]) -> None:
        """Read ``samples`` and write ``results`` without sending anything, so cattrs builds
        its converters for these messages now rather than on the first keystroke."""
        samples, results = list(samples), list(results)
        # Twice: registering a hook clears cattrs's dispatch cache, so a converter built
        # early in the first round may have to be looked up again.
        for _ in range(2):
            for sample in samples:
                message_type = self.get_message_type(sample["method"])
                if message_type is not None:
                    self._converter.structure({"jsonrpc": "2.0", **sample}, message_type)
            for result in results:
                json.dumps({"jsonrpc": "2.0", "id": 0, "result": result}, default=self._serialize_message)

    # -- lifecycle and documents ----------------------------------------------------

    @lsp_method(types.INITIALIZE)
    def lsp_initialize(self, params: types.InitializeParams) -> Generator[Any, Any, types.InitializeResult]:
        options = params.initialization_options
        if isinstance(options, dict) and isinstance(options.get("apiKey"), str):
            log.add_secrets([options["apiKey"]])
        return (yield from super().lsp_initialize(params))

    # Plain methods, not generators: pygls keeps a future per generator-handled
    # notification forever, which would leak on every keystroke.
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


ARRIVED: ContextVar[float | None] = ContextVar("fimls_arrived", default=None)
"""When the bytes of the message being handled arrived (``time.monotonic``); request
tasks inherit it, so a debounce counts from the keystroke, not from when it was parsed."""


class StampedReader(asyncio.StreamReader):
    """A stream reader that notes when data last arrived."""

    arrived: float | None = None

    def feed_data(self, data: Iterable[SupportsIndex]) -> None:
        self.arrived = time.monotonic()
        super().feed_data(data)


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
        # The newest bytes arrived no earlier than this message's last byte.
        token = ARRIVED.set(getattr(reader, "arrived", None) or time.monotonic())
        try:
            message = json.loads(body, object_hook=protocol.structure_message)
            protocol.handle_message(message)
        except Exception as error:
            logger.warning("could not handle a message: %s", error)
            on_error(error, JsonRpcException)
        finally:
            ARRIVED.reset(token)
