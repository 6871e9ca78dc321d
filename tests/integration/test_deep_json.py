"""JSON nested deeper than the node carries is the client's error, said so: a schema nested over
100 levels (with or without `$ref`s, in JSON Schema's format or Google's) a 400 naming its field
and the bound, on the OpenAI routes to a Gemini deployment and on the Gemini API's routes to any
deployment; function arguments or tool results nested past what the JSON encoder writes (255
levels) a 400 saying so; a body of 100,000 nested `[` or `{` a 400 in the route's shape. Never a
500, a traceback or the encoder's own words ("Recursion limit reached"); nothing reaches an
upstream."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from shieldes.projections.shared_commands import AddProvider
from tests.fake_google import FakeGoogle
from tests.integration.gateway_harness import UPSTREAM_KEY_ENV, Harness, harness

KEY_ENV = "SHIELDES_TEST_GEMINI_KEY"
ASK: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def node(database_url: str) -> AsyncIterator[tuple[Harness, FakeGoogle, str]]:
    async with FakeGoogle() as fake:
        os.environ[KEY_ENV] = fake.api_key
        async with harness(database_url, providers=False, upstream_retries=0) as h:
            await h.admin(AddProvider("gem", "gemini", fake.url + "/v1beta", "env:" + KEY_ENV, ("gemini-2.5-flash",)))
            await h.admin(AddProvider("openai", "openai", h.upstream.url, "env:" + UPSTREAM_KEY_ENV, ("gpt-4o-mini",)))
            secret = await h.create_key("app")
            await h.sync()
            yield h, fake, secret


def nested(depth: int, via: str) -> dict[str, Any]:
    """A schema `depth` subschemas deep, without a $ref."""
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}} if via == "properties" else \
            {"type": "array", "items": schema}
    return schema


def deep_value(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


def headers(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}", "x-goog-api-key": secret, "x-api-key": secret,
            "Content-Type": "application/json"}


def no_encoder_words(text: str) -> None:
    assert "Recursion" not in text and "Traceback" not in text and "internal error" not in text, text


async def test_a_schema_nested_deeper_than_100_levels_is_refused_naming_its_field(
        node: tuple[Harness, FakeGoogle, str]) -> None:
    h, fake, secret = node
    upstream_before, google_before = len(h.upstream.requests), len(fake.requests)
    client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
    # OpenAI's chat to a Gemini deployment: a schema without $ref, and a value nested in a keyword
    value_deep = {"type": "object", "properties": {"a": {"type": "array", "default": deep_value(400)}}}
    for params in (nested(400, "properties"), nested(400, "items"), value_deep):
        tool: Any = {"type": "function", "function": {"name": "f", "parameters": params}}
        with pytest.raises(openai.BadRequestError) as err:
            await client.chat.completions.create(model="gemini-2.5-flash", messages=ASK, tools=[tool])
        assert err.value.param == "tools[0].function.parameters"
        assert "tools[0].function.parameters: the schema nests over 100 levels deep" in err.value.message
        assert "send a flatter schema" in err.value.message
        no_encoder_words(err.value.message)
    # the Gemini API's routes, to a Gemini deployment (the request passes through) and to another
    async with aiohttp.ClientSession() as session:
        for model in ("gemini-2.5-flash", "gpt-4o-mini"):
            for verb in ("generateContent", "streamGenerateContent", "countTokens"):
                for field, body in (
                        ("tools[0].functionDeclarations[0].parameters",
                         {"tools": [{"functionDeclarations": [{"name": "f", "parameters": nested(300, "items")}]}]}),
                        ("tools[0].functionDeclarations[0].parametersJsonSchema",
                         {"tools": [{"function_declarations": [
                             {"name": "f", "parameters_json_schema": nested(300, "properties")}]}]}),
                        ("generationConfig.responseSchema",
                         {"generationConfig": {"responseMimeType": "application/json",
                                               "responseSchema": nested(150, "properties")}})):
                    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], **body}
                    async with session.post(f"{h.base}/v1beta/models/{model}:{verb}", data=json.dumps(body),
                                            headers=headers(secret)) as resp:
                        text = await resp.text()
                        assert resp.status == 400, (model, verb, field, text[:300])
                    error = json.loads(text)["error"]
                    assert error["status"] == "INVALID_ARGUMENT"
                    assert f"{field}: the schema nests over 100 levels deep" in error["message"], error["message"]
                    no_encoder_words(error["message"])
    assert (len(h.upstream.requests), len(fake.requests)) == (upstream_before, google_before), "refused at once"


async def test_arguments_nested_past_the_encoder_are_a_clear_400(node: tuple[Harness, FakeGoogle, str]) -> None:
    """Function arguments and results are the client's own JSON, carried as they are, but a
    translation writes them again: past the encoder's 255 levels that is a 400 saying so (it was a
    500 on the Gemini API's routes, the encoder's words on the OpenAI routes)."""
    h, _, secret = node
    client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
    deep = json.dumps(deep_value(300))
    history: Any = [*ASK, {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": deep}}]},
        {"role": "tool", "tool_call_id": "c1", "content": deep}]
    with pytest.raises(openai.BadRequestError) as err:
        await client.chat.completions.create(model="gemini-2.5-flash", messages=history)
    assert "nests too deeply to be carried on" in err.value.message and "send it nested less deeply" in \
        err.value.message
    no_encoder_words(err.value.message)
    contents = [{"role": "user", "parts": [{"text": "hi"}]},
                {"role": "model", "parts": [{"functionCall": {"name": "f", "args": deep_value(300)}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": deep_value(300)}}]}]
    async with aiohttp.ClientSession() as session:
        for model, verb in (("gpt-4o-mini", "generateContent"), ("gpt-4o-mini", "streamGenerateContent"),
                            ("gpt-4o-mini", "countTokens"), ("gemini-2.5-flash", "countTokens")):
            async with session.post(f"{h.base}/v1beta/models/{model}:{verb}", data=json.dumps({"contents": contents}),
                                    headers=headers(secret)) as resp:
                text = await resp.text()
                assert resp.status == 400, (model, verb, text[:300])
            message = json.loads(text)["error"]["message"]
            assert "nests too deeply to be carried on" in message
            no_encoder_words(message)


ROUTES = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/messages", "/v1/messages/count_tokens",
          "/v1/responses", "/v1/responses/input_tokens", "/v1/conversations", "/v1/moderations",
          "/v1/images/generations", "/v1/audio/speech", "/v1beta/models/gemini-2.5-flash:generateContent",
          "/v1beta/models/gemini-2.5-flash:countTokens"]


async def test_a_body_nested_100000_levels_is_a_clear_400_on_every_route(node: tuple[Harness, FakeGoogle, str]) -> None:
    h, _, secret = node
    async with aiohttp.ClientSession() as session:
        for path in ROUTES:
            for body in (b"[" * 100_000, b'{"a":' * 100_000, b'{"model": "gpt-4o-mini", "x": ' + b"[" * 100_000):
                async with session.post(h.base + path, data=body, headers=headers(secret)) as resp:
                    text = await resp.text()
                    assert resp.status == 400, (path, body[:12], text[:300])
                data = json.loads(text)
                message = data["error"]["message"]
                if path.startswith("/v1/messages"):
                    assert data["type"] == "error"  # Anthropic's shape
                elif path.startswith("/v1beta"):
                    assert data["error"]["status"] == "INVALID_ARGUMENT"  # Google's
                else:
                    assert data["error"]["type"] == "invalid_request_error"
                assert "JSON" in message, (path, message)
                assert "depth limit exceeded" not in message and "column" not in message, (path, message)
                no_encoder_words(message)
