"""The Anthropic Messages surface: POST /v1/messages and /v1/messages/count_tokens.

A deployment of type `anthropic`, and a Claude model of a `vertex` one, gets the client's request
as it is (anthropic_native: only the model name changes; Vertex takes it in the URL and refuses
some fields and beta values, left out and named in `x-shieldes-dropped`) and the client gets the
upstream's answer as it is. Any other deployment gets
the request translated to OpenAI chat (anthropic_inbound) and its answer translated back; what the
translation had to drop is named in the `x-shieldes-dropped` response header. Both ways run
through the same admission (auth, allow-list, rpm/tpm, budget reservation) and settlement."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import orjson
from aiohttp import web

from shieldes.errors import InvalidRequest
from shieldes.gateway import count_request, relay
from shieldes.gateway.call import Call
from shieldes.gateway.messages_turns import MessagesTopLevel, read_messages
from shieldes.gateway.middleware import ANTHROPIC_REQUEST_ID, REQUEST_ID, record_of, request_id
from shieldes.gateway.request_fields import body_field, json_object, model_field, read_body, stream_flag
from shieldes.gateway.routes import GATEWAY, authenticate
from shieldes.gateway.top_level import MESSAGES_HISTORY, TopLevel
from shieldes.gateway.upstream_calls import each_a_stream
from shieldes.projections.state import Deployment
from shieldes.providers import anthropic_inbound as inbound
from shieldes.providers import anthropic_replies as replies
from shieldes.providers import bedrock_betas, chat_paths
from shieldes.providers.anthropic_native import MessagesUpstream, NativeEventStream, Passthrough, native_body
from shieldes.providers.base import (
    Body,
    ChunkStream,
    InputTokenCounter,
    Provider,
    Target,
    TokenUsage,
)
from shieldes.providers.dropped import dropped_header, with_named
from shieldes.providers.gateway_fields import (
    FOREIGN,
    METADATA,
    TAGS,
    TAGS_HEADER,
    anthropic_metadata,
    gateway_fields,
    request_tags,
)
from shieldes.providers.kinds import spec_for
from shieldes.providers.output_caps import within_cap
from shieldes.providers.tool_ids import anthropic_ids_fit_in
from shieldes.routing.asked_fallbacks import ASKED, DISABLE, FALLBACKS, read_asked
from shieldes.routing.router import Route
from shieldes.usage.tokens import estimate_input_tokens, estimate_output_tokens

ESTIMATE_HEADER = "x-shieldes-token-count"
# the kinds whose chat translation carries `top_k` (to Claude, or to Gemini as its topK)
TOP_K_KINDS = frozenset(("bedrock", "gemini", "vertex"))


@dataclass(slots=True)
class Answer:
    raw: bytes
    usage: TokenUsage | None
    headers: dict[str, str] = field(default_factory=dict)
    body: Body | None = None  # the upstream's answer already decoded (its id, model, finish: the attempt's span)


class MessageStream(Protocol):
    headers: dict[str, str]

    @property
    def usage(self) -> TokenUsage | None: ...

    def frames(self, tally: relay.Tally) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class _Native(relay.Rendered[NativeEventStream]):
    """An upstream Anthropic event stream, relayed as it is."""

    def __init__(self, stream: NativeEventStream, scrub: Callable[[str], str]) -> None:
        super().__init__(stream, dropped_header(stream.dropped))
        self._scrub = scrub

    def frames(self, tally: relay.Tally) -> AsyncIterator[bytes]:
        return self._stream.client_frames(tally, self._scrub)


class _Translated(relay.Rendered[ChunkStream]):
    """OpenAI chunks of a translated call, as the Anthropic event sequence."""

    def __init__(self, stream: ChunkStream, model: str, dropped: list[str], thinking: bool,
                 prompt_bytes: int) -> None:
        super().__init__(stream, dropped_header(dropped))
        self._model = model
        self._thinking = thinking
        self._prompt_bytes = prompt_bytes

    async def frames(self, tally: relay.Tally) -> AsyncGenerator[bytes, None]:
        events = replies.openai_chunks_to_message_events(relay.counted(self._stream, tally), self._model,
                                                         self._thinking)
        async for event, data in events:
            if event == "message_delta" and self._stream.usage is None:
                # the upstream reported no usage (e.g. it refused stream_options): the client is told
                # the estimate that is billed (relay.final_usage), not 0
                data["usage"] = replies.with_tier(
                    replies.anthropic_usage(relay.final_usage(None, tally, self._prompt_bytes)),
                    data["usage"].get("service_tier"))
            yield relay.frame(event, data)


def _validate(top: TopLevel) -> int:
    body = top.small
    model_field(body)
    shape = top.shape("messages")
    if shape == "missing":
        raise InvalidRequest("missing required field 'messages': a non-empty list of message objects")
    if shape == "other":
        raise InvalidRequest("field 'messages' has the wrong type: a non-empty list of message objects")
    if shape == "empty list":
        raise InvalidRequest("field 'messages' must be a non-empty list of message objects")
    max_tokens = body_field(body, "max_tokens", int, "a positive integer", required=True)
    if max_tokens < 1:
        raise InvalidRequest("field 'max_tokens' must be a positive integer")
    return int(max_tokens)


def _translate(body: Body, target: Target, kind: str, betas: list[str]) -> tuple[Body, list[str], list[int | None]]:
    """The Messages request as a chat request for `target`, what the Messages translation leaves
    out of it (the provider's own chat translation reports what it leaves out: `_named`), and the
    client's message index of each chat message (None: the system prompt). `betas` (the client's
    `anthropic-beta` values) go along to Bedrock, which carries those Claude takes there."""
    origins: list[int | None] = []
    try:
        spec = spec_for(kind, target.model)
        chat, dropped = inbound.translate_messages_request(body, target.model,
                                                           cache_marks=spec is not None and spec.cache_marks,
                                                           thinks=spec is not None and spec.thinks,
                                                           tool_images=spec is not None and spec.tool_images,
                                                           top_k=kind in TOP_K_KINDS,
                                                           origins=origins)
        if betas and kind == "bedrock":
            chat[bedrock_betas.FIELD] = betas
        return chat, dropped, origins
    except InvalidRequest:
        raise
    except Exception as exc:  # a shape the translator cannot read is the client's to fix
        raise InvalidRequest(f"cannot read this Messages request ({type(exc).__name__}: {exc}); "
                             "check it against the Anthropic Messages API") from None


def _client_paths(origins: Sequence[int | None]) -> contextlib.AbstractContextManager[None]:
    """Errors about the chat request the Messages request became (the provider's translation
    refusing a part, an OpenAI-compatible upstream's 400) name the client's own messages: the chat
    messages are not the client's one for one (the system prompt comes first, tool results become
    messages of their own)."""
    return chat_paths.named(inbound.client_names(origins))


# chat names the provider's translation reports -> the Messages field the client sent
_AS_SENT = {"reasoning_effort": "thinking", "parallel_tool_calls": "tool_choice.disable_parallel_tool_use"}


def _named(dropped: list[str], by_provider: Sequence[str]) -> list[str]:
    """What both translations left out, as the client sent it: its `thinking` became the chat
    request's reasoning_effort (named by the provider for a model that cannot think), its
    tool_choice's disable_parallel_tool_use parallel_tool_calls (Gemini, and Converse for models other
    than Claude, have no such switch)."""
    return dropped + [_AS_SENT.get(n, n) for n in by_provider]


# What a count is not asked with: another gateway's fields, and a create's fields that change no
# count (an app counts the body it is about to send), each of which Anthropic's count_tokens refuses
# ("max_tokens: Extra inputs are not permitted")
NOT_COUNTED = frozenset((*FOREIGN, METADATA, "max_tokens", "stream", "stop_sequences", "temperature", "top_k",
                         "top_p", "service_tier", "container", "inference_geo", "diagnostics"))


def _without_foreign(request: web.Request, top: TopLevel) -> tuple[TopLevel, list[str]]:
    """`top` without another gateway's fields and the `metadata` keys Anthropic refuses
    (providers/gateway_fields.py), and the names of those left out; `top` itself when there are
    none (nearly always). LiteLLM's tags (`tags`, `metadata.tags`, x-litellm-tags) go onto the
    request-log record and are named only when left out of it."""
    small = top.small
    foreign = gateway_fields(small)  # another gateway's: never forwarded, named
    meta, gone = anthropic_metadata(small.get(METADATA)) if METADATA in small else (None, [])
    header_tags = request.headers.get(TAGS_HEADER)
    if not foreign and not gone and header_tags is None:
        return top, foreign
    named = [name for name in [*foreign, *gone] if name not in (TAGS, f"{METADATA}.{TAGS}")]
    tags, over = request_tags(small.get(TAGS), small.get(METADATA), header_tags)
    rec = record_of(request)
    if rec is not None:
        rec.tags = tags
    if not foreign and not gone:
        return top, over
    changes = {METADATA: meta} if gone and meta is not None else {}
    drop = [*foreign, *([METADATA] if gone and meta is None else [])]
    return TopLevel(top.with_fields(changes, drop), MESSAGES_HISTORY), named + over


def _ids_fit(top: TopLevel) -> bool:
    """Whether the history's tool call ids fit Anthropic's rule, read off its bytes (a turn read on
    from the key's last body checks its new entries only)."""
    if isinstance(top, MessagesTopLevel):
        return top.turn.ids_fit()
    history = top.fields.get("messages")  # (a short body, or one rewritten without another gateway's fields)
    return history is None or anthropic_ids_fit_in(history)


def _native_payload(top: TopLevel, model: str, ids_fit: bool) -> bytes:
    """The bytes for a deployment that speaks Messages: the client's own when they name `model`
    and their tool call ids are ones Anthropic takes (`ids_fit`: read off the bytes), the model
    replaced otherwise; ids another provider minted send it to native_body on the decoded body."""
    if not ids_fit:
        return native_body(top.decoded(), top.raw, model)
    return top.raw if top.small.get("model") == model else top.with_fields({"model": model})


async def messages(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    key = authenticate(request)
    # the top-level fields only (from where the key's last body's messages ended, when this one
    # starts with its bytes): the history is decoded only if a deployment's translation needs it
    read = read_messages(await read_body(request, gw.settings.max_body_bytes), gw.checked_histories, key.id)
    asked = read_asked(read.small)  # (LiteLLM's and Bifrost's fallbacks: honoured, then left out as theirs)
    top, foreign = _without_foreign(request, read)
    if asked or FALLBACKS in foreign or DISABLE in foreign:
        foreign = [*(name for name in foreign if name not in ASKED), *asked.unused]
    max_tokens = _validate(top)
    searches = gw.searches_bound(key, top.fields.get("tools"))
    if searches is not None:  # under a budget a web search's uses are bounded as its tokens are
        top = TopLevel(top.with_fields({"tools": searches}), MESSAGES_HISTORY)
    small = top.small
    model = str(small["model"])
    streaming = stream_flag(small)
    thinking = inbound.reasoning_effort(small.get("thinking")) is not None  # extended thinking asked for
    passthrough = Passthrough.of(request.headers, request.query_string)
    betas = bedrock_betas.header_values(request.headers.get("anthropic-beta"))
    route = gw.with_fallbacks(key, gw.route(key, model), asked)
    call = Call(gw, request, key, "chat", small, top.prompt_bytes(), max_tokens, route,
                tools=top.fields.get("tools"))

    def native_payload(target: Target) -> bytes:
        return _native_payload(top, target.model, _ids_fit(top))

    if not streaming:
        async def answer(provider: Provider, target: Target, dep: Deployment) -> Answer:
            if isinstance(provider, MessagesUpstream):
                native = await provider.messages(target, native_payload(target), passthrough)
                named = dropped_header(native.dropped)
                if native.usage is not None:  # the upstream's bytes, as they are
                    return Answer(native.raw, native.usage, named, native.body)
                usage = TokenUsage(call.size // 4, estimate_output_tokens(native.body))
                return Answer(orjson.dumps(dict(native.body, usage=replies.anthropic_usage(usage))), usage, named,
                              native.body)
            chat, dropped, origins = _translate(top.decoded(), target, dep.kind, betas)
            with _client_paths(origins):
                result, lowered = await within_cap(gw.output_caps, target, chat,
                                                   lambda c: provider.call("chat", target, c), "max_tokens")
            usage = result.usage or TokenUsage(call.size // 4, estimate_output_tokens(result.body))
            message = replies.openai_response_to_messages(result.body, model, thinking)
            if result.usage is None:  # the estimate that is billed, reasoning included even when not shown
                message["usage"] = replies.with_tier(replies.anthropic_usage(usage),
                                                     message["usage"].get("service_tier"))
            return Answer(orjson.dumps(message), usage, dropped_header(_named(dropped + lowered, result.dropped)),
                          result.body)

        got, served = await call.run(answer)
        # the upstream's count, or the estimate the answer already carries (never None here)
        call.settle(served, got.usage or TokenUsage(call.size // 4, 0))
        headers = {"Content-Type": "application/json", REQUEST_ID: call.rid, ANTHROPIC_REQUEST_ID: call.rid,
                   **call.res.headers, **with_named(got.headers, foreign), **call.fallback_headers(served)}
        return web.Response(body=got.raw, headers=headers)

    async def open_stream(provider: Provider, target: Target, dep: Deployment) -> MessageStream:
        if isinstance(provider, MessagesUpstream):
            native = await provider.messages_stream(target, native_payload(target), passthrough)
            return _Native(native, gw.scrub)
        chat, dropped, origins = _translate(top.decoded(), target, dep.kind, betas)
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
        with _client_paths(origins):
            chunks, lowered = await within_cap(gw.output_caps, target, chat,
                                               lambda c: provider.stream("chat", target, c), "max_tokens")
        return _Translated(chunks, model, _named(dropped + lowered, chunks.dropped), thinking, call.size)

    if call.rec is not None:
        call.rec.stream = True
    stream, served = await call.run(open_stream, each_a_stream)
    return await call.pump_stream(request, stream, stream.frames, served,
                                  lambda: {ANTHROPIC_REQUEST_ID: call.rid, **call.res.headers,
                                           **with_named(stream.headers, foreign), **call.fallback_headers(served)},
                                  "error")


async def count_tokens(request: web.Request) -> web.StreamResponse:
    """Passed through to `anthropic` deployments and Claude models on `vertex`, counted by the
    upstream for `bedrock`, `gemini` and `vertex` ones (InputTokenCounter), estimated for others
    and for models those cannot count (usage.tokens). Needs a key that may use the model; it is
    neither billed nor counted against rate limits (the upstream does not bill it either). The body
    is read by its top-level fields where that answers as a whole decode does (count_request)."""
    gw = request.app[GATEWAY]
    key = authenticate(request)
    raw = await read_body(request, gw.settings.max_body_bytes)
    # by its fields while this key's counts go to a native upstream, else decoded whole at once
    top = count_request.split(raw) if gw.counts_native.get(key.id, True) else None
    body = json_object(raw) if top is None else None
    try:
        model = model_field(top.small if top is not None else body or {})
        _messages_list(top.shape("messages") if top is not None else _list_shape((body or {}).get("messages")))
        route = gw.route(key, model)
    except Exception:
        if top is not None:
            json_object(raw)  # a body orjson refuses is refused for that first, as a whole decode does
        raise
    native = any(isinstance(gw.providers.get(d.kind), MessagesUpstream) for d in route.deployments)
    gw.counts_native[key.id] = native
    ids_fit = None if top is None or not native else count_request.history_checked(top, key.id, gw.checked_counts)
    decoded: Body = {}
    if top is None or ids_fit is None:  # (the history's numbers not checked, or one may be out of range)
        decoded = body if body is not None else json_object(raw)
        top = None
    unsent = [name for name in (decoded if top is None else top.small) if name in NOT_COUNTED]
    if unsent:  # (a create's body sent to be counted): Anthropic's count refuses them
        if top is None:
            decoded = {name: value for name, value in decoded.items() if name not in unsent}
            raw = orjson.dumps(decoded)
        else:
            top = TopLevel(top.with_fields({}, unsent), MESSAGES_HISTORY)

    def whole() -> Body:
        return decoded if top is None else top.decoded()

    def payload(target: Target) -> bytes:
        if top is None:
            return native_body(decoded, raw, target.model)
        return _native_payload(top, target.model, bool(ids_fit))

    passthrough = Passthrough.of(request.headers, request.query_string)

    async def count(provider: Provider, target: Target, dep: Deployment) -> Answer:
        if isinstance(provider, MessagesUpstream):
            native = await provider.count_tokens(target, payload(target), passthrough)
            return Answer(native.raw, None, dropped_header(native.dropped))
        if isinstance(provider, InputTokenCounter):
            chat, _, origins = _translate(dict(whole(), max_tokens=1), target, dep.kind,
                                          bedrock_betas.header_values(request.headers.get("anthropic-beta")))
            with _client_paths(origins):
                counted = await provider.count_input_tokens(target, chat)
            if counted is not None:
                return Answer(orjson.dumps({"input_tokens": counted}), None)
        return _estimate(whole())

    resp = await counted(request, route, count, lambda: _estimate(whole()), (MessagesUpstream, InputTokenCounter))
    resp.headers[ANTHROPIC_REQUEST_ID] = request_id(request)
    named = gateway_fields(unsent)  # (a create's own fields change no count: not named)
    if named:
        resp.headers.update(with_named(resp.headers, named))
    return resp


def _list_shape(value: object) -> str:
    """TopLevel.shape of a decoded value."""
    return "missing" if value is None else ("list" if value else "empty list") if isinstance(value, list) else "other"


def _messages_list(shape: str) -> None:
    """A count's `messages` (its TopLevel.shape) as the decoded body's body_field(..., list,
    required=True) checks it: present, not null, a list (empty or not)."""
    if shape == "missing":
        raise InvalidRequest("missing required field 'messages': a list of message objects")
    if shape == "other":
        raise InvalidRequest("field 'messages' has the wrong type: a list of message objects")


async def counted(request: web.Request, route: Route,
                  count: Callable[[Provider, Target, Deployment], Awaitable[Answer]],
                  estimate: Callable[[], Answer], counters: tuple[type, ...]) -> web.Response:
    """A count_tokens answer (Messages, Gemini): the upstream's count through the route's
    attempts when one of its deployments can count (`counters`), else the estimate; not billed."""
    gw = request.app[GATEWAY]
    if any(isinstance(gw.providers.get(d.kind), counters) for d in route.deployments):
        got, _dep = await gw.attempts("count_tokens", route, count, record_of(request))
    else:  # nothing to ask upstream
        got = estimate()
    headers = {"Content-Type": "application/json", REQUEST_ID: request_id(request), **got.headers}
    return web.Response(body=got.raw, headers=headers)


def _estimate(body: Body) -> Answer:
    """The estimated count, for a request the Messages route would take: the estimate reads any
    shape, so a `system`, a message or a tool that route refuses is refused here too (max_tokens,
    which a count does not carry, aside)."""
    inbound.translate_messages_request(dict(body, max_tokens=1))
    return Answer(orjson.dumps({"input_tokens": estimate_input_tokens(body)}), None, {ESTIMATE_HEADER: "estimate"})


def add_messages_routes(app: web.Application) -> None:
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
