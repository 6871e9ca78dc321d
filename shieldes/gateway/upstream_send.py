"""Sending one try of a JSON call or a stream to one upstream, the client's request fitted to it:
whether it takes the client's bytes as sent, what it refuses and takes otherwise (OpenAI's strict
fields), and a chat's output limit kept within the model's, named among what was not carried as
sent."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

import orjson

from shieldes.gateway.top_level import ChatTopLevel, Outgoing
from shieldes.projections.state import Deployment
from shieldes.providers.base import Body, ChunkStream, JsonResult, Operation, Provider, Target, TokenUsage
from shieldes.providers.chat_history import READ
from shieldes.providers.openai_strict import ABSENT, MARKS, Refit
from shieldes.providers.output_caps import within_cap

# a JSON call's body does not carry these: OpenAI refuses stream_options without a stream (a client's
# `stream: false` goes as sent)
JSON_DROPS = frozenset({"stream_options"})


def provider_takes_as_sent(provider: Provider, op: Operation, target: Target, ids: list[str] | None) -> bool:
    """Whether `provider` takes the client's bytes for this request (OpenAI-compatible upstreams:
    OpenAIProvider.takes_as_sent); the others get the body decoded and translated."""
    takes = getattr(provider, "takes_as_sent", None)
    return takes is not None and bool(takes(op, target, ids))


def _translates_chat(provider: Provider, op: Operation) -> bool:
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


def _fit(body: Body, fit: Refit) -> Body:
    return {**{k: v for k, v in body.items() if k not in fit.drop}, **fit.changes}


def _limit_field(chat: Body) -> str:
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


async def json_attempt(op: Operation, out: Outgoing, caps: dict[tuple[str, str], int], provider: Provider,
                       target: Target, _dep: Deployment, sent: Body) -> JsonResult:
    """One try of UpstreamCalls.call on `target` (bound by partial to the call's `op`, `out` and the
    gateway's output caps)."""
    call_raw = getattr(provider, "call_raw", None)
    if call_raw is not None:  # (an OpenAI-compatible upstream)
        fit = fitted(provider, op, target, out)
        if fit is None:
            if provider_takes_as_sent(provider, op, target, out.ids):
                result: JsonResult = await call_raw(op, target, out.encoded(sent, JSON_DROPS))
                return result
            return await provider.call(op, target, out.whole(sent))
        if provider_takes_as_sent(provider, op, target, out.ids):
            result = await call_raw(op, target, out.encoded({**sent, **fit.changes}, JSON_DROPS | fit.drop))
        else:
            result = await provider.call(op, target, _fit(out.whole(sent), fit))
        return replace(result, dropped=[*fit.named, *result.dropped]) if fit.named else result
    if not _translates_chat(provider, op):
        return await provider.call(op, target, out.whole(sent))
    whole = out.whole(sent)
    result, lowered = await within_cap(caps, target, whole,
                                       lambda c: provider.call(op, target, c), _limit_field(whole))
    return replace(result, dropped=[*lowered, *result.dropped]) if lowered else result


async def stream_attempt(op: Operation, out: Outgoing, caps: dict[tuple[str, str], int], provider: Provider,
                         target: Target, _dep: Deployment, sent: Body) -> ChunkStream:
    """One try of UpstreamCalls.open_stream on `target` (bound as json_attempt)."""
    stream_bytes = getattr(provider, "stream_bytes", None)
    if stream_bytes is not None:  # (an OpenAI-compatible upstream)
        fit = fitted(provider, op, target, out)
        if fit is None:
            if provider_takes_as_sent(provider, op, target, out.ids):
                chunks: ChunkStream = await stream_bytes(op, target, out.encoded(sent), lambda: out.whole(sent))
                return chunks
            return await provider.stream(op, target, out.whole(sent))
        refit = fit
        if provider_takes_as_sent(provider, op, target, out.ids):
            chunks = await stream_bytes(op, target, out.encoded({**sent, **fit.changes}, fit.drop),
                                        lambda: _fit(out.whole(sent), refit))
        else:
            chunks = await provider.stream(op, target, _fit(out.whole(sent), fit))
        return LoweredStream(chunks, fit.named) if fit.named else chunks
    if not _translates_chat(provider, op):
        return await provider.stream(op, target, out.whole(sent))
    whole = out.whole(sent)
    chunks, lowered = await within_cap(caps, target, whole,
                                       lambda c: provider.stream(op, target, c), _limit_field(whole))
    return LoweredStream(chunks, lowered) if lowered else chunks
