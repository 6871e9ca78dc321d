"""A request whose requested model and every fallback are served only by deployments at their
quota (`--rpm`): the 429 names each model tried, its deployments and when they free up, with
Retry-After the soonest, in each API's own shape, streams included, and the request log says the
same. Before, it named only the requested model and told every client to come back in 5 s."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from shieldes.projections.shared_commands import AddProvider
from tests.integration.gateway_harness import UPSTREAM_KEY_ENV, harness
from tests.integration.test_request_log import flushed

HELLO: Any = [{"role": "user", "content": "say hello"}]


async def test_every_model_at_its_quota_names_each_and_the_soonest_retry(database_url: str) -> None:
    async with harness(database_url, providers=False, upstream_retries=0, request_log_interval=0.05) as h:
        ref = "env:" + UPSTREAM_KEY_ENV
        await h.admin(AddProvider("quota-big", "openai", h.upstream.url, ref, ("gpt-4o",), options={"rpm": "1"}))
        await h.admin(AddProvider("quota-mini", "openai", h.upstream.url, ref, ("gpt-4o-mini",),
                                  options={"rpm": "1"}))
        secret = await h.create_key("app")
        await h.sync()
        gateway = h.node.gateway
        assert gateway is not None
        now = [1000.0]
        gateway.quotas.clock = lambda: now[0]  # the quota window's clock, moved by the test
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        await client.chat.completions.create(model="gpt-4o", messages=HELLO)  # quota-big's one a minute
        now[0] += 30
        await client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)  # quota-mini's
        now[0] += 15  # quota-big frees up in 15 s, quota-mini in 45 s
        every = ("every model tried for 'gpt-4o-mini' is at its deployments' quota (the provider's own rpm/tpm, "
                 "shared by the cluster): 'gpt-4o-mini' (not called: quota-mini at its quota, a request frees up "
                 "in 45 s), then fallback 'gpt-4o' (not called: quota-big at its quota, a request frees up in "
                 "15 s); retry after 15 s, or raise the quota of a deployment named")
        told: list[str] = []
        for stream in (False, True):  # a stream refused before its first byte: the same
            with pytest.raises(openai.RateLimitError) as err:
                await client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=stream,
                                                     extra_body={"fallbacks": ["gpt-4o"]})
            assert err.value.response.headers["retry-after"] == "15"
            assert err.value.code == "rate_limit_exceeded"
            told.append(err.value.message)
            with pytest.raises(anthropic.RateLimitError) as got:
                await claude.messages.create(model="gpt-4o-mini", max_tokens=16, messages=HELLO, stream=stream,
                                             extra_body={"fallbacks": ["gpt-4o"]})
            assert got.value.response.headers["retry-after"] == "15"
            body: Any = got.value.body
            assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"  # (Anthropic's shape)
            told.append(body["error"]["message"])
        for message in told:
            assert every in message, message
        # without fallbacks: the requested model's deployments, with when they free up
        with pytest.raises(openai.RateLimitError) as err:
            await client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
        assert err.value.response.headers["retry-after"] == "45"
        assert ("every deployment serving model 'gpt-4o-mini' is at its quota (the provider's own rpm/tpm, "
                "shared by the cluster): quota-mini at its quota, a request frees up in 45 s; retry after 45 s"
                in err.value.message)
        await flushed(h, 2 + len(told) + 1)
        logged = [m for (m,) in h.sql("SELECT error_message FROM request_log WHERE status = 429")]
        assert len(logged) == len(told) + 1 and sum(every in m for m in logged) == len(told), logged
        assert len(h.upstream.requests) == 2  # no deployment at its quota was called
        now[0] += 15  # quota-big has room again: the fallback answers
        raw: Any = await client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=HELLO, extra_body={"fallbacks": ["gpt-4o"]})
        assert raw.headers["x-shieldes-fallback"] == "gpt-4o"
