"""Claude models of a `vertex` deployment through a real node: Anthropic's wire format at Vertex's
`publishers/anthropic` URLs (rawPredict, streamRawPredict, count-tokens) with a service account's
access token, driven by the official anthropic and openai SDKs, against the fake Google upstream
(which checks the body as Vertex does: no `model`, `anthropic_version: vertex-2023-10-16`). A
Gemini model is served by the same deployment."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from shieldes.projections.shared_commands import AddProvider, SetPricing
from tests.fake_google import FakeGoogle, Seen, service_account
from tests.fake_wire import ToolScript
from tests.integration.gateway_harness import Harness, harness

CLAUDE = "claude-sonnet-4-5@20250929"
GEMINI = "gemini-2.5-pro"
PREFIX = "/v1/projects/proj-1/locations/us-east5/publishers/"
VERSION = "vertex-2023-10-16"
SYSTEM = "You are a careful assistant who answers in one short sentence. " * 4


@pytest.fixture
def private() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
async def google(private: rsa.RSAPrivateKey) -> AsyncIterator[FakeGoogle]:
    async with FakeGoogle(public_key=private.public_key()) as fake:
        yield fake


@pytest.fixture
def account(google: FakeGoogle, private: rsa.RSAPrivateKey, tmp_path: Path) -> Path:
    """A service-account key file whose tokens come from the fake's /token."""
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(service_account(private, google.url + "/token")))
    return path


@pytest.fixture
async def node(database_url: str, google: FakeGoogle, account: Path) -> AsyncIterator[Harness]:
    async with harness(database_url, providers=False, upstream_retries=0) as h:
        await h.admin(AddProvider("vtx", "vertex", google.url, None, (GEMINI, CLAUDE),
                                  options={"project": "proj-1", "location": "us-east5",
                                           "credentials_file": str(account)}))
        # USD per 1M: input 3, output 15, cache read 0.3, cache write 3.75 -> nUSD per token 3000/15000/300/3750
        await h.admin(SetPricing(CLAUDE, 3.0, 15.0, 0.3, 3.75))
        await h.sync()
        yield h


async def new_key(h: Harness) -> str:
    secret = await h.create_key("app")
    await h.sync()
    return secret


def claude_calls(fake: FakeGoogle) -> list[Seen]:
    return [r for r in fake.requests if "/publishers/anthropic/" in r.path]


async def test_claude_code_messages_json_stream_and_tool_round_billed_with_cache(
        node: Harness, google: FakeGoogle) -> None:
    client = anthropic.AsyncAnthropic(base_url=node.base, api_key=await new_key(node), max_retries=0)
    request: Any = dict(
        model=CLAUDE, max_tokens=2048,
        system=[{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": [{"type": "text", "text": "What colour is the sky?",
                                                 "cache_control": {"type": "ephemeral"}}]}],
        thinking={"type": "enabled", "budget_tokens": 1024}, extra_body={"top_k": 40})
    first = await client.beta.messages.create(**request, betas=["interleaved-thinking-2025-05-14"],
                                              extra_query={"beta": "true"})  # as Claude Code calls it
    sent = claude_calls(google)[-1]
    assert sent.path == PREFIX + f"anthropic/models/{CLAUDE}:rawPredict" and sent.query == {}
    assert "model" not in sent.body and sent.body["anthropic_version"] == VERSION and sent.body["top_k"] == 40
    assert sent.body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert sent.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert sent.headers["Authorization"].startswith("Bearer ya29.") and "x-api-key" not in sent.headers
    assert [b.type for b in first.content] == ["thinking", "text"]
    write = first.usage.cache_creation_input_tokens or 0
    assert write > 0 and not first.usage.cache_read_input_tokens

    async with client.messages.stream(**request) as stream:  # reads what the first call wrote
        second = await stream.get_final_message()
    sent = claude_calls(google)[-1]
    assert sent.path == PREFIX + f"anthropic/models/{CLAUDE}:streamRawPredict" and sent.body["stream"] is True
    assert second.usage.cache_read_input_tokens == write and second.content[-1].type == "text"

    # a tool round: the model calls the client's tool, the result goes back and is quoted
    google.tool_script = ToolScript({"read_file": {"path": "token.txt"}})
    tools: Any = [{"name": "read_file", "description": "read a file",
                   "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}]
    ask: Any = [{"role": "user", "content": "read token.txt"}]
    called = await client.messages.create(model=CLAUDE, max_tokens=200, tools=tools, messages=ask)
    use = called.content[-1]
    assert called.stop_reason == "tool_use" and use.type == "tool_use" and use.input == {"path": "token.txt"}
    async with client.messages.stream(model=CLAUDE, max_tokens=200, tools=tools, messages=[
            *ask, {"role": "assistant", "content": called.content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                          "content": "PURPLE-42"}]}]) as stream:
        answer = await stream.get_final_message()
    assert answer.stop_reason == "end_turn" and "PURPLE-42" in "".join(
        b.text for b in answer.content if b.type == "text")

    await node.flush()
    plain, out = first.usage.input_tokens, first.usage.output_tokens
    billed = [first.usage, second.usage, called.usage, answer.usage]
    prompt = sum(u.input_tokens + (u.cache_read_input_tokens or 0) + (u.cache_creation_input_tokens or 0)
                 for u in billed)
    completion = sum(u.output_tokens for u in billed)
    cost = (plain * 3000 + write * 3750 + out * 15000) + (plain * 3000 + write * 300 + second.usage.output_tokens
                                                         * 15000)
    cost += sum(u.input_tokens * 3000 + u.output_tokens * 15000 for u in (called.usage, answer.usage))
    assert node.usage_totals()["app"] == (4, prompt, completion, cost)
    rows = node.sql("SELECT DISTINCT provider, model FROM usage_deltas")
    assert rows == [("vtx", CLAUDE)]
    assert len([r for r in google.requests if r.path == "/token"]) == 1  # one token for every call


async def test_openai_sdk_chat_and_responses_translated_and_gemini_on_the_same_deployment(
        node: Harness, google: FakeGoogle) -> None:
    client = openai.AsyncOpenAI(base_url=node.base + "/v1", api_key=await new_key(node), max_retries=0)
    hello: Any = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]
    chat = await client.chat.completions.create(model=CLAUDE, messages=hello, max_tokens=100)
    assert chat.choices[0].message.content == "Hello from the fake upstream"
    assert chat.usage is not None and chat.usage.prompt_tokens == 4 and chat.usage.completion_tokens == 5
    sent = claude_calls(google)[-1]
    assert sent.path == PREFIX + f"anthropic/models/{CLAUDE}:rawPredict"
    assert "model" not in sent.body and sent.body["anthropic_version"] == VERSION
    assert sent.body["system"] == "be brief" and sent.body["max_tokens"] == 100

    stream = await client.chat.completions.create(model=CLAUDE, messages=hello, stream=True,
                                                  stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
        "Hello from the fake upstream"
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 4
    assert claude_calls(google)[-1].path.endswith(":streamRawPredict")

    response = await client.responses.create(model=CLAUDE, input="hello there", max_output_tokens=100)
    assert response.output_text == "Hello from the fake upstream"

    gemini = await client.chat.completions.create(model=GEMINI, messages=hello)
    assert gemini.choices[0].message.content == "Hello from the fake Gemini"
    assert google.last().path == PREFIX + f"google/models/{GEMINI}:generateContent"
    assert len([r for r in google.requests if r.path == "/token"]) == 1  # Gemini and Claude share the token
    two = await client.chat.completions.create(model=GEMINI, messages=hello, n=2)
    assert len(two.choices) == 2  # candidateCount on Gemini models; Claude answers one choice, and says so
    with pytest.raises(openai.BadRequestError, match="Claude on Vertex answer one choice"):
        await client.chat.completions.create(model=CLAUDE, messages=hello, n=2)


async def test_count_tokens_is_vertex_count_tokens(node: Harness, google: FakeGoogle) -> None:
    client = anthropic.AsyncAnthropic(base_url=node.base, api_key=await new_key(node), max_retries=0)
    raw = await client.messages.with_raw_response.count_tokens(
        model=CLAUDE, system="be brief", messages=[{"role": "user", "content": "three words here"}])
    assert (await raw.parse()).input_tokens == 5
    assert "x-shieldes-token-count" not in raw.headers  # counted by the upstream, not estimated
    sent = claude_calls(google)[-1]
    assert sent.path == PREFIX + "anthropic/models/count-tokens:rawPredict"
    assert sent.body["model"] == CLAUDE and sent.body["anthropic_version"] == VERSION


async def test_errors_reach_each_client_in_its_own_shape_with_what_to_do(node: Harness, google: FakeGoogle) -> None:
    secret = await new_key(node)
    messages = anthropic.AsyncAnthropic(base_url=node.base, api_key=secret, max_retries=0)
    chat = openai.AsyncOpenAI(base_url=node.base + "/v1", api_key=secret, max_retries=0)
    hello: Any = [{"role": "user", "content": "hello"}]
    # the platform's answer (Google's error JSON): the model is not enabled in the project
    google.claude_enabled = ()
    with pytest.raises(anthropic.NotFoundError) as missing:
        await messages.messages.create(model=CLAUDE, max_tokens=10, messages=hello)
    assert "was not found or your project does not have access" in missing.value.message
    assert "Model Garden" in missing.value.message and "us-east5" in missing.value.message
    assert isinstance(missing.value.body, dict) and missing.value.body["type"] == "error"
    with pytest.raises(openai.NotFoundError) as missing_chat:
        await chat.chat.completions.create(model=CLAUDE, messages=hello, stream=True)
    assert "Model Garden" in missing_chat.value.message
    google.claude_enabled = None
    # the model's answer (Anthropic's error JSON)
    with pytest.raises(anthropic.BadRequestError) as refused:
        await messages.messages.create(model=CLAUDE, max_tokens=10, messages=hello,
                                       extra_body={"temperature": 1.5})
    assert "temperature" in refused.value.message and "Model Garden" not in refused.value.message
    # the platform's quota, retried by nobody (upstream_retries=0) and said so
    google.failures = [429]
    with pytest.raises(anthropic.RateLimitError) as throttled:
        await messages.messages.create(model=CLAUDE, max_tokens=10, messages=hello)
    assert "Resource has been exhausted" in throttled.value.message
    # the platform refused the gateway's own credentials: the client learns what the operator must check
    google.failures = [403]
    with pytest.raises(anthropic.APIStatusError) as denied:
        await messages.messages.create(model=CLAUDE, max_tokens=10, messages=hello)
    assert "roles/aiplatform.user" in denied.value.message and "provider key" not in denied.value.message


async def test_messages_clients_fields_and_betas_vertex_refuses_are_left_out_and_named(
        node: Harness, google: FakeGoogle) -> None:
    """Claude Code and the anthropic SDK send what Anthropic's API takes; Vertex refuses some of it
    with a 400 (fake_google.claude_refusal). Those go unsent and are named; the rest arrives."""
    client = anthropic.AsyncAnthropic(base_url=node.base, api_key=await new_key(node), max_retries=0)
    betas: Any = ["interleaved-thinking-2025-05-14", "mcp-client-2025-11-20", "effort-2025-11-24"]
    request: Any = dict(
        model=CLAUDE, max_tokens=200, betas=betas, metadata={"user_id": "user-7"},
        system=[{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral", "scope": "global"}}],
        messages=[{"role": "user", "content": "hello"}],
        extra_body={"service_tier": "standard_only", "inference_geo": "us",
                    "mcp_servers": [{"type": "url", "url": "https://mcp.example/sse", "name": "docs"}]})
    named = ("inference_geo, mcp_servers, cache_control.scope, anthropic-beta: mcp-client-2025-11-20, "
             "anthropic-beta: effort-2025-11-24")
    raw = await client.beta.messages.with_raw_response.create(**request)
    assert (await raw.parse()).content[-1].type == "text" and raw.headers["x-shieldes-dropped"] == named
    refused, sent = claude_calls(google)[-2:]  # Vertex named the betas it refused; sent again without them
    assert refused.headers["anthropic-beta"] == ",".join(betas)
    assert sent.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert not {"service_tier", "inference_geo", "mcp_servers"} & set(sent.body)
    assert sent.body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert sent.body["metadata"] == {"user_id": "user-7"}  # Vertex takes it
    assert sent.headers["X-Vertex-AI-LLM-Request-Type"] == "shared"  # standard_only: no Provisioned Throughput
    # the next call for the model leaves the refused values out before sending: one call, not two
    calls = len(claude_calls(google))
    again = await client.beta.messages.with_raw_response.create(**request)
    assert again.headers["x-shieldes-dropped"] == named
    assert len(claude_calls(google)) == calls + 1
    assert claude_calls(google)[-1].headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"

    async with client.beta.messages.stream(**request) as stream:
        answer = await stream.get_final_message()
    assert answer.stop_reason == "end_turn" and stream.response.headers["x-shieldes-dropped"] == named
    assert claude_calls(google)[-1].path.endswith(":streamRawPredict")
    assert claude_calls(google)[-1].headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"

    counted = await client.beta.messages.with_raw_response.count_tokens(
        model=CLAUDE, betas=["effort-2025-11-24"], messages=[{"role": "user", "content": "three words here"}])
    assert (await counted.parse()).input_tokens == 3
    assert counted.headers["x-shieldes-dropped"] == "anthropic-beta: effort-2025-11-24"
    assert claude_calls(google)[-1].headers["anthropic-beta"] == "token-counting-2024-11-01"  # the SDK's own

    # what Vertex refuses for a reason the gateway cannot fix reaches the client as Vertex said it
    with pytest.raises(anthropic.BadRequestError) as bad:
        await client.messages.create(model=CLAUDE, max_tokens=10, messages=[{"role": "user", "content": "x"}],
                                     extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"},
                                     extra_body={"temperature": 1.5})
    assert "temperature" in bad.value.message


async def test_openai_sdk_tier_user_and_tags_reach_claude_on_vertex_as_it_takes_them(
        node: Harness, google: FakeGoogle) -> None:
    client = openai.AsyncOpenAI(base_url=node.base + "/v1", api_key=await new_key(node), max_retries=0)
    hello: Any = [{"role": "user", "content": "hello there"}]
    raw = await client.chat.completions.with_raw_response.create(
        model=CLAUDE, messages=hello, max_tokens=100, service_tier="default", user="user-7",
        metadata={"team": "search"})
    assert raw.parse().choices[0].message.content == "Hello from the fake upstream"
    assert raw.headers["x-shieldes-dropped"] == "metadata"  # tags: no Claude counterpart (labels unconfirmed)
    sent = claude_calls(google)[-1]
    assert "service_tier" not in sent.body and sent.headers["X-Vertex-AI-LLM-Request-Type"] == "shared"
    assert sent.body["metadata"] == {"user_id": "user-7"}

    stream = await client.chat.completions.with_raw_response.create(
        model=CLAUDE, messages=hello, stream=True, service_tier="auto", safety_identifier="user-8")
    chunks = [c async for c in stream.parse()]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from the fake upstream"
    assert "x-shieldes-dropped" not in stream.headers
    sent = claude_calls(google)[-1]
    assert "service_tier" not in sent.body and "X-Vertex-AI-LLM-Request-Type" not in sent.headers
    assert sent.body["metadata"] == {"user_id": "user-8"}


async def test_claude_codes_tool_search_beta_reaches_vertex_under_vertex_s_name(node: Harness,
                                                                                 google: FakeGoogle) -> None:
    """Claude Code defers MCP tools behind its ToolSearch tool (tools with `defer_loading`,
    tool_reference results) under the beta `advanced-tool-use-2025-11-20`, Anthropic's API's name;
    Vertex names it `tool-search-tool-2025-10-19` and refuses the other, which was then left out,
    and the deferred tools were refused without it: every Claude Code turn with an MCP server
    failed on Vertex. The beta goes under Vertex's name, once, and nothing is named as dropped."""
    client = anthropic.AsyncAnthropic(base_url=node.base, api_key=await new_key(node), max_retries=0)
    search = {"type": "object", "properties": {"query": {"type": "string"}}}
    tools: Any = [{"name": "ToolSearch", "input_schema": search},
                  {"name": "DeferredToolPlaceholder", "defer_loading": True,
                   "input_schema": {"type": "object", "properties": {}}}]
    betas: Any = ["claude-code-20250219", "advanced-tool-use-2025-11-20", "tool-search-tool-2025-10-19"]
    raw = await client.beta.messages.with_raw_response.create(
        model=CLAUDE, max_tokens=200, betas=betas, tools=tools, messages=[{"role": "user", "content": "hi"}])
    assert (await raw.parse()).stop_reason == "tool_use"
    assert "x-shieldes-dropped" not in raw.http_response.headers
    (sent,) = claude_calls(google)
    assert sent.headers["anthropic-beta"] == "claude-code-20250219,tool-search-tool-2025-10-19"


async def test_a_regional_endpoint_bills_claude_4_5_ten_percent_over_the_global_one(
        database_url: str, google: FakeGoogle, account: Path) -> None:
    """Vertex AI bills Claude 4.5 models 10% more at a regional endpoint than at `global`; the
    catalog's prices are the global endpoint's. Each call costs the endpoint that served it."""
    async with harness(database_url, providers=False, upstream_retries=0) as h:
        for name, location in (("east", "us-east5"), ("world", "global")):
            await h.admin(AddProvider(name, "vertex", google.url, None, (CLAUDE,), options={
                "project": "proj-1", "location": location, "credentials_file": str(account)}))
        keys = {name: await h.create_key(name) for name in ("east", "world")}
        await h.sync()
        answers = {}
        for name in keys:
            client = anthropic.AsyncAnthropic(base_url=h.base, api_key=keys[name], max_retries=0)
            answers[name] = await client.messages.create(model=f"{name}/{CLAUDE}", max_tokens=64,
                                                         messages=[{"role": "user", "content": "hi"}])
        assert {r.path.split("/locations/")[1].split("/")[0] for r in claude_calls(google)} == {"us-east5", "global"}
        await h.flush()
        totals = h.usage_totals()
        for name, factor in (("east", 1.1), ("world", 1.0)):
            usage = answers[name].usage
            # nUSD per token at the global endpoint: input 3000, output 15000
            assert totals[name][3] == round((usage.input_tokens * 3000 + usage.output_tokens * 15000) * factor), name


async def test_a_chat_clients_top_k_reaches_claude_and_gemini_on_vertex(node: Harness, google: FakeGoogle) -> None:
    """`top_k` from a chat client (as LiteLLM sends it) reaches Claude on Vertex as `top_k`, streamed
    and not, and Gemini as its topK; a Messages client's reaches Gemini too. It had been left out
    without a word; while Claude thinks it cannot take it, and that is named."""
    secret = await new_key(node)
    client = openai.AsyncOpenAI(base_url=node.base + "/v1", api_key=secret, max_retries=0)
    hello: Any = [{"role": "user", "content": "hello"}]
    for stream in (False, True):
        raw: Any = await client.chat.completions.with_raw_response.create(
            model=CLAUDE, messages=hello, stream=stream, extra_body={"top_k": 40})
        assert "top_k" not in raw.headers.get("x-shieldes-dropped", "")
        if stream:
            async for _ in raw.parse():
                pass
        assert claude_calls(google)[-1].body["top_k"] == 40
    raw = await client.chat.completions.with_raw_response.create(
        model=CLAUDE, messages=hello, max_tokens=4000, reasoning_effort="low", extra_body={"top_k": 40})
    assert "top_k" in raw.headers["x-shieldes-dropped"] and "top_k" not in claude_calls(google)[-1].body
    raw = await client.chat.completions.with_raw_response.create(model=GEMINI, messages=hello,
                                                                 extra_body={"top_k": 8})
    assert "top_k" not in raw.headers.get("x-shieldes-dropped", "")
    assert google.last().body["generationConfig"]["topK"] == 8
    claude = anthropic.AsyncAnthropic(base_url=node.base, api_key=secret, max_retries=0)
    answer: Any = await claude.messages.with_raw_response.create(model=GEMINI, max_tokens=50, messages=hello,
                                                                 extra_body={"top_k": 6})
    assert "top_k" not in answer.headers.get("x-shieldes-dropped", "")
    assert google.last().body["generationConfig"]["topK"] == 6
