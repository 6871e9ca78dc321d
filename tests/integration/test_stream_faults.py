"""Streams whose upstream misbehaves mid-way always end: the client gets an error event (scrubbed of
the provider key, like the JSON path), and the request's budget reservation is settled."""

from __future__ import annotations

import asyncio

import anthropic
import openai
import pytest

from tests.integration.gateway_harness import UPSTREAM_KEY, Harness, harness

MSGS = [{"role": "user", "content": "hello there"}]


def nothing_reserved(h: Harness) -> bool:
    assert h.node.meter is not None
    return all(v == 0 for v in h.node.meter.reserved().values())


async def test_odd_finish_reason_ends_the_messages_stream_with_an_error_event(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("odd", budget_usd=10.0)
        await h.sync()
        h.upstream.inject("/v1/chat/completions", finish_reason={"not": "a string"})
        client = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)

        async def consume() -> None:
            async with client.messages.stream(model="gpt-4o", max_tokens=50, messages=MSGS) as stream:  # type: ignore[arg-type]
                async for _ in stream:
                    pass

        with pytest.raises(anthropic.APIError) as err:
            await asyncio.wait_for(consume(), 10)  # it used to hang here forever
        assert "retry the request" in str(err.value)
        await client.close()
        assert nothing_reserved(h)


@pytest.mark.parametrize("route", ["chat", "messages"])
async def test_mid_stream_error_frames_are_scrubbed_of_the_provider_key(database_url: str, route: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("echo", budget_usd=10.0)
        await h.sync()
        h.upstream.inject("/v1/chat/completions", error_after=2,
                          message=f"Incorrect API key provided: {UPSTREAM_KEY}. Check it.")
        text = ""
        if route == "chat":
            oai = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
            with pytest.raises(openai.APIError) as err:
                stream = await oai.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True)  # type: ignore[arg-type]
                async for _ in stream:
                    pass
            text = str(err.value) + repr(err.value.body)
            await oai.close()
        else:
            ant = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
            with pytest.raises(anthropic.APIError) as aerr:
                async with ant.messages.stream(model="gpt-4o", max_tokens=50, messages=MSGS) as s:  # type: ignore[arg-type]
                    async for _ in s:
                        pass
            text = str(aerr.value) + repr(aerr.value.body)
            await ant.close()
        assert UPSTREAM_KEY not in text
        assert "[redacted]" in text
        assert nothing_reserved(h)
