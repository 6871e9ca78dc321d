"""OpenAI's media and moderation endpoints through a real node and the official openai SDK, against
the fake upstream's wire format (tests/fake_media.py): what reached the upstream, what was billed
(usage_daily and the request log), budgets, failover, kinds that cannot serve a route, Azure."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import pytest

from shieldes.projections.shared_commands import AddProvider
from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import UPSTREAM_KEY, UPSTREAM_KEY_ENV, Harness, harness, wait_until

REF = "env:" + UPSTREAM_KEY_ENV
NUSD = 1_000_000_000  # per USD


def client_for(h: Harness, secret: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)


async def logged(h: Harness, expected: int, route: str) -> list[dict[str, Any]]:
    """The request log's rows of `route`, once `expected` rows in all were written."""
    writer = h.node.request_log
    assert writer is not None
    await wait_until(lambda: writer.buffer.added >= expected, timeout=10)
    assert await writer.flush_all(10)
    rows = h.sql("SELECT route, model, deployment, status, error_code, prompt_tokens, completion_tokens,"
                 " cost_usd * 1000000000, stream FROM request_log WHERE route = %s ORDER BY started_at", route)
    names = ("route", "model", "deployment", "status", "error_code", "prompt_tokens", "completion_tokens", "cost_nusd",
             "stream")
    return [dict(zip(names, r, strict=True)) for r in rows]


async def test_moderations_pass_through_free_with_limits_failover_and_refusals(database_url: str) -> None:
    up = FakeUpstream(api_key=UPSTREAM_KEY)
    async with harness(database_url, upstream=up, providers=False, upstream_retries=1) as h:
        await h.admin(AddProvider("primary", "openai", up.url, REF, ("omni-moderation-latest", "gpt-4o")))
        await h.admin(AddProvider("backup", "openai", up.url, REF, ("omni-moderation-latest",)))
        await h.admin(AddProvider("claude", "anthropic", up.url, REF, ("claude-guard",)))
        # a budget: moderations cost nothing, so they need no price to be held to one
        secret = await h.create_key("app", budget_usd=1.0)
        narrow = await h.create_key("narrow", models=("gpt-4o",))
        limited = await h.create_key("limited", rpm=1)
        await h.sync()
        client = client_for(h, secret)

        mod = await client.moderations.create(input=["I will kill the process", "hello there"])
        assert [r.flagged for r in mod.results] == [True, False]
        assert mod.results[0].categories.violence is True and mod.model == "omni-moderation-latest"
        sent = up.last("/v1/moderations")
        assert sent.body == {"input": ["I will kill the process", "hello there"], "model": "omni-moderation-latest"}
        assert sent.headers["authorization"] == "Bearer " + UPSTREAM_KEY

        async with aiohttp.ClientSession() as s, s.post(h.base + "/moderations", json={"input": "hi"},
                                                         headers={"Authorization": f"Bearer {secret}"}) as r:
            assert r.status == 200 and (await r.json())["results"][0]["flagged"] is False

        up.inject("/v1/moderations", status=503, times=1)  # one deployment fails, the other serves
        before = len(up.requests_to("/v1/moderations"))
        mod = await client.moderations.create(model="omni-moderation-latest", input="hello")
        assert mod.results[0].flagged is False and len(up.requests_to("/v1/moderations")) == before + 2

        with pytest.raises(openai.BadRequestError) as kind:
            await client.moderations.create(model="claude-guard", input="hello")
        assert kind.value.code == "unsupported_endpoint" and "anthropic" in kind.value.message
        assert "type openai" in kind.value.message
        with pytest.raises(openai.NotFoundError) as unknown:
            await client.moderations.create(model="no-such-moderator", input="hello")
        assert unknown.value.code == "model_not_found"
        with pytest.raises(openai.PermissionDeniedError):
            await client_for(h, narrow).moderations.create(input="hello")
        with pytest.raises(openai.BadRequestError) as bad:
            await client.moderations.create(input="")
        assert bad.value.param == "input" and "'input'" in bad.value.message
        await client_for(h, limited).moderations.create(input="hello")
        with pytest.raises(openai.RateLimitError):
            await client_for(h, limited).moderations.create(input="hello")

        await h.flush()
        totals = h.usage_totals()
        assert totals["app"][0] == 3 and totals["app"][3] == 0  # counted, never billed
        rows = await logged(h, 9, "/v1/moderations")
        served = [r for r in rows if r["status"] == 200]
        assert len(served) == 4 and all(r["cost_nusd"] == 0 and r["model"] == "omni-moderation-latest"
                                        for r in served)
        assert {r["error_code"] for r in rows if r["status"] != 200} >= {
            "unsupported_endpoint", "model_not_found", "model_not_allowed", "invalid_request", "rate_limit_exceeded"}
