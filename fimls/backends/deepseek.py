"""DeepSeek: FIM at ``POST /beta/completions``, ``GET /models`` and ``GET /user/balance``."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from fimls.backends.base import BackendError, Check, Price, ProtocolError
from fimls.backends.openai import Completions

DEFAULT_BASE_URL = "https://api.deepseek.com"
KEY_ENV = "DEEPSEEK_API_KEY"
FIM_MAX_TOKENS = 4096
"""DeepSeek caps FIM output at 4K tokens."""
PREFERRED_MODELS = ("deepseek-flash", "deepseek-v4-flash", "deepseek-chat", "deepseek-coder")
"""Known FIM-capable, non-reasoning models, best first."""
FALLBACK_MODEL = "deepseek-chat"

# List prices at peak hours (off-peak is half), so estimates err high.
PRICES: dict[str, Price] = {
    "deepseek-flash": Price(input=0.30, cached_input=0.006, output=1.20),
    "deepseek-v4-flash": Price(input=0.30, cached_input=0.006, output=1.20),
    "deepseek-chat": Price(input=0.30, cached_input=0.006, output=1.20),
    "deepseek-v4-pro": Price(input=1.32, cached_input=0.044, output=3.96),
}
DEFAULT_PRICE = PRICES["deepseek-flash"]


@attrs.frozen
class Balance:
    """``GET /user/balance``."""

    is_available: bool
    balances: tuple[tuple[str, str], ...]
    """(currency, total_balance) pairs, amounts as DeepSeek's strings."""

    def describe(self) -> str:
        """E.g. ``12.34 USD (available)``."""
        amounts = ", ".join(f"{total} {currency}" for currency, total in self.balances) or "none"
        return f"{amounts} ({'available' if self.is_available else 'NOT available'})"


class DeepSeek(Completions):
    """DeepSeek's FIM completion (beta), its model list and the account balance."""

    name = "deepseek"
    path = "/beta/completions"
    models_path = "/models"
    url_tails = ("/completions", "/beta", "/v1")
    default_model = FALLBACK_MODEL
    max_tokens_cap = FIM_MAX_TOKENS
    fallback_to_raw = False
    sends_routing_id = False  # one account is one cache; there is no router to steer

    def price(self, model: str) -> Price:
        """The list price of ``model`` (the configured price wins)."""
        return self.options.price if self.options.price is not None else PRICES.get(model, DEFAULT_PRICE)

    def choose_model(self, available: list[str]) -> str | None:
        """The best known FIM model among ``available``."""
        for name in PREFERRED_MODELS:
            if name in available:
                return name
        for name in available:
            if "reason" not in name and "think" not in name:
                return name
        return FALLBACK_MODEL

    async def balance(self) -> Balance:
        """Account balance from ``GET /user/balance`` (free)."""
        data = await self.http.request_json("GET", "/user/balance")
        if not isinstance(data, Mapping):
            raise ProtocolError(f"{self.label}: GET /user/balance returned no object")
        infos = data.get("balance_infos")
        pairs = tuple(
            (str(info.get("currency", "?")), str(info.get("total_balance", "?")))
            for info in (infos if isinstance(infos, list) else [])
            if isinstance(info, Mapping)
        )
        return Balance(bool(data.get("is_available")), pairs)

    async def diagnose(self, model: str) -> list[Check]:
        """The balance."""
        try:
            balance = await self.balance()
        except BackendError as error:
            return [Check(False, "GET /user/balance", str(error))]
        return [Check(balance.is_available, "GET /user/balance", balance.describe())]
