"""HTTP handlers: parse and validate, authenticate, call the Gateway, render. Nothing else."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, NoReturn, TypeVar
from urllib.parse import parse_qs

import orjson
from aiohttp import web

from shieldes.errors import BodyTooLarge, InvalidRequest
from shieldes.gateway import relay
from shieldes.gateway.checked_histories import REMEMBER_FROM
from shieldes.gateway.http1 import decompressed
from shieldes.gateway.lean_request import LeanRequest, LeanResponse
from shieldes.gateway.middleware import REQUEST_ID, record_of, request_id
from shieldes.gateway.service import Gateway, sent_keys
from shieldes.gateway.top_level import (
    NOTHING,
    ChatTopLevel,
    Outgoing,
    TopLevel,
    malformed_json,
    read_chat,
    utf8_checked,
)
from shieldes.gateway.upstream_calls import Attempt
from shieldes.projections.state import Deployment, VirtualKey
from shieldes.providers.base import (
    MALFORMED_OUTPUT,
    Body,
    ChunkStream,
    JsonResult,
    Operation,
    TokenUsage,
    UpstreamFailure,
)
from shieldes.providers.chat_history import Found, read_turn
from shieldes.providers.dropped import dropped_header
from shieldes.providers.gateway_fields import METADATA, TAGS, TAGS_HEADER, foreign_fields, request_tags
from shieldes.requestlog.record import RequestRecord
from shieldes.routing.asked_fallbacks import ASKED, NOTHING_ASKED, fallback_fields, read_asked
from shieldes.routing.router import Route, RouteTarget
from shieldes.usage.meter import Reservation
from shieldes.usage.tokens import estimate_output_tokens

log = logging.getLogger(__name__)
GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)
READINESS: web.AppKey[Callable[[], tuple[bool, dict[str, Any]]]] = web.AppKey("readiness")
MAX_MODEL_NAME = 256
_TEXT_OR_PARTS = (str, list)  # (a tuple: `str | list` is built anew at every evaluation, per message)
T = TypeVar("T")


def json_response(data: object, rid: str, headers: dict[str, str] | None = None,
                  status: int = 200) -> web.Response:
    all_headers = {"Content-Type": "application/json", REQUEST_ID: rid}
    if headers:
        all_headers.update(headers)
    return web.Response(body=orjson.dumps(data), status=status, headers=all_headers)


MODEL_BODY = '{"model": ..., ...}'  # what a body of the model routes starts with


async def read_json(request: web.Request, max_bytes: int, example: str = MODEL_BODY) -> tuple[Body, bytes]:
    raw = await read_body(request, max_bytes)
    return json_object(raw, example), raw


def json_object(raw: bytes, example: str = MODEL_BODY) -> Body:
    """The body `raw` decoded whole: a JSON object, or a 400 naming what is wrong with it (`example`:
    an object the route takes, shown when the body is some other JSON value)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise malformed_json(exc) from None
    if not isinstance(data, dict):
        raise InvalidRequest(f"the request body must be a JSON object, e.g. {example}")
    return data


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The request's body bytes, decompressed, within `max_bytes` and not blank."""
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise BodyTooLarge(f"request body is {declared} bytes; the limit is {max_bytes}: send a smaller request")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise BodyTooLarge(f"request body exceeds the limit of {max_bytes} bytes; send a smaller request") \
            from None
    except web.RequestPayloadError as exc:  # a broken chunked body, cut off by the client
        raise InvalidRequest(f"the request body could not be read ({str(exc).strip()[:200]}); send it again "
                             "with a correct Content-Length or chunked encoding") from None
    if isinstance(request, web.BaseRequest):
        # aiohttp hands the body over as sent (the runner does not decompress it), so an
        # encoding it cannot decode is a 400 in the API's shape, as on the front's routes.
        raw = decompressed(raw, request.headers.get("Content-Encoding", "").strip().lower(), max_bytes)
        if len(raw) > max_bytes:
            raise BodyTooLarge(f"request body exceeds the limit of {max_bytes} bytes once decompressed; "
                               "send a smaller request")
    if not raw.strip():
        raise InvalidRequest("empty request body: send a JSON object (Content-Type: application/json)")
    return raw


def _field(body: Body, name: str, types: type | tuple[type, ...], what: str, *,
           required: bool = False) -> Any:
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidRequest(f"missing required field {name!r}: {what}", param=name)
        return None
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise InvalidRequest(f"field {name!r} has the wrong type: {what}", param=name)
    if not isinstance(value, types):
        raise InvalidRequest(f"field {name!r} has the wrong type: {what}", param=name)
    return value


def _refuse_field(body: Body, name: str, what: str) -> NoReturn:
    """The refusal of a field that is not what it must be: missing when absent, else of the wrong
    type (never called missing: the user would look for a field they did send)."""
    if body.get(name) is None:
        raise InvalidRequest(f"missing required field {name!r}: {what}", param=name)
    raise InvalidRequest(f"field {name!r} has the wrong type: {what}", param=name)


def _model(body: Body) -> str:
    model = _field(body, "model", str, "a model name string, e.g. \"gpt-4o\"", required=True)
    if not model.strip() or len(model) > MAX_MODEL_NAME:
        raise InvalidRequest(f"field 'model' must be a non-empty model name of at most {MAX_MODEL_NAME} characters "
                             "(see GET /v1/models)", param="model")
    return str(model)


def _max_tokens(body: Body) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = _field(body, name, int, "a positive integer")
        if value is not None:
            if value < 1:
                raise InvalidRequest(f"field {name!r} must be a positive integer", param=name)
            return int(value)
    return None


def _choices(body: Body, op: Operation) -> int:
    """How many completions the request asks for (`n`; a completions request's `best_of`, which
    the upstream generates and bills in full): each may run to max_tokens, and the budget
    estimate holds them all, so a wrong value is refused here rather than guessed at."""
    most = 1
    for name in ("n", "best_of") if op == "completions" else ("n",):
        value = _field(body, name, int, "a positive integer")
        if value is not None:
            if value < 1:
                raise InvalidRequest(f"field {name!r} must be a positive integer (the number of completions)",
                                     param=name)
            most = max(most, int(value))
    return most


def _stream_flag(body: Body) -> bool:
    return bool(_field(body, "stream", bool, "true or false"))


def _messages(body: Body) -> list[Any]:
    messages = _field(body, "messages", list, "a non-empty list of message objects", required=True)
    if not messages:
        raise InvalidRequest("field 'messages' must be a non-empty list of message objects", param="messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise InvalidRequest(f"messages[{i}] must be an object with a string 'role'",
                                 param=f"messages[{i}].role" if isinstance(m, dict) else f"messages[{i}]")
        content = m.get("content")
        if content is not None and not isinstance(content, _TEXT_OR_PARTS):
            raise InvalidRequest(f"messages[{i}].content must be a string or a list of content parts",
                                 param=f"messages[{i}].content")
    return list(messages)


def _client_wants_usage(body: Body) -> bool:
    options = _field(body, "stream_options", dict, "an object such as {\"include_usage\": true}")
    if not options:
        return False
    wants = options.get("include_usage")
    if wants is not None and not isinstance(wants, bool):  # as OpenAI refuses it: not guessed at
        raise InvalidRequest("field 'stream_options.include_usage' has the wrong type: true or false",
                             param="stream_options.include_usage")
    return wants is True


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


def openai_usage(op: Operation, usage: TokenUsage) -> Body:
    """Counts the gateway settled (its estimate, when the upstream reported none) as the `usage` of
    an OpenAI answer: embeddings have no completion tokens."""
    if op == "embeddings":
        return {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens}
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens}


class Call:
    """One admitted request: the key, its route and reservation; settles exactly once. Notes the
    route, the deployments tried, timings and usage on the request-log record."""

    def __init__(self, gw: Gateway, request: web.Request, key: VirtualKey, op: Operation, body: Body,
                 size: int, max_tokens: int | None, route: Route | None = None, *,
                 choices: int = 1, tools: object = None) -> None:
        """`route`: the key's route for the body's model, when the caller already resolved it.
        A budgeted request naming no max_tokens gets one, in `self.cap`, to send (Gateway.admit).
        `tools`: the request's tools as JSON bytes, where `body` does not hold them decoded (a
        budget holds the hosted tools they offer)."""
        self.gw = gw
        self.key = key
        self.rec = rec = record_of(request)
        self.rid = request_id(request) if rec is None else rec.request_id  # (the record holds it)
        requested = _model(body) if route is None else route.requested
        if rec is not None:
            rec.key = key
            rec.model = requested
        self.route: Route = route if route is not None else gw.route(self.key, requested)
        self.op = op
        self.size = size
        self.res: Reservation
        self.res, self.cap = gw.admit(self.key, self.route, size, max_tokens, op, choices=choices,
                                      service_tier=body.get("service_tier"),
                                      tools=body.get("tools") if tools is None else tools)
        self.headers = self.res.headers  # the answer's own headers: the limits', what was dropped

    async def run(self, attempt: Attempt[T], streamed: Callable[[T], bool] | None = None) -> tuple[T, RouteTarget]:
        """Run `attempt` over the route's deployments; the reservation is released if none answers.
        `streamed`: which of its results are streams (UpstreamCalls._attempt)."""
        try:
            return await self.gw.attempts(self.op, self.route, attempt, self.rec, streamed)
        except BaseException:
            self.gw.meter.release(self.res)
            raise

    def fallback_headers(self, served: RouteTarget) -> dict[str, str]:
        """The answer's headers saying which fallback served it, when one did (noted on the record)."""
        return self.gw.fallback_headers(self.route, served, self.rec) if self.route.fallbacks else {}

    def settle(self, served: RouteTarget, usage: TokenUsage) -> None:
        nusd = self.gw.settle(self.res, served.deployment, served.model, usage)
        rec = self.rec
        if rec is not None:
            rec.upstream_model = served.model
            rec.prompt_tokens = usage.prompt_tokens
            rec.completion_tokens = usage.completion_tokens
            rec.cached_tokens = usage.cache_read_tokens
            rec.cache_write_tokens = usage.cache_write_tokens
            rec.reasoning_tokens = usage.reasoning_tokens
            rec.service_tier = usage.service_tier
            rec.web_searches = usage.web_search_requests or None  # (RequestRecord.tool_uses, inline)
            rec.file_searches = usage.file_search_calls or None
            rec.containers = usage.containers or None
            rec.cost_nusd = nusd

    async def json(self, out: Outgoing) -> JsonResult:
        try:
            result, served = await self.gw.call(self.op, self.route, out, rec=self.rec)
        except BaseException:
            self.gw.meter.release(self.res)
            raise
        self.headers = {**self.res.headers, **dropped_header([*out.named, *result.dropped]),
                        **self.fallback_headers(served)}
        if result.usage is not None:
            self.settle(served, result.usage)
            return result
        # the upstream counted nothing: bill an estimate and tell the client, in the answer's usage
        usage = TokenUsage(self.size // 4, estimate_output_tokens(result.body))
        self.settle(served, usage)
        return JsonResult(dict(result.body, usage=openai_usage(self.op, usage)), None)

    async def stream(self, request: web.Request, out: Outgoing,
                     render: Callable[[ChunkStream, relay.Tally], AsyncIterator[bytes]],
                     error_event: str | None) -> web.StreamResponse:
        rec = self.rec
        if rec is not None:
            rec.stream = True
        try:
            stream, served = await self.gw.open_stream(self.op, self.route, out, rec=rec)
        except BaseException:
            self.gw.meter.release(self.res)
            raise
        dropped = [*out.named, *stream.dropped]
        headers = {**self.res.headers, **dropped_header(dropped)} if dropped else self.res.headers
        if self.route.fallbacks:
            headers = {**headers, **self.fallback_headers(served)}
        # pump_stream's work, in this coroutine (a layer costs every stream one)
        tally = relay.Tally()
        if rec is None or rec.upstream_span is None:  # (no attempt span to name the finish reasons)
            tally.wants_reasons = False
        try:
            resp = relay.sse_response(self.rid, headers)
            await relay.pump(request, resp, render(stream, tally), tally, self.gw.settings.disconnect_drain_seconds,
                             error_event, self.gw.scrub)
            return resp
        except BaseException as exc:
            relay.note_raised(tally, exc, self.gw.scrub)
            raise
        finally:
            self._stream_ended(stream, tally, served)
            await stream.aclose()

    async def pump_stream(self, request: web.Request, stream: relay.Held,
                          frames: Callable[[relay.Tally], AsyncIterator[bytes]], served: RouteTarget,
                          headers: Callable[[], dict[str, str]], error_event: str | None,
                          ending: Callable[[UpstreamFailure], bytes] | None = None) -> web.StreamResponse:
        """Relay `stream`'s frames to the client (relay.pump) under `headers()`, then settle the
        reservation on its usage and note the stream's end, whatever happened (what raised before
        the first frame included)."""
        tally = relay.Tally()
        try:
            resp = relay.sse_response(self.rid, headers())
            await relay.pump(request, resp, frames(tally), tally, self.gw.settings.disconnect_drain_seconds,
                             error_event, self.gw.scrub, ending)
            return resp
        except BaseException as exc:
            relay.note_raised(tally, exc, self.gw.scrub)
            raise
        finally:
            self._stream_ended(stream, tally, served)
            await stream.aclose()

    def _stream_ended(self, stream: relay.Held, tally: relay.Tally, served: RouteTarget) -> None:
        # settle first: the usage is final once the relay has stopped reading (relay.final_usage, in line)
        usage = stream.usage
        if usage is None:
            usage = TokenUsage(self.size // 4, tally.content_chunks)
        self.settle(served, usage)
        note_stream_end(self.gw, self.rec, self.rid, served.deployment, tally, usage)


def note_stream_end(gw: Gateway, rec: RequestRecord | None, rid: str, dep: Deployment, tally: relay.Tally,
                    usage: TokenUsage) -> None:
    """A relayed stream's end, on every streaming route: time to first token and tokens per second
    (metrics and the request-log record), how it ended (client gone, upstream failed), and the
    attempt's outcome for the deployment's health and circuit breaker (relay.attempt_failed; its
    opening counted none: UpstreamCalls._attempt)."""
    now = time.perf_counter()
    first = tally.first_token_at
    ttft = (first - (rec.t0 if rec is not None else now)) if first else None
    # (a conversation deleted meanwhile is no upstream error nor a client leaving: neither drop counts it)
    ended = "conversation_deleted" if tally.failure_code == relay.CONVERSATION_DELETED else tally.outcome
    gw.metrics.stream_ended(dep.name, ended, ttft, usage.completion_tokens, now - first if first else 0.0,
                            rec.trace_id if rec is not None else None)
    failed = relay.attempt_failed(tally)
    if failed is not None:
        gw.breaker.stream_ended(dep.name, failed)
    if ttft is not None:
        gw.breaker.first_token(dep.name, ttft)
    if rec is not None:
        rec.t_first_byte = tally.first_write_at
        rec.t_first_token = first
        if tally.outcome == "disconnected":
            rec.error_code = "client_disconnected"
            rec.error_message = f"the client went away mid-stream after {tally.content_chunks} chunks" + (
                f", the upstream silent for {tally.silent_for:.0f} s: counted as deployment {dep.name} failing"
                if failed else "")
        elif tally.failure_code == relay.CONVERSATION_DELETED:
            rec.error_code = relay.CONVERSATION_DELETED
            rec.error_message = (f"the conversation was deleted mid-stream; deployment {dep.name} answered in full "
                                 f"({tally.content_chunks} chunks), nothing wrong upstream: {tally.failure}; the "
                                 "client got an error event saying so")
        elif tally.outcome == "upstream_error":
            # a turn the model ended malformed is counted apart: the model's fault, not the connection's
            rec.error_code = MALFORMED_OUTPUT if tally.failure_code == MALFORMED_OUTPUT else relay.STREAM_ERROR_CODE
            rec.error_message = (f"upstream deployment {dep.name} failed mid-stream after {tally.content_chunks} "
                                 f"chunks: {tally.failure or 'no reason given'}; the client got an error event "
                                 "saying so")
        tracing = gw.tracing
        if tracing is not None:
            tracing.stream_ended(rec, tally.outcome, tally.content_chunks, tally.sent_bytes, usage, tally.failure,
                                 tally.finish_reasons)
    if tally.failure_code == relay.CONVERSATION_DELETED:
        log.info("the conversation was deleted mid-stream; deployment %s answered in full, nothing wrong "
                 "upstream: %s [request %s]", dep.name, tally.failure, rid)
    elif tally.outcome == "disconnected" and failed:
        log.warning("upstream deployment %s stalled mid-stream: silent for %.0f s after %d chunks when the client "
                    "left; counted as a failure [request %s]", dep.name, tally.silent_for, tally.content_chunks, rid)
    elif tally.outcome == "upstream_error":
        log.warning("upstream deployment %s failed mid-stream after %d chunks: %s [request %s]", dep.name,
                    tally.content_chunks, tally.failure or "no reason given", rid)


def _chat_history(top: TopLevel) -> list[str] | None:
    """A chat request's history checked as `_messages` checks it, read off its bytes where it can
    be (read_chat): its tool call ids, or None when it had to be decoded to be checked."""
    if isinstance(top, ChatTopLevel) and top.shape("messages") == "list":
        return top.ids
    _messages(top.decoded())  # the exact check: its error, or an odd but valid history
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
    requested = _model(body)
    _note_model(request, requested)
    streaming = False
    ids: list[str] | None = None
    if op == "chat":
        ids = _chat_history(top)
        streaming = _stream_flag(body)
    elif op == "completions":
        if not isinstance(body.get("prompt"), str | list):
            _refuse_field(body, "prompt", "a string, a list of strings, or token ids")
        streaming = _stream_flag(body)
    elif not isinstance(body.get("input"), str | list) or not body.get("input"):
        what = "a non-empty string, a list of strings, or token ids"
        if isinstance(body.get("input"), str | list):
            raise InvalidRequest(f"field 'input' is empty: send {what}", param="input")
        _refuse_field(body, "input", what)
    max_tokens = _max_tokens(body)
    choices = 1 if op == "embeddings" else _choices(body, op)
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
    wants_usage = _client_wants_usage(body)
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
