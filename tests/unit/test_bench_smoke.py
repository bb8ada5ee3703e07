"""Smoke test of the typing benchmark: a tiny, sped-up run must produce every figure, sane values,
and no verdict on a target it cannot judge.

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

FIGURES = [
    "keystrokes",
    "chars_typed",
    "chars_accepted",
    "accepted_share",
    "pauses",
    "pauses_without_suggestion",
    "time_to_suggestion_ms",
    "backend_requests",
    "speculative_requests",
    "requests_per_100_typed",
    "prompt_cache_hit_share",
    "cost_usd",
    "cost_per_1000_accepted_usd",
    "tokens_generated",
    "waste_share",
    "overhead_ms",
    "peak_rss_mb",
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
        timeout=90,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "| first token | tok/s | config |" in run.stdout
    result = json.loads(out.read_text(encoding="utf-8"))
    assert out.with_suffix(".md").read_text(encoding="utf-8").startswith("| first token")

    (cell,) = result["sweep"]
    assert cell["wire"] == "deepseek" and set(cell["configs"]) == {"default", "plain", "context"}
    for config, block in cell["configs"].items():
        (r,) = block["runs"]
        for key in FIGURES:
            assert key in r, (config, key)
        assert r["config"] == config
        assert r["completed"], config
        assert r["keystrokes"] > 0 and r["backend_requests"] > 0
        assert r["chars_accepted"] + r["chars_typed"] == r["region_chars"]
        assert 0 < r["accepted_share"] <= 1  # oracle mode: matching suggestions get accepted
        assert r["time_to_suggestion_ms"]["n"] + r["pauses_without_suggestion"] == r["pauses"] > 0
        assert 0 <= r["prompt_cache_hit_share"] <= 1 and r["prompt_tokens"] > 0
        assert r["cost_usd"] > 0 and _finite(r["cost_per_1000_accepted_usd"])
        assert 0 <= r["waste_share"] <= 1 and r["tokens_generated"] > 0
        assert 5 < r["peak_rss_mb"] < 2000
        status = r["status"]
        assert status is not None and status["requestsSent"] > 0
        # The fake counts speculative requests by their header; fimls counts what it started.
        assert r["speculative_requests"] <= status["speculativeRequests"]
    plain = cell["configs"]["plain"]["runs"][0]
    assert plain["speculative_requests"] == 0 and plain["status"]["speculativeRequests"] == 0
    assert plain["overhead_ms"]["n"] >= 0

    overhead = result["overhead_ms"]
    assert overhead["n"] == len(result["overhead_samples_ms"]) > 0  # single-line requests, complete calls
    assert all(-50 < v < 1000 for v in result["overhead_samples_ms"])
    assert result["overhead_parts_ms"]["before"]["n"] == overhead["n"]

    cold = result["cold_start"]
    assert len(cold["samples_ms"]) == 2 and cold["median_ms"] > 0
    # The first served request can only come after the initialize answer.
    assert all(s > i for s, i in zip(cold["samples_ms"], cold["initialize_samples_ms"], strict=True))

    (steady,) = result["steady"]
    assert steady["keystrokes"] > 0 and _finite(steady["cpu_share"])
    (many,) = result["many_docs"]
    assert many["documents"] == 3 and many["keystrokes"] > 0 and many["rss_after_open_mb"] > 0

    # A sped-up run of one fast cell judges none of the targets of the 400 ms / 60 tok/s cell,
    # no comparison of configurations, and no percentile from a handful of samples.
    assert result["checks"] == []
    assert "No target verdicts" in run.stdout
    assert "PASS" not in run.stdout and "MISS" not in run.stdout
