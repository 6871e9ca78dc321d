"""SSE relay: upstream chunks to the client, and usage settled whatever happens.

If the client goes away mid-stream the relay keeps reading the upstream (bounded by
Settings.disconnect_drain_seconds) so the upstream's real token counts arrive and are accounted;
if they do not arrive in time, the stream is closed and usage is estimated (prompt bytes / 4,
one token per content chunk relayed). A client that leaves while the upstream sends nothing is
noticed by client_watch within a second, and the upstream call stopped then (estimated too)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, Protocol, TypeVar

import orjson
from aiohttp import web

from shieldes.gateway.client_watch import STREAM_WATCH
from shieldes.gateway.middleware import REQUEST_ID
from shieldes.providers.base import Body, ChunkStream, TokenUsage, UpstreamFailure
from shieldes.providers.stream_failures import classify, request_at_fault

log = logging.getLogger(__name__)
DONE_FRAME = b"data: [DONE]\n\n"
STREAM_ERROR_CODE = "upstream_stream_error"  # the request log's code of a stream the upstream broke
# ... and of a Responses stream answered in full whose stored conversation was deleted meanwhile
CONVERSATION_DELETED = "conversation_deleted"


class Tally:
    """What went by, for an estimate when the upstream never reports usage. (A plain class whose
    numbers start as its class's values: one is made per stream, and each assignment in __init__
    would cost it; an instance's own value is set when it changes.)"""

    content_chunks = 0
    outcome = "open"  # open | done | disconnected | upstream_error
    first_write_at = 0.0  # perf_counter of the first frame written to the client
    first_token_at = 0.0  # perf_counter of the first content chunk read from the upstream
    sent_bytes = 0  # bytes of frames written to the client
    # why the upstream broke the stream (scrubbed, as the client was told): log and request log
    failure = ""
    failure_code: str | None = None  # its UpstreamFailure.code
    request_at_fault = False  # the failure was the request's doing, not the deployment's (note_failure)
    # how long the upstream had sent nothing when the client left (client_watch measures it, to
    # its WATCH_INTERVAL, from sent_bytes: no clock read per frame); 0 when a write found it gone
    silent_for = 0.0
    # whether the finish reasons are noted: only a traced stream's attempt span reads them, and
    # finding them in a chat read of several events costs a walk of its bytes and a loop
    wants_reasons = True

    def __init__(self) -> None:
        # why each choice finished, in the upstream's words (OpenAI finish_reason, Anthropic
        # stop_reason, Gemini finishReason, a Responses status): the attempt span's
        # gen_ai.response.finish_reasons
        self.finish_reasons: list[str] = []


def note_failure(tally: Tally, failure: UpstreamFailure, scrub: Callable[[str], str]) -> None:
    """The upstream broke the stream with `failure` (its message scrubbed, as the client is told)."""
    tally.outcome = "upstream_error"
    tally.failure = scrub(failure.message)
    tally.failure_code = failure.code
    tally.request_at_fault = request_at_fault(failure)


def note_raised(tally: Tally, raised: BaseException, scrub: Callable[[str], str]) -> None:
    """The route stopped relaying with `raised` (before the first frame, or out of pump): an
    UpstreamFailure is the upstream breaking the stream; anything else (the client gone, the node
    stopping, the request refused) leaves the stream as it was."""
    if tally.outcome == "open" and isinstance(raised, UpstreamFailure):
        note_failure(tally, raised, scrub)


def attempt_failed(tally: Tally, stall_seconds: float) -> bool | None:
    """How a relayed stream counts for its deployment's breaker and error rate: True a failed
    attempt (the upstream broke it, not on the request's fault; or it had stalled: its client left
    once frames had gone out, the upstream silent for `stall_seconds` or more), False a successful one
    (it completed, or its client left once frames had gone out with the upstream answering), None
    neither (ended on the request's fault, as a 4xx answered before a stream; its client gone
    before any frame went out; stopped by the route or the node: none of it the upstream's doing)."""
    outcome = tally.outcome
    if outcome == "upstream_error":
        return None if tally.request_at_fault else True
    if outcome == "disconnected" and tally.sent_bytes:
        return stalled(tally, stall_seconds)
    return False if outcome == "done" else None


def stalled(tally: Tally, stall_seconds: float) -> bool:
    """Whether a stream whose client left had stalled: the upstream silent for `stall_seconds`
    (SHIELDES_STREAM_STALL_SECONDS) or more. The default, 30 s, is well past a model's pause
    between tokens and below the client timeouts (60 s and more) that give up on a stalled stream
    before SHIELDES_UPSTREAM_TIMEOUT (600 s) does: a client that times out first would otherwise
    never let a deployment that stalls its streams be rested. A model that thinks silently for
    longer (reasoning, on some providers) needs it raised."""
    return tally.silent_for >= stall_seconds


def frame(event: str | None, data: object) -> bytes:
    payload = orjson.dumps(data)
    if event is None:
        return b"data: " + payload + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"


def note_finish(tally: Tally, choices: list[Any]) -> None:
    """The finish reasons of a chunk's choices (the last chunk of each choice has one)."""
    for choice in choices:
        reason = choice.get("finish_reason") if isinstance(choice, dict) else None
        if isinstance(reason, str) and reason:
            tally.finish_reasons.append(reason)


async def counted(stream: ChunkStream, tally: Tally) -> AsyncIterator[Body]:
    async for chunk in stream:
        choices = chunk.get("choices")
        if choices:
            if not tally.content_chunks:
                tally.first_token_at = time.perf_counter()
            tally.content_chunks += 1
            note_finish(tally, choices)
        yield chunk


async def openai_frames(stream: ChunkStream, tally: Tally, client_wants_usage: bool,
                        closing: Callable[[], bytes] | None = None) -> AsyncIterator[bytes]:
    """OpenAI SSE frames; the usage chunk (and `usage: null` fields) are dropped unless the
    client asked for them with stream_options.include_usage. `closing()` is written with [DONE]
    (see usage_frame). One generator layer: this is the per-chunk hot path."""
    dumps = orjson.dumps
    async for chunk in stream:
        choices = chunk.get("choices")
        if choices:
            if not tally.content_chunks:
                tally.first_token_at = time.perf_counter()
            tally.content_chunks += 1
            if tally.wants_reasons:
                note_finish(tally, choices)
            if not client_wants_usage:
                chunk.pop("usage", None)  # the chunk dict is ours: parsed for this request
        elif not client_wants_usage and "usage" in chunk:
            continue
        yield b"data: " + dumps(chunk) + b"\n\n"
    yield DONE_FRAME if closing is None else closing() + DONE_FRAME


def usage_frame(like: Body, usage: TokenUsage) -> bytes:
    """The closing `{"choices": [], "usage": {...}}` chunk of an OpenAI stream, for a client that
    asked for usage (stream_options.include_usage) when the upstream sent none: the counts settled
    (final_usage's estimate), under the id, object, created and model of `like` (the stream's first
    chunk)."""
    chunk: Body = {"id": like.get("id"), "object": like.get("object"), "created": like.get("created"),
             "model": like.get("model"), "choices": [],
             "usage": {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                       "total_tokens": usage.prompt_tokens + usage.completion_tokens}}
    return frame(None, chunk)


def sse_response(rid: str, headers: dict[str, str]) -> web.StreamResponse:
    return web.StreamResponse(headers={
        "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no", REQUEST_ID: rid, **headers,
    })


def error_frame(failure: UpstreamFailure, event: str | None, scrub: Callable[[str], str] = str) -> bytes:
    """The client's last frame when the stream breaks, naming what broke it as the client's API
    does (an overloaded upstream as overloaded: stream_failures); upstream text is scrubbed of
    provider keys exactly like a JSON error (some upstreams echo the key they were sent)."""
    kind = classify(failure)
    err = {"message": f"upstream stream failed: {scrub(failure.message)}; retry the request",
           "type": kind.openai_type, "param": failure.param, "code": kind.openai_code}
    if event is None:
        return frame(None, {"error": err})
    return frame(event, {"type": "error", "error": {"type": kind.anthropic_type, "message": err["message"]}})


class Held(Protocol):
    """An upstream stream as the relay settles it: its usage, and its closing."""

    @property
    def usage(self) -> TokenUsage | None: ...

    async def aclose(self) -> None: ...


H = TypeVar("H", bound=Held)


class Rendered(Generic[H]):
    """An upstream stream relayed in a client API's own frames (a subclass's `frames(tally)`): its
    usage and its closing are the upstream stream's; `headers` go with the answer."""

    def __init__(self, stream: H, headers: dict[str, str]) -> None:
        self._stream = stream
        self.headers = headers

    @property
    def usage(self) -> TokenUsage | None:
        return self._stream.usage

    async def aclose(self) -> None:
        await self._stream.aclose()


class Sink(Protocol):
    """Where a streamed answer's body goes: aiohttp's prepared StreamResponse, or the front's."""

    async def write(self, data: bytes) -> None: ...

    async def write_eof(self) -> None: ...


async def open_sink(request: web.Request, resp: web.StreamResponse) -> Sink:
    """Send `resp`'s head; the sink takes the body."""
    start: Callable[[web.StreamResponse], Sink] | None = getattr(request, "start_stream", None)
    if start is not None:  # a hot route answered by the front (LeanRequest), a WebSocket's message
        return start(resp)
    await resp.prepare(request)
    return resp


def _unreadable(exc: Exception) -> UpstreamFailure:
    """What a frame's exception other than an UpstreamFailure ends the stream with (e.g. an upstream
    chunk of a shape the translation cannot read)."""
    log.warning("stream relay stopped on an unreadable upstream chunk: %r", exc)
    return UpstreamFailure(f"the upstream sent a chunk the gateway cannot read ({type(exc).__name__})",
                           status=None, retryable=False)


async def _drain(frames: AsyncIterator[bytes], seconds: float) -> None:
    """Keep reading the upstream after the client left, so its usage report arrives (bounded)."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(seconds):
            async for _ in frames:
                pass


async def pump(request: web.Request, resp: web.StreamResponse, frames: AsyncIterator[bytes], tally: Tally,
               drain_seconds: float, error_event: str | None, scrub: Callable[[str], str] = str,
               ending: Callable[[UpstreamFailure], bytes] | None = None) -> None:
    """Send the headers, then every frame; if the client goes away (before or during the stream),
    keep draining the upstream (bounded) so its usage arrives. A stream that breaks ends with
    `ending(failure)` when given (an API with its own error shape), else error_frame's.

    Frames are written inline, with no reader task or queue between upstream and client: a slow
    client pauses the upstream through the write's flow control (aiohttp waits for the socket
    buffer to drain), which backs up into the upstream connection."""
    read_all = False  # the frames ran to their end: nothing left to close
    # a client that leaves while the upstream is silent (a background run's RunRequest has no client: no app)
    app = getattr(request, "app", None)
    watches = app.get(STREAM_WATCH) if app is not None else None
    watched = watches.add(request, tally) if watches is not None else None
    try:
        try:
            sink = await open_sink(request, resp)
            tally.first_write_at = time.perf_counter()
            # every frame written as it comes (one write per upstream read for forwarded frames), in
            # this one loop: a layer of its own costs every stream a coroutine. Only a write raises
            # ConnectionError (the client left): whatever the frames raise becomes an
            # UpstreamFailure, so the two are never confused.
            failure: UpstreamFailure | None = None
            written: BaseException | None = None  # what a write raised: passed on as it is
            try:
                async for data in frames:
                    try:
                        await sink.write(data)
                    except BaseException as exc:  # (a try costs nothing until something is raised)
                        written = exc
                        raise
                    tally.sent_bytes += len(data)
                read_all = True
            except UpstreamFailure as broken:
                if broken is written:
                    raise
                failure = broken
            except Exception as exc:
                if exc is written:
                    raise
                failure = _unreadable(exc)
            if failure is None:
                tally.outcome = "done"
                await sink.write_eof()
            else:
                note_failure(tally, failure, scrub)
                await sink.write(ending(failure) if ending else error_frame(failure, error_event, scrub))
        except ConnectionError:
            if tally.outcome == "open":
                tally.outcome = "disconnected"
                await _drain(frames, drain_seconds)
        except asyncio.CancelledError:
            if watched is None or not watched.caught():
                raise
            tally.outcome = "disconnected"  # (the upstream call was stopped with the wait: nothing to drain)
    finally:
        if watches is not None and watched is not None:
            watches.remove(watched)
        if not read_all and (aclose := getattr(frames, "aclose", None)) is not None:
            await aclose()


def final_usage(reported: TokenUsage | None, tally: Tally, prompt_bytes: int) -> TokenUsage:
    """The upstream's usage of a stream if it reported one, else an estimate."""
    if reported is not None:
        return reported
    return TokenUsage(prompt_tokens=prompt_bytes // 4, completion_tokens=tally.content_chunks)
