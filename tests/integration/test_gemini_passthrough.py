"""The Gemini API surface passed through to `gemini` and `vertex` deployments, on a real node with
Google's google-genai SDK as the client and tests/fake_google.py as the upstream: the client's body
reaches the upstream byte for byte (model in the URL), the upstream's answer bytes reach the client,
usageMetadata is what is billed, a failed deployment fails over to the next one."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from google import genai
from google.genai import types

from shieldes.projections.shared_commands import AddProvider
from tests.cli import ok
from tests.fake_google import FakeGoogle, service_account
from tests.integration.gateway_harness import Harness, harness

KEY_ENV = "SHIELDES_TEST_GEMINI_KEY"
SIGNATURE = b"\x01\xfe opaque signature"
CITY: Any = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def client(base: str, key: str) -> genai.Client:
    return genai.Client(api_key=key, http_options=types.HttpOptions(
        base_url=base, retry_options=types.HttpRetryOptions(attempts=1)))


@pytest.fixture
async def google(tmp_path: Path) -> AsyncIterator[FakeGoogle]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    async with FakeGoogle(public_key=private.public_key()) as fake:
        fake.creds = tmp_path / "sa.json"  # type: ignore[attr-defined]
        fake.creds.write_text(json.dumps(service_account(private, fake.url + "/token")))  # type: ignore[attr-defined]
        yield fake


@pytest.fixture
async def node(database_url: str, google: FakeGoogle) -> AsyncIterator[Harness]:
    os.environ[KEY_ENV] = google.api_key
    async with harness(database_url, providers=False, upstream_retries=1) as h:
        await h.admin(AddProvider("gem", "gemini", google.url + "/v1beta", "env:" + KEY_ENV,
                                  ("gemini-2.5-flash", "gemini-3-pro-preview", "gemini-2.5-flash-lite")))
        await h.admin(AddProvider("vtx", "vertex", google.url, None, ("gemini-2.5-pro", "gemini-2.5-flash-lite"),
                                  options={"project": "proj-1", "location": "us-central1",
                                           "credentials_file": str(google.creds)}))  # type: ignore[attr-defined]
        await h.sync()
        yield h


async def test_google_only_fields_reach_the_upstream_and_its_answer_comes_back(
        node: Harness, google: FakeGoogle, database_url: str) -> None:
    secret = await node.create_key("app")
    await node.sync()
    models = client(node.base, secret).aio.models
    history = [types.Content(role="user", parts=[types.Part.from_text(text="Search the news")]),
               types.Content(role="model", parts=[types.Part(text="On it.", thought_signature=SIGNATURE)]),
               types.Content(role="user", parts=[types.Part.from_text(text="and sum it up")])]
    config = types.GenerateContentConfig(
        safety_settings=[types.SafetySetting(category=types.HarmCategory.HARM_CATEGORY_HATE_SPEECH,
                                             threshold=types.HarmBlockThreshold.BLOCK_ONLY_HIGH)],
        tools=[types.Tool(google_search=types.GoogleSearch()), types.Tool(code_execution=types.ToolCodeExecution())],
        cached_content="cachedContents/abc123", candidate_count=2, top_k=7,
        thinking_config=types.ThinkingConfig(include_thoughts=True, thinking_budget=512))
    reply = await models.generate_content(model="gemini-2.5-flash", contents=history, config=config)

    seen = google.last()
    assert seen.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert seen.headers["x-goog-api-key"] == google.api_key  # never the virtual key
    body = seen.body
    assert body["safetySettings"] == [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_ONLY_HIGH"}]
    assert body["tools"] == [{"googleSearch": {}}, {"codeExecution": {}}]
    assert body["cachedContent"] == "cachedContents/abc123"
    assert body["generationConfig"]["candidateCount"] == 2 and body["generationConfig"]["topK"] == 7
    assert body["contents"][1]["parts"][0]["thoughtSignature"] == base64.b64encode(SIGNATURE).decode()
    assert reply.candidates is not None and len(reply.candidates) == 2
    assert reply.candidates[0].grounding_metadata is not None  # Google's own answer fields come back
    assert reply.candidates[0].content and reply.candidates[0].content.parts
    assert reply.candidates[0].content.parts[0].thought is True
    assert reply.sdk_http_response is not None and reply.sdk_http_response.headers is not None
    assert "x-shieldes-dropped" not in reply.sdk_http_response.headers
    usage = reply.usage_metadata
    assert usage is not None and (usage.candidates_token_count, usage.thoughts_token_count) == (9, 1)

    await node.flush()
    rows = {r["key"]: r for r in await asyncio.to_thread(ok, database_url, "usage")}
    assert rows["app"]["requests"] == 1  # thoughts are output: the two candidates' 10 tokens
    assert (rows["app"]["prompt_tokens"], rows["app"]["completion_tokens"]) == (usage.prompt_token_count, 10)


async def test_raw_bytes_both_ways_json_sse_and_array(node: Harness, google: FakeGoogle) -> None:
    secret = await node.create_key("raw")
    await node.sync()
    google.extra_fields = frozenset({"futureField"})  # (a field newer than the fake's list)
    # the client's own formatting, key order and a field no SDK knows yet
    sent = (b'{ "futureField": {"nested": [1, 2.5, null]},\n  "contents": [{"role": "user", "parts": '
            b'[{"text": "hi there"}]}],\n "safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", '
            b'"threshold": "OFF"}] }')
    headers = {"x-goog-api-key": secret, "Content-Type": "application/json"}
    base = node.base + "/v1beta/models/gemini-2.5-flash"
    async with aiohttp.ClientSession() as s:
        async with s.post(base + ":generateContent", data=sent, headers=headers) as r:
            assert r.status == 200 and await r.read() == google.sent[-1]
        assert google.last().raw == sent
        async with s.post(base + ":streamGenerateContent?alt=sse", data=sent, headers=headers) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
            assert await r.read() == google.sent[-1]
        assert google.last().raw == sent and google.last().query == {"alt": "sse"}
        async with s.post(base + ":streamGenerateContent", data=sent, headers=headers) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("application/json")
            elements = json.loads(await r.read())
        events = [json.loads(line[6:]) for line in google.sent[-1].split(b"\r\n\r\n") if line]
        assert elements == events and elements[-1]["usageMetadata"]["candidatesTokenCount"] == 4


async def test_vertex_and_failover_to_the_next_native_deployment(node: Harness, google: FakeGoogle) -> None:
    secret = await node.create_key("fo")
    await node.sync()
    models = client(node.base, secret).aio.models
    config = types.GenerateContentConfig(safety_settings=[types.SafetySetting(
        category=types.HarmCategory.HARM_CATEGORY_HARASSMENT, threshold=types.HarmBlockThreshold.OFF)])
    reply = await models.generate_content(model="gemini-2.5-pro", contents="hello vertex", config=config)
    assert reply.text == "Hello from the fake Gemini"
    seen = google.last()
    vertex = "/v1/projects/proj-1/locations/us-central1/publishers/google/models/"
    assert seen.path == vertex + "gemini-2.5-pro:generateContent"
    assert seen.headers["Authorization"].removeprefix("Bearer ") in google.tokens
    assert seen.body["safetySettings"] == [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "OFF"}]

    for streaming in (False, True):
        google.failures.append(503)  # whichever deployment is tried first fails; the other answers (1 retry)
        before = len(google.requests)
        if streaming:
            texts = [c.text async for c in await models.generate_content_stream(
                model="gemini-2.5-flash-lite", contents="fail over", config=config)]
            assert "".join(t or "" for t in texts) == "Hello from the fake Gemini"
        else:
            got = await models.generate_content(model="gemini-2.5-flash-lite", contents="fail over", config=config)
            assert got.text == "Hello from the fake Gemini"
        tried = [r for r in google.requests[before:] if r.path != "/token"]
        assert len(tried) == 2 and {r.path.startswith("/v1beta/") for r in tried} == {True, False}
        assert tried[0].raw == tried[1].raw  # the same bytes to both


async def test_gemini_3_thought_signatures_round_trip(node: Harness, google: FakeGoogle) -> None:
    """Gemini 3 refuses a turn whose function call lost the signature it was given."""
    secret = await node.create_key("sig")
    await node.sync()
    models = client(node.base, secret).aio.models
    weather = types.Tool(function_declarations=[types.FunctionDeclaration(
        name="get_weather", description="Weather in a city", parameters_json_schema=CITY)])
    asked = types.Content(role="user", parts=[types.Part.from_text(text="Weather in Paris?")])
    first = await models.generate_content(model="gemini-3-pro-preview", contents=[asked],
                                          config=types.GenerateContentConfig(tools=[weather]))
    assert first.candidates and first.candidates[0].content and first.candidates[0].content.parts
    call = first.candidates[0].content.parts[0]
    assert call.function_call is not None and call.thought_signature
    answer = types.Part.from_function_response(name="get_weather", response={"output": "sunny"})
    second = await models.generate_content(
        model="gemini-3-pro-preview", config=types.GenerateContentConfig(tools=[weather]),
        contents=[asked, first.candidates[0].content, types.Content(role="user", parts=[answer])])
    assert second.text
    assert google.signed(google.last().body["contents"][1]["parts"][0]["thoughtSignature"])
