"""Background responses on one node, through the official openai SDK: `background=True` answers
at once with a queued response that runs on to the end; `retrieve` shows it as it stands,
`retrieve(stream=True, starting_after=N)` replays its events (and follows them while it runs);
`cancel` stops its upstream call and bills what ran; the node's bound on runs is a 503 with
Retry-After. The fake upstream holds a stream until the test releases it."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import openai
import pytest

from tests.fake_upstream import Fault
from tests.integration.gateway_harness import Harness, harness, wait_until
from tests.integration.test_responses_api import oai

CHAT = "/v1/chat/completions"


async def _held(h: Harness, hold_after: int) -> tuple[openai.AsyncOpenAI, Fault, Any]:
    """A client of a new key, and a background response held at the upstream after `hold_after` frames."""
    secret = await h.create_key("bg")
    await h.sync()
    client = oai(h.base, secret)
    hold = h.upstream.inject(CHAT, hold_after=hold_after)
    made = await client.responses.create(model="gpt-4o", input="write a long essay", background=True)
    await wait_until(lambda: hold.holding == 1)
    return client, hold, made


async def _status(client: openai.AsyncOpenAI, response_id: str) -> str:
    return (await client.responses.retrieve(response_id)).status or ""


async def _finished(client: openai.AsyncOpenAI, response_id: str, status: str = "completed") -> Any:
    async def done() -> bool:
        return await _status(client, response_id) == status

    await wait_until_async(done)
    return await client.responses.retrieve(response_id)


async def wait_until_async(cond: Any, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await cond():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_background_response_runs_to_the_end_and_replays_its_events(database_url: str) -> None:
    async with harness(database_url) as h:
        client, hold, made = await _held(h, 2)
        assert made.status == "queued" and made.background is True and made.id.startswith("resp_")  # the answer
        assert await _status(client, made.id) == "in_progress"
        hold.release.set()
        done = await _finished(client, made.id)
        assert done.output_text and done.usage is not None and done.usage.output_tokens == 5
        assert done.background is True
        events = [e async for e in await client.responses.retrieve(made.id, stream=True)]
        assert [e.sequence_number for e in events] == list(range(len(events)))
        assert events[0].type == "response.created" and events[-1].type == "response.completed"
        assert all(e.response.id == made.id for e in events if hasattr(e, "response"))
        later = [e async for e in await client.responses.retrieve(made.id, stream=True, starting_after=3)]
        assert [e.sequence_number for e in later] == list(range(4, len(events)))
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        assert text == done.output_text
        # settled and logged like any call: one request-log row with its tokens, and the usage
        writer = h.node.request_log
        assert writer is not None
        await wait_until(lambda: writer.buffer.added >= 1)
        assert await writer.flush_all(10)
        rows = h.sql("SELECT route, status, prompt_tokens, completion_tokens FROM request_log "
                     "WHERE route = '/v1/responses'")
        assert rows == [("/v1/responses", 200, done.usage.input_tokens, 5)]
        await h.flush()
        assert h.usage_totals()["bg"][:3] == (1, done.usage.input_tokens, 5)
        # continued like any stored response
        second = await client.responses.create(model="gpt-4o", input="again", previous_response_id=made.id)
        assert second.status == "completed"


async def test_a_live_stream_can_be_dropped_and_the_run_goes_on(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("bg")
        await h.sync()
        client = oai(h.base, secret)
        hold = h.upstream.inject(CHAT, hold_after=2)
        stream = await client.responses.create(model="gpt-4o", input="hi", background=True, stream=True)
        first = [await anext(aiter(stream)) for _ in range(2)]
        await stream.close()  # the client goes away
        assert first[0].type == "response.created" and first[0].response.background is True
        response_id = first[0].response.id
        hold.release.set()
        done = await _finished(client, response_id)
        assert done.output_text
        # a reader following it from where the first one stopped gets the rest
        rest = [e async for e in await client.responses.retrieve(response_id, stream=True,
                                                                  starting_after=first[-1].sequence_number)]
        assert rest[0].sequence_number == first[-1].sequence_number + 1 and rest[-1].type == "response.completed"


async def test_cancel_stops_the_upstream_call_bills_what_ran_and_is_idempotent(database_url: str) -> None:
    async with harness(database_url) as h:
        client, hold, made = await _held(h, 3)
        async with aiohttp.ClientSession() as s, s.get(h.base + "/metrics") as r:
            assert "shieldes_background_responses 1.0" in await r.text()
        # a follower of the run sees it end
        follower = asyncio.ensure_future(_collect(client.responses.retrieve(made.id, stream=True)))
        gone = await client.responses.cancel(made.id)
        assert gone.status == "cancelled" and gone.id == made.id
        await wait_until(lambda: hold.dropped == 1)  # the upstream call was closed, not left running
        assert gone.usage is not None and gone.usage.output_tokens >= 1
        assert (await client.responses.cancel(made.id)).status == "cancelled"  # again: the same
        assert await _status(client, made.id) == "cancelled"
        events = await asyncio.wait_for(follower, 10)
        assert events and events[0].type == "response.created"
        await h.flush()
        assert h.usage_totals()["bg"][2] == gone.usage.output_tokens  # what ran is billed


async def _collect(stream: Any) -> list[Any]:
    return [e async for e in await stream]


async def test_refusals_say_what_to_do(database_url: str) -> None:
    async with harness(database_url, responses_background_max=1) as h:
        secret = await h.create_key("bg")
        await h.sync()
        client = oai(h.base, secret)
        with pytest.raises(openai.BadRequestError) as unstored:
            await client.responses.create(model="gpt-4o", input="hi", background=True, store=False)
        assert unstored.value.param == "store" and "Background mode requires" in unstored.value.message
        done = await client.responses.create(model="gpt-4o", input="hi", background=True)
        await _finished(client, done.id)
        with pytest.raises(openai.BadRequestError) as finished:
            await client.responses.cancel(done.id)
        assert "Cannot cancel a completed response." in finished.value.message
        with pytest.raises(openai.BadRequestError) as bad_after:
            await client.responses.retrieve(done.id, stream=True, starting_after=-5)
        assert bad_after.value.param == "starting_after"
        # the node's bound: one run at a time here
        hold = h.upstream.inject(CHAT, hold_after=1)
        running = await client.responses.create(model="gpt-4o", input="hi", background=True)
        async with aiohttp.ClientSession() as s, s.post(
                f"{h.base}/v1/responses", headers={"Authorization": f"Bearer {secret}"},
                json={"model": "gpt-4o", "input": "more", "background": True}) as r:
            body = await r.json()
            assert r.status == 503 and r.headers["Retry-After"] == "1"
            assert body["error"]["code"] == "too_many_background_responses"
            assert "SHIELDES_RESPONSES_BACKGROUND_MAX=1" in body["error"]["message"]
        assert len(h.upstream.requests_to(CHAT)) == 2  # refused before any upstream call
        hold.release.set()
        await _finished(client, running.id)


async def test_deleting_a_running_background_response_stops_it(database_url: str) -> None:
    async with harness(database_url) as h:
        client, hold, made = await _held(h, 2)
        await client.responses.delete(made.id)
        await wait_until(lambda: hold.dropped == 1)  # the owner found its row gone and stopped the call
        runs = h.node.background
        assert runs is not None
        await wait_until(lambda: not runs.runs)  # and forgot it, without writing it back
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(made.id)


async def test_background_is_refused_on_a_websocket_with_what_to_send(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("bg")
        await h.sync()
        async with aiohttp.ClientSession() as s, s.ws_connect(
                h.base.replace("http", "ws") + "/v1/responses", headers={"Authorization": f"Bearer {secret}"}) as ws:
            await ws.send_json({"type": "response.create", "model": "gpt-4o", "input": "hi", "background": True})
            refused = await ws.receive_json(timeout=10)
        assert refused["type"] == "error" and refused["status"] == 400
        assert refused["error"]["param"] == "background" and "POST /v1/responses" in refused["error"]["message"]
        assert not h.upstream.requests_to(CHAT)
