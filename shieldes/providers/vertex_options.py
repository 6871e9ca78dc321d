"""How a chat request's `service_tier` and `metadata` reach Vertex AI, which has both in its own
terms (the Gemini Developer API has neither): tiers are request headers, tags are the
GenerateContentRequest's `labels`. Pure; what has no counterpart is left to the caller to name as
dropped. And the rules for the Claude models Vertex AI serves: which models they are, the body
they take, what their platform's failures advise."""

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


# Claude on Vertex AI: https://cloud.google.com/vertex-ai/generative-ai/docs/partner-models/claude
CLAUDE_PREFIX = "claude-"
CLAUDE_VERSION = "vertex-2023-10-16"  # the body's `anthropic_version`, as Anthropic's Vertex client sends it
MODEL_GARDEN = "https://console.cloud.google.com/vertex-ai/model-garden"


def serves_claude(model: str) -> bool:
    """Whether a `vertex` deployment's model is one of Anthropic's (Vertex model ids of Claude
    start with `claude-`: `claude-sonnet-4-5@20250929`, `claude-opus-4-1`), served in Anthropic's
    Messages wire format, not Google's generateContent."""
    return model.startswith(CLAUDE_PREFIX)


def claude_body(body: dict[str, Any], count: bool) -> dict[str, Any]:
    """A Messages body as Vertex takes it: the model is in the URL, not the body (but for a token
    count, which names it in the body), and `anthropic_version` says the API version."""
    out = dict(body) if count else {k: v for k, v in body.items() if k != "model"}
    out.setdefault("anthropic_version", CLAUDE_VERSION)
    return out


def _google_status(body: Any) -> str | None:
    """The `status` of Google's error JSON (`{"error": {"code", "message", "status"}}`), which the
    platform answers with; Claude's own errors come in Anthropic's shape."""
    err = body.get("error") if isinstance(body, dict) else None
    return str(err.get("status")) if isinstance(err, dict) and "status" in err else None


def claude_advice(status: int | None, body: Any, model: str, project: str, location: str) -> str | None:
    """What to do about a failure the platform (not the model) answered a Claude call with."""
    google = _google_status(body)
    if google is None:
        return None
    if status == 404:
        return (f"enable {model!r} for project {project!r} in Vertex AI Model Garden ({MODEL_GARDEN}) and check "
                f"that location {location!r} offers it (the Vertex model id, e.g. claude-sonnet-4-5@20250929)")
    if status == 403:
        return (f"give the deployment's service account the Vertex AI User role (roles/aiplatform.user) on "
                f"project {project!r}, and enable {model!r} in Model Garden ({MODEL_GARDEN})")
    if status == 429:
        return (f"the project's Vertex AI quota for {model!r} in {location!r} is used up; ask Google Cloud for "
                "more (IAM & Admin > Quotas) or add a deployment in another location")
    return None
