"""Applications that talked to a LiteLLM proxy or to Bifrost work unchanged once their base URL
names shieldes: the headers they send their virtual key in, the body fields only those gateways
knew, the routes they call."""

from __future__ import annotations

from typing import Any

import aiohttp
import anthropic
import openai

from shieldes.projections.shared_commands import UpdateProvider
from tests.integration.gateway_harness import harness

MESSAGES: list[dict[str, str]] = [{"role": "user", "content": "hi"}]


async def test_litellm_and_bifrost_key_headers_name_the_virtual_key(database_url: str) -> None:
    """`x-litellm-api-key` (with or without `Bearer `) and Bifrost's `x-bf-vk` were refused 401
    "missing API key"; the `Authorization` such an app sends beside them holds a placeholder or
    someone else's token, so they come first, and never reach the upstream."""
    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        for header in ({"x-bf-vk": secret}, {"x-litellm-api-key": f"Bearer {secret}"},
                       {"x-litellm-api-key": secret}):
            client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key="placeholder", max_retries=0,
                                        default_headers=header)
            answer = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
            assert answer.choices[0].message.content
            sent = {k.lower() for k in h.upstream.last("/v1/chat/completions").headers}
            assert "x-bf-vk" not in sent and "x-litellm-api-key" not in sent
            claude = anthropic.AsyncAnthropic(base_url=h.base, api_key="placeholder", max_retries=0,
                                              default_headers=header)
            message = await claude.messages.create(model="claude-3-5-haiku-latest", max_tokens=16,
                                                   messages=MESSAGES)  # type: ignore[arg-type]
            assert message.content
            sent = {k.lower() for k in h.upstream.last("/v1/messages").headers}
            assert "x-bf-vk" not in sent and "x-litellm-api-key" not in sent
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0,
                                    default_headers={"x-bf-vk": "sk-bf-revoked"})
        try:
            await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
            raise AssertionError("a wrong x-bf-vk must not fall back to Authorization")
        except openai.AuthenticationError as e:
            assert "invalid or revoked API key" in str(e)


LITELLM_FIELDS: dict[str, Any] = {
    "metadata": {"tags": ["search"], "trace_id": "t-1", "generation_name": "answer"},
    "tags": ["search", "beta"], "fallbacks": ["claude-3-5-haiku-latest"], "num_retries": 2,
    "mock_response": "hello", "caching": True, "guardrails": ["pii"], "litellm_session_id": "s-1",
    "extra_headers": {"x-team": "search"}, "api_base": "http://elsewhere.invalid", "timeout": 30,
}
NAMED = ("num_retries, mock_response, caching, guardrails, extra_headers, "
         "litellm_session_id, timeout, api_base, metadata")  # (`tags` go to the request log: test_request_tags;
# `fallbacks` are honoured: test_request_fallbacks)


async def test_another_gateways_body_fields_are_left_out_and_named(database_url: str) -> None:
    """An app moved from LiteLLM sends `tags`, `fallbacks`, `num_retries`, its `metadata` with
    lists in it, ...: they went upstream as sent, where OpenAI answers 400 "Unrecognized request
    argument supplied". Now none is forwarded and each is named in x-shieldes-dropped (a
    translation named none of them); OpenAI's own fields (`user`, a `metadata` of strings) go on."""
    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        # (long histories are read from where the key's last one ended: the fields after them too)
        long = [{"role": "user", "content": "word " * 4000}]
        for messages in (MESSAGES, long, [*long, {"role": "assistant", "content": "ok"}, *MESSAGES]):
            for model, path in (("gpt-4o", "/v1/chat/completions"), ("claude-3-5-haiku-latest", "/v1/messages")):
                for stream in (False, True):
                    raw = await client.chat.completions.with_raw_response.create(
                        model=model, messages=messages, stream=stream, user="u-7", extra_body=LITELLM_FIELDS)  # type: ignore[arg-type]
                    assert raw.headers["x-shieldes-dropped"] == NAMED
                    if stream:
                        async for _chunk in raw.parse():  # type: ignore[union-attr]
                            pass
                    sent = h.upstream.last(path).body
                    assert not (set(LITELLM_FIELDS) - {"metadata"}) & set(sent), sent
                    assert sent.get("metadata") in (None, {"user_id": "u-7"})  # (Anthropic's, from `user`)
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, user="u-7",  # type: ignore[arg-type]
                                             metadata={"team": "search"})
        sent = h.upstream.last("/v1/chat/completions").body
        assert sent["metadata"] == {"team": "search"} and sent["user"] == "u-7"
        raw_embed = await client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="hi",
                                                                      extra_body={"tags": ["x"]})
        assert "x-shieldes-dropped" not in raw_embed.headers  # (recorded on the request log)
        assert "tags" not in h.upstream.last("/v1/embeddings").body


async def test_litellms_probe_paths_answer_as_health_and_ready(database_url: str) -> None:
    """Health checks written for LiteLLM (`/health/liveliness`, `/health/liveness`,
    `/health/readiness`) were 404; they answer as /health and /ready, under those routes' labels."""
    async with harness(database_url) as h, aiohttp.ClientSession() as s:
        for path, route in (("/health/liveliness", "/health"), ("/health/liveness", "/health"),
                            ("/health/readiness", "/ready")):
            async with s.get(h.base + path) as r:
                assert r.status == 200, await r.text()
                async with s.get(h.base + route) as same:
                    assert (await r.json()).keys() == (await same.json()).keys()
        async with s.get(h.base + "/metrics") as r:
            assert "/health/" not in await r.text()


async def test_another_gateways_fields_on_messages_are_left_out_and_named(database_url: str) -> None:
    """An Anthropic SDK app moved from LiteLLM sends `tags` or `fallbacks` in its Messages body:
    they went on to Anthropic, which answers 400 "Extra inputs are not permitted"."""
    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        extra = {"tags": ["search"], "fallbacks": ["gpt-4o"], "num_retries": 2}
        for model, path in (("claude-3-5-haiku-latest", "/v1/messages"), ("gpt-4o", "/v1/chat/completions")):
            for stream in (False, True):
                raw = await claude.messages.with_raw_response.create(
                    model=model, max_tokens=16, messages=MESSAGES, stream=stream, extra_body=extra)  # type: ignore[arg-type]
                assert raw.headers["x-shieldes-dropped"] == "num_retries", raw.headers  # (fallbacks: honoured)
                if stream:
                    async for _event in await raw.parse():  # type: ignore[union-attr]
                        pass
                assert not set(extra) & set(h.upstream.last(path).body)


async def test_litellms_metadata_keys_on_messages_are_left_out_and_named(database_url: str) -> None:
    """A LiteLLM app puts its own keys in a Messages request's `metadata` (`tags`, `trace_id`, ...):
    they went on to Anthropic, which takes only `metadata.user_id` and answers 400 "metadata.tags:
    Extra inputs are not permitted". `user_id` goes on; the others are left out and named."""
    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        for metadata, sent in (({"user_id": "u-7", "tags": ["search"], "trace_id": "t-1"}, {"user_id": "u-7"}),
                               ({"tags": ["search"], "trace_id": "t-1"}, None)):
            for stream in (False, True):
                raw = await claude.messages.with_raw_response.create(
                    model="claude-3-5-haiku-latest", max_tokens=16, messages=MESSAGES, stream=stream,  # type: ignore[arg-type]
                    metadata=metadata)  # type: ignore[arg-type]
                assert raw.headers["x-shieldes-dropped"] == "metadata.trace_id"  # (tags: to the request log)
                if stream:
                    async for _event in await raw.parse():  # type: ignore[union-attr]
                        pass
                assert h.upstream.last("/v1/messages").body.get("metadata") == sent
        raw = await claude.messages.with_raw_response.create(
            model="claude-3-5-haiku-latest", max_tokens=16, messages=MESSAGES, metadata={"user_id": "u-7"})  # type: ignore[arg-type]
        assert "x-shieldes-dropped" not in raw.headers
        assert h.upstream.last("/v1/messages").body["metadata"] == {"user_id": "u-7"}


async def test_another_gateways_fields_on_responses_are_left_out_and_named(database_url: str) -> None:
    """An app moved from LiteLLM sends `tags`, `num_retries`, its `metadata` with lists in it on
    /v1/responses too: they went on to OpenAI, which answers 400 "Unknown parameter: 'tags'."
    Now none is forwarded and each is named in x-shieldes-dropped, JSON, stream and background, for
    a short input and an agent's long one (read from where the key's last one ended)."""
    async with harness(database_url) as h:
        await h.admin(UpdateProvider("openai", responses="native"))
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        extra = {"tags": ["search"], "num_retries": 2, "metadata": {"tags": ["search"], "trace_id": "t-1"}}
        long: Any = [{"role": "user", "content": "word " * 5000}]
        longer = [*long, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "hi"}]
        for model, path in (("gpt-4o", "/v1/responses"), ("claude-3-5-haiku-latest", "/v1/messages")):
            for given in ("hi", long, longer):
                for stream in (False, True):
                    raw = await client.responses.with_raw_response.create(
                        model=model, input=given, stream=stream, store=False, extra_body=extra)
                    assert raw.headers["x-shieldes-dropped"] == "num_retries, metadata"  # (tags: to the request log)
                    if stream:
                        async for _event in raw.parse():  # type: ignore[union-attr]
                            pass
                    sent = h.upstream.last(path).body
                    assert not {"tags", "num_retries"} & set(sent) and "metadata" not in sent, sent
        queued = await client.responses.with_raw_response.create(model="gpt-4o", input="hi", background=True,
                                                                 extra_body=extra)
        assert queued.headers["x-shieldes-dropped"] == "num_retries, metadata"
        url = h.base.replace("http://", "ws://") + "/v1/responses"  # the WebSocket: no headers to name them in
        async with aiohttp.ClientSession() as s, s.ws_connect(url, headers={"Authorization": f"Bearer {secret}"}) as ws:
            await ws.send_json({"type": "response.create", "model": "gpt-4o", "input": "hi", **extra})
            while (event := await ws.receive_json(timeout=10))["type"] not in ("response.completed", "error"):
                pass
            assert event["type"] == "response.completed", event
        sent = h.upstream.last("/v1/responses").body
        assert not {"tags", "num_retries", "metadata"} & set(sent), sent
        raw = await client.responses.with_raw_response.create(model="gpt-4o", input="hi", metadata={"team": "search"})
        assert "x-shieldes-dropped" not in raw.headers
        assert h.upstream.last("/v1/responses").body["metadata"] == {"team": "search"}
