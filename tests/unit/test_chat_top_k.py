"""A chat request's `top_k` (as LiteLLM sends it) to Claude on Anthropic and Vertex, and to Gemini:
each takes it (Claude as `top_k`, Gemini as generationConfig.topK), where it had been left out
without a word; Claude refuses it while thinking, so there it is named as dropped."""

from __future__ import annotations

import pytest

from shieldes.errors import InvalidRequest
from shieldes.providers.anthropic_translate import anthropic_request
from shieldes.providers.gemini_translate import chat_to_gemini

ASK = [{"role": "user", "content": "hi"}]
CLAUDE = "claude-sonnet-4-5"


def test_claude_gets_top_k_unless_it_thinks() -> None:
    sent = anthropic_request({"messages": ASK, "top_k": 5}, CLAUDE)
    assert sent.request["top_k"] == 5 and "top_k" not in sent.dropped
    zero = anthropic_request({"messages": ASK, "top_k": 0}, CLAUDE)
    assert zero.request["top_k"] == 0
    thinking = anthropic_request({"messages": ASK, "top_k": 5, "reasoning_effort": "low"}, CLAUDE)
    assert "thinking" in thinking.request and "top_k" not in thinking.request and thinking.dropped == ["top_k"]
    assert "top_k" not in anthropic_request({"messages": ASK}, CLAUDE).request


def test_gemini_gets_top_k_as_its_top_k() -> None:
    sent = chat_to_gemini({"messages": ASK, "top_k": 40, "top_p": 0.9}, "gemini-2.5-pro")
    assert sent["generationConfig"]["topK"] == 40 and sent["generationConfig"]["topP"] == 0.9


@pytest.mark.parametrize("value", [-1, 2.5, True, "40"])
def test_a_top_k_no_model_takes_is_refused_saying_what_to_send(value: object) -> None:
    for translate in (lambda: anthropic_request({"messages": ASK, "top_k": value}, CLAUDE),
                      lambda: chat_to_gemini({"messages": ASK, "top_k": value}, "gemini-2.5-pro")):
        with pytest.raises(InvalidRequest) as refused:
            translate()
        assert refused.value.param == "top_k" and "whole number of at least 0" in str(refused.value)
