"""`top_k` on Bedrock: Claude takes it in additionalModelRequestFields; Converse has no place for it
on other models, nor Claude while it thinks, so there it is named as dropped."""

from __future__ import annotations

import pytest

from shieldes.errors import InvalidRequest
from shieldes.providers.bedrock_translate import converse_request

ASK = [{"role": "user", "content": "hi"}]
CLAUDE = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"


def test_claude_gets_top_k_others_name_it_dropped() -> None:
    sent = converse_request({"messages": ASK, "top_k": 5}, CLAUDE)
    assert sent.request["additionalModelRequestFields"] == {"top_k": 5} and "top_k" not in sent.dropped
    other = converse_request({"messages": ASK, "top_k": 5}, "meta.llama3-70b-instruct-v1:0")
    assert "additionalModelRequestFields" not in other.request and other.dropped == ["top_k"]
    thinking = converse_request({"messages": ASK, "top_k": 5, "reasoning_effort": "low"}, CLAUDE)
    assert "top_k" not in thinking.request["additionalModelRequestFields"] and thinking.dropped == ["top_k"]


@pytest.mark.parametrize("value", [-1, 2.5, True, "40"])
def test_a_top_k_claude_cannot_take_is_refused_saying_what_to_send(value: object) -> None:
    with pytest.raises(InvalidRequest) as refused:
        converse_request({"messages": ASK, "top_k": value}, CLAUDE)
    assert refused.value.param == "top_k" and "whole number of at least 0" in str(refused.value)
