"""SSE relay: upstream chunks to the client, and usage settled whatever happens.

If the client goes away mid-stream the relay keeps reading the upstream (bounded by
Settings.disconnect_drain_seconds) so the upstream's real token counts arrive and are accounted;
if they do not arrive in time, the stream is closed and usage is estimated (prompt bytes / 4,
one token per content chunk relayed)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
from aiohttp import web

from shieldes.gateway.middleware import REQUEST_ID
from shieldes.providers.base import Body, ChunkStream, TokenUsage, UpstreamFailure

log = logging.getLogger(__name__)
DONE_FRAME = b"data: [DONE]\n\n"


@dataclass(slots=True)
class Tally:
    """What went by, for an estimate when the upstream never reports usage."""

    content_chunks: int = 0
    outcome: str = "open"  # open | done | disconnected | upstream_error


def frame(event: str | None, data: object) -> bytes:
    payload = orjson.dumps(data)
    if event is None:
        return b"data: " + payload + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"


async def counted(stream: ChunkStream, tally: Tally) -> AsyncIterator[Body]:
    async for chunk in stream:
        if chunk.get("choices"):
            tally.content_chunks += 1
        yield chunk


async def openai_frames(stream: ChunkStream, tally: Tally, client_wants_usage: bool) -> AsyncIterator[bytes]:
    """OpenAI SSE frames; the usage chunk (and `usage: null` fields) are dropped unless the
    client asked for them with stream_options.include_usage. One generator layer: this is the
    per-chunk hot path."""
    dumps = orjson.dumps
    async for chunk in stream:
        if chunk.get("choices"):
            tally.content_chunks += 1
            if not client_wants_usage:
                chunk.pop("usage", None)  # the chunk dict is ours: parsed for this request
        elif not client_wants_usage and "usage" in chunk:
            continue
        yield b"data: " + dumps(chunk) + b"\n\n"
    yield DONE_FRAME


async def start_sse(request: web.Request, rid: str, headers: dict[str, str]) -> web.StreamResponse:
    resp = web.StreamResponse(headers={
        "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no", REQUEST_ID: rid, **headers,
    })
    await resp.prepare(request)
    return resp


def error_frame(failure: UpstreamFailure, event: str | None) -> bytes:
    err = {"message": f"upstream stream failed: {failure.message}; retry the request",
           "type": "upstream_error", "code": "upstream_error"}
    if event is None:
        return frame(None, {"error": err})
    return frame(event, {"type": "error", "error": {"type": "api_error", "message": err["message"]}})


async def pump(resp: web.StreamResponse, frames: AsyncIterator[bytes], tally: Tally,
               drain_seconds: float, error_event: str | None) -> None:
    """Write every frame; on a client disconnect, drain the upstream for its usage."""
    try:
        async for data in frames:
            await resp.write(data)
    except ConnectionError:
        tally.outcome = "disconnected"
        try:
            async with asyncio.timeout(drain_seconds):
                async for _ in frames:
                    pass
        except (TimeoutError, UpstreamFailure):
            pass
        return
    except UpstreamFailure as failure:
        tally.outcome = "upstream_error"
        with contextlib.suppress(ConnectionError):
            await resp.write(error_frame(failure, error_event))
        return
    tally.outcome = "done"
    try:
        await resp.write_eof()
    except ConnectionError:
        tally.outcome = "disconnected"


def final_usage(stream: ChunkStream, tally: Tally, prompt_bytes: int) -> TokenUsage:
    if stream.usage is not None:
        return stream.usage
    return TokenUsage(prompt_tokens=prompt_bytes // 4, completion_tokens=tally.content_chunks)
