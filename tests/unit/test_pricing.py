from __future__ import annotations

from types import MappingProxyType

from shieldes.events.catalog import PricingSet
from shieldes.events.codec import Codec
from shieldes.projections.config import apply_config
from shieldes.projections.state import ConfigState, Price
from shieldes.providers.anthropic_translate import usage_from_anthropic
from shieldes.providers.base import TokenUsage
from shieldes.providers.bedrock_translate import usage_from_bedrock
from shieldes.providers.http import parse_usage
from shieldes.usage.pricing import (
    PATTERN_NAMES_KEPT,
    PriceTable,
    Rate,
    cost_nusd,
    default_prices,
    nusd_per_token,
    price_for,
    price_hint,
    unpriced,
    unpriced_warning,
)


def test_rates_are_exact_integers() -> None:
    assert nusd_per_token(2.5) == 2500
    assert nusd_per_token(0.15) == 150
    rate = Rate(2500, 10000, 2500, 2500)
    assert cost_nusd(rate, TokenUsage(1000, 500)) == 1000 * 2500 + 500 * 10000  # $0.0075


def test_defaults_and_pricing_set_override() -> None:
    table = PriceTable()
    assert "gpt-4o" in default_prices()
    assert table.rate({}, "gpt-4o")[:2] == (2500, 10000)
    assert table.rate({}, "no-such-model") == (0, 0, 0, 0, 0)
    override = MappingProxyType({"gpt-4o": Price(1.0, 2.0), "my-model": Price(0.5, 0.25, 0.05, 0.625)})
    assert table.rate(override, "gpt-4o") == (1000, 2000, 1000, 1000, 0)  # unset cache prices: the input price
    assert table.rate(override, "my-model") == (500, 250, 50, 625, 0)
    assert table.rate(override, "gpt-4o-mini")[:2] == (150, 600)  # untouched default


def test_cache_tokens_cost_their_own_rates() -> None:
    rate = Rate(input=3000, output=15000, cache_read=300, cache_write=3750)
    # 100 plain input + 1000 cache reads + 200 cache writes, 50 output tokens
    usage = TokenUsage(1300, 50, cache_read_tokens=1000, cache_write_tokens=200)
    assert cost_nusd(rate, usage) == 100 * 3000 + 1000 * 300 + 200 * 3750 + 50 * 15000


def test_cache_writes_kept_an_hour_cost_twice_the_input_rate() -> None:
    rate = Rate(input=3000, output=15000, cache_read=300, cache_write=3750)
    # 100 plain input + 300 cache writes, 200 of them kept an hour, 50 output tokens
    usage = TokenUsage(400, 50, cache_write_tokens=300, cache_write_1h_tokens=200)
    assert cost_nusd(rate, usage) == 100 * 3000 + 100 * 3750 + 200 * 6000 + 50 * 15000
    anthropic = {"input_tokens": 10, "cache_creation_input_tokens": 300, "cache_read_input_tokens": 0,
                 "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
                 "output_tokens": 7}
    assert usage_from_anthropic(anthropic) == TokenUsage(310, 7, cache_write_tokens=300, cache_write_1h_tokens=200)
    bedrock = {"inputTokens": 10, "cacheWriteInputTokens": 300, "outputTokens": 7,
               "cacheDetails": [{"ttl": "1h", "inputTokens": 200}, {"ttl": "5m", "inputTokens": 100}]}
    assert usage_from_bedrock(bedrock)[0] == TokenUsage(310, 7, cache_write_tokens=300, cache_write_1h_tokens=200)


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


def test_a_pattern_prices_the_names_nothing_else_prices() -> None:
    """exact override > shipped exact > the longest operator pattern (routing's rule)."""
    pricing = MappingProxyType({
        "claude-*": Price(1.0, 2.0), "claude-opus-*": Price(20.0, 100.0), "*": Price(0.5, 0.5),
        "claude-opus-4-1": Price(9.0, 9.0)})
    # a name nothing prices exactly: the longest matching pattern, named in the answer
    assert price_for(pricing, "claude-opus-5-5") == ("claude-opus-*", Price(20.0, 100.0))
    assert price_for(pricing, "claude-sonnet-9") == ("claude-*", Price(1.0, 2.0))
    assert price_for(pricing, "llama-9") == ("*", Price(0.5, 0.5))
    # the shipped catalog's exact price wins over the operator's pattern, the operator's exact one over both
    assert price_for(pricing, "claude-opus-4-5") == ("claude-opus-4-5", Price(5.0, 25.0, 0.5, 6.25))
    assert price_for(pricing, "claude-opus-4-1") == ("claude-opus-4-1", Price(9.0, 9.0))
    assert price_for({}, "claude-opus-5-5") is None
    assert price_for({"claude-opus-*": Price(1, 1)}, "claude-*") is None  # a pattern is no model
    table = PriceTable()
    assert table.rate(pricing, "claude-opus-5-5") == (20000, 100000, 20000, 20000, 0)
    assert table.rate(pricing, "claude-opus-4-5")[:2] == (5000, 25000)
    assert table.priced(pricing, "llama-9") and not table.priced({}, "llama-9")
    assert unpriced(pricing, ["llama-9", "claude-x-*"]) == []
    assert unpriced({"claude-*": Price(1, 1)}, ["claude-x", "gpt-x", "gpt-*"]) == ["gpt-x"]


def test_pattern_rates_are_cached_per_name_bounded_and_dropped_on_a_config_change() -> None:
    table = PriceTable()
    first = MappingProxyType({"m-*": Price(1.0, 1.0)})
    for i in range(PATTERN_NAMES_KEPT + 50):
        assert table.rate(first, f"m-{i}")[:2] == (1000, 1000)
    assert len(table._by_pattern) == PATTERN_NAMES_KEPT  # a client's names cannot grow it without bound
    changed = MappingProxyType({"m-*": Price(2.0, 2.0)})  # copy-on-write: a new mapping is a change
    assert table.rate(changed, "m-1")[:2] == (2000, 2000) and len(table._by_pattern) == 1
    assert table.rate(MappingProxyType({}), "m-1") == (0, 0, 0, 0, 0)


def test_unpriced_answers_name_a_pattern_too() -> None:
    assert "`shieldes pricing set 'claude-opus-5-*' ...`" in unpriced_warning(["claude-opus-5-5"])
    assert price_hint("claude-opus-5-5", "claude-opus-*").endswith("`shieldes pricing set 'claude-opus-*' ...`)")
    assert price_hint("claude-opus-5-5", "*").endswith("`shieldes pricing set 'claude-opus-5-*' ...`)")
