"""Suggestions in time at real model speed, end to end: early answers from a stream that goes
on in the background, text served from memory after accepting or typing along, speculative
prefetch, and nothing left running after shutdown."""

from __future__ import annotations

import asyncio
import time

from conftest import change, inline, open_doc
from fake_deepseek import Reply
from lsprotocol import types

BODY = "    total = 0\n    for item in items:\n        total += item\n    return total\n"
SLOW = {"chunk_size": 4, "chunk_delay": 0.06}  # about 65 characters a second: a slow model


async def status(client) -> dict:
    return await client.workspace_execute_command_async(types.ExecuteCommandParams(command="fimls.status"))


async def test_an_early_answer_arrives_before_the_stream_ends(start_server, fake):
    fake.default = Reply(text=BODY, **SLOW)
    client = await start_server("vscode", {"earlyAnswerMs": 2000})  # whole lines, not words
    uri = open_doc(client, "def total(items):\n")
    started = time.monotonic()
    [item] = await inline(client, uri, 1, 0)
    took = time.monotonic() - started
    # The first complete line, while most of the answer is still to come.
    assert item.insert_text == "    total = 0"
    [request] = fake.fim_requests()
    assert not request.completed
    assert took < len(BODY) / 4 * 0.06 / 2
    info = await status(client)
    assert info["earlyAnswers"] == 1 and info["inFlight"] == 1


async def test_the_rest_is_served_after_accepting_and_while_typing_along(start_server, fake):
    fake.default = Reply(text=BODY, **SLOW)
    client = await start_server("vscode", {"earlyAnswerMs": 2000})  # whole lines, not words
    uri = open_doc(client, "def total(items):\n")
    [first] = await inline(client, uri, 1, 0)
    assert first.insert_text == "    total = 0"
    await asyncio.sleep(0.5)  # the person reads it, meanwhile the stream goes on
    # Accept it (Tab): one edit inserting the whole suggestion, then the client asks again.
    change(client, uri, 2, (1, 0), (1, 0), first.insert_text)
    [second] = await inline(client, uri, 1, len(first.insert_text))
    assert second.insert_text == "\n    for item in items:"
    # Type along the next line instead of accepting it.
    change(client, uri, 3, (1, 13), (1, 13), "\n    for it")
    [third] = await inline(client, uri, 2, len("    for it"))
    assert third.insert_text == "em in items:"
    assert len(fake.fim_requests()) == 1  # all from the one stream
    info = await status(client)
    assert info["typingThroughHits"] == 2 and info["requestsSent"] == 1


async def test_single_line_answers_come_the_moment_the_line_is_complete(start_server, fake):
    fake.default = Reply(text="compute(a, b) + offset\nnext line", **SLOW)
    client = await start_server("vscode")
    uri = open_doc(client, "x = () + 1\n")
    started = time.monotonic()
    [item] = await inline(client, uri, 0, 5)
    assert item.insert_text == "compute(a, b) + offset"
    # Six chunks of four characters make the line: about 0.36 s, far less than the whole answer.
    assert time.monotonic() - started < 1.0
    assert fake.fim_requests()[0].body["stop"] == ["\n"]


async def test_a_slow_first_line_is_shown_word_by_word_after_the_budget(start_server, fake):
    fake.default = Reply(
        text="result = combine(first_value, second_value, third_value)\n", chunk_size=3, chunk_delay=0.1
    )
    client = await start_server("vscode", {"earlyAnswerMs": 200})
    uri = open_doc(client, "def f():\n    \n")
    [item] = await inline(client, uri, 1, 4)
    assert item.insert_text in ("result =", "result = combine(first_value,")
    assert not fake.fim_requests()[0].completed


async def test_speculative_request_is_made_and_served_on_accept(start_server, fake):
    answers = {"x = ": "compute(1)", "x = compute(1)": " + offset"}
    fake.default = lambda body: Reply(text=answers.get(body["prompt"], "zzz"))
    client = await start_server("vscode", {"prefetch": True, "multiline": "never"})
    uri = open_doc(client, "x = \n")
    [item] = await inline(client, uri, 0, 4)
    assert item.insert_text == "compute(1)"
    # Asked in the background, as if accepted, and marked as speculative on the wire.
    assert await asyncio.to_thread(fake.wait_for, lambda: len(fake.fim_requests()) == 2, 5)
    speculative = fake.fim_requests()[1]
    assert speculative.body["prompt"] == "x = compute(1)" and speculative.body["suffix"] == "\n"
    assert speculative.headers.get("X-Fimls-Speculative") == "1"
    assert "X-Fimls-Speculative" not in fake.fim_requests()[0].headers
    info = await status(client)
    assert info["speculativeRequests"] == 1 and info["requestsSent"] == 1
    # Accepting it: the next suggestion is already there, with no new request.
    assert await asyncio.to_thread(fake.wait_for, lambda: speculative.completed, 5)
    change(client, uri, 2, (0, 4), (0, 4), "compute(1)")
    started = time.monotonic()
    assert [i.insert_text for i in await inline(client, uri, 0, 14)] == [" + offset"]
    assert time.monotonic() - started < 0.3
    info = await status(client)
    assert info["speculativeHits"] == 1
    # ...and the speculation goes on from there: one request ahead.
    assert await asyncio.to_thread(fake.wait_for, lambda: len(fake.fim_requests()) == 3, 5)
    assert fake.fim_requests()[2].body["prompt"] == "x = compute(1) + offset"


async def test_speculation_is_cancelled_when_the_text_leaves_the_suggestion(start_server, fake):
    def reply(body: dict) -> Reply:
        if body["prompt"] == "x = ":
            return Reply(text="compute(1)")
        return Reply(text="never seen", delay=10)  # the speculative request waits

    fake.default = reply
    client = await start_server("vscode", {"prefetch": True, "multiline": "never"})
    uri = open_doc(client, "x = \n")
    assert [i.insert_text for i in await inline(client, uri, 0, 4)] == ["compute(1)"]
    assert await asyncio.to_thread(fake.wait_for, lambda: len(fake.fim_requests()) == 2, 5)
    # Typing along keeps it; typing something else cancels it.
    change(client, uri, 2, (0, 4), (0, 4), "comp")
    assert [i.insert_text for i in await inline(client, uri, 0, 8)] == ["ute(1)"]
    await asyncio.sleep(0.2)
    assert not fake.fim_requests()[1].aborted
    change(client, uri, 3, (0, 8), (0, 8), "X")
    await inline(client, uri, 0, 9)
    assert await asyncio.to_thread(fake.wait_for, lambda: fake.fim_requests()[1].aborted, 3)
    info = await status(client)
    assert info["speculativeHits"] == 0


async def test_no_stream_or_connection_outlives_shutdown(start_server, fake):
    fake.default = Reply(text=BODY * 20, chunk_size=2, chunk_delay=0.05)
    client = await start_server("vscode")
    uri = open_doc(client, "def total(items):\n")
    assert await inline(client, uri, 1, 0)
    info = await status(client)
    assert info["inFlight"] == 1
    await asyncio.wait_for(client.shutdown_async(None), 5)
    assert await asyncio.to_thread(fake.wait_for, lambda: fake.fim_requests()[0].aborted, 3)
    assert await asyncio.to_thread(fake.wait_for, lambda: fake.open_connections() == 0, 3)
    client.exit(None)
    assert await asyncio.wait_for(client._server.wait(), 5) == 0


async def test_superseded_and_cancelled_requests_are_still_answered(start_server, fake):
    fake.default = Reply(text="pass", delay=0.3)
    client = await start_server("vscode", {"debounceMs": 300, "adaptiveDebounce": False})
    uri = open_doc(client, "x = \n")
    first = asyncio.ensure_future(inline(client, uri, 0, 4, invoked=False))
    await asyncio.sleep(0.05)
    change(client, uri, 2, (0, 4), (0, 4), "1")
    second = asyncio.ensure_future(inline(client, uri, 0, 5, invoked=False))
    assert await asyncio.wait_for(first, 1) == []  # superseded: answered at once, empty
    assert [i.insert_text for i in await asyncio.wait_for(second, 3)] == ["pass"]
    assert len(fake.fim_requests()) == 1
