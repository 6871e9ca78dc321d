"""Parallel tool calls of a translated Responses stream go out as the upstream finishes each one:
Bedrock's ConverseStream (like Anthropic's and Gemini's streams) ends each call's content block
before the next starts, so each call is done as the next starts and the next streams at once,
while the model is still answering (held until the stream's end, a long answer's later calls came
all at once, late)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import openai

from shieldes.projections.shared_commands import AddProvider
from tests.fake_bedrock import FakeBedrock
from tests.integration.gateway_harness import harness
from tests.responses_schema import check_stream

BEDROCK_CLAUDE = "us.anthropic.claude-sonnet-4-20250514-v1:0"
PARAMS: Any = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS: Any = [{"type": "function", "name": "get_weather", "parameters": PARAMS},
              {"type": "function", "name": "get_time", "parameters": PARAMS}]


async def test_the_calls_of_a_bedrock_stream_stream_before_it_ends(database_url: str) -> None:
    hold = asyncio.Event()
    async with FakeBedrock(hold=hold) as bedrock, harness(database_url, providers=False, upstream_retries=0) as h:
        os.environ["SHIELDES_TEST_BEDROCK_KEY"] = bedrock.api_key
        await h.admin(AddProvider("br", "bedrock", bedrock.url, "env:SHIELDES_TEST_BEDROCK_KEY", (BEDROCK_CLAUDE,),
                                  options={"region": "us-east-1"}))
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        events: list[dict[str, Any]] = []

        async def until_both_calls_are_done() -> None:
            stream = await client.responses.create(model=BEDROCK_CLAUDE, input="Weather and time in Paris?",
                                                   tools=TOOLS, stream=True)
            async for event in stream:
                events.append(event.model_dump(mode="json", exclude_unset=True))
                if event.type == "response.function_call_arguments.delta" and event.output_index == 1:
                    # the first call is done and the second streams while the upstream is still
                    # on its answer: only now it ends it
                    assert [e["output_index"] for e in events if e["type"] == "response.output_item.done"] == [0]
                    hold.set()
            assert hold.is_set()

        try:
            await asyncio.wait_for(until_both_calls_are_done(), timeout=20)
        finally:
            hold.set()
        final = check_stream(events)
        assert [(i["name"], i["status"]) for i in final["output"]] == [("get_weather", "completed"),
                                                                       ("get_time", "completed")]
