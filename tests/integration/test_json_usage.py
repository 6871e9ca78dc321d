"""Non-streamed answers whose upstream reports no usage (some OpenAI-compatible servers omit it):
the gateway bills an estimate (request bytes / 4 input tokens; the answer's text / 4, rounded up,
as output tokens: content, tool call arguments, reasoning) and the answer's own `usage` field
carries it, on chat completions, completions, embeddings, Messages (translated and native) and
Responses (translate and native mode). The client, the usage totals and the request log agree.
Official SDKs, a real node."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from shieldes.projections.shared_commands import UpdateProvider
from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import UPSTREAM_KEY, Harness, harness
from tests.integration.test_request_log import flushed

REASONING = "The user asks about rain; answer briefly."
TOOLS: list[Any] = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def _tokens(*texts: str) -> int:
    """The documented rule, independently: UTF-8 bytes / 4, rounded up, per piece."""
    return sum(-(-len(t.encode()) // 4) for t in texts)


class _Ledger:
    """What each call told its client, checked against what the usage totals billed for it."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.shown: list[tuple[str, int, int]] = []

    async def billed_as_shown(self, route: str, prompt: int, completion: int, expected_output: int) -> None:
        assert prompt > 0, "the client must be told the input billed"
        assert completion == expected_output, "the output is estimated from the answer's text"
        await self.h.flush()
        _requests, p, c, _cost = self.h.usage_totals()["app"]
        billed = (p - sum(x[1] for x in self.shown), c - sum(x[2] for x in self.shown))
        assert (prompt, completion) == billed, "the client is told what is billed"
        self.shown.append((route, prompt, completion))


async def _chat(oai: openai.AsyncOpenAI, ledger: _Ledger) -> None:
    chat = await oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "rain?"}])
    text = chat.choices[0].message.content
    assert chat.usage is not None, "the client must be told the estimate that is billed, not nothing"
    assert text and chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens
    await ledger.billed_as_shown("/v1/chat/completions", chat.usage.prompt_tokens, chat.usage.completion_tokens,
                                 _tokens(text, REASONING))

    called = await oai.chat.completions.create(model="gpt-4o", tools=TOOLS,
                                               messages=[{"role": "user", "content": "rain in Paris?"}])
    calls = called.choices[0].message.tool_calls or []
    assert called.usage is not None and calls
    fns = [c.function for c in calls if c.type == "function"]
    await ledger.billed_as_shown("/v1/chat/completions", called.usage.prompt_tokens, called.usage.completion_tokens,
                                 _tokens(REASONING, *(t for f in fns for t in (f.name, f.arguments))))


async def _completions(oai: openai.AsyncOpenAI, ledger: _Ledger) -> None:
    done = await oai.completions.create(model="gpt-4o", prompt="Say something about rain")
    assert done.usage is not None, "the client must be told the estimate that is billed, not nothing"
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens
    await ledger.billed_as_shown("/v1/completions", done.usage.prompt_tokens, done.usage.completion_tokens,
                                 _tokens(done.choices[0].text))


async def _embeddings(oai: openai.AsyncOpenAI, ledger: _Ledger) -> None:
    vectors = await oai.embeddings.create(model="text-embedding-3-small", input="rain")
    assert vectors.usage is not None, "the client must be told the estimate that is billed, not nothing"
    assert vectors.usage.total_tokens == vectors.usage.prompt_tokens
    await ledger.billed_as_shown("/v1/embeddings", vectors.usage.prompt_tokens, 0, 0)


async def _messages(claude: anthropic.AsyncAnthropic, ledger: _Ledger) -> None:
    for model in ("gpt-4o", "claude-3-5-haiku-latest"):  # translated, then native
        message = await claude.messages.create(model=model, max_tokens=100,
                                               messages=[{"role": "user", "content": "rain?"}])
        assert message.usage.cache_read_input_tokens == message.usage.cache_creation_input_tokens == 0
        said = "".join(b.text for b in message.content if b.type == "text")
        # a translated answer's reasoning is billed although the client did not ask to see it
        await ledger.billed_as_shown("/v1/messages", message.usage.input_tokens, message.usage.output_tokens,
                                     _tokens(said) + (_tokens(REASONING) if model == "gpt-4o" else 0))


async def _responses(oai: openai.AsyncOpenAI, ledger: _Ledger) -> None:
    for mode in ("translate", "native"):
        if mode == "native":
            await ledger.h.admin(UpdateProvider("openai", responses="native"))
            await ledger.h.sync()
        response = await oai.responses.create(model="gpt-4o", input="rain in Rome?")
        usage = response.usage
        assert usage is not None, "the client must be told the estimate that is billed, not null"
        assert usage.total_tokens == usage.input_tokens + usage.output_tokens
        reasoning = [part.text for item in response.output if item.type == "reasoning"
                     for part in [*item.summary, *(item.content or [])]]
        assert reasoning or mode == "native"  # translate: the chat server's reasoning text, billed
        await ledger.billed_as_shown("/v1/responses", usage.input_tokens, usage.output_tokens,
                                     _tokens(response.output_text, *reasoning))
        stored = await oai.responses.retrieve(response.id)
        assert stored.usage == usage  # GET: the same


@pytest.mark.parametrize("route", ["chat", "completions", "embeddings", "messages", "responses"])
async def test_a_json_answer_without_upstream_usage_carries_the_estimate_that_is_billed(
        database_url: str, route: str) -> None:
    up = FakeUpstream(completion_tokens=5, api_key=UPSTREAM_KEY, reasoning=REASONING, json_usage=False,
                      responses_usage=False)
    async with harness(database_url, upstream=up, upstream_retries=0) as h:
        secret = await h.create_key("app")
        await h.sync()
        oai = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        ledger = _Ledger(h)
        if route == "messages":
            await _messages(claude, ledger)
        else:
            await {"chat": _chat, "completions": _completions, "embeddings": _embeddings,
                   "responses": _responses}[route](oai, ledger)
        await flushed(h, len(ledger.shown) + (2 if route == "responses" else 0))  # and the GETs
        logged = h.sql("SELECT route, prompt_tokens, completion_tokens FROM request_log"
                       " WHERE method = 'POST' ORDER BY started_at")
        assert logged == ledger.shown


async def test_an_upstream_that_reports_usage_is_forwarded_as_it_is(database_url: str) -> None:
    """The fast path: the upstream's usage is billed and its bytes reach the client untouched."""
    up = FakeUpstream(completion_tokens=5, api_key=UPSTREAM_KEY, reasoning=REASONING)
    async with harness(database_url, upstream=up, upstream_retries=0) as h:
        secret = await h.create_key("app")
        await h.sync()
        oai = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        chat = await oai.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "rain?"}])
        usage = chat.parse().usage
        assert usage is not None and usage.completion_tokens == 5  # the fake counts words: not the estimate
        await h.flush()
        assert h.usage_totals()["app"][1:3] == (usage.prompt_tokens, usage.completion_tokens)
        # the upstream's own bytes (Python's json spacing, which the gateway's encoder never writes)
        assert chat.http_response.content.startswith(b'{"id": "chatcmpl-')
