"""Prices and cost in integer nano-USD.

A price is USD per 1M tokens; one token at $1/1M costs 1000 nUSD, so a price is turned into an
integer nUSD-per-token rate once (resolution: $0.001 per 1M tokens) and cost is an exact integer
product. `pricing.set` events override the shipped catalog (shieldes/pricing/catalog.json).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from shieldes.projections.state import Price
from shieldes.usage.catalog import shipped


def default_prices() -> Mapping[str, tuple[float, float]]:
    """(input, output) USD per 1M tokens of every model in the shipped catalog (usage/catalog.py)."""
    return {m: (e.input_per_1m, e.output_per_1m) for m, e in shipped().items()}


def nusd_per_token(usd_per_1m: float) -> int:
    return round(usd_per_1m * 1000)


class PriceTable:
    """Integer per-token rates for each model: shipped defaults overlaid with `pricing.set` events.

    Rebuilt only when the config's pricing mapping changes (it is copy-on-write, so identity tells)."""

    def __init__(self) -> None:
        self._source: Mapping[str, Price] | None = None
        self._rates: dict[str, tuple[int, int]] = {}

    def rates(self, pricing: Mapping[str, Price]) -> dict[str, tuple[int, int]]:
        if pricing is not self._source:
            rates = {m: (nusd_per_token(i), nusd_per_token(o)) for m, (i, o) in default_prices().items()}
            for model, price in pricing.items():
                rates[model] = (nusd_per_token(price.input_per_1m), nusd_per_token(price.output_per_1m))
            self._rates, self._source = rates, pricing
        return self._rates

    def rate(self, pricing: Mapping[str, Price], model: str) -> tuple[int, int]:
        """(input, output) nUSD per token; (0, 0) for a model without a price."""
        return self.rates(pricing).get(model, (0, 0))

    def priced(self, pricing: Mapping[str, Price], model: str) -> bool:
        """A price is known (a shipped default or `pricing set`; an explicit $0 counts as priced)."""
        return model in self.rates(pricing)


def unpriced(pricing: Mapping[str, Price], models: Iterable[str]) -> list[str]:
    """The models among `models` that have no price: under a budget they cost $0, so they are refused
    unless SHIELDES_ALLOW_UNPRICED=true."""
    return sorted({m for m in models if m not in pricing and m not in shipped()})


def unpriced_warning(models: Sequence[str]) -> str:
    listed = ", ".join(models)
    return (f"no price for {listed}: requests for them from keys or teams with a budget are refused "
            f"(403 model_not_priced); set one with `shieldes pricing set {models[0]} --input USD_PER_1M "
            "--output USD_PER_1M`")


def cost_nusd(rate: tuple[int, int], prompt_tokens: int, completion_tokens: int) -> int:
    return prompt_tokens * rate[0] + completion_tokens * rate[1]
