"""Smoke test of scripts/bench_http2.py: a short burst of cancelled streams over both protocols.

It also pins down the behaviour the HTTP/2 recommendation in docs/benchmarks.md rests on: over
HTTP/1.1 a cancelled stream costs its connection and the server stops generating; over HTTP/2
through httpx the connection is kept but the server is never told, so it generates every answer
to its end. If a later httpx resets cancelled streams, this test fails and the recommendation
should be measured again.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "bench_http2.py"
REQUESTS = 8
ANSWER = 60


def test_cancelled_streams_over_both_protocols(tmp_path: Path) -> None:
    out = tmp_path / "http2.json"
    args = ["--rtt-ms", "0", "--requests", str(REQUESTS), "--burst-gap-ms", "100"]
    args += ["--first-token-ms", "30", "--token-rate", "200", "--answer-tokens", str(ANSWER)]
    run = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    rows = {row["protocol"]: row for row in json.loads(out.read_text(encoding="utf-8"))["runs"]}
    h1, h2 = rows["HTTP/1.1"], rows["HTTP/2"]
    for row, version in ((h1, "1.1"), (h2, "2")):
        assert row["requests"] == REQUESTS and row["errors"] == 0, row["error_examples"]
        assert set(row["server_versions"]) == {version}
        assert sum(row["server_versions"].values()) >= REQUESTS - 1  # the last may come after a cut
        assert row["cancelled"] >= REQUESTS // 2  # answers take 330 ms, requests come every 100 ms
        assert row["handshakes"] == row["connections"]  # a TLS handshake per TCP connection
    # HTTP/1.1: a cancelled stream takes its connection with it; the server stops generating.
    assert h1["connections"] >= h1["cancelled"]
    assert h1["ended_early"] >= h1["cancelled"] - 1
    assert h1["tokens_generated"] < REQUESTS * ANSWER
    # HTTP/2 through httpx: one connection, no stream reset, every answer generated in full.
    assert h2["connections"] == 1
    assert h2["ended_early"] == 0
    assert h2["tokens_generated"] == REQUESTS * ANSWER
    assert h2["h2_inbound_window"] is not None and h2["h2_inbound_window"] < 65_535 + 2**24
