"""Fitting a client's request to one upstream: whether it takes the client's bytes as sent, what it
refuses and takes otherwise (OpenAI's strict fields), and a chat's output limit kept within the
model's, named among what was not carried as sent."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson

from shieldes.gateway.top_level import ChatTopLevel, Outgoing
from shieldes.providers.base import Body, ChunkStream, Operation, Provider, Target, TokenUsage
from shieldes.providers.chat_history import READ
from shieldes.providers.openai_strict import ABSENT, MARKS, Refit

# a JSON call's body does not carry these: OpenAI refuses stream_options without a stream (a client's
# `stream: false` goes as sent)
JSON_DROPS = frozenset({"stream_options"})


def provider_takes_as_sent(provider: Provider, op: Operation, target: Target, ids: list[str] | None) -> bool:
    """Whether `provider` takes the client's bytes for this request (OpenAI-compatible upstreams:
    OpenAIProvider.takes_as_sent); the others get the body decoded and translated."""
    takes = getattr(provider, "takes_as_sent", None)
    return takes is not None and bool(takes(op, target, ids))

def translates_chat(provider: Provider, op: Operation) -> bool:
    """Whether `provider` translates this chat request into another API (Anthropic, Bedrock, Gemini,
    Vertex): its client knows the limits of OpenAI's models, not of the one that serves it. An
    OpenAI-compatible upstream's refusal of a client's max_tokens goes to the client as it is."""
    return op == "chat" and getattr(provider, "takes_as_sent", None) is None


def fitted(provider: Provider, op: Operation, target: Target, out: Outgoing) -> Refit | None:
    """What of the client's request this upstream refuses and takes otherwise, fitted
    (OpenAIProvider.refit: `top_k` and `thinking` to OpenAI itself or Azure); None: as sent."""
    refitting = getattr(provider, "refit", None)
    if refitting is None:
        return None
    top = out.top
    chat = isinstance(top, ChatTopLevel)
    marked: list[bool] = []

    def field(name: str) -> Any:
        # asked only for OpenAI itself. A chat read in its typed pass has `top_k` and `thinking`
        # decoded (chat_history.READ; `reasoning_effort` is asked only beside `thinking`); any other
        # body naming neither (nearly every one) is told by a scan of its bytes, not split into its
        # fields: two searches of 73 kB cost 180k instructions, more than the rest of a turn's read
        if chat:
            if name in READ:
                return top.small.get(name, ABSENT)
        else:
            if not marked:
                marked.append(any(mark in top.raw for mark in MARKS))
            if not marked[0]:
                return ABSENT
        if name in top.small:
            return top.small[name]
        return orjson.loads(memoryview(top.fields[name])) if top.has(name) else ABSENT

    found: Refit | None = refitting(op, target, field)
    return found


def with_fit(body: Body, fit: Refit) -> Body:
    return {**{k: v for k, v in body.items() if k not in fit.drop}, **fit.changes}


def limit_field(chat: Body) -> str:
    """The chat client's output limit field, named in x-shieldes-dropped when it is lowered."""
    return "max_completion_tokens" if "max_completion_tokens" in chat else "max_tokens"


class LoweredStream:
    """A chat stream whose request was not carried quite as sent (its output limit lowered to the
    model's, a field the upstream refuses left out): the stream as it is, with the client's fields
    named among what was not carried as sent."""

    def __init__(self, chunks: ChunkStream, lowered: Sequence[str]) -> None:
        self._chunks = chunks
        self.dropped: Sequence[str] = [*lowered, *chunks.dropped]

    @property
    def usage(self) -> TokenUsage | None:
        return self._chunks.usage

    def __aiter__(self) -> AsyncIterator[Body]:
        return self._chunks.__aiter__()

    async def aclose(self) -> None:
        await self._chunks.aclose()

    def __getattr__(self, name: str) -> Any:  # what a stream's renderer may read (`first`)
        return getattr(self._chunks, name)

