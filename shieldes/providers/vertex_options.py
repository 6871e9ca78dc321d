"""How a chat request's `service_tier` and `metadata` reach Vertex AI, which has both in its own
terms (the Gemini Developer API has neither): tiers are request headers, tags are the
GenerateContentRequest's `labels`. Pure; what has no counterpart is left to the caller to name as
dropped. And the rules for the Claude models Vertex AI serves: which models they are, the body
they take (and the fields and beta values Vertex refuses), what their platform's failures advise."""

from __future__ import annotations

import re
from dataclasses import dataclass
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


# Anthropic request fields Claude on Vertex AI refuses ("NAME: Extra inputs are not permitted"):
# features Anthropic documents for its own API and not for Vertex (geographic routing, the MCP
# connector, fast mode, cache diagnostics). Dropped and named rather than refused by Google.
NOT_ON_VERTEX = ("inference_geo", "mcp_servers", "speed", "diagnostics")
# Nested, refused the same way: task budgets, and prompt caching's `scope` (the cache_control's
# `type` and `ttl` stay)
TASK_BUDGET = "output_config.task_budget"
CACHE_SCOPE = "cache_control.scope"
# Anthropic's `service_tier` has no place in a Vertex body; Vertex has its tiers as headers:
# `standard_only` (no Priority Tier capacity) is Vertex's pay-as-you-go without Provisioned
# Throughput, `auto` what Vertex does when told nothing
_CLAUDE_TIERS: dict[str, dict[str, str]] = {"auto": {}, "standard_only": {REQUEST_TYPE: "shared"}}


@dataclass(frozen=True, slots=True)
class ClaudeCall:
    """A Messages body as Vertex takes it, the request headers it adds (a tier), and what of the
    client's request it left out (x-shieldes-dropped)."""

    body: dict[str, Any]
    headers: dict[str, str]
    dropped: list[str]


def _unscoped(blocks: Any) -> tuple[Any, bool]:
    """Content blocks (or tools) with no `scope` in their cache_control; whether one had one."""
    if not isinstance(blocks, list) or not any(
            isinstance(b, dict) and isinstance(b.get("cache_control"), dict) and "scope" in b["cache_control"]
            for b in blocks):
        return blocks, False
    out = [dict(b, cache_control={k: v for k, v in b["cache_control"].items() if k != "scope"})
           if isinstance(b, dict) and isinstance(b.get("cache_control"), dict) else b for b in blocks]
    return out, True


def _without_cache_scope(body: dict[str, Any]) -> bool:
    """Takes `scope` out of every cache_control of `body` (a copy the caller owns: only the lists
    and blocks that change are copied); whether there was one."""
    scoped = False
    for name in ("system", "tools"):
        if name in body:
            body[name], had = _unscoped(body[name])
            scoped |= had
    messages = body.get("messages")
    if isinstance(messages, list):
        fitted = []
        for message in messages:
            content, had = _unscoped(message.get("content") if isinstance(message, dict) else None)
            fitted.append(dict(message, content=content) if had else message)
            scoped |= had
        if scoped:
            body["messages"] = fitted
    top = body.get("cache_control")
    if isinstance(top, dict) and "scope" in top:
        body["cache_control"] = {k: v for k, v in top.items() if k != "scope"}
        scoped = True
    return scoped


def claude_body(body: dict[str, Any], count: bool) -> ClaudeCall:
    """A Messages body as Vertex takes it: the model is in the URL, not the body (but for a token
    count, which names it in the body), `anthropic_version` says the API version, the fields
    Vertex refuses are left out (NOT_ON_VERTEX, task budgets, cache scopes) and named, and a
    `service_tier` goes as Vertex's tier header (`standard_only`) or nowhere (`auto`; others named).
    The caller's dict is left as it is."""
    out = dict(body) if count else {k: v for k, v in body.items() if k != "model"}
    out.setdefault("anthropic_version", CLAUDE_VERSION)
    dropped = [name for name in NOT_ON_VERTEX if out.pop(name, None) is not None]
    headers: dict[str, str] = {}
    if "service_tier" in out:
        tier = out.pop("service_tier")
        if isinstance(tier, str) and tier in _CLAUDE_TIERS:
            headers.update(_CLAUDE_TIERS[tier])
        elif tier is not None:
            dropped.append("service_tier")
    config = out.get("output_config")
    if isinstance(config, dict) and "task_budget" in config:
        rest = {k: v for k, v in config.items() if k != "task_budget"}
        if rest:
            out["output_config"] = rest
        else:
            del out["output_config"]
        dropped.append(TASK_BUDGET)
    if _without_cache_scope(out):
        dropped.append(CACHE_SCOPE)
    return ClaudeCall(out, headers, dropped)


# Vertex's answer to `anthropic-beta` values it does not take (a 400 in Anthropic's shape):
# "Unexpected value(s) `a`, `b` for the `anthropic-beta` header. Please consult ..."
_REFUSED_BETAS = re.compile(r"Unexpected value\(s\) (.*?) for the `anthropic-beta` header")
BETA_HEADER = "anthropic-beta"


def refused_betas(status: int | None, body: Any) -> list[str]:
    """The `anthropic-beta` values a 400 from Claude on Vertex names as ones it does not take
    (which depend on the model and the region, and change: Vertex's own word is the one kept)."""
    err = body.get("error") if status == 400 and isinstance(body, dict) else None
    found = _REFUSED_BETAS.search(str(err.get("message", ""))) if isinstance(err, dict) else None
    return re.findall(r"`([^`]+)`", found.group(1)) if found else []


# How long a beta value Vertex refused for a model is left out of that model's calls before one
# call tries it again (Vertex takes more of them over time, per model and region).
REMEMBER_REFUSED = 3600.0
MAX_REMEMBERED = 1000  # (model, value) pairs: the values are the clients', so the memory is bounded


class RefusedBetas:
    """The `anthropic-beta` values Vertex refused, per model, for REMEMBER_REFUSED seconds: later
    calls leave them out before sending instead of each paying a refused call first (Claude Code
    sends the same betas with every request). One per provider; `now` is a monotonic clock."""

    def __init__(self) -> None:
        self._until: dict[tuple[str, str], float] = {}

    def known(self, model: str, header: str | None, now: float) -> list[str]:
        """The values of `header` Vertex refused for `model` within REMEMBER_REFUSED seconds."""
        values = [v.strip() for v in (header or "").split(",") if v.strip()]
        return [v for v in values if self._until.get((model, v), 0.0) > now]

    def add(self, model: str, values: list[str], now: float) -> None:
        if len(self._until) + len(values) > MAX_REMEMBERED:
            self._until = {k: t for k, t in self._until.items() if t > now}
            if len(self._until) + len(values) > MAX_REMEMBERED:
                self._until.clear()
        for value in values:
            self._until[(model, value)] = now + REMEMBER_REFUSED


# Beta values Anthropic's API and Claude on Vertex name apart: tool search (deferred tools and
# tool_reference blocks, which Claude Code uses for MCP tools) is `advanced-tool-use-2025-11-20` on
# Anthropic's API and `tool-search-tool-2025-10-19` on Vertex (and Bedrock), as Claude Code itself
# sends them to each
_VERTEX_NAMES = {"advanced-tool-use-2025-11-20": "tool-search-tool-2025-10-19"}


def vertex_betas(header: str | None) -> str | None:
    """The `anthropic-beta` header with Anthropic's names of betas Vertex names otherwise in
    Vertex's names (each once); None when it holds none."""
    values = [v.strip() for v in (header or "").split(",") if v.strip()]
    if not any(v in _VERTEX_NAMES for v in values):
        return None
    return ",".join(dict.fromkeys(_VERTEX_NAMES.get(v, v) for v in values))


def without_betas(header: str | None, refused: list[str]) -> str | None:
    """The `anthropic-beta` header without the refused values ("" when none is left); None when
    it holds none of them (sending it again would be refused again)."""
    values = [v.strip() for v in (header or "").split(",") if v.strip()]
    kept = [v for v in values if v not in refused]
    return ",".join(kept) if len(kept) < len(values) else None


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
