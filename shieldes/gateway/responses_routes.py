"""HTTP handlers of the Responses API: POST /v1/responses (JSON and typed SSE events), stored
responses (DELETE /v1/responses/{id}, GET /v1/responses/{id}/input_items) and
POST /v1/responses/input_tokens (GET and cancel, which background responses shape, are
responses_background's). Admission, limits, budgets and settlement go through the same
Gateway methods as chat completions."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import msgspec
from aiohttp import web

from shieldes.errors import InvalidRequest, NotFound, ShieldesError
from shieldes.gateway import relay
from shieldes.gateway.call import note_stream_end
from shieldes.gateway.checked_histories import REMEMBER_FROM, items_after
from shieldes.gateway.middleware import record_of, request_id
from shieldes.gateway.request_fields import read_body, read_json
from shieldes.gateway.routes import GATEWAY, authenticate, json_response, tagged
from shieldes.gateway.service import Gateway
from shieldes.gateway.top_level import INPUT, TopLevel
from shieldes.projections.state import VirtualKey
from shieldes.providers.base import TokenUsage, UpstreamFailure
from shieldes.providers.dropped import with_named
from shieldes.providers.gateway_fields import TAGS_HEADER, foreign_fields
from shieldes.providers.hosted_tools import with_hosted
from shieldes.providers.openai_responses import TERMINAL
from shieldes.providers.responses_translate import request_to_chat
from shieldes.providers.upstream_connection import Payload
from shieldes.requestlog.record import RequestRecord
from shieldes.responses.conversations import Conversations
from shieldes.responses.history import NONE as NO_HISTORY
from shieldes.responses.history import History
from shieldes.responses.input_bytes import calls_made
from shieldes.responses.input_turns import InputTurn, TurnRead
from shieldes.responses.objects import (
    Body,
    ContextOf,
    ResponsesUsage,
    asks_encrypted,
    event_without_encrypted,
    reports_usage,
    without_encrypted,
)
from shieldes.responses.request import (
    ResponsesRequest,
    estimate_input_tokens,
    forwards_as_sent,
    input_sent_as_is,
    item_id,
    parse_request,
    upstream_body,
    upstream_fields,
)
from shieldes.responses.service import ResponseStore, previous_not_found
from shieldes.responses.socket_memory import SOCKET_MEMORY, LaneMemory
from shieldes.responses.store import StoredResponse
from shieldes.responses.upstream import NATIVE, Answer, EventStream, NativeEvents
from shieldes.routing.asked_fallbacks import ASKED, DISABLE, FALLBACKS, NOTHING_ASKED, read_asked
from shieldes.routing.router import Route, RouteTarget
from shieldes.usage.meter import Reservation
from shieldes.usage.tokens import estimate_output_tokens, prompt_bytes

RESPONSES: web.AppKey[ResponseStore] = web.AppKey("responses", ResponseStore)
CONVERSATIONS: web.AppKey[Conversations] = web.AppKey("conversations", Conversations)
MAX_LIST = 100


def _key(request: web.Request) -> tuple[Gateway, VirtualKey]:
    return request.app[GATEWAY], authenticate(request)


def token_usage(usage: ResponsesUsage | None, size: int, output: int, tier: str | None = None) -> TokenUsage:
    """The upstream's usage, or when it reported none the estimate: request bytes / 4 input tokens
    and `output` (one per delta event of a stream, the answer's text / 4 of a JSON answer); `tier`:
    the service tier that served it (served_tier)."""
    if usage is None:
        return TokenUsage(size // 4, output, service_tier=tier)
    cached = usage.cached_tokens if 0 < usage.cached_tokens <= usage.input_tokens else 0
    written = usage.cache_write_tokens if 0 < usage.cache_write_tokens <= usage.input_tokens - cached else 0
    return TokenUsage(usage.input_tokens, usage.output_tokens, cache_read_tokens=cached, cache_write_tokens=written,
                      service_tier=tier, reasoning_tokens=usage.reasoning_tokens or None)


def served_tier(response: Body | None) -> str | None:
    """The service tier a Responses object says served it (`service_tier`), if it names one."""
    tier = None if response is None else response.get("service_tier")
    return tier if isinstance(tier, str) and tier else None


def billed_as_served(usage: TokenUsage, response: Body | None,
                     sessions: Callable[[frozenset[str]], int] = len) -> TokenUsage:
    """`usage` with what the final response object says about billing that its usage does not: the
    service tier that served it (given to token_usage where the usage is built, so no second build
    here on the common path) and the hosted tools it ran (web and file searches, code interpreter
    containers: providers/hosted_tools.py; `sessions` says how many of its containers start a
    billed session)."""
    if response is None:
        return usage
    usage = with_hosted(usage, response.get("output"), sessions)
    if usage.service_tier is None:
        tier = served_tier(response)
        if tier is not None:
            return usage._replace(service_tier=tier)
    return usage


def finish_reason(response: Body) -> str:
    """Why a Responses object ended: its `incomplete_details.reason` (max_output_tokens,
    content_filter), else its status (completed, failed, cancelled)."""
    details = response.get("incomplete_details")
    reason = details.get("reason") if isinstance(details, dict) else None
    return str(reason or response.get("status") or "unknown")


def _estimated(response: Body | None, size: int, output: int) -> Body | None:
    """A response object whose upstream reported no usage (a chat server that refused
    stream_options or omits usage, a Responses server that counts nothing), with the estimate that
    is billed (token_usage's) as its `usage`, so the client and GET see what is billed; any other
    unchanged."""
    if response is None or reports_usage(response.get("usage")):
        return response
    billed = token_usage(None, size, output)
    return dict(response, usage=ResponsesUsage(billed.prompt_tokens, billed.completion_tokens).to_dict())


class Turn:
    """One admitted Responses request: settles exactly once, stores the result if asked to and
    appends its items to its conversation, if it names one."""

    def __init__(self, gw: Gateway, store: ResponseStore, key: VirtualKey, route: Route, res: Reservation,
                 size: int, stored_input: list[Body], previous: str | None, keep: bool,
                 rec: RequestRecord | None = None, conversations: Conversations | None = None,
                 conversation: str | None = None, memory: LaneMemory | None = None,
                 history: History = NO_HISTORY, stored_json: bytes | None = None) -> None:
        """`memory`: the WebSocket lane's, which remembers the response after `history`.
        `stored_json`: the input as the client's JSON bytes, stored instead of `stored_input` when
        it was never decoded (no conversation or lane then: they need the items)."""
        self.gw, self.store, self.key, self.route, self.res = gw, store, key, route, res
        self.size, self.stored_input, self.previous, self.keep = size, stored_input, previous, keep
        self.rec, self.conversations, self.conversation = rec, conversations, conversation
        self.memory, self.history, self.stored_json = memory, history, stored_json

    def in_conversation(self, response: Body) -> Body:
        """The response object names its conversation, as OpenAI's does."""
        return response if self.conversation is None else dict(response, conversation={"id": self.conversation})

    @property
    def appends(self) -> bool:
        """Whether the turn's items go onto a conversation (`append`)."""
        return self.conversations is not None and self.conversation is not None

    async def append(self, response: Body) -> None:
        """The turn's input and output items onto its conversation, before the client gets the end
        of the answer (the next turn, on any node, reads them). A failed response adds nothing, so
        the turn can be sent again."""
        if self.conversations is None or self.conversation is None or response.get("status") == "failed":
            return
        await self.conversations.append_turn(self.conversation, self.key.id, self.stored_input, response)

    def fallback_headers(self, served: RouteTarget) -> dict[str, str]:
        """The answer's headers saying which fallback served it, when one did (noted on the record)."""
        return self.gw.fallback_headers(self.route, served, self.rec) if self.route.fallbacks else {}

    def finish(self, served: RouteTarget, response: Body | None, usage: TokenUsage) -> None:
        usage = billed_as_served(usage, response, self.gw.container_sessions.bill)
        nusd = self.gw.settle(self.res, served.deployment, served.model, usage)
        rec = self.rec
        if rec is not None:
            rec.prompt_tokens, rec.completion_tokens, rec.cost_nusd = usage.prompt_tokens, usage.completion_tokens, nusd
            rec.cached_tokens, rec.reasoning_tokens = usage.cache_read_tokens, usage.reasoning_tokens
            rec.cache_write_tokens = usage.cache_write_tokens
            rec.service_tier = usage.service_tier
            rec.tool_uses(usage)
            rec.upstream_model = served.model
        if self.memory is not None and response is not None:
            self.memory.remember(response, self.key.id, self.history.then(self.stored_input))
        if self.keep and response is not None and isinstance(response.get("id"), str):
            created = response.get("created_at")
            self.store.save(StoredResponse(
                response["id"], float(created) if isinstance(created, (int, float)) else time.time(),
                self.key.id, self.previous, str(response.get("model") or self.route.requested),
                self.stored_input if self.stored_json is None else self.stored_json, response,
            ), self.history)


async def history_of(request: web.Request, req: ResponsesRequest, key_id: str) -> History:
    """What comes before the request's input: the stored conversation of previous_response_id, or
    the items of its conversation (the two are exclusive; parse_request refuses both). On a
    WebSocket, the connection's latest response first, stored or not (its history was read as
    each turn was remembered: nothing of it is read again)."""
    if req.previous_response_id is not None:
        memory: LaneMemory | None = request.get(SOCKET_MEMORY)
        remembered = None if memory is None else memory.history(req.previous_response_id, key_id)
        if remembered is not None:
            return remembered
        try:
            return await request.app[RESPONSES].history(req.previous_response_id, key_id)
        except NotFound:  # (a 400 for a continuation, as OpenAI answers it; GET and DELETE keep their 404)
            raise previous_not_found(req.previous_response_id) from None
    if req.conversation is not None:
        return History.of(await request.app[CONVERSATIONS].history(req.conversation, key_id))
    return NO_HISTORY


@dataclass(slots=True)
class Prepared:
    """A POST /v1/responses admitted: what its call sends and how it answers. (Not frozen: one is
    made per request, and a frozen field costs its __init__ a call of object.__setattr__.)"""

    req: ResponsesRequest
    turn: Turn
    sent: Body
    ctx: ContextOf
    as_sent: Payload | None
    shown: bool  # the client sees encrypted reasoning (include)
    rid: str
    top: TopLevel | None = None  # the client's body, when its input stays bytes (`sent` is every other field)
    foreign: list[str] = field(default_factory=list)  # another gateway's fields left out, as named (x-shieldes-dropped)

    def headers(self, given: Mapping[str, str]) -> dict[str, str]:
        """`given` (an answer's headers) naming the fields left out before any upstream saw them."""
        return dict(with_named(given, self.foreign))


class Background(Protocol):
    """How a `background: true` create is run (responses_background.Starter, set with its routes)."""

    def check_room(self) -> None: ...

    async def start(self, request: web.Request, p: Prepared) -> web.StreamResponse: ...


BACKGROUND: web.AppKey[Background] = web.AppKey("background", Background)


def input_calls_made(data: memoryview, before: frozenset[str] | None) -> frozenset[str] | None:
    """CheckedHistories' read of a Responses input: the call ids its items made when they go to a
    native upstream as sent (input_bytes), reading only the items after those that passed before."""
    return calls_made(data) if before is None else calls_made(items_after(data), before)


def _input_turn(gw: Gateway, key_id: str, raw: bytes) -> tuple[InputTurn, TurnRead] | None:
    """A long body, read from where the input of a body of the key read before ended (gw.checked_turns),
    and what the read found of the rest (its top-level fields but `input`, its prompt bytes); None
    when it is not one whose input goes upstream as sent, or is malformed (read then the general
    way, which says what is wrong)."""
    read = TurnRead(raw)
    found = gw.checked_turns.check(key_id, raw, read)  # (which checks the body's UTF-8)
    return None if found is None else (found, read)


def budget_bounds(gw: Gateway, key: VirtualKey, route: Route, body: Body, cap: int | None) -> Body:
    """The fields a budget adds to a Responses request (a turn, a compaction) so that its answer
    cannot spend past its hold: the output bound admission decided for one naming no
    max_output_tokens (`cap`; as chat gets one: held at a guess and sent unbounded, one answer
    could spend the budget many times), and the tool calls held for the searches it offers."""
    out: Body = {} if cap is None else {"max_output_tokens": cap}
    calls = gw.tool_calls_bound(key, route, body.get("tools"), body.get("max_tool_calls"))
    if calls is not None:
        out["max_tool_calls"] = calls
    return out


async def prepare(request: web.Request) -> Prepared:
    """Everything before the upstream call: parse, route, history, admission (limits, budget)."""
    gw, key = _key(request)
    store = request.app[RESPONSES]
    # a coding agent's input (its whole conversation) stays the client's bytes when nothing of the
    # turn is kept and a native deployment can take it as sent; else the body is decoded whole
    raw = await read_body(request, gw.settings.max_body_bytes)
    memory: LaneMemory | None = request.get(SOCKET_MEMORY)
    over_socket = memory is not None
    turn_read = None if over_socket or len(raw) < REMEMBER_FROM else _input_turn(gw, key.id, raw)
    foreign = [] if turn_read is None else foreign_fields(turn_read[1].small)
    asked = NOTHING_ASKED if not foreign else read_asked(turn_read[1].small if turn_read is not None else None)
    header_tags = request.headers.get(TAGS_HEADER)
    named = tagged(request, foreign, turn_read[1].small, header_tags) \
        if turn_read is not None and (foreign or header_tags is not None) else foreign
    if turn_read is not None and foreign:  # another gateway's fields (rare): read the general way, without them
        raw, turn_read = TopLevel.read(raw, turn_read[1].small, INPUT).with_fields({}, foreign), None
    size = -1  # (the body's prompt bytes, when its read counted them)
    if turn_read is not None:  # (a long body read from where the key's last input ended, or whole)
        found, read = turn_read
        top = TopLevel.read(raw, read.small, INPUT)
        input_raw: bytes | memoryview | msgspec.Raw = memoryview(raw)[found.start:found.end + 1]
        as_is = input_sent_as_is(top.small, "list", False)
        size = read.size  # (counted from where the key's last input ended)
    else:
        top = TopLevel(raw, INPUT)
        if not foreign:
            foreign = foreign_fields(top.small)
            asked = read_asked(top.small) if foreign else NOTHING_ASKED
            if foreign or header_tags is not None:
                named = tagged(request, foreign, top.small, header_tags)
            if foreign:  # another gateway's fields: never forwarded, named
                raw = top.with_fields({}, foreign)
                top = TopLevel(raw, INPUT)
        as_is = input_sent_as_is(top.small, top.shape("input"), over_socket) \
            and gw.checked_inputs.check(key.id, top.fields["input"], input_calls_made) is not None
        input_raw = top.fields["input"] if as_is else b""
    body = top.small if as_is else top.decoded()
    req = parse_request(body, as_sent_input=as_is)
    rec = record_of(request)
    if rec is not None:
        rec.model, rec.stream = req.model, req.streaming
    if FALLBACKS in foreign or DISABLE in foreign:  # honoured, not dropped
        named = [*(name for name in named if name not in ASKED), *asked.unused]
    route = gw.with_fallbacks(key, gw.route(key, req.model), asked)
    if req.background:  # a node that cannot run it refuses before any work
        if over_socket:
            raise InvalidRequest("background mode is not available on a WebSocket: create the response with "
                                 "POST /v1/responses and background: true, or send it without background",
                                 param="background")
        request.app[BACKGROUND].check_room()
    conversations = request.app[CONVERSATIONS]
    history = NO_HISTORY if req.previous_response_id is None and req.conversation is None \
        else await history_of(request, req, key.id)
    sent = upstream_fields(body) if as_is else upstream_body(body, history.items, req.input)
    size = (prompt_bytes(raw) if size < 0 else size) + history.size
    if req.store:
        store.check_room()  # (the writer's backlog in bytes: before the upstream call and the reservation)
    res, cap = gw.admit(key, route, size, req.max_output_tokens, "responses",
                        service_tier=body.get("service_tier"), tools=body.get("tools"),
                        max_tool_calls=body.get("max_tool_calls"))
    capped = budget_bounds(gw, key, route, body, cap)
    payload: Payload = raw
    if capped:  # (`top` stays the client's: an upstream that needs more than its bytes gets `sent`'s fields)
        body, sent, payload = {**body, **capped}, {**sent, **capped}, top.sent_with(capped)
    ctx = ContextOf(body, req.store, int(time.time()), req.model)
    turn = Turn(gw, store, key, route, res, size, req.input, req.previous_response_id,
                req.store and not req.background,  # a background run writes its own row
                rec, conversations, req.conversation, memory, history,
                bytes(memoryview(input_raw)) if as_is and req.store else None)
    as_sent = payload if as_is or forwards_as_sent(body, req.input) else None
    return Prepared(req, turn, sent, ctx, as_sent, asks_encrypted(body), request_id(request), top if as_is else None,
                    named)


async def create_response(request: web.Request) -> web.StreamResponse:
    p = await prepare(request)
    if p.req.background:
        return await request.app[BACKGROUND].start(request, p)
    outcome, served = await call(p, p.req.streaming)
    turn, shown = p.turn, p.shown  # else encrypted reasoning is kept for the stored response only
    if isinstance(outcome, Answer):
        response = turn.in_conversation(dict(outcome.response, store=p.req.store))
        # no usage from the upstream: the output is estimated from the answer's text, and the
        # response (as sent and as stored) carries the estimate that is billed
        output = estimate_output_tokens(response) if outcome.usage is None else 0
        response = _estimated(response, turn.size, output) or response
        turn.finish(served, response, token_usage(outcome.usage, turn.size, output, served_tier(response)))
        await turn.append(response)
        return json_response(response if shown else without_encrypted(response), p.rid,
                             p.headers({**turn.res.headers, **outcome.headers, **turn.fallback_headers(served)}))
    return await stream(request, p.rid, turn, served, outcome, shown, p.foreign)


async def call(p: Prepared, streaming: bool) -> tuple[Answer | EventStream, RouteTarget]:
    """The upstream call, with failover; the reservation is released if it fails."""
    turn = p.turn
    try:
        return await turn.gw.responses(turn.route, p.sent, p.ctx, streaming, p.as_sent, rec=turn.rec, top=p.top,
                                       history=turn.history)
    except BaseException:
        turn.gw.meter.release(turn.res)
        raise


async def stream(request: web.Request, rid: str, turn: Turn, served: RouteTarget,
                 events: EventStream, shown: bool, foreign: Sequence[str] = ()) -> web.StreamResponse:
    """A streamed answer relayed to `request`'s sink (the client's, a WebSocket's or a background
    run's), settled and stored at its end whatever happens."""
    tally = relay.Tally()
    last: tuple[Body, int, Body] | None = None  # the terminal response billed: (as read, deltas, as sent)
    unappended = False  # the answer came in full but its conversation refused it: no fault of the deployment

    def bill(response: Body, deltas: int) -> Body:  # the usage billed, in the response the client gets
        nonlocal last
        billed = turn.in_conversation(_estimated(response, turn.size, deltas) or response)
        tally.finish_reasons[:] = [finish_reason(billed)]
        last = (response, deltas, billed)
        return billed

    async def appended(response: Body) -> None:
        """Before the terminal event goes out: its items onto the conversation."""
        nonlocal unappended
        try:
            await turn.append(response)
        except ShieldesError as exc:  # the client gets this error instead of the terminal event
            unappended = True
            raise UpstreamFailure(f"the answer is complete but its items could not be added to conversation "
                                  f"{turn.conversation!r}: {exc.message}", status=None, retryable=False,
                                  code=relay.CONVERSATION_DELETED) from None

    async def frames() -> AsyncIterator[bytes]:
        async for event in events:
            kind = str(event.get("type", ""))
            if kind.endswith(".delta"):
                if not tally.content_chunks:
                    tally.first_token_at = time.perf_counter()
                tally.content_chunks += 1
            elif kind in TERMINAL and isinstance(event.get("response"), dict):
                event = dict(event, response=bill(event["response"], tally.content_chunks))
                await appended(event["response"])
            yield relay.frame(str(event.get("type")), event if shown else event_without_encrypted(event))

    try:
        headers = {**turn.res.headers, **events.headers, **turn.fallback_headers(served)}
        resp = relay.sse_response(rid, dict(with_named(headers, list(foreign))) if foreign else headers)
        # a native upstream's frames: its own bytes where the gateway changes nothing, counted and
        # held for the conversation's append in the one generator that reads them
        out = events.frames(bill, tally, appended if turn.appends else None) \
            if isinstance(events, NativeEvents) else frames()
        await relay.pump(request, resp, out, tally, turn.gw.settings.disconnect_drain_seconds, "error")
        return resp
    except BaseException as exc:
        relay.note_raised(tally, exc, turn.gw.scrub)
        raise
    finally:
        final, deltas = events.final, tally.content_chunks
        usage = token_usage(events.usage, turn.size, deltas, served_tier(final))
        if last is not None and last[0] is final and last[1] == deltas:  # (as the client got it: billed once)
            final = last[2]
        elif final is not None:
            final = turn.in_conversation(_estimated(final, turn.size, deltas) or final)
        turn.finish(served, final, usage)
        broke = events.broke
        if broke is not None and tally.outcome == "done":  # (its `response.failed` went out as the last event)
            relay.note_failure(tally, broke, turn.gw.scrub)
        if unappended:  # (the conversation deleted meanwhile: the request's doing, as a 4xx would be)
            tally.request_at_fault = True
        note_stream_end(turn.gw, turn.rec, rid, served.deployment, tally, usage)
        await events.aclose()


async def delete_response(request: web.Request) -> web.StreamResponse:
    _gw, key = _key(request)
    response_id = request.match_info["id"]
    await request.app[RESPONSES].delete(response_id, key.id)
    return json_response({"id": response_id, "object": "response", "deleted": True}, request_id(request))


def list_limit(value: str | None) -> int:
    if value is None:
        return 20
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIST:
        raise InvalidRequest(f"query parameter 'limit' must be an integer from 1 to {MAX_LIST}", param="limit")
    return limit


async def list_input_items(request: web.Request) -> web.StreamResponse:
    _gw, key = _key(request)
    response_id = request.match_info["id"]
    stored = await request.app[RESPONSES].get(response_id, key.id)
    limit = list_limit(request.query.get("limit"))
    order = request.query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("query parameter 'order' must be asc or desc", param="order")
    items = [dict(item, id=item_id(response_id, i, item)) for i, item in enumerate(stored.items())]
    if order == "desc":
        items.reverse()
    after = request.query.get("after")
    if after is not None:
        ids = [i["id"] for i in items]
        if after not in ids:
            raise InvalidRequest(f"query parameter 'after' names no input item of {response_id!r}", param="after")
        items = items[ids.index(after) + 1:]
    page = items[:limit]
    return json_response({
        "object": "list", "data": page, "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None, "has_more": len(items) > limit,
    }, request_id(request))


async def count_input_tokens(request: web.Request) -> web.StreamResponse:
    gw, key = _key(request)
    body, _raw = await read_json(request, gw.settings.max_body_bytes)
    req = parse_request(body)
    route = gw.route(key, req.model)
    sent = upstream_body(body, (await history_of(request, req, key.id)).items, req.input)
    if all(d.responses == NATIVE for d in route.deployments):  # the upstream counts exactly
        count = await gw.responses_input_tokens(route, sent)
    else:
        count = estimate_input_tokens(request_to_chat(sent, route.model))
    return json_response({"object": "response.input_tokens", "input_tokens": count}, request_id(request))


def add_responses_routes(app: web.Application) -> None:
    # the forms without /v1 come from route_aliases.add_unversioned_aliases
    app.router.add_post("/v1/responses", create_response)
    app.router.add_post("/v1/responses/input_tokens", count_input_tokens)
    app.router.add_delete("/v1/responses/{id}", delete_response)
    app.router.add_get("/v1/responses/{id}/input_items", list_input_items)
