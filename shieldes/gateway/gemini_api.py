"""The Gemini API surface (what Gemini CLI and Google's google-genai SDK speak):
POST /v1beta/models/{model}:generateContent, :streamGenerateContent and :countTokens (also
under /v1/models/...), GET /v1beta/models and /v1beta/models/{model} (the model routes' handlers,
which answer Google's clients in Google's shape, under /v1 too).

Every deployment, `gemini` and `vertex` ones included, gets the request translated to OpenAI chat
(gemini_inbound) and its answer translated back (gemini_replies); what the translation had to drop
is named in the `x-shieldes-dropped` response header. Admission (auth, allow-list, rpm/tpm, budget
reservation) and settlement are the Messages surface's (Call), errors are in Google's shape
(middleware.google_client)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import orjson
from aiohttp import web

from shieldes.errors import InvalidRequest, NotFound
from shieldes.gateway import relay
from shieldes.gateway.messages import ESTIMATE_HEADER, Answer
from shieldes.gateway.middleware import REQUEST_ID, record_of, request_id
from shieldes.gateway.routes import GATEWAY, MAX_MODEL_NAME, Call, authenticate, get_model, list_models, read_json
from shieldes.projections.state import Deployment
from shieldes.providers import gemini_inbound as inbound
from shieldes.providers import gemini_replies as replies
from shieldes.providers.base import Body, ChunkStream, InputTokenCounter, Provider, Target, TokenUsage
from shieldes.providers.dropped import JSON_OBJECT, dropped_header
from shieldes.providers.kinds import spec_for
from shieldes.usage.tokens import estimate_input_tokens, estimate_output_tokens, prompt_bytes

# chat names the provider's translation reports -> the generateContent field the client sent
_AS_SENT = {"reasoning_effort": "generationConfig.thinkingConfig", "seed": "generationConfig.seed",
            "presence_penalty": "generationConfig.presencePenalty",
            "frequency_penalty": "generationConfig.frequencyPenalty",
            JSON_OBJECT: "generationConfig.responseMimeType"}
_METHODS = "generateContent, streamGenerateContent and countTokens"


def _model(request: web.Request) -> str:
    model = request.match_info["model"].removeprefix("models/")
    if not model.strip() or len(model) > MAX_MODEL_NAME:
        raise InvalidRequest("the path must name a model: /v1beta/models/{model}:generateContent "
                             "(see GET /v1beta/models)")
    return model


def _named(dropped: list[str], by_provider: Sequence[str]) -> list[str]:
    return dropped + [_AS_SENT.get(n, n) for n in by_provider]


class _Translation:
    """The client's generateContent request, translated for each deployment tried (whether
    thinkingConfig can go along depends on the model)."""

    def __init__(self, body: Body, cap: int | None) -> None:
        self.body = body
        self.cap = cap  # the completion bound a budget needs, when the client named none

    def chat(self, target: Target, dep: Deployment) -> tuple[Body, list[str]]:
        spec = spec_for(dep.kind, target.model)
        chat, dropped = inbound.translate_generate_request(self.body, target.model,
                                                           thinks=spec is not None and spec.thinks)
        if self.cap is not None and "max_tokens" not in chat and "max_completion_tokens" not in chat:
            chat["max_completion_tokens"] = self.cap
        return chat, dropped


async def _generate(request: web.Request, streaming: bool) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    key = authenticate(request)
    model = _model(request)
    body, raw = await read_json(request, gw.settings.max_body_bytes)
    checked, _ = inbound.translate_generate_request(body, model)  # bad input: a 400 before admission
    max_tokens = checked.get("max_tokens") or checked.get("max_completion_tokens")
    thoughts = inbound.include_thoughts(body)
    call = Call(gw, request, key, "chat", {"model": model}, prompt_bytes(raw), max_tokens, cap=True)
    translation = _Translation(body, call.cap)

    if not streaming:
        async def answer(provider: Provider, target: Target, dep: Deployment) -> Answer:
            chat, dropped = translation.chat(target, dep)
            result = await provider.call("chat", target, chat)
            usage = result.usage or TokenUsage(call.size // 4, estimate_output_tokens(result.body))
            reply = replies.chat_to_generate_response(result.body, model, usage, thoughts)
            return Answer(orjson.dumps(reply), usage, dropped_header(_named(dropped, result.dropped)))

        got, served = await call.run(answer)
        call.settle(served, got.usage or TokenUsage(call.size // 4, 0))
        headers = {"Content-Type": "application/json", REQUEST_ID: call.rid, **call.res.headers, **got.headers}
        return web.Response(body=got.raw, headers=headers)

    async def open_stream(provider: Provider, target: Target, dep: Deployment) -> tuple[ChunkStream, list[str]]:
        chat, dropped = translation.chat(target, dep)
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
        chunks = await provider.stream("chat", target, chat)
        return chunks, _named(dropped, chunks.dropped)

    sse = request.query.get("alt") == "sse"
    if call.rec is not None:
        call.rec.stream = True
    (stream, dropped), served = await call.run(open_stream)
    tally = relay.Tally()
    try:
        headers = {**call.res.headers, **dropped_header(dropped)}
        if not sse:  # Google's default: one JSON array, its elements written as they come
            headers["Content-Type"] = "application/json"
        resp = relay.sse_response(call.rid, headers)
        await relay.pump(request, resp, _frames(stream, tally, model, call.size, thoughts, sse), tally,
                         gw.settings.disconnect_drain_seconds, None, gw.scrub)
        return resp
    finally:
        # settle first: the usage is final once the relay has stopped reading
        usage = relay.final_usage(stream.usage, tally, call.size)
        call.settle(served, usage)
        call.stream_ended(served.deployment, tally, usage)
        await stream.aclose()


async def _frames(stream: ChunkStream, tally: relay.Tally, model: str, size: int, thoughts: bool,
                  sse: bool) -> AsyncIterator[bytes]:
    """The answer's chunks as SSE events (`alt=sse`) or as the elements of one JSON array."""
    responses = replies.chunks_to_generate_responses(
        relay.counted(stream, tally), model, lambda: relay.final_usage(stream.usage, tally, size), thoughts)
    first = True
    async for data in responses:
        if sse:
            yield relay.frame(None, data)
        else:
            yield (b"[" if first else b",\r\n") + orjson.dumps(data)
        first = False
    if not sse:
        yield b"[]" if first else b"]"


async def _count_tokens(request: web.Request) -> web.StreamResponse:
    """Counted by the upstream for `bedrock`, `gemini` and `vertex` deployments (InputTokenCounter,
    on the chat request the generateContent request becomes), estimated for others. Needs a key
    that may use the model; neither billed nor counted against rate limits."""
    gw = request.app[GATEWAY]
    key = authenticate(request)
    model = _model(request)
    body, _raw = await read_json(request, gw.settings.max_body_bytes)
    inner = body.get("generateContentRequest")
    request_body = inner if isinstance(inner, dict) else body  # Google takes either form
    translation = _Translation(request_body, None)
    checked, _ = inbound.translate_generate_request(request_body, model)
    route = gw.route(key, model)

    async def count(provider: Provider, target: Target, dep: Deployment) -> Answer:
        if isinstance(provider, InputTokenCounter):
            counted = await provider.count_input_tokens(target, translation.chat(target, dep)[0])
            if counted is not None:
                return Answer(orjson.dumps({"totalTokens": counted}), None)
        return _estimate(checked)

    if any(isinstance(gw.providers.get(d.kind), InputTokenCounter) for d in route.deployments):
        got, _dep = await gw.attempts("count_tokens", route, count, record_of(request))
    else:  # nothing to ask upstream
        got = _estimate(checked)
    headers = {"Content-Type": "application/json", REQUEST_ID: request_id(request), **got.headers}
    return web.Response(body=got.raw, headers=headers)


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
    raise NotFound(f"the gateway does not serve the Gemini API method {method[:60]!r}; it serves {_METHODS}",
                   code="not_found")


def add_gemini_routes(app: web.Application) -> None:
    for prefix in ("/v1beta", "/v1"):
        app.router.add_post(prefix + "/models/{model:[^:]+}:{method}", model_method)
    # the model routes' own handlers, which answer Google's clients in Google's shape
    app.router.add_get("/v1beta/models", list_models)
    app.router.add_get("/v1beta/models/{model:.+}", get_model)
