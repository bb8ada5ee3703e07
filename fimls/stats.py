"""Counters behind ``fimls.status``."""

from __future__ import annotations

import time
from typing import Any

import attrs

from fimls.backends.base import Price, Usage


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
    early_answers: int = 0
    """Answers given while the stream was still arriving."""
    streams_cancelled: int = 0
    speculative_requests: int = 0
    """Backend requests made ahead of need (prefetch); not in ``requests_sent``."""
    speculative_hits: int = 0
    """Speculative answers a later request was served from."""
    speculative_cost_usd: float = 0.0
    stale_dropped: int = 0
    skipped: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_cache_hit_tokens: int = 0
    prompt_cache_miss_tokens: int = 0
    cost_usd: float = 0.0
    last_error: str | None = None
    last_error_at: float | None = None

    def add_usage(self, usage: Usage, price: Price) -> float:
        """Account for one answer's tokens; returns its cost."""
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        self.prompt_cache_hit_tokens += usage.cache_hit_tokens
        self.prompt_cache_miss_tokens += usage.cache_miss_tokens
        cost = price.cost(usage)
        self.cost_usd += cost
        return cost

    def record_error(self, message: str) -> None:
        """Remember the latest failure."""
        self.errors += 1
        self.last_error = message
        self.last_error_at = time.time()

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready counters (camelCase keys) with the derived cache-hit share."""
        data = attrs.asdict(self)
        data["cost_usd"] = round(self.cost_usd, 6)
        data["speculative_cost_usd"] = round(self.speculative_cost_usd, 6)
        total = self.prompt_cache_hit_tokens + self.prompt_cache_miss_tokens
        data["prompt_cache_hit_share"] = round(self.prompt_cache_hit_tokens / total, 4) if total else None
        return {camel(key): value for key, value in data.items()}


def camel(name: str) -> str:
    """``snake_case`` to ``camelCase``."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
