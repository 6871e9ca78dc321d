"""What a chat translation reports it left out (x-shieldes-dropped) is what the request it built
left out: over random tool histories, `reasoning_effort` is named exactly when the translation
sent no thinking, and the other names are the request's fields the upstream has no place for."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shieldes.providers.anthropic_translate import anthropic_request
from shieldes.providers.bedrock_translate import converse_request
from shieldes.providers.dropped import ANSWER_FIELDS

BLOCK = {"type": "thinking", "thinking": "hmm", "signature": "sig"}
ANTHROPIC = ("claude-sonnet-4-5", "claude-3-5-haiku-latest", "claude-3-7-sonnet-20250219")
BEDROCK = ("us.anthropic.claude-sonnet-4-20250514-v1:0", "anthropic.claude-3-haiku-20240307-v1:0",
           "meta.llama3-1-70b-instruct-v1:0", "amazon.nova-pro-v1:0")


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A conversation ending in a user turn or in tool results, its assistant turns calling tools or
    answering, with or without their signed thinking sent back."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": "go"}]
    for i in range(draw(st.integers(0, 6))):
        calls = draw(st.integers(0, 2))
        turn: dict[str, Any] = {"role": "assistant", "content": None if calls else "done"}
        if calls:
            turn["tool_calls"] = [{"id": f"toolu_{i}_{j}", "type": "function",
                                   "function": {"name": "f", "arguments": "{}"}} for j in range(calls)]
        if draw(st.booleans()):
            turn["thinking_blocks"] = [draw(st.sampled_from([BLOCK, {**BLOCK, "signature": ""},
                                                            {"type": "redacted_thinking", "data": "x"}]))]
        messages.append(turn)
        messages += [{"role": "tool", "tool_call_id": f"toolu_{i}_{j}", "content": "ok"} for j in range(calls)]
        if not calls or draw(st.booleans()):
            messages.append({"role": "user", "content": "more"})
    return messages


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": draw(histories())}
    effort = draw(st.sampled_from([None, "none", "minimal", "low", "high"]))
    if effort is not None:
        body["reasoning_effort"] = effort
    if draw(st.booleans()):
        body["tools"] = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
        body["tool_choice"] = draw(st.sampled_from(["auto", "required", "none",
                                                    {"type": "function", "function": {"name": "f"}}]))
    for name in draw(st.lists(st.sampled_from(["seed", "logprobs", "frequency_penalty", "verbosity"]), max_size=2)):
        body[name] = 1 if name != "logprobs" else True
    if draw(st.booleans()):
        body["response_format"] = {"type": "json_object"}
    if draw(st.booleans()):
        body["max_tokens"] = draw(st.integers(1, 40000))
    return body


def _others(dropped: list[str]) -> list[str]:
    return [n for n in dropped if n != "reasoning_effort"]


@settings(max_examples=300, deadline=None)
@given(requests(), st.sampled_from(ANTHROPIC))
def test_anthropic_names_the_effort_exactly_when_it_sent_no_thinking(body: dict[str, Any], model: str) -> None:
    out = anthropic_request(body, model)
    asked = body.get("reasoning_effort") not in (None, "none")
    assert ("reasoning_effort" in out.dropped) == (asked and "thinking" not in out.request)
    fields = [n for n in ANSWER_FIELDS if n != "reasoning_effort" and body.get(n) not in (None, False)]
    json_object = ["response_format.json_object"] if "response_format" in body else []
    assert _others(out.dropped) == fields + json_object


@settings(max_examples=300, deadline=None)
@given(requests(), st.sampled_from(BEDROCK))
def test_converse_names_the_effort_exactly_when_it_sent_no_thinking(body: dict[str, Any], model: str) -> None:
    out = converse_request(body, model)
    asked = body.get("reasoning_effort") not in (None, "none")
    thinking = "thinking" in out.request.get("additionalModelRequestFields", {})
    assert ("reasoning_effort" in out.dropped) == (asked and not thinking)
    fields = [n for n in ANSWER_FIELDS if n != "reasoning_effort" and body.get(n) not in (None, False)]
    # json_object is answered through a forced tool on the families that take one
    json_object = ["response_format.json_object"] if "response_format" in body and "llama" in model else []
    # Converse has no tool choice none: named when the history's tool use keeps the tools on offer
    used = any(m.get("tool_calls") or m.get("role") == "tool" for m in body["messages"])
    none = ["tool_choice.none"] if body.get("tool_choice") == "none" and body.get("tools") and used else []
    assert _others(out.dropped) == fields + json_object + none


def test_converse_carries_the_betas_bedrock_knows_to_claude_and_names_the_rest() -> None:
    """`anthropic_beta` (a Messages client's header) reaches Claude on Bedrock with the values
    Bedrock documents only (any other fails the call there); a model not Claude's takes none."""
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], "anthropic_beta": [
        "claude-code-20250219", "interleaved-thinking-2025-05-14", "context-1m-2025-08-07",
        "interleaved-thinking-2025-05-14"]}
    out = converse_request(body, "us.anthropic.claude-sonnet-4-20250514-v1:0")
    assert out.request["additionalModelRequestFields"] == {
        "anthropic_beta": ["interleaved-thinking-2025-05-14", "context-1m-2025-08-07"]}
    assert out.dropped == ["anthropic-beta: claude-code-20250219"]
    other = converse_request(body, "amazon.nova-pro-v1:0")
    assert "additionalModelRequestFields" not in other.request
    assert other.dropped == ["anthropic-beta: claude-code-20250219", "anthropic-beta: interleaved-thinking-2025-05-14",
                             "anthropic-beta: context-1m-2025-08-07"]
    assert converse_request(dict(body, anthropic_beta="context-1m-2025-08-07"), "anthropic.claude").dropped == []
