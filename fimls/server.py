"""LSP wiring: :func:`create_server` registers every handler; handlers stay short and delegate."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING, Any, BinaryIO

import attrs
from lsprotocol import types
from pygls.capabilities import get_capability
from pygls.exceptions import FeatureRequestError, JsonRpcInternalError
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path

from fimls import __version__, items, log
from fimls.backends import AuthError, BackendError, BalanceError, RequestError
from fimls.backends.deepseek import DeepSeek
from fimls.config import Settings, from_workspace, load_user_config, parse_settings, settings_from_change
from fimls.context import ContextBuilder
from fimls.document import UTF16, Document, Snapshot
from fimls.engine import Engine, Suggestion
from fimls.notices import Notices
from fimls.privacy import PrivacyGate
from fimls.protocol import FimlsProtocol, Transport
from fimls.scheduler import Scheduler, debounce

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger(__name__)

TRIGGER_CHARACTERS = [".", "(", "[", "{", ",", " ", ":", "=", "\n"]
"""Characters after which classic-completion clients ask for suggestions."""
STATUS, BALANCE, MODELS, RESUME = "fimls.status", "fimls.balance", "fimls.models", "fimls.resume"

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
        self.user_options: dict[str, Any] = {}
        self.init_options: dict[str, Any] = {}
        self.engine: Engine | None = None
        self.shut_down = False
        self.closing: asyncio.Future[None] | None = None
        self.privacy = PrivacyGate(on_problem=self._privacy_problem)
        self.context = ContextBuilder(self.documents, self.privacy)
        self.blocked: dict[str, str | None] = {}
        self.places: dict[str, tuple[str, str]] = {}
        """Each document's workspace-relative path and folder name (found once)."""

    # -- transports ----------------------------------------------------------------

    def _serve(self, main: Any) -> None:
        try:
            asyncio.run(main)
        except BrokenPipeError:
            logger.error("lost the connection to the client; shutting down")
        except (KeyboardInterrupt, SystemExit, asyncio.CancelledError):
            pass
        finally:
            self.shutdown()  # type: ignore[no-untyped-call]

    def _transport(self) -> Transport:
        assert isinstance(self.protocol, FimlsProtocol)
        self._stop_event = threading.Event()
        return Transport(self.protocol, self._stop_event, self.report_server_error)

    def start_io(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
        """Speak LSP on stdin and stdout."""
        self._serve(self._transport().stdio(stdin, stdout, self.thread_pool))

    def start_tcp(self, host: str, port: int) -> None:
        """Speak LSP with the first client that connects to ``host:port``."""
        self._serve(self._transport().tcp(host, port))

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
        message = log.REDACTOR.redact(message)
        self.window_show_message(types.ShowMessageParams(type=_LEVELS[level], message=message))
        self.window_log_message(types.LogMessageParams(type=_LEVELS[level], message=message))

    # -- configuration ---------------------------------------------------------

    def configure(self, workspace: Any = None) -> Settings:
        """Parse the user file, initializationOptions and workspace settings; the engine follows."""
        raw: Any = {**self.user_options, **self.init_options}
        workspace, ignored = from_workspace(workspace, raw)
        if isinstance(workspace, dict):
            raw.update(workspace)
        elif workspace not in (None, {}):
            raw = workspace
        settings, problems = parse_settings(raw)
        log.add_secrets([settings.api_key])
        self.privacy.set_languages(settings.languages)
        self.context.configure(
            open_files=settings.context_open_files,
            recent_edits=settings.context_recent_edits,
            imports=settings.context_imports,
            budget_chars=settings.context_budget_chars,
            prompt_chars=settings.max_prefix_chars,
            suffix_chars=settings.max_suffix_chars,
        )
        self.context.invalidate()
        if self.engine is None:
            self.engine = Engine(
                settings,
                transport=self.transport,
                on_error=self.backend_failed,
                on_success=self.backend_ok,
                on_resume=self.resumed,
            )
        else:
            self.engine.configure(settings)
            self.notices.clear()
            self.engine.start_model_resolution()
        if problems:
            self.notices.notify("config", "fimls settings: " + "; ".join(problems), "warning")
        if ignored:
            self.notices.notify("workspace-settings", "fimls: " + "; ".join(ignored), "warning", sticky=True)
        return settings

    def backend_failed(self, error: BackendError) -> None:
        """One clear message per condition, not one per keystroke."""
        condition = error.kind
        if isinstance(error, RequestError) and error.model_missing:
            condition = "model"
        fatal = isinstance(error, (AuthError, BalanceError)) or condition == "model"
        self.notices.notify(condition, f"fimls: {error}", "error" if fatal else "warning")

    def resumed(self, message: str) -> None:
        """Requests flow again after a pause: say so once; the next failure is news again."""
        for condition in ("auth", "balance", "model", "resumed"):
            self.notices.clear(condition)
        self.notices.notify("resumed", message, "info")

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
        snap = doc.snapshot(
            *where,
            encoding=self.encoding,
            max_prefix=s.max_prefix_chars,
            max_suffix=s.max_suffix_chars,
            anchor=s.prompt_anchor_lines,
        )
        chunks = self.context.chunks_for(uri, snap.line)
        if uri not in self.places:
            self.places[uri] = self.privacy.locate(uri) or ("", "")
        path, repo = self.places[uri]
        return attrs.evolve(snap, context=tuple((c.path, c.text) for c in chunks), path=path, repo=repo)

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
        ticket = self.scheduler.claim(snap.uri, 0.0 if invoked else self.wait_before_asking(snap), kind)
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

    def wait_before_asking(self, snap: Snapshot) -> float:
        """The debounce for a request at ``snap``: adaptive, or the fixed ``debounceMs``."""
        assert self.engine is not None
        settings = self.engine.settings
        upper = settings.debounce_ms / 1000
        if not settings.adaptive_debounce:
            return upper
        keystroke = self.scheduler.keystrokes.get(snap.uri)
        return debounce(keystroke, snap.line_prefix, snap.line_suffix, self.scheduler.rhythm, upper)

    def status(self) -> dict[str, Any]:
        """What ``fimls.status`` reports (never the key)."""
        assert self.engine is not None
        return {
            "version": __version__,
            "positionEncoding": self.encoding,
            "openDocuments": len(self.documents),
            "pendingRequests": len(self.scheduler),
            "asyncioTasks": len(asyncio.all_tasks()),
            "contextPaths": list(self.context.last_paths),
            **self.engine.status(),
            "settings": self.engine.settings.redacted,
        }


def _client_features(ls: FimlsServer) -> None:
    """Note what the client can do with completion items."""
    caps = ls.client_capabilities
    item = "text_document.completion.completion_item"
    ls.snippets = bool(get_capability(caps, f"{item}.snippet_support", False))
    formats = get_capability(caps, f"{item}.documentation_format", None)
    ls.markdown = formats is not None and types.MarkupKind.Markdown in formats
    modes = get_capability(caps, f"{item}.insert_text_mode_support", None)
    ls.as_is = modes is not None and types.InsertTextMode.AsIs in modes.value_set


def create_server(transport: httpx.AsyncBaseTransport | None = None) -> FimlsServer:
    """Build the server and register every handler."""
    server = FimlsServer(transport)

    @server.feature(types.INITIALIZE)
    def initialize(ls: FimlsServer, params: types.InitializeParams) -> None:
        encoding = ls.workspace.position_encoding
        ls.encoding = str(getattr(encoding, "value", encoding) or UTF16)
        _client_features(ls)
        roots = [folder.uri for folder in params.workspace_folders or []]
        if params.root_uri and params.root_uri not in roots:
            roots.append(params.root_uri)
        if not roots and params.root_path and (root := from_fs_path(params.root_path)):
            roots.append(root)  # clients that send only the deprecated rootPath
        ls.privacy.set_folders(roots)
        options = params.initialization_options
        ls.init_options = dict(options) if isinstance(options, dict) else {}
        ls.user_options, problems = load_user_config()
        for problem in problems:
            ls.notices.notify("user-config", f"fimls: {problem}", "warning")
        if options is not None and not isinstance(options, dict):
            ls.configure(options)  # reported as "settings must be an object"
        else:
            ls.configure()
        client = params.client_info.name if params.client_info else "unknown client"
        logger.info("initialized for %s, position encoding %s", client, ls.encoding)

    @server.feature(types.INITIALIZED)
    def initialized(ls: FimlsServer, _params: types.InitializedParams) -> None:
        engine = ls.engine
        assert engine is not None
        if engine.backend.refusal:
            ls.notices.notify("insecure", f"fimls: {engine.backend.refusal}", "error")
            return
        if engine.key_problem:
            ls.notices.notify("auth", f"fimls: {engine.key_problem}", "warning")
            return
        task = engine.start_model_resolution()
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
        if payload not in (None, {}):
            ls.configure(payload)

    @server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
    def did_change_workspace_folders(ls: FimlsServer, params: types.DidChangeWorkspaceFoldersParams) -> None:
        event = params.event
        ls.privacy.change_folders([f.uri for f in event.added], [f.uri for f in event.removed])
        ls.context.invalidate()
        ls.places.clear()

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: FimlsServer, params: types.DidOpenTextDocumentParams) -> None:
        item = params.text_document
        ls.documents[item.uri] = Document(item.uri, item.text, item.version, item.language_id)
        ls.context.opened(item.uri)
        ls.context.viewed(item.uri, 0)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: FimlsServer, params: types.DidChangeTextDocumentParams) -> None:
        doc = ls.documents.get(params.text_document.uri)
        if doc is None:
            return
        ls.scheduler.keystroke(doc.uri, "".join(change.text for change in params.content_changes))
        touched: list[int] = []
        for change in params.content_changes:
            if isinstance(change, types.TextDocumentContentChangePartial):
                start, end = change.range.start, change.range.end
                doc.apply_change(
                    change.text, (start.line, start.character), (end.line, end.character), ls.encoding
                )
                touched += [start.line, start.line + change.text.count("\n")]
            else:
                doc.apply_change(change.text)
                touched += [0, len(doc.lines) - 1]
        doc.version = params.text_document.version
        if touched:
            ls.context.edited(doc.uri, min(touched), max(touched))

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: FimlsServer, params: types.DidSaveTextDocumentParams) -> None:
        ls.context.saved(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: FimlsServer, params: types.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        ls.documents.pop(uri, None)
        ls.blocked.pop(uri, None)
        ls.places.pop(uri, None)
        ls.context.closed(uri)
        ls.scheduler.forget(uri)
        if ls.engine is not None:
            ls.engine.forget(uri)

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

    @server.command(STATUS)
    def status(ls: FimlsServer, *_args: Any) -> dict[str, Any]:
        return ls.status()

    @server.command(BALANCE)
    async def balance(ls: FimlsServer, *_args: Any) -> dict[str, Any]:
        assert ls.engine is not None
        backend = ls.engine.backend
        if not isinstance(backend, DeepSeek):
            raise JsonRpcInternalError(f"fimls.balance: {backend.label} has no balance to show")
        try:
            result = await backend.balance()
        except BackendError as error:
            raise JsonRpcInternalError(f"fimls.balance: {error}") from None
        return {
            "isAvailable": result.is_available,
            "balances": [{"currency": c, "totalBalance": t} for c, t in result.balances],
            "text": result.describe(),
        }

    @server.command(MODELS)
    async def models(ls: FimlsServer, *_args: Any) -> dict[str, Any]:
        assert ls.engine is not None
        try:
            available = await ls.engine.backend.models()
        except BackendError as error:
            raise JsonRpcInternalError(f"fimls.models: {error}") from None
        return {"models": available, "selected": await ls.engine.model()}

    @server.command(RESUME)
    async def resume(ls: FimlsServer, *_args: Any) -> dict[str, Any]:
        assert ls.engine is not None
        await ls.engine.resume_now()
        return ls.status()

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: FimlsServer, *_args: Any) -> None:
        # Synchronous, so an "exit" right behind "shutdown" already sees the flag.
        ls.shut_down = True
        ls.scheduler.supersede_all()
        if ls.engine is not None:
            ls.closing = asyncio.ensure_future(ls.engine.aclose())

    return server
