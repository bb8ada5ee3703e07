"""LSP wiring: :func:`create_server` registers every handler; handlers stay short and delegate."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import selectors
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO

from lsprotocol import types
from pygls.capabilities import get_capability
from pygls.exceptions import FeatureRequestError, JsonRpcInternalError
from pygls.io_ import StdinAsyncReader, StdoutWriter
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path

from fimls import __version__, items, log
from fimls.backend import AuthError, BackendError, BalanceError, RequestError
from fimls.config import Settings, parse_settings, settings_from_change
from fimls.document import UTF16, Document, Snapshot
from fimls.early import COMMANDS, TRIGGER_CHARACTERS, Early
from fimls.engine import MISSING_KEY, Engine, Suggestion
from fimls.notices import Notices
from fimls.privacy import PrivacyGate
from fimls.protocol import ARRIVED, FimlsProtocol, StampedReader, read_messages
from fimls.scheduler import Scheduler

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger(__name__)

_LEVELS = {
    "error": types.MessageType.Error,
    "warning": types.MessageType.Warning,
    "info": types.MessageType.Info,
}


class FimlsServer(LanguageServer):
    """The language server and the state its handlers share."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(
            "fimls",
            __version__,
            protocol_cls=FimlsProtocol,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
        )
        self.transport = transport
        self.documents: dict[str, Document] = {}
        self.scheduler = Scheduler()
        self.notices = Notices(self._show)
        self.encoding = UTF16
        self.snippets = False
        self.markdown = True
        self.as_is = False
        self.init_options: dict[str, Any] = {}
        self.engine: Engine | None = None
        self.shut_down = False
        self.closing: asyncio.Future[None] | None = None
        self.privacy = PrivacyGate(on_problem=self._privacy_problem)
        self.blocked: dict[str, str | None] = {}
        self.early: Early | None = None

    def _start_io_async(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
        """pygls's stdio loop with fimls's more forgiving message reader."""
        assert isinstance(self.protocol, FimlsProtocol)
        self._stop_event = threading.Event()
        stdin = stdin or sys.stdin.buffer
        self.protocol.set_writer(StdoutWriter(stdout or sys.stdout.buffer))

        async def serve() -> None:
            assert isinstance(self.protocol, FimlsProtocol)
            # Tens of thousands of objects from start-up (lsprotocol's classes, pygls) live
            # until exit; leaving them out of garbage collection keeps full collections
            # from pausing a request for ~20 ms.
            gc.freeze()
            early = self.early
            self.protocol.early = early
            reader = await _stdin_reader(stdin, self.thread_pool, early.raw if early else b"")
            assert self._stop_event is not None
            await read_messages(self._stop_event, reader, self.protocol, self.report_server_error)

        try:
            with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
                runner.run(serve())
        except BrokenPipeError:
            logger.error("lost the connection to the client; shutting down")
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            self.shutdown()  # type: ignore[no-untyped-call]

    def report_server_error(self, error: Exception, source: Any) -> None:
        """Answer unreadable messages; log other internal errors instead of popping them up."""
        if isinstance(error, ValueError) and isinstance(self.protocol, FimlsProtocol):
            self.protocol.reject_unparsable(error)
            return
        if source is FeatureRequestError:
            logger.info("request failed: %s", error)
            return
        logger.error("internal error (%s): %s", getattr(source, "__name__", source), error)

    def _privacy_problem(self, message: str) -> None:
        # The gate reports each problem once; a new one replaces the last on screen.
        self.notices.clear("privacy")
        self.notices.notify("privacy", f"fimls: {message}", "warning")

    def _show(self, level: str, message: str) -> None:
        self.window_show_message(types.ShowMessageParams(type=_LEVELS[level], message=message))
        self.window_log_message(types.LogMessageParams(type=_LEVELS[level], message=message))

    # -- configuration ---------------------------------------------------------

    def configure(self, raw: Any) -> Settings:
        """Parse settings, reporting problems in one message; the engine follows."""
        settings, problems = parse_settings(raw)
        log.add_secrets([settings.api_key])
        if problems:
            self.notices.clear("config")
            self.notices.notify("config", "fimls settings: " + "; ".join(problems), "warning")
        self.privacy.set_languages(settings.languages)
        if self.engine is None:
            self.engine = Engine(
                settings,
                transport=self.transport,
                on_error=self.backend_failed,
                on_success=self.backend_ok,
            )
        else:
            self.engine.configure(settings)
            self.notices.clear()
            self.engine.start_model_resolution()
        return settings

    def backend_failed(self, error: BackendError) -> None:
        """One clear message per condition, not one per keystroke."""
        condition = error.kind
        if isinstance(error, RequestError) and error.model_missing:
            condition = "model"
        fatal = isinstance(error, (AuthError, BalanceError)) or condition == "model"
        self.notices.notify(condition, f"fimls: {error}", "error" if fatal else "warning")

    def backend_ok(self) -> None:
        """A success ends transient conditions, so their next occurrence is reported."""
        for condition in ("network", "server", "rate-limit", "protocol"):
            self.notices.clear(condition)

    # -- completion -------------------------------------------------------------

    def snapshot(self, uri: str, position: types.Position) -> Snapshot | None:
        """Capture the cursor context synchronously; ``None`` for unknown URIs or positions."""
        doc = self.documents.get(uri)
        if doc is None or self.engine is None or self.is_blocked(doc):
            return None
        where = doc.index_at(position.line, position.character, self.encoding)
        if where is None:
            return None
        s = self.engine.settings
        return doc.snapshot(
            *where,
            encoding=self.encoding,
            max_prefix=s.max_prefix_chars,
            max_suffix=s.max_suffix_chars,
            anchor=s.prompt_anchor_lines,
        )

    def is_blocked(self, doc: Document) -> bool:
        """Whether the privacy gate forbids sending ``doc`` (asked every time; the gate caches)."""
        reason = self.privacy.check(doc.uri, doc.language_id)
        if reason != self.blocked.get(doc.uri):
            self.blocked[doc.uri] = reason
            if reason:
                logger.info("not completing %s: %s", doc.uri, reason)
        return reason is not None

    async def suggest(self, snap: Snapshot, invoked: bool, kind: str = "inline") -> list[Suggestion]:
        """Run the engine for the newest request on a document; older ones get nothing."""
        assert self.engine is not None
        delay = 0.0 if invoked else self.engine.settings.debounce_ms / 1000
        ticket = self.scheduler.claim(snap.uri, delay, kind, since=ARRIVED.get())
        try:
            suggestions = await self.engine.complete(snap, ticket)
        finally:
            self.scheduler.release(snap.uri, ticket, kind)
        if not suggestions:
            return []
        doc = self.documents.get(snap.uri)
        if doc is None or doc.version != snap.version or ticket.superseded:
            self.engine.stats.stale_dropped += 1
            return []
        return suggestions


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (about a tenth less latency per request),
    unless ``FIMLS_EVENT_LOOP=asyncio``; ``None`` means asyncio's own."""
    if os.environ.get("FIMLS_EVENT_LOOP", "").strip().lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _stdin_reader(stdin: BinaryIO, pool: Any, already_read: bytes = b"") -> Any:
    """Read stdin on the event loop (no thread hop per line) when epoll can watch it; a
    thread reads anything else (files, ``/dev/null``).

    ``already_read`` (bytes :mod:`fimls.early` took from a pipe) comes first.
    """
    try:
        fd = stdin.fileno()
    except (OSError, ValueError):  # not backed by a file descriptor
        return StdinAsyncReader(stdin, pool)
    loop = asyncio.get_running_loop()
    reader = StampedReader(limit=1 << 24)
    if already_read:
        reader.feed_data(already_read)
    if _pollable(fd):
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stdin)
        return reader

    def pump() -> None:
        try:
            while chunk := os.read(fd, 1 << 16):
                loop.call_soon_threadsafe(reader.feed_data, chunk)
        except OSError as error:
            logger.error("cannot read stdin: %s", error)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(reader.feed_eof)

    threading.Thread(target=pump, name="fimls-stdin", daemon=True).start()
    return reader


def _pollable(fd: int) -> bool:
    """Whether the event loop's selector accepts ``fd`` (pipes and sockets; not files or
    ``/dev/null``, which would otherwise fail later, inside the loop, and never be read)."""
    selector = selectors.DefaultSelector()
    try:
        selector.register(fd, selectors.EVENT_READ)
    except (OSError, ValueError):
        return False
    finally:
        selector.close()
    return True


_WARM_URI = "untitled:fimls-warm-up"
_WARM_POSITION = {"line": 0, "character": 1}
_WARM_DOCUMENT = {"textDocument": {"uri": _WARM_URI}, "position": _WARM_POSITION}
_WARM_MESSAGES: list[dict[str, Any]] = [
    {
        "method": types.TEXT_DOCUMENT_DID_CHANGE,
        "params": {
            "textDocument": {"uri": _WARM_URI, "version": 2},
            "contentChanges": [
                {"range": {"start": _WARM_POSITION, "end": _WARM_POSITION}, "text": "x"},
                {"text": "x = 1\n"},
            ],
        },
    },
    {
        "method": types.TEXT_DOCUMENT_INLINE_COMPLETION,
        "id": 0,
        "params": {**_WARM_DOCUMENT, "context": {"triggerKind": 2}},
    },
    {
        "method": types.TEXT_DOCUMENT_COMPLETION,
        "id": 0,
        "params": {**_WARM_DOCUMENT, "context": {"triggerKind": 1}},
    },
    {"method": types.CANCEL_REQUEST, "params": {"id": 0}},
]


def _warm_up(ls: FimlsServer) -> None:
    """Prepare the keystroke path's (de)serialisers while the editor is still starting."""
    snap = Document(_WARM_URI, "x = 1\n").snapshot(
        0, 1, encoding=ls.encoding, max_prefix=99, max_suffix=99, anchor=1
    )
    found = [Suggestion(" = 2", 4)]
    results = [
        items.inline_items(snap, found),
        items.completion_list(snap, found, snippets=ls.snippets, markdown=ls.markdown, as_is=ls.as_is),
    ]
    assert isinstance(ls.protocol, FimlsProtocol)
    try:
        ls.protocol.warm_up(_WARM_MESSAGES, results)
    except Exception as error:  # a cold start is slower, never broken
        logger.debug("warm-up skipped: %s", error)


def create_server(transport: httpx.AsyncBaseTransport | None = None) -> FimlsServer:
    """Build the server and register every handler."""
    server = FimlsServer(transport)

    @server.feature(types.INITIALIZE)
    def initialize(ls: FimlsServer, params: types.InitializeParams) -> None:
        encoding = ls.workspace.position_encoding
        ls.encoding = str(getattr(encoding, "value", encoding) or UTF16)
        ls.snippets = bool(
            get_capability(
                ls.client_capabilities,
                "text_document.completion.completion_item.snippet_support",
                False,
            )
        )
        formats = get_capability(
            ls.client_capabilities, "text_document.completion.completion_item.documentation_format", None
        )
        ls.markdown = formats is not None and types.MarkupKind.Markdown in formats
        modes = get_capability(
            ls.client_capabilities, "text_document.completion.completion_item.insert_text_mode_support", None
        )
        ls.as_is = modes is not None and types.InsertTextMode.AsIs in modes.value_set
        options = params.initialization_options
        roots = [folder.uri for folder in params.workspace_folders or []]
        if params.root_uri and params.root_uri not in roots:
            roots.append(params.root_uri)
        if not roots and params.root_path and (root := from_fs_path(params.root_path)):
            roots.append(root)  # clients that send only the deprecated rootPath
        ls.privacy.set_folders(roots)
        ls.init_options = dict(options) if isinstance(options, dict) else {}
        ls.configure(options)
        client = params.client_info.name if params.client_info else "unknown client"
        logger.info("initialized for %s, position encoding %s", client, ls.encoding)

    @server.feature(types.INITIALIZED)
    def initialized(ls: FimlsServer, _params: types.InitializedParams) -> None:
        assert ls.engine is not None
        _warm_up(ls)
        if ls.engine.client.refusal:
            ls.notices.notify("insecure", f"fimls: {ls.engine.client.refusal}", "error")
            return
        if not ls.engine.client.has_key:
            ls.notices.notify("auth", f"fimls: {ls.engine.key_problem or MISSING_KEY}", "warning")
            return
        task = ls.engine.start_model_resolution()
        task.add_done_callback(
            lambda t: (
                None
                if t.cancelled() or t.exception()
                else ls.window_log_message(
                    types.LogMessageParams(type=types.MessageType.Info, message=f"fimls: model {t.result()}")
                )
            )
        )

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(ls: FimlsServer, params: types.DidChangeConfigurationParams) -> None:
        payload = settings_from_change(params.settings)
        if isinstance(payload, dict) and payload:
            ls.configure({**ls.init_options, **payload})
        elif payload not in (None, {}):
            ls.configure(payload)

    @server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
    def did_change_workspace_folders(ls: FimlsServer, params: types.DidChangeWorkspaceFoldersParams) -> None:
        event = params.event
        ls.privacy.change_folders([f.uri for f in event.added], [f.uri for f in event.removed])

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: FimlsServer, params: types.DidOpenTextDocumentParams) -> None:
        item = params.text_document
        ls.documents[item.uri] = Document(item.uri, item.text, item.version, item.language_id)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: FimlsServer, params: types.DidChangeTextDocumentParams) -> None:
        doc = ls.documents.get(params.text_document.uri)
        if doc is None:
            return
        for change in params.content_changes:
            if isinstance(change, types.TextDocumentContentChangePartial):
                start, end = change.range.start, change.range.end
                doc.apply_change(
                    change.text, (start.line, start.character), (end.line, end.character), ls.encoding
                )
            else:
                doc.apply_change(change.text)
        doc.version = params.text_document.version

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: FimlsServer, params: types.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        ls.documents.pop(uri, None)
        ls.blocked.pop(uri, None)
        ls.scheduler.supersede_all(uri)
        if ls.engine is not None:
            ls.engine.typing.forget(uri)

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(
        ls: FimlsServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList:
        snap = ls.snapshot(params.text_document.uri, params.position)
        if snap is None:
            return types.InlineCompletionList(items=[])
        invoked = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
        return items.inline_items(snap, await ls.suggest(snap, invoked))

    @server.feature(
        types.TEXT_DOCUMENT_COMPLETION,
        types.CompletionOptions(trigger_characters=TRIGGER_CHARACTERS, resolve_provider=False),
    )
    async def completion(ls: FimlsServer, params: types.CompletionParams) -> types.CompletionList:
        snap = ls.snapshot(params.text_document.uri, params.position)
        if snap is None:
            return types.CompletionList(is_incomplete=True, items=[])
        suggestions = await ls.suggest(snap, invoked=False, kind="classic")
        return items.completion_list(
            snap, suggestions, snippets=ls.snippets, markdown=ls.markdown, as_is=ls.as_is
        )

    @server.command(COMMANDS[0])
    def status(ls: FimlsServer, *_args: Any) -> dict[str, Any]:
        assert ls.engine is not None
        return {
            "version": __version__,
            "positionEncoding": ls.encoding,
            "openDocuments": len(ls.documents),
            "pendingRequests": len(ls.scheduler),
            "asyncioTasks": len(asyncio.all_tasks()),
            "eventLoop": type(asyncio.get_running_loop()).__module__.split(".")[0],
            **ls.engine.status(),
            "settings": ls.engine.settings.redacted,
        }

    @server.command(COMMANDS[1])
    async def balance(ls: FimlsServer, *_args: Any) -> dict[str, Any]:
        assert ls.engine is not None
        try:
            result = await ls.engine.client.balance()
        except BackendError as error:
            raise JsonRpcInternalError(f"fimls.balance: {error}") from None
        return {
            "isAvailable": result.is_available,
            "balances": [{"currency": c, "totalBalance": t} for c, t in result.balances],
            "text": result.describe(),
        }

    @server.command(COMMANDS[2])
    async def models(ls: FimlsServer, *_args: Any) -> dict[str, Any]:
        assert ls.engine is not None
        try:
            available = await ls.engine.client.models()
        except BackendError as error:
            raise JsonRpcInternalError(f"fimls.models: {error}") from None
        return {"models": available, "selected": await ls.engine.model()}

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: FimlsServer, *_args: Any) -> None:
        # Synchronous, so an "exit" right behind "shutdown" already sees the flag.
        ls.shut_down = True
        ls.scheduler.supersede_all()
        if ls.engine is not None:
            ls.closing = asyncio.ensure_future(ls.engine.aclose())

    return server
