"""Every request, whatever its route or outcome (refused, failed, unknown path, client gone), is
observed once, here: a request-log record is opened before the handler and finished after it
(status, error code, route pattern), then it feeds the metrics, the access log line, opt-in body
capture, the server span (when tracing is on) and the request-log buffer.

The handlers only add what they know (the key, the route, deployments tried, usage), so a new
route gets its row without doing anything."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from aiohttp import web

from shieldes.client_address import Network, client_address
from shieldes.gateway import client_trace
from shieldes.gateway.metrics import Metrics
from shieldes.gateway.middleware import RECORD_KEY, ROUTE_LABELS, Handler, handle_errors, request_id
from shieldes.logformat import AccessLog
from shieldes.requestlog.capture import Capture, wants
from shieldes.requestlog.filters import UNMATCHED
from shieldes.requestlog.record import RequestRecord

log = logging.getLogger(__name__)
CANCELLED = 499  # status logged for a request cancelled before it was answered (as nginx does)


LEFT = "client_disconnected"


def route_label(request: web.Request) -> str:
    """The route's label in the request log, the metrics and the trace: its pattern, an
    unversioned alias's /v1 one (/chat/completions: /v1/chat/completions), `unmatched` for none."""
    resource = request.match_info.route.resource
    if resource is None:
        return UNMATCHED
    canonical = resource.canonical
    labels = request.app.get(ROUTE_LABELS)
    return labels.get(canonical, canonical) if labels else canonical


def left_unanswered(request: web.Request, resp: web.StreamResponse, rec: RequestRecord) -> bool:
    """Whether the client closed its connection before its (JSON) answer could be written: the
    handler ran on (an upstream answered, and was billed), but nobody got the answer. Noted on the
    record as CANCELLED with `client_disconnected`, not as the status nobody received. A streamed
    answer (begun, or `rec.stream`) notes its own end in the relay. A request given up on when
    its client left (ClientLeft, before any upstream call was in flight) says why itself."""
    if resp.prepared or rec.stream or request.transport is not None:
        return False
    if rec.error_code == LEFT and resp.status == CANCELLED:  # (ClientLeft: its own message stands)
        return True
    if rec.error_code in (None, LEFT):  # (LEFT: the middleware saw it leave while reading the body)
        rec.error_code = LEFT
        rec.error_message = (f"the client closed the connection before its answer ({resp.status}) was sent, "
                             f"{round((time.perf_counter() - rec.t0) * 1000)} ms after the request; what an "
                             "upstream answered meanwhile is billed")
        return True
    return False


def _cancelled(rec: RequestRecord) -> None:
    if rec.error_code is None:
        rec.error_code = "cancelled"
        rec.error_message = "cancelled before it was answered (the client went away, or the node stopped)"


class ServerSpans(Protocol):
    """What the observer needs from tracing (shieldes/tracing.py implements it)."""

    def server_span(self, request: web.Request, rec: RequestRecord) -> AbstractContextManager[Any]: ...

    def note_trace(self, span: Any, rec: RequestRecord) -> None: ...

    def finish_server_span(self, span: Any, request: web.Request, rec: RequestRecord) -> None: ...

    def background_span(self, rec: RequestRecord, response_id: str) -> AbstractContextManager[Any]: ...

    def finish_background(self, span: Any, rec: RequestRecord, status: str, error: str | None) -> None: ...


class InFlight:
    """Counts requests being handled, so shutdown can wait for them (streams included)."""

    def __init__(self) -> None:
        self.count = 0
        self.started = 0  # ever (a node that began none over an interval may be idle: Node.activity)


class Observer:
    def __init__(self, metrics: Metrics, node_id: str, *, sink: Callable[[RequestRecord], None] | None = None,
                 capture: Capture | None = None, access: bool = True, tracing: ServerSpans | None = None,
                 trusted_proxies: tuple[Network, ...] = ()) -> None:
        self.metrics = metrics
        self.trusted_proxies = trusted_proxies  # whose X-Forwarded-For names the client
        self.node_id = node_id
        self.sink = sink
        self.capture = capture if capture is not None and capture.enabled else None
        self.access = AccessLog(node_id) if access else None
        self.tracing = tracing
        self.in_flight = InFlight()

    def middleware(self) -> Any:
        @web.middleware
        async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await self.observe(request, handler)

        return observe

    async def observe(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Run `handler` for `request` with its record open, then finish the record; every request
        of the node comes through here (aiohttp's middleware and the front's hot routes)."""
        in_flight = self.in_flight
        tracing = self.tracing
        in_flight.count += 1
        in_flight.started += 1
        t0 = time.perf_counter()
        rec = RequestRecord(request_id(request), time.time(), t0, request.method, request.path)
        request[RECORD_KEY] = rec
        resp: web.StreamResponse | None = None
        gone = False  # the client left before its answer could be written
        try:
            if tracing is None:  # the client's own trace context goes upstream as it came
                held = client_trace.take(request.headers)
                try:
                    resp = await handle_errors(request, handler)
                finally:
                    client_trace.release(held)
                gone = left_unanswered(request, resp, rec)
            else:
                with tracing.server_span(request, rec) as span:
                    tracing.note_trace(span, rec)
                    try:
                        resp = await handle_errors(request, handler)
                        gone = left_unanswered(request, resp, rec)
                    finally:  # a cancelled request's span says so too, and its row names the trace
                        if resp is None:
                            _cancelled(rec)
                        rec.status = CANCELLED if resp is None or gone else resp.status
                        rec.route = route_label(request)
                        tracing.finish_server_span(span, request, rec)
            return resp
        except asyncio.CancelledError:
            _cancelled(rec)
            raise
        finally:
            in_flight.count -= 1
            rec.t_end = time.perf_counter()
            rec.status = resp.status if resp is not None and not gone else CANCELLED
            try:
                if self.finish(request, rec):
                    await _capture(request, rec, resp)
                if not rec.held:  # a background run hands its record off when it ends
                    self.hand_off(rec)
            except Exception as exc:  # observing must never break the answer itself
                log.warning("could not record request %s: %s: %s", rec.request_id, type(exc).__name__, exc)

    def finish(self, request: web.Request, rec: RequestRecord) -> bool:
        """The record's route, client and metrics; whether its bodies are to be captured (awaited
        only then: no coroutine per request for what is plain code)."""
        rec.route = route_label(request)
        rec.client_ip = client_address(request.remote, request.headers.get("X-Forwarded-For"),
                                       self.trusted_proxies) if self.trusted_proxies else request.remote
        rec.user_agent = request.headers.get("User-Agent")
        self.metrics.observe_request(rec.route, rec.status, rec.t_end - rec.t0, rec.stream, rec.trace_id)
        capture = self.capture
        return capture is not None and wants(capture.mode, rec.status, rec.error_code, request.path)

    def refused(self, rid: str, method: str, path: str, client_ip: str | None, status: int, code: str,
                message: str) -> None:
        """A request refused before it could be routed (malformed HTTP, a request line or headers
        too large: the front's and aiohttp's own refusals): a row, an access line and a count like
        any other request's, under the request id its answer named."""
        now = time.perf_counter()
        rec = RequestRecord(rid, time.time(), now, method, path)
        rec.t_end = now
        rec.status, rec.error_code, rec.error_message, rec.client_ip = status, code, message, client_ip
        try:
            self.metrics.observe_request(rec.route, status, 0.0)
            self.hand_off(rec)
        except Exception as exc:  # observing must never break the answer itself
            log.warning("could not record request %s: %s: %s", rid, type(exc).__name__, exc)

    def hand_off(self, rec: RequestRecord) -> None:
        """The finished record to the access log and the request log."""
        if self.access is not None:
            self.access(rec)
        if self.sink is not None:
            self.sink(rec)


async def _capture(request: web.Request, rec: RequestRecord, resp: web.StreamResponse | None) -> None:
    try:
        rec.request_body = await request.read() if request.can_read_body or request.body_exists else None
    except Exception:  # a body that could not be read (too large, client gone) is not captured
        rec.request_body = None
    if isinstance(resp, web.Response) and isinstance(resp.body, bytes):
        rec.response_body = resp.body


IN_FLIGHT: web.AppKey[InFlight] = web.AppKey("in_flight", InFlight)
OBSERVER: web.AppKey[Observer] = web.AppKey("observer", Observer)
