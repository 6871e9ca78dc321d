"""`reasoning_effort` as Claude's and Gemini's thinking settings, and their reasoning as chat's
`reasoning_content` and `thinking_blocks` (pure translations)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from shieldes.errors import InvalidRequest
from shieldes.providers.anthropic_inbound import reasoning_effort
from shieldes.providers.anthropic_replies import openai_chunks_to_message_events, openai_response_to_messages
from shieldes.providers.anthropic_translate import StreamTranslator, anthropic_request, chat_request_to_anthropic
from shieldes.providers.bedrock_answers import ConverseStreamTranslator, converse_to_chat
from shieldes.providers.bedrock_translate import chat_to_converse, converse_request
from shieldes.providers.chat_parts import read_messages
from shieldes.providers.dropped import dropped_fields
from shieldes.providers.gemini_translate import GeminiStreamTranslator, chat_to_gemini, gemini_to_chat
from shieldes.providers.reasoning import BUDGETS, claude_thinking, claude_thinks, read_effort

SONNET = "claude-sonnet-4-5"
ASK: Any = [{"role": "user", "content": "hi"}]
CALL: Any = {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
BLOCK = {"type": "thinking", "thinking": "hmm", "signature": "sig"}


def plan(body: dict[str, Any], model: str = SONNET, max_tokens: int | None = None) -> Any:
    return claude_thinking(body, read_messages(body["messages"])[1], model, max_tokens, 4096)


@pytest.mark.parametrize("effort", ["minimal", "low", "medium", "high"])
def test_budgets_read_back_as_the_same_effort(effort: str) -> None:
    # a Messages client's budget becomes this effort on OpenAI models: the two mappings agree
    back = reasoning_effort({"type": "enabled", "budget_tokens": BUDGETS[effort]})
    assert back == ("low" if effort == "minimal" else effort)


def test_efforts_are_checked() -> None:
    assert read_effort({}) is None and read_effort({"reasoning_effort": "none"}) == "none"
    with pytest.raises(InvalidRequest, match="one of none, minimal, low, medium, high"):
        read_effort({"reasoning_effort": "extreme"})


def test_which_claude_models_think() -> None:
    assert claude_thinks("claude-3-7-sonnet-20250219") and claude_thinks("claude-opus-4-1")
    assert claude_thinks("us.anthropic.claude-sonnet-4-20250514-v1:0")
    assert not claude_thinks("claude-3-5-haiku-latest") and not claude_thinks("anthropic.claude-3-haiku-20240307-v1:0")
    assert not claude_thinks("anthropic.claude-v2:1") and not claude_thinks("meta.llama3-1-70b-instruct-v1:0")


def test_max_tokens_leaves_the_answer_room() -> None:
    ask = {"messages": ASK, "reasoning_effort": "low"}
    assert (plan(ask).budget, plan(ask).max_tokens) == (2048, 2048 + 4096)  # no cap: default room on top
    assert plan(ask, max_tokens=10000).max_tokens == 10000  # a cap the budget fits under holds thinking too
    assert plan(ask, max_tokens=500).max_tokens == 2548  # else the budget comes on top of it
    assert plan({"messages": ASK, "reasoning_effort": "none"}, max_tokens=500) == plan({"messages": ASK},
                                                                                       max_tokens=500)


def test_sampling_that_cannot_think_is_refused_with_what_to_do() -> None:
    with pytest.raises(InvalidRequest, match="leave temperature out"):
        plan({"messages": ASK, "reasoning_effort": "low", "temperature": 0})
    with pytest.raises(InvalidRequest, match="leave top_p out"):
        plan({"messages": ASK, "reasoning_effort": "low", "top_p": 0.5})
    assert plan({"messages": ASK, "reasoning_effort": "low", "temperature": 1, "top_p": 0.95}).budget == 2048


def test_thinking_is_left_off_where_claude_would_refuse_it() -> None:
    ask = {"messages": ASK, "reasoning_effort": "high"}
    assert plan(ask, model="claude-3-5-haiku-latest").dropped
    forced = {**ask, "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "required"}
    assert plan(forced).dropped and plan(forced).budget is None
    unsigned = [*ASK, {"role": "assistant", "content": None, "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "ok"}]
    assert plan({**ask, "messages": unsigned}).dropped
    signed = [unsigned[0], {**unsigned[1], "thinking_blocks": [BLOCK]}, unsigned[2]]
    assert not plan({**ask, "messages": signed}).dropped
    assert anthropic_request({**ask, "messages": unsigned}, SONNET).dropped == ["reasoning_effort"]
    assert anthropic_request({**ask, "messages": signed}, SONNET).dropped == []
    # blocks that carry no signature (from a model that signs nothing) cannot go back
    assert plan({**ask, "messages": [unsigned[0], {**unsigned[1], "thinking_blocks": [
        {"type": "thinking", "thinking": "x", "signature": ""}]}, unsigned[2]]}).dropped


def test_thinking_blocks_go_back_only_with_thinking_on() -> None:
    history = [*ASK, {"role": "assistant", "content": "yes", "thinking_blocks": [
        BLOCK, {"type": "redacted_thinking", "data": "opaque"}]}, {"role": "user", "content": "more"}]
    on = chat_request_to_anthropic({"messages": history, "reasoning_effort": "low"}, SONNET)
    assert on["messages"][1]["content"] == [BLOCK, {"type": "redacted_thinking", "data": "opaque"},
                                            {"type": "text", "text": "yes"}]
    off = chat_request_to_anthropic({"messages": history}, SONNET)
    assert off["messages"][1]["content"] == [{"type": "text", "text": "yes"}] and "thinking" not in off


def test_anthropic_stream_gives_reasoning_deltas_and_whole_blocks() -> None:
    t = StreamTranslator(SONNET, 1)
    events = [
        {"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 3}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "a "}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "b"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "redacted_thinking", "data": "x"}},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "hi"}},
        {"type": "content_block_stop", "index": 2},
    ]
    deltas = [c["choices"][0]["delta"] for e in events for c in t.feed(e["type"], e)][1:]
    assert deltas == [{"reasoning_content": "a "}, {"reasoning_content": "b"},
                      {"thinking_blocks": [{"type": "thinking", "thinking": "a b", "signature": "sig"}]},
                      {"thinking_blocks": [{"type": "redacted_thinking", "data": "x"}]}, {"content": "hi"}]


def test_bedrock_claude_thinking_request_and_answers() -> None:
    model = "anthropic.claude-3-7-sonnet-20250219-v1:0"
    sent = chat_to_converse({"messages": ASK, "reasoning_effort": "medium", "max_tokens": 100}, model)
    assert sent["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 8192}}
    assert sent["inferenceConfig"]["maxTokens"] == 8292
    # json_object mode forces a tool, which Claude refuses with thinking: thinking is left off
    json_mode = chat_to_converse({"messages": ASK, "reasoning_effort": "low",
                                  "response_format": {"type": "json_object"}}, model)
    assert "additionalModelRequestFields" not in json_mode
    assert "additionalModelRequestFields" not in chat_to_converse({"messages": ASK, "reasoning_effort": "low"},
                                                                  "meta.llama3-1-70b-instruct-v1:0")
    answer, _ = converse_to_chat({"output": {"message": {"content": [
        {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "sig"}}},
        {"reasoningContent": {"redactedContent": "opaque"}}, {"text": "hi"}]}}, "stopReason": "end_turn"}, model, 1)
    message = answer["choices"][0]["message"]
    assert message["reasoning_content"] == "hmm" and message["content"] == "hi"
    assert message["thinking_blocks"] == [BLOCK, {"type": "redacted_thinking", "data": "opaque"}]
    t = ConverseStreamTranslator(model, 1)
    frames = [("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "hm"}}}),
              ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "m"}}}),
              ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "sig"}}}),
              ("contentBlockStop", {"contentBlockIndex": 0})]
    deltas = [c["choices"][0]["delta"] for kind, e in frames for c in t.feed(kind, e)]
    assert deltas == [{"reasoning_content": "hm"}, {"reasoning_content": "m"}, {"thinking_blocks": [BLOCK | {
        "thinking": "hmm"}]}]


def test_gemini_thinking_config_and_thoughts() -> None:
    gen = chat_to_gemini({"messages": ASK, "reasoning_effort": "high"}, "gemini-2.5-pro")["generationConfig"]
    assert gen["thinkingConfig"] == {"thinkingBudget": 24576, "includeThoughts": True}
    assert "generationConfig" not in chat_to_gemini({"messages": ASK}, "gemini-2.5-pro")
    off = {"messages": ASK, "reasoning_effort": "none"}  # Pro models cannot stop thinking: the least they take
    assert chat_to_gemini(off, "gemini-2.5-pro")["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 128}
    assert chat_to_gemini(off, "gemini-2.5-flash")["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 0}
    resp = {"candidates": [{"content": {"parts": [{"text": "hmm", "thought": True}, {"text": "hi"}]},
                            "finishReason": "STOP"}],
            "usageMetadata": {"candidatesTokenCount": 1, "thoughtsTokenCount": 4}}
    answer, usage = gemini_to_chat(resp, "gemini-2.5-pro", 1)
    assert answer["choices"][0]["message"]["reasoning_content"] == "hmm"
    assert answer["choices"][0]["message"]["content"] == "hi"
    assert (usage.completion_tokens, usage.reasoning_tokens) == (5, 4)
    t = GeminiStreamTranslator("gemini-2.5-pro", 1)
    deltas = [c["choices"][0]["delta"] for c in t.feed(resp)]
    assert deltas[1:] == [{"reasoning_content": "hmm"}, {"content": "hi"}]


async def test_signed_blocks_reach_a_messages_client_whole() -> None:
    """Bedrock Claude's blocks, translated to chat, stream to a Messages client as Anthropic's own:
    the signature ends the streamed thinking block, a redacted block is a block of its own."""
    async def chunks() -> AsyncIterator[dict[str, Any]]:
        for delta in ({"reasoning_content": "hm"}, {"thinking_blocks": [BLOCK]},
                      {"thinking_blocks": [{"type": "redacted_thinking", "data": "opaque"}]}, {"content": "hi"}):
            yield {"id": "c", "choices": [{"index": 0, "delta": delta}]}

    events = [e async for _, e in openai_chunks_to_message_events(chunks(), SONNET, thinking=True)]
    blocks = [(e["type"], e.get("content_block") or e.get("delta")) for e in events if "index" in e]
    assert blocks == [
        ("content_block_start", {"type": "thinking", "thinking": "", "signature": ""}),
        ("content_block_delta", {"type": "thinking_delta", "thinking": "hm"}),
        ("content_block_delta", {"type": "signature_delta", "signature": "sig"}),
        ("content_block_stop", None),
        ("content_block_start", {"type": "redacted_thinking", "data": "opaque"}),
        ("content_block_stop", None),
        ("content_block_start", {"type": "text", "text": ""}),
        ("content_block_delta", {"type": "text_delta", "text": "hi"}),
        ("content_block_stop", None),
    ]
    message = openai_response_to_messages({"choices": [{"message": {
        "content": "hi", "reasoning_content": "hmm", "thinking_blocks": [BLOCK]}}]}, SONNET, thinking=True)
    assert message["content"] == [BLOCK, {"type": "text", "text": "hi"}]


def test_a_chat_thinking_alone_is_honoured_on_claude_and_named_where_not_taken() -> None:
    """LiteLLM's chat `thinking: {"type": "enabled", "budget_tokens": N}` without `reasoning_effort`
    is Claude's budget on anthropic/vertex and bedrock, and named as dropped where no thinking
    reaches the model (a non-Claude Bedrock model, a Claude that cannot think, Gemini): it had been
    ignored without a word."""
    thinking = {"type": "enabled", "budget_tokens": 3000}
    body = {"messages": ASK, "thinking": thinking, "max_tokens": 5000}
    sent = anthropic_request(body, SONNET)
    assert sent.request["thinking"] == thinking and sent.request["max_tokens"] == 5000 and sent.dropped == []
    bedrock = converse_request(body, "us.anthropic.claude-sonnet-4-5-20250929-v1:0")
    assert bedrock.request["additionalModelRequestFields"] == {"thinking": thinking} and bedrock.dropped == []
    for model in ("meta.llama3-1-70b-instruct-v1:0", "anthropic.claude-3-haiku-20240307-v1:0"):
        left = converse_request(body, model)
        assert "additionalModelRequestFields" not in left.request and left.dropped == ["thinking"]
    assert dropped_fields(body, ()) == ["thinking"]  # (what the Gemini translations name)
    assert dropped_fields({**body, "reasoning_effort": "low"}, ("reasoning_effort",)) == []  # (its budget)
    off = {"messages": ASK, "thinking": {"type": "disabled"}}
    assert "thinking" not in anthropic_request(off, SONNET).request and anthropic_request(off, SONNET).dropped == []
    with pytest.raises(InvalidRequest) as refused:
        anthropic_request({"messages": ASK, "thinking": {"type": "enabled", "budget_tokens": 100}}, SONNET)
    assert refused.value.param == "thinking.budget_tokens" and "at least 1024" in str(refused.value)
    with pytest.raises(InvalidRequest, match=r"does not go with `thinking`.*leave thinking out"):
        anthropic_request({**body, "temperature": 0.2}, SONNET)
