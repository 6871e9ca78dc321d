"""OpenAI's error object names the request field at fault in `param` (`messages`,
`stream_options.include_usage`, `temperature`): the openai SDK's `BadRequestError.param`, and
`APIError.param` of an error chunk that ends a stream. Here every refusal of one field names it,
whether the node or an OpenAI-speaking upstream refused it; a refusal of nothing in particular
keeps `param: null`."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import pytest

from tests.integration.gateway_harness import harness

MSGS: Any = [{"role": "user", "content": "hi"}]


async def test_a_refused_field_is_named_in_param(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        chat = client.chat.completions.create
        refusals: list[tuple[Any, str]] = [
            (lambda: chat(model="gpt-4o", messages=[]), "messages"),
            (lambda: chat(model="gpt-4o", messages="hi"), "messages"),
            (lambda: chat(model="gpt-4o", messages=[{"content": "hi"}]), "messages[0].role"),
            (lambda: chat(model="gpt-4o", messages=["hi"]), "messages[0]"),
            (lambda: chat(model="gpt-4o", messages=MSGS, stream=True,
                          stream_options={"include_usage": "yes"}), "stream_options.include_usage"),
            (lambda: chat(model="gpt-4o", messages=MSGS, n=0), "n"),
            (lambda: chat(model="gpt-4o", messages=MSGS, max_tokens=0), "max_tokens"),
            (lambda: chat(model="gpt-4o", messages=MSGS, max_completion_tokens="many"), "max_completion_tokens"),
            (lambda: chat(model="", messages=MSGS), "model"),
            (lambda: chat(model="gpt-4o", messages=MSGS, stream="yes"), "stream"),
            (lambda: client.completions.create(model="gpt-4o", prompt=None), "prompt"),
            (lambda: client.embeddings.create(model="text-embedding-3-small", input=""), "input"),
        ]
        for call, param in refusals:
            with pytest.raises(openai.BadRequestError) as err:
                await call()
            assert err.value.param == param, (param, err.value.body)
        assert h.upstream.requests_to("/v1/chat/completions") == []
        made = await client.responses.create(model="gpt-4o", input="hi")
        for query, param in (({"limit": 0}, "limit"), ({"order": "sideways"}, "order"), ({"after": "nope"}, "after")):
            with pytest.raises(openai.BadRequestError) as err:
                await client.responses.input_items.list(made.id, extra_query=query)
            assert err.value.param == param, err.value.body
        async with aiohttp.ClientSession() as s:
            headers = {"Authorization": f"Bearer {secret}"}
            # a refusal of no one field: param is there, and null
            async with s.post(h.base + "/v1/chat/completions", data=b"[1]", headers=headers) as r:
                error = (await r.json())["error"]
                assert r.status == 400 and "param" in error and error["param"] is None, error
        await client.close()


async def test_an_openai_upstreams_param_reaches_the_client(database_url: str) -> None:
    """The node does not check `temperature`: OpenAI does, and names it; the client sees its name."""
    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        h.upstream.inject("/v1/chat/completions", status=400, param="temperature",
                          message="Invalid type for 'temperature': expected a decimal, but got a string instead.")
        with pytest.raises(openai.BadRequestError) as err:
            await client.chat.completions.create(model="gpt-4o", messages=MSGS, temperature="hot")  # type: ignore[arg-type]
        assert err.value.param == "temperature" and "temperature" in err.value.message
        # an upstream error naming no field: null
        h.upstream.inject("/v1/chat/completions", status=400, message="something else")
        with pytest.raises(openai.BadRequestError) as err:
            await client.chat.completions.create(model="gpt-4o", messages=MSGS)
        assert err.value.param is None and "param" in err.value.body  # type: ignore[operator]
        await client.close()


async def test_a_stream_error_chunk_has_openais_param(database_url: str) -> None:
    """A chat stream that breaks ends with an error chunk in OpenAI's shape: `param` is in it,
    the field the upstream named, or null."""
    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        for named in ("tools[0].function.parameters", None):
            h.upstream.inject("/v1/chat/completions", error_after=2, stream_error="invalid_request_error",
                              message="the tool's schema is invalid", param=named)
            stream = await client.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True)
            with pytest.raises(openai.APIError) as err:
                async for _ in stream:
                    pass
            assert err.value.param == named and "param" in err.value.body, err.value.body  # type: ignore[operator]
        await client.close()


async def test_the_admin_api_names_the_field_it_refuses(database_url: str) -> None:
    """The admin API answers in OpenAI's error shape: its refusals of a field or query parameter
    name it in `param` as the model routes' do."""
    token = "boot-" + "admin-token-for-param-tests"
    async with harness(database_url, admin_token=token) as h, aiohttp.ClientSession() as s:
        auth = {"Authorization": f"Bearer {token}"}
        for body, param in (({}, "name"), ({"name": "k", "rpm": "many"}, "rpm"), ({"name": "k", "colour": 1}, "colour"),
                            ({"name": "k", "budget_period": "daily"}, "budget"),
                            ({"name": "k", "models": ["a", 1]}, "models")):
            async with s.post(h.base + "/admin/v1/keys", json=body, headers=auth) as r:
                error = (await r.json())["error"]
            assert r.status == 400 and error["param"] == param, (body, error)
        for query, param in (("limit=lots", "limit"), ("limit=0", "limit"), ("status=sleeping", "status"),
                             ("colour=red", "colour")):
            async with s.get(h.base + "/admin/v1/keys?" + query, headers=auth) as r:
                error = (await r.json())["error"]
            assert r.status == 400 and error["param"] == param, (query, error)
