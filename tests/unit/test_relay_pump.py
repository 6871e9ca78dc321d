"""relay.pump over a real aiohttp server and client: the frames go out as they come; what the frames
raise ends the stream with an error frame (an UpstreamFailure's message, or a chunk the gateway
cannot read) and `upstream_error`; a client gone mid-stream is `disconnected`, never taken for an
upstream failure, and the frames are drained then closed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import orjson
from aiohttp import web

from shieldes.gateway import relay
from shieldes.providers.base import UpstreamFailure


async def _serve(frames: AsyncIterator[bytes], tally: relay.Tally) -> tuple[web.AppRunner, str]:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = relay.sse_response("req_1", {})
        await relay.pump(request, resp, frames, tally, 5.0, None)
        return resp

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/"


async def _body(frames: AsyncIterator[bytes], tally: relay.Tally) -> bytes:
    runner, url = await _serve(frames, tally)
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            return await resp.read()
    finally:
        await runner.cleanup()


async def test_frames_go_out_then_the_stream_ends() -> None:
    async def frames() -> AsyncIterator[bytes]:
        yield b"data: 1\n\n"
        yield b"data: 2\n\n"

    tally = relay.Tally()
    assert await _body(frames(), tally) == b"data: 1\n\ndata: 2\n\n"
    assert (tally.outcome, tally.sent_bytes) == ("done", 18)


async def test_what_the_frames_raise_ends_the_stream_with_an_error_frame() -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"data: 1\n\n"
        raise UpstreamFailure("overloaded", status=None, retryable=False)

    async def unreadable() -> AsyncIterator[bytes]:
        yield b"data: 1\n\n"
        raise KeyError("choices")

    for frames, said in ((broken(), "overloaded"), (unreadable(), "the gateway cannot read (KeyError)")):
        tally = relay.Tally()
        body = await _body(frames, tally)
        first, error, rest = body.split(b"\n\n")
        assert first == b"data: 1" and rest == b""
        assert said in orjson.loads(error.removeprefix(b"data: "))["error"]["message"]
        assert tally.outcome == "upstream_error" and said in tally.failure


async def test_a_client_gone_mid_stream_is_disconnected_and_the_frames_are_drained() -> None:
    sent = asyncio.Event()
    drained = asyncio.Event()
    closed = asyncio.Event()

    async def frames() -> AsyncIterator[bytes]:
        try:
            yield b"data: 1\n\n"
            sent.set()
            for _ in range(200):
                if tally.outcome != "disconnected":  # a pause until a write fails (the client is gone);
                    await asyncio.sleep(0.01)  # the drain after it reads the rest without one
                yield b"data: %d\n\n" % (2 + _) * 4096
            drained.set()
        finally:
            closed.set()

    tally = relay.Tally()
    runner, url = await _serve(frames(), tally)
    try:
        async with aiohttp.ClientSession() as session:
            resp = await session.get(url)
            await resp.content.readline()
            await sent.wait()
            resp.close()  # the client goes away
            await asyncio.wait_for(closed.wait(), 30)
    finally:
        await runner.cleanup()
    assert tally.outcome == "disconnected" and drained.is_set()
