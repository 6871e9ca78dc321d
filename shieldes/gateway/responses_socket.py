"""The Responses API over a WebSocket: `GET /v1/responses` upgraded, the mode OpenAI's SDK opens
with `client.responses.connect()` and Codex tries first (`OpenAI-Beta: responses_websockets=...`).

Each `response.create` message runs as a streamed `POST /v1/responses` would: the same handler,
the same observer (request-log row, metrics, access line) and the same key, limits and budget,
checked again for every message (a key revoked mid-connection is refused at its next message).
Each event of the answer goes back as one text message; an error is an `error` event with its
HTTP status, and the connection stays open. Messages of one lane (`stream_id`; none names the
connection's unnamed lane) are answered one at a time, in the order they came; lanes run at once
(Lanes). Each lane remembers its latest response (SocketMemory), so a turn that sends only its new
items with `previous_response_id` continues it even when it was not stored, on its lane or
another. `generate: false` prepares that state without calling a model. A draining node closes its
sockets (1001, going away) once their answers have ended, so clients reconnect to another node."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, cast

import orjson
from aiohttp import WSCloseCode, WSMsgType, web
from multidict import CIMultiDict, CIMultiDictProxy

from shieldes.errors import final_refusal
from shieldes.gateway import relay
from shieldes.gateway.lean_request import RequestStore, RouteMatch
from shieldes.gateway.middleware import (
    REQUEST_ID,
    REQUEST_ID_KEY,
    REQUEST_IDS,
    SHOULD_RETRY,
    RequestIds,
    record_of,
    request_id,
)
from shieldes.gateway.observe import OBSERVER
from shieldes.gateway.request_fields import read_json
from shieldes.gateway.responses_routes import RESPONSES, create_response, history_of
from shieldes.gateway.routes import GATEWAY, authenticate
from shieldes.responses.objects import ResponseContext, ResponsesUsage, response_id, response_object
from shieldes.responses.request import parse_request
from shieldes.responses.socket_memory import SOCKET_MEMORY, LaneMemory, SocketMemory
from shieldes.responses.store import StoredResponse

Body = dict[str, Any]
PATH = "/v1/responses"
log = logging.getLogger(__name__)
# what a `response.create` carries besides the fields of POST /v1/responses
_ENVELOPE = ("type", "stream_id", "generate")


def sse_data(frame: bytes) -> bytes | None:
    """The data of one SSE frame (its `data:` lines joined), None for a frame without data or the
    `[DONE]` sentinel."""
    lines = [line[5:].removeprefix(b" ") for line in frame.split(b"\n") if line.startswith(b"data:")]
    data = b"\n".join(lines)
    return None if not data or data == b"[DONE]" else data


def with_lane(data: bytes, stream_id: str | None) -> str:
    """An event as its text message: with the `stream_id` of the `response.create` that asked for
    it, when it named one. The member goes in before the object's closing brace: an event that
    carries the whole response (instructions, tools: tens of kB) is not decoded to add it."""
    if stream_id is None:
        return data.decode()
    data = data.rstrip()
    if data.endswith(b"}") and b'"stream_id"' not in data:
        head = data[:-1].rstrip()
        comma = b"" if head.endswith(b"{") else b","
        return (head + comma + b'"stream_id":' + orjson.dumps(stream_id) + b"}").decode()
    event = orjson.loads(data)
    if isinstance(event, dict):
        event["stream_id"] = stream_id
    return orjson.dumps(event).decode()


# The HTTP answer's headers an `error` event carries, as OpenAI's sends them: Codex reads an error
# event's `headers` as an HTTP answer's (its wait before a retry comes from Retry-After).
_EVENT_HEADERS = ("retry-after", "x-should-retry", "x-request-id")


def event_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers of a refused request that say when (and whether) to send it again."""
    return {name: value for name, value in ((k.lower(), v) for k, v in headers.items())
            if name in _EVENT_HEADERS or name.startswith("x-ratelimit-")}


def error_event(status: int, body: bytes, stream_id: str | None, headers: Mapping[str, str] | None = None) -> str:
    """An error answer of the HTTP route (`{"error": {...}}`) as the WebSocket `error` event."""
    try:
        error = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        error = None
    if not isinstance(error, dict):
        error = {"type": "server_error", "code": "internal_error", "message": "the request failed; send it again"}
    event: Body = {"type": "error", "status": status, "error": error}
    if headers:
        event["headers"] = event_headers(headers)
    if stream_id is not None:
        event["stream_id"] = stream_id
    return orjson.dumps(event).decode()


class SocketSink:
    """A streamed answer's SSE frames, sent as one text message per event (relay.Sink)."""

    def __init__(self, ws: web.WebSocketResponse, stream_id: str | None) -> None:
        self._ws = ws
        self._stream_id = stream_id
        self._rest = b""

    async def write(self, data: bytes) -> None:
        if self._ws.closed:
            raise ConnectionResetError("the client closed the WebSocket")
        frames = (self._rest + data).replace(b"\r\n", b"\n").split(b"\n\n")
        self._rest = frames.pop()
        for frame in frames:
            payload = sse_data(frame)
            if payload is not None:
                await self._ws.send_str(with_lane(payload, self._stream_id))

    async def write_eof(self) -> None:
        rest, self._rest = self._rest, b""
        payload = sse_data(rest.strip())
        if payload is not None and not self._ws.closed:
            await self._ws.send_str(with_lane(payload, self._stream_id))


class CoalescedWrites:
    """The socket's transport, with what is written in one turn of the event loop sent in one socket
    write: the events of one upstream read are a frame each, and a write per frame cost a WebSocket
    turn about a fifth more of the node's CPU than the same events over HTTP (one write per read)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._pending: list[bytes] = []
        self._scheduled = False

    def write(self, data: bytes) -> None:
        self._pending.append(bytes(data))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if self._pending and not self._transport.is_closing():
            self._transport.write(b"".join(self._pending))
        self._pending.clear()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # is_closing, abort, get_extra_info, ...
        return getattr(self._transport, name)


# A socket lives for hours between turns. The kernel probes an idle one after a minute and, with no
# answer, ends it 6 probes later: a peer that vanished without closing (a laptop gone to sleep, a
# cut network) is found within about 2 minutes, and its socket and memory are freed. A peer that
# stops acknowledging what the node sends is given up after as long (TCP_USER_TIMEOUT).
PEER_PROBES = (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 6), ("TCP_USER_TIMEOUT", 120_000))


def probe_peer(sock: socket.socket) -> None:
    """Keepalive probes (and the send timeout) on a WebSocket's TCP socket, where the system has
    them (Linux has every one)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in PEER_PROBES:
            option = getattr(socket, name, None)
            if option is not None:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)


def coalesce_writes(ws: web.WebSocketResponse) -> None:
    """aiohttp's writer writes each frame to its transport at once: it gets CoalescedWrites instead.
    (Its writer is not public API: an aiohttp without it leaves the frames a write each.)"""
    writer: Any = getattr(ws, "_writer", None)
    transport = getattr(writer, "transport", None)
    if transport is not None and hasattr(transport, "write"):
        writer.transport = cast(asyncio.Transport, CoalescedWrites(transport))


class SocketRequest(RequestStore):
    """One `response.create` of a connection as the request the Responses handler reads: the
    upgrade's headers (the key) and peer, the message as the body, a request id of its own
    (`rid`: the connection's and the turn's number, Lanes.turn_id)."""

    method = "POST"
    path = PATH
    query_string = ""
    can_read_body = False

    def __init__(self, upgrade: web.Request, match: RouteMatch, body: bytes, ws: web.WebSocketResponse,
                 memory: LaneMemory, stream_id: str | None, rid: str) -> None:
        self.app = upgrade.app
        headers = CIMultiDict(upgrade.headers)
        for name in ("Content-Encoding", "Content-Length", "Upgrade", "Connection"):
            headers.popall(name, None)
        headers["Content-Type"] = "application/json"
        self.headers = CIMultiDictProxy(headers)
        self.remote = upgrade.remote
        self._upgrade_transport = upgrade.transport
        self.match_info = match
        self._body = body
        self._ws = ws
        self._stream_id = stream_id
        self._store: dict[Any, Any] = {SOCKET_MEMORY: memory, REQUEST_ID_KEY: rid}
        self.get = self._store.get

    @property
    def transport(self) -> asyncio.BaseTransport | None:
        """The connection's while the socket is open (a refusal then reaches the client as an
        error event), None once it closed, as aiohttp's request says of a closed connection."""
        return None if self._ws.closed else self._upgrade_transport

    @property
    def content_length(self) -> int:
        return len(self._body)

    @property
    def body_exists(self) -> bool:
        return True

    async def read(self) -> bytes:
        return self._body

    def start_stream(self, resp: web.StreamResponse) -> SocketSink:
        return SocketSink(self._ws, self._stream_id)


class OpenSockets:
    """The node's open Responses WebSockets, so a draining node can close them: an idle one at
    once, a busy one when its answers have ended."""

    def __init__(self) -> None:
        self.lanes: dict[web.WebSocketResponse, Lanes] = {}
        self.closing = False

    async def close_all(self) -> None:
        self.closing = True
        await asyncio.gather(*(going_away(ws) for ws, lanes in list(self.lanes.items()) if lanes.idle))


async def going_away(ws: web.WebSocketResponse) -> None:
    await ws.close(code=WSCloseCode.GOING_AWAY, message=b"the node is shutting down; connect again")


SOCKETS: web.AppKey[OpenSockets] = web.AppKey("responses_sockets", OpenSockets)
# messages a connection may have waiting or under way on all its lanes: past it the node reads no
# more of the socket until one ends (the client's sends wait in TCP, as a client of one lane's do)
MESSAGES_HELD = 64


def _post_route(app: web.Application) -> RouteMatch:
    for route in app.router.routes():
        if route.method == "POST" and route.resource is not None and route.resource.canonical == PATH:
            return RouteMatch(route)
    raise LookupError(f"no POST {PATH} route")  # (add_responses_routes adds it before this one)


class Lanes:
    """A connection's lanes: the messages of each (`stream_id`) answered one at a time in their
    order, the lanes at once, as OpenAI's WebSocket multiplexing does (a lane per parallel
    conversation or fork). Each lane is a task while it has messages."""

    def __init__(self, upgrade: web.Request, ws: web.WebSocketResponse, sockets: OpenSockets) -> None:
        self._upgrade, self._ws, self._sockets = upgrade, ws, sockets
        self._match = _post_route(upgrade.app)
        self.ids = upgrade.app[REQUEST_IDS]
        self.memory = SocketMemory()
        self._waiting: dict[str | None, collections.deque[Body]] = {}
        self._running: dict[str | None, asyncio.Task[None]] = {}
        self._held = asyncio.Semaphore(MESSAGES_HELD)
        self._turns = 0

    def turn_id(self) -> str:
        """A response.create's request id: the connection's, `.` and the turn's number (1, 2, ...
        as they start), so the connection's x-request-id leads to its turns' rows."""
        self._turns += 1
        return f"{request_id(self._upgrade)}.{self._turns}"

    @property
    def idle(self) -> bool:
        return not self._running

    async def add(self, event: Body, stream_id: str | None) -> None:
        """`event` (a response.create) in its lane's line; a lane with nothing under way starts."""
        await self._held.acquire()
        self._waiting.setdefault(stream_id, collections.deque()).append(event)
        if stream_id not in self._running:
            self._running[stream_id] = asyncio.create_task(self._run(stream_id), name="responses-socket-lane")

    async def _run(self, stream_id: str | None) -> None:
        waiting = self._waiting[stream_id]
        try:
            while waiting:
                event = waiting.popleft()
                try:
                    if not self._ws.closed:  # (what waited behind a closed socket has nobody to answer)
                        await _create(self._upgrade, self._ws, self._match, self.memory.lane(stream_id), event,
                                      stream_id, self.turn_id())
                except ConnectionError:  # the client went away while it was being told something
                    pass
                except Exception:  # (the observer answers a handler's failure: this is the socket's own)
                    log.exception("a response.create on a Responses WebSocket failed")
                finally:
                    self._held.release()
        finally:
            del self._running[stream_id], self._waiting[stream_id]
            if self._sockets.closing and self.idle and not self._ws.closed:
                await going_away(self._ws)

    async def ended(self) -> None:
        """Once the socket is closed: the answers under way end (a stream the client left is read to
        its end and billed, as over HTTP)."""
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    def cancel(self) -> None:
        """The connection is being cut (a node past its shutdown grace): its answers with it."""
        for task in self._running.values():
            task.cancel()


async def responses_socket(request: web.Request) -> web.StreamResponse:
    """GET /v1/responses: a WebSocket when the client asks to upgrade; otherwise the 405 of a path
    that takes POST. The key is checked before the upgrade, so a wrong one is an HTTP 401."""
    if request.headers.get("Upgrade", "").lower() != "websocket":
        raise web.HTTPMethodNotAllowed("GET", ["POST"])
    gw = request.app[GATEWAY]
    authenticate(request)
    ws = web.WebSocketResponse(max_msg_size=gw.settings.max_body_bytes, compress=True)
    ws.headers[REQUEST_ID] = request_id(request)  # the connection's, as every answer names its request
    await ws.prepare(request)
    coalesce_writes(ws)
    sock = request.transport.get_extra_info("socket") if request.transport is not None else None
    if sock is not None:
        probe_peer(sock)
    sockets = request.app[SOCKETS]
    lanes = sockets.lanes[ws] = Lanes(request, ws, sockets)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await _answer(ws, lanes, msg.data, sockets.closing)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_str(error_event(400, _error_body(
                    "send each event as a JSON text message, e.g. {\"type\": \"response.create\", ...}"), None))
    except ConnectionError:  # the client went away while it was being told something: nobody to tell
        pass
    except asyncio.CancelledError:
        lanes.cancel()
        raise
    finally:
        await lanes.ended()
        sockets.lanes.pop(ws, None)
    return ws


def _error_body(message: str, code: str = "invalid_request", param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"type": "invalid_request_error", "code": code, "message": message,
                                   "param": param}})


def _refused(status: int, ids: RequestIds) -> dict[str, str]:
    """The headers of a message refused before it became a request: a request id of its own, as
    every answer names its request, and whether to send it again, as an HTTP refusal says."""
    headers = {REQUEST_ID: ids.new()}
    if final_refusal(status):
        headers[SHOULD_RETRY] = "false"
    return headers


async def _answer(ws: web.WebSocketResponse, lanes: Lanes, text: str, draining: bool) -> None:
    """One message: a response.create goes to its lane; anything else is answered at once."""
    try:
        event = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        await ws.send_str(error_event(400, _error_body(f"malformed JSON message ({str(exc)[:200]}): send one "
                                                       "JSON object per message"), None, _refused(400, lanes.ids)))
        return
    kind = event.get("type") if isinstance(event, dict) else None
    lane = event.get("stream_id") if isinstance(event, dict) else None
    stream_id = lane if isinstance(lane, str) else None
    if kind == "response.steer":
        await ws.send_str(orjson.dumps(steer_failed(event, stream_id)).decode())
    elif kind == "response.inject":
        await ws.send_str(orjson.dumps(inject_failed(event, stream_id)).decode())
    elif kind != "response.create":
        await ws.send_str(error_event(400, _error_body(
            f"unsupported event type {kind!r}: send {{\"type\": \"response.create\", ...}} with the fields of "
            "POST /v1/responses", code="unsupported_event_type", param="type"), stream_id, _refused(400, lanes.ids)))
    elif draining:
        await ws.send_str(error_event(503, orjson.dumps({"error": {
            "type": "server_error", "code": "node_draining", "param": None,
            "message": "this node is shutting down and closes the connection once its answers end: connect "
                       "again (to another node) and send it there"}}), stream_id, _refused(503, lanes.ids)))
    else:
        await lanes.add(event, stream_id)


async def _create(upgrade: web.Request, ws: web.WebSocketResponse, match: RouteMatch, memory: LaneMemory,
                  event: Body, stream_id: str | None, rid: str) -> None:
    """One response.create, run as the streamed POST /v1/responses it stands for (request id `rid`)."""
    body = {k: v for k, v in event.items() if k not in _ENVELOPE}
    body["stream"] = True  # (implicit on a WebSocket)
    request = SocketRequest(upgrade, match, orjson.dumps(body), ws, memory, stream_id, rid)
    handler = create_response if event.get("generate") is not False else prepare_response
    resp = await upgrade.app[OBSERVER].observe(cast(web.Request, request), handler)
    if isinstance(resp, web.Response) and resp.status >= 400 and not ws.closed:
        await ws.send_str(error_event(resp.status, resp.body if isinstance(resp.body, bytes) else b"", stream_id,
                                      resp.headers))


def steer_failed(event: Body, stream_id: str | None) -> Body:
    """Steering is not run here: the input comes back, to be sent in the next `response.create`
    (on the lane the steer named, which the answer names too)."""
    previous = event.get("previous_response_id")
    failed: Body = {"type": "response.steer.failed", "sequence_number": 0,
                    "error": {"type": "invalid_request_error", "code": "steering_not_supported",
                              "message": "this gateway does not steer responses: send the input in the next "
                                         "response.create, with previous_response_id"},
                    "steer": {"input": event.get("input"),
                              "previous_response_id": previous if isinstance(previous, str) else ""}}
    if stream_id is not None:
        failed["stream_id"] = stream_id
    return failed


def inject_failed(event: Body, stream_id: str | None) -> Body:
    """Input is not put into a response under way here (every response runs to its end upstream):
    the items come back, to be sent in the next `response.create` continuing it."""
    items = event.get("input")
    response_id = event.get("response_id")
    failed: Body = {"type": "response.inject.failed", "sequence_number": 0,
                    "response_id": response_id if isinstance(response_id, str) else "",
                    "error": {"code": "response_already_completed",
                              "message": "this gateway does not add input to a response under way: send these "
                                         "items in the next response.create, with previous_response_id set to "
                                         "this response once it has completed"},
                    "input": items if isinstance(items, list) else []}
    if stream_id is not None:
        failed["stream_id"] = stream_id
    return failed


async def prepare_response(request: web.Request) -> web.StreamResponse:
    """`generate: false`: the request checked as a turn would be (key, model, continuation) and its
    state kept as a response (completed, no output, nothing billed) that a later turn continues."""
    gw, key = request.app[GATEWAY], authenticate(request)
    body, _raw = await read_json(request, gw.settings.max_body_bytes)
    req = parse_request(body)
    rec = record_of(request)
    if rec is not None:
        rec.model, rec.stream = req.model, True
    route = gw.route(key, req.model)  # (a model the key may not use is refused here too)
    history = await history_of(request, req, key.id)
    now = int(time.time())
    ctx = ResponseContext.of(body, response_id(req.store, now), now, req.model)
    response = dict(response_object(ctx, "completed", [], ResponsesUsage(0, 0), completed_at=now), store=req.store)
    memory: LaneMemory | None = request.get(SOCKET_MEMORY)
    if memory is not None:
        memory.remember(response, key.id, history.then(req.input))
    if req.store:
        request.app[RESPONSES].save(StoredResponse(ctx.id, float(now), key.id, req.previous_response_id,
                                                   route.requested, req.input, response), history)

    async def frames() -> AsyncIterator[bytes]:
        started = dict(response, status="in_progress", completed_at=None, usage=None)
        yield relay.frame("response.created", {"type": "response.created", "sequence_number": 0,
                                               "response": started})
        yield relay.frame("response.completed", {"type": "response.completed", "sequence_number": 1,
                                                 "response": response})

    resp = relay.sse_response(request_id(request), {})
    await relay.pump(request, resp, frames(), relay.Tally(), 0.0, "error")
    return resp


def add_responses_socket(app: web.Application) -> None:
    app[SOCKETS] = OpenSockets()
    app.router.add_get(PATH, responses_socket)
