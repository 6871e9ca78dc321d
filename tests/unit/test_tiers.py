"""The tier an upstream says served an answer, in OpenAI's and Anthropic's words."""

from __future__ import annotations

from shieldes.providers.tiers import from_anthropic, from_bedrock, from_vertex, stamped, to_anthropic


def test_each_upstreams_report_in_openais_words_or_none() -> None:
    assert [from_anthropic({"service_tier": t}) for t in ("standard", "priority", "batch", None)] == [
        "default", "priority", None, None]
    assert [from_bedrock({"serviceTier": {"type": t}}) for t in ("default", "priority", "flex", "reserved", "x")] == [
        "default", "priority", "flex", "scale", None]
    assert [from_vertex({"trafficType": t}) for t in ("ON_DEMAND", "ON_DEMAND_PRIORITY", "ON_DEMAND_FLEX",
                                                      "PROVISIONED_THROUGHPUT", "TRAFFIC_TYPE_UNSPECIFIED")] == [
        "default", "priority", "flex", "scale", None]
    assert from_anthropic(None) is None and from_bedrock({"serviceTier": "default"}) is None
    assert from_vertex({"promptTokenCount": 3}) is None  # the Gemini API reports no tier


def test_anthropic_words_only_for_anthropics_tiers() -> None:
    assert [to_anthropic(t) for t in ("default", "priority", "flex", "scale", "auto", None)] == [
        "standard", "priority", None, None, None, None]
    assert stamped({"id": "x"}, None) == {"id": "x"} and stamped({"id": "x"}, "flex")["service_tier"] == "flex"
