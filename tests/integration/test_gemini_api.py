"""The Gemini API surface (/v1beta/models/{model}:generateContent, :streamGenerateContent,
:countTokens, GET /v1beta/models) on a real node, with Google's official google-genai SDK as the
client and an OpenAI-compatible deployment behind it (the request translated to chat);
test_gemini_passthrough.py has `gemini` and `vertex` deployments, which take it as it is."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import aiohttp
import pytest
from google import genai
from google.genai import errors, types

from shieldes.projections.shared_commands import AddProvider
from tests.cli import ok
from tests.fake_google import FakeGoogle
from tests.integration.gateway_harness import harness, wait_until

GEMINI_KEY_ENV = "SHIELDES_TEST_GEMINI_KEY"
CITY: Any = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def client(base: str, key: str) -> genai.Client:
    return genai.Client(api_key=key, http_options=types.HttpOptions(
        base_url=base, retry_options=types.HttpRetryOptions(attempts=1)))


async def test_generate_content_and_stream_through_a_chat_deployment(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("gem")
        await h.sync()
        models = client(h.base, secret).aio.models
        reply = await models.generate_content(
            model="gpt-4o-mini", contents="Say hello",
            config=types.GenerateContentConfig(system_instruction="You are terse.", temperature=0.2, top_k=5,
                                               max_output_tokens=50, stop_sequences=["END"]))
        assert reply.text and reply.candidates and reply.candidates[0].finish_reason == types.FinishReason.STOP
        assert reply.usage_metadata is not None and reply.usage_metadata.candidates_token_count == 5
        assert reply.usage_metadata.total_token_count == (reply.usage_metadata.prompt_token_count or 0) + 5
        assert reply.model_version == "gpt-4o-mini" and reply.response_id
        assert reply.sdk_http_response is not None and reply.sdk_http_response.headers is not None
        assert reply.sdk_http_response.headers["x-shieldes-dropped"] == "generationConfig.topK"
        sent = h.upstream.last("/v1/chat/completions").body
        assert sent["messages"] == [{"role": "system", "content": "You are terse."},
                                    {"role": "user", "content": "Say hello"}]
        assert (sent["temperature"], sent["max_tokens"], sent["stop"]) == (0.2, 50, ["END"]) and "top_k" not in sent

        texts, last = [], None
        async for chunk in await models.generate_content_stream(model="gpt-4o-mini", contents="Say hello"):
            texts.append(chunk.text or "")
            last = chunk
        assert "".join(texts) == reply.text
        assert last is not None and last.candidates and last.candidates[0].finish_reason == types.FinishReason.STOP
        assert last.usage_metadata is not None and last.usage_metadata.candidates_token_count == 5
        assert h.upstream.last("/v1/chat/completions").body["stream"] is True

        await h.flush()
        rows = {r["key"]: r for r in await asyncio.to_thread(ok, database_url, "usage")}
        assert rows["gem"]["requests"] == 2 and rows["gem"]["completion_tokens"] == 10


async def test_a_model_name_with_a_colon_is_served(database_url: str) -> None:
    # Ollama's `llama3.2:3b` and Bedrock's `...-v1:0` hold a colon: the method is after the last one
    async with harness(database_url) as h:
        await h.admin(AddProvider("ollama", "openai", h.upstream.url, "env:SHIELDES_TEST_UPSTREAM_KEY",
                                  ("llama3.2:3b",)))
        secret = await h.create_key("gem")
        await h.sync()
        models = client(h.base, secret).aio.models
        reply = await models.generate_content(model="llama3.2:3b", contents="Say hello")
        assert reply.text and reply.model_version == "llama3.2:3b"
        assert h.upstream.last("/v1/chat/completions").body["model"] == "llama3.2:3b"
        streamed = [c.text async for c in await models.generate_content_stream(model="llama3.2:3b", contents="hi")]
        assert "".join(t or "" for t in streamed) == reply.text
        counted = await models.count_tokens(model="llama3.2:3b", contents="Say hello")
        assert counted.total_tokens
        async with aiohttp.ClientSession() as s:  # OpenAI's model route keeps OpenAI's shape for such a name
            async with s.get(h.base + "/v1/models/llama3.2:latest", headers={"Authorization": f"Bearer {secret}"}) as r:
                assert r.status == 404 and "error" in await r.json() and "status" not in (await r.json())["error"]
            async with s.post(h.base + "/v1/models/llama3.2:3b:generateContent", data=b"{",
                              headers={"x-goog-api-key": secret}) as r:
                assert r.status == 400 and (await r.json())["error"]["status"] == "INVALID_ARGUMENT"


async def test_function_calling_round_trip_and_json_output(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("tools")
        await h.sync()
        models = client(h.base, secret).aio.models
        weather = types.Tool(function_declarations=[types.FunctionDeclaration(
            name="get_weather", description="Weather in a city", parameters_json_schema=CITY)])
        config = types.GenerateContentConfig(tools=[weather], tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(mode=types.FunctionCallingConfigMode.ANY)))
        asked = types.Content(role="user", parts=[types.Part.from_text(text="Weather in Paris?")])
        first = await models.generate_content(model="gpt-4o", contents=[asked], config=config)
        assert first.function_calls and first.function_calls[0].name == "get_weather"
        assert first.function_calls[0].args == {"city": "test"}
        sent = h.upstream.last("/v1/chat/completions").body
        assert sent["tools"] == [{"type": "function", "function": {
            "name": "get_weather", "parameters": CITY, "description": "Weather in a city"}}]
        assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}

        assert first.candidates and first.candidates[0].content
        answer = types.Part.from_function_response(name="get_weather", response={"output": "sunny, 21 C"})
        second = await models.generate_content(
            model="gpt-4o", config=types.GenerateContentConfig(tools=[weather]),
            contents=[asked, first.candidates[0].content, types.Content(role="user", parts=[answer])])
        assert second.text and not second.function_calls
        history = h.upstream.last("/v1/chat/completions").body["messages"]
        call = history[1]["tool_calls"][0]
        assert history[1]["role"] == "assistant" and call["function"]["name"] == "get_weather"
        assert history[2] == {"role": "tool", "tool_call_id": call["id"], "content": "sunny, 21 C"}

        shaped = await models.generate_content(
            model="gpt-4o", contents="A city, as JSON",
            config=types.GenerateContentConfig(response_mime_type="application/json", response_json_schema=CITY))
        assert set(json.loads(shaped.text or "")) == {"city"}
        assert h.upstream.last("/v1/chat/completions").body["response_format"] == {
            "type": "json_schema", "json_schema": {"name": "output", "schema": CITY, "strict": True}}
        typed = await models.generate_content(
            model="gpt-4o", contents="A city, as JSON",
            config=types.GenerateContentConfig(response_mime_type="application/json", response_schema=types.Schema(
                type=types.Type.OBJECT, properties={"city": types.Schema(type=types.Type.STRING, nullable=True)})))
        assert json.loads(typed.text or "") is not None
        assert h.upstream.last("/v1/chat/completions").body["response_format"]["json_schema"]["schema"] == {
            "type": "object", "properties": {"city": {"type": ["string", "null"]}}}


async def test_errors_reach_the_sdk_in_googles_shape(database_url: str) -> None:
    async with harness(database_url) as h:
        narrow = await h.create_key("narrow", models=("gpt-4o-mini",), rpm=2)
        await h.sync()
        with pytest.raises(errors.ClientError) as info:
            await client(h.base, "sk-wrong").aio.models.generate_content(model="gpt-4o-mini", contents="hi")
        assert (info.value.code, info.value.status) == (401, "UNAUTHENTICATED")
        assert "invalid or revoked API key" in (info.value.message or "")

        models = client(h.base, narrow).aio.models
        with pytest.raises(errors.ClientError) as info:
            await models.generate_content(model="gpt-4o", contents="hi")
        assert (info.value.code, info.value.status) == (403, "PERMISSION_DENIED")
        assert "gpt-4o" in (info.value.message or "")

        with pytest.raises(errors.ClientError) as info:
            await models.generate_content(model="gpt-4o-mini", contents="hi",
                                          config=types.GenerateContentConfig(candidate_count=2))
        assert (info.value.code, info.value.status) == (400, "INVALID_ARGUMENT")
        assert "candidateCount" in (info.value.message or "")

        counted = await models.count_tokens(model="gpt-4o-mini", contents="How many tokens is this?")
        assert counted.total_tokens and counted.total_tokens > 0  # an estimate: not billed, not rate limited

        await models.generate_content(model="gpt-4o-mini", contents="hi")
        await models.generate_content(model="gpt-4o-mini", contents="hi")
        with pytest.raises(errors.ClientError) as info:
            await models.generate_content(model="gpt-4o-mini", contents="hi")
        assert (info.value.code, info.value.status) == (429, "RESOURCE_EXHAUSTED")
        assert "rpm" in (info.value.message or "").lower()
        body = {"contents": [{"parts": [{"text": "hi"}]}]}
        async with aiohttp.ClientSession() as s, s.post(h.base + "/v1beta/models/gpt-4o-mini:generateContent",
                                                        headers={"x-goog-api-key": narrow}, json=body) as r:
            assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
            assert (await r.json())["error"]["status"] == "RESOURCE_EXHAUSTED"
            rid = r.headers["x-request-id"]
        # each refusal's row names the model of the path, the code and the message the client got
        writer = h.node.request_log
        assert writer is not None
        await wait_until(lambda: writer.buffer.added >= 8, timeout=10)
        assert await writer.flush_all(10)
        rows = h.sql("SELECT status, model, error_code, error_message, request_id FROM request_log"
                     " WHERE status >= 400 AND key_name = 'narrow' ORDER BY started_at")
        assert [r[:3] for r in rows] == [(403, "gpt-4o", "model_not_allowed"),
                                         (400, "gpt-4o-mini", "invalid_request"),
                                         (429, "gpt-4o-mini", "rate_limit_exceeded"),
                                         (429, "gpt-4o-mini", "rate_limit_exceeded")]
        assert rows[-1][4] == rid and rows[2][3] == info.value.message



def _details(err: errors.APIError) -> dict[str, Any]:
    """The error's `details` by their type's last name (RetryInfo, ErrorInfo)."""
    body = err.details.get("error", err.details) if isinstance(err.details, dict) else {}
    return {d["@type"].rsplit(".", 1)[-1]: d for d in body.get("details", [])}


async def test_a_429_says_how_long_to_wait_as_google_does(database_url: str) -> None:
    """A 429's RetryInfo is what Gemini CLI waits on: the rate limit's Retry-After, and for a spent
    budget the time until its period resets (past 5 minutes Gemini CLI stops at once with the message
    instead of retrying ten times over four minutes)."""
    async with harness(database_url) as h:
        busy = await h.create_key("busy", rpm=1)
        broke = await h.create_key("broke", budget_usd=0.000001, budget_period="1d")
        await h.sync()
        await client(h.base, busy).aio.models.generate_content(model="gpt-4o-mini", contents="hi")
        with pytest.raises(errors.ClientError) as info:
            await client(h.base, busy).aio.models.generate_content(model="gpt-4o-mini", contents="hi")
        details = _details(info.value)
        assert details["ErrorInfo"]["reason"] == "RATE_LIMIT_EXCEEDED" and details["ErrorInfo"]["domain"] == "shieldes"
        wait = int(details["RetryInfo"]["retryDelay"].removesuffix("s"))
        assert 1 <= wait <= 60

        with pytest.raises(errors.ClientError) as info:
            await client(h.base, broke).aio.models.generate_content(model="gpt-4o-mini", contents="hi")
        assert (info.value.code, info.value.status) == (429, "RESOURCE_EXHAUSTED")
        assert "budget exceeded" in (info.value.message or "")
        details = _details(info.value)
        assert details["ErrorInfo"]["reason"] == "BUDGET_EXCEEDED"
        midnight = (int(time.time()) // 86400 + 1) * 86400  # a 1d window's oldest day drops out at 00:00 UTC
        assert abs(int(details["RetryInfo"]["retryDelay"].removesuffix("s")) - (midnight - time.time())) < 30

async def test_models_and_raw_wire_forms(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("raw", models=("gpt-4o-mini",))
        await h.sync()
        models = client(h.base, secret).aio.models
        listed = [m.name async for m in await models.list()]
        assert listed == ["models/gpt-4o-mini"]
        got = await models.get(model="gpt-4o-mini")
        assert got.name == "models/gpt-4o-mini"
        assert set(got.supported_actions or ()) >= {"generateContent", "embedContent", "countTokens"}
        with pytest.raises(errors.ClientError) as info:  # not the key's: as if it did not exist
            await models.get(model="gpt-4o")
        assert (info.value.code, info.value.status) == (404, "NOT_FOUND")
        assert "GET /v1beta/models" in (info.value.message or "")  # the list Google's clients call
        with pytest.raises(errors.ClientError) as info:
            await models.generate_content(model="no-such-model", contents="hi")
        assert info.value.code == 404 and "GET /v1beta/models" in (info.value.message or "")
        with pytest.raises(errors.ClientError) as info:
            await models.count_tokens(model="no-such-model", contents="hi")
        assert info.value.code == 404 and "GET /v1beta/models" in (info.value.message or "")
        async with aiohttp.ClientSession() as s, s.get(h.base + "/v1beta/models/gpt-4o-mini",
                                                       headers={"x-goog-api-key": secret}) as r:
            assert (await r.json())["name"] == "models/gpt-4o-mini"

        async with aiohttp.ClientSession() as s:
            body = {"contents": [{"parts": [{"text": "hi"}]}]}
            url = h.base + "/v1/models/gpt-4o-mini:streamGenerateContent?key=" + secret  # no alt=sse: a JSON array
            async with s.post(url, json=body) as r:
                assert r.status == 200 and r.headers["Content-Type"].startswith("application/json")
                chunks = json.loads(await r.read())
            assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
            assert "".join(p.get("text", "") for c in chunks for p in c["candidates"][0]["content"]["parts"])
            async with s.post(h.base + "/v1beta/models/gpt-4o-mini:generateAnswer",
                              headers={"x-goog-api-key": secret}, json=body) as r:
                assert r.status == 404
                assert (await r.json())["error"]["status"] == "NOT_FOUND"
            async with s.post(h.base + "/v1beta/models/gpt-4o-mini:generateContent",
                              headers={"x-goog-api-key": secret}, data=b"{") as r:
                error = (await r.json())["error"]
                assert (r.status, error["code"], error["status"]) == (400, 400, "INVALID_ARGUMENT")


async def test_a_gemini_deployment_gets_thinking_and_counts_tokens_itself(database_url: str) -> None:
    async with FakeGoogle() as fake:
        os.environ[GEMINI_KEY_ENV] = fake.api_key
        async with harness(database_url, providers=False, upstream_retries=0) as h:
            await h.admin(AddProvider("gem", "gemini", fake.url + "/v1beta", "env:" + GEMINI_KEY_ENV,
                                      ("gemini-2.5-flash",)))
            secret = await h.create_key("gem")
            await h.sync()
            models = client(h.base, secret).aio.models
            reply = await models.generate_content(
                model="gemini-2.5-flash", contents="say hello",
                config=types.GenerateContentConfig(thinking_config=types.ThinkingConfig(
                    thinking_budget=2048, include_thoughts=True)))
            assert reply.text == "Hello from the fake Gemini"
            assert reply.candidates and reply.candidates[0].content and reply.candidates[0].content.parts
            assert reply.candidates[0].content.parts[0].thought is True  # asked for with includeThoughts
            # passed through: the client's own thinkingConfig, as the SDK wrote it
            assert fake.last().body["generationConfig"]["thinkingConfig"] == {"include_thoughts": True,
                                                                             "thinking_budget": 2048}
            assert reply.usage_metadata is not None and reply.usage_metadata.prompt_token_count == 2
            counted = await models.count_tokens(model="gemini-2.5-flash", contents="one two three")
            assert counted.total_tokens == 3  # Google's own count, not an estimate


async def test_the_model_list_comes_in_pages(database_url: str) -> None:
    async with harness(database_url) as h:
        many = tuple(f"m-{i:02}" for i in range(60))
        await h.admin(AddProvider("many", "openai", h.upstream.url, None, many))
        secret = await h.create_key("pages")
        await h.sync()
        served = sorted([*many, "claude-3-5-haiku-latest", "gpt-4o", "gpt-4o-mini", "text-embedding-3-small"])
        pager = await client(h.base, secret).aio.models.list(config=types.ListModelsConfig(page_size=7))
        assert [m.name async for m in pager] == [f"models/{m}" for m in served]  # the SDK follows the pages

        async with aiohttp.ClientSession() as s:
            async def page(query: str) -> tuple[int, Any]:
                async with s.get(h.base + "/v1beta/models" + query, headers={"x-goog-api-key": secret}) as r:
                    return r.status, await r.json()

            status, first = await page("")
            assert status == 200 and len(first["models"]) == 50 and first["nextPageToken"]  # Google's default
            status, rest = await page("?pageToken=" + first["nextPageToken"])
            assert [m["name"] for m in first["models"] + rest["models"]] == [f"models/{m}" for m in served]
            assert "nextPageToken" not in rest
            status, whole = await page("?pageSize=5000")  # above 1000: 1000, as Google coerces it
            assert len(whole["models"]) == len(served) and "nextPageToken" not in whole
            for bad in ("?pageSize=-1", "?pageSize=ten", "?pageToken=%21%21%21"):
                status, refused = await page(bad)
                assert (status, refused["error"]["status"]) == (400, "INVALID_ARGUMENT")
