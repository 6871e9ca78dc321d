"""Claude Code's requests (the anthropic SDK, streamed, as Claude Code drives the Messages API)
on deployments whose API is not Anthropic's: an OpenAI-compatible chat server, Gemini and Bedrock
through Converse. Every stream is checked as the SDK's accumulator reads it (messages_schema)."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import pytest

from shieldes.projections.shared_commands import AddProvider
from tests.fake_bedrock import FakeBedrock
from tests.fake_google import FakeGoogle
from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import UPSTREAM_KEY, UPSTREAM_KEY_ENV, Harness, harness
from tests.messages_schema import check_stream, parse_sse

BEDROCK_CLAUDE = "us.anthropic.claude-sonnet-4-20250514-v1:0"
READ: Any = {"name": "Read", "description": "Read a file", "input_schema": {
    "type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"],
    "additionalProperties": False, "$schema": "http://json-schema.org/draft-07/schema#"}}
PDF = base64.b64encode(b"%PDF-1.4 a fake document").decode()
PNG = base64.b64encode(b"\x89PNG a fake screenshot").decode()
Node = tuple[Harness, str, FakeGoogle, FakeBedrock]


@pytest.fixture
async def node(database_url: str) -> AsyncIterator[Node]:
    upstream = FakeUpstream(completion_tokens=5, api_key=UPSTREAM_KEY, models=("gpt-4o",))
    async with FakeBedrock() as bedrock, FakeGoogle() as google, \
            harness(database_url, upstream=upstream, providers=False, upstream_retries=0) as h:
        os.environ["SHIELDES_TEST_BEDROCK_KEY"] = bedrock.api_key
        os.environ["SHIELDES_TEST_GEMINI_KEY"] = google.api_key
        await h.admin(AddProvider("chat", "openai", upstream.url, "env:" + UPSTREAM_KEY_ENV, ("gpt-4o",)))
        await h.admin(AddProvider("br", "bedrock", bedrock.url, "env:SHIELDES_TEST_BEDROCK_KEY", (BEDROCK_CLAUDE,),
                                  options={"region": "us-east-1"}))
        await h.admin(AddProvider("gem", "gemini", google.url + "/v1beta", "env:SHIELDES_TEST_GEMINI_KEY",
                                  ("gemini-2.5-flash",)))
        secret = await h.create_key("cc")
        await h.sync()
        yield h, secret, google, bedrock


async def _turn(h: Harness, secret: str, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """One streamed turn as Claude Code sends it: the checked message the events built, the headers."""
    headers = {"x-api-key": secret, "anthropic-version": "2023-06-01",
               "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,"
                                 "fine-grained-tool-streaming-2025-05-14"}
    async with aiohttp.ClientSession() as s, \
            s.post(h.base + "/v1/messages?beta=true", json={**body, "stream": True}, headers=headers) as r:
        raw = await r.read()
        assert r.status == 200, raw
        return check_stream(parse_sse(raw)), dict(r.headers)


@pytest.mark.parametrize("model", ["gemini-2.5-flash", BEDROCK_CLAUDE, "gpt-4o"])
async def test_a_pdf_and_a_screenshot_read_by_a_tool_reach_upstreams_that_take_them(node: Node, model: str) -> None:
    """Claude Code's Read of a PDF answers with a `document` block in its tool_result (of an
    image, an `image` block): Gemini and Bedrock take both in a tool's result, so both go there (the
    PDF was left out, named as dropped); an OpenAI-compatible chat server takes text only in a tool
    message, so both are named in x-shieldes-dropped."""
    h, secret, google, bedrock = node
    ask: list[Any] = [{"role": "user", "content": "read report.pdf"}]
    first, _ = await _turn(h, secret, {"model": model, "max_tokens": 4096, "tools": [READ], "messages": ask})
    assert first["stop_reason"] == "tool_use"
    call = next(b for b in first["content"] if b["type"] == "tool_use")
    read: Any = {"type": "tool_result", "tool_use_id": call["id"], "content": [
        {"type": "text", "text": "report.pdf (1 page)"},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF}}]}
    history = [*ask, {"role": "assistant", "content": first["content"]}, {"role": "user", "content": [read]}]
    second, headers = await _turn(h, secret, {"model": model, "max_tokens": 4096, "tools": [READ], "messages": history})
    assert second["stop_reason"] == "end_turn" and second["content"][-1]["type"] == "text"
    if model == "gpt-4o":
        assert set(headers["x-shieldes-dropped"].split(", ")) == {"messages[2].content[0].content document block",
                                                                  "messages[2].content[0].content image block"}
        return
    # (only the betas Bedrock does not know: anthropic_beta)
    assert headers.get("x-shieldes-dropped", "").replace("anthropic-beta: claude-code-20250219", "").replace(
        ", anthropic-beta: fine-grained-tool-streaming-2025-05-14", "") == ""
    if model == BEDROCK_CLAUDE:
        result = bedrock.last().body["messages"][2]["content"][0]["toolResult"]
        assert result["content"] == [{"text": "report.pdf (1 page)"},
                                     {"document": {"format": "pdf", "name": "document", "source": {"bytes": PDF}}},
                                     {"image": {"format": "png", "source": {"bytes": PNG}}},
                                     # (Converse tells documents apart by name)
                                     {"document": {"format": "pdf", "name": "document (2)", "source": {"bytes": PDF}}}]
    else:
        parts = google.last().body["contents"][2]["parts"]
        assert parts[0]["functionResponse"]["response"] == {"content": "report.pdf (1 page)"}
        assert parts[1:] == [{"inlineData": {"mimeType": "application/pdf", "data": PDF}},
                             {"inlineData": {"mimeType": "image/png", "data": PNG}},
                             {"inlineData": {"mimeType": "application/pdf", "data": PDF}}]


# What Claude Code offers: zod's JSON Schema (draft-07 `$schema`, `additionalProperties: false`,
# enums, `exclusiveMinimum`, nested objects by `$ref`, records as `additionalProperties` maps)
EDIT: Any = {"name": "MultiEdit", "description": "Edit a file", "cache_control": {"type": "ephemeral"},
             "input_schema": {
    "$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "additionalProperties": False,
    "required": ["file_path", "edits"],
    "properties": {"file_path": {"type": "string"}, "edits": {"type": "array", "minItems": 1,
                                                             "items": {"$ref": "#/$defs/Edit"}},
                   "mode": {"type": "string", "enum": ["replace", "append"]},
                   "limit": {"type": "number", "exclusiveMinimum": 0},
                   "env": {"type": "object", "additionalProperties": {"type": "string"},
                           "propertyNames": {"pattern": "^[A-Z_]+$"}}},
    "$defs": {"Edit": {"type": "object", "additionalProperties": False, "required": ["old_string", "new_string"],
                       "properties": {"old_string": {"type": "string"}, "new_string": {"type": "string"},
                                      "replace_all": {"type": "boolean", "default": False}}}}}}
SYSTEM: Any = [{"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
               {"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}]
BOTH = {"MultiEdit", "Read"}
TURNS: Any = {  # what Claude Code adds to a turn, and the tools the answer's calls may name
    "auto": ({}, BOTH),
    "any, one call": ({"tool_choice": {"type": "any", "disable_parallel_tool_use": True}}, BOTH),
    "a named tool": ({"tool_choice": {"type": "tool", "name": "Read"}}, {"Read"}),
    "no tool": ({"tool_choice": {"type": "none"}}, set()),
    "thinking": ({"thinking": {"type": "enabled", "budget_tokens": 4000}}, BOTH),
    "adaptive thinking": ({"thinking": {"type": "adaptive"}}, BOTH),
}


@pytest.mark.parametrize("model", ["gpt-4o", "gemini-2.5-flash", BEDROCK_CLAUDE])
@pytest.mark.parametrize("turn", list(TURNS))
async def test_claude_codes_turns_stream_as_anthropic_streams_them(node: Node, model: str, turn: str) -> None:
    """A Claude Code turn (system blocks with cache breakpoints, its tools' schemas, its tool_choice
    and thinking settings, metadata.user_id, temperature 1, 32000 output tokens, its beta flags):
    the stream is one the SDK's accumulator reads as Anthropic's (blocks in order, each closed
    before the next, tool inputs whole JSON objects, one message_delta with the stop reason and
    output tokens), its tool calls those the turn allows."""
    h, secret, _, _ = node
    extra, called = TURNS[turn]
    body = {"model": model, "max_tokens": 32000, "system": SYSTEM, "tools": [EDIT, READ], "temperature": 1,
            "metadata": {"user_id": "user_0123_account__session_4567"},
            "messages": [{"role": "user", "content": [{"type": "text", "text": "fix the typo in a.py",
                                                       "cache_control": {"type": "ephemeral"}}]}], **extra}
    message, _ = await _turn(h, secret, body)
    calls = [b for b in message["content"] if b["type"] == "tool_use"]
    assert {c["name"] for c in calls} <= called and bool(calls) == bool(called)
    assert all(isinstance(c["input"], dict) and c["input"] for c in calls)
    assert message["stop_reason"] == ("tool_use" if called else "end_turn")
    assert message["usage"]["output_tokens"] > 0 and message["usage"]["input_tokens"] is not None
    if "one call" in turn and model == BEDROCK_CLAUDE:  # (Claude calls several at once unless told not to)
        assert len(calls) == 1
    if "thinking" in turn and model != "gpt-4o":  # (gpt-4o does not think: thinking is named as dropped)
        assert message["content"][0]["type"] == "thinking"


@pytest.mark.parametrize("model", ["gpt-4o", "gemini-2.5-flash", BEDROCK_CLAUDE])
async def test_an_earlier_answer_that_only_thought_does_not_break_the_next_turn(node: Node, model: str) -> None:
    """An answer cut while the model was still thinking (stop_reason max_tokens) holds thinking
    blocks only; sent back in the history it has nothing a chat upstream can carry, so it was an
    assistant message without content: OpenAI refuses it ("expected a string, got null"), and the
    Bedrock and Gemini translations refused it in chat's words. It goes as an empty answer (which
    those leave out, as any empty answer of an earlier turn)."""
    h, secret, _, _ = node
    for thought in ({"type": "thinking", "thinking": "Let me", "signature": ""},
                    {"type": "redacted_thinking", "data": "c2VjcmV0"}):
        history: Any = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [thought]},
                        {"role": "user", "content": "go on"}]
        message, _ = await _turn(h, secret, {"model": model, "max_tokens": 4096, "messages": history})
        assert message["stop_reason"] == "end_turn" and message["content"][-1]["type"] == "text"


async def test_max_tokens_above_what_a_gemini_model_writes_is_lowered_to_its_limit(node: Node) -> None:
    """Claude Code asks for 32000 output tokens; a Gemini model that writes fewer is refused by
    Google with its own wording ("maxOutputTokens value of 32000 but the supported range is from 1
    (inclusive) to 8193 (exclusive)"), which failed every turn. The request goes again within that
    limit, remembered for the next turn, and `max_tokens` is named in x-shieldes-dropped."""
    h, secret, google, _ = node
    google.output_cap = 8192
    body = {"model": "gemini-2.5-flash", "max_tokens": 32000,
            "messages": [{"role": "user", "content": "fix the typo in a.py"}]}
    for _ in range(2):
        message, headers = await _turn(h, secret, body)
        assert message["stop_reason"] == "end_turn" and headers["x-shieldes-dropped"] == "max_tokens"
    sent = [r.body["generationConfig"]["maxOutputTokens"] for r in google.requests if "generationConfig" in r.body]
    assert sent == [32000, 8192, 8192]


async def test_anthropic_betas_bedrock_knows_reach_claude_there_and_the_others_are_named(node: Node) -> None:
    """Claude on Bedrock takes a client's betas as `additionalModelRequestFields.anthropic_beta`
    (interleaved thinking, the 1M context window...), which never reached it; a value Bedrock does
    not know fails the whole call there, so Anthropic's own (claude-code-20250219) are left out
    and named in x-shieldes-dropped, streamed, whole and counted alike."""
    h, secret, _, bedrock = node
    body = {"model": BEDROCK_CLAUDE, "max_tokens": 1000, "messages": [{"role": "user", "content": "hi"}]}
    message, headers = await _turn(h, secret, body)
    assert message["stop_reason"] == "end_turn"
    extra = bedrock.requests[-1].body["additionalModelRequestFields"]
    assert extra["anthropic_beta"] == ["interleaved-thinking-2025-05-14"]
    assert headers["x-shieldes-dropped"] == ("anthropic-beta: claude-code-20250219, "
                                             "anthropic-beta: fine-grained-tool-streaming-2025-05-14")
    betas = {"anthropic-beta": "context-1m-2025-08-07, context-1m-2025-08-07,claude-code-20250219"}
    client = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0, default_headers=betas)
    raw = await client.messages.with_raw_response.create(**body)
    assert (await raw.parse()).stop_reason == "end_turn"
    assert bedrock.requests[-1].body["additionalModelRequestFields"]["anthropic_beta"] == ["context-1m-2025-08-07"]
    assert raw.http_response.headers["x-shieldes-dropped"] == "anthropic-beta: claude-code-20250219"
    counted = await client.messages.count_tokens(model=BEDROCK_CLAUDE, messages=body["messages"])
    assert counted.input_tokens > 0
    sent = bedrock.requests[-1].body["input"]["converse"]["additionalModelRequestFields"]
    assert sent == {"anthropic_beta": ["context-1m-2025-08-07"]}
    # (a request naming none: nothing added, nothing named)
    plain = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
    raw = await plain.messages.with_raw_response.create(**body)
    assert "additionalModelRequestFields" not in bedrock.requests[-1].body
    assert "x-shieldes-dropped" not in raw.http_response.headers


async def test_claude_overloaded_mid_stream_on_bedrock_reaches_claude_code_as_overloaded(node: Node) -> None:
    """Bedrock reports Claude overloaded mid-stream as a modelStreamErrorException whose model
    answered 529; Claude Code backs off and retries an `overloaded_error`, not an `api_error`."""
    h, secret, _, bedrock = node
    bedrock.exception_after = 1
    headers = {"x-api-key": secret, "anthropic-version": "2023-06-01"}
    body = {"model": BEDROCK_CLAUDE, "max_tokens": 1000, "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession() as s, s.post(h.base + "/v1/messages", json=body, headers=headers) as r:
        events = parse_sse(await r.read())
    assert r.status == 200
    errors = [data for event, data in events if event == "error"]
    assert len(errors) == 1 and errors[0]["error"]["type"] == "overloaded_error"


SEARCH: Any = {"name": "ToolSearch", "description": "Fetches full schema definitions for deferred tools",
               "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}
PLACEHOLDER: Any = {"name": "DeferredToolPlaceholder", "defer_loading": True,
                    "description": "Reserved placeholder; never call this tool.",
                    "input_schema": {"type": "object", "properties": {}}}
TICKET: Any = {"name": "mcp__tickets__lookup_ticket", "defer_loading": True, "description": "Look up a ticket",
               "input_schema": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}}
REMINDER = ("<system-reminder>\nThe following deferred tools are now available via ToolSearch. Use ToolSearch with "
            "query \"select:<name>[,<name>...]\" to load tool schemas before calling them:\n"
            "mcp__tickets__lookup_ticket\n</system-reminder>")


def offered_upstream(model: str, h: Harness, google: FakeGoogle, bedrock: FakeBedrock) -> list[str]:
    """The tool names the upstream was offered in its last request."""
    if model == "gpt-4o":
        return [t["function"]["name"] for t in h.upstream.last("/v1/chat/completions").body.get("tools") or []]
    if model == BEDROCK_CLAUDE:
        return [t["toolSpec"]["name"] for t in (bedrock.requests[-1].body.get("toolConfig") or {}).get("tools", [])]
    return [f["name"] for t in google.requests[-1].body.get("tools") or [] for f in t.get("functionDeclarations", [])]


@pytest.mark.parametrize("model", ["gpt-4o", "gemini-2.5-flash", BEDROCK_CLAUDE])
async def test_claude_codes_tool_search_round_works_on_upstreams_without_deferred_tools(
        node: Node, model: str) -> None:
    """Claude Code 2.1.3xx defers MCP tools behind its ToolSearch tool: the first request offers a
    placeholder tool (`defer_loading`, never to be called) and names the MCP tools in a system
    reminder; ToolSearch `select:NAME` answers with a tool_reference block, and the next request
    adds the tool with `defer_loading`. Anthropic shows a deferred tool to the model only once a
    tool_reference loaded it; translated, every deferred tool was offered at once (the placeholder
    too, as a callable function) and the tool_reference was dropped (an empty tool result, named
    in x-shieldes-dropped). Now the upstream is offered what Anthropic would show, and the
    ToolSearch result says the tool is loaded."""
    h, secret, google, bedrock = node
    ask: Any = [{"role": "user", "content": [{"type": "text", "text": REMINDER},
                                             {"type": "text", "text": "look up ticket TCK-1"}]}]
    first, headers = await _turn(h, secret, {"model": model, "max_tokens": 4096, "tools": [SEARCH, PLACEHOLDER],
                                             "messages": ask})
    assert offered_upstream(model, h, google, bedrock) == ["ToolSearch"]
    call = next(b for b in first["content"] if b["type"] == "tool_use")
    loaded = {"type": "tool_result", "tool_use_id": call["id"],
              "content": [{"type": "tool_reference", "tool_name": TICKET["name"]}]}
    history = [*ask, {"role": "assistant", "content": first["content"]}, {"role": "user", "content": [loaded]}]
    second, headers = await _turn(h, secret, {"model": model, "max_tokens": 4096, "messages": history,
                                              "tools": [SEARCH, PLACEHOLDER, TICKET]})
    assert second["stop_reason"] in ("tool_use", "end_turn")
    assert offered_upstream(model, h, google, bedrock) == ["ToolSearch", TICKET["name"]]
    assert "tool_reference" not in headers.get("x-shieldes-dropped", "")
    sent = json.dumps(h.upstream.last("/v1/chat/completions").body if model == "gpt-4o" else
                      bedrock.requests[-1].body if model == BEDROCK_CLAUDE else google.requests[-1].body)
    assert f"Tool {TICKET['name']} is loaded" in sent


async def test_betas_a_bedrock_model_does_not_take_are_left_out_after_its_refusal(node: Node) -> None:
    """Which documented beta a model takes is Bedrock's to say (effort-2025-11-24: Opus 4.5 only),
    and it refuses the whole call for one it does not ("invalid beta flag"), which Claude Code
    sends with every turn: the call goes again once without the betas (named as dropped), and the
    model's next calls go without them at once."""
    h, secret, _, bedrock = node
    betas = {"anthropic-beta": "interleaved-thinking-2025-05-14,effort-2025-11-24"}
    client = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0, default_headers=betas)
    body: Any = {"model": BEDROCK_CLAUDE, "max_tokens": 1000, "messages": [{"role": "user", "content": "hi"}]}
    dropped = "anthropic-beta: interleaved-thinking-2025-05-14, anthropic-beta: effort-2025-11-24"
    for calls in (2, 1):
        before = len(bedrock.requests)
        raw = await client.messages.with_raw_response.create(**body)
        assert (await raw.parse()).stop_reason == "end_turn"
        assert raw.http_response.headers["x-shieldes-dropped"] == dropped
        assert len(bedrock.requests) - before == calls
        assert "additionalModelRequestFields" not in bedrock.requests[-1].body
    async with client.messages.stream(**body) as stream:
        assert (await stream.get_final_message()).stop_reason == "end_turn"
    assert "additionalModelRequestFields" not in bedrock.requests[-1].body
