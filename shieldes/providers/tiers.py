"""The service tier that served an answer, as each upstream reports it, in OpenAI's words (the
`service_tier` of chat answers, their chunks and Responses objects) and in Anthropic's (a Messages
answer's `usage.service_tier`). Pure: a report that has no counterpart gives None, and an answer
whose upstream reports nothing says nothing (never a guess)."""

from __future__ import annotations

from typing import Any

from shieldes.providers.base import Body

SERVICE_TIER = "service_tier"

# Anthropic's usage.service_tier: the standard tier is OpenAI's default; `batch` (the Batches API,
# which this gateway does not call) has no chat-tier word
_FROM_ANTHROPIC = {"standard": "default", "priority": "priority"}
# Bedrock's serviceTier.type (ConverseResponse and the ConverseStream metadata event): `reserved`
# is capacity reserved ahead, what OpenAI calls its scale tier
_FROM_BEDROCK = {"default": "default", "priority": "priority", "flex": "flex", "reserved": "scale"}
# Vertex's usageMetadata.trafficType (the Gemini API reports none): Provisioned Throughput is
# throughput bought ahead, OpenAI's scale tier
_FROM_VERTEX = {"ON_DEMAND": "default", "ON_DEMAND_PRIORITY": "priority", "ON_DEMAND_FLEX": "flex",
                "PROVISIONED_THROUGHPUT": "scale"}
# OpenAI's words as a Messages answer's usage.service_tier: only the tiers Anthropic names
_TO_ANTHROPIC = {"default": "standard", "priority": "priority"}


def _word(table: dict[str, str], value: Any) -> str | None:
    return table.get(value) if isinstance(value, str) else None


def from_anthropic(usage: Any) -> str | None:
    """The tier an Anthropic message's (or message_start's) usage says served it."""
    return _word(_FROM_ANTHROPIC, usage.get(SERVICE_TIER)) if isinstance(usage, dict) else None


def from_bedrock(response: Any) -> str | None:
    """The tier a Converse response (or ConverseStream metadata event) says served it."""
    tier = response.get("serviceTier") if isinstance(response, dict) else None
    return _word(_FROM_BEDROCK, tier.get("type")) if isinstance(tier, dict) else None


def from_vertex(usage_metadata: Any) -> str | None:
    """The tier a generateContent answer's usageMetadata says served it (Vertex's trafficType)."""
    return _word(_FROM_VERTEX, usage_metadata.get("trafficType")) if isinstance(usage_metadata, dict) else None


def to_anthropic(chat_tier: Any) -> str | None:
    """An OpenAI-words tier as Anthropic's usage.service_tier, where Anthropic has the tier."""
    return _word(_TO_ANTHROPIC, chat_tier)


def stamped(answer: Body, tier: str | None) -> Body:
    """An OpenAI chat answer or chunk saying the tier that served it (as OpenAI puts it on each)."""
    if tier is not None:
        answer[SERVICE_TIER] = tier
    return answer
