"""The HTTP contract through the official SDKs against a real node, real Postgres, fake upstream."""

from __future__ import annotations

import aiohttp
import anthropic
import openai
import pytest

from shieldes.projections.shared_commands import SetPricing
from tests.fake_upstream import count_words
from tests.integration.gateway_harness import harness

GPT4O = (2500, 10000)  # shipped default price of gpt-4o in nUSD per token


def oai(base: str, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base + "/v1", api_key=key, max_retries=0)


async def test_chat_stream_embeddings_models_accounted_exactly(database_url: str) -> None:
    async with harness(database_url) as h:
        await h.admin(SetPricing("gpt-4o-mini", 1.0, 3.0))  # overrides the shipped default
        secret = await h.create_key("app", models=("gpt-4o", "gpt-4o-mini", "text-embedding-3-small"))
        await h.sync()
        client = oai(h.base, secret)
        messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say hello to me"}]

        chat = await client.chat.completions.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
        assert chat.choices[0].message.content == "Hello from the fake upstream"
        assert chat.usage is not None and chat.usage.prompt_tokens == count_words(messages) == 6
        assert h.upstream.last("/v1/chat/completions").headers["authorization"] == "Bearer sk-upstream-test"

        stream = await client.chat.completions.create(
            model="openai/gpt-4o-mini", messages=messages, stream=True
        )
        chunks = [c async for c in stream]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "Hello from the fake upstream"
        assert all(c.usage is None for c in chunks)  # the client did not ask for usage
        assert h.upstream.last("/v1/chat/completions").body["stream_options"] == {"include_usage": True}

        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        usage_chunks = [c.usage for c in [c async for c in stream] if c.usage is not None]
        assert usage_chunks and usage_chunks[-1].completion_tokens == 5

        emb = await client.embeddings.create(model="text-embedding-3-small", input=["one two three"])
        assert len(emb.data[0].embedding) == 8 and emb.usage.prompt_tokens == 3

        async with aiohttp.ClientSession() as s, s.get(h.base + "/metrics") as r:
            metrics = await r.text()
        assert 'shieldes_tokens_total{model="gpt-4o",provider="openai",type="prompt"} 6.0' in metrics

        models = await client.models.list()
        assert sorted(m.id for m in models.data) == ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"]

        await h.flush()
        expected_cost = (6 * GPT4O[0] + 5 * GPT4O[1]) + 2 * (6 * 1000 + 5 * 3000) + 3 * 20
        assert h.usage_totals() == {"app": (4, 6 * 3 + 3, 15, expected_cost)}
        by_model: dict[tuple[str, str], list[int]] = {}
        for r in h.delta_rows():  # one row per flush: sum them
            acc = by_model.setdefault((r[1], r[2]), [0, 0, 0, 0])
            for i in range(4):
                acc[i] += r[3 + i]
        assert by_model[("openai", "gpt-4o")] == [1, 6, 5, 6 * 2500 + 5 * 10000]
        assert by_model[("openai", "gpt-4o-mini")] == [2, 12, 10, 2 * (6 * 1000 + 5 * 3000)]


async def test_anthropic_sdk_messages_json_and_stream(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("claude-app")
        await h.sync()
        client = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        msg = await client.messages.create(
            model="claude-3-5-haiku-latest",
            max_tokens=100,
            system="be brief",
            messages=[{"role": "user", "content": "hi there"}],
        )
        assert msg.content[0].type == "text" and msg.content[0].text == "Hello from the fake upstream"
        assert (msg.usage.input_tokens, msg.usage.output_tokens) == (4, 5)

        async with client.messages.stream(
            model="gpt-4o", max_tokens=3, messages=[{"role": "user", "content": "stream it"}]
        ) as stream:
            text = "".join([t async for t in stream.text_stream])
            final = await stream.get_final_message()
        assert text == "Hello from the"
        assert final.stop_reason == "max_tokens" and final.usage.output_tokens == 3

        # and the OpenAI SDK streaming from the Anthropic deployment
        chat = oai(h.base, secret)
        chunks = await chat.chat.completions.create(
            model="claude-3-5-haiku-latest", messages=[{"role": "user", "content": "hi there"}], stream=True
        )
        assert "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices]) == (
            "Hello from the fake upstream"
        )

        await h.flush()
        cost = (4 * 800 + 5 * 4000) + (2 * 2500 + 3 * 10000) + (2 * 800 + 5 * 4000)
        assert h.usage_totals() == {"claude-app": (3, 8, 13, cost)}


async def test_errors_are_openai_shaped_with_request_ids(database_url: str) -> None:
    async with harness(database_url, max_body_bytes=4096) as h:
        secret = await h.create_key("narrow", models=("gpt-4o-mini",))
        await h.sync()
        client = oai(h.base, secret)
        msgs = [{"role": "user", "content": "x"}]
        with pytest.raises(openai.NotFoundError) as nf:
            await client.chat.completions.create(model="no-such-model", messages=msgs)  # type: ignore[arg-type]
        assert nf.value.code == "model_not_found" and "GET /v1/models" in nf.value.message
        with pytest.raises(openai.PermissionDeniedError):
            await client.chat.completions.create(model="gpt-4o", messages=msgs)  # type: ignore[arg-type]
        with pytest.raises(openai.AuthenticationError):
            await oai(h.base, "sk-wrong").models.list()
        expired = await h.create_key("expired", expires_at=1.0)
        await h.sync()
        with pytest.raises(openai.AuthenticationError) as exp:
            await oai(h.base, expired).models.list()
        assert "expired" in exp.value.message
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(model="gpt-4o-mini", messages=[])
        assert bad.value.code == "invalid_request"
        big = [{"role": "user", "content": "x" * 5000}]
        with pytest.raises(openai.APIStatusError) as too_big:
            await client.chat.completions.create(model="gpt-4o-mini", messages=big)  # type: ignore[arg-type]
        assert too_big.value.status_code == 413

        async with aiohttp.ClientSession() as s:
            auth = {"Authorization": f"Bearer {secret}", "x-request-id": "req-abc.123"}
            async with s.post(h.base + "/v1/chat/completions", data=b"{not json", headers=auth) as r:
                assert r.status == 400 and r.headers["x-request-id"] == "req-abc.123"
                body = await r.json()
                assert body["error"]["type"] == "invalid_request_error" and "JSON" in body["error"]["message"]
            async with s.get(h.base + "/nope", headers={"x-request-id": "bad id\u00e9"}) as r:
                assert r.status == 404 and r.headers["x-request-id"] != "bad id"
                assert (await r.json())["error"]["code"] == "not_found"
            # an endpoint the gateway lacks is named back, with what it serves instead
            async with s.post(h.base + "/v1/messages/batches", headers={"x-api-key": secret}, json={}) as r:
                error = (await r.json())["error"]
                assert r.status == 404 and error["type"] == "not_found_error"
                assert "POST /v1/messages/batches" in error["message"] and "/v1/messages and" in error["message"]
                assert ":embedContent" in error["message"]  # every route served is named
            async with s.post(h.base + "/v1/responses/resp_1", headers=auth, json={}) as r:
                error = (await r.json())["error"]
                assert r.status == 405 and error["code"] == "method_not_allowed"
                assert error["message"] == "POST /v1/responses/resp_1 is not served: this path takes DELETE, GET, HEAD"
            async with s.get(h.base + "/health") as r:
                assert r.status == 200 and r.headers["x-request-id"]
            async with s.get(h.base + "/ready") as r:
                assert r.status == 200 and (await r.json())["status"] == "ready"
            async with s.get(h.base + "/metrics") as r:
                text = await r.text()
                assert (
                    r.status == 200
                    and 'shieldes_requests_total{route="/v1/chat/completions",status="4xx"}' in text
                )


async def test_legacy_completions_json_and_stream(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("legacy")
        await h.sync()
        client = oai(h.base, secret)
        done = await client.completions.create(model="gpt-4o-mini", prompt="one two three", max_tokens=4)
        assert done.choices[0].text == "Hello from the fake" and done.usage is not None
        stream = await client.completions.create(model="gpt-4o-mini", prompt="one two", stream=True)
        text = "".join([c.choices[0].text async for c in stream if c.choices])
        assert text == "Hello from the fake upstream"
        await h.flush()
        assert h.usage_totals()["legacy"] == (2, 5, 9, 5 * 150 + 9 * 600)
