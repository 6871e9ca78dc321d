"""Background responses over HTTP: `POST /v1/responses` with `background: true` answered at once
and run on by the node that took it, `GET /v1/responses/{id}` (JSON, or `stream=true` with
`starting_after`) and `POST /v1/responses/{id}/cancel` from any node.

A run is the foreground call itself: the same admission (responses_routes.prepare), failover
(responses_routes.call), stream relay, settlement and request-log record (handed off when the run
ends); its stream goes to the Run instead of a client (RunSink). The node running it serves it from
memory; any other node reads its row (runs.py keeps it within TICK of the run) and, while it is
pending, whether the boot running it is still alive in cluster_nodes: a run whose node died,
restarted or left reads as `failed`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import cast

from aiohttp import web

from shieldes.errors import InvalidRequest, ShieldesError, Unavailable
from shieldes.gateway import relay
from shieldes.gateway.middleware import record_of, request_id
from shieldes.gateway.observe import Observer
from shieldes.gateway.responses_routes import (
    BACKGROUND,
    RESPONSES,
    Prepared,
    call,
    stream,
    token_usage,
)
from shieldes.gateway.routes import authenticate, json_response
from shieldes.responses.background import (
    DRAINED,
    Run,
    RunInfo,
    cancelled,
    check_cancellable,
    ended,
    pending,
    seen,
    sse_frame,
    stopped,
)
from shieldes.responses.objects import (
    ResponsesUsage,
    asks_encrypted,
    event_without_encrypted,
    response_object,
    without_encrypted,
)
from shieldes.responses.runs import TICK, BackgroundRuns
from shieldes.responses.service import ResponseStore
from shieldes.responses.upstream import Answer, ReadyEvents

log = logging.getLogger(__name__)
CANCEL_WAIT = 10.0  # seconds a cancel waits for the run to stop before answering
NO_EVENTS = 2**31  # `after` for a read of a run's row without its events


class RunSink:
    """Where a background run's stream goes: its Run, event by event."""

    def __init__(self, run: Run) -> None:
        self._run = run

    async def write(self, data: bytes) -> None:
        self._run.feed(data)

    async def write_eof(self) -> None:
        return None


class RunRequest:
    """The request the stream relay writes a background run's events for (relay.open_sink)."""

    def __init__(self, run: Run) -> None:
        self._run = run

    def start_stream(self, _resp: web.StreamResponse) -> RunSink:
        return RunSink(self._run)


class Starter:
    """Starts background runs (the Background of responses_routes) on this node."""

    def __init__(self, runs: BackgroundRuns, observer: Observer) -> None:
        self.runs, self.observer = runs, observer

    def check_room(self) -> None:
        self.runs.check_room()

    async def start(self, request: web.Request, p: Prepared) -> web.StreamResponse:
        turn = p.turn
        try:
            self.runs.check_room()  # (again: the admission awaited)
        except BaseException:
            turn.gw.meter.release(turn.res)
            raise
        queued = turn.in_conversation(dict(response_object(p.ctx.context, "queued", [], None), background=True,
                                           store=True))
        run = Run(queued, RunInfo(turn.key.id, float(p.ctx.created_at), turn.previous, p.req.model, turn.stored_input))
        if turn.rec is not None:
            turn.rec.held = True
        self.runs.start_run(run, self._run(run, p))
        shown = queued if p.shown else without_encrypted(queued)
        if not p.req.streaming:
            return json_response(shown, p.rid, p.headers(turn.res.headers))
        return await send(request, p.rid, run.follow(-1, None if p.shown else _plain(run)),
                          p.headers(turn.res.headers))

    async def _run(self, run: Run, p: Prepared) -> None:
        """The run, traced (when tracing is on) by a span of its own: the create's ended when it
        was answered."""
        tracing, rec = self.observer.tracing, p.turn.rec
        if tracing is None or rec is None:
            await self._work(run, p)
            return
        with tracing.background_span(rec, run.id) as span:
            try:
                await self._work(run, p)
            finally:
                error = run.response.get("error")
                tracing.finish_background(span, rec, str(run.response.get("status")),
                                          str(error.get("message")) if isinstance(error, dict) else None)

    async def _work(self, run: Run, p: Prepared) -> None:
        turn = p.turn
        rec = turn.rec
        try:
            outcome, served = await call(p, True)
            events = ReadyEvents(outcome.response, outcome.usage, outcome.headers) \
                if isinstance(outcome, Answer) else outcome
            await stream(cast(web.Request, RunRequest(run)), p.rid, turn, served, events, True)
            run.end(ended(run.response, run.events))
        except asyncio.CancelledError:  # a cancel, or the node stopping it (drain)
            billed = None
            if run.events:  # the stream began: what stream() billed, its estimate
                usage = token_usage(None, turn.size, run.deltas())
                billed = ResponsesUsage(usage.prompt_tokens, usage.completion_tokens).to_dict()
            if run.cancel_asked:
                run.end(cancelled(run.response, billed))
            else:
                run.end(stopped(dict(run.response, usage=billed), self.runs.node_id, DRAINED), "response.failed")
        except ShieldesError as exc:  # no deployment answered (after failover)
            if rec is not None:
                rec.error_code, rec.error_message = exc.code, exc.message
            run.end(dict(run.response, status="failed", error={"code": exc.code or "server_error",
                                                                "message": exc.message}), "response.failed")
        except Exception as exc:
            log.exception("background response %s failed", run.id)
            run.end(dict(run.response, status="failed", error={
                "code": "server_error", "message": f"the gateway failed running it ({type(exc).__name__}); retry"}),
                "response.failed")
        finally:
            if rec is not None:
                rec.t_end = time.perf_counter()
                self.observer.hand_off(rec)


def _plain(run: Run) -> Callable[[int], bytes]:
    """Frame i of a run without encrypted reasoning (the reader did not include it)."""
    return lambda i: sse_frame(event_without_encrypted(run.events[i]))


async def send(request: web.Request, rid: str, frames: AsyncIterator[bytes],
               headers: dict[str, str] | None = None) -> web.StreamResponse:
    """An event stream to the client; a client that leaves stops only its own reading."""
    rec = record_of(request)
    if rec is not None:  # (a retrieve that follows a run: a stream in the request log and metrics too)
        rec.stream = True
    resp = relay.sse_response(rid, headers or {})
    try:
        sink = await relay.open_sink(request, resp)
        async for data in frames:
            await sink.write(data)
        await sink.write_eof()
    except ConnectionError:
        pass
    return resp


def _flag(request: web.Request) -> bool:
    return request.query.get("stream", "false").lower() not in ("false", "0", "")


def starting_after(request: web.Request) -> int:
    value = request.query.get("starting_after")
    if value is None:
        return -1
    try:
        after = int(value)
    except ValueError:
        after = -2
    if after < -1:
        raise InvalidRequest("query parameter 'starting_after' must be an event's sequence_number (an integer "
                             "from 0), to replay the events after it", param="starting_after")
    return after


async def _followed(store: ResponseStore, response_id: str, key_id: str, after: int,
                    shown: bool) -> AsyncIterator[bytes]:
    """A run of another node, from its row: the events after `after`, then new ones every TICK
    until it ends (or its node is found gone: then a `response.failed` saying so)."""
    while True:
        state = await store.run_state(response_id, key_id, after)
        for event in state.events:
            after = max(after, int(event.get("sequence_number", after + 1)))
            yield sse_frame(event if shown else event_without_encrypted(event))
        response = seen(state)
        if response is not state.response:
            yield sse_frame({"type": "response.failed", "sequence_number": after + 1, "response": response})
            return
        if not pending(response):
            return
        await asyncio.sleep(TICK)


async def get_response(request: web.Request) -> web.StreamResponse:
    key = authenticate(request)
    response_id, rid = request.match_info["id"], request_id(request)
    include = request.query.getall("include", []) + request.query.getall("include[]", [])
    shown = asks_encrypted({"include": include})
    streaming = _flag(request)
    after = starting_after(request) if streaming else -1
    run = request.app[RUNS].get(response_id)
    if run is not None and run.info.key_id == key.id:
        if streaming:
            return await send(request, rid, run.follow(after, None if shown else _plain(run)))
        return json_response(run.response if shown else without_encrypted(run.response), rid)
    store = request.app[RESPONSES]
    response = (await store.get(response_id, key.id)).response
    if streaming and response.get("background") is not True:
        # the SDK's `retrieve(id, stream=True)` reads an event stream: JSON would read as no events
        raise InvalidRequest(f"Response {response_id!r} cannot be streamed again: stream=true on retrieve "
                             "replays the events of a response created with background=true, and this one was "
                             "not; it is complete, retrieve it without stream", code="stream_not_supported",
                             param="stream")
    if streaming:
        return await send(request, rid, _followed(store, response_id, key.id, after, shown))
    if pending(response):
        response = seen(await store.run_state(response_id, key.id, NO_EVENTS))
    return json_response(response if shown else without_encrypted(response), rid)


async def cancel_response(request: web.Request) -> web.StreamResponse:
    """As OpenAI answers: a pending background response is cancelled (200, `cancelled`), again
    the same (idempotent), a finished one is a 400; a response not created with background=true
    is a 400 `response_not_cancellable`; an unknown id a 404."""
    key = authenticate(request)
    response_id, rid = request.match_info["id"], request_id(request)
    runs = request.app[RUNS]
    run = runs.get(response_id)
    if run is not None and run.info.key_id == key.id:
        runs.cancel(run)
        try:
            await asyncio.wait_for(run.until_ended(), CANCEL_WAIT)
        except TimeoutError:
            raise _still_running(response_id) from None
        check_cancellable(run.response)
        return json_response(without_encrypted(run.response), rid)
    store = request.app[RESPONSES]
    response = (await store.get(response_id, key.id)).response  # the 404 of GET for an unknown id
    if response.get("background") is not True:
        raise InvalidRequest(f"Response {response_id!r} cannot be cancelled: only responses created with "
                             "background=true can be, and this one was not; it finished when its answer was sent, "
                             "and GET /v1/responses/{id} returns it", code="response_not_cancellable")
    if pending(response):
        response = seen(await store.run_state(response_id, key.id, NO_EVENTS))
    if pending(response):  # run by another node: it reads the request within its TICK
        await store.ask_cancel(response_id, key.id)
        deadline = time.monotonic() + CANCEL_WAIT
        while pending(response):
            if time.monotonic() > deadline:
                raise _still_running(response_id)
            await asyncio.sleep(TICK / 2)
            response = seen(await store.run_state(response_id, key.id, NO_EVENTS))
    check_cancellable(response)
    return json_response(without_encrypted(response), rid)


def _still_running(response_id: str) -> Unavailable:
    return Unavailable(f"the cancel of {response_id!r} is recorded but its run has not stopped within "
                       f"{CANCEL_WAIT:g} s; retrieve it to see it end as cancelled, or send the cancel again",
                       code="cancel_pending")


RUNS: web.AppKey[BackgroundRuns] = web.AppKey("background_runs", BackgroundRuns)


def add_background_routes(app: web.Application, runs: BackgroundRuns, observer: Observer) -> None:
    app[RUNS] = runs
    app[BACKGROUND] = Starter(runs, observer)
    app.router.add_get("/v1/responses/{id}", get_response)
    app.router.add_post("/v1/responses/{id}/cancel", cancel_response)
