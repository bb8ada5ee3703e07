"""End to end: the real fimls over stdio (and over ``--tcp``) against the fake DeepSeek on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest
from conftest import TEST_KEY, capabilities, change, classic, inline, inline_params, open_doc
from fake_deepseek import Reply
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled

from fimls.document import units

CLIENTS = ["neovim", "vscode", "emacs"]
pytestmark = pytest.mark.tcp_too


@pytest.mark.parametrize(
    ("client_name", "encoding"), [("neovim", "utf-8"), ("vscode", "utf-16"), ("emacs", "utf-32")]
)
async def test_initialize_advertises_both_completions(start_server, client_name, encoding):
    client = await start_server(client_name)
    caps = client.init_result.capabilities
    assert caps.inline_completion_provider is not None
    assert caps.completion_provider is not None and "." in caps.completion_provider.trigger_characters
    assert caps.position_encoding == encoding
    info = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="fimls.status"))
    assert info["positionEncoding"] == encoding


async def test_capabilities_without_inline_client_support(start_server, fake):
    from conftest import SERVER, server_env, stop_client
    from pytest_lsp.client import make_test_lsp_client

    client = make_test_lsp_client()
    await client.start_io(*SERVER, env=server_env(fake))
    try:
        caps = capabilities("neovim")
        assert caps.text_document.inline_completion is None
        result = await client.initialize_session(types.InitializeParams(capabilities=caps))
        assert result.capabilities.inline_completion_provider is not None
        assert result.capabilities.completion_provider is not None
        assert result.capabilities.position_encoding == "utf-8"
        assert result.capabilities.text_document_sync.change == types.TextDocumentSyncKind.Incremental
    finally:
        await stop_client(client)


@pytest.mark.parametrize("client_name", CLIENTS)
async def test_inline_completion_end_to_end(start_server, fake, client_name):
    fake.default = Reply(text="a + b")
    client = await start_server(client_name)
    uri = open_doc(client, "def add(a, b):\n    return \n\nprint(add(1, 2))\n")
    items = await inline(client, uri, 1, 11)
    assert [item.insert_text for item in items] == ["a + b"]
    assert items[0].range == types.Range(
        start=types.Position(line=1, character=11), end=types.Position(line=1, character=11)
    )
    [request] = fake.fim_requests()
    assert request.authorized and request.path == "/beta/completions"
    body = request.body
    assert body["prompt"] == "def add(a, b):\n    return "
    assert body["suffix"] == "\n\nprint(add(1, 2))\n"
    assert body["model"] == "deepseek-flash"
    assert body["stream"] is True and body["max_tokens"] == 256
    assert len(body["stop"]) <= 16


@pytest.mark.parametrize("client_name", CLIENTS)
async def test_positions_follow_the_negotiated_encoding(start_server, fake, client_name):
    fake.default = Reply(text=" + tail")
    client = await start_server(client_name)
    line = "s = 'é😀中' "
    uri = open_doc(client, f"x = 1\r\n{line}\r\ny = 2\f\u2028z\n")
    encoding = (
        await client.workspace_execute_command_async(types.ExecuteCommandParams(command="fimls.status"))
    )["positionEncoding"]
    column = units(line, encoding)
    items = await inline(client, uri, 1, column)
    assert items and items[0].range.start == types.Position(line=1, character=column)
    body = fake.fim_requests()[-1].body
    assert body["prompt"] == f"x = 1\r\n{line}"
    assert body["suffix"] == "\r\ny = 2\f\u2028z\n"


async def test_many_incremental_edits_with_unusual_text(start_server, fake):
    fake.default = Reply(text="done")
    client = await start_server("vscode")
    text = "a\r\nb\n"
    uri = open_doc(client, text)
    model = text
    version = 1
    # Each edit is (line, utf-16 char) start/end plus new text; the model is edited alike.
    edits = [
        ((0, 1), (0, 1), "😀"),
        ((0, 3), (0, 3), "中\f"),
        ((1, 0), (1, 1), "\u2028B"),
        ((0, 0), (0, 0), "é\r"),
        ((1, 0), (1, 0), "\n"),  # joins "\r" and "\n" into one CRLF break
        ((2, 2), (2, 2), "x"),
    ]
    for start, end, new in edits:
        version += 1
        change(client, uri, version, start, end, new)
    model = "é\r\na😀中\f\r\n\u2028Bx\n"
    # Ask at the end of "\u2028Bx" (line 2, utf-16 column 3): the prompt is the model's text.
    items = await inline(client, uri, 2, 3)
    assert items
    request = fake.fim_requests()[-1].body
    assert request["prompt"] == model[: model.index("x") + 1]
    assert request["suffix"] == "\n"


async def test_closers_after_the_cursor_are_replaced(start_server, fake):
    fake.default = Reply(text='"hello")')
    client = await start_server("vscode")
    uri = open_doc(client, "print()\n")
    [item] = await inline(client, uri, 0, 6)
    assert item.insert_text == '"hello")'
    assert item.range.start.character == 6 and item.range.end.character == 7


async def test_skip_inside_a_word_sends_nothing(start_server, fake):
    client = await start_server("vscode")
    uri = open_doc(client, "value = other\n")
    assert await inline(client, uri, 0, 9) == []
    assert fake.fim_requests() == []


async def test_unknown_uri_and_out_of_range_positions(start_server, fake):
    client = await start_server("vscode")
    assert await inline(client, "file:///nowhere/never-opened.py", 0, 0) == []
    uri = open_doc(client, "x = 1\n")
    assert await inline(client, uri, 99, 0) == []
    fake.default = Reply(text="  # note")
    items = await inline(client, uri, 0, 500)  # clamps to the end of the line
    assert items and items[0].range.start.character == 5
    result = await classic(client, uri, 50, 3)
    assert not result.items and result.is_incomplete


async def test_classic_completion_snippet_client(start_server, fake):
    fake.default = Reply(text="urn {'cost': $5, 'path': 'C:\\\\x'}\n    # done")
    client = await start_server("neovim", {"multiline": "always"})
    uri = open_doc(client, "def f():\n    ret\n")
    result = await classic(client, uri, 1, 7)
    assert result.is_incomplete
    [item] = result.items
    assert item.insert_text_format == types.InsertTextFormat.Snippet
    assert item.insert_text_mode == types.InsertTextMode.AsIs
    assert item.label == "return {'cost': $5, 'path': 'C:\\\\x'} …"
    assert item.filter_text.startswith("ret")
    edit = item.text_edit
    assert edit.range.start == types.Position(line=1, character=4)
    assert edit.range.end == types.Position(line=1, character=7)
    # Neovim 0.11 re-indents snippet lines after the first, so fimls sends them unindented.
    assert edit.new_text == "return {'cost': \\$5, 'path': 'C:\\\\\\\\x'\\}\n# done"


async def test_classic_completion_plain_text_client(start_server, fake):
    fake.default = Reply(text="(a, b)")
    caps = capabilities("emacs")
    caps.text_document.completion.completion_item.snippet_support = False
    client = await start_server(caps)
    uri = open_doc(client, "中 = max\n")
    [item] = (await classic(client, uri, 0, 7)).items
    assert item.insert_text_format == types.InsertTextFormat.PlainText
    assert item.text_edit.new_text == "max(a, b)"
    assert item.text_edit.range.start.character == 4  # utf-32 columns for Emacs 29
    assert item.label == "max(a, b)"


async def test_cancelled_request_is_answered_at_once_and_its_stream_kept_until_the_text_diverges(
    start_server, fake
):
    """The client cancels on every keystroke: the answer may still serve the person typing along,
    so the stream goes on until the document leaves it (then it is aborted)."""
    fake.default = Reply(text="slow", delay=10)
    client = await start_server("vscode")
    uri = open_doc(client, "x = \n")
    future = asyncio.ensure_future(
        client.protocol.send_request_async(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, 0, 4), msg_id="slow-1"
        )
    )
    assert await asyncio.to_thread(fake.wait_for, lambda: len(fake.fim_requests()) == 1, 5)
    started = asyncio.get_running_loop().time()
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="slow-1"))
    with pytest.raises(JsonRpcRequestCancelled):
        await future
    assert asyncio.get_running_loop().time() - started < 1.0
    await asyncio.sleep(0.3)
    assert not fake.fim_requests()[0].aborted
    fake.default = Reply(text="other")
    change(client, uri, 2, (0, 4), (0, 4), "q")  # "slow" does not start with "q"
    assert [i.insert_text for i in await inline(client, uri, 0, 5)] == ["other"]
    assert await asyncio.to_thread(fake.wait_for, lambda: fake.fim_requests()[0].aborted, 3)


async def test_superseded_request_in_debounce_is_answered_empty_and_never_sent(start_server, fake):
    fake.default = Reply(text="a + b")
    client = await start_server("vscode", {"debounceMs": 400})
    uri = open_doc(client, "x = \ny = \n")
    first = asyncio.ensure_future(inline(client, uri, 0, 4, invoked=False))
    await asyncio.sleep(0.05)
    second = asyncio.ensure_future(inline(client, uri, 1, 4, invoked=False))
    done_first = await asyncio.wait_for(first, 0.3)  # answered at once, not after the debounce
    assert done_first == []
    assert [i.insert_text for i in await second] == ["a + b"]
    assert len(fake.fim_requests()) == 1
    assert fake.fim_requests()[0].body["prompt"] == "x = \ny = "


async def test_superseded_in_flight_request_is_cancelled(start_server, fake):
    fake.script.append(Reply(text="old", delay=5))
    fake.default = Reply(text="new")
    client = await start_server("vscode")
    uri = open_doc(client, "x = \ny = \n")
    first = asyncio.ensure_future(inline(client, uri, 0, 4, invoked=False))
    assert await asyncio.to_thread(fake.wait_for, lambda: len(fake.fim_requests()) == 1, 5)
    second = await inline(client, uri, 1, 4, invoked=False)
    assert [i.insert_text for i in second] == ["new"]
    assert await asyncio.wait_for(first, 1) == []
    assert await asyncio.to_thread(fake.wait_for, lambda: fake.fim_requests()[0].aborted, 3)


async def test_identical_requests_share_one_backend_call(start_server, fake):
    fake.default = Reply(text="shared", delay=0.3)
    one = await start_server("vscode")
    uri = open_doc(one, "x = \n")
    # Two documents with the same text produce the same request: one call serves both.
    uri2 = open_doc(one, "x = \n", uri="file:///tmp/other.py")
    results = await asyncio.gather(inline(one, uri, 0, 4), inline(one, uri2, 0, 4))
    assert [[i.insert_text for i in r] for r in results] == [["shared"], ["shared"]]
    assert len(fake.fim_requests()) == 1
    status = await one.workspace_execute_command_async(types.ExecuteCommandParams(command="fimls.status"))
    assert status["sharedInFlight"] == 1


async def test_typing_through_needs_no_request(start_server, fake):
    fake.default = Reply(text="return a + b")
    client = await start_server("vscode")
    uri = open_doc(client, "def add(a, b):\n    \n")
    assert [i.insert_text for i in await inline(client, uri, 1, 4)] == ["return a + b"]
    for version, ch in enumerate("ret", start=2):
        change(client, uri, version, (1, 4 + version - 2), (1, 4 + version - 2), ch)
        items = await inline(client, uri, 1, 5 + version - 2, invoked=False)
        assert [i.insert_text for i in items] == ["return a + b"[version - 1 :]]
    assert len(fake.fim_requests()) == 1
    status = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="fimls.status"))
    assert status["typingThroughHits"] == 3 and status["requestsSent"] == 1


async def test_cache_serves_repeated_requests(start_server, fake):
    fake.default = Reply(text="cached")
    client = await start_server("vscode")
    uri = open_doc(client, "x = \ny = \n")
    assert [i.insert_text for i in await inline(client, uri, 0, 4)] == ["cached"]
    assert [i.insert_text for i in await inline(client, uri, 1, 4)] == ["cached"]
    # Another document with the same text makes the same request as the first.
    other = open_doc(client, "x = \ny = \n", uri="file:///tmp/copy.py")
    assert [i.insert_text for i in await inline(client, other, 0, 4)] == ["cached"]
    assert len(fake.fim_requests()) == 2
    status = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="fimls.status"))
    assert status["cacheHits"] == 1


async def test_asking_again_where_a_suggestion_is_shown_needs_no_request(start_server, fake):
    fake.default = Reply(text="shown")
    client = await start_server("vscode")
    uri = open_doc(client, "x = \n")
    for _ in range(3):
        assert [i.insert_text for i in await inline(client, uri, 0, 4)] == ["shown"]
    assert len(fake.fim_requests()) == 1


async def test_stale_result_is_dropped(start_server, fake):
    fake.default = Reply(text="late", delay=0.5)
    client = await start_server("vscode")
    uri = open_doc(client, "x = \nother\n")
    pending = asyncio.ensure_future(inline(client, uri, 0, 4))
    assert await asyncio.to_thread(fake.wait_for, lambda: len(fake.fim_requests()) == 1, 5)
    change(client, uri, 2, (1, 0), (1, 0), "edited ")
    assert await pending == []
    status = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="fimls.status"))
    assert status["staleDropped"] == 1


async def test_streaming_single_line_stops_at_the_line(start_server, fake):
    fake.default = Reply(text="first + line\nsecond line\nthird", chunk_size=3, chunk_delay=0.05)
    client = await start_server("vscode")
    uri = open_doc(client, "x = () + 1\n")
    [item] = await inline(client, uri, 0, 5)
    assert item.insert_text == "first + line"
    assert fake.fim_requests()[0].body["stop"] == ["\n"]


async def test_multi_line_stream_closed_once_out_of_scope(start_server, fake):
    fake.default = Reply(
        text="\n    return 1\nprint(other())\n" + "x = 1\n" * 40, chunk_size=5, chunk_delay=0.02
    )
    client = await start_server("vscode", {"multiline": "always"})
    uri = open_doc(client, "def f():\n", language="python")
    [item] = await inline(client, uri, 0, 8)
    assert item.insert_text == "\n    return 1"
    assert await asyncio.to_thread(fake.wait_for, lambda: fake.fim_requests()[0].aborted, 3)


async def test_non_streaming_with_leading_blank_lines(start_server, fake):
    fake.default = Reply(text="ok", delay=0.3)
    client = await start_server("vscode", {"stream": False})
    uri = open_doc(client, "x = \n")
    assert [i.insert_text for i in await inline(client, uri, 0, 4)] == ["ok"]
    assert fake.fim_requests()[0].body["stream"] is False


@pytest.mark.parametrize("reason", ["content_filter", "insufficient_system_resource"])
async def test_filtered_answers_give_nothing(start_server, fake, reason):
    fake.default = Reply(text="something", finish_reason=reason)
    client = await start_server("vscode", {"stream": False})
    uri = open_doc(client, "x = \n")
    assert await inline(client, uri, 0, 4) == []


async def test_num_suggestions(start_server, fake):
    answers = iter(["one", "two", "one"])
    fake.default = lambda body: Reply(text=next(answers))
    client = await start_server("vscode", {"numSuggestions": 3})
    uri = open_doc(client, "x = \n")
    items = await inline(client, uri, 0, 4)
    assert sorted(i.insert_text for i in items) == ["one", "two"]
    assert len(fake.fim_requests()) == 3


async def test_model_is_resolved_from_the_model_list(start_server, fake):
    fake.models = ["deepseek-reasoner", "deepseek-v4-flash", "deepseek-chat"]
    fake.default = Reply(text="1")
    client = await start_server("vscode")
    uri = open_doc(client, "x = \n")
    await inline(client, uri, 0, 4)
    assert fake.fim_requests()[0].body["model"] == "deepseek-v4-flash"
    models = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="fimls.models"))
    assert models == {"models": fake.models, "selected": "deepseek-v4-flash"}


async def test_configuration_change_applies(start_server, fake):
    fake.default = Reply(text="1")
    client = await start_server("vscode")
    uri = open_doc(client, "x = \n")
    await inline(client, uri, 0, 4)
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"fimls": {"model": "deepseek-chat", "maxTokens": 33}})
    )
    change(client, uri, 2, (0, 4), (0, 4), " ")
    await inline(client, uri, 0, 5)
    first, second = fake.fim_requests()
    assert (first.body["model"], first.body["max_tokens"]) == ("deepseek-flash", 256)
    assert (second.body["model"], second.body["max_tokens"]) == ("deepseek-chat", 33)


async def test_bad_settings_give_one_message_and_defaults(start_server, fake):
    fake.default = Reply(text="1")
    client = await start_server("vscode", {"maxTokens": "lots", "debounceMs": 0, "colour": 1})
    uri = open_doc(client, "x = \n")
    await inline(client, uri, 0, 4)
    warnings = [m.message for m in client.messages if "settings" in m.message]
    assert len(warnings) == 1
    assert "maxTokens" in warnings[0] and "colour" in warnings[0]
    assert fake.fim_requests()[0].body["max_tokens"] == 256


async def test_status_balance_and_no_key_leak(start_server, fake):
    client = await start_server("vscode")
    status = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="fimls.status"))
    assert status["backend"] == "deepseek" and status["baseUrl"] == fake.url and status["apiKey"] == "set"
    for field in (
        "requestsSent",
        "cacheHits",
        "typingThroughHits",
        "promptTokens",
        "completionTokens",
        "promptCacheHitTokens",
        "costUsd",
        "lastError",
    ):
        assert field in status
    assert all("_" not in key for key in status), "status keys are camelCase"
    assert TEST_KEY not in repr(status)
    balance = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="fimls.balance")
    )
    assert balance["isAvailable"] is True and balance["text"] == "12.34 USD (available)"


async def test_prompt_cache_usage_is_recorded(start_server, fake):
    fake.default = Reply(text="z")
    client = await start_server("vscode")
    body = "".join(f"line_{i} = {i} * {i}\n" for i in range(200))
    uri = open_doc(client, body + "x = \n")
    await inline(client, uri, 200, 4)
    change(client, uri, 2, (200, 4), (200, 4), "1")
    await inline(client, uri, 200, 5)
    status = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="fimls.status"))
    assert status["promptCacheHitTokens"] > 0
    assert status["promptCacheHitShare"] > 0.4
    assert status["costUsd"] > 0
    first, second = fake.fim_requests()
    assert second.body["prompt"].startswith(first.body["prompt"][:-1])


async def test_streamed_requests_reuse_one_connection(start_server, fake):
    fake.default = Reply(text="1")
    client = await start_server("vscode")
    uri = open_doc(client, "x = \n")
    for version in range(2, 6):
        change(client, uri, version, (0, 4), (0, 4), "a")
        assert await inline(client, uri, 0, 4 + version - 1)
    status = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="fimls.status"))
    assert status["requestsSent"] == 4
    assert fake.open_connections() == 1  # the fake saw one kept-alive connection
    assert status["inFlight"] == 0 and status["pendingRequests"] == 0


async def test_inline_and_classic_for_one_keystroke_share_one_call(start_server, fake):
    fake.default = Reply(text="value", delay=0.2)
    client = await start_server("vscode", {"debounceMs": 50})
    uri = open_doc(client, "x = \n")
    inline_items, classic_list = await asyncio.gather(
        inline(client, uri, 0, 4, invoked=False), classic(client, uri, 0, 4)
    )
    assert [i.insert_text for i in inline_items] == ["value"]
    assert [i.text_edit.new_text for i in classic_list.items] == ["value"]
    assert len(fake.fim_requests()) == 1
