"""Context from other files, end to end: the block the backend receives, its stability across
keystrokes (the prompt cache), and the privacy gate on every source."""

from __future__ import annotations

import asyncio
from pathlib import Path

from conftest import TEST_KEY, change, inline, open_doc, server_env
from fake_deepseek import Reply
from lsprotocol import types

HELPER = '''def scale_total(values, factor):
    """Multiply every value, then add them up."""
    total = 0
    for value in values:
        total += value * factor
    return total
'''


async def status(client) -> dict:
    return await client.workspace_execute_command_async(types.ExecuteCommandParams(command="fimls.status"))


def workspace(tmp_path: Path) -> Path:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / "pkg" / "mathutil.py").write_text(HELPER, encoding="utf-8")
    return tmp_path


async def test_the_backend_receives_an_import_definition_framed_as_comments(start_server, fake, tmp_path):
    root = workspace(tmp_path)
    fake.default = Reply(text="prices, 2)")
    client = await start_server("vscode", folders=[root])
    main = root / "main.py"
    text = "from pkg.mathutil import scale_total\n\nprices = [1, 2, 3]\nresult = scale_total(\n"
    uri = open_doc(client, text, uri=main.as_uri())
    assert [i.insert_text for i in await inline(client, uri, 3, 21)] == ["prices, 2)"]
    prompt = fake.fim_requests()[0].body["prompt"]
    assert "# Path: pkg/mathutil.py" in prompt and "# def scale_total(values, factor):" in prompt
    # The block comes first, every line of it commented; the file's own prompt follows unchanged.
    head = prompt[: prompt.index("from pkg.mathutil")]
    assert head and all(line.startswith("#") for line in head.splitlines())
    assert prompt.endswith(text[:-1])
    compile(prompt + "prices, 2)\n", "<prompt>", "exec")  # the block does not break the syntax after it
    info = await status(client)
    assert info["contextPaths"] == ["pkg/mathutil.py"]


async def test_the_block_stays_byte_identical_across_keystrokes(start_server, fake, tmp_path):
    root = workspace(tmp_path)
    fake.default = Reply(text="zzz")
    client = await start_server("vscode", {"cacheSize": 0}, folders=[root])
    other = (root / "pkg" / "report.py").as_uri()
    open_doc(
        client,
        "from pkg.mathutil import scale_total\n\n" + HELPER.replace("scale_total", "report"),
        uri=other,
    )
    uri = open_doc(client, "from pkg.mathutil import scale_total\n\nx = \n", uri=(root / "main.py").as_uri())
    prompts = []
    column = 4
    for version, ch in enumerate("abcdef", start=2):
        change(client, uri, version, (2, column), (2, column), ch)
        column += 1
        await inline(client, uri, 2, column)
        prompts.append(fake.fim_requests()[-1].body["prompt"])
    blocks = {p[: p.index("from pkg.mathutil")] for p in prompts}
    assert len(blocks) == 1 and next(iter(blocks))
    # Each prompt extends the block and the file's start: what a prefix cache needs.
    assert all(p.startswith(prompts[0][:-1]) for p in prompts)
    info = await status(client)
    assert info["promptCacheHitShare"] > 0.5


async def test_a_deny_listed_open_file_never_feeds_the_block(start_server, fake, tmp_path):
    root = workspace(tmp_path)
    fake.default = Reply(text="1")
    client = await start_server("vscode", folders=[root])
    secret = "CANARY" + "7f3e9a1c5b2d4e6f"
    open_doc(
        client,
        f"scale_total = '{secret}'\ndef scale_total(v):\n    return v\n",
        uri=(root / ".env").as_uri(),
        language="python",
    )
    open_doc(client, f"API = '{secret}'\n", uri=(root / "secrets" / "keys.py").as_uri())
    uri = open_doc(
        client, "from pkg.mathutil import scale_total\n\nx = scale_total(\n", uri=(root / "main.py").as_uri()
    )
    assert await inline(client, uri, 2, 16)
    raw = b"".join(r.raw for r in fake.requests)
    assert secret[6:].encode() not in raw and b"pkg/mathutil.py" in raw  # the control reached it
    info = await status(client)
    assert ".env" not in " ".join(info["contextPaths"])


async def test_context_can_be_turned_off(start_server, fake, tmp_path):
    root = workspace(tmp_path)
    client = await start_server(
        "vscode",
        {"contextOpenFiles": False, "contextRecentEdits": False, "contextImports": False},
        folders=[root],
    )
    text = "from pkg.mathutil import scale_total\n\nresult = \n"
    uri = open_doc(client, text, uri=(root / "main.py").as_uri())
    await inline(client, uri, 2, 9)
    assert fake.fim_requests()[0].body["prompt"] == text[:-1]
    await asyncio.sleep(0)


async def test_llamacpp_gets_the_block_as_input_extra(start_server, fake, tmp_path):
    root = workspace(tmp_path)
    fake.default = Reply(text="prices, 2)")
    client = await start_server(
        "vscode",
        {"backend": "llamacpp", "baseUrl": fake.url, "model": "qwen2.5-coder-1.5b.gguf"},
        env=server_env(fake, FIMLS_API_KEY=TEST_KEY),
        folders=[root],
    )
    text = "from pkg.mathutil import scale_total\n\nprices = [1, 2, 3]\nresult = scale_total(\n"
    uri = open_doc(client, text, uri=(root / "main.py").as_uri())
    assert [i.insert_text for i in await inline(client, uri, 3, 21)] == ["prices, 2)"]
    [sent] = fake.fim_requests()
    assert sent.path == "/infill"
    assert sent.body["input_extra"] == [{"filename": "pkg/mathutil.py", "text": HELPER}]
    assert "scale_total" not in sent.body["input_prefix"].split("import")[0]  # not framed as comments here


async def test_qwen_raw_template_carries_the_block_with_file_separators(start_server, fake, tmp_path):
    root = workspace(tmp_path)
    fake.flavor = "vllm"
    fake.models = ["Qwen/Qwen2.5-Coder-7B"]
    fake.default = Reply(text="prices, 2)")
    options = {"backend": "raw", "baseUrl": fake.url, "model": "Qwen/Qwen2.5-Coder-7B"}
    client = await start_server(
        "vscode", options, env=server_env(fake, FIMLS_API_KEY=TEST_KEY), folders=[root]
    )
    text = "from pkg.mathutil import scale_total\n\nprices = [1, 2, 3]\nresult = scale_total(\n"
    uri = open_doc(client, text, uri=(root / "main.py").as_uri())
    assert [i.insert_text for i in await inline(client, uri, 3, 21)] == ["prices, 2)"]
    prompt = fake.fim_requests()[0].body["prompt"]
    assert prompt.startswith(f"<|repo_name|>{root.name}\n<|file_sep|>pkg/mathutil.py\n{HELPER}")
    assert f"<|file_sep|>main.py\n<|fim_prefix|>{text[:-1]}<|fim_suffix|>" in prompt
