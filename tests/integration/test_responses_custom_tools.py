"""Responses custom (freeform) tools, as Codex declares apply_patch, through the openai SDK on
translate deployments (a chat completions server, Anthropic, Bedrock, Gemini): the model's call
comes back as a custom_tool_call, its output goes back as the tool result, JSON and streamed,
continued with previous_response_id and with the whole history sent back."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from openai.types.responses import (
    ResponseCustomToolCall,
    ResponseCustomToolCallInputDeltaEvent,
    ResponseCustomToolCallInputDoneEvent,
    ResponseOutputMessage,
)

from shieldes.projections.shared_commands import AddProvider
from tests.fake_bedrock import FakeBedrock, aws_credentials
from tests.fake_google import FakeGoogle
from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import Harness, harness
from tests.integration.test_responses_api import oai
from tests.responses_schema import check_event

GRAMMAR = 'start: begin_patch hunk+ end_patch\nbegin_patch: "*** Begin Patch" LF\nend_patch: "*** End Patch" LF?'
APPLY_PATCH: Any = {"type": "custom", "name": "apply_patch", "description": "Use apply_patch to edit files.",
                    "format": {"type": "grammar", "syntax": "lark", "definition": GRAMMAR}}
PATCH = '*** Begin Patch\n*** Update File: src/app.py\n@@\n-name = "old"\n+name = "nouveau é"\n*** End Patch\n'
MODELS = {"gpt-4o": "/v1/chat/completions", "claude-3-5-haiku-latest": "/v1/messages"}
CLAUDE_ON_BEDROCK = "anthropic.claude-3-5-sonnet-20240620-v1:0"
GEMINI = ("gemini-2.5-flash", "gemini-3-pro-preview")  # Gemini 3 signs its calls (the signature rides in the id)


def _offered(path: str, body: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
    """(name, parameters, description) of the one tool the upstream was offered."""
    if path == "bedrock":
        [tool] = body["toolConfig"]["tools"]
        spec = tool["toolSpec"]
        return spec["name"], spec["inputSchema"]["json"], spec["description"]
    if path == "gemini":
        [tools] = body["tools"]
        [declared] = tools["functionDeclarations"]
        return declared["name"], declared["parameters"], declared["description"]
    [tool] = body["tools"]
    if path == "/v1/messages":
        return tool["name"], tool["input_schema"], tool["description"]
    return tool["function"]["name"], tool["function"]["parameters"], tool["function"]["description"]


def _history(path: str, body: dict[str, Any]) -> tuple[str | None, dict[str, Any], str]:
    """(call id, arguments, result) of the tool call and result the upstream was sent back (Gemini
    pairs them by name, without ids)."""
    if path == "bedrock":
        use = next(b["toolUse"] for b in body["messages"][-2]["content"] if "toolUse" in b)
        result = next(b["toolResult"] for b in body["messages"][-1]["content"] if "toolResult" in b)
        assert result["toolUseId"] == use["toolUseId"] and use["name"] == "apply_patch"
        return use["toolUseId"], use["input"], result["content"][0]["text"]
    if path == "gemini":
        called = next(p["functionCall"] for p in body["contents"][-2]["parts"] if "functionCall" in p)
        answer = next(p["functionResponse"] for p in body["contents"][-1]["parts"] if "functionResponse" in p)
        assert called["name"] == answer["name"] == "apply_patch"
        return None, called["args"], answer["response"]["content"]
    if path == "/v1/messages":
        use = next(b for b in body["messages"][-2]["content"] if b["type"] == "tool_use")
        result = next(b for b in body["messages"][-1]["content"] if b["type"] == "tool_result")
        assert result["tool_use_id"] == use["id"] and use["name"] == "apply_patch"
        text = result["content"] if isinstance(result["content"], str) else result["content"][0]["text"]
        return use["id"], use["input"], text
    call = body["messages"][-2]["tool_calls"][0]
    result = body["messages"][-1]
    assert result["role"] == "tool" and result["tool_call_id"] == call["id"]
    assert call["function"]["name"] == "apply_patch"
    return call["id"], json.loads(call["function"]["arguments"]), result["content"]


@pytest.mark.parametrize("model", list(MODELS))
async def test_an_apply_patch_loop_on_translate_deployments(database_url: str, model: str) -> None:
    up = FakeUpstream(tool_text=PATCH, models=("gpt-4o",))
    async with harness(database_url, upstream=up) as h:
        await _apply_patch_loop(h, model, MODELS[model], lambda: up.last(MODELS[model]).body)


async def test_an_apply_patch_loop_on_bedrock(database_url: str) -> None:
    with aws_credentials():
        async with FakeBedrock(region="eu-west-1", tool_text=PATCH) as fake, harness(
                database_url, providers=False, upstream_retries=0) as h:
            await h.admin(AddProvider("br", "bedrock", fake.url, None, (CLAUDE_ON_BEDROCK,),
                                      options={"region": "eu-west-1"}))
            await _apply_patch_loop(h, CLAUDE_ON_BEDROCK, "bedrock", lambda: fake.last().body,
                                    "Hello from the fake Bedrock")


@pytest.fixture
async def gemini_node(database_url: str) -> AsyncIterator[tuple[Harness, FakeGoogle]]:
    async with FakeGoogle(tool_text=PATCH) as fake, harness(database_url, providers=False, upstream_retries=0) as h:
        os.environ["SHIELDES_TEST_GEMINI_KEY"] = fake.api_key
        await h.admin(AddProvider("gem", "gemini", fake.url + "/v1beta", "env:SHIELDES_TEST_GEMINI_KEY", GEMINI))
        yield h, fake


@pytest.mark.parametrize("model", GEMINI)
async def test_an_apply_patch_loop_on_gemini(gemini_node: tuple[Harness, FakeGoogle], model: str) -> None:
    h, fake = gemini_node
    await _apply_patch_loop(h, model, "gemini", lambda: fake.last().body, "Hello from the fake Gemini")


async def _apply_patch_loop(h: Harness, model: str, path: str, sent: Callable[[], dict[str, Any]],
                            reply: str = "Hello from the fake upstream") -> None:
    """The loop through the openai SDK; `sent()`: the body the upstream received last, `path` says
    in which API's shape, `reply`: the upstream's text answer."""
    client = oai(h.base, await h.create_key("codex", models=(model,)))
    await h.sync()

    # JSON: the model calls the tool; the client answers with previous_response_id
    first = await client.responses.create(model=model, input="rename it", tools=[APPLY_PATCH],
                                          tool_choice={"type": "custom", "name": "apply_patch"})
    name, parameters, description = _offered(path, sent())
    assert name == "apply_patch" and description == "Use apply_patch to edit files."
    assert parameters["required"] == ["input"] and parameters["properties"]["input"]["type"] == "string"
    assert parameters["properties"]["input"]["description"] == f"text following this lark grammar:\n{GRAMMAR}"
    [call] = [i for i in first.output if not isinstance(i, ResponseOutputMessage)]
    assert isinstance(call, ResponseCustomToolCall)
    assert call.input == PATCH and call.name == "apply_patch" and call.call_id
    second = await client.responses.create(
        model=model, previous_response_id=first.id, tools=[APPLY_PATCH],
        input=[{"type": "custom_tool_call_output", "call_id": call.call_id, "output": "Done!"}])
    assert second.output_text == reply
    assert _history(path, sent()) == (_sent_id(path, call.call_id), {"input": PATCH}, "Done!")

    # streamed, and continued as Codex does with store false: the whole history sent back
    stream = await client.responses.create(model=model, input="rename it", tools=[APPLY_PATCH],
                                           store=False, stream=True)
    events = [e async for e in stream]
    for event in events:
        check_event(event.model_dump(exclude_unset=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e for e in events if isinstance(e, ResponseCustomToolCallInputDeltaEvent)]
    [done] = [e for e in events if isinstance(e, ResponseCustomToolCallInputDoneEvent)]
    # Google sends a function call whole, in one event: one delta
    assert len(deltas) >= (1 if path == "gemini" else 2)
    assert "".join(d.delta for d in deltas) == done.input == PATCH
    kinds = [e.type for e in events if getattr(e, "output_index", None) == done.output_index]
    assert kinds[0] == "response.output_item.added" and kinds[-2:] == [
        "response.custom_tool_call_input.done", "response.output_item.done"]
    assert set(kinds[1:-2]) == {"response.custom_tool_call_input.delta"}
    final = events[-1].response  # type: ignore[union-attr]
    [streamed] = [i for i in final.output if isinstance(i, ResponseCustomToolCall)]
    assert streamed.input == PATCH and streamed.id == done.item_id
    history: list[Any] = [{"role": "user", "content": "rename it"}, streamed.model_dump(exclude_none=True),
                          {"type": "custom_tool_call_output", "call_id": streamed.call_id, "output": "Done!"}]
    again = await client.responses.create(model=model, input=history, tools=[APPLY_PATCH], store=False,
                                           stream=True)
    texts = [e.delta for e in [e async for e in again] if e.type == "response.output_text.delta"]
    assert "".join(texts) == reply
    assert _history(path, sent()) == (_sent_id(path, streamed.call_id), {"input": PATCH}, "Done!")


def _sent_id(path: str, call_id: str) -> str | None:
    return None if path == "gemini" else call_id
