"""Streams whose upstream misbehaves mid-way always end: the client gets an error event (scrubbed of
the provider key, like the JSON path), and the request's budget reservation is settled."""

from __future__ import annotations

import asyncio
from typing import Any

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


CLAUDE = "claude-3-5-haiku-latest"


@pytest.mark.parametrize(("route", "model", "upstream_error", "named"), [
    ("chat", "gpt-4o", "rate_limit_error", ("rate_limit_error", "rate_limit_exceeded")),
    ("chat", CLAUDE, "overloaded_error", ("service_unavailable_error", "server_is_overloaded")),
    ("messages", "gpt-4o", "server_is_overloaded", ("overloaded_error", None)),
    ("messages", "gpt-4o", "invalid_request_error", ("invalid_request_error", None)),
    ("responses", CLAUDE, "rate_limit_error", (None, "rate_limit_exceeded")),
    ("responses", "gpt-4o", "overloaded_error", (None, "server_is_overloaded")),
    ("chat", "gpt-4o", "server_error", ("upstream_error", "upstream_error")),
])
async def test_a_mid_stream_error_reaches_the_client_named_as_the_upstream_named_it(
        database_url: str, route: str, model: str, upstream_error: str, named: tuple[str | None, str | None]) -> None:
    """An upstream overloaded or rate limited after its stream opened used to reach every client as
    a generic server error (`api_error`), which Claude Code and Codex do not treat as the upstream
    being busy; each API's own name for it now says so (Anthropic's error type, a chat error
    chunk's type and code, `response.failed`'s code)."""
    async with harness(database_url) as h:
        secret = await h.create_key("busy")
        await h.sync()
        path = "/v1/messages" if model == CLAUDE else "/v1/chat/completions"
        h.upstream.inject(path, error_after=2, stream_error=upstream_error, message="try later")
        if route == "messages":
            ant = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
            with pytest.raises(anthropic.APIStatusError) as aerr:
                async with ant.messages.stream(model=model, max_tokens=50, messages=MSGS) as s:  # type: ignore[arg-type]
                    async for _ in s:
                        pass
            body: Any = aerr.value.body
            assert body["error"]["type"] == named[0] and "try later" in body["error"]["message"]
            await ant.close()
            return
        oai = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        with pytest.raises(openai.APIError) as err:
            if route == "chat":
                chat = await oai.chat.completions.create(model=model, messages=MSGS, stream=True)  # type: ignore[arg-type]
                async for _ in chat:
                    pass
            else:
                events = await oai.responses.create(model=model, input="hello there", stream=True)
                async for _ in events:
                    pass
        body = err.value.body
        assert isinstance(body, dict) and "try later" in body["message"]
        if route == "chat":
            assert (body["type"], body["code"]) == named
        else:
            assert body["code"] == named[1]
        await oai.close()
