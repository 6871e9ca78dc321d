"""A native deployment's Responses stream, stored (`store` left out, the API's default) as the
gateway bench sends it: what GET /v1/responses/{id} answers on the node that served it (its memory)
is byte for byte the JSON of the response the client got in the stream's `response.completed`, on
another node (Postgres) the same JSON in jsonb's key order (every value's text the same), and a
continuation by previous_response_id on the other node sends the upstream that turn's input and
output items. An equivalence test: it pins what users see of a stored stream, so a change to how
the response is kept or written cannot alter it unseen."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from shieldes.node import Node
from shieldes.projections.shared_commands import UpdateProvider
from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import UPSTREAM_KEY, harness
from tests.integration.test_responses_store import second_node

# non-ASCII text (the fake upstream's json.dumps writes it as \u00e9) and a reply long enough for
# several delta events
REPLY = "Héllo from the fake upstream, stored as the client saw it"


async def _post(base: str, secret: str, body: dict[str, Any]) -> bytes:
    async with aiohttp.ClientSession() as s, s.post(base + "/v1/responses", json=body,
                                                    headers={"Authorization": f"Bearer {secret}"}) as r:
        assert r.status == 200, await r.text()
        return await r.read()


async def _get(base: str, secret: str, response_id: str) -> bytes:
    async with aiohttp.ClientSession() as s, s.get(f"{base}/v1/responses/{response_id}",
                                                   headers={"Authorization": f"Bearer {secret}"}) as r:
        assert r.status == 200, await r.text()
        return await r.read()


def said(text: str) -> dict[str, Any]:
    """A user's input item as the API's form writes it (stored and sent upstream in that form)."""
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def completed(stream: bytes) -> dict[str, Any]:
    """The response object of the stream's last event (its `response.completed`)."""
    name, data = [e for e in stream.split(b"\n\n") if e][-1].split(b"\ndata: ")
    assert name == b"event: response.completed"
    response: dict[str, Any] = orjson.loads(data)["response"]
    return response


async def _stored_twice(serving: tuple[str, Node], other: tuple[str, Node], secret: str,
                        body: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """One stored stream on `serving` (a node's base URL and the node): its completed response, and
    GET's body on that node (from its memory), checked to be what GET on the other node (from
    Postgres) answers but for jsonb's order of keys (sorted, each value's text compared: 1 and 1.0
    differ)."""
    sent = completed(await _post(serving[0], secret, body))
    here = await _get(serving[0], secret, sent["id"])
    assert serving[1].responses is not None and await serving[1].responses.flush()
    there = await _get(other[0], secret, sent["id"])
    assert orjson.dumps(orjson.loads(there), option=orjson.OPT_SORT_KEYS) == \
        orjson.dumps(orjson.loads(here), option=orjson.OPT_SORT_KEYS)
    return sent, here


async def test_a_stored_streams_json_is_the_streams_response_on_any_node(database_url: str) -> None:
    up = FakeUpstream(completion_tokens=12, api_key=UPSTREAM_KEY, models=("gpt-4o",), reply=REPLY)
    async with harness(database_url, upstream=up, responses_read_wait=0.5) as h, second_node(h) as b:
        await h.admin(UpdateProvider("openai", responses="native"))
        secret = await h.create_key("app")
        await h.sync()
        assert b.poller is not None and await b.poller.poll_once()

        a_node, b_node = (h.base, h.node), (f"http://127.0.0.1:{b.port}", b)
        # as the gateway bench sends it: `store` left out
        body = {"model": "gpt-4o", "input": "Say hello to the benchmark please", "stream": True}
        first, got = await _stored_twice(a_node, b_node, secret, body)
        assert got == orjson.dumps(first)
        assert first["store"] is True and first["previous_response_id"] is None and REPLY in got.decode()

        # a continuation on the other node: the upstream gets the first turn's input and output items
        again = {**body, "input": [{"role": "user", "content": "and again"}], "previous_response_id": first["id"]}
        second, got = await _stored_twice(b_node, a_node, secret, again)
        assert got == orjson.dumps(second) and second["previous_response_id"] == first["id"]
        sent = h.upstream.last("/v1/responses").body["input"]
        assert sent == [said("Say hello to the benchmark please"), *first["output"], said("and again")]

        # and a third on the first node, which reads the second from Postgres
        third = completed(await _post(h.base, secret, {**body, "input": "once more",
                                                       "previous_response_id": second["id"]}))
        assert third["previous_response_id"] == second["id"]
        assert h.upstream.last("/v1/responses").body["input"] == [
            *sent, *second["output"], said("once more")]
        # (from memory, or from Postgres once the writer wrote it and let it go: jsonb's order of keys)
        got = await _get(h.base, secret, third["id"])
        assert orjson.dumps(orjson.loads(got), option=orjson.OPT_SORT_KEYS) == \
            orjson.dumps(third, option=orjson.OPT_SORT_KEYS)
