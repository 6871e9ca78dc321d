"""How a chat request's `service_tier` and `metadata` reach Vertex AI, which has both in its own
terms (the Gemini Developer API has neither): tiers are request headers, tags are the
GenerateContentRequest's `labels`. Pure; what has no counterpart is left to the caller to name as
dropped."""

from __future__ import annotations

from typing import Any

# Provisioned Throughput bypassed or required per request:
# https://cloud.google.com/vertex-ai/generative-ai/docs/use-provisioned-throughput
REQUEST_TYPE = "X-Vertex-AI-LLM-Request-Type"
# Flex and Priority pay-as-you-go (after any Provisioned Throughput): https://cloud.google.com/vertex-ai/generative-ai/docs/flex-paygo
# and https://cloud.google.com/vertex-ai/generative-ai/docs/priority-paygo
SHARED_REQUEST_TYPE = "X-Vertex-AI-LLM-Shared-Request-Type"

# OpenAI's tiers Vertex has: `default` is standard pay-as-you-go only (`shared`: Provisioned
# Throughput bypassed, as Anthropic's `standard_only` leaves out its Priority Tier capacity);
# `flex` and `priority` are Vertex's Flex and Priority PayGo. `scale` (OpenAI's capacity bought
# ahead) has no header documented with its meaning, so it is named as dropped.
_HEADERS: dict[str, dict[str, str]] = {
    "default": {REQUEST_TYPE: "shared"},
    "flex": {SHARED_REQUEST_TYPE: "flex"},
    "priority": {SHARED_REQUEST_TYPE: "priority"},
}
TIERS = tuple(_HEADERS)

# Google's rules for labels: https://cloud.google.com/vertex-ai/generative-ai/docs/multimodal/add-labels-to-api-calls
MAX_LABELS = 64
MAX_LABEL_LENGTH = 63


def tier_headers(service_tier: Any) -> dict[str, str]:
    """The request headers that ask Vertex for the tier (none for `auto` and tiers it lacks)."""
    return dict(_HEADERS.get(service_tier, {})) if isinstance(service_tier, str) else {}


def _label_char(c: str) -> bool:
    # lowercase letters (international ones too, and letters without case), digits, `_` and `-`
    return c in "_-" or c.isdecimal() or (c.isalpha() and not c.isupper())


def _fits(text: str, key: bool) -> bool:
    if len(text) > MAX_LABEL_LENGTH or (key and not text) or not all(_label_char(c) for c in text):
        return False
    return not key or (text[0].isalpha() and not text[0].isupper())  # a key starts with a letter


def labels(metadata: Any) -> dict[str, str] | None:
    """A chat request's `metadata` (string tags for finding the request again) as Vertex `labels`,
    which serve the same end in its billing reports. Upper case is lowered (the one fix that keeps
    a tag's sense); a tag that still breaks Google's rules (up to 64; keys of 1 to 63 and values of
    up to 63 lowercase letters, digits, `_` and `-`, a key starting with a letter), or two tags that
    become one, leave all of them out (None: named as dropped) rather than have Vertex refuse the
    request or bill part of the tags."""
    if not isinstance(metadata, dict) or not metadata or len(metadata) > MAX_LABELS:
        return None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        return None
    out = {k.lower(): v.lower() for k, v in metadata.items()}
    if len(out) != len(metadata) or not all(_fits(k, True) and _fits(v, False) for k, v in out.items()):
        return None
    return out
