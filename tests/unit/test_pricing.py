from __future__ import annotations

from types import MappingProxyType

from shieldes.events.catalog import PricingSet
from shieldes.events.codec import Codec
from shieldes.projections.config import apply_config
from shieldes.projections.state import ConfigState, Price
from shieldes.providers.anthropic_translate import usage_from_anthropic
from shieldes.providers.base import TokenUsage
from shieldes.providers.http import parse_usage
from shieldes.usage.pricing import PriceTable, Rate, cost_nusd, default_prices, nusd_per_token, unpriced_warning


def test_rates_are_exact_integers() -> None:
    assert nusd_per_token(2.5) == 2500
    assert nusd_per_token(0.15) == 150
    rate = Rate(2500, 10000, 2500, 2500)
    assert cost_nusd(rate, TokenUsage(1000, 500)) == 1000 * 2500 + 500 * 10000  # $0.0075


def test_defaults_and_pricing_set_override() -> None:
    table = PriceTable()
    assert "gpt-4o" in default_prices()
    assert table.rate({}, "gpt-4o")[:2] == (2500, 10000)
    assert table.rate({}, "no-such-model") == (0, 0, 0, 0)
    override = MappingProxyType({"gpt-4o": Price(1.0, 2.0), "my-model": Price(0.5, 0.25, 0.05, 0.625)})
    assert table.rate(override, "gpt-4o") == (1000, 2000, 1000, 1000)  # unset cache prices: the input price
    assert table.rate(override, "my-model") == (500, 250, 50, 625)
    assert table.rate(override, "gpt-4o-mini")[:2] == (150, 600)  # untouched default


def test_cache_tokens_cost_their_own_rates() -> None:
    rate = Rate(input=3000, output=15000, cache_read=300, cache_write=3750)
    # 100 plain input + 1000 cache reads + 200 cache writes, 50 output tokens
    usage = TokenUsage(1300, 50, cache_read_tokens=1000, cache_write_tokens=200)
    assert cost_nusd(rate, usage) == 100 * 3000 + 1000 * 300 + 200 * 3750 + 50 * 15000


def test_upstream_usage_reports_cache_parts() -> None:
    anthropic = {"input_tokens": 10, "cache_creation_input_tokens": 200, "cache_read_input_tokens": 1000,
                 "output_tokens": 7}
    assert usage_from_anthropic(anthropic) == TokenUsage(1210, 7, cache_read_tokens=1000, cache_write_tokens=200)
    assert usage_from_anthropic({"input_tokens": 5, "cache_read_input_tokens": None, "output_tokens": 1}) == \
        TokenUsage(5, 1)
    openai = {"prompt_tokens": 1500, "completion_tokens": 9, "prompt_tokens_details": {"cached_tokens": 1024}}
    assert parse_usage(openai) == TokenUsage(1500, 9, cache_read_tokens=1024)
    assert parse_usage({"prompt_tokens": 3, "completion_tokens": 1, "prompt_tokens_details": None}) == \
        TokenUsage(3, 1)


def test_old_pricing_events_replay_without_cache_prices() -> None:
    codec = Codec()
    old = codec.decode("pricing.set", 1, {"model": "m", "input_per_1m": 1.0, "output_per_1m": 2.0})
    assert old == PricingSet("m", 1.0, 2.0)
    new = PricingSet("m", 3.0, 15.0, 0.3, 3.75)
    type_, version, data = codec.encode(new)
    assert (type_, version) == ("pricing.set", 1) and codec.decode(type_, version, data) == new
    state = apply_config(apply_config(ConfigState(), old), new)
    assert state.pricing["m"] == Price(3.0, 15.0, 0.3, 3.75)
    assert apply_config(ConfigState(), old).pricing["m"] == Price(1.0, 2.0, None, None)


def test_the_unpriced_warning_speaks_of_one_model_as_it() -> None:
    assert "requests for it from keys" in unpriced_warning(["local-llm"])
    assert "requests for them from keys" in unpriced_warning(["a", "b"])
