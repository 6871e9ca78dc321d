"""Responses streams whose upstream reports no usage: a chat server that refuses `stream_options`
(translate mode) or a Responses server whose events carry `usage: null` (native mode). The gateway
bills an estimate (request bytes / 4, one token per delta event); the client's final
`response.completed`, `response.incomplete` or `response.failed`, the stored response that GET
returns, the usage totals and the request log all hold that same estimate. Official SDK, a real node."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import openai
import pytest

from shieldes.projections.shared_commands import UpdateProvider
from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import UPSTREAM_KEY, Harness, harness
from tests.integration.test_request_log import flushed


async def _sse(h: Harness, secret: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The event stream as sent (the SDK raises at an `error` event, before `response.failed`)."""
    async with aiohttp.ClientSession() as s, s.post(h.base + "/v1/responses", json=body,
                                                    headers={"Authorization": f"Bearer {secret}"}) as r:
        assert r.status == 200
        text = await r.text()
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


@pytest.mark.parametrize("mode", ["translate", "native"])
async def test_a_responses_stream_without_upstream_usage_shows_the_estimate_that_is_billed(
        database_url: str, mode: str) -> None:
    up = FakeUpstream(completion_tokens=5, api_key=UPSTREAM_KEY, models=("gpt-4o",),
                      reject_stream_options=mode == "translate", responses_usage=mode == "translate")
    async with harness(database_url, upstream=up, upstream_retries=0) as h:
        if mode == "native":
            await h.admin(UpdateProvider("openai", responses="native"))
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        shown: list[tuple[int, int]] = []

        async def billed_as_shown(response_id: str, usage: dict[str, Any], deltas: int) -> None:
            assert usage is not None, "the client must be told the estimate that is billed, not nothing"
            assert usage["output_tokens"] == deltas > 0  # one token per delta: the estimate
            assert usage["input_tokens"] > 0
            assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
            assert usage["input_tokens_details"]["cached_tokens"] == 0
            assert usage["output_tokens_details"]["reasoning_tokens"] == 0
            stored = await client.responses.retrieve(response_id)
            assert stored.usage is not None and stored.usage.model_dump(exclude_none=True) == usage  # GET: the same
            await h.flush()
            _requests, prompt, completion, _cost = h.usage_totals()["app"]
            billed = (prompt - sum(i for i, _ in shown), completion - sum(o for _, o in shown))  # this call's
            assert (usage["input_tokens"], usage["output_tokens"]) == billed
            shown.append(billed)

        for ask, status in (({"input": "rain in Paris?"}, "completed"),
                            ({"input": "rain in Rome?", "max_output_tokens": 2}, "incomplete")):
            stream = await client.responses.create(model="gpt-4o", stream=True, **ask)
            events = [e async for e in stream]
            final = events[-1]
            assert final.type == f"response.{status}" and final.response.status == status
            usage = final.response.usage
            await billed_as_shown(final.response.id, usage.model_dump(exclude_none=True) if usage is not None else None,
                                  sum(1 for e in events if e.type.endswith(".delta")))

        # the upstream drops the connection mid-answer: error, then response.failed
        up.inject("/v1/chat/completions" if mode == "translate" else "/v1/responses", disconnect_after=5, times=None)
        raw = await _sse(h, secret, {"model": "gpt-4o", "input": "rain in Oslo?", "stream": True})
        up.clear_faults()
        assert [e["type"] for e in raw[-2:]] == ["error", "response.failed"]
        await billed_as_shown(raw[-1]["response"]["id"], raw[-1]["response"]["usage"],
                              sum(1 for e in raw if e["type"].endswith(".delta")))

        if mode == "translate":  # refused, then sent again without stream_options, each time
            assert sum(1 for r in up.requests if "stream_options" in r.body) == 3
        await flushed(h, 6)  # three creates, three GETs
        logged = h.sql("SELECT prompt_tokens, completion_tokens FROM request_log WHERE route = '/v1/responses'"
                       " ORDER BY started_at")
        assert logged == shown
