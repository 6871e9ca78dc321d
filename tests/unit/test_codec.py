"""The codec: every event type survives encode -> JSON -> decode, and old versions are upcast."""

from __future__ import annotations

import dataclasses
import json
from typing import ClassVar

import pytest

from shieldes.errors import UnknownEvent
from shieldes.events import catalog as c
from shieldes.events.codec import Codec, canonical_json

DELTA = c.UsageDelta("key_1", None, "openai", "gpt-4o", 491_000, 2, 100, 20, 1_500_000)
SAMPLES: list[c.Event] = [
    c.ProviderAdded(
        "openai", "openai", "https://api.openai.com/v1", "env:OPENAI_API_KEY", ("gpt-4o", "m"), 2.5
    ),
    c.ProviderAdded("claude", "anthropic", "https://api.anthropic.com", None, ("claude",)),
    c.ProviderUpdated("openai", "https://x.io", "enc:gAAAA", ("gpt-4o",), 1.0),
    c.ProviderAdded("az", "azure", "https://r.openai.azure.com", None, ("d",), 1.0,
                    options={"api_version": "2024-10-21"}),
    c.ProviderUpdated("az", "https://r2.openai.azure.com", None, ("d",), 1.0, options={"api_version": "v"}),
    c.ProviderRemoved("openai"),
    c.ModelAliasSet("gpt-4o", ({"provider": "az", "model": "d", "weight": 3.0},), ("claude",)),
    c.ModelAliasRemoved("gpt-4o"),
    c.PricingSet("gpt-4o", 2.5, 10.0),
    c.PricingSet("claude-opus-*", 15.0, 75.0),
    c.PricingUnset("claude-opus-*"),
    c.RoutingSet("gpt-4o", "cost"),
    c.RoutingSet("gpt-4o", None),
    c.TeamCreated("team_1", "eng"),
    c.VirtualKeyCreated("key_1", "app", "ab" * 32, "sk-shd-abcd", ("gpt-4o",), "team_1", 1.8e9),
    c.VirtualKeyCreated("key_2", "all", "cd" * 32, "sk-shd-cdef", None),
    c.VirtualKeyUpdated("key_1", None, None, None),
    c.VirtualKeyRevoked("key_1"),
    c.VirtualKeyRotated("key_1", "ef" * 32, "sk-shd-efgh"),
    c.BudgetSet("key", "key_1", 5.0, "1mo"),
    c.BudgetSet("team", "team_1", None, "30d"),
    c.BudgetRemoved("team", "team_1"),
    c.RateLimitSet("key_1", 60, None),
    c.AdminTokenCreated("adm_1", "ci", "operator", "ab" * 32, "shd-adm-abcd"),
    c.AdminTokenRevoked("adm_1"),
    c.VirtualKeyCreated("key_3", "agent", "ef" * 32, "sk-shd-ef01", None, mcp=("github", "jira/search")),
    c.VirtualKeyUpdated("key_3", None, None, None, mcp=()),
    c.McpServerAdded("github", "https://mcp.example.com/mcp", {"Authorization": "enc:gAAAA"}),
    c.McpServerUpdated("github", "https://mcp.example.com/mcp", {"Authorization": "enc:v2:k1:gAAAA"}),
    c.McpServerRemoved("github"),
    c.OidcSessionStarted("ses_1", "ana@example.com", "operator", 1764892800.0, 1764921600.0),
    c.OidcSessionEnded("ses_1", "ana@example.com", "revoked", 1764900000.5),
    c.UsageRecorded("n1", 3, 42, (DELTA, dataclasses.replace(DELTA, team_id="team_1"))),
    c.UsageRolledUp(10, 1, 99, (DELTA,)),
]


def test_samples_cover_every_event_type() -> None:
    assert {type(e) for e in SAMPLES} == set(c.ALL_EVENTS)


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.TYPE)
def test_round_trip_through_json(event: c.Event) -> None:
    codec = Codec()
    type_, version, data = codec.encode(event)
    assert (type_, version) == (event.TYPE, event.VERSION)
    stored = json.loads(canonical_json(data))  # what jsonb gives back
    assert codec.decode(type_, version, stored) == event
    assert "kind" not in stored or isinstance(stored["kind"], str)


def test_unknown_type_and_future_version_are_refused() -> None:
    with pytest.raises(UnknownEvent, match="unknown event type"):
        Codec().decode("virtual_key.exploded", 1, {})
    with pytest.raises(UnknownEvent, match="newer than this shieldes"):
        Codec().decode("pricing.set", 2, {"model": "m", "input_per_1m": 1, "output_per_1m": 1})


@dataclasses.dataclass(frozen=True)
class PricingSetV3(c.Event):
    """A later shape of pricing.set: prices per 1k tokens and a currency."""

    TYPE: ClassVar[str] = "pricing.set"
    VERSION: ClassVar[int] = 3
    model: str
    input_per_1k: float
    output_per_1k: float
    currency: str


def test_upcasters_lift_old_versions_step_by_step() -> None:
    def v1_to_v2(d: dict[str, object]) -> dict[str, object]:
        return {
            "model": d["model"],
            "input_per_1k": d["input_per_1m"] / 1000,  # type: ignore[operator]
            "output_per_1k": d["output_per_1m"] / 1000,
        }  # type: ignore[operator]

    def v2_to_v3(d: dict[str, object]) -> dict[str, object]:
        return {**d, "currency": "USD"}

    classes = {**Codec().classes, "pricing.set": PricingSetV3}
    codec = Codec(upcasters={("pricing.set", 1): v1_to_v2, ("pricing.set", 2): v2_to_v3}, classes=classes)
    old = {"model": "gpt-4o", "input_per_1m": 2500.0, "output_per_1m": 10000.0}
    assert codec.decode("pricing.set", 1, old) == PricingSetV3("gpt-4o", 2.5, 10.0, "USD")
    assert codec.decode("pricing.set", 2, v1_to_v2(old)) == PricingSetV3("gpt-4o", 2.5, 10.0, "USD")
    missing = Codec(upcasters={("pricing.set", 1): v1_to_v2}, classes=classes)
    with pytest.raises(UnknownEvent, match=r"no upcaster for pricing\.set v2"):
        missing.decode("pricing.set", 1, old)


def test_usage_deltas_carry_media_units_only_when_there_are_some() -> None:
    """images, audio_seconds and characters are optional members of a stored delta: absent when zero
    (a delta written before them, or by a release without them, reads as zero of each), and a
    delta that has them keeps them through encode and decode, compaction's stored shape included."""
    codec = Codec()
    media = dataclasses.replace(DELTA, model="tts-1", prompt_tokens=0, completion_tokens=0, characters=28)
    seconds = dataclasses.replace(DELTA, model="whisper-1", audio_seconds=6)
    images = dataclasses.replace(DELTA, model="dall-e-3", images=2, characters=0)
    event = c.UsageRecorded("n1", 1, 7, (DELTA, media, seconds, images))
    _, version, data = codec.encode(event)
    stored = json.loads(json.dumps(data))
    assert version == 1  # still v1: a node of the previous release reads it (ignoring the units)
    assert [sorted(set(d) - {f.name for f in dataclasses.fields(c.UsageDelta)[:9]}) for d in stored["deltas"]] == [
        [], ["characters"], ["audio_seconds"], ["images"]]
    decoded = codec.decode("usage.recorded", 1, stored)
    assert decoded == event
    assert [(d.images, d.audio_seconds, d.characters) for d in decoded.deltas] == [  # type: ignore[attr-defined]
        (0, 0, 0), (0, 0, 28), (0, 6, 0), (2, 0, 0)]
    every = dict(stored["deltas"][0], images=1, audio_seconds=2, characters=3)  # all members present
    assert codec.decode("usage.rolled_up", 1, {"replaced_events": 1, "first_position": 1, "last_position": 1,
                                                "deltas": [every]}).deltas[0].characters == 3  # type: ignore[attr-defined]


def test_usage_deltas_carry_hosted_tool_uses_only_when_there_are_some() -> None:
    """web_searches, file_searches, containers and tools_nusd are optional members too: absent when
    zero, kept through encode and decode, and zero in a delta written before them."""
    codec = Codec()
    tools = dataclasses.replace(DELTA, model="gpt-5", web_searches=2, file_searches=1, containers=1,
                                tools_nusd=52_500_000)
    event = c.UsageRecorded("n1", 1, 8, (DELTA, tools))
    _, version, data = codec.encode(event)
    stored = json.loads(json.dumps(data))
    assert version == 1
    assert sorted(stored["deltas"][1]) == sorted([*stored["deltas"][0], "web_searches", "file_searches",
                                                   "containers", "tools_nusd"])
    assert "web_searches" not in stored["deltas"][0]
    decoded = codec.decode("usage.recorded", 1, stored)
    assert decoded == event
    assert [(d.web_searches, d.tools_nusd) for d in decoded.deltas] == [(0, 0), (2, 52_500_000)]  # type: ignore[attr-defined]
