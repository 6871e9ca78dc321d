"""What a translation leaves out of a client's request, named to the client (x-shieldes-dropped),
never dropped in silence."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from shieldes.providers.base import Body

# Chat request fields that change the answer and that a translation may have nothing to carry to
# (what every translation carries or refuses is not here: messages, tools, sampling, stops, n)
ANSWER_FIELDS = ("seed", "frequency_penalty", "presence_penalty", "logprobs", "top_logprobs", "logit_bias",
                 "prediction", "web_search_options", "reasoning_effort", "verbosity")
JSON_OBJECT = "response_format.json_object"
# How the request is served and filed rather than what it answers, also named when left out:
# `service_tier` but `auto` (the account's own tier, what every target uses when told nothing), and
# `metadata` (the client's key-value tags, for finding the request again)
SERVICE_TIER = "service_tier"
METADATA = "metadata"
# `parallel_tool_calls: false` with tools: Anthropic and Bedrock's Claude carry it
# (disable_parallel_tool_use), Converse for other models and generateContent have no such setting
PARALLEL_OFF = "parallel_tool_calls"
# LiteLLM's chat `thinking: {"type": "enabled", "budget_tokens": N}` without a `reasoning_effort`
# (beside one it is only that effort's budget, named with it): Claude's translations carry it
THINKING = "thinking"


def asks_thinking(body: Body) -> bool:
    """Whether a chat request asks for thinking by `thinking` alone (no `reasoning_effort`)."""
    thinking = body.get(THINKING)
    return body.get("reasoning_effort") is None and isinstance(thinking, dict) and thinking.get("type") == "enabled"


def dropped_fields(body: Body, carried: Collection[str], tiers: Collection[str] = ()) -> list[str]:
    """What a chat request asks for that its translation leaves out, `carried` naming what it
    does carry: the fields of ANSWER_FIELDS that are set (not null or false) and
    `response_format.json_object`, `parallel_tool_calls` turned off for a request with tools,
    `thinking` asked for without `reasoning_effort` (asks_thinking), a
    `service_tier` other than `auto` and those in `tiers`, and a non-empty `metadata`.
    Named to the client (x-shieldes-dropped), never dropped in silence."""
    out = [name for name in ANSWER_FIELDS if name not in carried and body.get(name) is not None
           and body.get(name) is not False]
    tier = body.get("service_tier")
    if tier is not None and tier != "auto" and tier not in tiers:
        out.append(SERVICE_TIER)
    if METADATA not in carried and body.get("metadata"):
        out.append(METADATA)
    fmt = body.get("response_format")
    if JSON_OBJECT not in carried and isinstance(fmt, dict) and fmt.get("type") == "json_object":
        out.append(JSON_OBJECT)
    if PARALLEL_OFF not in carried and body.get("parallel_tool_calls") is False and body.get("tools"):
        out.append(PARALLEL_OFF)
    if THINKING not in carried and asks_thinking(body):
        out.append(THINKING)
    return out


@dataclass(frozen=True, slots=True)
class Outbound:
    """A chat request as a translation sends it upstream, with what of the client's request it left
    out (dropped_fields: the x-shieldes-dropped names). One walk of the history decides both: whether
    `reasoning_effort` reaches the model depends on the turns (a tool call continued without its
    signed thinking), and a second walk to name it cost half as much again as the translation."""

    request: Body
    dropped: list[str]


DROPPED_HEADER = "x-shieldes-dropped"
MAX_DROPPED_HEADER = 1024
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


def dropped_header(names: list[str]) -> dict[str, str]:
    """The response header naming what a translation left out of the request; names may echo
    client text (tool types), so only printable ASCII goes out, capped."""
    if not names:  # nearly every answer: no regex pass over an empty string
        return {}
    return {DROPPED_HEADER: _UNPRINTABLE.sub("?", ", ".join(names))[:MAX_DROPPED_HEADER]}




def with_named(headers: Mapping[str, str], names: list[str]) -> Mapping[str, str]:
    """`headers` with `names` (fields left out before any translation: another gateway's) named
    first in x-shieldes-dropped, before what the answer's own header names."""
    if not names:
        return headers
    given = headers.get(DROPPED_HEADER)
    return {**headers, **dropped_header([*names, *([given] if given else [])])}
