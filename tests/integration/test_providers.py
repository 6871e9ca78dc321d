"""Both provider adapters against the fake upstream over real HTTP, with a real aiohttp session;
plus the official openai and anthropic SDKs reading what the translations produce."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest
from aiohttp import web

from shieldes.errors import InvalidRequest
from shieldes.providers.anthropic_translate import (
    messages_request_to_openai,
    openai_chunks_to_message_events,
    openai_response_to_messages,
    stream_error_event,
)
from shieldes.providers.base import Provider, Target, TokenUsage, UpstreamFailure
from shieldes.providers.registry import build_providers, open_client
from shieldes.providers.sse import DONE_FRAME, encode_event
from shieldes.settings import Settings
from tests.fake_upstream import FakeUpstream
from tests.ports import free_port

KEY = "sk-upstream-secret"
HELLO = [{"role": "user", "content": "Say hello to the nice people"}]  # 6 words = 6 prompt tokens
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture
async def up() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream(api_key=KEY, completion_tokens=4) as fake:
        yield fake


@pytest.fixture
async def providers() -> AsyncIterator[dict[str, Provider]]:
    settings = Settings(upstream_connect_timeout=1.0, upstream_timeout=0.5)
    async with open_client() as session:
        yield build_providers(session, settings)


def oa(up: FakeUpstream, model: str = "gpt-4o-mini", base: str | None = None) -> Target:
    return Target("oa-1", base or up.url, model, KEY)


def an(up: FakeUpstream, model: str = "claude-3-5-haiku-latest") -> Target:
    return Target("an-1", up.url, model, KEY)


async def collect(stream: Any) -> list[dict[str, Any]]:
    return [chunk async for chunk in stream]


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


# --- OpenAI-compatible -------------------------------------------------------------------------------


async def test_openai_chat_json(up: FakeUpstream, providers: dict[str, Provider]) -> None:
    body = {"model": "alias", "messages": HELLO, "stream": False, "stream_options": {"include_usage": True}}
    result = await providers["openai"].call("chat", oa(up), body)
    assert result.usage == TokenUsage(prompt_tokens=6, completion_tokens=4, service_tier="default")
    assert result.body["object"] == "chat.completion"
    assert result.body["choices"][0]["message"]["content"] == "Hello from the fake"
    sent = up.last("/v1/chat/completions")
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.body == {"model": "gpt-4o-mini", "messages": HELLO}  # upstream name, no stream fields
    assert body["model"] == "alias"  # the caller's dict is not modified


async def test_openai_chat_stream_asks_for_and_captures_usage(
    up: FakeUpstream, providers: dict[str, Provider]
) -> None:
    stream = await providers["openai"].stream("chat", oa(up), {"model": "alias", "messages": HELLO})
    chunks = await collect(stream)
    assert text_of(chunks) == "Hello from the fake"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4
    assert stream.usage == TokenUsage(6, 4, service_tier="default")
    sent = up.last("/v1/chat/completions").body
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


async def test_openai_completions_and_base_url_with_v1(
    up: FakeUpstream, providers: dict[str, Provider]
) -> None:
    target = oa(up, "gpt-3.5-turbo-instruct", base=up.url + "/v1/")
    result = await providers["openai"].call(
        "completions", target, {"model": "x", "prompt": "one two", "max_tokens": 2}
    )
    assert (
        result.body["object"] == "text_completion" and result.body["choices"][0]["finish_reason"] == "length"
    )
    assert result.usage == TokenUsage(2, 2)
    stream = await providers["openai"].stream("completions", target, {"model": "x", "prompt": "one two"})
    chunks = await collect(stream)
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == "Hello from the fake"
    assert stream.usage == TokenUsage(2, 4)


async def test_openai_embeddings(up: FakeUpstream, providers: dict[str, Provider]) -> None:
    body = {"model": "e", "input": ["a b c", "d"], "encoding_format": "base64"}
    result = await providers["openai"].call("embeddings", oa(up, "text-embedding-3-small"), body)
    assert [d["index"] for d in result.body["data"]] == [0, 1]
    assert isinstance(result.body["data"][0]["embedding"], str)
    assert result.usage == TokenUsage(4, 0)
    with pytest.raises(InvalidRequest):
        await providers["openai"].stream("embeddings", oa(up), body)


async def test_azure_style_deployment_url(up: FakeUpstream, providers: dict[str, Provider]) -> None:
    base = f"{up.url}/openai/deployments/my-gpt4o?api-version=2024-10-21"
    result = await providers["openai"].call("chat", oa(up, base=base), {"model": "gpt-4o", "messages": HELLO})
    assert result.usage == TokenUsage(6, 4, service_tier="default")
    sent = up.last()
    assert sent.path == "/openai/deployments/my-gpt4o/chat/completions"
    assert sent.query == {"api-version": "2024-10-21"}
    assert sent.headers["api-key"] == KEY and "authorization" not in sent.headers


async def test_openai_tool_calls_pass_through(up: FakeUpstream, providers: dict[str, Provider]) -> None:
    body = {"model": "m", "messages": HELLO, "tools": [WEATHER_TOOL]}
    result = await providers["openai"].call("chat", oa(up), body)
    choice = result.body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city": "test"}',
    }


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_provider_contract(up: FakeUpstream, providers: dict[str, Provider], kind: str) -> None:
    """What the gateway relies on from every adapter: OpenAI-shaped answers and chunks, usage in
    both, a final usage chunk, and the upstream model name."""
    target = an(up) if kind == "anthropic" else oa(up)
    result = await providers[kind].call("chat", target, {"model": "alias", "messages": HELLO})
    assert result.body["object"] == "chat.completion" and result.body["model"] == target.model
    assert result.body["choices"][0]["message"]["role"] == "assistant"
    assert result.usage == TokenUsage(6, 4, service_tier="default")
    assert result.body["usage"]["prompt_tokens"] == 6 and result.body["usage"]["completion_tokens"] == 4
    stream = await providers[kind].stream("chat", target, {"model": "alias", "messages": HELLO})
    assert stream.usage is None  # known only at the end
    chunks = await collect(stream)
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 10
    assert stream.usage == TokenUsage(6, 4, service_tier="default")


# --- error mapping -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retryable"), [(400, False), (404, False), (429, True), (500, True), (503, True)]
)
@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_error_status_mapping(
    up: FakeUpstream, providers: dict[str, Provider], kind: str, status: int, retryable: bool
) -> None:
    path = "/v1/messages" if kind == "anthropic" else "/v1/chat/completions"
    target = an(up) if kind == "anthropic" else oa(up)
    up.inject(path, status=status, times=2, message=f"upstream says {status}", retry_after=2)
    with pytest.raises(UpstreamFailure) as json_err:
        await providers[kind].call("chat", target, {"model": "m", "messages": HELLO})
    with pytest.raises(UpstreamFailure) as stream_err:
        await providers[kind].stream("chat", target, {"model": "m", "messages": HELLO})
    for err in (json_err.value, stream_err.value):
        assert (err.status, err.retryable, err.message) == (status, retryable, f"upstream says {status}")
        assert err.retry_after == (2.0 if status in (429, 503) else None)
    # The connection pool is healthy afterwards.
    assert (await providers[kind].call("chat", target, {"model": "m", "messages": HELLO})).usage is not None


async def test_bad_upstream_key_is_a_non_retryable_401(
    up: FakeUpstream, providers: dict[str, Provider]
) -> None:
    for kind, target in (("openai", oa(up)), ("anthropic", an(up))):
        wrong = Target(target.deployment, target.base_url, target.model, "sk-wrong")
        with pytest.raises(UpstreamFailure) as info:
            await providers[kind].call("chat", wrong, {"model": "m", "messages": HELLO})
        assert info.value.status == 401 and not info.value.retryable


async def test_timeout_is_retryable(up: FakeUpstream, providers: dict[str, Provider]) -> None:
    up.inject("/v1/chat/completions", delay=2.0)
    with pytest.raises(UpstreamFailure) as info:
        await providers["openai"].call("chat", oa(up), {"model": "m", "messages": HELLO})
    assert info.value.timeout and info.value.retryable and info.value.status is None


async def test_stalled_stream_times_out_mid_stream(up: FakeUpstream, providers: dict[str, Provider]) -> None:
    up.inject("/v1/messages", stall_after=3)
    stream = await providers["anthropic"].stream("chat", an(up), {"model": "m", "messages": HELLO})
    with pytest.raises(UpstreamFailure) as info:
        await collect(stream)
    assert info.value.timeout


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_failures_before_the_first_chunk_are_raised_by_stream(
    up: FakeUpstream, providers: dict[str, Provider], kind: str
) -> None:
    """So the gateway can still fail over: a silent upstream, or an error as the first event."""
    path = "/v1/messages" if kind == "anthropic" else "/v1/chat/completions"
    target = an(up) if kind == "anthropic" else oa(up)
    up.inject(path, chunk_delay=2.0)
    with pytest.raises(UpstreamFailure) as silent:
        await providers[kind].stream("chat", target, {"messages": HELLO})
    assert silent.value.timeout and silent.value.retryable
    up.inject(path, stream_error="overloaded_error", message="Overloaded, try again")
    with pytest.raises(UpstreamFailure) as overloaded:
        await providers[kind].stream("chat", target, {"messages": HELLO})
    assert overloaded.value.retryable and overloaded.value.message == "Overloaded, try again"
    stream = await providers[kind].stream("chat", target, {"messages": HELLO})  # the pool recovered
    assert text_of(await collect(stream)) == "Hello from the fake"


async def test_connect_error_to_closed_port(providers: dict[str, Provider]) -> None:
    port = free_port()  # nothing listens on it
    target = Target("gone", f"http://127.0.0.1:{port}", "m", None)
    for kind in ("openai", "anthropic"):
        with pytest.raises(UpstreamFailure) as info:
            await providers[kind].call("chat", target, {"model": "m", "messages": HELLO})
        assert info.value.retryable and info.value.status is None and "cannot connect" in info.value.message


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_disconnect_mid_stream(up: FakeUpstream, providers: dict[str, Provider], kind: str) -> None:
    path = "/v1/messages" if kind == "anthropic" else "/v1/chat/completions"
    up.inject(path, disconnect_after=3)
    stream = await providers[kind].stream(
        "chat", an(up) if kind == "anthropic" else oa(up), {"messages": HELLO}
    )
    received = []
    with pytest.raises(UpstreamFailure) as info:
        async for chunk in stream:
            received.append(chunk)
    assert info.value.retryable and received and stream.usage is None


async def test_abandoned_stream_releases_its_connection(
    up: FakeUpstream, providers: dict[str, Provider]
) -> None:
    for _ in range(3):
        stream = await providers["openai"].stream("chat", oa(up), {"messages": HELLO})
        async for _chunk in stream:
            break
        await stream.aclose()
        await stream.aclose()  # idempotent
    assert (await providers["openai"].call("chat", oa(up), {"messages": HELLO})).usage == \
        TokenUsage(6, 4, service_tier="default")


# --- Anthropic ----------------------------------------------------------------------------------------


async def test_anthropic_json_translation(up: FakeUpstream, providers: dict[str, Provider]) -> None:
    body = {
        "model": "claude",
        "messages": [{"role": "system", "content": "Be kind"}, *HELLO],
        "max_tokens": 3,
        "temperature": 1.5,
    }
    result = await providers["anthropic"].call("chat", an(up), body)
    assert result.body["choices"][0]["message"]["content"] == "Hello from the"
    assert result.body["choices"][0]["finish_reason"] == "length"
    assert result.usage == TokenUsage(prompt_tokens=8, completion_tokens=3, service_tier="default")
    assert result.body["usage"] == {"prompt_tokens": 8, "completion_tokens": 3, "total_tokens": 11}
    sent = up.last("/v1/messages")
    assert sent.headers["x-api-key"] == KEY and sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.body["system"] == "Be kind" and sent.body["model"] == "claude-3-5-haiku-latest"
    assert sent.body["temperature"] == 1.0
    with pytest.raises(InvalidRequest):
        await providers["anthropic"].call("embeddings", an(up), {"input": "x"})


async def test_anthropic_stop_sequence_and_stream(up: FakeUpstream, providers: dict[str, Provider]) -> None:
    result = await providers["anthropic"].call("chat", an(up), {"messages": HELLO, "stop": ["fake"]})
    assert result.body["choices"][0]["message"]["content"] == "Hello from the "
    assert result.body["choices"][0]["finish_reason"] == "stop"
    stream = await providers["anthropic"].stream("chat", an(up), {"messages": HELLO})
    chunks = await collect(stream)
    assert text_of(chunks) == "Hello from the fake"
    assert stream.usage == TokenUsage(6, 4, service_tier="default")
    assert chunks[-1]["usage"] == {"prompt_tokens": 6, "completion_tokens": 4, "total_tokens": 10}


async def test_anthropic_tool_round_trip(up: FakeUpstream, providers: dict[str, Provider]) -> None:
    body: dict[str, Any] = {"messages": list(HELLO), "tools": [WEATHER_TOOL], "tool_choice": "auto"}
    result = await providers["anthropic"].call("chat", an(up), body)
    message = result.body["choices"][0]["message"]
    assert result.body["choices"][0]["finish_reason"] == "tool_calls"
    call = message["tool_calls"][0]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"test"}'}
    assert up.last("/v1/messages").body["tool_choice"] == {"type": "auto"}
    # The streamed variant assembles the same call.
    stream = await providers["anthropic"].stream("chat", an(up), body)
    deltas = [c["choices"][0]["delta"] for c in await collect(stream) if c["choices"]]
    args = "".join(tc["function"].get("arguments", "") for d in deltas for tc in d.get("tool_calls", []))
    assert args == '{"city": "test"}'
    # Sending the tool result back passes the upstream's pairing validation and gets text.
    follow_up = {
        "messages": [*HELLO, message, {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}],
        "tools": [WEATHER_TOOL],
    }
    answer = await providers["anthropic"].call("chat", an(up), follow_up)
    assert answer.body["choices"][0]["message"]["content"] == "Hello from the fake"


# --- the official SDKs read the translations ------------------------------------------------------------


@pytest.fixture
async def relay(up: FakeUpstream, providers: dict[str, Provider]) -> AsyncIterator[str]:
    """A minimal server: /v1/chat/completions runs on the Anthropic provider, /v1/messages
    (Anthropic shape in and out) runs on the OpenAI provider."""

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("stream"):
            return web.json_response((await providers["anthropic"].call("chat", an(up), body)).body)
        stream = await providers["anthropic"].stream("chat", an(up), body)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        async for chunk in stream:
            await resp.write(encode_event(None, chunk))
        await resp.write(DONE_FRAME)
        return resp

    async def messages(request: web.Request) -> web.StreamResponse:
        body = messages_request_to_openai(await request.json())
        if not body.get("stream"):
            result = await providers["openai"].call("chat", oa(up), body)
            return web.json_response(openai_response_to_messages(result.body, body["model"]))
        stream = await providers["openai"].stream("chat", oa(up), body)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            async for name, data in openai_chunks_to_message_events(aiter(stream), body["model"]):
                await resp.write(encode_event(name, data))
        except UpstreamFailure as failure:
            await resp.write(encode_event(*stream_error_event(failure.message, "overloaded_error")))
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/messages", messages)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    await runner.cleanup()


async def test_openai_sdk_reads_translated_anthropic_answers(relay: str) -> None:
    async with openai.AsyncOpenAI(base_url=relay + "/v1", api_key="k", max_retries=0) as client:
        done = await client.chat.completions.create(model="claude", messages=HELLO)  # type: ignore[arg-type]
        assert done.choices[0].message.content == "Hello from the fake"
        assert done.usage is not None and done.usage.prompt_tokens == 6
        tools = await client.chat.completions.create(model="claude", messages=HELLO, tools=[WEATHER_TOOL])  # type: ignore[arg-type,list-item]
        assert tools.choices[0].message.tool_calls[0].function.name == "get_weather"  # type: ignore[index,union-attr]
        stream = await client.chat.completions.create(
            model="claude",
            messages=HELLO,
            stream=True,
            stream_options={"include_usage": True},  # type: ignore[arg-type]
        )
        chunks = [c async for c in stream]
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from the fake"
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


async def test_anthropic_sdk_reads_translated_openai_answers(relay: str) -> None:
    async with anthropic.AsyncAnthropic(base_url=relay, api_key="k", max_retries=0) as client:
        message = await client.messages.create(
            model="gpt-4o",
            max_tokens=100,
            system="Be kind",
            messages=HELLO,  # type: ignore[arg-type]
        )
        assert message.content[0].text == "Hello from the fake"  # type: ignore[union-attr]
        assert message.stop_reason == "end_turn" and message.usage.input_tokens == 8
        async with client.messages.stream(
            model="gpt-4o",
            max_tokens=100,
            messages=HELLO,  # type: ignore[arg-type]
            tools=[{"name": "get_weather", "input_schema": WEATHER_TOOL["function"]["parameters"]}],  # type: ignore[list-item,index]
        ) as stream:
            final = await stream.get_final_message()
        assert final.stop_reason == "tool_use"
        assert final.content[0].type == "tool_use" and final.content[0].input == {"city": "test"}
        assert (final.usage.input_tokens, final.usage.output_tokens) == (6, 4)
        async with client.messages.stream(model="gpt-4o", max_tokens=100, messages=HELLO) as text_stream:  # type: ignore[arg-type]
            text = "".join([t async for t in text_stream.text_stream])
        assert text == "Hello from the fake"


async def test_anthropic_sdk_sees_a_mid_stream_failure_as_an_error(up: FakeUpstream, relay: str) -> None:
    up.inject("/v1/chat/completions", disconnect_after=3)
    async with anthropic.AsyncAnthropic(base_url=relay, api_key="k", max_retries=0) as client:
        with pytest.raises(anthropic.APIStatusError) as info:
            async with client.messages.stream(model="gpt-4o", max_tokens=100, messages=HELLO) as stream:  # type: ignore[arg-type]
                await stream.get_final_message()
    assert "closed the connection mid-response" in str(info.value)


async def test_calls_share_one_keep_alive_connection(up: FakeUpstream) -> None:
    settings = Settings()
    async with open_client() as client:
        providers = build_providers(client, settings)
        assert {"openai", "anthropic", "azure", "bedrock", "gemini", "vertex"} <= set(providers)
        for _ in range(3):
            await providers["openai"].call("chat", oa(up), {"messages": HELLO})
        for _ in range(3):  # a stream's connection goes back to the pool once its body is complete
            await collect(await providers["openai"].stream("chat", oa(up), {"messages": HELLO}))
        await providers["openai"].call("chat", oa(up), {"messages": HELLO})
    assert len(up.requests) == 7
    assert len({r.peer for r in up.requests}) == 1


async def test_stream_retries_without_stream_options_when_the_upstream_rejects_them(
    providers: dict[str, Provider],
) -> None:
    async with FakeUpstream(reject_stream_options=True) as fake:
        stream = await providers["openai"].stream("chat", oa(fake), {"messages": HELLO})
        assert text_of(await collect(stream)) == "Hello from the fake upstream"
        assert stream.usage is None  # the upstream cannot report it; the gateway estimates
        assert ["stream_options" in r.body for r in fake.requests] == [True, False]


def test_every_provider_type_the_cli_accepts_has_an_adapter() -> None:
    from shieldes.providers.kinds import PROVIDER_KINDS

    adapters = build_providers(None, Settings())  # type: ignore[arg-type]  # no I/O at construction
    assert set(adapters) == set(PROVIDER_KINDS)
    assert all(adapters[k].kind == k for k in adapters)
