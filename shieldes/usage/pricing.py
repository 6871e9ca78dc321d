"""Prices and cost in integer nano-USD.

A price is USD per 1M tokens; one token at $1/1M costs 1000 nUSD, so a price is turned into an
integer nUSD-per-token rate once (resolution: $0.001 per 1M tokens) and cost is an exact integer
product. `pricing.set` events override the shipped catalog (shieldes/pricing/catalog.json).

Prompt caching: upstreams report cache reads (Anthropic `cache_read_input_tokens`, OpenAI
`prompt_tokens_details.cached_tokens`) and cache writes (Anthropic `cache_creation_input_tokens`)
as parts of the input. Those parts cost the model's cache-read / cache-write price; a model
without one bills them at its input price.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

from shieldes.projections.state import Price, is_model_pattern
from shieldes.usage.catalog import shipped

if TYPE_CHECKING:  # the provider boundary: not for the CLI's price checks
    from shieldes.providers.base import TokenUsage


def default_prices() -> Mapping[str, Price]:
    """Every model of the shipped catalog (usage/catalog.py), cache prices included."""
    return {m: Price(e.input_per_1m, e.output_per_1m, e.cache_read_per_1m, e.cache_write_per_1m)
            for m, e in shipped().items()}


class Rate(NamedTuple):
    """nUSD per token."""

    input: int
    output: int
    cache_read: int
    cache_write: int


NO_RATE = Rate(0, 0, 0, 0)


def nusd_per_token(usd_per_1m: float) -> int:
    return round(usd_per_1m * 1000)


def rate_of(price: Price) -> Rate:
    input_ = nusd_per_token(price.input_per_1m)
    read, write = price.cache_read_per_1m, price.cache_write_per_1m
    return Rate(
        input_,
        nusd_per_token(price.output_per_1m),
        input_ if read is None else nusd_per_token(read),
        input_ if write is None else nusd_per_token(write),
    )


class PriceTable:
    """Integer per-token rates for each model: shipped defaults overlaid with `pricing.set` events.

    Rebuilt only when the config's pricing mapping changes (it is copy-on-write, so identity tells)."""

    def __init__(self) -> None:
        self._source: Mapping[str, Price] | None = None
        self._rates: dict[str, Rate] = {}

    def rates(self, pricing: Mapping[str, Price]) -> dict[str, Rate]:
        if pricing is not self._source:
            rates = {m: rate_of(p) for m, p in default_prices().items()}
            for model, price in pricing.items():
                rates[model] = rate_of(price)
            self._rates, self._source = rates, pricing
        return self._rates

    def rate(self, pricing: Mapping[str, Price], model: str) -> Rate:
        """The model's rates; all zero for a model without a price."""
        return self.rates(pricing).get(model, NO_RATE)

    def priced(self, pricing: Mapping[str, Price], model: str) -> bool:
        """A price is known (a shipped default or `pricing set`; an explicit $0 counts as priced)."""
        return model in self.rates(pricing)


def unpriced(pricing: Mapping[str, Price], models: Iterable[str]) -> list[str]:
    """The models among `models` that have no price: under a budget they cost $0, so they are refused
    unless SHIELDES_ALLOW_UNPRICED=true. Patterns (`claude-*`) are left out: a price is set per
    exact name, so the names a pattern serves are priced one by one."""
    return sorted({m for m in models if m not in pricing and m not in shipped() and not is_model_pattern(m)})


def unpriced_warning(models: Sequence[str]) -> str:
    listed = ", ".join(models)
    them = "it" if len(models) == 1 else "them"
    return (f"no price for {listed}: requests for {them} from keys or teams with a budget are refused "
            f"(403 model_not_priced); set one with `shieldes pricing set {models[0]} --input USD_PER_1M "
            "--output USD_PER_1M`")


def cost_nusd(rate: Rate, usage: TokenUsage) -> int:
    """Exact cost of `usage`: cache reads and writes (parts of prompt_tokens) at their own rates."""
    cached = usage.cache_read_tokens + usage.cache_write_tokens
    plain = max(0, usage.prompt_tokens - cached)
    return (plain * rate.input + usage.cache_read_tokens * rate.cache_read
            + usage.cache_write_tokens * rate.cache_write + usage.completion_tokens * rate.output)


def completion_cap(most: int, prompt_tokens: int, rate: Rate, budget_left: int | None,
                   tokens_left: int | None) -> int:
    """max_tokens for a budgeted request naming none: at most `most` (SHIELDES_BUDGET_MAX_TOKENS),
    and no more than what the budget (nUSD) and the tpm limit have left after the prompt, so a
    request that fits is not refused for an estimate it would not reach. At least 1: with nothing
    left, admission refuses it with the reason."""
    cap = most
    if budget_left is not None and rate[1] > 0:
        cap = min(cap, (budget_left - prompt_tokens * rate[0]) // rate[1])
    if tokens_left is not None:
        cap = min(cap, tokens_left - prompt_tokens)
    return max(1, cap)
