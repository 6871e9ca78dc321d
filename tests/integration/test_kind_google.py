"""`gemini` and `vertex` deployments through a real node, driven by the official SDKs, against a
fake Google upstream speaking generateContent JSON and SSE, embeddings and a service-account
OAuth token endpoint (the service-account JSON is made here with a fresh RSA key)."""

from __future__ import annotations

import base64
import json
import os
import string
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pydantic
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from shieldes.projections.shared_commands import AddProvider
from tests.fake_google import FakeGoogle, service_account
from tests.integration.gateway_harness import Harness, harness

KEY_ENV = "SHIELDES_TEST_GEMINI_KEY"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "weather now",
                                            "parameters": {"type": "object", "additionalProperties": False,
                                                           "properties": {"city": {"type": "string"}}}}}
PIXEL = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()


def oai(h: Harness, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=key, max_retries=0)


async def new_key(h: Harness) -> str:
    secret = await h.create_key("app")
    await h.sync()
    return secret


@pytest.fixture
async def google(tmp_path: Path) -> AsyncIterator[tuple[FakeGoogle, Path]]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    async with FakeGoogle(public_key=private.public_key()) as fake:
        path = tmp_path / "sa.json"
        path.write_text(json.dumps(service_account(private, fake.url + "/token")))
        yield fake, path


@pytest.fixture
async def node(database_url: str, google: tuple[FakeGoogle, Path]) -> AsyncIterator[Harness]:
    fake, creds = google
    os.environ[KEY_ENV] = fake.api_key
    async with harness(database_url, providers=False, upstream_retries=0) as h:
        await h.admin(AddProvider("gem", "gemini", fake.url + "/v1beta", "env:" + KEY_ENV,
                                  ("gemini-2.5-flash", "text-embedding-004")))
        await h.admin(AddProvider("vtx", "vertex", fake.url, None, ("gemini-2.5-pro", "text-embedding-005"),
                                  options={"project": "proj-1", "location": "us-central1",
                                           "credentials_file": str(creds)}))
        await h.sync()
        yield h


async def test_gemini_chat_stream_tools_images_usage_exact(node: Harness, google: tuple[FakeGoogle, Path]) -> None:
    fake, _ = google
    client = oai(node, await new_key(node))
    messages: Any = [{"role": "system", "content": "be brief"},
                     {"role": "user", "content": [{"type": "text", "text": "what is in this picture"},
                                                  {"type": "image_url", "image_url": {"url": PIXEL}}]}]
    chat = await client.chat.completions.create(model="gemini-2.5-flash", messages=messages, max_tokens=50)
    assert chat.choices[0].message.content == "Hello from the fake Gemini"
    assert chat.choices[0].finish_reason == "stop"
    assert chat.usage is not None and (chat.usage.prompt_tokens, chat.usage.completion_tokens) == (7, 5)
    assert chat.usage.completion_tokens_details is not None
    assert chat.usage.completion_tokens_details.reasoning_tokens == 1
    sent = fake.last()
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent.body["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    assert sent.body["contents"][0]["parts"][1] == {"inlineData": {"mimeType": "image/png",
                                                                   "data": PIXEL.split(",")[1]}}
    assert sent.body["generationConfig"] == {"maxOutputTokens": 50}

    stream = await client.chat.completions.create(model="gemini-2.5-flash", messages=messages, stream=True,
                                                  stream_options={"include_usage": True}, max_tokens=3)
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from the"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    assert fake.last().query == {"alt": "sse"}

    ask: Any = [{"role": "user", "content": "weather in Paris?"}]
    tool = await client.chat.completions.create(model="gemini-2.5-flash", messages=ask, tools=[WEATHER],
                                                tool_choice="required")
    call = tool.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert tool.choices[0].finish_reason == "tool_calls"
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
    declared = fake.last().body["tools"][0]["functionDeclarations"][0]
    assert "additionalProperties" not in declared["parameters"]
    assert fake.last().body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    follow: Any = [*ask, tool.choices[0].message.model_dump(exclude_none=True),
                   {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    done = await client.chat.completions.create(model="gemini-2.5-flash", messages=follow, tools=[WEATHER])
    assert done.choices[0].message.content == "Hello from the fake Gemini"
    assert fake.last().body["contents"][-1] == {
        "role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"content": "sunny"}}}]}

    stream = await client.chat.completions.create(model="gemini-2.5-flash", messages=ask, tools=[WEATHER],
                                                  stream=True)
    deltas = [c.choices[0].delta for c in [c async for c in stream] if c.choices]
    calls = [d.tool_calls[0] for d in deltas if d.tool_calls]
    assert calls[0].function is not None and calls[0].function.name == "get_weather"

    await node.flush()
    assert node.usage_totals()["app"][:3] == (5, 7 + 7 + 3 + 3 + 3, 5 + 3 + 5 + 5 + 5)


async def test_gemini_embeddings_and_anthropic_sdk(node: Harness, google: tuple[FakeGoogle, Path]) -> None:
    fake, _ = google
    key = await new_key(node)
    emb = await oai(node, key).embeddings.create(model="text-embedding-004", input=["one two", "three"])
    assert [d.embedding for d in emb.data] == [[0.5, -0.25, 2.0], [0.5, -0.25, 1.0]]  # base64 by default
    assert fake.last().body["requests"][0]["model"] == "models/text-embedding-004"

    claude = anthropic.AsyncAnthropic(base_url=node.base, api_key=key, max_retries=0)
    msg = await claude.messages.create(model="gemini-2.5-flash", max_tokens=100, system="be brief",
                                       messages=[{"role": "user", "content": "say hello"}])
    assert msg.content[0].text == "Hello from the fake Gemini"  # type: ignore[union-attr]
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (4, 5)
    async with claude.messages.stream(model="gemini-2.5-flash", max_tokens=100,
                                      messages=[{"role": "user", "content": "say hello"}]) as s:
        final = await s.get_final_message()
    assert final.content[0].text == "Hello from the fake Gemini"  # type: ignore[union-attr]
    assert final.usage.output_tokens == 5


async def test_a_messages_clients_error_names_its_own_message(node: Harness,
                                                                google: tuple[FakeGoogle, Path]) -> None:
    """A Messages request's error named the chat message it became: a system prompt takes chat
    message 0 and a turn with a tool result becomes two chat messages, so the client heard of
    messages[4] for its own messages[2]."""
    fake, _ = google
    claude = anthropic.AsyncAnthropic(base_url=node.base, api_key=await new_key(node), max_retries=0)
    weather: Any = {"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]}
    history: Any = [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                                     {"type": "image", "source": {"type": "url", "url": "ftp://host/a.png"}}]}]
    sent = len(fake.requests)
    for stream in (False, True):
        with pytest.raises(anthropic.BadRequestError) as err:
            await claude.messages.create(model="gemini-2.5-flash", max_tokens=50, system="be brief", tools=[weather],
                                         messages=[{"role": "user", "content": "weather?"}, *history], stream=stream)
        assert "messages[2]: image_url.url must be an http(s) URL" in err.value.message, err.value.message
    with pytest.raises(anthropic.BadRequestError) as err:
        await claude.messages.count_tokens(model="gemini-2.5-flash", system="be brief", tools=[weather],
                                           messages=[{"role": "user", "content": "weather?"}, *history])
    assert "messages[2]: image_url.url must be an http(s) URL" in err.value.message, err.value.message
    assert len(fake.requests) == sent
    await claude.close()


async def test_gemini_errors_are_mapped(node: Harness, google: tuple[FakeGoogle, Path]) -> None:
    fake, _ = google
    client = oai(node, await new_key(node))
    hello: Any = [{"role": "user", "content": "hello"}]
    fake.failures.append(429)
    with pytest.raises(openai.RateLimitError) as limited:
        await client.chat.completions.create(model="gemini-2.5-flash", messages=hello)
    # the Gemini API says its wait only in the 429's RetryInfo (36.5s), not in a Retry-After header
    assert limited.value.code == "rate_limit_exceeded" and limited.value.response.headers["retry-after"] == "37"

    fake.max_prompt = 3
    with pytest.raises(openai.BadRequestError) as too_long:
        await client.chat.completions.create(model="gemini-2.5-flash",
                                             messages=[{"role": "user", "content": "one two three four"}])
    assert too_long.value.code == "context_length_exceeded"
    assert "exceeds the maximum number of tokens" in too_long.value.message

    fake.max_prompt = 1000
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as filtered:
            await client.chat.completions.create(model="gemini-2.5-flash", stream=stream,  # type: ignore[call-overload]
                                                 messages=[{"role": "user", "content": "BLOCKME now"}])
        assert filtered.value.code == "content_filter" and "SAFETY" in filtered.value.message


async def test_vertex_service_account_chat_stream_embeddings(
    node: Harness, google: tuple[FakeGoogle, Path]
) -> None:
    fake, _ = google
    client = oai(node, await new_key(node))
    hello: Any = [{"role": "user", "content": "hello there"}]
    chat = await client.chat.completions.create(model="gemini-2.5-pro", messages=hello)
    assert chat.choices[0].message.content == "Hello from the fake Gemini"
    sent = fake.last()
    assert sent.path == ("/v1/projects/proj-1/locations/us-central1/publishers/google/models/"
                         "gemini-2.5-pro:generateContent")
    assert sent.headers["Authorization"].startswith("Bearer ya29.")
    stream = await client.chat.completions.create(model="gemini-2.5-pro", messages=hello, stream=True,
                                                  stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 2
    emb = await client.embeddings.create(model="text-embedding-005", input="a b c", encoding_format="float")
    assert emb.data[0].embedding == [0.5, -0.25, 3.0] and emb.usage.prompt_tokens == 3  # from statistics
    assert len([r for r in fake.requests if r.path == "/token"]) == 1  # the token is reused until it expires


async def test_gemini_implicit_cache_billed_at_the_shipped_cache_price(node: Harness,
                                                                       google: tuple[FakeGoogle, Path]) -> None:
    """A prompt repeating an earlier prefix reports `cachedContentTokenCount`; gemini-2.5-flash's
    shipped price is $0.30 input, $0.03 cache read, $2.50 output per 1M (nUSD 300, 30, 2500)."""
    fake, _ = google
    fake.implicit_cache = True
    client = oai(node, await new_key(node))
    prefix: Any = [{"role": "system", "content": "You are a careful assistant"},  # 5 + 3 + 2 words
                   {"role": "user", "content": "first question here"}, {"role": "assistant", "content": "an answer"}]
    first = await client.chat.completions.create(model="gemini-2.5-flash",
                                                 messages=[*prefix, {"role": "user", "content": "follow up"}])
    assert first.usage is not None and first.usage.prompt_tokens == 12
    assert first.usage.prompt_tokens_details is None or not first.usage.prompt_tokens_details.cached_tokens
    stream = await client.chat.completions.create(model="gemini-2.5-flash", stream=True,
                                                  messages=[*prefix, {"role": "user", "content": "and then"}],
                                                  stream_options={"include_usage": True})
    second = [c async for c in stream][-1].usage
    assert second is not None and second.prompt_tokens == 12
    assert second.prompt_tokens_details is not None and second.prompt_tokens_details.cached_tokens == 10
    await node.flush()
    assert node.usage_totals()["app"] == (2, 24, 10, 12 * 300 + (2 * 300 + 10 * 30) + 10 * 2500)


async def test_gemini_3_function_call_signatures_survive_every_client_api(
        node: Harness, google: tuple[FakeGoogle, Path]) -> None:
    """Gemini 3 signs each function call and refuses (400) a later turn whose history lacks the
    signature: it travels in the call id, so tool loops of chat, Messages and Responses clients go
    on; a call made by another model gets the documented skip value."""
    fake, _ = google
    await node.admin(AddProvider("gem3", "gemini", fake.url + "/v1beta", "env:" + KEY_ENV, ("gemini-3-pro-preview",)))
    key = await new_key(node)
    model, weather = "gemini-3-pro-preview", {"role": "user", "content": "weather in Paris?"}
    client = oai(node, key)
    stream = await client.chat.completions.create(model=model, messages=[weather], tools=[WEATHER], stream=True)
    calls = [c.choices[0].delta.tool_calls[0] async for c in stream if c.choices and c.choices[0].delta.tool_calls]
    call = calls[0]
    assert call.id and call.id.startswith("call_") and "__ts__" in call.id
    assert set(call.id) <= set(string.ascii_letters + "0123456789_-")
    turn: Any = {"role": "assistant", "tool_calls": [{"id": call.id, "type": "function", "function": {
        "name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]}
    done = await client.chat.completions.create(model=model, tools=[WEATHER], messages=[
        weather, turn, {"role": "tool", "tool_call_id": call.id, "content": "sunny"}])
    assert done.choices[0].message.content == "Hello from the fake Gemini"
    sent = fake.last().body["contents"][1]["parts"][0]
    assert sent["thoughtSignature"] in fake.signatures and "__ts__" not in json.dumps(fake.last().body)

    claude = anthropic.AsyncAnthropic(base_url=node.base, api_key=key, max_retries=0)
    tools: Any = [{"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]}]
    async with claude.messages.stream(model=model, max_tokens=100, tools=tools, messages=[weather]) as s:
        use = (await s.get_final_message()).content[0]
    reply = await claude.messages.create(model=model, max_tokens=100, tools=tools, messages=[
        weather, {"role": "assistant", "content": [use.model_dump(exclude_none=True)]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]}])  # type: ignore[union-attr]
    assert reply.content[0].text == "Hello from the fake Gemini"  # type: ignore[union-attr]

    first = await client.responses.create(model=model, input="weather in Paris?", tools=[
        {"type": "function", "name": "get_weather", "parameters": WEATHER["function"]["parameters"], "strict": False}])
    fc = first.output[0]
    assert fc.type == "function_call"
    second = await client.responses.create(model=model, previous_response_id=first.id, input=[
        {"type": "function_call_output", "call_id": fc.call_id, "output": "sunny"}])
    assert second.output_text == "Hello from the fake Gemini"

    # a conversation begun on another model: its calls carry no signature
    moved = await client.chat.completions.create(model=model, tools=[WEATHER], messages=[
        weather, {**turn, "tool_calls": [{**turn["tool_calls"][0], "id": "toolu_01abc"}]},
        {"role": "tool", "tool_call_id": "toolu_01abc", "content": "sunny"}])
    assert moved.choices[0].message.content == "Hello from the fake Gemini"
    assert fake.last().body["contents"][1]["parts"][0]["thoughtSignature"] == "skip_thought_signature_validator"


class Address(pydantic.BaseModel):
    street: str
    zip: str


class Person(pydantic.BaseModel):
    name: str
    home: Address
    previous: list[Address]


async def test_nested_models_and_odd_property_names_reach_gemini_as_its_schema(
        node: Harness, google: tuple[FakeGoogle, Path]) -> None:
    """pydantic (and zod) write nested models as `$ref`s into `$defs`: the definitions were left out
    and the dangling `$ref` sent, which Google refuses (its Schema message has no such field); and a
    property named like a dropped keyword (`strict`) was left out of the parameters it belongs to."""
    fake, _ = google
    client = oai(node, await new_key(node))
    ask: Any = [{"role": "user", "content": "who lives here?"}]
    chat = await client.chat.completions.parse(model="gemini-2.5-flash", messages=ask, response_format=Person)
    assert chat.choices[0].message.parsed == Person(name="test", home=Address(street="test", zip="test"),
                                                    previous=[])
    schema = fake.last().body["generationConfig"]["responseSchema"]
    assert "$ref" not in json.dumps(schema) and schema["properties"]["home"]["properties"]["zip"] == {
        "title": "Zip", "type": "string"}
    assert schema["properties"]["previous"]["items"]["required"] == ["street", "zip"]
    answer = await client.responses.parse(model="gemini-2.5-flash", input="who lives here?", text_format=Person)
    assert answer.output_parsed is not None and answer.output_parsed.home.street == "test"

    lookup: Any = {"type": "function", "function": {"name": "lookup", "strict": True, "parameters": {
        "type": "object", "additionalProperties": False, "required": ["strict", "where"],
        "properties": {"strict": {"type": "boolean"}, "where": {"$ref": "#/$defs/Place", "description": "the place"}},
        "$defs": {"Place": {"type": "object", "properties": {"city": {"type": "string"}}}}}}}
    await client.chat.completions.create(model="gemini-2.5-flash", messages=ask, tools=[lookup], tool_choice="none")
    declared = fake.last().body["tools"][0]["functionDeclarations"][0]["parameters"]
    assert declared == {"type": "object", "required": ["strict", "where"], "properties": {
        "strict": {"type": "boolean"},
        "where": {"type": "object", "properties": {"city": {"type": "string"}}, "description": "the place"}}}

    looping: Any = {"type": "json_schema", "json_schema": {"name": "tree", "schema": {
        "$ref": "#/$defs/Node", "$defs": {"Node": {"type": "object", "properties": {
            "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}}}}}
    with pytest.raises(openai.BadRequestError) as err:
        await client.chat.completions.create(model="gemini-2.5-flash", messages=ask, response_format=looping)
    assert "response_format.json_schema.schema: the schema is recursive ('Node'" in err.value.message
    assert err.value.param == "response_format.json_schema.schema"


async def test_a_schema_that_inlines_to_a_bomb_is_refused_at_once(node: Harness,
                                                                   google: tuple[FakeGoogle, Path]) -> None:
    """Gemini's schema subset has no `$ref`, so the node inlines them: 24 definitions each using the
    next twice would inline to 2^24 subschemas (minutes of the node's CPU, its event loop blocked,
    from a 3 KB request), and a chain of 3000 to a nesting past Python's recursion limit (a 500).
    Both are a 400 naming the bound, before any upstream call."""
    fake, _ = google
    client = openai.AsyncOpenAI(base_url=node.base + "/v1", api_key=await new_key(node), max_retries=0, timeout=20)
    ask: Any = [{"role": "user", "content": "hi"}]
    before = len(fake.requests)
    fan = {f"D{i}": {"type": "object", "properties": {"a": {"$ref": f"#/$defs/D{i + 1}"},
                                                      "b": {"$ref": f"#/$defs/D{i + 1}"}}} for i in range(24)}
    chain = {f"D{i}": {"$ref": f"#/$defs/D{i + 1}"} for i in range(3000)}
    for defs, bound in ((fan, "over 10000 subschemas"), (chain, "over 100 levels deep")):
        params = {"type": "object", "properties": {"x": {"$ref": "#/$defs/D0"}},
                  "$defs": {**defs, f"D{len(defs)}": {"type": "string"}}}
        tool: Any = {"type": "function", "function": {"name": "f", "parameters": params}}
        with pytest.raises(openai.BadRequestError) as err:
            await client.chat.completions.create(model="gemini-2.5-flash", messages=ask, tools=[tool])
        assert bound in err.value.message and err.value.param == "tools[0].function.parameters"
    assert len(fake.requests) == before  # refused before any upstream call


async def test_gemini_n_is_candidate_count_and_parallel_calls_are_never_ignored_in_silence(
        node: Harness, google: tuple[FakeGoogle, Path]) -> None:
    """`n: 2` was refused (Google answers it as candidateCount) and `parallel_tool_calls: false`
    vanished without a word."""
    fake, _ = google
    client = oai(node, await new_key(node))
    ask: Any = [{"role": "user", "content": "weather in Paris?"}]
    chat = await client.chat.completions.create(model="gemini-2.5-flash", messages=ask, n=2)
    assert fake.last().body["generationConfig"] == {"candidateCount": 2}
    assert [(c.index, c.message.content, c.finish_reason) for c in chat.choices] == [
        (0, "Hello from the fake Gemini", "stop"), (1, "from the fake Gemini model", "stop")]
    assert chat.usage is not None and (chat.usage.prompt_tokens, chat.usage.completion_tokens) == (3, 10)

    stream = await client.chat.completions.create(model="gemini-2.5-pro", messages=ask, n=3, stream=True,
                                                  stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert fake.last().path.endswith("gemini-2.5-pro:streamGenerateContent")
    assert fake.last().body["generationConfig"] == {"candidateCount": 3}
    texts = {i: "".join(c.choices[0].delta.content or "" for c in chunks if c.choices and c.choices[0].index == i)
             for i in range(3)}
    assert texts == {0: "Hello from the fake Gemini", 1: "from the fake Gemini model",
                     2: "the fake Gemini model with"}
    assert sorted((c.choices[0].index, c.choices[0].finish_reason) for c in chunks
                  if c.choices and c.choices[0].finish_reason) == [(0, "stop"), (1, "stop"), (2, "stop")]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 15

    calls = await client.chat.completions.create(model="gemini-2.5-flash", messages=ask, tools=[WEATHER], n=2)
    ids = [c.message.tool_calls[0].id for c in calls.choices if c.message.tool_calls]
    assert len(set(ids)) == 2 and [c.finish_reason for c in calls.choices] == ["tool_calls", "tool_calls"]
    raw = await client.chat.completions.with_raw_response.create(model="gemini-2.5-flash", messages=ask,
                                                                 tools=[WEATHER], parallel_tool_calls=False)
    assert raw.headers["x-shieldes-dropped"] == "parallel_tool_calls" and raw.parse().choices[0].message.tool_calls


async def test_gemini_names_service_tier_and_metadata_it_leaves_out(
        node: Harness, google: tuple[FakeGoogle, Path]) -> None:
    """`service_tier` and `metadata` vanished without a word: the Gemini API has neither (no tier
    header, no `labels` field: it refuses one), and its answers say no tier."""
    fake, _ = google
    client = oai(node, await new_key(node))
    ask: Any = [{"role": "user", "content": "hi"}]
    raw = await client.chat.completions.with_raw_response.create(
        model="gemini-2.5-flash", messages=ask, service_tier="flex", metadata={"team": "search"})
    assert raw.headers["x-shieldes-dropped"] == "service_tier, metadata"
    assert "labels" not in fake.last().body and not any(k.lower().startswith("x-vertex") for k in fake.last().headers)
    assert raw.parse().service_tier is None
    raw = await client.chat.completions.with_raw_response.create(model="gemini-2.5-flash", messages=ask,
                                                                 service_tier="auto")
    assert "x-shieldes-dropped" not in raw.headers and fake.last().body == {"contents": [
        {"role": "user", "parts": [{"text": "hi"}]}]}


async def test_vertex_tiers_are_its_headers_and_metadata_its_labels(
        node: Harness, google: tuple[FakeGoogle, Path]) -> None:
    """Vertex has OpenAI's tiers as request headers (`default`: pay-as-you-go only, Provisioned
    Throughput bypassed; Flex and Priority PayGo) and tags as the request's `labels`; its answers
    say the tier that served them (usageMetadata.trafficType). Both were named as dropped and the
    answers said no tier. Labels are lowercased to fit Google's rules; tags that still break them
    are named as dropped, never sent to be refused."""
    fake, _ = google
    client = oai(node, await new_key(node))
    ask: Any = [{"role": "user", "content": "hi"}]
    for asked, header, said in (("flex", ("X-Vertex-AI-LLM-Shared-Request-Type", "flex"), "flex"),
                                ("priority", ("X-Vertex-AI-LLM-Shared-Request-Type", "priority"), "priority"),
                                ("default", ("X-Vertex-AI-LLM-Request-Type", "shared"), "default")):
        raw = await client.chat.completions.with_raw_response.create(
            model="gemini-2.5-pro", messages=ask, service_tier=asked, metadata={"Team": "Search", "env": "prod-2"})
        assert "x-shieldes-dropped" not in raw.headers
        sent = fake.last()
        assert sent.headers[header[0]] == header[1] and sent.body["labels"] == {"team": "search", "env": "prod-2"}
        assert raw.parse().service_tier == said
        stream = await client.chat.completions.create(model="gemini-2.5-pro", messages=ask, service_tier=asked,
                                                      stream=True)
        chunks = [c async for c in stream]  # Vertex reports the tier with its last payload
        assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].service_tier == said
        assert fake.last().headers[header[0]] == header[1]
    # scale has no Vertex header: named; with the project's Provisioned Throughput serving, the answer says scale
    fake.provisioned = True
    raw = await client.chat.completions.with_raw_response.create(
        model="gemini-2.5-pro", messages=ask, service_tier="scale",
        metadata={"note": "caf\u00e9 & co", "Owner": "ada"})
    assert raw.headers["x-shieldes-dropped"] == "service_tier, metadata"
    assert "labels" not in fake.last().body and not any(k.lower().startswith("x-vertex") for k in fake.last().headers)
    assert raw.parse().service_tier == "scale"
    resp = await client.responses.create(model="gemini-2.5-pro", input="hi")
    assert resp.service_tier == "scale"  # served by the Provisioned Throughput, not the default echoed
    fake.provisioned = False
    resp = await client.responses.create(model="gemini-2.5-pro", input="hi", service_tier="flex")
    assert resp.service_tier == "flex" and fake.last().headers["X-Vertex-AI-LLM-Shared-Request-Type"] == "flex"
    claude = anthropic.AsyncAnthropic(base_url=node.base, api_key=client.api_key, max_retries=0)
    message = await claude.messages.create(model="gemini-2.5-pro", max_tokens=64, messages=ask)
    assert message.usage.service_tier == "standard"
    await claude.close()


async def test_json_schema_outside_googles_subset_is_fitted_to_it(node: Harness,
                                                                  google: tuple[FakeGoogle, Path]) -> None:
    """What MCP servers, pydantic and zod put in tool schemas and Google's Schema message refuses:
    keywords it lacks (`exclusiveMinimum`, `examples`, `const`), formats other than enum and
    date-time, `type` lists, and a tool without parameters (an object without properties)."""
    fake, _ = google
    client = oai(node, await new_key(node))
    ask: Any = [{"role": "user", "content": "book it"}]
    book: Any = {"type": "function", "function": {"name": "book", "parameters": {
        "$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "required": ["email", "seats"],
        "properties": {
            "email": {"type": "string", "format": "email", "examples": ["a@b.c"]},
            "when": {"type": "string", "format": "date-time"},
            "seats": {"type": "integer", "exclusiveMinimum": 0, "multipleOf": 1},
            "note": {"type": ["string", "null"]},
            "kind": {"const": "table"},
            "size": {"oneOf": [{"type": "integer"}, {"type": "string"}]}}}}}
    now: Any = {"type": "function", "function": {"name": "current_time", "parameters": {"type": "object",
                                                                                          "properties": {}}}}
    chat = await client.chat.completions.create(model="gemini-2.5-flash", messages=ask, tools=[book, now])
    assert chat.choices[0].message.tool_calls
    first, second = fake.last().body["tools"][0]["functionDeclarations"]
    assert first["parameters"] == {"type": "object", "required": ["email", "seats"], "properties": {
        "email": {"type": "string"}, "when": {"type": "string", "format": "date-time"}, "seats": {"type": "integer"},
        "note": {"type": "string", "nullable": True}, "kind": {"enum": ["table"]},
        "size": {"anyOf": [{"type": "integer"}, {"type": "string"}]}}}
    assert second == {"name": "current_time", "description": ""}  # no parameters at all


async def test_mcp_tool_schemas_google_refuses_are_fitted_for_a_messages_client(
        node: Harness, google: tuple[FakeGoogle, Path]) -> None:
    """Tool schemas as MCP servers write them, offered by Claude Code through a Gemini deployment
    (streamed): a `required` name the node does not define (Playwright's browser tools), an object
    in a type union (its properties and required belong to the object branch), properties on a
    node that is not an object. Google refuses each ("property is not defined", "only allowed for
    OBJECT type"); the translation leaves out what constrains nothing."""
    fake, _ = google
    fake.tool_text = "x"
    claude = anthropic.AsyncAnthropic(base_url=node.base, api_key=await new_key(node), max_retries=0)
    click: Any = {"name": "mcp__playwright__browser_click", "input_schema": {
        "type": "object", "properties": {"element": {"type": "string"}}, "required": ["element", "ref"],
        "additionalProperties": False, "$schema": "http://json-schema.org/draft-07/schema#"}}
    fill: Any = {"name": "mcp__forms__fill", "input_schema": {"type": "object", "required": ["form"], "properties": {
        "form": {"type": ["object", "null"], "properties": {"id": {"type": "string"}}, "required": ["id", "gone"]},
        "value": {"type": ["string", "object"], "properties": {"raw": {"type": "string"}}, "required": ["raw"]},
        "tag": {"type": "string", "properties": {}, "required": []}}}}
    async with claude.messages.stream(model="gemini-2.5-flash", max_tokens=1024, tools=[click, fill],
                                      messages=[{"role": "user", "content": "click it"}]) as stream:
        message = await stream.get_final_message()
    assert message.stop_reason == "tool_use" and message.content[0].type == "tool_use"
    first, second = fake.last().body["tools"][0]["functionDeclarations"]
    assert first["parameters"] == {"type": "object", "properties": {"element": {"type": "string"}},
                                   "required": ["element"]}
    assert second["parameters"]["properties"] == {
        "form": {"type": "object", "nullable": True, "properties": {"id": {"type": "string"}}, "required": ["id"]},
        "value": {"anyOf": [{"type": "string"},
                            {"type": "object", "properties": {"raw": {"type": "string"}}, "required": ["raw"]}]},
        "tag": {"type": "string"}}
    await claude.close()


async def test_google_counts_a_messages_requests_tokens_itself(node: Harness, google: tuple[FakeGoogle, Path]) -> None:
    """count_tokens on Gemini and Vertex deployments is Google's own countTokens of the request the
    Messages request becomes (a system instruction and tools inside a whole request for the Gemini
    API, as it wants them), not the estimate."""
    fake, _ = google
    claude = anthropic.AsyncAnthropic(base_url=node.base, api_key=await new_key(node), max_retries=0)
    messages: Any = [{"role": "user", "content": "count these five words please"}]
    for model, path in (("gemini-2.5-flash", "/v1beta/models/gemini-2.5-flash:countTokens"),
                        ("gemini-2.5-pro", "/v1/projects/proj-1/locations/us-central1/publishers/google/models/"
                                           "gemini-2.5-pro:countTokens")):
        raw = await claude.messages.with_raw_response.count_tokens(model=model, system="be brief and kind",
                                                                   messages=messages)
        assert (await raw.parse()).input_tokens == 5 + 4, model  # the fake counts words
        assert "x-shieldes-token-count" not in raw.headers
        sent = fake.last()
        assert sent.path == path
        counted = sent.body if model == "gemini-2.5-pro" else sent.body["generateContentRequest"]
        assert counted["systemInstruction"]["parts"] == [{"text": "be brief and kind"}], sent.body


async def test_gemini_3_parallel_calls_signed_once_go_back_as_they_came(
        node: Harness, google: tuple[FakeGoogle, Path]) -> None:
    """Gemini 3 signs calls made together once, on the first call part; the next turn must send the
    calls back in their order with that signature on the first (chat JSON and stream, Messages,
    Responses), their results together in one turn."""
    fake, _ = google
    fake.parallel_calls = True
    await node.admin(AddProvider("gem3", "gemini", fake.url + "/v1beta", "env:" + KEY_ENV, ("gemini-3-pro-preview",)))
    key = await new_key(node)
    model, ask = "gemini-3-pro-preview", {"role": "user", "content": "weather and time in Paris?"}
    clock: Any = {"type": "function", "function": {"name": "get_time", "parameters": WEATHER["function"]["parameters"]}}
    client = oai(node, key)

    def sent_back() -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = fake.last().body["contents"][1]["parts"]
        return parts

    for streamed in (False, True):
        if streamed:
            stream = await client.chat.completions.create(model=model, messages=[ask], tools=[WEATHER, clock],
                                                          stream=True)
            deltas = [t async for c in stream if c.choices and c.choices[0].delta.tool_calls
                      for t in c.choices[0].delta.tool_calls]
            calls = [{"id": d.id, "type": "function", "function": {"name": d.function.name,  # type: ignore[union-attr]
                                                                   "arguments": d.function.arguments}}  # type: ignore[union-attr]
                     for d in deltas if d.id]
        else:
            chat = await client.chat.completions.create(model=model, messages=[ask], tools=[WEATHER, clock])
            calls = [c.model_dump() for c in chat.choices[0].message.tool_calls or []]
        assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
        done = await client.chat.completions.create(model=model, tools=[WEATHER, clock], messages=[
            ask, {"role": "assistant", "tool_calls": calls},
            *({"role": "tool", "tool_call_id": c["id"], "content": "sunny"} for c in calls)])
        assert done.choices[0].message.content == "Hello from the fake Gemini"
        parts = sent_back()
        assert [p["functionCall"]["name"] for p in parts] == ["get_weather", "get_time"]
        assert parts[0]["thoughtSignature"] in fake.signatures and "thoughtSignature" not in parts[1]
        assert [p["functionResponse"]["name"] for p in fake.last().body["contents"][2]["parts"]] == [
            "get_weather", "get_time"]

    claude = anthropic.AsyncAnthropic(base_url=node.base, api_key=key, max_retries=0)
    tools: Any = [{"name": f["function"]["name"], "input_schema": f["function"]["parameters"]}
                  for f in (WEATHER, clock)]
    async with claude.messages.stream(model=model, max_tokens=100, tools=tools, messages=[ask]) as s:
        uses = (await s.get_final_message()).content
    reply = await claude.messages.create(model=model, max_tokens=100, tools=tools, messages=[
        ask, {"role": "assistant", "content": [u.model_dump(exclude_none=True) for u in uses]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": u.id, "content": "sunny"}  # type: ignore[union-attr]
                                     for u in uses]}])
    assert reply.content[0].text == "Hello from the fake Gemini"  # type: ignore[union-attr]
    assert sent_back()[0]["thoughtSignature"] in fake.signatures

    functions: Any = [{"type": "function", "name": f["function"]["name"], "parameters": f["function"]["parameters"],
                       "strict": False} for f in (WEATHER, clock)]
    first = await client.responses.create(model=model, input="weather and time in Paris?", tools=functions)
    outputs: Any = [{"type": "function_call_output", "call_id": o.call_id, "output": "sunny"}  # type: ignore[union-attr]
                    for o in first.output if o.type == "function_call"]
    assert len(outputs) == 2
    second = await client.responses.create(model=model, previous_response_id=first.id, input=outputs, tools=functions)
    assert second.output_text == "Hello from the fake Gemini"
    assert sent_back()[0]["thoughtSignature"] in fake.signatures


async def test_a_turn_gemini_ends_on_a_malformed_call_is_an_error(node: Harness,
                                                                   google: tuple[FakeGoogle, Path]) -> None:
    """finishReason MALFORMED_FUNCTION_CALL (UNEXPECTED_TOOL_CALL, TOO_MANY_TOOL_CALLS): the model
    could not make its function call, and the answer read as a finished "stop" with no call. It
    is now an error in the client's API (502 `malformed_model_output`; streamed, the error event
    after what came), as Bedrock's malformed stop reasons are."""
    fake, _ = google
    client = oai(node, await new_key(node))
    hello: Any = [{"role": "user", "content": "hello"}]
    fake.finish_reasons.append("MALFORMED_FUNCTION_CALL")
    with pytest.raises(openai.APIStatusError) as failed:
        await client.chat.completions.create(model="gemini-2.5-flash", messages=hello)
    assert failed.value.status_code == 502 and failed.value.code == "malformed_model_output"
    assert "MALFORMED_FUNCTION_CALL" in failed.value.message
    fake.finish_reasons.append("UNEXPECTED_TOOL_CALL")
    with pytest.raises(openai.APIError) as broke:
        stream = await client.chat.completions.create(model="gemini-2.5-flash", messages=hello, stream=True)
        async for _ in stream:
            pass
    assert "UNEXPECTED_TOOL_CALL" in broke.value.message
    answer = await client.chat.completions.create(model="gemini-2.5-flash", messages=hello)
    assert answer.choices[0].finish_reason == "stop"
