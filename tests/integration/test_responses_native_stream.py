"""A native deployment's Responses stream through a real node, read by the openai SDK's stream
helper: the events that need nothing from the gateway reach the client as the upstream's own
bytes; the response events carry the gateway's `previous_response_id`, and the stored response
is the one the client saw."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import orjson

from shieldes.projections.shared_commands import UpdateProvider
from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import UPSTREAM_KEY, Harness, harness

# json.dumps (the fake upstream's encoder) writes é as \u00e9, a re-encoding would write it as UTF-8:
# the bytes tell a forwarded event from a re-encoded one
REPLY = "Héllo from the fake upstream"


async def _raw(h: Harness, secret: str, body: dict[str, Any]) -> bytes:
    async with aiohttp.ClientSession() as s, s.post(h.base + "/v1/responses", json=body,
                                                    headers={"Authorization": f"Bearer {secret}"}) as r:
        assert r.status == 200 and r.content_type == "text/event-stream"
        return await r.read()


async def test_a_native_stream_goes_out_as_the_upstreams_bytes(database_url: str) -> None:
    up = FakeUpstream(completion_tokens=5, api_key=UPSTREAM_KEY, models=("gpt-4o",), reply=REPLY)
    async with harness(database_url, upstream=up) as h:
        await h.admin(UpdateProvider("openai", responses="native"))
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)

        async with client.responses.stream(model="gpt-4o", input="say hello") as stream:
            deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
            first = await stream.get_final_response()
        assert "".join(deltas) == first.output_text == REPLY
        assert first.usage is not None and first.usage.output_tokens == 5
        assert first.previous_response_id is None

        raw = await _raw(h, secret, {"model": "gpt-4o", "input": "and again", "stream": True,
                                     "previous_response_id": first.id})
        sent = [e for e in h.upstream.sent[-1].split(b"\n\n") if e]
        got = [e for e in raw.split(b"\n\n") if e]
        assert len(got) == len(sent) > 10 and b"H\\u00e9llo" in sent[-1]
        for upstream_event, client_event in zip(sent, got, strict=True):
            if b'"response":' not in upstream_event:
                assert client_event == upstream_event  # forwarded, byte for byte
                continue
            name, data = client_event.split(b"\ndata: ")
            assert name == upstream_event.split(b"\n")[0]
            event = orjson.loads(data)
            assert event["response"]["previous_response_id"] == first.id  # the conversation the gateway keeps
            up = orjson.loads(upstream_event.split(b"\ndata: ")[1])
            assert event == {**up, "response": {**up["response"], "previous_response_id": first.id}}
        final = orjson.loads(got[-1].split(b"\ndata: ")[1])["response"]
        stored = await client.responses.retrieve(final["id"])
        assert stored.previous_response_id == first.id and stored.output_text == REPLY

        await h.flush()
        requests, _prompt, completion, _cost = h.usage_totals()["app"]
        assert (requests, completion) == (2, 10)
