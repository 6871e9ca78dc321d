"""Claude 4.5 and later stop an answer at the end of the context window with the stop reason
`model_context_window_exceeded` (instead of refusing a request whose max_tokens does not fit): from
Anthropic and from Bedrock, chat and Responses clients read it as a cut answer (`length`,
`incomplete`), never as a finished one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from shieldes.projections.shared_commands import AddProvider
from tests.fake_bedrock import FakeBedrock, aws_credentials
from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import UPSTREAM_KEY, Harness, harness

BEDROCK_CLAUDE = "anthropic.claude-sonnet-4-5-20250929-v1:0"
ASK: Any = [{"role": "user", "content": "one two three"}]  # 3 prompt tokens of a 6-token window


@pytest.fixture
async def node(database_url: str) -> AsyncIterator[Harness]:
    up = FakeUpstream(completion_tokens=5, api_key=UPSTREAM_KEY, context_window=6)
    with aws_credentials():
        async with FakeBedrock(context_window=6) as bedrock, harness(database_url, upstream=up) as h:
            await h.admin(AddProvider("br", "bedrock", bedrock.url, None, (BEDROCK_CLAUDE,),
                                      options={"region": "us-east-1"}))
            await h.sync()
            yield h


@pytest.mark.parametrize("model", ["claude-3-5-haiku-latest", BEDROCK_CLAUDE])
async def test_an_answer_cut_at_the_context_window_is_a_cut_answer(node: Harness, model: str) -> None:
    h = node
    secret = await h.create_key("app")
    await h.sync()
    client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)

    chat = await client.chat.completions.create(model=model, messages=ASK, max_tokens=100)
    assert chat.choices[0].message.content is not None and len(chat.choices[0].message.content.split()) == 3
    assert chat.choices[0].finish_reason == "length"

    stream = await client.chat.completions.create(model=model, messages=ASK, max_tokens=100, stream=True)
    finishes = [c.choices[0].finish_reason async for c in stream if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]

    answer = await client.responses.create(model=model, input="one two three", max_output_tokens=100, store=False)
    assert answer.status == "incomplete"
    assert answer.incomplete_details is not None and answer.incomplete_details.reason == "max_output_tokens"
