"""Every wire format of the fake shares one model: the same requests give the same answers,
token counts, cache hits and timing, whichever format carries them."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "scripts"))

from fake_deepseek import FakeDeepSeek

SOURCE = "".join(f"def f{i}(x):\n    return x * {i}\n\n\n" for i in range(60))
CURSORS = [SOURCE.index("return x * 30"), SOURCE.index("return x * 31"), SOURCE.index("return x * 32")]
FIRST_TOKEN, RATE = 0.1, 100.0


def cut(i: int) -> tuple[str, str]:
    at = CURSORS[i]
    return SOURCE[:at], SOURCE[SOURCE.index("\n", at) :]


Request = Callable[[str, str], tuple[str, dict[str, Any]]]  # (prefix, suffix) -> (path, body)

WIRES: dict[str, tuple[str, Request]] = {
    "deepseek": (
        "openai",
        lambda p, s: ("/beta/completions", {"model": "m", "prompt": p, "suffix": s, "stream": True}),
    ),
    "openai": (
        "openai",
        lambda p, s: ("/v1/completions", {"model": "m", "prompt": p, "suffix": s, "stream": True}),
    ),
    "vllm-raw": (
        "vllm",
        lambda p, s: (
            "/v1/completions",
            {
                "model": "m",
                "prompt": f"<|fim_prefix|>{p}<|fim_suffix|>{s}<|fim_middle|>",
                "max_tokens": 64,
                "stream": True,
            },
        ),
    ),
    "codestral": (
        "codestral",
        lambda p, s: ("/v1/fim/completions", {"model": "m", "prompt": p, "suffix": s, "stream": True}),
    ),
    "ollama": ("openai", lambda p, s: ("/api/generate", {"model": "m", "prompt": p, "suffix": s})),
    "llamacpp": (
        "llamacpp",
        lambda p, s: ("/infill", {"input_prefix": p, "input_suffix": s, "stream": True}),
    ),
}


def run(name: str) -> list[dict[str, Any]]:
    flavor, build = WIRES[name]
    results: list[dict[str, Any]] = []
    with (
        FakeDeepSeek(
            models=["m"], flavor=flavor, oracle_text=SOURCE, first_token=FIRST_TOKEN, token_rate=RATE
        ) as fake,
        httpx.Client(
            base_url=fake.url, headers={"Authorization": "Bearer k"}, trust_env=False, timeout=10
        ) as c,
    ):
        for i in range(len(CURSORS)):
            path, body = build(*cut(i))
            sent = time.monotonic()
            with c.stream("POST", path, json=body) as r:
                assert r.status_code == 200, r.read()
                first = None
                for line in r.iter_lines():
                    if first is None and line.strip() and not line.startswith(":"):
                        first = time.monotonic() - sent
            [log] = fake.fim_requests()[i : i + 1]
            assert fake.wait_for(lambda log=log: log.finished is not None)
            results.append(
                {
                    "text": log.text,
                    "prompt_tokens": log.prompt_tokens,
                    "cached_tokens": log.cached_tokens,
                    "tokens_sent": log.tokens_sent,
                    "first": first,
                    "span": log.finished - log.started if log.finished else None,
                }
            )
    return results


def test_every_wire_gives_the_same_figures() -> None:
    reference = run("deepseek")
    assert [r["text"] for r in reference] == ["return x * 30", "return x * 31", "return x * 32"]
    assert reference[1]["cached_tokens"] > 0  # the second prompt shares most of the first
    for name in WIRES:
        if name == "deepseek":
            continue
        got = run(name)
        for key in ("text", "prompt_tokens", "cached_tokens", "tokens_sent"):
            assert [r[key] for r in got] == [r[key] for r in reference], (name, key)
        for mine, theirs in zip(got, reference, strict=True):
            assert mine["first"] >= FIRST_TOKEN - 0.005, name
            # 5 tokens at 100/s, then the end-of-sequence step: 0.05 s after the first token
            assert mine["span"] == pytest.approx(theirs["span"], abs=0.15), name
            assert mine["span"] >= FIRST_TOKEN + 0.05 - 0.005, name


def test_log_carries_raw_body_for_canary_checks() -> None:
    with (
        FakeDeepSeek(models=["m"], flavor="llamacpp") as fake,
        httpx.Client(base_url=fake.url, trust_env=False) as c,
    ):
        canary = "CANARY-4f1e"
        c.post("/infill", json={"input_prefix": "a", "input_suffix": "b", "input_extra": [{"text": canary}]})
        [log] = fake.fim_requests()
        assert canary.encode() in log.raw
        assert json.loads(log.raw)["input_extra"][0]["text"] == canary
        assert log.extra[0]["text"] == canary
