"""Backend failures become empty results plus one clear, rate-limited message."""

from __future__ import annotations

import asyncio

import pytest
from conftest import TEST_KEY, change, inline, open_doc, server_env
from fake_deepseek import Reply
from lsprotocol import types


def shown(client) -> list[str]:
    return [m.message for m in client.messages]


async def type_and_ask(client, uri: str, times: int) -> list[list[types.InlineCompletionItem]]:
    """Type a character and ask, ``times`` times, like a user typing on."""
    results = []
    for i in range(times):
        change(client, uri, i + 2, (0, 4 + i), (0, 4 + i), "a")
        results.append(await inline(client, uri, 0, 5 + i))
    return results


@pytest.mark.parametrize(
    ("status", "words", "requests_after_three"),
    [
        (401, "rejected the API key (401)", 1),  # fatal: no further requests until settings change
        (402, "insufficient balance", 1),
        (400, "rejected the request (400)", 3),
        (422, "rejected the request (422)", 3),
    ],
)
async def test_client_errors(start_server, fake, status, words, requests_after_three):
    fake.default = Reply(status=status, error_message="something is wrong")
    client = await start_server("vscode", {"maxRetries": 2})
    uri = open_doc(client, "x = \n")
    results = await type_and_ask(client, uri, 3)
    assert results == [[], [], []]
    assert len(fake.fim_requests()) == requests_after_three  # and never retried
    await asyncio.sleep(0.1)
    messages = [m for m in shown(client) if words in m]
    assert len(messages) == 1, shown(client)
    status_info = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="fimls.status")
    )
    assert words in status_info["lastError"]


async def test_fatal_error_lifts_when_settings_change(start_server, fake):
    fake.script.append(Reply(status=401))
    fake.default = Reply(text="works")
    client = await start_server("vscode")
    uri = open_doc(client, "x = \n")
    assert await inline(client, uri, 0, 4) == []
    assert await inline(client, uri, 0, 4) == []
    assert len(fake.fim_requests()) == 1
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"fimls": {"apiKey": TEST_KEY}})
    )
    assert [i.insert_text for i in await inline(client, uri, 0, 4)] == ["works"]


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_transient_errors_are_retried_with_backoff(start_server, fake, status):
    fake.script.extend([Reply(status=status), Reply(status=status)])
    fake.default = Reply(text="third time")
    client = await start_server("vscode", {"maxRetries": 2})
    uri = open_doc(client, "x = \n")
    assert [i.insert_text for i in await inline(client, uri, 0, 4)] == ["third time"]
    assert len(fake.fim_requests()) == 3
    info = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="fimls.status"))
    assert info["retries"] == 2


async def test_retry_after_is_honoured(start_server, fake):
    fake.script.append(Reply(status=429, headers={"Retry-After": "1"}))
    fake.default = Reply(text="after wait")
    client = await start_server("vscode")
    uri = open_doc(client, "x = \n")
    items = await inline(client, uri, 0, 4)
    assert [i.insert_text for i in items] == ["after wait"]
    first, second = fake.fim_requests()
    assert second.started - first.finished >= 0.95


async def test_persistent_overload_is_bounded_and_reported_once(start_server, fake):
    fake.default = Reply(status=503)
    client = await start_server("vscode", {"maxRetries": 1})
    uri = open_doc(client, "x = \n")
    results = await type_and_ask(client, uri, 4)
    assert results == [[]] * 4
    assert len(fake.fim_requests()) == 8  # one retry per request, no storm
    await asyncio.sleep(0.1)
    assert len([m for m in shown(client) if "503" in m]) == 1


async def test_model_that_does_not_exist(start_server, fake):
    client = await start_server("vscode", {"model": "deepseek-retired"})
    uri = open_doc(client, "x = \n")
    assert await inline(client, uri, 0, 4) == []
    await asyncio.sleep(0.1)
    [message] = [m for m in shown(client) if "does not know the model" in m]
    assert "deepseek-retired" in message


async def test_timeout_gives_empty_result_within_deadline(start_server, fake):
    fake.default = Reply(keepalive_forever=True)
    client = await start_server("vscode", {"timeoutMs": 500, "maxRetries": 0})
    uri = open_doc(client, "x = \n")
    started = asyncio.get_running_loop().time()
    assert await inline(client, uri, 0, 4) == []
    assert asyncio.get_running_loop().time() - started < 2
    fake.default = Reply(text="back")
    change(client, uri, 2, (0, 4), (0, 4), "1")
    assert [i.insert_text for i in await inline(client, uri, 0, 5)] == ["back"]


@pytest.mark.parametrize(
    "reply",
    [
        Reply(raw_body=b"{malformed"),
        Reply(raw_body=b'{"id": "x", "object": "text_completion"}'),
        Reply(raw_body=b'{"choices": []}'),
        Reply(text="abcdef", cut_stream=True),
    ],
    ids=["malformed", "no-choices", "empty-choices", "cut-stream"],
)
async def test_malformed_answers_give_empty_results(start_server, fake, reply):
    fake.default = reply
    client = await start_server("vscode", {"maxRetries": 0})
    uri = open_doc(client, "x = \n")
    assert await inline(client, uri, 0, 4) == []
    fake.default = Reply(text="fine")
    change(client, uri, 2, (0, 4), (0, 4), "1")
    assert [i.insert_text for i in await inline(client, uri, 0, 5)] == ["fine"]


async def test_connection_refused(start_server, fake):
    env = server_env(fake, DEEPSEEK_BASE_URL="http://127.0.0.1:9")
    client = await start_server("vscode", {"maxRetries": 0}, env=env)
    uri = open_doc(client, "x = \n")
    assert await inline(client, uri, 0, 4) == []
    await asyncio.sleep(0.1)
    assert any("cannot reach DeepSeek" in m for m in shown(client))


async def test_missing_key_is_reported_once_and_nothing_sent(start_server, fake):
    env = server_env(fake)
    del env["DEEPSEEK_API_KEY"]
    client = await start_server("vscode", env=env)
    uri = open_doc(client, "x = \n")
    assert await inline(client, uri, 0, 4) == []
    assert await inline(client, uri, 0, 4) == []
    await asyncio.sleep(0.1)
    assert len([m for m in shown(client) if "API key" in m]) == 1
    assert fake.requests == []


async def test_key_never_appears_in_messages_or_logs(start_server, fake):
    fake.script.append(Reply(status=401))
    client = await start_server("vscode", {"apiKey": TEST_KEY}, args=["-vv"])
    uri = open_doc(client, "x = \n")
    await inline(client, uri, 0, 4)
    info = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="fimls.status"))
    everything = repr(client.messages) + repr(client.log_messages) + repr(info)
    assert TEST_KEY not in everything


async def test_after_402_resume_probes_the_balance_and_says_so_once(start_server, fake):
    fake.script.append(Reply(status=402))
    fake.default = Reply(text="works")
    fake.balance = {"is_available": False, "balance_infos": []}
    client = await start_server("vscode")
    uri = open_doc(client, "x = \n")
    assert await inline(client, uri, 0, 4) == []
    info = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="fimls.status"))
    assert "insufficient balance" in info["paused"] and 0 < info["nextTryInSeconds"] <= 30
    info = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="fimls.resume"))
    assert info["paused"]  # the balance endpoint says: still nothing
    assert len(fake.fim_requests()) == 1
    fake.balance = {"is_available": True, "balance_infos": [{"currency": "USD", "total_balance": "5.00"}]}
    info = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="fimls.resume"))
    assert info["paused"] is None
    assert [i.insert_text for i in await inline(client, uri, 0, 4)] == ["works"]
    await asyncio.sleep(0.1)
    assert [m for m in shown(client) if "requests resume" in m] == [
        "fimls: the account has balance again; requests resume"
    ]
    assert [r.path for r in fake.requests].count("/user/balance") == 2


async def test_after_401_a_new_key_from_the_command_resumes(start_server, fake, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("sk-revoked-0000000000\n", encoding="utf-8")
    fake.default = Reply(text="works")
    env = server_env(fake)
    del env["DEEPSEEK_API_KEY"]
    client = await start_server("vscode", {"apiKeyCommand": f"cat {key_file}"}, env=env)
    uri = open_doc(client, "x = \n")
    assert await inline(client, uri, 0, 4) == []  # 401
    assert [m for m in shown(client) if "rejected the API key (401)" in m]
    info = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="fimls.resume"))
    assert info["paused"]  # the command still prints the revoked key
    key_file.write_text(f"{TEST_KEY}\n", encoding="utf-8")
    info = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="fimls.resume"))
    assert info["paused"] is None and info["apiKey"] == "set"
    assert [i.insert_text for i in await inline(client, uri, 0, 4)] == ["works"]
    assert fake.fim_requests()[-1].authorized
