"""OpenAIChunkStream.frames(): the byte-forwarding relay path gives the client the same frames as
parsing every chunk would, and accounts usage and mid-stream errors the same way. A real aiohttp
server sends hand-written SSE bodies (spellings the fake upstream does not use)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp import web

from shieldes.gateway import relay
from shieldes.providers.base import Target, TokenUsage, UpstreamFailure
from shieldes.providers.openai import OpenAIProvider
from shieldes.providers.transport import UpstreamClient
from shieldes.settings import Settings

CHUNK = b'{"id":"c1","object":"chat.completion.chunk","usage":null,"choices":[{"index":0,"delta":{"content":"%s"}}]}'
USAGE = b'{"id":"c1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}'
NULL_FIRST = b'{"usage":null,"id":"c1","choices":[{"index":0,"delta":{"content":"x"}}]}'
SPACED = b'{"id": "c1", "usage": null, "choices": [{"index": 0, "delta": {"content": "y"}}]}'
ERROR = b'{"error":{"message":"overloaded mid-stream","type":"server_error"}}'


def sse(*payloads: bytes) -> bytes:
    return b"".join(b"data: " + p + b"\n\n" for p in payloads) + b"data: [DONE]\n\n"


@pytest.fixture
async def serve() -> AsyncIterator[tuple[dict[str, bytes], str, UpstreamClient]]:
    bodies: dict[str, bytes] = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(bodies[request.match_info["name"]])
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/{name}/v1/chat/completions", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with UpstreamClient() as session:
        yield bodies, f"http://127.0.0.1:{port}", session
    await runner.cleanup()


async def both_ways(session: UpstreamClient, base: str, strip: bool
                    ) -> tuple[list[object], list[object], TokenUsage | None, TokenUsage | None]:
    """(frames via frames(), frames via parsed chunks, usage of each)."""
    provider = OpenAIProvider(session, Settings())
    target = Target("d", base, "m", None)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    fast = await provider.stream("chat", target, body)
    tally = relay.Tally()
    raw = b"".join([f async for f in fast.frames(tally, strip)])
    slow = await provider.stream("chat", target, body)
    ref = b"".join([f async for f in relay.openai_frames(slow, relay.Tally(), not strip)])
    parse = [orjson.loads(f[6:]) if f != b"data: [DONE]" else "DONE" for f in raw.split(b"\n\n") if f]
    expect = [orjson.loads(f[6:]) if f != b"data: [DONE]" else "DONE" for f in ref.split(b"\n\n") if f]
    return parse, expect, fast.usage, slow.usage


WITH_CONTENT = (b'{"id":"c1","choices":[{"index":0,"delta":{"content":"z"}}],'
                b'"usage":{"prompt_tokens":7,"completion_tokens":3}}')


@pytest.mark.parametrize("strip", [True, False])
@pytest.mark.parametrize("last", [(USAGE,), (USAGE, CHUNK % b"!"), (WITH_CONTENT,), (WITH_CONTENT, CHUNK % b".")],
                         ids=["usage-last", "usage-then-content", "usage-with-content", "usage-with-content-then"])
async def test_frames_match_parsed_chunks(serve: tuple[dict[str, bytes], str, UpstreamClient],
                                          strip: bool, last: tuple[bytes, ...]) -> None:
    bodies, url, session = serve
    bodies["a"] = sse(CHUNK % b"Hello", NULL_FIRST, SPACED, CHUNK % b" world", *last)
    got, expected, usage, ref_usage = await both_ways(session, url + "/a", strip)
    assert got == expected
    assert usage == ref_usage == TokenUsage(7, 3)
    assert all("usage" not in f for f in got if isinstance(f, dict)) is strip


async def test_mid_stream_error_after_content(serve: tuple[dict[str, bytes], str, UpstreamClient]) -> None:
    bodies, url, session = serve
    bodies["e"] = sse(CHUNK % b"Hello", CHUNK % b" again", ERROR)
    stream = await OpenAIProvider(session, Settings()).stream(
        "chat", Target("d", url + "/e", "m", None), {"model": "m", "messages": []})
    seen: list[bytes] = []
    with pytest.raises(UpstreamFailure, match="overloaded mid-stream"):
        async for data in stream.frames(relay.Tally(), True):  # type: ignore[attr-defined]
            seen.append(data)
    assert b"".join(seen).count(b"data: ") == 2  # the frames before the error still go out
    await stream.aclose()
