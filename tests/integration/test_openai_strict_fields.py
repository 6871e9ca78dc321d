"""LiteLLM's chat `top_k` sent to an OpenAI-compatible deployment: OpenAI itself and Azure OpenAI
refuse it ("Unrecognized request argument supplied: top_k"), so it is left out for them and named in
x-shieldes-dropped; vLLM, Ollama and the other OpenAI-compatible servers take it, and get it as sent.
Before, an `azure` deployment answered the client a 400."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import openai

from shieldes.projections.shared_commands import AddProvider
from shieldes.providers.openai_strict import openai_itself
from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import UPSTREAM_KEY, UPSTREAM_KEY_ENV, harness

HELLO: Any = [{"role": "user", "content": "say hello"}]
LONG_ID = "call_" + "x" * 60  # past OpenAI's 40 characters: the body is decoded and the id fitted
HISTORY: Any = [
    {"role": "user", "content": "weather?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": LONG_ID, "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
    {"role": "tool", "tool_call_id": LONG_ID, "content": "sunny"},
]


@asynccontextmanager
async def azure_and_vllm(database_url: str, vllm_model: str, vllm_takes: str) -> AsyncIterator[Any]:
    """A gateway with an Azure OpenAI provider (`prod-gpt4o`, `o4-mini`) on the fake upstream and an
    OpenAI-compatible server taking `vllm_takes`; yields (harness, client, that server)."""
    vllm = await FakeUpstream(api_key=UPSTREAM_KEY, models=(vllm_model,), extra_fields=(vllm_takes,)).start()
    try:
        async with harness(database_url, providers=False, upstream_retries=0) as h:
            ref = "env:" + UPSTREAM_KEY_ENV
            await h.admin(AddProvider("az", "azure", h.upstream.url, ref, ("prod-gpt4o", "o4-mini"),
                                      options={"api_version": "2024-10-21"}))
            await h.admin(AddProvider("vllm", "openai", vllm.url, ref, (vllm_model,)))
            secret = await h.create_key("app")
            await h.sync()
            yield h, openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0), vllm
    finally:
        await vllm.stop()


async def test_top_k_is_left_out_for_azure_and_sent_to_other_openai_compatible_servers(database_url: str) -> None:
    assert openai_itself("https://api.openai.com/v1") and openai_itself("https://r.openai.azure.com")
    assert not openai_itself("http://vllm:8000/v1") and not openai_itself("https://api.groq.com/openai/v1")
    async with azure_and_vllm(database_url, "llama", "top_k") as (h, client, vllm):
        chat = "/openai/deployments/prod-gpt4o/chat/completions"
        for stream in (False, True):
            for messages in (HELLO, HISTORY):
                raw: Any = await client.chat.completions.with_raw_response.create(
                    model="prod-gpt4o", messages=messages, stream=stream, temperature=0.3,
                    extra_body={"top_k": 40})
                assert raw.headers["x-shieldes-dropped"] == "top_k", (stream, messages)
                if stream:
                    assert [c async for c in raw.parse()]
                else:
                    assert raw.parse().choices[0].message
                sent = h.upstream.last(chat).body
                assert "top_k" not in sent and sent["temperature"] == 0.3
        done: Any = await client.completions.with_raw_response.create(
            model="prod-gpt4o", prompt="say hello", extra_body={"top_k": 40})
        assert done.headers["x-shieldes-dropped"] == "top_k"
        assert "top_k" not in h.upstream.last("/openai/deployments/prod-gpt4o/completions").body
        plain = await client.chat.completions.with_raw_response.create(model="prod-gpt4o", messages=HELLO)
        assert "x-shieldes-dropped" not in plain.headers  # nothing asked, nothing named

        for stream in (False, True):  # a server that takes top_k gets it as the client sent it
            raw = await client.chat.completions.with_raw_response.create(
                model="llama", messages=HELLO, stream=stream, extra_body={"top_k": 40})
            assert "x-shieldes-dropped" not in raw.headers
            if stream:
                assert [c async for c in raw.parse()]
            assert vllm.last("/v1/chat/completions").body["top_k"] == 40


async def test_thinking_becomes_reasoning_effort_on_openai_reasoning_models(database_url: str) -> None:
    """A chat client's Anthropic-style `thinking` (LiteLLM's) to Azure OpenAI (and OpenAI itself),
    which refuse the field: the effort of the same budget on a reasoning model, as a Messages
    client's thinking is mapped; left out and named on any other; as sent to other servers."""
    async with azure_and_vllm(database_url, "qwen3", "thinking") as (h, client, vllm):

        async def send(model: str, stream: bool = False, **extra: Any) -> Any:
            raw: Any = await client.chat.completions.with_raw_response.create(
                model=model, messages=HELLO, stream=stream, extra_body=extra)
            if stream:
                assert [c async for c in raw.parse()]
            return raw.headers

        def sent(deployment: str) -> Any:
            return h.upstream.last(f"/openai/deployments/{deployment}/chat/completions").body

        for budget, effort in ((2048, "low"), (8192, "medium"), (20000, "high")):
            for stream in (False, True):
                headers = await send("o4-mini", stream, thinking={"type": "enabled", "budget_tokens": budget})
                assert "x-shieldes-dropped" not in headers
                body = sent("o4-mini")
                assert body["reasoning_effort"] == effort and "thinking" not in body, body
        # beside the client's own effort: the effort says it
        both = {"type": "enabled", "budget_tokens": 30000}
        assert "x-shieldes-dropped" not in await send("o4-mini", thinking=both, reasoning_effort="low")
        assert sent("o4-mini")["reasoning_effort"] == "low" and "thinking" not in sent("o4-mini")
        # asks for nothing: left out, not named
        assert "x-shieldes-dropped" not in await send("o4-mini", thinking={"type": "disabled"})
        assert "thinking" not in sent("o4-mini") and "reasoning_effort" not in sent("o4-mini")
        # a model that does not reason: left out, named
        for stream in (False, True):
            headers = await send("prod-gpt4o", stream, thinking={"type": "enabled", "budget_tokens": 2048})
            assert headers["x-shieldes-dropped"] == "thinking"
            assert "thinking" not in sent("prod-gpt4o") and "reasoning_effort" not in sent("prod-gpt4o")
        # a server that takes it gets it as sent
        assert "x-shieldes-dropped" not in await send("qwen3", thinking={"type": "enabled", "budget_tokens": 2048})
        assert vllm.last("/v1/chat/completions").body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
