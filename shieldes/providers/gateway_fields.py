"""Request fields that only another gateway (a LiteLLM proxy, Bifrost) gave a meaning to, as an
application moved from one still sends them: LiteLLM's `tags`, `fallbacks`, `num_retries`,
`mock_response`, `caching`, `guardrails`, `litellm_*`, ... and Bifrost's `fallbacks`. An OpenAI
upstream refuses each ("Unrecognized request argument supplied"), so none is forwarded: each is
left out and named in `x-shieldes-dropped`, but for `fallbacks` and `disable_fallbacks` where the
route honours them (routing/asked_fallbacks.py) and the tags (below). `metadata` is OpenAI's own
field when it has OpenAI's shape (at most 16 string values) and goes on as sent then; LiteLLM's (tags as a list, nested
objects) is left out and named so too. On the Messages API, where Anthropic takes only
`metadata.user_id` and refuses any other key ("metadata.X: Extra inputs are not permitted"),
`user_id` goes on and every other key (LiteLLM's `tags`, `trace_id`, `user_api_key_*`, ...) is left
out and named `metadata.X`. LiteLLM's cost-attribution tags (body `tags`, `metadata.tags`, the
`x-litellm-tags` header) are never forwarded either, but recorded on the request log (`tags`),
bounded (MAX_TAGS, MAX_TAG_LENGTH): only what is left out of the log is named. Pure: no I/O, no
state."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

# (the names of chat_history._Foreign's fields, in its order)
FOREIGN = ("tags", "fallbacks", "num_retries", "mock_response", "mock_testing_fallbacks", "caching",
           "cache", "guardrails", "extra_headers", "litellm_metadata", "litellm_trace_id",
           "litellm_session_id", "litellm_call_id", "context_window_fallback_dict", "request_timeout",
           "timeout", "api_base", "base_url", "api_key", "api_version", "disable_fallbacks", "ttl")
METADATA = "metadata"
_FOREIGN = frozenset(FOREIGN)
_MOST_PAIRS, _LONGEST_KEY, _LONGEST_VALUE = 16, 64, 512  # OpenAI's limits on `metadata`


def openai_metadata(value: Any) -> bool:
    """Whether `value` is a `metadata` OpenAI takes: null, or an object of at most 16 string values
    (keys up to 64 characters, values up to 512)."""
    if value is None:
        return True
    return isinstance(value, dict) and len(value) <= _MOST_PAIRS and all(
        len(k) <= _LONGEST_KEY and isinstance(v, str) and len(v) <= _LONGEST_VALUE for k, v in value.items())


ANTHROPIC_METADATA_KEYS = ("user_id",)  # what Anthropic's Messages API takes in `metadata`


def anthropic_metadata(value: Any) -> tuple[Any, list[str]]:
    """(the `metadata` to send, the `metadata.X` names of the keys left out) of a Messages request's
    `metadata`: an object keeps only the keys Anthropic takes (None when none is left); any other
    value goes on as sent, for Anthropic to judge."""
    if not isinstance(value, dict):
        return value, []
    gone = [f"{METADATA}.{key}" for key in value if key not in ANTHROPIC_METADATA_KEYS]
    if not gone:
        return value, []
    kept = {key: value[key] for key in ANTHROPIC_METADATA_KEYS if key in value}
    return kept or None, gone


def gateway_fields(body: Mapping[str, Any] | Collection[str]) -> list[str]:
    """The names of FOREIGN `body` has, in FOREIGN's order."""
    if _FOREIGN.isdisjoint(body):  # (nearly every request: C-level, over its keys)
        return []
    return [name for name in FOREIGN if name in body]


def foreign_fields(body: Mapping[str, Any]) -> list[str]:
    """The fields of `body` (a request's top-level fields, decoded) that are another gateway's, in
    FOREIGN's order, then `metadata` when it is not in OpenAI's shape."""
    out = gateway_fields(body)
    if METADATA in body and not openai_metadata(body[METADATA]):
        out.append(METADATA)
    return out


TAGS = "tags"
TAGS_HEADER = "x-litellm-tags"  # LiteLLM's: comma-separated tags
MAX_TAGS, MAX_TAG_LENGTH = 16, 64  # a request's tags recorded on the request log, each at most so long


def request_tags(body_tags: Any, metadata: Any, header: str | None) -> tuple[list[str] | None, list[str]]:
    """(the tags recorded on the request log, in order, each once; the x-shieldes-dropped names of
    those left out) of a request's body `tags`, its `metadata` (a list at `metadata.tags`) and the
    x-litellm-tags header. Left out: a tag that is not a string or is empty (blank), longer than
    MAX_TAG_LENGTH, or past MAX_TAGS, each named by where it was (`tags[3]`, `metadata.tags[0]`,
    `x-litellm-tags[1]`); a `tags` that is not a list is named `tags`."""
    sources: list[tuple[str, Any]] = []
    if body_tags is not None:
        sources.append((TAGS, body_tags))
    meta_tags = metadata.get(TAGS) if isinstance(metadata, dict) else None
    if isinstance(meta_tags, list):
        sources.append((f"{METADATA}.{TAGS}", meta_tags))
    if header is not None:
        sources.append((TAGS_HEADER, [t.strip() for t in header.split(",")]))
    kept: list[str] = []
    named: list[str] = []
    for where, items in sources:
        if not isinstance(items, list):
            named.append(where)
            continue
        for i, tag in enumerate(items):
            if isinstance(tag, str) and tag.strip() and len(tag) <= MAX_TAG_LENGTH and "\x00" not in tag:
                if tag in kept:
                    continue
                if len(kept) < MAX_TAGS:
                    kept.append(tag)
                    continue
            if where != TAGS_HEADER or tag:  # (an empty piece of the header, `a,,b`: nothing to name)
                named.append(f"{where}[{i}]")
    return kept or None, named
