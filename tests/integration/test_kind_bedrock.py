"""`bedrock` deployments through a real node and the official SDKs, against a fake Bedrock runtime
that checks each request's SigV4 signature with botocore and streams AWS event-stream frames."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import openai
import psycopg
import pydantic
import pytest
from botocore.eventstream import EventStreamBuffer

from shieldes.projections.shared_commands import AddProvider
from tests.fake_bedrock import ACCESS_KEY, FakeBedrock, aws_credentials, event, exception
from tests.integration.gateway_harness import Harness, harness, wait_until

CLAUDE = "anthropic.claude-3-5-sonnet-20240620-v1:0"
LLAMA = "meta.llama3-1-70b-instruct-v1:0"
WEATHER: Any = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}
PIXEL = "data:image/png;base64,iVBORw0KGgo="


def test_event_stream_frames_decode_with_botocore() -> None:
    buffer = EventStreamBuffer()
    data = event("contentBlockDelta", {"delta": {"text": "hi"}}) + exception("throttlingException", "slow down")
    buffer.add_data(data[:10])
    assert list(buffer) == []
    buffer.add_data(data[10:])
    first, second = list(buffer)
    assert first.headers[":event-type"] == "contentBlockDelta"
    assert json.loads(first.payload) == {"delta": {"text": "hi"}}
    assert second.headers[":message-type"] == "exception" and second.headers[":exception-type"] == "throttlingException"


@pytest.fixture
def aws_env() -> Iterator[None]:
    with aws_credentials():
        yield


@pytest.fixture
async def node(database_url: str, aws_env: None) -> AsyncIterator[tuple[Harness, FakeBedrock]]:
    async with FakeBedrock(region="eu-west-1") as fake, harness(database_url, providers=False,
                                                                upstream_retries=0) as h:
        await h.admin(AddProvider("br", "bedrock", fake.url, None,
                                  (CLAUDE, "meta.llama3-1-70b-instruct-v1:0", "amazon.titan-embed-text-v2:0"),
                                  options={"region": "eu-west-1"}))
        await h.sync()
        yield h, fake


async def client_for(h: Harness) -> openai.AsyncOpenAI:
    secret = await h.create_key("app")
    await h.sync()
    return openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)


async def test_bedrock_converse_stream_tools_images_signed(node: tuple[Harness, FakeBedrock]) -> None:
    h, fake = node
    client = await client_for(h)
    messages: Any = [{"role": "system", "content": "be brief"},
                     {"role": "user", "content": [{"type": "text", "text": "what is this"},
                                                  {"type": "image_url", "image_url": {"url": PIXEL}}]}]
    chat = await client.chat.completions.create(model=CLAUDE, messages=messages, max_tokens=64, temperature=0.2)
    assert chat.choices[0].message.content == "Hello from the fake Bedrock"
    assert chat.usage is not None and (chat.usage.prompt_tokens, chat.usage.completion_tokens) == (5, 5)
    assert chat.usage.prompt_tokens_details is None  # no cache breakpoint, nothing cached
    sent = fake.last()
    assert sent.path == "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    assert sent.headers["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
    assert sent.body["system"] == [{"text": "be brief"}]
    assert sent.body["inferenceConfig"] == {"maxTokens": 64, "temperature": 0.2}
    assert sent.body["messages"][0]["content"][1] == {"image": {"format": "png",
                                                                "source": {"bytes": "iVBORw0KGgo="}}}

    stream = await client.chat.completions.create(model="meta.llama3-1-70b-instruct-v1:0", messages=messages,
                                                  stream=True, stream_options={"include_usage": True}, max_tokens=3)
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from the"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    assert fake.last().path.endswith("/converse-stream")

    ask: Any = [{"role": "user", "content": "weather in Paris?"}]
    tool = await client.chat.completions.create(model=CLAUDE, messages=ask, tools=[WEATHER], tool_choice="required")
    call = tool.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert tool.choices[0].finish_reason == "tool_calls" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert fake.last().body["toolConfig"]["toolChoice"] == {"any": {}}
    follow: Any = [*ask, tool.choices[0].message.model_dump(exclude_none=True),
                   {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    done = await client.chat.completions.create(model=CLAUDE, messages=follow, tools=[WEATHER])
    assert done.choices[0].finish_reason == "stop"
    assert fake.last().body["messages"][-1] == {"role": "user", "content": [
        {"toolResult": {"toolUseId": call.id, "content": [{"text": "sunny"}], "status": "success"}}]}
    stream = await client.chat.completions.create(model=CLAUDE, messages=ask, tools=[WEATHER], stream=True)
    deltas = [c.choices[0].delta for c in [c async for c in stream] if c.choices]
    args = "".join(d.tool_calls[0].function.arguments or ""
                   for d in deltas if d.tool_calls and d.tool_calls[0].function)
    assert json.loads(args) == {"city": "Paris"}

    guarded = await client.chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": "BLOCKME"}])
    assert guarded.choices[0].finish_reason == "content_filter"

    await h.flush()
    assert h.usage_totals()["app"][:3] == (6, 5 + 5 + 3 + 3 + 3 + 1, 5 + 3 + 5 + 5 + 5 + 2)


class Person(pydantic.BaseModel):
    name: str
    age: int


async def test_bedrock_structured_output_through_the_sdk_parse_helpers(node: tuple[Harness, FakeBedrock]) -> None:
    """A json_schema response_format (chat) or text.format (Responses) becomes Converse's
    outputConfig.textFormat; the model's JSON comes back as the message text, so parse() works."""
    h, fake = node
    client = await client_for(h)
    ask: Any = [{"role": "user", "content": "who is it?"}]
    parsed = await client.chat.completions.parse(model=CLAUDE, messages=ask, response_format=Person)
    assert parsed.choices[0].message.parsed == Person(name="test", age=1)
    assert parsed.choices[0].finish_reason == "stop" and not parsed.choices[0].message.tool_calls
    fmt = fake.last().body["outputConfig"]["textFormat"]
    assert fmt["type"] == "json_schema" and fmt["structure"]["jsonSchema"]["name"] == "Person"
    assert json.loads(fmt["structure"]["jsonSchema"]["schema"])["required"] == ["name", "age"]

    async with client.chat.completions.stream(model=CLAUDE, messages=ask, response_format=Person) as stream:
        final = await stream.get_final_completion()
    assert final.choices[0].message.parsed == Person(name="test", age=1)
    assert fake.last().path.endswith("/converse-stream") and "outputConfig" in fake.last().body

    resp = await client.responses.parse(model=CLAUDE, input="who is it?", text_format=Person)
    assert resp.output_parsed == Person(name="test", age=1)
    assert "textFormat" in fake.last().body["outputConfig"]

    # json_object: Converse has no schema-less JSON mode; a forced tool's input is the answer
    obj = await client.chat.completions.create(model=CLAUDE, messages=ask, response_format={"type": "json_object"})
    assert json.loads(obj.choices[0].message.content or "") == {"city": "Paris"}
    assert obj.choices[0].finish_reason == "stop" and not obj.choices[0].message.tool_calls
    assert fake.last().body["toolConfig"]["toolChoice"] == {"tool": {"name": "shieldes_json_answer"}}
    stream = await client.chat.completions.create(model=CLAUDE, messages=ask, stream=True,
                                                  response_format={"type": "json_object"})
    deltas = [c.choices[0] for c in [c async for c in stream] if c.choices]
    assert json.loads("".join(d.delta.content or "" for d in deltas)) == {"city": "Paris"}
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["stop"]
    assert not any(d.delta.tool_calls for d in deltas)
    llama = await client.chat.completions.create(model="meta.llama3-1-70b-instruct-v1:0", messages=ask,
                                                 response_format={"type": "json_object"})
    assert "toolConfig" not in fake.last().body and llama.choices[0].finish_reason == "stop"  # Llama: no toolChoice

    with pytest.raises(openai.BadRequestError, match=r"json_schema\.schema"):
        await client.chat.completions.create(model=CLAUDE, messages=ask, response_format={
            "type": "json_schema", "json_schema": {"name": "x"}})  # type: ignore[typeddict-item]


async def test_bedrock_titan_embeddings_and_anthropic_sdk(node: tuple[Harness, FakeBedrock]) -> None:
    h, fake = node
    client = await client_for(h)
    emb = await client.embeddings.create(model="amazon.titan-embed-text-v2:0", input=["one two", "three"])
    assert [d.embedding for d in emb.data] == [[0.5, 2.0], [0.5, 1.0]] and emb.usage.prompt_tokens == 3
    assert fake.last().path == "/model/amazon.titan-embed-text-v2%3A0/invoke"
    with pytest.raises(openai.BadRequestError, match="Titan") as refused:
        await client.embeddings.create(model=CLAUDE, input="x")
    assert refused.value.param == "model"

    claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=client.api_key, max_retries=0)
    msg = await claude.messages.create(model=CLAUDE, max_tokens=100,
                                       messages=[{"role": "user", "content": "say hello"}])
    assert msg.content[0].text == "Hello from the fake Bedrock"  # type: ignore[union-attr]
    assert (msg.usage.input_tokens, msg.usage.cache_read_input_tokens or 0, msg.usage.output_tokens) == (2, 0, 5)
    async with claude.messages.stream(model=CLAUDE, max_tokens=100,
                                      messages=[{"role": "user", "content": "say hello"}]) as s:
        final = await s.get_final_message()
    assert final.content[0].text == "Hello from the fake Bedrock"  # type: ignore[union-attr]


async def test_bedrock_answers_each_have_an_id_of_their_own(node: tuple[Harness, FakeBedrock]) -> None:
    # Converse sends no id: each answer gets a fresh one (clients tell answers and messages apart by
    # it), in OpenAI's `chatcmpl-` form, and a Messages client's `msg_` id differs per message too
    h, _ = node
    client = await client_for(h)
    ask: Any = [{"role": "user", "content": "say hello"}]
    ids = [(await client.chat.completions.create(model=LLAMA, messages=ask)).id for _ in range(2)]
    for _ in range(2):
        chunks = [c async for c in await client.chat.completions.create(model=CLAUDE, messages=ask, stream=True)]
        assert len({c.id for c in chunks}) == 1
        ids.append(chunks[0].id)
    assert len(set(ids)) == 4 and all(i.startswith("chatcmpl-") for i in ids), ids
    claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=client.api_key, max_retries=0)
    msg = await claude.messages.create(model=CLAUDE, max_tokens=100, messages=ask)
    async with claude.messages.stream(model=CLAUDE, max_tokens=100, messages=ask) as s:
        streamed = await s.get_final_message()
    assert msg.id != streamed.id and msg.id.startswith("msg_") and streamed.id.startswith("msg_")


async def test_bedrock_stop_sequence_reaches_a_messages_client(node: tuple[Harness, FakeBedrock]) -> None:
    """Converse says which stop sequence ended the answer (asked for with
    additionalModelResponseFieldPaths); a Messages client gets stop_reason stop_sequence and the
    sequence, as from Anthropic itself, streamed or not."""
    h, fake = node
    client = await client_for(h)
    claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=client.api_key, max_retries=0)
    ask: Any = {"model": CLAUDE, "max_tokens": 100, "messages": [{"role": "user", "content": "say hello"}],
                "stop_sequences": ["Bedrock", "fake"]}
    msg = await claude.messages.create(**ask)
    assert (msg.stop_reason, msg.stop_sequence) == ("stop_sequence", "fake")
    assert msg.content[0].text == "Hello from the"  # type: ignore[union-attr]
    sent = fake.last().body
    assert sent["inferenceConfig"]["stopSequences"] == ["Bedrock", "fake"]
    assert sent["additionalModelResponseFieldPaths"] == ["/stop_sequence"]
    async with claude.messages.stream(**ask) as s:
        final = await s.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "fake")
    plain = await claude.messages.create(model=CLAUDE, max_tokens=100,
                                         messages=[{"role": "user", "content": "say hello"}])
    assert (plain.stop_reason, plain.stop_sequence) == ("end_turn", None)
    assert "additionalModelResponseFieldPaths" not in fake.last().body
    chat = await client.chat.completions.create(model=CLAUDE, messages=ask["messages"], stop=["fake"])
    assert chat.choices[0].finish_reason == "stop" and chat.choices[0].message.content == "Hello from the"


async def test_bedrock_non_claude_stop_sequence_is_named_only_when_it_is_known(
        node: tuple[Harness, FakeBedrock]) -> None:
    """A model that does not name the matched sequence (only `stopReason: stop_sequence`): with one
    stop sequence asked for, that is the one; with several, which one matched is not known, and
    the answer says end_turn rather than a guess."""
    h, _fake = node
    client = await client_for(h)
    claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=client.api_key, max_retries=0)
    llama = "meta.llama3-1-70b-instruct-v1:0"
    for stops, expected in ((["fake"], ("stop_sequence", "fake")), (["Bedrock", "fake"], ("end_turn", None))):
        ask: Any = {"model": llama, "max_tokens": 100, "messages": [{"role": "user", "content": "say hello"}],
                    "stop_sequences": stops}
        msg = await claude.messages.create(**ask)
        assert (msg.stop_reason, msg.stop_sequence) == expected
        assert msg.content[0].text == "Hello from the"  # type: ignore[union-attr]
        async with claude.messages.stream(**ask) as s:
            final = await s.get_final_message()
        assert (final.stop_reason, final.stop_sequence) == expected
    chat = await client.chat.completions.create(model=llama, messages=ask["messages"], stop=["fake"])
    assert chat.choices[0].finish_reason == "stop" and (chat.choices[0].model_extra or {})["stop_reason"] == "fake"


async def test_bedrock_errors_are_mapped(node: tuple[Harness, FakeBedrock]) -> None:
    h, fake = node
    client = await client_for(h)
    hello: Any = [{"role": "user", "content": "hello"}]
    fake.failures.append(429)
    with pytest.raises(openai.RateLimitError) as limited:
        await client.chat.completions.create(model=CLAUDE, messages=hello)
    assert limited.value.code == "rate_limit_exceeded"
    fake.stream_exceptions.append("throttlingException")
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model=CLAUDE, messages=hello, stream=True)
    fake.failures.append(424)  # ModelErrorException: the model failed on a request it took, as a 5xx says
    with pytest.raises(openai.APIStatusError) as failed:
        await client.chat.completions.create(model=CLAUDE, messages=hello)
    assert failed.value.status_code == 502 and failed.value.code == "upstream_error", failed.value
    fake.max_prompt = 2
    with pytest.raises(openai.BadRequestError) as too_long:
        await client.chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": "a b c"}])
    assert too_long.value.code == "context_length_exceeded" and "Input is too long" in too_long.value.message
    fake.max_prompt = 1000
    fake.region = "us-west-2"  # the gateway signs for eu-west-1: the fake's re-signing no longer matches
    with pytest.raises(openai.APIStatusError) as refused:
        await client.chat.completions.create(model=CLAUDE, messages=hello)
    assert refused.value.status_code == 502 and "credentials" in refused.value.message


async def test_bedrock_prompt_caching_from_cache_control_billed_at_the_shipped_cache_prices(
        node: tuple[Harness, FakeBedrock]) -> None:
    """`cache_control` marks (Anthropic SDK blocks, or OpenAI-format parts as LiteLLM takes them)
    become Converse `cachePoint` blocks; the first call writes the prefix, later ones read it, and
    CLAUDE's shipped prices bill them: per 1M $3 input, $3.75 cache write, $0.30 cache read, $15
    output (nUSD per token 3000, 3750, 300, 15000)."""
    h, fake = node
    client = await client_for(h)
    claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=client.api_key, max_retries=0)
    system: Any = [{"type": "text", "text": "You answer questions about the weather in Paris",  # 8 words
                    "cache_control": {"type": "ephemeral"}}]
    first = await claude.messages.create(model=CLAUDE, max_tokens=50, system=system,
                                         messages=[{"role": "user", "content": "sunny today?"}])
    assert fake.last().body["system"] == [{"text": system[0]["text"]}, {"cachePoint": {"type": "default"}}]
    assert (first.usage.input_tokens, first.usage.cache_creation_input_tokens,
            first.usage.cache_read_input_tokens) == (2, 8, 0)
    async with claude.messages.stream(model=CLAUDE, max_tokens=50, system=system,
                                      messages=[{"role": "user", "content": "rain tomorrow?"}]) as s:
        second = await s.get_final_message()
    assert (second.usage.input_tokens, second.usage.cache_read_input_tokens) == (2, 8)

    # the same breakpoint in OpenAI format (a text part's cache_control), on the last user turn
    marked: Any = [{"role": "system", "content": system[0]["text"]},
                   {"role": "user", "content": [{"type": "text", "text": "wind now?",
                                                 "cache_control": {"type": "ephemeral"}}]}]
    chat = await client.chat.completions.create(model=CLAUDE, messages=marked)
    assert fake.last().body["messages"][0]["content"] == [{"text": "wind now?"}, {"cachePoint": {"type": "default"}}]
    assert chat.usage is not None and chat.usage.prompt_tokens == 10  # 10 written, none read yet

    await h.flush()
    cost = (2 * 3000 + 8 * 3750 + 5 * 15000) + (2 * 3000 + 8 * 300 + 5 * 15000) + (10 * 3750 + 5 * 15000)
    assert h.usage_totals()["app"] == (3, 30, 15, cost)


async def test_bedrock_tool_choice_none_n_and_parallel_calls_are_never_ignored_in_silence(
        node: tuple[Harness, FakeBedrock]) -> None:
    """Converse has no tool choice `none`, no `n` and no switch for parallel calls: `none` kept the
    tools on offer (the model called one), `n: 2` answered one choice and `parallel_tool_calls:
    false` vanished, all without a word. Claude takes the switch in its own `tool_choice`."""
    h, fake = node
    client = await client_for(h)
    ask: Any = [{"role": "user", "content": "weather in Paris?"}]
    raw = await client.chat.completions.with_raw_response.create(model=CLAUDE, messages=ask, tools=[WEATHER],
                                                                 tool_choice="none")
    chat = raw.parse()
    assert chat.choices[0].message.content == "Hello from the fake Bedrock" and not chat.choices[0].message.tool_calls
    assert "toolConfig" not in fake.last().body and "x-shieldes-dropped" not in raw.headers
    called: Any = {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {
        "name": "get_weather", "arguments": "{}"}}]}
    history: Any = [*ask, called, {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                    {"role": "user", "content": "and tomorrow?"}]
    raw = await client.chat.completions.with_raw_response.create(model=CLAUDE, messages=history, tools=[WEATHER],
                                                                 tool_choice="none")
    assert raw.headers["x-shieldes-dropped"] == "tool_choice.none"  # Converse needs the tools with tool use
    assert fake.last().body["toolConfig"]["tools"][0]["toolSpec"]["name"] == "get_weather"

    raw = await client.chat.completions.with_raw_response.create(model=LLAMA, messages=ask, tools=[WEATHER],
                                                                 parallel_tool_calls=False)
    assert raw.headers["x-shieldes-dropped"] == "parallel_tool_calls"
    assert "additionalModelRequestFields" not in fake.last().body
    sent = len(fake.requests)
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as err:
            await client.chat.completions.create(model=CLAUDE, messages=ask, n=2, stream=stream)  # type: ignore[call-overload]
        assert "`n` > 1 is not supported by this deployment" in err.value.message
    assert len(fake.requests) == sent


async def test_bedrock_claude_parallel_tool_calls_off_is_claudes_own_tool_choice(
        node: tuple[Harness, FakeBedrock]) -> None:
    """`parallel_tool_calls: false` was named as dropped on a Claude model, which went on calling
    two tools at once: Converse's toolConfig cannot say it, Claude's own tool_choice in
    additionalModelRequestFields can (Bedrock merges it over the toolChoice it builds)."""
    h, fake = node
    client = await client_for(h)
    ask: Any = [{"role": "user", "content": "weather and time in Paris?"}]
    clock: Any = {"type": "function", "function": {"name": "get_time", "parameters": WEATHER["function"]["parameters"]}}
    both = await client.chat.completions.create(model=CLAUDE, messages=ask, tools=[WEATHER, clock])
    assert [c.function.name for c in both.choices[0].message.tool_calls or []] == ["get_weather", "get_time"]

    for choice, extra in ((None, {"type": "auto", "disable_parallel_tool_use": True}),
                          ("required", {"disable_parallel_tool_use": True})):
        for stream in (False, True):
            kwargs: Any = {"tool_choice": choice} if choice else {}
            raw = await client.chat.completions.with_raw_response.create(
                model=CLAUDE, messages=ask, tools=[WEATHER, clock], parallel_tool_calls=False, stream=stream, **kwargs)
            assert "x-shieldes-dropped" not in raw.headers
            assert fake.last().body["additionalModelRequestFields"] == {"tool_choice": extra}
            if stream:
                names = [t.function.name async for c in raw.parse() if c.choices
                         for t in c.choices[0].delta.tool_calls or [] if t.function and t.function.name]
            else:
                names = [c.function.name for c in raw.parse().choices[0].message.tool_calls or []]
            assert names == ["get_weather"]

    secret = await h.create_key("claude-app")
    await h.sync()
    claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
    tools: Any = [{"name": n, "input_schema": WEATHER["function"]["parameters"]} for n in ("get_weather", "get_time")]
    raw = await claude.messages.with_raw_response.create(
        model=CLAUDE, max_tokens=50, messages=[{"role": "user", "content": "weather?"}], tools=tools,
        tool_choice={"type": "any", "disable_parallel_tool_use": True})
    assert "x-shieldes-dropped" not in raw.headers
    assert [b.name for b in (await raw.parse()).content if b.type == "tool_use"] == ["get_weather"]
    assert fake.last().body["toolConfig"]["toolChoice"] == {"any": {}}
    await claude.close()


async def test_bedrock_service_tier_and_metadata_are_bedrocks_own_or_named(node: tuple[Harness, FakeBedrock]) -> None:
    """`service_tier` and `metadata` vanished without a word: Converse has the same tiers
    (serviceTier default, priority, flex) and tags for its invocation logs (requestMetadata)."""
    h, fake = node
    client = await client_for(h)
    ask: Any = [{"role": "user", "content": "hi"}]
    for stream in (False, True):
        raw = await client.chat.completions.with_raw_response.create(
            model=CLAUDE, messages=ask, stream=stream, service_tier="priority",
            metadata={"team": "search", "ticket": "T-1/2"})
        assert "x-shieldes-dropped" not in raw.headers
        sent = fake.last().body
        assert sent["serviceTier"] == {"type": "priority"}
        assert sent["requestMetadata"] == {"team": "search", "ticket": "T-1/2"}
    raw = await client.chat.completions.with_raw_response.create(
        model=CLAUDE, messages=ask, service_tier="scale", metadata={"note": "caf\u00e9 & co"})
    assert raw.headers["x-shieldes-dropped"] == "service_tier, metadata"
    assert "serviceTier" not in fake.last().body and "requestMetadata" not in fake.last().body


async def test_bedrock_answer_says_the_tier_that_served_it(node: tuple[Harness, FakeBedrock]) -> None:
    """Converse says the tier that served a call (`serviceTier` in its answer, and in the stream's
    last event, `metadata`); chat clients got no `service_tier`, Messages clients no
    `usage.service_tier`. `reserved` capacity is OpenAI's `scale`; a call whose answer says no tier
    says none."""
    h, fake = node
    client = await client_for(h)
    ask: Any = [{"role": "user", "content": "hi"}]
    for asked, said in (("priority", "priority"), ("flex", "flex"), (None, "default")):
        tier: Any = {"service_tier": asked} if asked else {}
        chat = await client.chat.completions.create(model=CLAUDE, messages=ask, **tier)
        assert chat.service_tier == said
        stream = await client.chat.completions.create(model=CLAUDE, messages=ask, stream=True, **tier)
        chunks = [c async for c in stream]  # no usage chunk asked for: the finish chunk says it
        assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].service_tier == said
    fake.served_tier = "reserved"
    assert (await client.chat.completions.create(model=LLAMA, messages=ask)).service_tier == "scale"
    fake.served_tier = None
    assert (await client.chat.completions.create(model=LLAMA, messages=ask)).service_tier is None
    fake.served_tier = "asked"
    claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=client.api_key, max_retries=0)
    message = await claude.messages.create(model=CLAUDE, max_tokens=64, messages=ask)
    assert message.usage.service_tier == "standard"
    # streamed, the tier comes at the end: message_delta's usage says it (message_start cannot)
    events = [e async for e in await claude.messages.create(model=CLAUDE, max_tokens=64, messages=ask, stream=True)]
    delta = next(e for e in events if e.type == "message_delta")
    assert getattr(delta.usage, "service_tier", None) == "standard"
    await claude.close()


async def test_bedrock_streamed_call_without_arguments_is_an_empty_object(node: tuple[Harness, FakeBedrock]) -> None:
    """A call of a tool without parameters streams no argument text: chat clients got `arguments:
    ""` (OpenAI sends "{}"), which `json.loads` refuses."""
    h, _fake = node
    client = await client_for(h)
    now: Any = {"type": "function", "function": {"name": "current_time",
                                                 "parameters": {"type": "object", "properties": {}}}}
    stream = await client.chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": "time?"}],
                                                  tools=[now], stream=True)
    calls = [t async for c in stream if c.choices for t in c.choices[0].delta.tool_calls or []]
    assert calls[0].function is not None and calls[0].function.name == "current_time"
    assert json.loads("".join(c.function.arguments or "" for c in calls if c.function)) == {}


async def test_bedrock_messages_client_hears_its_own_field_named_as_dropped(node: tuple[Harness, FakeBedrock]) -> None:
    """A Messages client's `disable_parallel_tool_use` was named `parallel_tool_calls` (the chat
    name it had on the way) in x-shieldes-dropped (a model other than Claude cannot take it)."""
    h, _fake = node
    secret = await h.create_key("claude-app")
    await h.sync()
    claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
    raw = await claude.messages.with_raw_response.create(
        model=LLAMA, max_tokens=50, messages=[{"role": "user", "content": "weather?"}],
        tools=[{"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]}],
        tool_choice={"type": "any", "disable_parallel_tool_use": True})
    assert raw.headers["x-shieldes-dropped"] == "tool_choice.disable_parallel_tool_use"
    assert (await raw.parse()).stop_reason == "tool_use"
    await claude.close()


async def test_bedrock_counts_a_messages_requests_tokens_itself(node: tuple[Harness, FakeBedrock]) -> None:
    """count_tokens (Claude Code asks before long turns) is Bedrock's own CountTokens count of the
    Converse request, signed as every call; a model Bedrock cannot count gets the estimate."""
    h, fake = node
    client = await client_for(h)
    claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=client.api_key, max_retries=0)
    messages: list[Any] = [{"role": "user", "content": "count these five words please"},
                           {"role": "assistant", "content": "sure"}, {"role": "user", "content": "now"}]
    raw = await claude.messages.with_raw_response.count_tokens(model=CLAUDE, system="be brief and kind",
                                                               messages=messages)
    counted = await raw.parse()
    sent = fake.last()
    assert sent.path == f"/model/{CLAUDE.replace(':', '%3A')}/count-tokens"
    converse = sent.body["input"]["converse"]
    assert [m["role"] for m in converse["messages"]] == ["user", "assistant", "user"]
    assert converse["system"] == [{"text": "be brief and kind"}] and "inferenceConfig" not in converse
    assert counted.input_tokens == 5 + 1 + 1 + 4  # the fake counts words, unlike the estimate
    assert "x-shieldes-token-count" not in raw.headers
    llama = await claude.messages.with_raw_response.count_tokens(model="meta.llama3-1-70b-instruct-v1:0",
                                                                 messages=messages)
    assert llama.headers["x-shieldes-token-count"] == "estimate" and (await llama.parse()).input_tokens > 0


async def test_bedrock_exception_midway_reaches_each_api_in_its_shape_and_bills_what_streamed(
        node: tuple[Harness, FakeBedrock]) -> None:
    """ConverseStream reports a model failing after some text as a modelStreamErrorException frame
    (no messageStop, no metadata): the chat client reads the text, then an error; the Messages
    client an `error` event; the tokens already streamed are billed."""
    h, fake = node
    client = await client_for(h)
    fake.reply_words, fake.exception_after = 8, 3
    text = []
    with pytest.raises(openai.APIError) as broken:
        stream = await client.chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": "hi"}],
                                                      stream=True, stream_options={"include_usage": True})
        async for chunk in stream:
            text += [chunk.choices[0].delta.content or ""] if chunk.choices else []
    assert "".join(text) == "Hello from the" and "modelStreamErrorException" in broken.value.message
    secret = await h.create_key("messages")
    await h.sync()
    claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
    fake.exception_after = 3
    seen = []
    with pytest.raises(anthropic.APIStatusError) as error_event:
        async with claude.messages.stream(model=CLAUDE, max_tokens=100,
                                          messages=[{"role": "user", "content": "hi"}]) as events:
            async for e in events:
                seen.append(e.type)
    assert seen.count("text") == 3 and "modelStreamErrorException" in error_event.value.message
    await h.flush()
    totals = h.usage_totals()
    assert totals["app"][2] >= 3 and totals["messages"][2] >= 3 and totals["app"][3] > 0


async def test_a_turn_bedrock_ends_malformed_is_an_error_counted_in_the_request_log(
        node: tuple[Harness, FakeBedrock]) -> None:
    """Bedrock's stop reasons `malformed_model_output` and `malformed_tool_use` (the model could not
    finish its answer, or a tool call's input, well-formed) read as a normal "stop": the client
    took a broken turn for a finished one. It is now an error in the client's API (a 502
    `malformed_model_output`; mid-stream, an error event after what was streamed, its usage
    billed), and the request log counts it under that code."""
    h, fake = node
    client = await client_for(h)
    hello: Any = [{"role": "user", "content": "hello"}]
    fake.stop_reasons.append("malformed_tool_use")
    with pytest.raises(openai.APIStatusError) as failed:
        await client.chat.completions.create(model=CLAUDE, messages=hello)
    assert failed.value.status_code == 502 and failed.value.code == "malformed_model_output"
    assert "malformed_tool_use" in failed.value.message
    fake.stop_reasons.append("malformed_model_output")
    ant = anthropic.AsyncAnthropic(base_url=h.base, api_key=client.api_key, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as broke:
        async with ant.messages.stream(model=CLAUDE, max_tokens=100, messages=hello) as stream:
            async for _ in stream:
                pass
    assert broke.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert "malformed_model_output" in broke.value.message
    writer = h.node.request_log
    assert writer is not None
    await wait_until(lambda: writer.buffer.added >= 2, timeout=10)
    assert await writer.flush_all(10)
    with psycopg.connect(h.database_url, autocommit=True) as conn:
        rows = conn.execute("SELECT status, error_code, stream, completion_tokens FROM request_log "
                            "WHERE route <> '/metrics' ORDER BY started_at").fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [(502, "malformed_model_output", False),
                                                  (200, "malformed_model_output", True)]
    assert rows[1][3] > 0  # (the streamed turn's usage, as Bedrock reported it)


async def test_a_responses_stream_bedrock_ends_malformed_fails_and_is_counted(
        node: tuple[Harness, FakeBedrock]) -> None:
    """A Responses stream (translated to Converse) whose turn Bedrock ends malformed ends with
    `response.failed`; the request log counted it as a finished stream, with no error code (a
    Responses stream broken mid-way did not count as one either). It is logged under
    `malformed_model_output`."""
    h, fake = node
    client = await client_for(h)
    fake.stop_reasons.append("malformed_tool_use")
    with pytest.raises(openai.APIError) as failed:  # (the SDK raises the `error` event before response.failed)
        async for _ in await client.responses.create(model=CLAUDE, input="hello", stream=True):
            pass
    assert "malformed_tool_use" in failed.value.message
    writer = h.node.request_log
    assert writer is not None
    await wait_until(lambda: writer.buffer.added >= 1, timeout=10)
    assert await writer.flush_all(10)
    with psycopg.connect(h.database_url, autocommit=True) as conn:
        rows = conn.execute("SELECT status, error_code, stream FROM request_log WHERE route <> '/metrics'").fetchall()
    assert rows == [(200, "malformed_model_output", True)]
