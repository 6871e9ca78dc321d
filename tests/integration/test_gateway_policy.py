"""Keys, limits, budgets, failover, disconnects and shutdown on a real node."""

from __future__ import annotations

import asyncio
import math

import aiohttp
import openai
import pytest

from shieldes.projections.commands import RevokeKey
from shieldes.projections.shared_commands import AddProvider
from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import UPSTREAM_KEY, UPSTREAM_KEY_ENV, harness, wait_until
from tests.resilience.support import not_near_minute_end

MSGS = [{"role": "user", "content": "hello there"}]


def oai(base: str, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base + "/v1", api_key=key, max_retries=0)


async def test_revoked_key_is_refused_on_the_next_request(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("soon-gone")
        await h.sync()
        client = oai(h.base, secret)
        await client.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
        await h.admin(RevokeKey("soon-gone"))
        await h.sync()
        with pytest.raises(openai.AuthenticationError) as exc:
            await client.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
        assert exc.value.code == "invalid_api_key"


async def test_budget_exhausted_gives_429_budget_exceeded(database_url: str) -> None:
    async with harness(database_url) as h:
        # one call costs 2*2500 + 5*10000 = 55000 nUSD; admission estimates about 100000 (body bytes / 4
        # prompt tokens and max_tokens=5): spent + estimate fits the 185000 budget twice, not a third time
        secret = await h.create_key("frugal", budget_usd=0.000185, budget_period="1d")
        await h.sync()
        client = oai(h.base, secret)
        await client.chat.completions.create(model="gpt-4o", messages=MSGS, max_tokens=5)  # type: ignore[arg-type]
        await client.chat.completions.create(model="gpt-4o", messages=MSGS, max_tokens=5)  # type: ignore[arg-type]
        with pytest.raises(openai.RateLimitError) as exc:
            await client.chat.completions.create(model="gpt-4o", messages=MSGS, max_tokens=5)  # type: ignore[arg-type]
        assert exc.value.code == "budget_exceeded"
        assert exc.value.body["type"] == "insufficient_quota"  # type: ignore[index] (OpenAI's type: clients stop)
        assert exc.value.response.headers["x-should-retry"] == "false"
        # still refused once the usage is durable in the log and the pending part is dropped
        await h.flush()
        await h.sync()
        assert h.node.meter is not None and not h.node.meter.pending_snapshot()
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(model="gpt-4o", messages=MSGS, max_tokens=5)  # type: ignore[arg-type]
        assert h.usage_totals()["frugal"] == (2, 4, 10, 110000)


async def test_rate_limit_gives_429_with_retry_after(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("slow", rpm=2)
        await h.sync()
        client = oai(h.base, secret)
        await not_near_minute_end(5.0)  # all three in one fixed minute, the case whose reset is asserted below
        ok = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
        assert ok.headers["x-ratelimit-limit-requests"] == "2"
        assert ok.headers["x-ratelimit-remaining-requests"] == "1"
        await client.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
        with pytest.raises(openai.RateLimitError) as exc:
            await client.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
        assert exc.value.code == "rate_limit_exceeded"
        headers = exc.value.response.headers
        # a sliding minute: the window's rest, then half of the next one until one of the two slides out
        # (Retry-After asks for at most a minute: clients give up on longer ones)
        reset = float(headers["x-ratelimit-reset-requests"].removesuffix("s"))
        assert 30 <= reset <= 90
        assert int(headers["retry-after"]) == min(60, math.ceil(reset))
        assert headers["x-ratelimit-remaining-requests"] == "0"


async def test_failover_when_the_first_deployment_answers_500(database_url: str) -> None:
    broken = FakeUpstream(api_key=UPSTREAM_KEY)
    await broken.start()
    broken.inject("/v1/chat/completions", status=500, times=None)
    try:
        async with harness(database_url, providers=False, breaker_failures=2) as h:
            ref = "env:SHIELDES_TEST_UPSTREAM_KEY"
            await h.admin(AddProvider("primary", "openai", broken.url, ref, ("gpt-4o",), weight=1e6))
            await h.admin(AddProvider("backup", "openai", h.upstream.url, ref, ("gpt-4o",), weight=1e-6))
            secret = await h.create_key("resilient")
            await h.sync()
            client = oai(h.base, secret)
            for _ in range(3):
                chat = await client.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
                assert chat.choices[0].message.content
            # the breaker rests "primary" after two failures: the third call goes straight to backup
            assert len(broken.requests_to("/v1/chat/completions")) == 2
            assert len(h.upstream.requests_to("/v1/chat/completions")) == 3
            await h.flush()
            rows = h.delta_rows()
            assert {r[1] for r in rows} == {"backup"} and sum(r[3] for r in rows) == 3
            # pinned to the broken one, with retries exhausted: 502 in the OpenAI shape
            with pytest.raises(openai.InternalServerError) as exc:
                await client.chat.completions.create(model="primary/gpt-4o", messages=MSGS)  # type: ignore[arg-type]
            assert exc.value.status_code == 502 and exc.value.code == "upstream_error"
    finally:
        await broken.stop()


async def _read_some_then_leave(base: str, secret: str, frames: int) -> None:
    body = {"model": "gpt-4o", "messages": MSGS, "stream": True}
    async with (
        aiohttp.ClientSession() as s,
        s.post(base + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {secret}"}) as r,
    ):
        assert r.status == 200
        seen = 0
        async for line in r.content:
            if line.startswith(b"data: "):
                seen += 1
                if seen >= frames:
                    break
        # leaving the block closes the connection mid-stream


async def test_client_disconnect_mid_stream_is_still_accounted(database_url: str) -> None:
    up = FakeUpstream(completion_tokens=20, api_key=UPSTREAM_KEY)
    async with harness(database_url, upstream=up) as h:
        secret = await h.create_key("quitter")
        await h.sync()
        up.inject("/v1/chat/completions", chunk_delay=0.02)
        await _read_some_then_leave(h.base, secret, 3)
        # settled once the upstream's last chunk arrived (the relay drains it for the usage)
        await wait_until(lambda: "quitter" in h.usage_totals(), timeout=10)
        # the upstream's own counts: 2 prompt words, 20 completion tokens
        assert h.usage_totals()["quitter"] == (1, 2, 20, 2 * 2500 + 20 * 10000)


async def test_graceful_shutdown_finishes_streams_and_flushes_everything(database_url: str) -> None:
    up = FakeUpstream(completion_tokens=10, api_key=UPSTREAM_KEY)
    async with harness(database_url, upstream=up, flush_interval=3600) as h:
        secret = await h.create_key("last-call")
        await h.sync()
        client = oai(h.base, secret)
        for _ in range(3):
            await client.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
        up.inject("/v1/chat/completions", chunk_delay=0.03)
        stream = await client.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True)  # type: ignore[arg-type]
        first = await stream.__anext__()
        stopping = asyncio.create_task(h.node.stop())
        await asyncio.sleep(0.05)
        rest = [c async for c in stream]
        text = "".join(c.choices[0].delta.content or "" for c in [first, *rest] if c.choices)
        assert len(text.split()) == 10  # the stream ran to its end during shutdown
        await stopping
        assert h.usage_totals()["last-call"] == (4, 8, 40, 4 * (2 * 2500 + 10 * 10000))
        with pytest.raises(openai.APIConnectionError):
            await client.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]



async def test_a_deployment_at_its_quota_leaves_the_request_to_one_with_room(database_url: str) -> None:
    """A provider's own rpm (`--rpm`) used up: its requests go to the model's other deployments,
    even with no retries (the plan's one attempt once picked it and answered 429 while the other
    had room)."""
    small = await FakeUpstream(completion_tokens=5, api_key=UPSTREAM_KEY, models=("gpt-4o-mini",)).start()
    try:
        async with harness(database_url, upstream_retries=0) as h:
            await h.admin(AddProvider("openai-small", "openai", small.url, "env:" + UPSTREAM_KEY_ENV,
                                      ("gpt-4o-mini",), options={"rpm": "1"}))
            secret = await h.create_key("app")
            await h.sync()
            client = oai(h.base, secret)
            for _ in range(16):  # each a 200, by whichever deployment has room
                await client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)  # type: ignore[arg-type]
            assert len(small.requests) == 1  # its one request a minute (weighted picks: 1 - 2**-16 sure)
            assert len(h.upstream.requests) == 15
    finally:
        await small.stop()
