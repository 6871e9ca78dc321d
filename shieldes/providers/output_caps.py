"""The output limit an upstream (OpenAI-compatible, Gemini, Vertex, Anthropic, Bedrock) refused a
chat request's `max_tokens` with, read off its 400. A Messages client (Claude Code asks for 32000
or more) knows Claude's limits, not those of the model a translated deployment serves (gpt-4o
writes at most 16384 tokens): its `max_tokens` is an upper bound, so the request is sent again
within the limit the upstream named. So are a Responses client's `max_output_tokens` (Codex, the
Agents SDK) and a chat client's, to a deployment that translates them. refused_output is pure;
within_cap sends through it."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from shieldes.providers.base import Body, Target, UpstreamFailure

T = TypeVar("T")

# OpenAI (and Azure): "max_tokens is too large: 32000. This model supports at most 16384 completion
# tokens, whereas you provided 32000." (or max_completion_tokens)
_MODEL_CAP = re.compile(r"is too large: (\d+)\. This model supports at most (\d+) completion tokens")
# vLLM: "'max_tokens' or 'max_completion_tokens' is too large: 64000. This model's maximum context
# length is 64001 tokens and your request has 24235 input tokens (64000 > 64001 - 24235)."
_ROOM = re.compile(r"is too large: (\d+)\. This model's maximum context length is (\d+) tokens and your "
                   r"request has (\d+) input tokens")

# DeepSeek: "Invalid max_tokens value, the valid range of max_tokens is [1, 8192]"; Alibaba's
# DashScope: "Range of max_tokens should be [1, 32768]"
_RANGE = re.compile(r"range of max_tokens (?:is|should be) \[1, ?(\d+)\]", re.IGNORECASE)
# Gemini API and Vertex AI (INVALID_ARGUMENT): "Unable to submit request because it has a
# maxOutputTokens value of 65536 but the supported range is from 1 (inclusive) to 65536 (exclusive).
# Update the value and try again."
_EXCLUSIVE = re.compile(r"maxOutputTokens value of (\d+) but the supported range is from 1 \(inclusive\) "
                        r"to (\d+) \(exclusive\)")

# Anthropic: "max_tokens: 64000 > 32000, which is the maximum allowed number of output tokens for
# claude-opus-4-20250514"
_COMPARED = re.compile(r"max_tokens: (\d+) > (\d+), which is the maximum allowed number of output tokens")
# Bedrock (Converse, ValidationException): "The maximum tokens you requested exceeds the model limit
# of 10000. Try again with a maximum tokens value that is lower than 10000." (the limit itself is taken)
_BEDROCK = re.compile(r"The maximum tokens you requested exceeds the model limit of (\d+)")


@dataclass(frozen=True, slots=True)
class OutputCap:
    tokens: int  # the most the upstream takes for this request
    lasting: bool  # the model's own limit (every request meets it), not the room this prompt leaves


def refused_output(failure: UpstreamFailure, asked: int) -> OutputCap | None:
    """The limit `failure` (an upstream's answer to a request asking for `asked` output tokens)
    names, when it refused the request for asking more than that and nothing else; else None."""
    if failure.status != 400:
        return None
    found = _MODEL_CAP.search(failure.message)
    if found is not None and int(found[1]) == asked and 0 < int(found[2]) < asked:
        return OutputCap(int(found[2]), True)
    beyond = _EXCLUSIVE.search(failure.message)
    if beyond is not None and int(beyond[1]) == asked and 0 < int(beyond[2]) - 1 < asked:
        return OutputCap(int(beyond[2]) - 1, True)
    compared = _COMPARED.search(failure.message)
    if compared is not None and int(compared[1]) == asked and 0 < int(compared[2]) < asked:
        return OutputCap(int(compared[2]), True)
    limit = _BEDROCK.search(failure.message)
    if limit is not None and 0 < int(limit[1]) < asked:
        return OutputCap(int(limit[1]), True)
    ranged = _RANGE.search(failure.message)
    if ranged is not None and 0 < int(ranged[1]) < asked:
        return OutputCap(int(ranged[1]), True)
    room = _ROOM.search(failure.message)
    if room is not None and int(room[1]) == asked and 0 < int(room[2]) - int(room[3]) < asked:
        return OutputCap(int(room[2]) - int(room[3]), False)
    return None


async def within_cap(caps: dict[tuple[str, str], int], target: Target, chat: Body,
                     send: Callable[[Body], Awaitable[T]], named: str) -> tuple[T, list[str]]:
    """`send(chat)`, with its max_tokens within the upstream model's output limit: the limit
    learnt from an earlier refusal (`caps`, by deployment and model), or the one the upstream's
    400 names, then sent again once. The client's limit bounds the answer, and agents ask for more
    than many models write (Claude Code 32000; gpt-4o writes 16384), so the request is not refused
    for it; the client's field (`named`) is named as not carried as sent (x-shieldes-dropped)."""
    field = "max_completion_tokens" if "max_completion_tokens" in chat else "max_tokens"
    asked, where = chat.get(field), (target.deployment, target.model)
    if not isinstance(asked, int):
        return await send(chat), []
    known = caps.get(where)
    if known is not None and asked > known:
        return await send({**chat, field: known}), [named]
    try:
        return await send(chat), []
    except UpstreamFailure as failure:
        cap = refused_output(failure, asked)
        if cap is None:
            raise
        if cap.lasting:
            caps[where] = cap.tokens
        return await send({**chat, field: cap.tokens}), [named]
