"""Translated Responses deployments (a chat-completions server, Anthropic, Bedrock, Gemini) driven
through multi-turn tool-calling conversations with the openai SDK, streamed and not, stored and
`store: false`: every stream is checked as OpenAI's own would be (check_stream: items one at a
time and in order, ids and indexes, sequence numbers, the final output the items the events built),
and the streamed and the JSON answers hold the same items."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest
import pytest_asyncio
from agents import Agent, ModelSettings, RunConfig, Runner, function_tool
from agents.models.openai_provider import OpenAIProvider
from openai.types.shared import Reasoning

from shieldes.projections.shared_commands import AddProvider, UpdateProvider
from tests import pg
from tests.fake_bedrock import FakeBedrock
from tests.fake_google import FakeGoogle
from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import UPSTREAM_KEY, UPSTREAM_KEY_ENV, harness
from tests.responses_schema import check_response, check_stream

BEDROCK_CLAUDE = "us.anthropic.claude-sonnet-4-20250514-v1:0"
PARAMS: Any = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS: Any = [{"type": "function", "name": "get_weather", "parameters": PARAMS},
              {"type": "function", "name": "get_time", "parameters": PARAMS}]
# model -> (what it asks for besides the tools, the item types of its first answer)
CASES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "gpt-4o": ({}, ["reasoning", "function_call", "function_call"]),  # a chat server: reasoning_content, 2 calls
    "claude-sonnet-4-5": ({"reasoning": {"effort": "low"}}, ["reasoning", "function_call"]),
    BEDROCK_CLAUDE: ({"reasoning": {"effort": "low"}}, ["reasoning", "function_call", "function_call"]),
    "gemini-2.5-flash": ({}, ["function_call"]),
}
Node = tuple[openai.AsyncOpenAI, FakeUpstream]


# One node for the module's tool-loop tests (each asks its own requests of it and reads only its own
# responses and conversations; the fakes answer each request from its body alone): a node, its
# database and three fake providers made once instead of for each of the 14 tests.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def module_database(pg_server: str) -> Iterator[str]:
    url = pg.fresh_database(pg_server)
    yield url
    pg.drop_database(pg_server, url)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(module_database: str) -> AsyncIterator[Node]:
    upstream = FakeUpstream(completion_tokens=5, api_key=UPSTREAM_KEY, models=("gpt-4o",), parallel_calls=2,
                            reasoning="Two lookups.")
    async with FakeBedrock() as bedrock, FakeGoogle() as google, \
            harness(module_database, upstream=upstream, providers=False, upstream_retries=0) as h:
        os.environ["SHIELDES_TEST_BEDROCK_KEY"] = bedrock.api_key
        os.environ["SHIELDES_TEST_GEMINI_KEY"] = google.api_key
        ref = "env:" + UPSTREAM_KEY_ENV
        await h.admin(AddProvider("chat", "openai", upstream.url, ref, ("gpt-4o",)))
        await h.admin(AddProvider("claude", "anthropic", upstream.url, ref, ("claude-sonnet-4-5",)))
        await h.admin(AddProvider("br", "bedrock", bedrock.url, "env:SHIELDES_TEST_BEDROCK_KEY", (BEDROCK_CLAUDE,),
                                  options={"region": "us-east-1"}))
        await h.admin(AddProvider("gem", "gemini", google.url + "/v1beta", "env:SHIELDES_TEST_GEMINI_KEY",
                                  ("gemini-2.5-flash",)))
        secret = await h.create_key("app")
        await h.sync()
        yield openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0), upstream


async def _streamed(client: openai.AsyncOpenAI, **ask: Any) -> dict[str, Any]:
    stream = await client.responses.create(stream=True, **ask)
    return check_stream([e.model_dump(mode="json", exclude_unset=True) async for e in stream])


def _shape(output: list[Any]) -> list[tuple[Any, ...]]:
    """What two answers to the same request share: each item's type, call and arguments (as JSON
    values: a stream's may be spaced otherwise), status."""
    return [(i["type"], i.get("name"), json.loads(i["arguments"]) if "arguments" in i else None, i.get("status"))
            for i in output]


def _answers(output: list[Any]) -> list[Any]:
    return [{"type": "function_call_output", "call_id": i["call_id"], "output": f"sunny in {i['name']}"}
            for i in output if i["type"] == "function_call"]


@pytest.mark.parametrize("model", list(CASES))
async def test_tool_loops_stream_as_openai_streams_them(node: Node, model: str) -> None:
    client, _ = node
    extra, kinds = CASES[model]
    ask: Any = [{"role": "user", "content": "Weather and time in Paris?"}]
    first = await _streamed(client, model=model, input=ask, tools=TOOLS, **extra)
    assert first["status"] == "completed" and [i["type"] for i in first["output"]] == kinds
    assert first["usage"]["output_tokens"] > 0
    whole = await client.responses.create(model=model, input=ask, tools=TOOLS, **extra)
    check_response(whole.model_dump(mode="json", exclude_unset=True))
    assert _shape(whole.model_dump(mode="json")["output"]) == _shape(first["output"])
    # the SDK's own accumulator builds the same response from the events
    async with client.responses.stream(model=model, input=ask, tools=TOOLS, **extra) as helper:
        assert _shape((await helper.get_final_response()).model_dump(mode="json")["output"]) == \
            _shape(first["output"])

    stored = (await client.responses.retrieve(first["id"])).model_dump(mode="json", exclude_unset=True)
    assert stored["output"] == first["output"] and stored["usage"] == first["usage"]
    # stored: the next turn continues from the response (the calls answered), streamed
    second = await _streamed(client, model=model, previous_response_id=first["id"], input=_answers(first["output"]),
                             tools=TOOLS, **extra)
    assert second["status"] == "completed" and second["output"][-1]["type"] == "message"
    assert second["output"][-1]["content"][0]["text"]
    # store: false: the client sends the whole conversation back, its items as they came (Claude's
    # thinking in their encrypted_content, as a stateless client such as Codex asks for it)
    unstored: Any = dict(tools=TOOLS, store=False, include=["reasoning.encrypted_content"], **extra)
    again = await _streamed(client, model=model, input=ask, **unstored)
    assert _shape(again["output"]) == _shape(first["output"])
    history = [*ask, *again["output"], *_answers(again["output"])]
    third = await _streamed(client, model=model, input=history, **unstored)
    assert _shape(third["output"]) == _shape(second["output"])
    for unkept in (again, third):
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(unkept["id"])


async def test_a_tool_choice_forcing_a_tool_not_offered_is_refused_on_every_route(database_url: str) -> None:
    """OpenAI answers such a request 400 invalid_request_error (param tool_choice); so does the
    gateway, before any upstream call, for translated and native deployments alike, on a JSON
    create, a streamed one and a WebSocket turn (whose connection stays open)."""
    async with harness(database_url, upstream_retries=0) as h:
        await h.admin(UpdateProvider("openai", responses="native"))
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        bad: list[Any] = [dict(tool_choice={"type": "function", "name": "get_time"}, tools=TOOLS[:1]),
                          dict(tool_choice="required")]
        for model in ("claude-3-5-haiku-latest", "gpt-4o"):  # translated (Anthropic), native
            for fields in bad:
                for stream in (False, True):
                    with pytest.raises(openai.BadRequestError) as refused:
                        await client.responses.create(model=model, input="hi", stream=stream, **fields)
                    error = refused.value.body
                    assert isinstance(error, dict) and error["type"] == "invalid_request_error"
                    assert error["param"] == "tool_choice" and "tool_choice" in error["message"]
            async with client.responses.connect() as conn:
                for fields in bad:
                    await conn.send({"type": "response.create", "model": model, "input": "hi", **fields})
                    event = await conn.recv()
                    assert event.type == "error" and event.status == 400  # type: ignore[union-attr]
                    assert event.error.param == "tool_choice"  # type: ignore[union-attr]
                # the connection stays open: a good turn follows
                await conn.send({"type": "response.create", "model": model, "input": "hi", "tools": TOOLS,
                                 "tool_choice": {"type": "function", "name": "get_time"}})
                async for event in conn:
                    if event.type == "response.completed":
                        assert event.response.output[0].name == "get_time"  # type: ignore[union-attr]
                        break
        assert len(h.upstream.requests) == 2  # the good turns only


@pytest.mark.parametrize("model", list(CASES))
@pytest.mark.parametrize("streamed", [False, True])
async def test_the_agents_sdk_runs_a_tool_loop_on_each_translated_kind(node: Node, model: str, streamed: bool) -> None:
    """The OpenAI Agents SDK (Responses mode; its streamed run reads the events as they come): the
    model's calls (two at once where the upstream makes two) run, their outputs go back, and the
    run ends with the model's text."""
    client, _ = node
    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(f"weather {city}")
        return f"sunny in {city}"

    @function_tool
    def get_time(city: str) -> str:
        """The time in a city."""
        calls.append(f"time {city}")
        return f"noon in {city}"

    extra, kinds = CASES[model]
    settings = ModelSettings(reasoning=Reasoning(**extra["reasoning"])) if "reasoning" in extra else ModelSettings()
    agent = Agent(name="weather", instructions="Answer briefly.", tools=[get_weather, get_time], model=model,
                  model_settings=settings)
    config = RunConfig(model_provider=OpenAIProvider(openai_client=client), tracing_disabled=True)
    if streamed:
        run = Runner.run_streamed(agent, "Weather and time in Paris?", run_config=config)
        raw = [e.data.model_dump(mode="json", exclude_unset=True) async for e in run.stream_events()
               if e.type == "raw_response_event"]
        final = run.final_output
        starts = [i for i, e in enumerate(raw) if e["type"] == "response.created"]
        assert len(starts) == 2  # the calls' turn, the answer's
        for begin, end in zip(starts, [*starts[1:], len(raw)], strict=True):
            check_stream(raw[begin:end])
    else:
        final = (await Runner.run(agent, "Weather and time in Paris?", run_config=config)).final_output
    assert len(calls) == kinds.count("function_call") and isinstance(final, str) and final


@pytest.mark.parametrize("model", ["gpt-4o", BEDROCK_CLAUDE])
async def test_a_conversation_keeps_the_items_of_a_streamed_tool_loop_in_order(node: Node, model: str) -> None:
    """A tool loop in a conversation (`conversation`, streamed turns, two calls at once): the
    conversation's items are the turns' own, in the order the streams sent them."""
    client, _ = node
    extra, kinds = CASES[model]
    conversation = await client.conversations.create()
    ask: Any = [{"role": "user", "content": "Weather and time in Paris?"}]
    first = await _streamed(client, model=model, input=ask, tools=TOOLS, conversation=conversation.id, **extra)
    second = await _streamed(client, model=model, input=_answers(first["output"]), tools=TOOLS,
                             conversation=conversation.id, **extra)
    listed = [i.model_dump(mode="json") async for i in client.conversations.items.list(conversation.id, order="asc")]
    assert [i["type"] for i in listed] == ["message", *kinds, "function_call_output", "function_call_output",
                                           *[i["type"] for i in second["output"]]]
    by_id = {i["id"]: i for i in listed}
    for item in [*first["output"], *second["output"]]:
        assert by_id[item["id"]]["type"] == item["type"]
        if item["type"] == "function_call":
            assert by_id[item["id"]]["arguments"] == item["arguments"]
