from __future__ import annotations

from types import MappingProxyType

from shieldes.projections.state import Price
from shieldes.usage.pricing import PriceTable, cost_nusd, default_prices, nusd_per_token


def test_rates_are_exact_integers() -> None:
    assert nusd_per_token(2.5) == 2500
    assert nusd_per_token(0.15) == 150
    assert cost_nusd((2500, 10000), 1000, 500) == 1000 * 2500 + 500 * 10000  # $0.0075


def test_defaults_and_pricing_set_override() -> None:
    table = PriceTable()
    assert "gpt-4o" in default_prices()
    assert table.rate({}, "gpt-4o") == (2500, 10000)
    assert table.rate({}, "no-such-model") == (0, 0)
    override = MappingProxyType({"gpt-4o": Price(1.0, 2.0), "my-model": Price(0.5, 0.25)})
    assert table.rate(override, "gpt-4o") == (1000, 2000)
    assert table.rate(override, "my-model") == (500, 250)
    assert table.rate(override, "gpt-4o-mini") == (150, 600)  # untouched default
