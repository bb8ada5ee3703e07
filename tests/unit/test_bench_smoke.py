"""Smoke test of the typing benchmark: a tiny, sped-up run must produce every figure, sane values.

The figures of record come from real-time runs (docs/benchmarks.md); this only guards the harness.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "bench_typing.py"

COMMON = [
    "backend_requests",
    "backend_time_ms",
    "overhead_ms",
    "overhead_backend_ms",
    "overhead_local_ms",
    "cancel_ack_ms",
    "stale_responses",
    "stale_lag_ms",
    "suggestions_shown",
    "typing_through_client",
    "peak_rss_mb",
    "cpu_s",
    "cpu_ms_per_keystroke",
    "cpu_share_at_20cps",
    "keystrokes",
]
TYPING = [
    *COMMON,
    "requests_per_100_typed",
    "max_requests_per_pause",
    "requests_outside_pauses",
    "requests_while_typing_along",
    "typing_through_server",
    "accepted_share",
    "chars_accepted",
    "time_to_suggestion_ms",
    "time_to_suggestion_backend_ms",
    "prompt_tokens",
    "prompt_cache_hit_share",
    "cost_usd",
    "cost_per_1000_accepted_usd",
    "status",
]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def test_quick_benchmark_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--no-plot", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "| target |" in run.stdout
    result = json.loads(out.read_text(encoding="utf-8"))
    assert out.with_suffix(".md").exists()

    typing = result["typing"]["runs"]
    assert len(typing) == 1
    r = typing[0]
    for key in TYPING:
        assert key in r, key
    assert r["completed"]
    assert r["keystrokes"] > 0
    assert r["backend_requests"] > 0
    assert r["stale_responses"] == 0, r["stale_lag_ms"]
    assert 0 < r["accepted_share"] <= 1  # oracle mode: matching suggestions get accepted
    assert r["chars_accepted"] + r["chars_typed"] == r["region_chars"]
    assert r["max_requests_per_pause"] >= 1
    assert r["overhead_ms"]["n"] > 0
    assert 0 <= r["overhead_ms"]["p50"] < 1000
    assert r["time_to_suggestion_ms"]["n"] > 0
    assert r["time_to_suggestion_ms"]["p50"] >= result["meta"]["debounce_ms"]
    assert 0 <= r["prompt_cache_hit_share"] <= 1
    assert r["prompt_tokens"] > 0
    assert r["cost_usd"] > 0
    assert _finite(r["cost_per_1000_accepted_usd"])
    assert 5 < r["peak_rss_mb"] < 2000
    assert r["cpu_ms_per_keystroke"] >= 0
    assert r["status"] is not None and r["status"]["requestsSent"] > 0

    steady = result["steady"]["runs"][0]
    for key in COMMON:
        assert key in steady, key
    assert steady["keystrokes"] > 0 and steady["stale_responses"] == 0
    assert _finite(steady["cpu_share_session"])

    many = result["many_docs"]["runs"][0]
    for key in COMMON:
        assert key in many, key
    assert many["documents"] == 3
    assert many["keystrokes"] > 0 and many["stale_responses"] == 0
    assert many["rss_after_open_mb"] > 0

    cold = result["cold_start"]
    assert len(cold["samples_ms"]) == 2 and cold["median_ms"] > 0
    # Ready (a shutdown answered) can only come after the initialize answer.
    assert len(cold["ready_samples_ms"]) == 2
    assert all(r > i for r, i in zip(cold["ready_samples_ms"], cold["samples_ms"], strict=True))

    verdicts = {check["verdict"] for check in result["checks"]}
    assert verdicts <= {"PASS", "MISS", "n/a"}
    targets = " ".join(check["target"] for check in result["checks"])
    for word in ("overhead", "pause", "suggestion", "cache", "cold start", "RSS", "CPU"):
        assert word in targets, word
