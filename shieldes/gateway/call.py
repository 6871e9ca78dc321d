"""One admitted request's course: its reservation, its attempts over the route, settling the usage
once, and relaying a stream to the client with what its end tells (metrics, breaker, request log)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from aiohttp import web

from shieldes.gateway import relay
from shieldes.gateway.middleware import record_of, request_id
from shieldes.gateway.request_fields import model_field
from shieldes.gateway.service import Gateway
from shieldes.gateway.top_level import Outgoing
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
from shieldes.providers.dropped import dropped_header
from shieldes.requestlog.record import RequestRecord
from shieldes.routing.router import Route, RouteTarget
from shieldes.usage.meter import Reservation
from shieldes.usage.tokens import estimate_output_tokens

log = logging.getLogger(__name__)
T = TypeVar("T")


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
        requested = model_field(body) if route is None else route.requested
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
    failed = relay.attempt_failed(tally, gw.settings.stream_stall_seconds)
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
