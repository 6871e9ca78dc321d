"""HTTP handlers of the OpenAI routes (and /health, /ready, /metrics): authenticate, read the body
(request_fields), hand it to a Call (call), render. Nothing else."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs

import orjson
from aiohttp import web

from shieldes.errors import InvalidRequest
from shieldes.gateway import relay
from shieldes.gateway.call import Call
from shieldes.gateway.checked_histories import REMEMBER_FROM
from shieldes.gateway.lean_request import LeanRequest, LeanResponse
from shieldes.gateway.middleware import REQUEST_ID, record_of, request_id
from shieldes.gateway.request_fields import (
    choices_of,
    client_wants_usage,
    max_tokens_of,
    messages_of,
    model_field,
    read_body,
    refuse_field,
    stream_flag,
)
from shieldes.gateway.service import Gateway, sent_keys
from shieldes.gateway.top_level import (
    NOTHING,
    ChatTopLevel,
    Outgoing,
    TopLevel,
    read_chat,
    utf8_checked,
)
from shieldes.projections.state import VirtualKey
from shieldes.providers.base import ChunkStream, Operation
from shieldes.providers.chat_history import Found, read_turn
from shieldes.providers.gateway_fields import METADATA, TAGS, TAGS_HEADER, foreign_fields, request_tags
from shieldes.routing.asked_fallbacks import ASKED, NOTHING_ASKED, fallback_fields, read_asked

GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)
READINESS: web.AppKey[Callable[[], tuple[bool, dict[str, Any]]]] = web.AppKey("readiness")


def json_response(data: object, rid: str, headers: dict[str, str] | None = None,
                  status: int = 200) -> web.Response:
    all_headers = {"Content-Type": "application/json", REQUEST_ID: rid}
    if headers:
        all_headers.update(headers)
    return web.Response(body=orjson.dumps(data), status=status, headers=all_headers)


def authenticate(request: web.Request) -> VirtualKey:
    """The request's virtual key (from memory), noted on its request-log record: `Authorization:
    Bearer` (OpenAI SDKs), `x-api-key` (Anthropic's), `api-key` (Azure-style clients),
    `x-goog-api-key` or the `key` query parameter (Google's Gemini API clients); LiteLLM's
    `x-litellm-api-key` and Bifrost's `x-bf-vk` first (service.sent_keys)."""
    headers = request.headers
    key = request.app[GATEWAY].authenticate(*sent_keys(headers, headers.get("x-goog-api-key"),
                                                       _query_key(request.query_string)))
    rec = record_of(request)
    if rec is not None:
        rec.key = key
    return key


def _query_key(query: str) -> str | None:
    """The `key` query parameter (Google's clients may send the key so); read from the query string,
    which the front's lean requests carry too, and parsed only when it is there."""
    if "key=" not in query:
        return None
    keys = parse_qs(query).get("key")
    return keys[0] if keys else None


def _note_model(request: web.Request, model: str) -> None:
    """The requested model on the request-log record, before routing can refuse it."""
    rec = record_of(request)
    if rec is not None:
        rec.model = model



def _chat_history(top: TopLevel) -> list[str] | None:
    """A chat request's history checked as `messages_of` checks it, read off its bytes where it can
    be (read_chat): its tool call ids, or None when it had to be decoded to be checked."""
    if isinstance(top, ChatTopLevel) and top.shape("messages") == "list":
        return top.ids
    messages_of(top.decoded())  # the exact check: its error, or an odd but valid history
    return None


def tagged(request: web.Request, foreign: Sequence[str], fields: Mapping[str, Any],
            header_tags: str | None) -> list[str]:
    """The request's LiteLLM tags (body `tags`, `metadata.tags`, x-litellm-tags) onto its request-log
    record, and what of `foreign` is named in x-shieldes-dropped: the rest, and the tags left out."""
    tags, over = request_tags(fields.get(TAGS), fields.get(METADATA), header_tags)
    rec = record_of(request)
    if rec is not None:
        rec.tags = tags
    return [name for name in foreign if name != TAGS] + over


def _chat_turn(gw: Gateway, key_id: str, raw: bytes) -> Callable[[bytes], Found | None] | None:
    """How a chat body is read: a long one from where the messages of a body of the key read before
    ended (checked_chats), a short one whole."""
    if len(raw) < REMEMBER_FROM:
        return None
    checked = gw.checked_chats
    return lambda body: checked.check(key_id, body, utf8_checked(body, read_turn(body)))


async def _openai_op(request: web.Request, op: Operation) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    key = authenticate(request)
    # a chat history stays the client's bytes (a coding agent's turn is tens of kB an upstream reads anyway)
    raw = await read_body(request, gw.settings.max_body_bytes)
    top = read_chat(raw, _chat_turn(gw, key.id, raw)) if op == "chat" else TopLevel(raw, NOTHING)
    body = top.small
    foreign = tuple(foreign_fields(body))  # another gateway's fields: never forwarded, named
    named = foreign
    asked = NOTHING_ASKED
    header_tags = request.headers.get(TAGS_HEADER)
    if foreign or header_tags is not None:
        named = tuple(tagged(request, foreign, top.small, header_tags))
        body = {name: value for name, value in body.items() if name not in foreign}
        if op != "embeddings":  # (an embedding from another model is in another vector space: no fallback)
            asked = read_asked(top.small, apply=True)
            named = (*(name for name in named if name not in ASKED), *asked.unused)
    deployment = request.match_info.get("deployment")
    if deployment is not None and body.get("model") != deployment:
        # Azure-style clients name the deployment in the path; it is the model routed, as on Azure.
        body = dict(body, model=deployment)
    size = top.prompt_bytes()  # (media counted as the tokens it is; a turn's read on from its last one)
    requested = model_field(body)
    _note_model(request, requested)
    streaming = False
    ids: list[str] | None = None
    if op == "chat":
        ids = _chat_history(top)
        streaming = stream_flag(body)
    elif op == "completions":
        if not isinstance(body.get("prompt"), str | list):
            refuse_field(body, "prompt", "a string, a list of strings, or token ids")
        streaming = stream_flag(body)
    elif not isinstance(body.get("input"), str | list) or not body.get("input"):
        what = "a non-empty string, a list of strings, or token ids"
        if isinstance(body.get("input"), str | list):
            raise InvalidRequest(f"field 'input' is empty: send {what}", param="input")
        refuse_field(body, "input", what)
    max_tokens = max_tokens_of(body)
    choices = 1 if op == "embeddings" else choices_of(body, op)
    route = gw.with_fallbacks(key, gw.route(key, requested), asked)
    call = Call(gw, request, key, op, body, size, max_tokens, route, choices=choices)
    cap = call.cap
    # a budget needs a bound on the completion: the request gets one (added to the client's bytes)
    if cap is not None:
        body = dict(body, **{"max_completion_tokens" if op == "chat" else "max_tokens": cap})
    per_fallback = None
    if asked.overrides:  # LiteLLM's per-fallback settings, for the attempts of each fallback
        # under a budget every attempt is held to the bound the hold was made for: the gateway's
        # cap, or the client's own max_tokens (a fallback's higher limit would spend past the hold)
        held = cap if cap is not None or not gw.budgeted(key) else max_tokens
        per_fallback, over = fallback_fields(asked, body, held)
        named = (*named, *over)
    if not streaming:
        result = await call.json(Outgoing(top, body, ids, foreign, named, per_fallback))
        if result.raw is not None:  # the upstream's bytes are already the answer: no re-encoding
            headers = {"Content-Type": "application/json", REQUEST_ID: call.rid}
            headers.update(call.headers)
            if isinstance(request, LeanRequest):  # the front writes it: no aiohttp response built
                return LeanResponse(result.raw, headers)
            return web.Response(body=result.raw, headers=headers)
        return json_response(result.body, call.rid, call.headers)
    wants_usage = client_wants_usage(body)
    options = body.get("stream_options")
    if not (isinstance(options, dict) and options.get("include_usage") is True):  # the node bills the usage
        body = dict(body, stream_options={**(options or {}), "include_usage": True})

    def render(stream: ChunkStream, tally: relay.Tally) -> AsyncIterator[bytes]:
        def closing() -> bytes:
            """The usage chunk the client asked for, when the upstream sent none (it refused
            stream_options, say): the estimate that is billed, never nothing."""
            if stream.usage is not None:
                return b""
            like = getattr(stream, "first", None) or {
                "id": f"{'chatcmpl' if op == 'chat' else 'cmpl'}-{call.rid}", "created": int(time.time()),
                "object": "chat.completion.chunk" if op == "chat" else "text_completion", "model": route.model}
            return relay.usage_frame(like, relay.final_usage(None, tally, size))

        usage_chunk = closing if wants_usage else None
        frames = getattr(stream, "frames", None)
        if frames is not None:  # an OpenAI-compatible upstream: forward its frames' bytes
            forwarded: AsyncIterator[bytes] = frames(tally, not wants_usage, usage_chunk)
            return forwarded
        return relay.openai_frames(stream, tally, wants_usage, usage_chunk)

    return await call.stream(request, Outgoing(top, body, ids, foreign, named, per_fallback), render, None)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _openai_op(request, "chat")


async def completions(request: web.Request) -> web.StreamResponse:
    return await _openai_op(request, "completions")


async def embeddings(request: web.Request) -> web.StreamResponse:
    return await _openai_op(request, "embeddings")


async def health(request: web.Request) -> web.StreamResponse:
    return json_response({"status": "alive", "time": time.time()}, request_id(request))


async def ready(request: web.Request) -> web.StreamResponse:
    ok, info = request.app[READINESS]()
    return json_response(info, request_id(request), status=200 if ok else 503)


async def metrics(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    body, content_type = gw.metrics.render_for(request.headers.get("Accept"))
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = content_type
    resp.headers[REQUEST_ID] = request_id(request)
    return resp


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/embeddings", embeddings)
    # Azure OpenAI's paths, as the openai SDK's AzureOpenAI client calls them (with `azure_endpoint`:
    # /openai/deployments/...; with a `base_url` ending in /v1: /v1/deployments/...).
    for prefix in ("/openai/deployments/{deployment}", "/v1/deployments/{deployment}"):
        app.router.add_post(prefix + "/chat/completions", chat_completions)
        app.router.add_post(prefix + "/completions", completions)
        app.router.add_post(prefix + "/embeddings", embeddings)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
