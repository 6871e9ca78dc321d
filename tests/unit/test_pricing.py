from __future__ import annotations

from types import MappingProxyType

from shieldes.events.catalog import PricingSet
from shieldes.events.codec import Codec
from shieldes.projections.config import apply_config
from shieldes.projections.state import ConfigState, LongContext, Price
from shieldes.providers.anthropic_translate import usage_from_anthropic
from shieldes.providers.base import TokenUsage
from shieldes.providers.bedrock_answers import usage_from_bedrock
from shieldes.providers.gemini_translate import usage_from_gemini
from shieldes.providers.http import parse_usage
from shieldes.usage.pricing import (
    PATTERN_NAMES_KEPT,
    PriceTable,
    Rate,
    cost_nusd,
    default_prices,
    price_for,
    price_hint,
    pusd_per_token,
    rate_of,
    served_at,
    tokens_nusd,
    unpriced,
    unpriced_warning,
)


def test_rates_are_exact_integers() -> None:
    assert pusd_per_token(2.5) == 2_500_000
    assert pusd_per_token(0.15) == 150_000
    rate = Rate(2_500_000, 10_000_000, 2_500_000, 2_500_000)
    assert cost_nusd(rate, TokenUsage(1000, 500)) == 1000 * 2500 + 500 * 10000  # $0.0075


def test_prices_finer_than_a_nano_dollar_a_token_do_not_drift() -> None:
    """Claude 3 Haiku's cache writes ($0.3125/1M) and Nova Micro's cache reads ($0.00875/1M) cost
    a fraction of a nUSD per token: a million one-token writes cost $0.3125, not $0.312 or $0.313."""
    table = PriceTable()
    haiku, nova = table.rate({}, "claude-3-haiku-20240307"), table.rate({}, "amazon.nova-micro-v1:0")
    assert (haiku.cache_write, nova.cache_read) == (312_500, 8_750)
    writes = TokenUsage(1_000_000, 0, cache_write_tokens=1_000_000)
    assert cost_nusd(haiku, writes) == 312_500_000  # $0.3125
    assert cost_nusd(nova, TokenUsage(1_000_000, 0, cache_read_tokens=1_000_000)) == 8_750_000
    # rounded once per request, half up: 3 writes cost 937.5 nUSD
    assert cost_nusd(haiku, TokenUsage(3, 0, cache_write_tokens=3)) == 938


def test_defaults_and_pricing_set_override() -> None:
    table = PriceTable()
    assert "gpt-4o" in default_prices()
    assert table.rate({}, "gpt-4o")[:2] == (2_500_000, 10_000_000)
    assert table.rate({}, "no-such-model") == Rate(0, 0, 0, 0, 0)
    override = MappingProxyType({"gpt-4o": Price(1.0, 2.0), "my-model": Price(0.5, 0.25, 0.05, 0.625)})
    # unset cache prices: the input price
    assert table.rate(override, "gpt-4o") == Rate(1_000_000, 2_000_000, 1_000_000, 1_000_000, 0)
    assert table.rate(override, "my-model") == Rate(500000, 250000, 50000, 625000, 0)
    assert table.rate(override, "gpt-4o-mini")[:2] == (150_000, 600_000)  # untouched default


def test_cache_tokens_cost_their_own_rates() -> None:
    rate = Rate(input=3000000, output=15000000, cache_read=300000, cache_write=3750000)
    # 100 plain input + 1000 cache reads + 200 cache writes, 50 output tokens
    usage = TokenUsage(1300, 50, cache_read_tokens=1000, cache_write_tokens=200)
    assert cost_nusd(rate, usage) == 100 * 3000 + 1000 * 300 + 200 * 3750 + 50 * 15000


def test_cache_writes_kept_an_hour_cost_twice_the_input_rate() -> None:
    rate = Rate(input=3000000, output=15000000, cache_read=300000, cache_write=3750000)
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
    assert price_for(pricing, "claude-opus-4-5") == \
        ("claude-opus-4-5", Price(5.0, 25.0, 0.5, 6.25, per_web_search=0.01, multipliers=(("regional", 1.1),)))
    assert price_for(pricing, "claude-opus-4-1") == ("claude-opus-4-1", Price(9.0, 9.0))
    assert price_for({}, "claude-opus-5-5") is None
    assert price_for({"claude-opus-*": Price(1, 1)}, "claude-*") is None  # a pattern is no model
    table = PriceTable()
    assert table.rate(pricing, "claude-opus-5-5") == Rate(20000000, 100000000, 20000000, 20000000, 0)
    assert table.rate(pricing, "claude-opus-4-5")[:2] == (5_000_000, 25_000_000)
    assert table.priced(pricing, "llama-9") and not table.priced({}, "llama-9")
    assert unpriced(pricing, ["llama-9", "claude-x-*"]) == []
    assert unpriced({"claude-*": Price(1, 1)}, ["claude-x", "gpt-x", "gpt-*"]) == ["gpt-x"]


def test_pattern_rates_are_cached_per_name_bounded_and_dropped_on_a_config_change() -> None:
    table = PriceTable()
    first = MappingProxyType({"m-*": Price(1.0, 1.0)})
    for i in range(PATTERN_NAMES_KEPT + 50):
        assert table.rate(first, f"m-{i}")[:2] == (1_000_000, 1_000_000)
    assert len(table._by_pattern) == PATTERN_NAMES_KEPT  # a client's names cannot grow it without bound
    changed = MappingProxyType({"m-*": Price(2.0, 2.0)})  # copy-on-write: a new mapping is a change
    assert table.rate(changed, "m-1")[:2] == (2_000_000, 2_000_000) and len(table._by_pattern) == 1
    assert table.rate(MappingProxyType({}), "m-1") == Rate(0, 0, 0, 0, 0)


def test_unpriced_answers_name_a_pattern_too() -> None:
    assert "`shieldes pricing set 'claude-opus-5-*' ...`" in unpriced_warning(["claude-opus-5-5"])
    assert price_hint("claude-opus-5-5", "claude-opus-*").endswith("`shieldes pricing set 'claude-opus-*' ...`)")
    assert price_hint("claude-opus-5-5", "*").endswith("`shieldes pricing set 'claude-opus-5-*' ...`)")


def test_a_prompt_above_the_long_context_threshold_bills_every_token_at_the_tier() -> None:
    """Gemini 2.5 Pro: $1.25/$10 up to 200k prompt tokens, $2.50/$15 (cache reads $0.25) above, for
    the whole request; Claude Sonnet 4.5's 1M window: $6/$22.50, cache reads $0.60, writes $7.50
    (5 minutes) and twice the tier's input an hour."""
    table = PriceTable()
    pro = table.rate({}, "gemini-2.5-pro")
    assert cost_nusd(pro, TokenUsage(200_000, 1000)) == 200_000 * 1250 + 1000 * 10000
    assert cost_nusd(pro, TokenUsage(200_001, 1000, cache_read_tokens=100_000)) == \
        100_001 * 2500 + 100_000 * 250 + 1000 * 15000
    assert cost_nusd(table.rate({}, "gemini-3-pro-preview"), TokenUsage(300_000, 10)) == 300_000 * 4000 + 10 * 18000
    assert cost_nusd(table.rate({}, "gemini-2.5-flash"), TokenUsage(300_000, 10)) == 300_000 * 300 + 10 * 2500
    sonnet = table.rate({}, "claude-sonnet-4-5")
    usage = TokenUsage(250_000, 100, cache_read_tokens=100_000, cache_write_tokens=50_000, cache_write_1h_tokens=10_000)
    assert cost_nusd(sonnet, usage) == 100_000 * 6000 + 100_000 * 600 + 40_000 * 7500 + 10_000 * 12000 + 100 * 22500
    for model in ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5@20250929", "claude-sonnet-4-0"):
        assert table.rate({}, model).long is not None, model
    # an override without a tier has none: the operator's price is the whole price
    assert table.rate(MappingProxyType({"gemini-2.5-pro": Price(1.0, 2.0)}), "gemini-2.5-pro").long is None


def test_long_context_prices_replay_list_and_survive_a_snapshot() -> None:
    from shieldes.snapshots import codec as snapcodec
    from shieldes.usage.catalog import price_rows

    codec = Codec()
    event = PricingSet("m", 1.0, 2.0, long_above_tokens=1000, long_input_per_1m=4.0, long_output_per_1m=8.0,
                       long_cache_read_per_1m=0.4)
    type_, version, data = codec.encode(event)
    assert version == 1 and codec.decode(type_, version, data) == event
    state = apply_config(ConfigState(), event)
    assert state.pricing["m"] == Price(1.0, 2.0, long_context=LongContext(1000, 4.0, 8.0, 0.4))
    again = snapcodec.config_from_plain(snapcodec.config_to_plain(state))
    assert again.pricing == state.pricing
    row = next(r for r in price_rows(state.pricing) if r["model"] == "m")
    assert row["long_context"] == {"above_tokens": 1000, "input_per_1m": 4.0, "output_per_1m": 8.0,
                                   "cache_read_per_1m": 0.4}
    shipped = next(r for r in price_rows({}) if r["model"] == "gemini-2.5-pro")
    assert shipped["long_context"] == {"above_tokens": 200000, "input_per_1m": 2.5, "output_per_1m": 15.0,
                                       "cache_read_per_1m": 0.25}


def test_litellm_above_200k_fields_import_as_the_long_context_tier() -> None:
    from shieldes.importers.prices import parse_litellm_prices

    doc = {"gemini-2.5-pro": {"mode": "chat", "input_cost_per_token": 1.25e-06, "output_cost_per_token": 1e-05,
                              "input_cost_per_token_above_200k_tokens": 2.5e-06,
                              "output_cost_per_token_above_200k_tokens": 1.5e-05,
                              "cache_read_input_token_cost_above_200k_tokens": 2.5e-07}}
    prices, _, _ = parse_litellm_prices(doc)
    assert prices[0].long_context == LongContext(200_000, 2.5, 15.0, 0.25, None)


def test_web_searches_cost_the_per_search_price_and_survive_a_snapshot() -> None:
    from shieldes.importers.prices import parse_litellm_prices
    from shieldes.snapshots import codec as snapcodec

    usage = usage_from_anthropic({"input_tokens": 10, "output_tokens": 5,
                                  "server_tool_use": {"web_search_requests": 3}})
    assert usage == TokenUsage(10, 5, web_search_requests=3)
    sonnet = PriceTable().rate({}, "claude-sonnet-4-5")
    assert cost_nusd(sonnet, usage) == 10 * 3000 + 5 * 15000 + 3 * 10_000_000  # $0.01 a search
    assert cost_nusd(sonnet, TokenUsage(300_000, 5, web_search_requests=1)) == \
        300_000 * 6000 + 5 * 22500 + 10_000_000  # the long-context tier keeps the search fee
    for priced in (Price(1.0, 2.0, per_web_search=0.02),
                   Price(1.0, 2.0, None, None, None, LongContext(10, 2.0, 4.0), 0.02),
                   Price(1.0, 2.0, long_context=LongContext(10, 2.0, 4.0))):
        state = apply_config(ConfigState(), PricingSet(
            "m", 1.0, 2.0, long_above_tokens=priced.long_context and priced.long_context.above_tokens,
            long_input_per_1m=priced.long_context and 2.0, long_output_per_1m=priced.long_context and 4.0,
            per_web_search=priced.per_web_search))
        assert state.pricing["m"] == priced
        assert snapcodec.config_from_plain(snapcodec.config_to_plain(state)).pricing == state.pricing
    doc = {"claude-sonnet-4-5": {"mode": "chat", "litellm_provider": "anthropic", "input_cost_per_token": 3e-06,
                                 "output_cost_per_token": 1.5e-05,
                                 "search_context_cost_per_query": {"search_context_size_medium": 0.01}},
           "gemini-2.5-pro": {"mode": "chat", "litellm_provider": "gemini", "input_cost_per_token": 1.25e-06,
                              "output_cost_per_token": 1e-05,
                              "search_context_cost_per_query": {"search_context_size_medium": 0.035}}}
    prices = {p.model: p for p in parse_litellm_prices(doc)[0]}
    assert prices["claude-sonnet-4-5"].per_web_search == 0.01 and prices["gemini-2.5-pro"].per_web_search == 0.035


def test_an_answer_costs_the_multiplier_of_the_tier_that_served_it() -> None:
    table = PriceTable()
    gpt5 = table.rate({}, "gpt-5")  # $1.25 / $0.125 cached / $10 per 1M; flex half, priority twice
    usage = TokenUsage(1000, 100, cache_read_tokens=400)
    standard = 600 * 1250 + 400 * 125 + 100 * 10_000
    assert cost_nusd(gpt5, usage) == cost_nusd(gpt5, usage._replace(service_tier="default")) == standard
    assert cost_nusd(gpt5, usage._replace(service_tier="flex")) == standard // 2
    assert cost_nusd(gpt5, usage._replace(service_tier="priority")) == standard * 2
    assert cost_nusd(gpt5, usage._replace(service_tier="scale")) == standard
    # gpt-4o-mini's priority prices ($0.25 / $0.125 / $1.00) are 5/3 of its list, not a decimal factor:
    # the shipped factor, rounded per token rate, gives them exactly
    mini = served_at(table.rate({}, "gpt-4o-mini"), "priority")
    assert (mini.input, mini.cache_read, mini.output) == (pusd_per_token(0.25), pusd_per_token(0.125),
                                                          pusd_per_token(1.0))
    # a model without a factor for the tier bills the answer at its list price
    assert cost_nusd(table.rate({}, "gpt-4o"), TokenUsage(10, 10, service_tier="flex")) == 10 * 2500 + 10 * 10_000
    # the long-context tier is scaled too
    priced = MappingProxyType({"m": Price(1.0, 2.0, long_context=LongContext(100, 2.0, 4.0),
                                          multipliers=(("priority", 1.5),))})
    assert cost_nusd(table.rate(priced, "m"), TokenUsage(200, 10, service_tier="priority")) == \
        200 * 3000 + 10 * 6000


def test_service_tiers_are_read_from_every_upstream() -> None:
    assert parse_usage({"prompt_tokens": 3, "completion_tokens": 1}, "flex") == TokenUsage(3, 1, service_tier="flex")
    assert usage_from_anthropic({"input_tokens": 3, "output_tokens": 1, "service_tier": "priority"}) == \
        TokenUsage(3, 1, service_tier="priority")
    assert usage_from_anthropic({"input_tokens": 3, "output_tokens": 1, "service_tier": "standard"}) == \
        TokenUsage(3, 1, service_tier="default")
    assert usage_from_bedrock({"inputTokens": 3, "outputTokens": 1}, "flex")[0] == TokenUsage(3, 1, service_tier="flex")
    assert usage_from_gemini({"promptTokenCount": 3, "candidatesTokenCount": 1,
                              "trafficType": "ON_DEMAND_PRIORITY"})[0] == TokenUsage(3, 1, service_tier="priority")


def test_multipliers_are_checked_replayed_listed_and_survive_a_snapshot() -> None:
    import pytest

    from shieldes.errors import CommandRejected
    from shieldes.projections.shared_commands import SetPricing, decide_shared
    from shieldes.snapshots import codec as snapcodec
    from shieldes.usage.catalog import price_rows

    [event] = decide_shared(ConfigState(), SetPricing("m", 1.0, 2.0, multipliers=(("flex", 0.5), ("priority", 2))))
    assert isinstance(event, PricingSet) and event.multipliers == {"flex": 0.5, "priority": 2.0}
    codec = Codec()
    assert codec.decode(*codec.encode(event)) == event
    state = apply_config(ConfigState(), event)
    assert state.pricing["m"] == Price(1.0, 2.0, multipliers=(("flex", 0.5), ("priority", 2.0)))
    assert snapcodec.config_from_plain(snapcodec.config_to_plain(state)).pricing == state.pricing
    assert next(r for r in price_rows(state.pricing) if r["model"] == "m")["multipliers"] == \
        {"flex": 0.5, "priority": 2.0}
    assert next(r for r in price_rows({}) if r["model"] == "o3")["multipliers"] == {"flex": 0.5}
    for bad in ((("batch", 0.5),), (("flex", 0.0),), (("flex", -1.0),), (("priority", 1000.0),)):
        with pytest.raises(CommandRejected, match="--multiplier"):
            decide_shared(ConfigState(), SetPricing("m", 1.0, 2.0, multipliers=bad))
    # an event of the previous release (no multipliers) replays as a price without any
    assert apply_config(ConfigState(), PricingSet("m", 1.0, 2.0)).pricing["m"].multipliers == ()


def test_a_regional_vertex_endpoint_costs_the_regional_multiplier() -> None:
    from shieldes.usage.pricing import regional

    assert regional("vertex", {"location": "us-east5"}) and not regional("vertex", {"location": "global"})
    assert not regional("vertex", {}) and not regional("anthropic", {"location": "us-east5"})
    table = PriceTable()
    usage = TokenUsage(1000, 100)
    for model in ("claude-sonnet-4-5@20250929", "claude-opus-4-5@20251101", "claude-haiku-4-5"):
        rate = table.rate({}, model)
        assert cost_nusd(served_at(rate, None, True), usage) == round(cost_nusd(rate, usage) * 1.1), model
    # earlier Claude models cost the same at every Vertex endpoint
    opus41 = table.rate({}, "claude-opus-4-1@20250805")
    assert served_at(opus41, None, True) == opus41


def test_hosted_tool_uses_are_counted_from_the_output_and_cost_their_per_use_prices() -> None:
    import pytest

    from shieldes.errors import CommandRejected
    from shieldes.projections.shared_commands import SetPricing, decide_shared
    from shieldes.providers.hosted_tools import openai_hosted, with_hosted
    from shieldes.snapshots import codec as snapcodec

    output = [{"type": "web_search_call", "id": "ws_1", "action": {"type": "search"}},
              {"type": "web_search_call", "id": "ws_2", "action": {"type": "open_page"}},
              {"type": "file_search_call", "id": "fs_1", "queries": ["q"]},
              {"type": "code_interpreter_call", "id": "ci_1", "container_id": "cntr_a"},
              {"type": "code_interpreter_call", "id": "ci_2", "container_id": "cntr_a"},  # the same container
              {"type": "code_interpreter_call", "id": "ci_3", "container_id": "cntr_b"},
              {"type": "message", "content": []}, "junk", {"type": None}]
    assert openai_hosted(output) == (2, 1, frozenset({"cntr_a", "cntr_b"}))
    assert openai_hosted(None) == openai_hosted({"type": "message"}) == (0, 0, frozenset())
    usage = with_hosted(TokenUsage(100, 10), output)
    assert usage == TokenUsage(100, 10, web_search_requests=2, file_search_calls=1, containers=2)
    assert with_hosted(TokenUsage(1, 1, web_search_requests=5), output).web_search_requests == 5  # the upstream's
    gpt4o = PriceTable().rate({}, "gpt-4o")
    assert cost_nusd(gpt4o, usage) == 100 * 2500 + 10 * 10_000 + 2 * 10_000_000 + 2_500_000 + 2 * 30_000_000
    # the long-context tier keeps the per-use prices
    priced = MappingProxyType({"m": Price(1.0, 2.0, long_context=LongContext(10, 2.0, 4.0),
                                          per_use=(("file_search", 0.01),))})
    assert cost_nusd(PriceTable().rate(priced, "m"), TokenUsage(20, 0, file_search_calls=1)) == 20 * 2000 + 10_000_000
    [event] = decide_shared(ConfigState(), SetPricing("m", 1.0, 2.0, per_use=(("container", 0.03),)))
    state = apply_config(ConfigState(), event)
    assert state.pricing["m"].per_use == (("container", 0.03),)
    assert snapcodec.config_from_plain(snapcodec.config_to_plain(state)).pricing == state.pricing
    for bad in ((("web_search", 0.01),), (("container", -1.0),)):
        with pytest.raises(CommandRejected, match="--per-use"):
            decide_shared(ConfigState(), SetPricing("m", 1.0, 2.0, per_use=bad))


def test_gemini_grounding_counts_prompts_before_gemini_3_and_queries_from_it() -> None:
    from shieldes.providers.hosted_tools import gemini_grounding

    def answer(version: str, *queries: list[str]) -> dict[str, object]:
        return {"modelVersion": version, "candidates": [
            {"content": {}, "groundingMetadata": {"webSearchQueries": q}} for q in queries]}

    assert gemini_grounding(answer("gemini-2.5-flash", ["a", "b"], ["b", "c"])) == 1
    assert gemini_grounding(answer("gemini-3-pro-preview", ["a", "b"], ["b", "c"])) == 3
    assert gemini_grounding(answer("gemini-3-pro-preview", [])) == 0
    assert gemini_grounding({"candidates": [{"content": {}}]}) == gemini_grounding(None) == 0
    three = PriceTable().rate({}, "gemini-3-pro-preview")
    assert cost_nusd(three, TokenUsage(10, 0, web_search_requests=3)) == 10 * 2000 + 3 * 14_000_000


def test_litellm_flex_and_priority_prices_import_as_multipliers() -> None:
    from shieldes.importers.prices import parse_litellm_prices

    doc = {"gpt-4o-mini": {"mode": "chat", "input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07,
                           "input_cost_per_token_priority": 2.5e-07, "output_cost_per_token_priority": 1e-06},
           "o3": {"mode": "chat", "input_cost_per_token": 2e-06, "output_cost_per_token": 8e-06,
                  "input_cost_per_token_flex": 1e-06, "input_cost_per_token_priority": 3.5e-06},
           "gpt-4": {"mode": "chat", "input_cost_per_token": 3e-05, "output_cost_per_token": 6e-05}}
    prices = {p.model: p for p in parse_litellm_prices(doc)[0]}
    assert prices["gpt-4o-mini"].multipliers == (("priority", 1.666667),)
    assert prices["o3"].multipliers == (("flex", 0.5), ("priority", 1.75))
    assert prices["gpt-4"].multipliers == ()
    mini = served_at(rate_of(Price(0.15, 0.6, multipliers=prices["gpt-4o-mini"].multipliers)), "priority")
    assert (mini.input, mini.output) == (pusd_per_token(0.25), pusd_per_token(1.0))  # exactly the file's


def test_a_container_is_billed_once_per_session_however_many_answers_name_it() -> None:
    from shieldes.providers.hosted_tools import with_hosted
    from shieldes.usage.container_sessions import SESSION_SECONDS, ContainerSessions

    now = [1000.0]
    sessions = ContainerSessions(clock=lambda: now[0])

    def turn(*ids: str) -> int:
        output = [{"type": "code_interpreter_call", "container_id": c} for c in ids]
        return with_hosted(TokenUsage(1, 1), output, sessions.bill).containers

    assert turn("cntr_a", "cntr_a") == 1  # one container, two calls: one session
    now[0] += 60
    assert turn("cntr_a") == 0  # the next turn reuses it: already billed this session
    assert turn("cntr_a", "cntr_b") == 1  # only the new one
    now[0] += SESSION_SECONDS - 60
    assert turn("cntr_a") == 1  # 20 minutes after its session began: a new session
    assert turn("cntr_b") == 0  # cntr_b's began a minute later
    now[0] += 60
    assert turn("cntr_b") == 1
    assert turn() == 0


def test_the_hosted_tools_a_request_offers_are_held_at_their_bound() -> None:
    from shieldes.providers.hosted_tools import USES_HELD, held_uses, may_offer

    openai_tools = [{"type": "web_search"}, {"type": "file_search", "vector_store_ids": ["vs"]},
                    {"type": "code_interpreter", "container": {"type": "auto"}}, {"type": "function", "name": "f"}]
    assert held_uses(openai_tools, "gpt-5") == (USES_HELD, USES_HELD, 1)
    assert held_uses(openai_tools, "gpt-5", max_tool_calls=2) == (2, 2, 1)  # the Responses API's bound
    assert held_uses(openai_tools, "gpt-5", max_tool_calls=0) == (0, 0, 0)
    claude = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}, {"name": "f", "input_schema": {}}]
    assert held_uses(claude, "claude-sonnet-4-5") == (3, 0, 0)
    assert held_uses([{"type": "web_search_20250305", "name": "web_search"}], "claude-sonnet-4-5") == (USES_HELD, 0, 0)
    assert held_uses([{"google_search": {}}], "gemini-2.5-flash") == (1, 0, 0)  # billed per grounded prompt
    assert held_uses([{"googleSearch": {}}], "gemini-3-pro-preview") == (USES_HELD, 0, 0)  # per query
    assert held_uses(None, "m") == held_uses([{"type": "function"}], "m") == held_uses("x", "m") == (0, 0, 0)
    assert may_offer(b'[{"type":"web_search_20250305"}]') and not may_offer(b'[{"name":"get_weather"}]')


def test_a_vertex_flex_paygo_answer_costs_half_the_standard_price() -> None:
    """Vertex AI's Flex PayGo is 50% off Standard PayGo; an answer says it in trafficType."""
    from shieldes.providers.tiers import from_vertex

    table = PriceTable()
    for model in ("gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-3-pro-preview"):
        rate = table.rate({}, model)
        tier = from_vertex({"promptTokenCount": 10, "trafficType": "ON_DEMAND_FLEX"})
        assert tier == "flex"
        flex = cost_nusd(rate, TokenUsage(1000, 100, service_tier=tier))
        assert flex * 2 == cost_nusd(rate, TokenUsage(1000, 100)), model
        # priority: no published factor shipped, billed at the standard price
        assert cost_nusd(rate, TokenUsage(1000, 100, service_tier="priority")) == cost_nusd(rate, TokenUsage(1000, 100))


def test_deepseek_cache_hits_cost_the_cache_read_price() -> None:
    """DeepSeek reports its cache hits as prompt_cache_hit_tokens (part of prompt_tokens), not in
    prompt_tokens_details: they cost the cache-read price ($0.028/1M, a tenth of the input's)."""
    usage = parse_usage({"prompt_tokens": 1000, "completion_tokens": 10, "total_tokens": 1010,
                         "prompt_cache_hit_tokens": 800, "prompt_cache_miss_tokens": 200})
    assert usage == TokenUsage(1000, 10, cache_read_tokens=800)
    rate = PriceTable().rate({}, "deepseek-chat")
    assert cost_nusd(rate, usage) == (200 * 280_000 + 800 * 28_000 + 10 * 420_000 + 500) // 1000
    # OpenAI's own field wins where both are given; a count above the prompt is ignored
    both = {"prompt_tokens": 1000, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 512},
            "prompt_cache_hit_tokens": 800}
    assert parse_usage(both) == TokenUsage(1000, 1, cache_read_tokens=512)
    assert parse_usage({"prompt_tokens": 10, "completion_tokens": 1, "prompt_cache_hit_tokens": 11}) == \
        TokenUsage(10, 1)


def test_modality_prices_bill_audio_and_image_tokens_and_survive_a_snapshot() -> None:
    import pytest

    from shieldes.errors import CommandRejected
    from shieldes.projections.shared_commands import SetPricing, decide_shared
    from shieldes.providers.modalities import gemini_modal
    from shieldes.snapshots import codec as snapcodec
    from shieldes.usage.catalog import price_rows
    from shieldes.usage.media import reported
    from shieldes.usage.pricing import held

    kinds = (("audio_cache_read", 4.0), ("audio_input", 40.0), ("audio_output", 80.0))
    [event] = decide_shared(ConfigState(), SetPricing("m", 2.5, 10.0, 1.25, modalities=kinds))
    assert isinstance(event, PricingSet) and event.modalities == dict(kinds)
    codec = Codec()
    assert codec.decode(*codec.encode(event)) == event
    state = apply_config(ConfigState(), event)
    assert state.pricing["m"] == Price(2.5, 10.0, 1.25, modalities=kinds)
    assert snapcodec.config_from_plain(snapcodec.config_to_plain(state)).pricing == state.pricing
    assert next(r for r in price_rows(state.pricing) if r["model"] == "m")["modalities"] == dict(kinds)
    with pytest.raises(CommandRejected, match="--modality video_input"):
        decide_shared(ConfigState(), SetPricing("m", 1.0, 2.0, modalities=(("video_input", 1.0),)))
    # an event of the previous release (no modalities) replays as a price without any
    assert apply_config(ConfigState(), PricingSet("m", 1.0, 2.0)).pricing["m"].modalities == ()

    rate = rate_of(state.pricing["m"])
    # 1000 prompt tokens, 300 of them audio (100 of those cached), 200 cached text; 50 of 80 out audio
    usage = TokenUsage(1000, 80, cache_read_tokens=300,
                       modal=(("audio_cache_read", 100), ("audio_input", 300), ("audio_output", 50)))
    assert cost_nusd(rate, usage) == (500 * 2500 + 200 * 40_000 + 200 * 1250 + 100 * 4000
                                      + 30 * 10_000 + 50 * 80_000)
    # counts above what the upstream billed are not believed; without a kind's price, the text price
    assert cost_nusd(rate, TokenUsage(10, 1, modal=(("audio_input", 99), ("audio_output", 9)))) == \
        10 * 40_000 + 80_000
    text_only = rate_of(Price(2.5, 10.0))
    assert cost_nusd(text_only, usage) == cost_nusd(text_only, TokenUsage(1000, 80, 300))
    # a budget holds every token at the dearest price it may cost
    assert cost_nusd(held(rate), TokenUsage(100, 10)) == 100 * 40_000 + 10 * 80_000
    assert held(rate_of(Price(1.0, 2.0))) == rate_of(Price(1.0, 2.0))

    # what the upstreams report: OpenAI chat, the image API, Gemini by modality
    chat = parse_usage({"prompt_tokens": 150, "completion_tokens": 40,
                        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 120},
                        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 32}})
    assert chat is not None and chat.modal == (("audio_input", 120), ("audio_output", 32))
    image = reported({"input_tokens": 600, "output_tokens": 4160, "total_tokens": 4760,
                      "input_tokens_details": {"text_tokens": 50, "image_tokens": 550}})
    assert image is not None and image.usage.modal == (("image_input", 550),)
    gpt_image = PriceTable().rate({}, "gpt-image-1")
    assert cost_nusd(gpt_image, image.usage) == 50 * 5000 + 550 * 10_000 + 4160 * 40_000
    meta = {"promptTokenCount": 200, "candidatesTokenCount": 1290,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 104}, {"modality": "AUDIO", "tokenCount": 96}],
            "cacheTokensDetails": [{"modality": "AUDIO", "tokenCount": 64}],
            "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": 1290}]}
    assert gemini_modal(meta) == (("audio_cache_read", 64), ("audio_input", 96), ("image_output", 1290))
    assert usage_from_gemini(meta)[0].modal == gemini_modal(meta)
    flash_image = PriceTable().rate({}, "gemini-2.5-flash-image")
    assert cost_nusd(flash_image, usage_from_gemini(meta)[0]) == 104 * 300 + 96 * 1000 + 1290 * 30_000


def test_a_transcription_bills_its_audio_at_the_audio_price_and_a_text_prompt_at_the_text_price() -> None:
    from shieldes.usage.media import reported, transcription_estimate

    heard = reported({"type": "tokens", "input_tokens": 120, "output_tokens": 30, "total_tokens": 150,
                      "input_token_details": {"audio_tokens": 100, "text_tokens": 20}})
    assert heard is not None
    rate = PriceTable().rate({}, "gpt-4o-transcribe")  # $2.50 text, $6 audio input, $10 output per 1M
    assert cost_nusd(rate, heard.usage) == 100 * 6000 + 20 * 2500 + 30 * 10_000
    guess = transcription_estimate("gpt-4o-transcribe", 40_000).usage  # no usage: audio tokens, estimated
    assert cost_nusd(rate, guess) == guess.prompt_tokens * 6000 + guess.completion_tokens * 10_000


def test_cached_audio_costs_the_cached_audio_price_or_the_audio_price_at_the_models_cache_discount() -> None:
    """OpenAI's chat usage says how many prompt tokens were cached and how many audio, not which
    cached ones were audio: audio beyond the uncached tokens can only be cached, and costs the cached
    audio price where the model has one, else the audio price at the discount the model gives text
    cache reads (none for gpt-4o-audio-preview, which lists no cached price: its $40; Gemini's
    tenth, Google's listed cached audio prices). That audio had cost the text cache-read price."""
    chat = parse_usage({"prompt_tokens": 1000, "completion_tokens": 50,
                        "prompt_tokens_details": {"cached_tokens": 800, "audio_tokens": 900},
                        "completion_tokens_details": {"audio_tokens": 40}})
    assert chat is not None
    # 200 uncached (all audio), 700 cached audio, 100 cached text; 40 audio and 10 text tokens out
    audio = PriceTable().rate({}, "gpt-4o-audio-preview")  # $2.50 / $10 text, $40 / $80 audio
    assert cost_nusd(audio, chat) == 200 * 40_000 + 700 * 40_000 + 100 * 2_500 + 40 * 80_000 + 10 * 10_000
    realtime = rate_of(Price(4.0, 16.0, 0.4, modalities=(("audio_cache_read", 2.5), ("audio_input", 32.0),
                                                         ("audio_output", 64.0))))
    assert cost_nusd(realtime, chat) == 200 * 32_000 + 700 * 2_500 + 100 * 400 + 40 * 64_000 + 10 * 16_000
    # Gemini says its cached audio: at 2.5 Flash's $0.10 (a tenth of $1, as text's $0.03 of $0.30)
    flash = PriceTable().rate({}, "gemini-2.5-flash")
    gemini = TokenUsage(1000, 0, cache_read_tokens=500, modal=(("audio_cache_read", 400), ("audio_input", 600)))
    assert cost_nusd(flash, gemini) == 300 * 300 + 200 * 1_000 + 100 * 30 + 400 * 100


def test_an_estimate_of_text_tokens_costs_what_their_usage_costs() -> None:
    table = PriceTable()
    for model in ("gpt-4o", "gemini-2.5-pro", "claude-sonnet-4-5", "gpt-4o-audio-preview"):
        rate = table.rate({}, model)
        for prompt, completion in ((0, 0), (1, 1), (1000, 256), (200_001, 4096), (300_000, 1)):
            assert tokens_nusd(rate, prompt, completion) == cost_nusd(rate, TokenUsage(prompt, completion))
