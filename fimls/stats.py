"""Counters behind ``fimls.status``, and the cost estimate."""

from __future__ import annotations

import time
from typing import Any

import attrs

from fimls.backend import Usage

# USD per million tokens: (cache hit input, cache miss input, output). DeepSeek's list
# prices for its flash model at peak hours (off-peak is half), so the estimate errs high.
PRICES: dict[str, tuple[float, float, float]] = {
    "deepseek-flash": (0.006, 0.30, 1.20),
    "deepseek-v4-flash": (0.006, 0.30, 1.20),
    "deepseek-chat": (0.006, 0.30, 1.20),
    "deepseek-v4-pro": (0.044, 1.32, 3.96),
}
DEFAULT_PRICE = PRICES["deepseek-flash"]


def cost_usd(usage: Usage, model: str) -> float:
    """Estimated price of one answer."""
    hit, miss, out = PRICES.get(model, DEFAULT_PRICE)
    return (
        usage.cache_hit_tokens * hit + usage.cache_miss_tokens * miss + usage.completion_tokens * out
    ) / 1_000_000


@attrs.define
class Stats:
    """What the server has done since it started."""

    requests_sent: int = 0
    responses: int = 0
    errors: int = 0
    retries: int = 0
    cache_hits: int = 0
    typing_through_hits: int = 0
    shared_in_flight: int = 0
    superseded: int = 0
    stale_dropped: int = 0
    skipped: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_cache_hit_tokens: int = 0
    prompt_cache_miss_tokens: int = 0
    cost_usd: float = 0.0
    last_error: str | None = None
    last_error_at: float | None = None

    def add_usage(self, usage: Usage | None, model: str) -> None:
        """Account for one answer's tokens."""
        if usage is None:
            return
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        self.prompt_cache_hit_tokens += usage.cache_hit_tokens
        self.prompt_cache_miss_tokens += usage.cache_miss_tokens
        self.cost_usd += cost_usd(usage, model)

    def record_error(self, message: str) -> None:
        """Remember the latest failure."""
        self.errors += 1
        self.last_error = message
        self.last_error_at = time.time()

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready counters with the derived cache-hit share."""
        data = attrs.asdict(self)
        data["cost_usd"] = round(self.cost_usd, 6)
        total = self.prompt_cache_hit_tokens + self.prompt_cache_miss_tokens
        data["prompt_cache_hit_share"] = round(self.prompt_cache_hit_tokens / total, 4) if total else None
        return data
