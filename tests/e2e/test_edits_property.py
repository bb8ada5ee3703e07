"""Random incremental edits over LSP against a reference model of the text (hypothesis).

One real fimls process per position encoding (utf-8, utf-16, utf-32: the client offers only
that one). Each example opens a fresh document, applies random edits full of the characters
that break naive servers (emoji and other astral characters, CJK, combining marks, ZWJ
sequences, CRLF, lone ``\\r``, ``\\f``, ``\\v``, U+2028/U+2029, ``\\x85``, NUL, BOM) and then
asks for completions. With ``maxPrefixChars``/``maxSuffixChars`` larger than any document,
the prompt and suffix the fake DeepSeek receives are exactly the server's text on either
side of the cursor, which must equal the model's.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import SERVER, TEST_KEY, capabilities, inline, server_env, stop_client
from fake_deepseek import FakeDeepSeek, Reply
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lsprotocol import types
from pytest_lsp import LanguageClient
from pytest_lsp.client import make_test_lsp_client

ENCODINGS = ["utf-8", "utf-16", "utf-32"]
PIECES = [
    "a",
    "Z",
    "0",
    "_",
    " ",
    "\t",
    "(",
    ")",
    '"',
    "\n",
    "\r",
    "\r\n",
    "\n\r",
    "\f",
    "\v",
    "\x1c",
    "\u2028",
    "\u2029",
    "\x85",
    "\x00",
    "\ufeff",
    "😀",
    "👍🏽",
    "👨\u200d👩\u200d👧",
    "𝒳",
    "中",
    "文字",
    "한국어",
    "e\u0301",
    "\u0301",
    "\u200d",
    "é",
    "ß",
]
BREAK = re.compile(r"\r\n|\r|\n")  # LSP line breaks, and only these

text_pieces = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=3)), max_size=8).map("".join)


# -- the reference model -----------------------------------------------------------------------


def units(text: str, encoding: str) -> int:
    if encoding == "utf-8":
        return len(text.encode("utf-8"))
    if encoding == "utf-16":
        return len(text.encode("utf-16-le")) // 2
    return len(text)


def position(text: str, offset: int, encoding: str) -> types.Position:
    """The LSP position of a code-point offset."""
    line, start = 0, 0
    for match in BREAK.finditer(text):
        if match.end() > offset:
            break
        line, start = line + 1, match.end()
    return types.Position(line=line, character=units(text[start:offset], encoding))


def offsets(text: str) -> list[int]:
    """Offsets a position can express: not between the ``\\r`` and ``\\n`` of a CRLF."""
    return [i for i in range(len(text) + 1) if not (0 < i < len(text) and text[i - 1 : i + 1] == "\r\n")]


@st.composite
def edit(draw: Any, text: str) -> tuple[int, int, str] | str:
    """A range replacement (start, end, new text), or rarely a whole new text."""
    if draw(st.integers(0, 19)) == 0:
        return draw(text_pieces)
    valid = offsets(text)
    a, b = sorted(draw(st.sampled_from(valid)) for _ in range(2))
    if draw(st.booleans()):
        b = a  # pure insertions are what typing mostly is
    return a, b, draw(text_pieces)


# -- one server per encoding, driven from sync hypothesis tests --------------------------------


class Session:
    """A fimls process (and a fake DeepSeek) on an event loop of our own."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self.loop = asyncio.new_event_loop()
        self.fake = FakeDeepSeek(api_key=TEST_KEY).start()
        self.fake.default = Reply(text="QQQ")
        self.uris = itertools.count()
        self.client: LanguageClient = self.run(self._start())

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, 30))

    async def _start(self) -> LanguageClient:
        client = make_test_lsp_client()
        await client.start_io(*SERVER, env=server_env(self.fake))
        caps = capabilities("vscode")
        caps.general = types.GeneralClientCapabilities(position_encodings=[self.encoding])
        result = await client.initialize_session(
            types.InitializeParams(
                capabilities=caps,
                initialization_options={
                    "debounceMs": 0,
                    "maxPrefixChars": 1_000_000,
                    "maxSuffixChars": 1_000_000,
                    "cacheSize": 0,
                    "maxRetries": 0,
                    "prefetch": False,
                },
            )
        )
        assert result.capabilities.position_encoding == self.encoding
        return client

    def close(self) -> None:
        try:
            self.run(stop_client(self.client))
        finally:
            self.loop.close()
            self.fake.stop()

    async def ask(self, uri: str, text: str, offset: int) -> tuple[list[Any], dict[str, Any] | None]:
        """Complete at ``offset``; the items, and the FIM body sent (if any)."""
        before = len(self.fake.fim_requests())
        items = await inline(self.client, uri, *astuple(position(text, offset, self.encoding)))
        sent = self.fake.fim_requests()[before:]
        assert len(sent) <= 1
        return items, (sent[0].body if sent else None)


def astuple(pos: types.Position) -> tuple[int, int]:
    return pos.line, pos.character


@pytest.fixture(scope="module", params=ENCODINGS)
def session(request: pytest.FixtureRequest) -> Iterator[Session]:
    live = Session(request.param)
    try:
        yield live
    finally:
        live.close()


async def play(session: Session, initial: str, edits: list[list[tuple[int, int, str] | str]], probe: int):
    client = session.client
    uri = f"file:///prop/{session.encoding}/{next(session.uris)}.txt"
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="plaintext", version=1, text=initial)
        )
    )
    text = initial
    for version, batch in enumerate(edits, start=2):
        changes: list[types.TextDocumentContentChangeEvent] = []
        for change in batch:
            if isinstance(change, str):
                changes.append(types.TextDocumentContentChangeWholeDocument(text=change))
                text = change
                continue
            start, end, new = change
            rng = types.Range(
                start=position(text, start, session.encoding), end=position(text, end, session.encoding)
            )
            changes.append(types.TextDocumentContentChangePartial(range=rng, text=new))
            text = text[:start] + new + text[end:]
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=changes,
            )
        )
    try:
        # At the end of the document a request is always sent: its prompt is the whole text.
        items, body = await session.ask(uri, text, len(text))
        assert isinstance(items, list)
        assert body is not None
        assert body["prompt"] == text
        assert body.get("suffix") in (None, "")
        # Anywhere else every request is answered, and what is sent is the text around the cursor.
        valid = offsets(text)
        offset = valid[probe % len(valid)]
        items, body = await session.ask(uri, text, offset)
        assert isinstance(items, list)
        if body is not None:
            assert body["prompt"] == text[:offset]
            assert (body.get("suffix") or "") == text[offset:]
    finally:
        client.text_document_did_close(
            types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )


@st.composite
def scenario(draw: Any) -> tuple[str, list[list[tuple[int, int, str] | str]], int]:
    initial = draw(st.lists(text_pieces, max_size=8).map("".join))
    text = initial
    batches = []
    for _ in range(draw(st.integers(1, 10))):
        batch = []
        for _ in range(draw(st.integers(1, 3))):
            change = draw(edit(text))
            if isinstance(change, str):
                text = change
            else:
                start, end, new = change
                text = text[:start] + new + text[end:]
            batch.append(change)
        batches.append(batch)
    return initial, batches, draw(st.integers(0, 10_000))


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=scenario())
def test_random_edits_match_the_model(session: Session, case):
    initial, edits, probe = case
    session.run(play(session, initial, edits, probe))


def test_model_positions():
    """The reference model itself: LSP lines break only at \\n, \\r\\n and \\r."""
    text = "a\u2028b\x85c\fd\r\ne😀\rf"
    assert astuple(position(text, text.index("e"), "utf-16")) == (1, 0)
    assert astuple(position(text, text.index("f"), "utf-16")) == (2, 0)
    assert astuple(position(text, text.index("\r"), "utf-8")) == (0, 10)
    assert astuple(position(text, len(text) - 2, "utf-16")) == (1, 3)
    assert astuple(position(text, len(text) - 2, "utf-8")) == (1, 5)
    assert astuple(position(text, len(text) - 2, "utf-32")) == (1, 2)
    assert text.index("\n") not in offsets(text)
