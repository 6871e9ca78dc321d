"""POST /v1/responses through the openai SDK against a real node: JSON and typed event streams in
both upstream modes (translate via chat completions or Messages, native pass-through), function
tools, structured output, governance (usage, cost, budgets) on the route."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import openai
import pydantic
import pytest

from shieldes.projections.shared_commands import AddProvider, SetPricing, UpdateProvider
from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import UPSTREAM_KEY, UPSTREAM_KEY_ENV, harness
from tests.responses_schema import check_event, check_response

TOOLS: list[Any] = [{
    "type": "function", "name": "get_weather", "description": "weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                   "additionalProperties": False},
    "strict": True,
}]
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-3-5-haiku-latest")


class Person(pydantic.BaseModel):
    name: str
    age: int


def oai(base: str, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base + "/v1", api_key=key, max_retries=0)


async def _events(client: openai.AsyncOpenAI, **kw: Any) -> list[Any]:
    stream = await client.responses.create(stream=True, **kw)
    return [e async for e in stream]


@pytest.mark.parametrize("mode", ["translate", "native"])
async def test_json_and_stream_with_tools_in_both_modes(database_url: str, mode: str) -> None:
    async with harness(database_url) as h:
        if mode == "native":
            await h.admin(UpdateProvider("openai", responses="native"))
        await h.admin(SetPricing("gpt-4o", 2.0, 8.0))
        secret = await h.create_key("app", models=MODELS)
        await h.sync()
        client = oai(h.base, secret)
        upstream_path = "/v1/responses" if mode == "native" else "/v1/chat/completions"

        resp = await client.responses.create(model="gpt-4o", input="say hello to me", instructions="be brief",
                                             metadata={"ticket": "42"}, temperature=0.5)
        assert resp.output_text == "Hello from the fake upstream"
        assert resp.status == "completed" and resp.usage is not None
        assert resp.usage.input_tokens == 6 and resp.usage.output_tokens == 5 and resp.usage.total_tokens == 11
        assert resp.usage.input_tokens_details.cached_tokens == 0
        assert resp.usage.output_tokens_details.reasoning_tokens == 0
        assert resp.metadata == {"ticket": "42"} and resp.temperature == 0.5
        raw = resp.model_dump(mode="json", exclude_unset=True)
        check_response(raw)
        sent = h.upstream.last(upstream_path).body
        if mode == "native":
            assert sent["input"][0]["content"][0] == {"type": "input_text", "text": "say hello to me"}
            assert sent["instructions"] == "be brief" and "previous_response_id" not in sent
        else:
            assert sent["messages"] == [{"role": "system", "content": "be brief"},
                                        {"role": "user", "content": "say hello to me"}]
            assert sent["temperature"] == 0.5

        events = await _events(client, model="gpt-4o", input="say hello to me")
        types = [e.type for e in events]
        assert types[:2] == ["response.created", "response.in_progress"]
        assert types[-1] == "response.completed"
        for t in ("response.output_item.added", "response.content_part.added", "response.output_text.delta",
                  "response.output_text.done", "response.content_part.done", "response.output_item.done"):
            assert t in types, t
        assert [e.sequence_number for e in events] == list(range(len(events)))
        assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == \
            "Hello from the fake upstream"
        final = events[-1].response
        assert final.output_text == "Hello from the fake upstream" and final.usage.output_tokens == 5
        for e in events:
            check_event(e.model_dump(mode="json", exclude_unset=True))

        # a function tool round trip, streamed: the call, then its output on the next turn
        events = await _events(client, model="gpt-4o", input="weather in Paris?", tools=TOOLS)
        call = events[-1].response.output[0]
        assert call.type == "function_call" and call.name == "get_weather"
        assert json.loads(call.arguments) == {"city": "test"}
        deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
        assert deltas == call.arguments
        assert any(e.type == "response.function_call_arguments.done" for e in events)
        for e in events:
            check_event(e.model_dump(mode="json", exclude_unset=True))
        follow = await client.responses.create(
            model="gpt-4o", tools=TOOLS, input=[
                {"role": "user", "content": "weather in Paris?"},
                {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
                {"type": "function_call_output", "call_id": call.call_id, "output": "{\"temp\": 21}"},
            ])
        assert follow.output_text == "Hello from the fake upstream"
        sent = h.upstream.last(upstream_path).body
        if mode == "translate":
            assert sent["messages"][1]["tool_calls"][0]["id"] == call.call_id
            assert sent["messages"][2] == {"role": "tool", "tool_call_id": call.call_id, "content": "{\"temp\": 21}"}
            assert sent["tools"][0]["function"]["name"] == "get_weather"

        # the SDK's helpers: responses.parse with a pydantic model, input token counts
        parsed = await client.responses.parse(model="gpt-4o", input="who?", text_format=Person)
        assert parsed.output_parsed == Person(name="test", age=1)
        count = await client.responses.input_tokens.count(model="gpt-4o", input="one two three four")
        assert count.input_tokens == (4 if mode == "native" else 9)  # native: the upstream counted

        # structured output
        schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                  "required": ["name", "age"], "additionalProperties": False}
        structured = await client.responses.create(
            model="gpt-4o", input="who?", text={"format": {"type": "json_schema", "name": "person",
                                                            "schema": schema, "strict": True}})
        assert json.loads(structured.output_text) == {"name": "test", "age": 1}
        if mode == "translate":
            assert h.upstream.last(upstream_path).body["response_format"]["json_schema"]["name"] == "person"

        if mode == "native":  # an error as the stream's first event: another attempt serves it
            h.upstream.inject("/v1/responses", stream_error="server_error", message="overloaded")
            events = await _events(client, model="gpt-4o", input="again")
            assert events[-1].type == "response.completed"
            assert len(h.upstream.requests_to("/v1/responses")) == 8

        await h.flush()
        requests, prompt, completion, cost = h.usage_totals()["app"]
        assert requests == (7 if mode == "native" else 6)
        # two JSON answers of 4 words each
        assert completion == 5 + 5 + 5 + 4 + 5 + 4 + (5 if mode == "native" else 0)
        assert cost == prompt * 2000 + completion * 8000  # exact usage, priced per 1M tokens


async def test_anthropic_provider_through_messages_translation(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("app", models=MODELS)
        await h.sync()
        client = oai(h.base, secret)
        resp = await client.responses.create(model="claude-3-5-haiku-latest", input="say hello",
                                             instructions="be brief", max_output_tokens=100)
        assert resp.output_text == "Hello from the fake upstream"
        sent = h.upstream.last("/v1/messages").body
        assert sent["system"] == "be brief" and sent["max_tokens"] == 100
        events = await _events(client, model="claude-3-5-haiku-latest", input="weather?", tools=TOOLS)
        assert events[-1].response.output[0].type == "function_call"
        check_response(events[-1].response.model_dump(mode="json", exclude_unset=True))
        # Claude may end a turn with no text: the conversation goes on (Anthropic refuses empty turns)
        h.upstream.reply = ""
        empty = await client.responses.create(model="claude-3-5-haiku-latest", input="thanks")
        h.upstream.reply = None
        assert empty.status == "completed" and empty.output_text == ""
        after = await client.responses.create(model="claude-3-5-haiku-latest", input="and now?",
                                              previous_response_id=empty.id)
        assert after.output_text == "Hello from the fake upstream"
        assert h.upstream.last("/v1/messages").body["messages"] == [
            {"role": "user", "content": [{"type": "text", "text": "thanks"}, {"type": "text", "text": "and now?"}]}]
        # structured output becomes Anthropic's own (output_config.format), not dropped on the way
        parsed = await client.responses.parse(model="claude-3-5-haiku-latest", input="who?", text_format=Person)
        assert parsed.output_parsed == Person(name="test", age=1)
        schema = h.upstream.last("/v1/messages").body["output_config"]["format"]
        assert schema["type"] == "json_schema" and schema["schema"]["required"] == ["name", "age"]


async def test_bad_requests_and_refusals_are_openai_shaped(database_url: str) -> None:
    async with harness(database_url, responses_read_wait=0.2) as h:
        secret = await h.create_key("narrow", models=("gpt-4o-mini",))
        broke = await h.create_key("broke", models=("gpt-4o-mini",), budget_usd=0.0)
        await h.sync()
        client = oai(h.base, secret)
        with pytest.raises(openai.BadRequestError, match="input"):
            await client.responses.create(model="gpt-4o-mini")  # type: ignore[call-overload]
        with pytest.raises(openai.BadRequestError, match="tools\\[0\\]"):
            await client.responses.create(model="gpt-4o-mini", input="x",
                                          tools=[{"type": "apply_patch"}])  # type: ignore[list-item]
        # hosted tools cannot run behind a chat upstream: left out, and said so in a header
        raw = await client.responses.with_raw_response.create(
            model="gpt-4o-mini", input="x", tools=[{"type": "web_search"}])
        assert raw.headers["x-shieldes-dropped-tools"] == "web_search"
        assert "tools" not in h.upstream.last("/v1/chat/completions").body
        with pytest.raises(openai.BadRequestError, match="hosted tool 'web_search'"):  # forcing it: refused
            await client.responses.create(model="gpt-4o-mini", input="x", tools=[{"type": "web_search"}],
                                          tool_choice={"type": "web_search"})  # type: ignore[typeddict-item]
        with pytest.raises(openai.PermissionDeniedError):
            await client.responses.create(model="gpt-4o", input="x")
        before = len(h.upstream.requests)
        with pytest.raises(openai.RateLimitError, match="budget"):
            await oai(h.base, broke).responses.create(model="gpt-4o-mini", input="x")
        assert len(h.upstream.requests) == before  # refused before any upstream call
        with pytest.raises(openai.BadRequestError, match="not found") as lost:
            await client.responses.create(model="gpt-4o-mini", input="x", previous_response_id="resp_nope")
        assert lost.value.code == "previous_response_not_found" and lost.value.param == "previous_response_id"
        # an upstream that breaks mid-stream: the stream ends with `error` (the SDK raises it)
        h.upstream.inject("/v1/chat/completions", disconnect_after=3)
        stream = await client.responses.create(model="gpt-4o-mini", input="x", stream=True)
        seen: list[str] = []
        with pytest.raises(openai.APIError, match="upstream stream failed"):
            async for event in stream:
                seen.append(event.type)
        assert seen[:2] == ["response.created", "response.in_progress"]
        async with aiohttp.ClientSession() as s, s.post(h.base + "/responses", json={"model": "gpt-4o-mini"},
                                                        headers={"Authorization": "Bearer " + secret}) as r:
            assert r.status == 400 and (await r.json())["error"]["type"] == "invalid_request_error"


async def test_native_mode_is_refused_for_anthropic_and_old_events_replay(database_url: str) -> None:
    async with harness(database_url, providers=False) as h:
        from shieldes.errors import CommandRejected

        with pytest.raises(CommandRejected, match="translate"):
            await h.admin(AddProvider("c", "anthropic", h.upstream.url, "env:" + UPSTREAM_KEY_ENV, ("c",),
                                      responses="native"))


async def test_reasoning_of_a_chat_upstream_streams_as_reasoning_text_events(database_url: str) -> None:
    """A reasoning model behind a chat-only server (vLLM, DeepSeek, Ollama stream `reasoning_content`):
    its thinking reaches a Responses stream as it is produced, not only once the item is done."""
    thinking = "The user greets me so I greet back"
    up = FakeUpstream(completion_tokens=5, api_key=UPSTREAM_KEY, models=("gpt-4o",), reasoning=thinking)
    async with harness(database_url, upstream=up) as h:
        secret = await h.create_key("app", models=MODELS)
        await h.sync()
        events = await _events(oai(h.base, secret), model="gpt-4o", input="hello")
        for e in events:
            check_event(e.model_dump(mode="json", exclude_unset=True))
        deltas = [e for e in events if e.type == "response.reasoning_text.delta"]
        assert "".join(e.delta for e in deltas) == thinking and len(deltas) == len(thinking.split())
        done = next(e for e in events if e.type == "response.reasoning_text.done")
        reasoning = events[-1].response.output[0]
        assert reasoning.type == "reasoning" and {e.item_id for e in deltas} == {done.item_id, reasoning.id}
        assert done.text == thinking and reasoning.content[0].text == thinking
        assert events[-1].response.output_text == "Hello from the fake upstream"
        plain = await oai(h.base, secret).responses.create(model="gpt-4o", input="hello")  # and as JSON
        assert plain.output[0].type == "reasoning" and plain.output[0].content[0].text == thinking


async def test_translate_mode_passes_cache_key_and_tier_and_fills_logprobs(database_url: str) -> None:
    """prompt_cache_key and service_tier reach the chat upstream (which takes them under the same
    names); include of output_text logprobs is filled from the chat logprobs; encrypted reasoning,
    which a chat server cannot produce, is named in a header; an unknown include is a 400."""
    async with harness(database_url) as h:
        secret = await h.create_key("app", models=MODELS)
        await h.sync()
        client = oai(h.base, secret)
        resp = await client.responses.create(model="gpt-4o", input="hi", prompt_cache_key="tenant-7",
                                             service_tier="flex", include=["message.output_text.logprobs"],
                                             top_logprobs=2)
        sent = h.upstream.last("/v1/chat/completions").body
        assert (sent["prompt_cache_key"], sent["service_tier"], sent["logprobs"], sent["top_logprobs"]) == (
            "tenant-7", "flex", True, 2)
        assert resp.service_tier == "flex" and resp.prompt_cache_key == "tenant-7"
        part: Any = resp.output[0].content[0]  # type: ignore[union-attr]
        assert "".join(lp.token for lp in part.logprobs) == resp.output_text == "Hello from the fake upstream"
        assert [t.token for t in part.logprobs[1].top_logprobs] == [" from", "alt1"]
        check_response(resp.model_dump(mode="json", exclude_unset=True))

        events = await _events(client, model="gpt-4o", input="hi", include=["message.output_text.logprobs"])
        for e in events:
            check_event(e.model_dump(mode="json", exclude_unset=True))
        deltas = [e for e in events if e.type == "response.output_text.delta"]
        assert deltas and all([lp.token for lp in e.logprobs] == [e.delta] for e in deltas)
        done = next(e for e in events if e.type == "response.output_text.done")
        final: Any = events[-1].response.output[0].content[0]
        assert [lp.token for lp in done.logprobs] == [lp.token for lp in final.logprobs] == [e.delta for e in deltas]
        assert events[-1].response.service_tier == "default"  # the tier the upstream reports it used

        raw = await client.responses.with_raw_response.create(model="gpt-4o", input="hi", store=False,
                                                              include=["reasoning.encrypted_content"])
        assert raw.headers["x-shieldes-unfilled-include"] == "reasoning.encrypted_content"
        assert raw.parse().output_text == "Hello from the fake upstream"
        assert "logprobs" not in h.upstream.last("/v1/chat/completions").body
        # an entry this release does not know (OpenAI adds them) is served and named, not refused
        raw = await client.responses.with_raw_response.create(
            model="gpt-4o", input="hi", include=["reasoning.encrypted_content", "some.future_entry"])  # type: ignore[list-item]
        assert raw.headers["x-shieldes-unfilled-include"] == "reasoning.encrypted_content,some.future_entry"
        assert raw.parse().output_text == "Hello from the fake upstream"
        with pytest.raises(openai.BadRequestError, match="field 'include' has the wrong type: a list of strings"):
            await client.responses.create(model="gpt-4o", input="hi", include="message.output_text.logprobs")  # type: ignore[arg-type]


async def test_native_mode_fits_long_custom_tool_call_ids_as_it_fits_function_call_ids(database_url: str) -> None:
    """A custom_tool_call and its output with a call id over 64 characters went to the native
    upstream as they were (only function_call items were fitted), and OpenAI refused them; an
    output that answers no custom_tool_call was left for the upstream to refuse."""
    async with harness(database_url) as h:
        await h.admin(UpdateProvider("openai", responses="native"))
        secret = await h.create_key("app", models=MODELS)
        await h.sync()
        client = oai(h.base, secret)
        patch_tool: Any = [{"type": "custom", "name": "apply_patch", "description": "apply a patch"}]
        long_id = "toolu_" + "c" * 90
        for stream in (False, True):
            done = await client.responses.create(model="gpt-4o", tools=patch_tool, stream=stream, input=[
                {"role": "user", "content": "fix the bug"},
                {"type": "custom_tool_call", "call_id": long_id, "name": "apply_patch", "input": "*** Begin Patch"},
                {"type": "custom_tool_call_output", "call_id": long_id, "output": "Done!"},
            ])
            if stream:
                done = [e async for e in done][-1].response  # type: ignore[union-attr]
            assert done.output_text == "Hello from the fake upstream"  # type: ignore[union-attr]
            sent = h.upstream.last("/v1/responses").body["input"]
            assert sent[1]["call_id"] == sent[2]["call_id"] != long_id and len(sent[1]["call_id"]) <= 64
            stored = await client.responses.input_items.list(done.id)  # type: ignore[union-attr]
            assert [i.call_id for i in stored.data if i.type == "custom_tool_call_output"] == [long_id]  # as sent

        before = len(h.upstream.requests)
        with pytest.raises(openai.BadRequestError) as refused:
            await client.responses.create(model="gpt-4o", tools=patch_tool, input=[
                {"type": "custom_tool_call_output", "call_id": "call_nope", "output": "1"}])
        assert "the custom_tool_call_output with call_id 'call_nope' answers no custom_tool_call" in \
            refused.value.message
        assert len(h.upstream.requests) == before


async def test_native_mode_fits_long_call_ids_and_refuses_an_output_that_answers_no_call(database_url: str) -> None:
    """A native upstream (OpenAI's /v1/responses) takes call ids of up to 64 characters and refuses a
    function_call_output that answers no function_call. Longer ids (a conversation begun on another
    provider: Kimi's, Gemini's signed ones) are fitted as translated requests fit them, the call and its
    output alike; an output that answers nothing is refused by the gateway, OpenAI-shaped, saying what
    to send, before any upstream call."""
    async with harness(database_url) as h:
        await h.admin(UpdateProvider("openai", responses="native"))
        secret = await h.create_key("app", models=MODELS)
        await h.sync()
        client = oai(h.base, secret)
        long_id = "functions.get_weather:0|" + "s" * 100
        done = await client.responses.create(model="gpt-4o", tools=TOOLS, input=[
            {"role": "user", "content": "weather in Paris?"},
            {"type": "function_call", "call_id": long_id, "name": "get_weather", "arguments": "{\"city\": \"P\"}"},
            {"type": "function_call_output", "call_id": long_id, "output": "{\"temp\": 21}"},
        ])
        assert done.output_text == "Hello from the fake upstream"
        sent = h.upstream.last("/v1/responses").body["input"]
        assert sent[1]["call_id"] == sent[2]["call_id"] != long_id and len(sent[1]["call_id"]) <= 64
        stored = await client.responses.input_items.list(done.id)
        assert [i.call_id for i in stored.data if i.type == "function_call_output"] == [long_id]  # as sent

        before = len(h.upstream.requests)
        for unanswered in ([{"type": "function_call_output", "call_id": "call_nope", "output": "1"}],
                           [{"type": "function_call_output", "call_id": "call_late", "output": "1"},
                            {"type": "function_call", "call_id": "call_late", "name": "get_weather",
                             "arguments": "{}"}]):
            with pytest.raises(openai.BadRequestError) as refused:
                await client.responses.create(model="gpt-4o", tools=TOOLS, input=unanswered)  # type: ignore[arg-type]
            error = refused.value.body
            assert isinstance(error, dict) and error["type"] == "invalid_request_error"
            assert error["code"] == "invalid_request" and "answers no function_call" in error["message"]
            assert unanswered[0]["call_id"] in error["message"] and "previous_response_id" in error["message"]
        assert len(h.upstream.requests) == before  # refused before any upstream call
        for translated in ("claude-3-5-haiku-latest",):  # translated for Anthropic, which says it worse
            with pytest.raises(openai.BadRequestError, match="answers no function_call"):
                await client.responses.create(model=translated, tools=TOOLS, input=[  # type: ignore[arg-type]
                    {"type": "function_call_output", "call_id": "call_nope", "output": "1"}])
        assert len(h.upstream.requests) == before

        # the call made by a stored response is answered by continuing from it
        asked = await client.responses.create(model="gpt-4o", input="weather in Paris?", tools=TOOLS)
        call = asked.output[0]
        assert call.type == "function_call"
        follow = await client.responses.create(model="gpt-4o", tools=TOOLS, previous_response_id=asked.id, input=[
            {"type": "function_call_output", "call_id": call.call_id, "output": "{\"temp\": 21}"}])
        assert follow.output_text == "Hello from the fake upstream"


async def test_a_continuation_of_a_response_nobody_can_read_is_openais_previous_response_not_found(
        database_url: str) -> None:
    """OpenAI answers a `previous_response_id` it cannot read with a 400 `previous_response_not_found`
    naming the field, which agents recover on by sending the whole conversation (a 404 reads as an
    unknown route or model): an unknown id, a `store: false` response, a deleted one, another key's,
    streamed or not, counted or compacted. Reading such an id stays a 404, as on OpenAI."""
    async with harness(database_url, responses_read_wait=0.2) as h:
        secret = await h.create_key("agent", models=("gpt-4o",))
        other = await h.create_key("other", models=("gpt-4o",))
        await h.sync()
        client = oai(h.base, secret)
        unstored = await client.responses.create(model="gpt-4o", input="hi", store=False)
        deleted = await client.responses.create(model="gpt-4o", input="hi")
        await client.responses.delete(deleted.id)
        theirs = await oai(h.base, other).responses.create(model="gpt-4o", input="hi")
        before = len(h.upstream.requests)
        for rid in ("resp_nope", unstored.id, deleted.id, theirs.id):
            for attempt in (client.responses.create(model="gpt-4o", input="go on", previous_response_id=rid),
                            client.responses.create(model="gpt-4o", input="go on", previous_response_id=rid,
                                                    stream=True),
                            client.responses.input_tokens.count(model="gpt-4o", input="go on",
                                                                previous_response_id=rid),
                            client.responses.compact(model="gpt-4o", input="go on", previous_response_id=rid)):
                with pytest.raises(openai.BadRequestError) as lost:
                    await attempt
                assert lost.value.code == "previous_response_not_found" and lost.value.param == "previous_response_id"
                assert lost.value.type == "invalid_request_error" and rid in lost.value.message
                assert "send the whole conversation" in lost.value.message
            with pytest.raises(openai.NotFoundError):
                await client.responses.retrieve(rid)
        assert len(h.upstream.requests) == before  # refused before any upstream call
        # the recovery: the whole conversation as input
        again = await client.responses.create(model="gpt-4o", input=[
            {"role": "user", "content": "hi"}, {"role": "assistant", "content": unstored.output_text},
            {"role": "user", "content": "go on"}])
        assert again.status == "completed"


async def test_a_refusal_of_the_chat_request_names_the_clients_own_input_items(database_url: str) -> None:
    """A Responses request translated for a chat-speaking deployment becomes chat messages that are
    not its items one for one (`instructions` first, a function call joining the assistant message
    before it): a refusal of that chat request, by the provider's own translation (an Anthropic
    deployment) or by an OpenAI-compatible upstream, names the client's `input[i]` (or
    `instructions`), never `messages[i]`, which a Responses client never sent."""
    async with harness(database_url) as h:
        secret = await h.create_key("app", models=MODELS)
        await h.sync()
        client = oai(h.base, secret)
        picture: Any = {"role": "user", "content": [{"type": "input_image", "image_url": "not-a-url"}]}
        for stream in (False, True):
            with pytest.raises(openai.BadRequestError) as bad:
                await client.responses.create(model="claude-3-5-haiku-latest", instructions="be brief", stream=stream,
                                              input=[{"role": "user", "content": "look"}, picture])
            assert "- input[1]: image_url" in bad.value.message and "messages[" not in bad.value.message
            assert bad.value.param == "input[1].content"
        h.upstream.inject("/v1/chat/completions", status=400, times=2, param="messages[3].content",
                          message="Invalid 'messages[3].content': string too long.")
        calls: Any = [{"role": "user", "content": "go"},
                      {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                      {"type": "function_call_output", "call_id": "c1", "output": "x" * 100}]
        for stream in (False, True):
            with pytest.raises(openai.BadRequestError) as bad:
                await client.responses.create(model="gpt-4o", instructions="be brief", input=calls, stream=stream)
            assert "Invalid 'input[2].content': string too long." in bad.value.message, bad.value.message
            assert bad.value.param == "input[2].content"
        # a field of the chat request that the Responses request calls otherwise is not named
        h.upstream.inject("/v1/chat/completions", status=400, param="max_completion_tokens",
                          message="Invalid 'max_completion_tokens': integer below minimum value.")
        with pytest.raises(openai.BadRequestError) as bad:
            await client.responses.create(model="gpt-4o", input="hi", max_output_tokens=16)
        assert bad.value.param is None and "max_completion_tokens" in bad.value.message
