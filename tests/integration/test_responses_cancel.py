"""`responses.cancel` (POST /v1/responses/{id}/cancel) answers as OpenAI does: a 404 for an id the
key cannot read, a 400 saying a response not created with background=true cannot be cancelled
(none is here); before, every cancel was the gateway's generic 404 for an unknown route. A
retrieve with stream=true is refused as such (it read as a stream with no events)."""

from __future__ import annotations

import aiohttp
import openai
import pytest

from tests.integration.gateway_harness import harness
from tests.integration.test_responses_api import oai


async def test_cancel_says_not_found_or_not_a_background_response(database_url: str) -> None:
    # resp_nope is polled for responses_read_wait before its 404 (2 s by default): no other node here
    async with harness(database_url, responses_read_wait=0.2) as h:
        secret = await h.create_key("app")
        other = await h.create_key("other")
        await h.sync()
        client = oai(h.base, secret)
        made = await client.responses.create(model="gpt-4o", input="hi")
        with pytest.raises(openai.BadRequestError) as refused:
            await client.responses.cancel(made.id)
        assert refused.value.code == "response_not_cancellable"
        assert "only responses created with background=true" in refused.value.message
        for unknown in (oai(h.base, other).responses.cancel(made.id), client.responses.cancel("resp_nope")):
            with pytest.raises(openai.NotFoundError) as missing:
                await unknown
            assert missing.value.code == "not_found" and "not found" in missing.value.message
        # the path without /v1 too, and the response itself is untouched
        async with aiohttp.ClientSession() as s, s.post(f"{h.base}/responses/{made.id}/cancel",
                                                        headers={"Authorization": f"Bearer {secret}"}) as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "response_not_cancellable"
        assert (await client.responses.retrieve(made.id)).status == "completed"
        # retrieve(stream=True) reads events: a 400 that says why, not a stream with none in it
        with pytest.raises(openai.BadRequestError) as unstreamable:
            await client.responses.retrieve(made.id, stream=True)
        assert unstreamable.value.code == "stream_not_supported"
