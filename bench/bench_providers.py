"""Provider adapter overhead: the OpenAI and Anthropic adapters vs a bare aiohttp request against
the same fake upstream (run in its own process), JSON and streaming, plus the pure parts
(SSE decoding, Anthropic translation) in isolation. Prints a table.

    PYTHONPATH=. python bench/bench_providers.py [--requests 2000] [--concurrency 16]

CPU/req is this process's CPU time per request (the client side: adapter + aiohttp), so the
adapter's cost is the difference to the bare rows."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import orjson

from shieldes.providers.anthropic_translate import StreamTranslator, chat_request_to_anthropic
from shieldes.providers.base import Target
from shieldes.providers.bedrock_answers import ConverseStreamTranslator
from shieldes.providers.bedrock_translate import chat_to_converse
from shieldes.providers.gemini_translate import GeminiStreamTranslator, chat_to_gemini
from shieldes.providers.registry import build_providers, open_client
from shieldes.providers.sse import SSEDecoder
from shieldes.providers.upstream_connection import Timeouts
from shieldes.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
BODY = {
    "model": "m",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Tell me about the weather in Paris today"},
    ],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_up(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(url + "/v1/models"):
                    return
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)
    raise RuntimeError("fake upstream did not start")


async def measure(
    n: int, concurrency: int, one: Callable[[], Awaitable[None]]
) -> tuple[float, float, float, float]:
    latencies: list[float] = []
    queue = iter(range(n))

    async def worker() -> None:
        for _ in queue:
            t = time.perf_counter()
            await one()
            latencies.append(time.perf_counter() - t)

    for _ in range(min(50, n)):  # warm the pool
        await one()
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    latencies.sort()
    return (
        n / wall,
        statistics.median(latencies) * 1e3,
        latencies[int(len(latencies) * 0.99)] * 1e3,
        cpu / n * 1e6,
    )


def micro(label: str, n: int, fn: Callable[[], object]) -> tuple[str, float]:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return label, (time.perf_counter() - t) / n * 1e6


async def run(n: int, concurrency: int) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_upstream", "--port", str(port), "--completion-tokens", "20"],
        cwd=ROOT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_up(url)
        settings = Settings()
        async with open_client() as client, aiohttp.ClientSession() as session:
            providers = build_providers(client, settings)
            oa, an = Target("oa", url, "gpt-4o-mini", "k"), Target("an", url, "claude-x", "k")
            raw_chat = orjson.dumps({**BODY, "model": "gpt-4o-mini"})
            raw_stream = orjson.dumps(
                {**BODY, "model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True}}
            )
            headers = {"Content-Type": "application/json", "Authorization": "Bearer k"}

            async def bare_json() -> None:
                async with session.post(url + "/v1/chat/completions", data=raw_chat, headers=headers) as r:
                    orjson.loads(await r.read())

            async def bare_stream() -> None:
                async with session.post(url + "/v1/chat/completions", data=raw_stream, headers=headers) as r:
                    async for _ in r.content.iter_any():
                        pass

            timeouts = Timeouts(connect=5, total=600)

            async def client_json() -> None:
                r = await client.post(url + "/v1/chat/completions", raw_chat, headers, timeouts)
                orjson.loads(await r.read())

            async def client_stream() -> None:
                r = await client.post(url + "/v1/chat/completions", raw_stream, headers, timeouts)
                while await r.read_chunk():
                    pass
                r.release()

            async def provider_json(kind: str, target: Target) -> None:
                await providers[kind].call("chat", target, BODY)

            async def provider_stream(kind: str, target: Target) -> None:
                stream = await providers[kind].stream("chat", target, BODY)
                async for _ in stream:
                    pass

            cases: list[tuple[str, Callable[[], Awaitable[None]]]] = [
                ("bare aiohttp, JSON", bare_json),
                ("bare node client, JSON", client_json),
                ("openai adapter, JSON", lambda: provider_json("openai", oa)),
                ("anthropic adapter, JSON", lambda: provider_json("anthropic", an)),
                ("bare aiohttp, stream (20 chunks)", bare_stream),
                ("bare node client, stream", client_stream),
                ("openai adapter, stream", lambda: provider_stream("openai", oa)),
                ("anthropic adapter, stream", lambda: provider_stream("anthropic", an)),
            ]
            print(f"{n} requests per row, concurrency {concurrency}, fake upstream in its own process\n")
            print(f"{'case':36} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>11}")
            for label, one in cases:
                rps, p50, p99, cpu = await measure(n, concurrency, one)
                print(f"{label:36} {rps:8.0f} {p50:8.2f} {p99:8.2f} {cpu:11.0f}")
    finally:
        fake.terminate()
        fake.wait()

    sse = b"".join(
        b'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":'
        b'{"content":" word"},"finish_reason":null}]}\n\n'
        for _ in range(100)
    )
    request = {
        **BODY,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    }
    events = (
        [("message_start", {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 5}}})]
        + [
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " w"}},
            )
        ]
        * 98
        + [
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": 9},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
    )

    def translate_stream() -> None:
        t = StreamTranslator("m", 0)
        for name, data in events:
            t.feed(name, data)

    gemini_events = [{"candidates": [{"content": {"role": "model", "parts": [{"text": " w"}]}, "index": 0}],
                      "usageMetadata": {"promptTokenCount": 9}}] * 100
    converse_events = ([("messageStart", {"role": "assistant"})]
                       + [("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": " w"}})] * 98
                       + [("messageStop", {"stopReason": "end_turn"}),
                          ("metadata", {"usage": {"inputTokens": 9, "outputTokens": 98}})])

    def translate_gemini() -> None:
        t = GeminiStreamTranslator("m", 0)
        for data in gemini_events:
            t.feed(data)
        t.end()

    def translate_converse() -> None:
        t = ConverseStreamTranslator("m", 0)
        for name, data in converse_events:
            t.feed(name, data)

    print(f"\n{'pure function':44} {'us/call':>8}")
    for label, us in (
        micro("SSEDecoder.feed, 100 chunk frames in one read", 2000, lambda: SSEDecoder().feed(sse)),
        micro(
            "chat_request_to_anthropic (system+user+tool)",
            20000,
            lambda: chat_request_to_anthropic(request, "m"),
        ),
        micro("StreamTranslator, 100 events", 2000, translate_stream),
        micro("chat_to_gemini (system+user+tool)", 20000, lambda: chat_to_gemini(request)),
        micro("GeminiStreamTranslator, 100 events", 2000, translate_gemini),
        micro("chat_to_converse (system+user+tool)", 20000, lambda: chat_to_converse(request)),
        micro("ConverseStreamTranslator, 100 events", 2000, translate_converse),
    ):
        print(f"{label:44} {us:8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    asyncio.run(run(args.requests, args.concurrency))


if __name__ == "__main__":
    main()
