"""POST /v1/messages and /v1/messages/count_tokens with the official anthropic SDK against a real
node: to an `anthropic` deployment the request and the answer pass through unchanged (compared
with what the fake upstream received and sent), cache tokens are billed at the cache prices."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pytest

from shieldes.projections.shared_commands import SetPricing
from tests.integration.gateway_harness import UPSTREAM_KEY, harness

MODEL = "claude-3-5-haiku-latest"
BETAS = ["prompt-caching-2024-07-31", "interleaved-thinking-2025-05-14"]
LONG_SYSTEM = "You are a careful assistant who answers in one short sentence. " * 4


def _capturing_client(base: str, secret: str, sent: list[Any]) -> anthropic.AsyncAnthropic:
    """A client that keeps every HTTP request it sends (its body bytes, its headers)."""

    async def hook(request: Any) -> None:
        sent.append(request)

    http = anthropic.DefaultAsyncHttpxClient(event_hooks={"request": [hook]})
    return anthropic.AsyncAnthropic(base_url=base, api_key=secret, max_retries=0, http_client=http)


def _rich_request(**extra: Any) -> dict[str, Any]:
    """What Claude Code-style clients send: system blocks with cache_control, thinking, top_k,
    service_tier, metadata, a document with citations, an image, tools, a tool choice."""
    base = dict(
        model=MODEL,
        max_tokens=2048,
        system=[{"type": "text", "text": LONG_SYSTEM, "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": [
            {"type": "document", "title": "notes", "citations": {"enabled": True},
             "source": {"type": "text", "media_type": "text/plain", "data": "The sky is blue."}},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            {"type": "text", "text": "What colour is the sky?", "cache_control": {"type": "ephemeral"}},
        ]}],
        thinking={"type": "enabled", "budget_tokens": 1024},
        service_tier="auto",
        metadata={"user_id": "user-42"},
        tools=[{"name": "lookup", "description": "look it up", "input_schema": {"type": "object"},
                "cache_control": {"type": "ephemeral"}}],
        tool_choice={"type": "none"},
        # sampling fields this SDK version no longer names, and a field no SDK knows yet
        extra_body={"top_k": 40, "future_field": {"nested": [1, 2.5, None]}},
    )
    return {**base, **extra}


async def test_messages_reach_the_upstream_byte_for_byte_and_come_back_unchanged(database_url: str) -> None:
    async with harness(database_url) as h:
        h.upstream.extra_fields = frozenset({"future_field"})  # (an API field newer than the fake's list)
        secret = await h.create_key("cc")
        await h.sync()
        sent: list[Any] = []
        client = _capturing_client(h.base, secret, sent)
        raw = await client.beta.messages.with_raw_response.create(
            **_rich_request(betas=BETAS, extra_query={"beta": "true"}))  # as Claude Code calls it
        message = await raw.parse()
        got = h.upstream.last("/v1/messages")
        assert got.raw == sent[-1].content  # the client's own bytes, model unchanged
        assert got.body["future_field"] == {"nested": [1, 2.5, None]} and got.body["top_k"] == 40
        assert got.headers["anthropic-beta"] == ",".join(BETAS)
        assert got.headers["anthropic-version"] == sent[-1].headers["anthropic-version"]
        assert got.query == {"beta": "true"}
        assert got.headers["x-api-key"] == UPSTREAM_KEY  # never the virtual key
        assert raw.http_response.content == h.upstream.sent[-1]  # the answer's bytes, unchanged
        assert [b.type for b in message.content] == ["thinking", "text"]
        assert message.usage.cache_creation_input_tokens > 0

        # a pinned name (provider/model) changes only `model` on the way out
        await client.messages.create(**_rich_request(model=f"claude/{MODEL}"))
        pinned = h.upstream.last("/v1/messages")
        expected = json.loads(sent[-1].content)
        assert pinned.body == {**expected, "model": MODEL} and list(pinned.body) == list(expected)


async def test_a_virtual_key_in_the_query_string_never_reaches_the_upstream(database_url: str) -> None:
    """A client may authenticate with `?key=` (as Google's clients do); the query string goes on
    to an Anthropic upstream (Claude Code's `?beta=true`), but never the gateway's key."""
    async with harness(database_url) as h:
        secret = await h.create_key("by-query")
        await h.sync()
        body = {"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
        async with aiohttp.ClientSession() as s:
            for path in (f"/v1/messages?beta=true&key={secret}", f"/v1/messages/count_tokens?k%65y={secret}&beta=true",
                         f"/v1/messages?key={secret}"):
                async with s.post(h.base + path, json=body, headers={"anthropic-version": "2023-06-01"}) as r:
                    assert r.status == 200, await r.text()
        calls = [c for c in h.upstream.requests if c.path.startswith("/v1/messages")]
    assert [c.query for c in calls] == [{"beta": "true"}, {"beta": "true"}, {}]
    for c in calls:
        assert secret not in repr((c.path, c.query, c.headers, c.raw))


async def test_stream_is_relayed_unchanged_and_cache_tokens_billed_at_cache_prices(database_url: str) -> None:
    async with harness(database_url) as h:
        h.upstream.extra_fields = frozenset({"future_field"})
        # USD per 1M: input 1, output 2, cache read 0.1, cache write 1.25 -> nUSD per token 1000/2000/100/1250
        await h.admin(SetPricing(MODEL, 1.0, 2.0, 0.1, 1.25))
        secret = await h.create_key("cache-user")
        await h.sync()
        client = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        request = _rich_request()
        async with client.messages.stream(**request) as stream:  # first call writes the cache
            first = await stream.get_final_message()
        # second call, raw over HTTP: the bytes the client reads are the bytes the upstream sent
        body = {**{k: v for k, v in request.items() if k != "extra_body"}, **request["extra_body"], "stream": True}
        async with aiohttp.ClientSession() as http, http.post(
            f"{h.base}/v1/messages", json=body,
            headers={"x-api-key": secret, "anthropic-version": "2023-06-01"},
        ) as resp:
            assert resp.status == 200 and resp.content_type == "text/event-stream"
            relayed = await resp.read()
        assert relayed == h.upstream.sent[-1]
        assert b"event: message_start" in relayed and b"thinking_delta" in relayed

        write = first.usage.cache_creation_input_tokens or 0
        plain = first.usage.input_tokens
        out = first.usage.output_tokens
        assert write > 0 and (first.usage.cache_read_input_tokens or 0) == 0
        await h.flush()
        # the second call read what the first wrote; same plain input and output
        expected = (plain * 1000 + write * 1250 + out * 2000) + (plain * 1000 + write * 100 + out * 2000)
        prompt = 2 * (plain + write)
        assert h.usage_totals() == {"cache-user": (2, prompt, 2 * out, expected)}
        async with aiohttp.ClientSession() as http, http.get(f"{h.base}/metrics") as resp:
            metrics = await resp.read()
        assert f'shieldes_tokens_total{{model="{MODEL}",provider="claude",type="cache_read"}} {write}.0'.encode() \
            in metrics


async def test_count_tokens_passes_through_or_estimates_and_is_not_billed(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("counter", models=(MODEL, "gpt-4o-mini"))
        await h.sync()
        sent: list[Any] = []
        client = _capturing_client(h.base, secret, sent)
        counted = await client.messages.count_tokens(
            model=MODEL, system="be brief", messages=[{"role": "user", "content": "count these four words"}],
            thinking={"type": "enabled", "budget_tokens": 1024})
        assert counted.input_tokens == 6  # the fake upstream's own count (words)
        got = h.upstream.last("/v1/messages/count_tokens")
        assert got.raw == sent[-1].content and got.headers["x-api-key"] == UPSTREAM_KEY

        raw = await client.messages.with_raw_response.count_tokens(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x" * 400}])
        assert raw.http_response.headers["x-shieldes-token-count"] == "estimate"
        assert (await raw.parse()).input_tokens == 3 + 4 + 100  # request + message framing + 400 bytes / 4

        with pytest.raises(anthropic.PermissionDeniedError):
            await client.messages.count_tokens(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
        bad = anthropic.AsyncAnthropic(base_url=h.base, api_key="sk-shd-wrong", max_retries=0)
        with pytest.raises(anthropic.AuthenticationError) as info:
            await bad.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "x"}])
        assert info.value.body["type"] == "error"  # type: ignore[index]
        assert info.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
        await h.flush()
        assert h.usage_totals() == {}


async def test_budget_and_rate_limits_hold_on_the_pass_through(database_url: str) -> None:
    async with harness(database_url) as h:
        limited = await h.create_key("limited", rpm=1)
        broke = await h.create_key("broke", budget_usd=0.000001, budget_period="1d")
        await h.sync()
        one = anthropic.AsyncAnthropic(base_url=h.base, api_key=limited, max_retries=0)
        ask = dict(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "hi"}])
        await one.messages.create(**ask)
        with pytest.raises(anthropic.RateLimitError) as info:
            await one.messages.create(**ask)
        assert info.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
        poor = anthropic.AsyncAnthropic(base_url=h.base, api_key=broke, max_retries=0)
        with pytest.raises(anthropic.RateLimitError) as info:  # the estimate alone is over the budget
            await poor.messages.create(**ask, stream=True)
        assert info.value.body["error"]["code"] == "budget_exceeded"  # type: ignore[index]
        assert info.value.response.headers["x-should-retry"] == "false"
        assert len(h.upstream.requests_to("/v1/messages")) == 1


async def test_upstream_refusal_reaches_the_client_in_anthropic_shape(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("k")
        await h.sync()
        client = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        with pytest.raises(anthropic.BadRequestError) as info:
            await client.messages.create(model=MODEL, max_tokens=5, extra_body={"temperature": 1.5},
                                         messages=[{"role": "user", "content": "hi"}])
        assert "temperature" in info.value.message
        # an overloaded upstream (Anthropic's 529, or overloaded_error as a stream's first event) on every
        # attempt: Anthropic clients get their own 529 overloaded_error, which they back off and retry
        h.upstream.inject("/v1/messages", stream_error="overloaded_error", times=3)
        with pytest.raises(anthropic.OverloadedError) as overloaded:
            async with client.messages.stream(model=MODEL, max_tokens=5,
                                              messages=[{"role": "user", "content": "hi"}]) as stream:
                await stream.get_final_message()
        assert overloaded.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
        h.upstream.inject("/v1/messages", status=529, retry_after=3, times=3)
        with pytest.raises(anthropic.OverloadedError) as overloaded:
            await client.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "hi"}])
        assert overloaded.value.response.headers["retry-after"] == "3"
        h.upstream.inject("/v1/messages", status=529, times=3)  # OpenAI clients of the same model: a 503
        chat = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        with pytest.raises(openai.InternalServerError) as busy:
            await chat.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        assert busy.value.status_code == 503 and busy.value.code == "overloaded"
        h.upstream.inject("/v1/messages", status=500, times=3)  # other failures stay a 502
        with pytest.raises(anthropic.APIStatusError) as failed:
            await client.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "hi"}])
        assert failed.value.status_code == 502


def _agent_turns(n: int) -> list[dict[str, Any]]:
    """A coding agent's history: tool calls and their results, tens of kB."""
    turns: list[dict[str, Any]] = []
    for i in range(n):
        turns.append({"role": "user", "content": [{"type": "text", "text": f"read src/mod{i}.py"}] if i == 0 else [
            {"type": "tool_result", "tool_use_id": f"toolu_{i - 1}", "content": f"def f{i}(x):\n    return x\n" * 30},
            {"type": "text", "text": f"now src/mod{i}.py"}]})
        turns.append({"role": "assistant", "content": [{"type": "tool_use", "id": f"toolu_{i}", "name": "shell",
                                                         "input": {"command": f"cat src/mod{i}.py", "lines": 200}}]})
    return turns


async def test_count_tokens_of_an_agent_history_answers_as_a_whole_decode(database_url: str) -> None:
    """A count is read by the body's top-level fields: a growing agent history goes upstream as the
    client's bytes and each count reads only its new turns; a body the whole decode refuses (a
    number beyond a double's range, nesting past 1024, a lone surrogate, a trailing comma) is
    refused with that decode's 400 before anything else, on a native and an estimated route."""
    async with harness(database_url) as h:
        secret = await h.create_key("agent", models=(MODEL, "gpt-4o-mini"))
        await h.sync()
        gw = h.node.gateway
        assert gw is not None
        headers = {"x-api-key": secret, "anthropic-version": "2023-06-01", "content-type": "application/json"}
        tools = [{"name": "shell", "description": "run it", "input_schema": {"type": "object", "maxLength": 100}}]
        async with aiohttp.ClientSession() as http:
            async def count(raw: bytes) -> tuple[int, dict[str, Any]]:
                async with http.post(f"{h.base}/v1/messages/count_tokens", data=raw, headers=headers) as resp:
                    return resp.status, await resp.json()

            for model, n in ((MODEL, 30), (MODEL, 40), ("gpt-4o-mini", 40), (MODEL, 41)):
                raw = json.dumps({"model": model, "messages": _agent_turns(n), "system": "be careful 1e999",
                                  "tools": tools}).encode()
                status, got = await count(raw)
                assert status == 200 and got["input_tokens"] > 100, got
                if model == MODEL:
                    assert h.upstream.last("/v1/messages/count_tokens").raw == raw
            # one history's bytes held (not one a count), remembered for the next count (the tools are small)
            one = len(json.dumps(_agent_turns(40)).encode())
            assert one < gw.checked_counts.weight < one * 3 // 2, gw.checked_counts.weight

            history = json.dumps(_agent_turns(35))[:-1]
            for bad in (', {"role": "user", "content": [{"type": "text", "text": "x", "n": 1e400}]}]',
                        ', ' + "[" * 1100 + "]" * 1100 + "]", ', "\\ud800"]', ', {"role": "user", "content": "x"},]'):
                for model in (MODEL, "gpt-4o-mini", "gpt-4o", "no-such-model"):
                    raw = b'{"model": "' + model.encode() + b'", "messages": ' + (history + bad).encode() + b"}"
                    with pytest.raises(orjson.JSONDecodeError) as refused:
                        orjson.loads(raw)
                    expected = f"malformed JSON body ({str(refused.value)[:200]}): send one valid JSON object"
                    if str(refused.value).startswith("depth limit exceeded"):  # said in plain words
                        expected = ("malformed JSON body (its arrays and objects nest over 1024 levels deep): "
                                    "send one valid JSON object nested less deeply")
                    status, got = await count(raw)
                    error = {"type": "invalid_request_error", "message": expected, "code": "invalid_request"}
                    assert got.pop("request_id")
                    assert (status, got) == (400, {"type": "error", "error": error}), (bad[:40], model)


async def test_every_messages_answer_names_its_request_id_as_anthropic_does(database_url: str) -> None:
    """Anthropic names a request in `request-id`, which the anthropic SDK reads as a response's
    `_request_id` and an error's `request_id` (Claude Code prints it with an error): the Messages
    routes send the node's request id under that name too, passed through or translated, JSON,
    stream, count_tokens and errors, the same id as `x-request-id`."""
    async with harness(database_url) as h:
        secret = await h.create_key("k", models=(MODEL, "gpt-4o-mini"))
        await h.sync()
        client = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        ask: dict[str, Any] = dict(max_tokens=5, messages=[{"role": "user", "content": "hi"}])
        for model in (MODEL, "gpt-4o-mini"):
            message = await client.messages.create(model=model, **ask)
            assert message._request_id
            raw = await client.messages.with_raw_response.create(model=model, **ask)
            assert raw.request_id == raw.headers["x-request-id"]
            async with client.messages.stream(model=model, **ask) as stream:
                await stream.get_final_message()
                assert stream.response.headers["request-id"] == stream.response.headers["x-request-id"]
            counted = await client.messages.with_raw_response.count_tokens(model=model, messages=ask["messages"])
            assert counted.request_id == counted.headers["x-request-id"]
        with pytest.raises(anthropic.NotFoundError) as unknown:
            await client.messages.create(model="no-such-model", **ask)
        assert unknown.value.request_id == unknown.value.response.headers["x-request-id"]
        assert unknown.value.body["request_id"] == unknown.value.request_id  # type: ignore[index]
        h.upstream.inject("/v1/messages", status=500, times=3)
        with pytest.raises(anthropic.APIStatusError) as failed:
            await client.messages.create(model=MODEL, **ask)
        assert failed.value.request_id == failed.value.response.headers["x-request-id"]


async def test_a_creates_body_sent_to_be_counted_reaches_anthropic_as_a_count_it_takes(database_url: str) -> None:
    """An app counts the very body it is about to send: `max_tokens`, `stream`, `temperature`,
    `metadata`, ... went on to Anthropic's count_tokens, which refuses each ("max_tokens: Extra
    inputs are not permitted"). They change no count and are left out; another gateway's fields
    (`tags`) are named in x-shieldes-dropped."""
    async with harness(database_url) as h:
        secret = await h.create_key("counts")
        await h.sync()
        client = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        create: dict[str, Any] = {"max_tokens": 5, "stream": True, "temperature": 0.2, "top_k": 5,
                                  "stop_sequences": ["END"], "metadata": {"user_id": "u-1"}, "tags": ["search"]}
        raw = await client.messages.with_raw_response.count_tokens(
            model=MODEL, messages=[{"role": "user", "content": "count these words"}], extra_body=create)
        assert (await raw.parse()).input_tokens == 3
        assert raw.headers["x-shieldes-dropped"] == "tags"
        sent = h.upstream.last("/v1/messages/count_tokens").body
        assert set(sent) == {"model", "messages"}, sent
        plain = await client.messages.with_raw_response.count_tokens(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], extra_body={"max_tokens": 5})
        assert "x-shieldes-dropped" not in plain.headers  # (a create's own field changes no count: not named)
