"""The attempt a deployment unusable on this node gives up goes where the route's plan would have
sent it: to a deployment whose circuit is closed, chosen by the route's strategy, never to a rested
one while a healthy one is left. Through a real node, two fake OpenAI upstreams and the openai SDK."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from shieldes.projections.shared_commands import AddProvider
from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import UPSTREAM_KEY, UPSTREAM_KEY_ENV, harness

HELLO: Any = [{"role": "user", "content": "say hello"}]
FAILURES = 2  # the node's breaker_failures


async def test_an_unusable_deployments_attempt_skips_a_rested_one(database_url: str) -> None:
    down = FakeUpstream(api_key=UPSTREAM_KEY, models=("shared", "only-down"))
    down.inject("/v1/chat/completions", status=500, times=None)
    healthy = FakeUpstream(api_key=UPSTREAM_KEY, models=("shared",))
    await down.start()
    try:
        async with harness(database_url, upstream=healthy, providers=False, upstream_retries=0,
                           breaker_failures=FAILURES, breaker_cooldown=600.0) as h:
            ref = "env:" + UPSTREAM_KEY_ENV
            # `unset` cannot be used here (its key's variable is not set) and weighs most: nearly
            # every request plans it first; `down` answers 500s and is rested before the requests
            await h.admin(AddProvider("unset", "openai", healthy.url, "env:SHIELDES_TEST_SURELY_UNSET_KEY",
                                      ("shared",), weight=1000.0))
            await h.admin(AddProvider("down", "openai", down.url, ref, ("shared", "only-down")))
            await h.admin(AddProvider("healthy", "openai", healthy.url, ref, ("shared",)))
            secret = await h.create_key("app")
            await h.sync()
            client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
            for _ in range(FAILURES):
                with pytest.raises(openai.InternalServerError):
                    await client.chat.completions.create(model="only-down", messages=HELLO)
            gateway = h.node.gateway
            assert gateway is not None and gateway.breaker.is_open("down")
            before = len(down.requests_to("/v1/chat/completions"))
            for _ in range(6):  # each answered by the healthy deployment, JSON and streamed
                chat = await client.chat.completions.create(model="shared", messages=HELLO)
                assert chat.choices[0].message.content
                stream = await client.chat.completions.create(model="shared", messages=HELLO, stream=True)
                assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            assert len(down.requests_to("/v1/chat/completions")) == before  # the rested one got none
    finally:
        await down.stop()


async def test_an_unusable_deployment_takes_none_of_a_requests_retries(database_url: str) -> None:
    """With one retry, a request planned on the unusable deployment and then a healthy one that
    fails once still gets its two attempts on the healthy one."""
    up = FakeUpstream(api_key=UPSTREAM_KEY, models=("shared",))
    async with harness(database_url, upstream=up, providers=False, upstream_retries=1) as h:
        await h.admin(AddProvider("unset", "openai", up.url, "env:SHIELDES_TEST_SURELY_UNSET_KEY", ("shared",),
                                  weight=1000.0))
        await h.admin(AddProvider("flaky", "openai", up.url, "env:" + UPSTREAM_KEY_ENV, ("shared",)))
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        for stream in (False, True):
            up.inject("/v1/chat/completions", status=500, times=1)  # its first call of each request fails
            before = len(up.requests_to("/v1/chat/completions"))
            if stream:
                chunks = await client.chat.completions.create(model="shared", messages=HELLO, stream=True)
                assert "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
            else:
                chat = await client.chat.completions.create(model="shared", messages=HELLO)
                assert chat.choices[0].message.content
            assert len(up.requests_to("/v1/chat/completions")) == before + 2
