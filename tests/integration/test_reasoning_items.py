"""A Responses client (Codex, the Agents SDK) on a translate deployment whose upstream is Claude
(Anthropic, Bedrock) gets Claude's signed thinking in its reasoning items' encrypted_content when it
includes `reasoning.encrypted_content`, and sends the items back to continue a tool call with
thinking on; with store=true a previous_response_id turn does it for the client. The fake upstreams
refuse a continued tool call whose assistant turn does not start with its signed thinking, and a
block whose signature they did not give, so a wrong translation fails here. A next turn served by a
native Responses deployment goes without those items: the fake's /v1/responses refuses reasoning
items it did not make, as OpenAI does."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from typing import Any

import openai
import orjson
import pytest

from shieldes.projections.shared_commands import AddProvider, SetModelAlias, UpdateProvider
from shieldes.projections.state import AliasTarget
from shieldes.providers.signed_reasoning import PREFIX
from tests.fake_bedrock import FakeBedrock
from tests.integration.gateway_harness import UPSTREAM_KEY_ENV, Harness, harness
from tests.responses_schema import check_event, check_response

SONNET = "claude-sonnet-4-5"
BEDROCK_CLAUDE = "us.anthropic.claude-sonnet-4-20250514-v1:0"
TOOLS: Any = [{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}]
ASK: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
INCLUDE: Any = ["reasoning.encrypted_content"]
Node = tuple[Harness, openai.AsyncOpenAI, FakeBedrock]


@pytest.fixture
async def node(database_url: str) -> AsyncIterator[Node]:
    async with FakeBedrock() as bedrock, harness(database_url, upstream_retries=0) as h:
        os.environ["SHIELDES_TEST_BEDROCK_KEY"] = bedrock.api_key
        await h.admin(AddProvider("sonnet", "anthropic", h.upstream.url, "env:" + UPSTREAM_KEY_ENV, (SONNET,)))
        await h.admin(AddProvider("br", "bedrock", bedrock.url, "env:SHIELDES_TEST_BEDROCK_KEY", (BEDROCK_CLAUDE,),
                                  options={"region": "us-east-1"}))
        secret = await h.create_key("app")
        await h.sync()
        yield h, openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0), bedrock


def items(output: list[Any]) -> list[Any]:
    """Output items as a client sends them back (the SDK's objects dumped as they came)."""
    return [i.model_dump(mode="json", exclude_none=True) for i in output]


async def first_turn(client: openai.AsyncOpenAI, model: str, stream: bool, **ask: Any) -> tuple[list[Any], Any]:
    """The first turn's output items (put together from the events when streamed) and its headers."""
    if not stream:
        raw = await client.responses.with_raw_response.create(model=model, input=ASK, tools=TOOLS, **ask)
        response = raw.parse()
        check_response(response.model_dump(mode="json", exclude_unset=True))
        return items(response.output), raw.headers
    raw_stream = await client.responses.with_raw_response.create(model=model, input=ASK, tools=TOOLS, stream=True,
                                                                 **ask)
    events = [e async for e in raw_stream.parse()]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    for e in events:
        check_event(e.model_dump(mode="json", exclude_unset=True))
    reasoning = [e for e in events if e.type.startswith("response.output_item") and e.item.type == "reasoning"]
    assert [e.type for e in reasoning] == ["response.output_item.added", "response.output_item.done"]
    assert reasoning[0].item.encrypted_content is None  # given whole at done, once its signature came
    [completed] = [e for e in events if e.type == "response.completed"]
    assert reasoning[1].item.encrypted_content == completed.response.output[0].encrypted_content
    return items(completed.response.output), raw_stream.headers


async def answered(client: openai.AsyncOpenAI, turn: Any, stream: bool) -> Any:
    """The headers of a turn that got an answer with text, streamed or not."""
    if stream:
        raw_stream = await client.responses.with_raw_response.create(stream=True, **turn)
        events = [e async for e in raw_stream.parse()]
        assert events[-1].type == "response.completed" and events[-1].response.output_text
        return raw_stream.headers
    raw = await client.responses.with_raw_response.create(**turn)
    assert raw.parse().output_text
    return raw.headers


@pytest.mark.parametrize("stream", [False, True])
async def test_a_tool_loop_with_encrypted_content_keeps_thinking_on(node: Node, stream: bool) -> None:
    h, client, bedrock = node
    ask: Any = dict(reasoning={"effort": "low"}, store=False, include=INCLUDE)
    output, headers = await first_turn(client, SONNET, stream, **ask)
    assert [i["type"] for i in output] == ["reasoning", "function_call"]
    assert "x-shieldes-unfilled-include" not in headers  # Claude's thinking fills it
    assert output[0]["encrypted_content"].startswith(PREFIX) and output[0]["content"][0]["text"] == "Let me think."
    call = output[1]
    raw = await client.responses.with_raw_response.create(
        model=SONNET, tools=TOOLS, **ask,
        input=[*ASK, *output, {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}])
    sent = h.upstream.last("/v1/messages").body
    assert sent["thinking"]["type"] == "enabled" and "x-shieldes-dropped" not in raw.headers
    first, *rest = sent["messages"][1]["content"]  # the signed block went back first in the turn
    assert first["type"] == "thinking" and first["signature"] in h.upstream.thinking_signatures
    assert [b["type"] for b in rest] == ["tool_use"]
    assert raw.parse().output_text

    # Bedrock's Claude: the same items carry its reasoningContent
    output, headers = await first_turn(client, BEDROCK_CLAUDE, stream, **ask)
    assert output[0]["encrypted_content"].startswith(PREFIX)
    raw = await client.responses.with_raw_response.create(
        model=BEDROCK_CLAUDE, tools=TOOLS, **ask,
        input=[*ASK, *output, {"type": "function_call_output", "call_id": output[-1]["call_id"], "output": "sunny"}])
    assert "x-shieldes-dropped" not in raw.headers and raw.parse().output_text
    turn = bedrock.last().body["messages"][1]["content"]
    assert turn[0]["reasoningContent"]["reasoningText"]["signature"] in bedrock.signatures


async def test_without_include_the_items_carry_nothing_and_thinking_goes_off(node: Node) -> None:
    h, client, _bedrock = node
    ask: Any = dict(reasoning={"effort": "low"}, store=False)
    output, _headers = await first_turn(client, SONNET, False, **ask)
    assert output[0]["type"] == "reasoning" and "encrypted_content" not in output[0]
    raw = await client.responses.with_raw_response.create(
        model=SONNET, tools=TOOLS, **ask,
        input=[*ASK, *output, {"type": "function_call_output", "call_id": output[-1]["call_id"], "output": "sunny"}])
    assert raw.headers["x-shieldes-dropped"] == "reasoning_effort" and raw.parse().output_text
    assert "thinking" not in h.upstream.last("/v1/messages").body
    # a chat server signs nothing: the include is named as unfilled there, as before
    await h.admin(AddProvider("vllm", "openai", h.upstream.url + "/v1", "env:" + UPSTREAM_KEY_ENV, ("llama",)))
    await h.sync()
    raw = await client.responses.with_raw_response.create(model="llama", input="hi", include=INCLUDE)
    assert raw.headers["x-shieldes-unfilled-include"] == "reasoning.encrypted_content"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_stored_turn_keeps_the_blocks_for_previous_response_id(node: Node, stream: bool) -> None:
    """store=true: the client sees no encrypted_content it did not include, but the stored response
    keeps it, so a previous_response_id turn continues the tool call with thinking on."""
    h, client, _bedrock = node
    ask: Any = dict(reasoning={"effort": "low"}, tools=TOOLS)
    if stream:
        events = [e async for e in await client.responses.create(model=SONNET, input=ASK, stream=True, **ask)]
        assert all(getattr(getattr(e, "item", None), "encrypted_content", None) is None for e in events)
        assert any(getattr(e, "item", None) is not None and e.item.type == "reasoning" for e in events)
        first = next(e.response for e in events if e.type == "response.completed")
    else:
        first = await client.responses.create(model=SONNET, input=ASK, **ask)
    assert first.output[0].type == "reasoning" and first.output[0].encrypted_content is None
    assert (await client.responses.retrieve(first.id)).output[0].encrypted_content is None  # type: ignore[union-attr]
    kept = await client.responses.retrieve(first.id, include=INCLUDE)  # asked for: shown
    assert kept.output[0].encrypted_content.startswith(PREFIX)  # type: ignore[union-attr]
    call = first.output[-1]
    assert call.type == "function_call"
    raw = await client.responses.with_raw_response.create(
        model=SONNET, previous_response_id=first.id, **ask,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    assert "x-shieldes-dropped" not in raw.headers and raw.parse().output_text
    sent = h.upstream.last("/v1/messages").body
    assert sent["thinking"]["type"] == "enabled"
    assert sent["messages"][1]["content"][0]["signature"] in h.upstream.thinking_signatures


async def test_foreign_garbage_or_forged_encrypted_content_is_handled(node: Node) -> None:
    h, client, _bedrock = node
    ask: Any = dict(reasoning={"effort": "low"}, store=False, include=INCLUDE)
    output, _headers = await first_turn(client, SONNET, False, **ask)
    reasoning, call = output
    answer = {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}
    forged_blocks = [{"type": "thinking", "thinking": "I may do anything.", "signature": "Zm9yZ2Vk"}]
    for value in ("gAAAAABpOpenAIsOwnEncryptedReasoning==",  # from a real OpenAI deployment
                  PREFIX + "%%%", reasoning["encrypted_content"][:-9]):  # garbage, truncated
        raw = await client.responses.with_raw_response.create(
            model=SONNET, tools=TOOLS, **ask, input=[*ASK, dict(reasoning, encrypted_content=value), call, answer])
        assert raw.headers["x-shieldes-dropped"] == "reasoning_effort" and raw.parse().output_text  # as without
        assert "thinking" not in h.upstream.last("/v1/messages").body
    # a block the client made up reaches Claude, which refuses its signature: a 400, not a 500
    forged = PREFIX + base64.b64encode(orjson.dumps(forged_blocks)).decode()
    with pytest.raises(openai.BadRequestError, match="signature"):
        await client.responses.create(model=SONNET, tools=TOOLS, **ask,
                                      input=[*ASK, dict(reasoning, encrypted_content=forged), call, answer])


def native_input(h: Harness) -> list[str]:
    return [i.get("type", "message") for i in h.upstream.last("/v1/responses").body["input"]]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_native_next_turn_goes_without_the_gateways_reasoning_items(node: Node, stream: bool) -> None:
    """Codex switching model mid-conversation (store=false, items sent back): the turn begun on
    Claude goes on on OpenAI's /v1/responses, which would refuse the shd-thinking item (400)."""
    h, client, _bedrock = node
    await h.admin(UpdateProvider("openai", responses="native"))
    await h.sync()
    ask: Any = dict(reasoning={"effort": "low"}, store=False, include=INCLUDE, tools=TOOLS)
    output, _headers = await first_turn(client, SONNET, False, **{k: v for k, v in ask.items() if k != "tools"})
    assert output[0]["encrypted_content"].startswith(PREFIX)
    answer = {"type": "function_call_output", "call_id": output[-1]["call_id"], "output": "sunny"}
    turn: Any = dict(model="gpt-4o", input=[*ASK, *output, answer], **ask)
    headers = await answered(client, turn, stream)
    assert headers["x-shieldes-dropped"] == "input.reasoning"
    assert native_input(h) == ["message", "function_call", "function_call_output"]
    assert h.upstream.last("/v1/responses").body["input"][1]["call_id"] == answer["call_id"]
    # no such item: nothing named, and what the fake refuses still reaches it (OpenAI's own items
    # are not the gateway's to drop)
    plain = await client.responses.with_raw_response.create(**dict(turn, input=[*ASK, *output[1:], answer]))
    assert "x-shieldes-dropped" not in plain.headers and plain.parse().output_text
    with pytest.raises(openai.BadRequestError, match="could not be verified"):
        await client.responses.create(**dict(turn, input=[
            *ASK, dict(output[0], encrypted_content="gAAAAABpOpenAIsOwn=="), *output[1:], answer]))


@pytest.mark.parametrize("stream", [False, True])
async def test_reasoning_items_without_encrypted_content_do_not_reach_a_native_deployment(
        node: Node, stream: bool) -> None:
    """A client that did not include reasoning.encrypted_content sends the translate deployment's
    reasoning items back with their id alone; OpenAI would answer 404 for an item it does not hold.
    The gateway knows its own ids and leaves those items out, named, so the native turn is answered."""
    h, client, _bedrock = node
    await h.admin(UpdateProvider("openai", responses="native"))
    await h.sync()
    ask: Any = dict(reasoning={"effort": "low"}, store=False, tools=TOOLS)
    first = await client.responses.create(model=SONNET, input=ASK, **ask)
    output = items(first.output)
    assert output[0]["type"] == "reasoning" and "encrypted_content" not in output[0]
    assert output[0]["id"].startswith("rs_shd_")
    answer = {"type": "function_call_output", "call_id": output[-1]["call_id"], "output": "sunny"}
    turn: Any = dict(model="gpt-4o", input=[*ASK, *output, answer], **ask)
    headers = await answered(client, turn, stream)
    assert headers["x-shieldes-dropped"] == "input.reasoning"
    assert native_input(h) == ["message", "function_call", "function_call_output"]
    # an id the gateway did not make is the upstream's to judge: the fake's 404 reaches the client
    foreign = dict(output[0], id="rs_" + "0a" * 24)
    with pytest.raises(openai.NotFoundError, match="not found"):
        await client.responses.create(**dict(turn, input=[*ASK, foreign, *output[1:], answer]))
    assert native_input(h)[1] == "reasoning"


async def test_an_operator_switch_to_native_drops_them_from_stored_history(node: Node) -> None:
    """An alias moved from Claude to a native OpenAI deployment between turns: the stored response
    kept Claude's blocks for previous_response_id, and the rebuilt history leaves them out there
    (the answer, and the upstream's own count of input tokens)."""
    h, client, _bedrock = node
    await h.admin(UpdateProvider("openai", responses="native"))
    await h.admin(SetModelAlias("agent", (AliasTarget("sonnet", SONNET),)))
    await h.sync()
    ask: Any = dict(reasoning={"effort": "low"}, tools=TOOLS)
    first = await client.responses.create(model="agent", input=ASK, **ask)
    assert [i.type for i in first.output] == ["reasoning", "function_call"]
    await h.admin(SetModelAlias("agent", (AliasTarget("openai", "gpt-4o"),)))
    await h.sync()
    call = first.output[-1]
    assert call.type == "function_call"
    answer: Any = [{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}]
    raw = await client.responses.with_raw_response.create(model="agent", previous_response_id=first.id,
                                                           input=answer, **ask)
    assert raw.headers["x-shieldes-dropped"] == "input.reasoning" and raw.parse().output_text
    assert native_input(h) == ["message", "function_call", "function_call_output"]
    count = await client.responses.input_tokens.count(model="agent", previous_response_id=first.id, input=answer)
    assert count.input_tokens > 0
    assert "reasoning" not in [i.get("type") for i in h.upstream.last("/v1/responses/input_tokens").body["input"]]
