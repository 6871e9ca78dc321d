"""A stream the upstream breaks after it opened is a failed attempt of its deployment, as an answered
500 is: it raises the deployment's error rate and, `breaker_failures` in a row, rests it, so that
new streams go to a healthy deployment of the model (docs/routing.md, What counts as a failure).
A client that leaves mid-stream, or a stream ended on the request's own fault, counts nothing
against it. Through a real node and the official openai SDK; one node for the module, each test
on deployments and models of its own."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
import pytest_asyncio

from shieldes.projections.shared_commands import AddProvider
from tests import pg
from tests.fake_upstream import FakeUpstream
from tests.integration.admin_client import AdminClient
from tests.integration.gateway_harness import UPSTREAM_KEY, UPSTREAM_KEY_ENV, Harness, harness, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")
ADMIN = "boot-" + "stream-health-admin-token-" * 2
FAILURES = 3  # the node's breaker_failures
# the node's SHIELDES_STREAM_STALL_SECONDS (30 by default): seconds of upstream silence after which a
# client leaving a stream counts as the deployment's failure. The node looks at its streams once a
# second, so a silence is measured in whole looks: a client leaving after 0.3 s of silence is seen
# at most ~1 s in, one leaving after 2.6 s at least ~2 s in, on either side of 1.5.
STALL = 1.5
REF = "env:" + UPSTREAM_KEY_ENV
HI = [{"role": "user", "content": "x"}]
# how the upstream breaks each stream after it opened (tests/fake_upstream.py's Fault)
BREAKS: dict[str, dict[str, Any]] = {
    "cut": {"mangle": "cut"},  # the connection drops inside an event
    "garbage": {"mangle": "garbage"},  # an event that is not JSON
    "unfinished": {"mangle": "unfinished"},  # a clean end before the stream's final events
    "error_event": {"error_after": 1, "stream_error": "server_error"},  # the upstream's own error mid-stream
}


@pytest.fixture(scope="module")
def module_database(pg_server: str) -> Iterator[str]:
    url = pg.fresh_database(pg_server)
    yield url
    pg.drop_database(pg_server, url)


@dataclass
class Node:
    h: Harness
    secret: str
    client: openai.AsyncOpenAI
    api: AdminClient


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(module_database: str) -> AsyncIterator[Node]:
    # a long cooldown: a rested deployment stays rested for the whole test
    async with harness(module_database, providers=False, upstream_retries=0, breaker_failures=FAILURES,
                       breaker_cooldown=600.0, admin_token=ADMIN, stream_stall_seconds=STALL) as h:
        secret = await h.create_key("app")
        await h.sync()
        yield Node(h, secret, openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0),
                   AdminClient(h.base, ADMIN))


async def _health(api: AdminClient, name: str) -> dict[str, Any]:
    status, health = await api.get("/admin/v1/providers/health")
    assert status == 200, health
    row: dict[str, Any] = next(r for r in health["data"] if r["name"] == name)
    return row


async def _health_once(api: AdminClient, name: str, reached: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The deployment's row once `reached` holds (a stream's end is noted just after its last event
    went out: the client may read the health before), or as it is after 5 seconds."""
    deadline = asyncio.get_running_loop().time() + 5.0
    row = await _health(api, name)
    while not reached(row) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
        row = await _health(api, name)
    return row


async def _stream(client: openai.AsyncOpenAI, model: str) -> str:
    """One streamed chat turn: its text, or the error the client got mid-stream ("!" + message)."""
    text = ""
    try:
        stream = await client.chat.completions.create(
            model=model, stream=True, messages=[{"role": "user", "content": "hello there"}])
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
    except openai.APIError as exc:
        return "!" + exc.message
    return text


async def _stream_in(node: Node, api: str, model: str) -> str:
    """One streamed turn in client API `api`, through its own client (HTTP for the Gemini API): its
    text, or "!" + the error it ended with."""
    if api == "chat":
        return await _stream(node.client, model)
    text = ""
    if api == "responses":
        try:
            async for event in await node.client.responses.create(model=model, input="hello there", stream=True):
                if event.type == "response.output_text.delta":
                    text += event.delta
                elif event.type == "response.failed":
                    return "!" + event.type
        except openai.APIError as exc:  # (the `error` event before response.failed)
            return "!" + exc.message
        return text
    if api == "messages":
        claude = anthropic.AsyncAnthropic(base_url=node.h.base, api_key=node.secret, max_retries=0)
        try:
            async for ev in await claude.messages.create(model=model, max_tokens=64, stream=True,
                                                         messages=[{"role": "user", "content": "hello there"}]):
                if ev.type == "content_block_delta" and ev.delta.type == "text_delta":
                    text += ev.delta.text
        except anthropic.APIError as exc:
            return "!" + exc.message
        return text
    async with aiohttp.ClientSession() as http, http.post(
            f"{node.h.base}/v1beta/models/{model}:streamGenerateContent?alt=sse",
            headers={"x-goog-api-key": node.secret},
            json={"contents": [{"role": "user", "parts": [{"text": "hello there"}]}]}) as r:
        assert r.status == 200, await r.text()
        for line in (await r.text()).splitlines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                if "error" in event:
                    return "!" + str(event["error"].get("message"))
                for part in event["candidates"][0]["content"].get("parts", []):
                    text += part.get("text", "")
    return text


# each way of breaking a chat stream; a cut stream in each other client API (each relays and ends its
# streams its own way: what breaks them is noted at their end in one place for all)
CASES = [("chat", how) for how in sorted(BREAKS)] + [(api, "cut") for api in ("gemini", "messages", "responses")]


@pytest.mark.parametrize(("client_api", "how"), CASES)
async def test_a_deployment_that_breaks_its_streams_is_rested_and_streams_go_to_the_other(
        node: Node, client_api: str, how: str) -> None:
    h, api = node.h, node.api
    model, steady, cutting = f"model-{client_api}-{how}", f"steady-{client_api}-{how}", f"cutting-{client_api}-{how}"
    breaking = FakeUpstream(completion_tokens=5, api_key=UPSTREAM_KEY, models=(model,))
    await breaking.start()
    try:
        await h.admin(AddProvider(steady, "openai", h.upstream.url, REF, (model,)))
        await h.admin(AddProvider(cutting, "openai", breaking.url, REF, (model,)))
        await h.sync()
        breaking.inject("*", times=None, **BREAKS[how])
        broken = 0
        for _ in range(40):  # equal weights: about half of these go to `cutting` until it rests
            if (await _stream_in(node, client_api, model)).startswith("!"):
                broken += 1
            if (await _health(api, cutting))["breaker"] == "open":
                break
        row = await _health(api, cutting)
        assert row["breaker"] == "open" and row["open_here"], (broken, row)
        assert broken >= FAILURES and row["error_rate"] > 0.025, (broken, row)
        assert len(breaking.requests) == broken  # (each stream it got, it broke)
        # rested: every new stream goes to the healthy deployment and is answered whole
        before = len(h.upstream.requests)
        answers = [await _stream_in(node, client_api, model) for _ in range(10)]
        assert not [a for a in answers if a.startswith("!") or not a], answers
        assert len(breaking.requests) == broken
        assert len(h.upstream.requests) == before + 10
        good = await _health(api, steady)
        assert (good["breaker"], good["error_rate"]) == ("closed", 0.0), good
    finally:
        await breaking.stop()


async def test_a_client_leaving_mid_stream_counts_nothing_against_the_deployment(node: Node) -> None:
    h, client, api = node.h, node.client, node.api
    model, name = "model-left", "left"
    await h.admin(AddProvider(name, "openai", h.upstream.url, REF, (model,)))
    await h.sync()
    hold = h.upstream.inject("/v1/chat/completions", hold_after=2, times=None)  # then silent until released
    try:
        streams = []
        for n in range(1, FAILURES + 2):  # more than it takes to rest a failing deployment
            stream = await client.chat.completions.create(
                model=model, stream=True, messages=[{"role": "user", "content": "think hard"}])
            async for _chunk in stream:
                break
            streams.append(stream)
            await wait_until(lambda: hold.holding == n)  # noqa: B023 (waited on in this iteration)
        for stream in streams:
            await stream.close()  # the client gives up mid-stream
        await wait_until(lambda: hold.dropped == FAILURES + 1, timeout=5)
        # each stream's end is noted (a success: the upstream was answering)
        row = await _health_once(api, name, lambda r: r["samples"] == FAILURES + 1)
        assert row["samples"] == FAILURES + 1, row
        assert (row["breaker"], row["open_here"], row["error_rate"]) == ("closed", False, 0.0), row
    finally:
        hold.release.set()
        h.upstream.clear_faults()


async def test_a_deployment_that_stalls_its_streams_is_rested_when_clients_give_up_first(
        node: Node, caplog: pytest.LogCaptureFixture) -> None:
    """The upstream sends a few frames, then nothing; each client (the openai SDK with a timeout
    shorter than the gateway's) gives up on the stream. The upstream had been silent for longer
    than SHIELDES_STREAM_STALL_SECONDS (STALL here) when it left: the deployment's failure, so it
    is rested, as one cutting its streams is; the row and the log say so."""
    caplog.set_level(logging.WARNING)
    h, api = node.h, node.api
    model, name = "model-stalled", "stalling"
    await h.admin(AddProvider(name, "openai", h.upstream.url, REF, (model,)))
    await h.sync()
    hold = h.upstream.inject("/v1/chat/completions", hold_after=2, times=None)  # then silent until released
    # (its timeout is the SDK's wait for each read: longer than the node's look at its streams, 1 s)
    impatient = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=node.secret, max_retries=0, timeout=STALL + 1.1)
    try:
        for n in range(1, FAILURES + 1):
            stream = await impatient.chat.completions.create(model=model, stream=True, messages=HI)
            with pytest.raises(openai.APITimeoutError):
                async for _chunk in stream:
                    pass
            await stream.close()
            await wait_until(lambda: hold.dropped == n, timeout=5)  # noqa: B023 (waited on in this iteration)
        row = await _health_once(api, name, lambda r: r["breaker"] == "open")
        assert (row["breaker"], row["open_here"]) == ("open", True), row
        await wait_until(lambda: _idle(h), timeout=5)
        writer = h.node.request_log
        assert writer is not None
        assert await writer.flush_all(10)
        rows = h.sql("SELECT error_code, error_message FROM request_log WHERE model = %s", model)
        assert len(rows) == FAILURES, rows
        for code, message in rows:
            assert code == "client_disconnected", rows
            assert message.startswith("the client went away mid-stream after "), message
            counted = rf", the upstream silent for \d+ s: counted as deployment {name} failing$"
            assert re.search(counted, message), message
        stalls = [r.getMessage() for r in caplog.records if f"upstream deployment {name} stalled" in r.getMessage()]
        assert len(stalls) == FAILURES, stalls
    finally:
        hold.release.set()
        h.upstream.clear_faults()


async def test_the_silence_that_counts_as_a_stall_is_the_setting(node: Node) -> None:
    """Two streams fall silent after their first frames and their clients give up: the one whose
    upstream was silent for less than SHIELDES_STREAM_STALL_SECONDS when its client left counts as a
    success of the deployment (it was answering), the one silent for longer as its failure."""
    h, api = node.h, node.api
    model, name = "model-slow-thinker", "slow-thinker"
    await h.admin(AddProvider(name, "openai", h.upstream.url, REF, (model,)))
    await h.sync()
    hold = h.upstream.inject("/v1/chat/completions", hold_after=2, times=None)  # then silent until released
    try:
        for n, patience in ((1, 0.3), (2, STALL + 1.1)):  # silent for less, then more, than STALL
            client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=node.secret, max_retries=0,
                                        timeout=patience)
            stream = await client.chat.completions.create(model=model, stream=True, messages=HI)
            with pytest.raises(openai.APITimeoutError):
                async for _chunk in stream:
                    pass
            await stream.close()
            await wait_until(lambda: hold.dropped == n, timeout=5)  # noqa: B023 (waited on in this iteration)
            row = await _health_once(api, name, lambda r: r["samples"] == n)  # noqa: B023 (awaited here)
            assert row["samples"] == n, row
            # the first: no failure; the second: a failure
            assert (row["error_rate"] > 0) is (n == 2), row
        writer = h.node.request_log
        assert writer is not None
        assert await writer.flush_all(10)
        rows = h.sql("SELECT error_message FROM request_log WHERE model = %s ORDER BY started_at", model)
        assert [m.endswith(f"counted as deployment {name} failing") for (m,) in rows] == [False, True], rows
    finally:
        hold.release.set()
        h.upstream.clear_faults()


async def test_a_stream_ended_on_the_requests_own_fault_counts_nothing_against_the_deployment(node: Node) -> None:
    """An upstream that refuses the request after its stream opened (an invalid request, a prompt
    too long) did its job: as a 400 before the stream, it is no failure of the deployment."""
    h, client, api = node.h, node.client, node.api
    model, name = "model-refused", "refusing"
    await h.admin(AddProvider(name, "openai", h.upstream.url, REF, (model,)))
    await h.sync()
    h.upstream.inject("/v1/chat/completions", error_after=1, stream_error="invalid_request_error",
                      message="this request is not allowed", times=FAILURES + 1)
    try:
        for _ in range(FAILURES + 1):
            assert (await _stream(client, model)).startswith("!")
        await wait_until(lambda: _idle(h), timeout=5)  # (each stream's end noted)
        row = await _health(api, name)
        assert (row["samples"], row["breaker"], row["error_rate"]) == (0, "closed", None), row
    finally:
        h.upstream.clear_faults()


def _idle(h: Harness) -> bool:
    """The node has no request in hand (each stream's end noted, its outcome counted or not)."""
    assert h.node.gateway is not None
    return bool(h.node.gateway.metrics.in_flight.collect()[0].samples[0].value == 0)


async def test_a_client_gone_before_its_stream_was_relayed_counts_nothing_against_the_deployment(
        node: Node) -> None:
    """The client leaves while the upstream takes its time to answer; the upstream's stream then
    opens, and the node finds nobody to relay it to: neither the upstream's failure nor its success."""
    h, api = node.h, node.api
    model, name = "model-early-leaver", "early-leaver"
    await h.admin(AddProvider(name, "openai", h.upstream.url, REF, (model,)))
    await h.sync()
    h.upstream.inject("/v1/chat/completions", delay=1.0, times=None)
    try:
        for _ in range(FAILURES + 1):
            before = len(h.upstream.requests)
            with pytest.raises(TimeoutError):
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.3)) as http:
                    await http.post(f"{h.base}/v1/chat/completions", headers={"Authorization": "Bearer " + node.secret},
                                    json={"model": model, "stream": True, "messages": HI})
            await wait_until(lambda: len(h.upstream.requests) > before)  # noqa: B023 (waited on in this iteration)
            await wait_until(lambda: _idle(h), timeout=5)
        row = await _health(api, name)
        assert (row["samples"], row["breaker"], row["error_rate"]) == (0, "closed", None), row
    finally:
        h.upstream.clear_faults()


async def test_a_stream_whose_conversation_went_away_counts_nothing_against_the_deployment(
        node: Node, caplog: pytest.LogCaptureFixture) -> None:
    """The answer is complete but the conversation it belongs to was deleted meanwhile: the client
    gets the error instead of the terminal event, and the deployment, which answered in full, is
    not failed for it; its request-log row and the node's log say what happened, not that the
    upstream failed."""
    h, client, api = node.h, node.client, node.api
    caplog.set_level(logging.INFO)
    model, name = "model-conversation-gone", "conversation-gone"
    await h.admin(AddProvider(name, "openai", h.upstream.url, REF, (model,)))
    await h.sync()
    try:
        for _ in range(FAILURES + 1):
            conv = await client.conversations.create()
            hold = h.upstream.inject("/v1/chat/completions", hold_after=2)  # then silent until released
            stream = await client.responses.create(model=model, input="hello there", conversation=conv.id,
                                                   stream=True)
            events = stream.__aiter__()
            await events.__anext__()
            await wait_until(lambda: hold.holding == 1)  # noqa: B023 (waited on in this iteration)
            await client.conversations.delete(conv.id)
            await h.sync()
            hold.release.set()
            with pytest.raises(openai.APIError, match="could not be added to conversation"):
                async for _event in events:
                    pass
            await wait_until(lambda: _idle(h), timeout=5)
        row = await _health(api, name)
        assert (row["samples"], row["breaker"], row["error_rate"]) == (0, "closed", None), row
        writer = h.node.request_log
        assert writer is not None
        assert await writer.flush_all(10)
        rows = h.sql("SELECT error_code, error_message FROM request_log WHERE model = %s AND route = '/v1/responses'",
                     model)
        assert len(rows) == FAILURES + 1, rows
        for code, message in rows:
            assert code == "conversation_deleted", rows
            assert message.startswith(f"the conversation was deleted mid-stream; deployment {name} answered in full")
            assert "nothing wrong upstream" in message and "failed" not in message, message
        lines = [r.getMessage() for r in caplog.records]
        assert not [x for x in lines if f"upstream deployment {name} failed" in x], lines
        assert sum(x.startswith("the conversation was deleted mid-stream") for x in lines) == FAILURES + 1, lines
        gateway = h.node.gateway
        assert gateway is not None
        samples = {(s.labels.get("provider"), s.labels.get("cause")): s.value
                   for m in gateway.metrics.stream_drops.collect() for s in m.samples if s.name.endswith("_total")}
        assert not [k for k in samples if k[0] == name], samples  # neither the upstream's drop nor the client's
    finally:
        h.upstream.clear_faults()
