"""A key's sliding minute across a minute boundary, through HTTP on a real node: the node's meter
reads its clock (shifted here to a boundary), so no test waits out a real minute."""

from __future__ import annotations

import time

import openai
import pytest

from tests.integration.gateway_harness import harness

MSGS = [{"role": "user", "content": "hello there"}]


class ShiftedClock:
    """The wall clock moved by `offset` seconds (the test moves it on)."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def __call__(self) -> float:
        return time.time() + self.offset


async def test_a_1_rpm_key_is_refused_right_after_a_minute_boundary(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("one-a-minute", rpm=1)
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        now = time.time()
        clock = ShiftedClock(now - now % 60 + 60 - 0.5 - now)  # half a second before a boundary
        assert h.node.meter is not None
        h.node.meter.clock = clock
        await client.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
        clock.offset += 1.0  # the next minute has begun: the first request still counts (1 x 59/60, whole)
        with pytest.raises(openai.RateLimitError) as exc:
            await client.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
        assert exc.value.code == "rate_limit_exceeded"
        headers = exc.value.response.headers
        # it frees once all of the previous minute has slid out, about 59.5 s on: what Retry-After says
        reset = float(headers["x-ratelimit-reset-requests"].removesuffix("s"))
        assert 58.0 < reset <= 60.0
        assert headers["retry-after"] == "60" and headers["x-ratelimit-remaining-requests"] == "0"
        clock.offset += reset - 1.0  # a second before it frees: still refused
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
        clock.offset += 1.01  # then served
        await client.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
        assert len(h.upstream.requests_to("/v1/chat/completions")) == 2
