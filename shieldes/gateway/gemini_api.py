"""The Gemini API surface (what Gemini CLI and Google's google-genai SDK speak):
POST /v1beta/models/{model}:generateContent, :streamGenerateContent and :countTokens (also
under /v1/models/...; :embedContent and :batchEmbedContents are gemini_embeddings'),
GET /v1beta/models and /v1beta/models/{model} (the model routes' handlers, which answer Google's
clients in Google's shape, under /v1 too).

A `gemini` or `vertex` deployment (GenerateContentUpstream) gets the client's body as it is and
the client gets the upstream's answer as it is (gemini_native). Every other deployment gets the
request translated to OpenAI chat (gemini_inbound) and its answer translated back
(gemini_replies); what the translation had to drop is named in the `x-shieldes-dropped` header.
Admission (auth, allow-list, rpm/tpm, budget reservation) and settlement are the Messages
surface's (Call), errors are in Google's shape (middleware.google_client), and so is the end of a
stream that breaks midway (gemini_frames)."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Sequence

import orjson
from aiohttp import web

from shieldes.errors import NotFound
from shieldes.gateway import relay
from shieldes.gateway.call import Call
from shieldes.gateway.gemini_embeddings import embed
from shieldes.gateway.gemini_frames import Framing
from shieldes.gateway.gemini_models import model_of, passes_through, route_for
from shieldes.gateway.messages import ESTIMATE_HEADER, Answer, MessageStream, counted
from shieldes.gateway.middleware import REQUEST_ID
from shieldes.gateway.model_routes import get_model, list_models
from shieldes.gateway.request_fields import read_body, read_json
from shieldes.gateway.routes import GATEWAY, authenticate
from shieldes.gateway.top_level import GEMINI_HISTORY, TopLevel
from shieldes.gateway.upstream_calls import each_a_stream
from shieldes.projections.state import Deployment
from shieldes.providers import gemini_inbound as inbound
from shieldes.providers import gemini_native
from shieldes.providers import gemini_replies as replies
from shieldes.providers.base import (
    Body,
    ChunkStream,
    InputTokenCounter,
    Provider,
    Target,
    TokenUsage,
)
from shieldes.providers.dropped import JSON_OBJECT, dropped_header
from shieldes.providers.gemini_native import GenerateContentUpstream, GoogleEventStream
from shieldes.providers.kinds import spec_for
from shieldes.usage.tokens import estimate_input_tokens, estimate_output_tokens, prompt_bytes

# chat names the provider's translation reports -> the generateContent field the client sent
_AS_SENT = {"reasoning_effort": "generationConfig.thinkingConfig", "seed": "generationConfig.seed",
            "presence_penalty": "generationConfig.presencePenalty",
            "frequency_penalty": "generationConfig.frequencyPenalty",
            JSON_OBJECT: "generationConfig.responseMimeType"}
_METHODS = "generateContent, streamGenerateContent, countTokens, embedContent and batchEmbedContents"


def _named(dropped: list[str], by_provider: Sequence[str]) -> list[str]:
    return dropped + [_AS_SENT.get(n, n) for n in by_provider]


class _Translation:
    """The client's generateContent request, translated for each deployment tried (whether
    thinkingConfig can go along depends on the model)."""

    def __init__(self, body: Body | TopLevel, cap: int | None) -> None:
        self.body = body
        self.cap = cap  # the completion bound a budget needs, when the client named none

    def chat(self, target: Target, dep: Deployment) -> tuple[Body, list[str]]:
        spec = spec_for(dep.kind, target.model)
        body = self.body.decoded() if isinstance(self.body, TopLevel) else self.body
        chat, dropped = inbound.translate_generate_request(body, target.model,
                                                           thinks=spec is not None and spec.thinks)
        if self.cap is not None and "max_tokens" not in chat and "max_completion_tokens" not in chat:
            chat["max_completion_tokens"] = self.cap
        return chat, dropped


class _Native(relay.Rendered[GoogleEventStream]):
    """An upstream generateContent stream, relayed as it is: its SSE bytes, or its events'
    payloads as the array's elements."""

    def __init__(self, stream: GoogleEventStream, framing: Framing) -> None:
        super().__init__(stream, dropped_header(stream.dropped))
        self._framing = framing

    async def frames(self, tally: relay.Tally) -> AsyncGenerator[bytes, None]:
        watch, framing = self._stream.watch, self._framing
        async for read in self._stream.reads():
            if watch.content_events and not tally.content_chunks:
                tally.first_token_at = time.perf_counter()
            tally.content_chunks = watch.content_events
            if len(watch.finish_reasons) > len(tally.finish_reasons):
                tally.finish_reasons[:] = watch.finish_reasons
            if framing.sse and read.raw is not None:
                if read.raw:
                    yield read.raw
            elif read.events:
                yield b"".join(framing.element(e) for e in read.events)
        if end := framing.end():
            yield end


class _Translated(relay.Rendered[ChunkStream]):
    """OpenAI chunks of a translated call, as GenerateContentResponses."""

    def __init__(self, stream: ChunkStream, dropped: list[str], model: str, size: int, thoughts: bool,
                 framing: Framing) -> None:
        super().__init__(stream, dropped_header(dropped))
        self._model = model
        self._size = size
        self._thoughts = thoughts
        self._framing = framing

    async def frames(self, tally: relay.Tally) -> AsyncGenerator[bytes, None]:
        stream = self._stream
        responses = replies.chunks_to_generate_responses(
            relay.counted(stream, tally), self._model,
            lambda: relay.final_usage(stream.usage, tally, self._size), self._thoughts)
        async for data in responses:
            yield self._framing.element(orjson.dumps(data))
        if end := self._framing.end():
            yield end


async def _generate(request: web.Request, streaming: bool) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    key = authenticate(request)
    model = model_of(request)
    # the top-level fields only: the contents are decoded only if a deployment's translation needs them
    top = TopLevel(await read_body(request, gw.settings.max_body_bytes), GEMINI_HISTORY)
    route = route_for(gw, key, model)
    if passes_through(gw, route):
        max_tokens, choices = gemini_native.bounds(top.small)
        tools = top.fields.get("tools") if top.has("tools") else None  # (decoded alone: not the contents)
        inbound.check_schemas(None if tools is None else orjson.loads(memoryview(tools)),
                              top.small.get("generationConfig", top.small.get("generation_config")))
    else:  # bad input: a 400 before admission
        checked, _ = inbound.translate_generate_request(top.decoded(), model)
        max_tokens, choices = checked.get("max_tokens") or checked.get("max_completion_tokens"), 1
    thoughts = inbound.include_thoughts(top.small)
    call = Call(gw, request, key, "chat", {"model": model}, prompt_bytes(top.raw), max_tokens, route,
                choices=choices, tools=top.fields.get("tools"))
    translation = _Translation(top, call.cap)

    def payload(target: Target) -> bytes:
        changes = gemini_native.native_changes(top.small, target.model, call.cap)
        return top.with_fields(changes) if changes else top.raw

    if not streaming:
        async def answer(provider: Provider, target: Target, dep: Deployment) -> Answer:
            if isinstance(provider, GenerateContentUpstream):
                got = await provider.generate(target, payload(target))
                usage = got.usage or TokenUsage(call.size // 4, gemini_native.text_tokens(got.body))
                return Answer(got.raw, usage, dropped_header(got.dropped), got.body)
            chat, dropped = translation.chat(target, dep)
            result = await provider.call("chat", target, chat)
            usage = result.usage or TokenUsage(call.size // 4, estimate_output_tokens(result.body))
            reply = replies.chat_to_generate_response(result.body, model, usage, thoughts)
            return Answer(orjson.dumps(reply), usage, dropped_header(_named(dropped, result.dropped)), result.body)

        got, served = await call.run(answer)
        call.settle(served, got.usage or TokenUsage(call.size // 4, 0))
        headers = {"Content-Type": "application/json", REQUEST_ID: call.rid, **call.res.headers, **got.headers}
        return web.Response(body=got.raw, headers=headers)

    framing = Framing(request.query.get("alt") == "sse")

    async def open_stream(provider: Provider, target: Target, dep: Deployment) -> MessageStream:
        if isinstance(provider, GenerateContentUpstream):
            return _Native(await provider.generate_stream(target, payload(target)), framing)
        chat, dropped = translation.chat(target, dep)
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
        chunks = await provider.stream("chat", target, chat)
        return _Translated(chunks, _named(dropped, chunks.dropped), model, call.size, thoughts, framing)

    if call.rec is not None:
        call.rec.stream = True
    stream, served = await call.run(open_stream, each_a_stream)

    def head() -> dict[str, str]:
        out = {**call.res.headers, **stream.headers}
        if not framing.sse:  # Google's default: one JSON array, its elements written as they come
            out["Content-Type"] = "application/json"
        return out

    return await call.pump_stream(request, stream, stream.frames, served, head, None,
                                  lambda failure: framing.error(failure, gw.scrub))


async def _count_tokens(request: web.Request) -> web.StreamResponse:
    """Counted by the upstream for `bedrock`, `gemini` and `vertex` deployments (InputTokenCounter,
    on the chat request the generateContent request becomes), estimated for others. Needs a key
    that may use the model; neither billed nor counted against rate limits."""
    gw = request.app[GATEWAY]
    key = authenticate(request)
    model = model_of(request)
    body, _raw = await read_json(request, gw.settings.max_body_bytes)
    inner = body.get("generateContentRequest")
    request_body = inner if isinstance(inner, dict) else body  # Google takes either form
    translation = _Translation(request_body, None)
    checked, _ = inbound.translate_generate_request(request_body, model)
    route = route_for(gw, key, model)

    async def count(provider: Provider, target: Target, dep: Deployment) -> Answer:
        if isinstance(provider, InputTokenCounter):
            counted = await provider.count_input_tokens(target, translation.chat(target, dep)[0])
            if counted is not None:
                return Answer(orjson.dumps({"totalTokens": counted}), None)
        return _estimate(checked)

    return await counted(request, route, count, lambda: _estimate(checked), (InputTokenCounter,))


def _estimate(chat: Body) -> Answer:
    system = [m["content"] for m in chat["messages"] if m.get("role") == "system"]
    counted = {"system": "\n".join(system), "tools": chat.get("tools"),
               "messages": [m for m in chat["messages"] if m.get("role") != "system"]}
    return Answer(orjson.dumps({"totalTokens": estimate_input_tokens(counted)}), None, {ESTIMATE_HEADER: "estimate"})


async def model_method(request: web.Request) -> web.StreamResponse:
    method = request.match_info["method"]
    if method == "generateContent":
        return await _generate(request, False)
    if method == "streamGenerateContent":
        return await _generate(request, True)
    if method == "countTokens":
        return await _count_tokens(request)
    if method == "embedContent":
        return await embed(request, "embedContent")
    if method == "batchEmbedContents":
        return await embed(request, "batchEmbedContents")
    raise NotFound(f"the gateway does not serve the Gemini API method {method[:60]!r}; it serves {_METHODS}",
                   code="not_found")


def add_gemini_routes(app: web.Application) -> None:
    for prefix in ("/v1beta", "/v1"):
        app.router.add_post(prefix + "/models/{model:.+}:{method:[A-Za-z]+}", model_method)
    # the model routes' own handlers, which answer Google's clients in Google's shape
    app.router.add_get("/v1beta/models", list_models)
    app.router.add_get("/v1beta/models/{model:.+}", get_model)
