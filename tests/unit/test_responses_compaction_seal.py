"""The gateway's own compaction items (shieldes/responses/compaction.py): sealed and opened again,
and refused when changed."""

from __future__ import annotations

import pytest

from shieldes.errors import InvalidRequest
from shieldes.responses.compaction import (
    SEAL,
    SUMMARY_HEADING,
    TRIGGER,
    compacted_output,
    compacting,
    compaction_item,
    opened,
    summary_request,
    with_summaries,
)


def test_a_sealed_summary_opens_to_the_same_text() -> None:
    summary = "Goal: fix the flaky test — café ✓\n" * 50
    item = compaction_item(summary)
    assert item["type"] == "compaction" and item["encrypted_content"].startswith(SEAL)
    assert item["id"].startswith("cmp_")
    message = opened(item, 0)
    assert message["role"] == "user" and message["content"][0]["text"] == f"{SUMMARY_HEADING}\n\n{summary}"


@pytest.mark.parametrize("cut", [SEAL, SEAL + "!!", lambda s: s[:-6], lambda s: s[:-1] + "A"])
def test_a_changed_or_cut_seal_is_refused(cut: object) -> None:
    sealed = compaction_item("a summary long enough to be cut somewhere in its middle " * 4)["encrypted_content"]
    bad = cut(sealed) if callable(cut) else cut
    with pytest.raises(InvalidRequest) as err:
        opened({"type": "compaction", "encrypted_content": bad}, 3)
    assert err.value.param == "input[3].encrypted_content"


def test_only_the_gateways_items_are_opened_and_nothing_else_changes() -> None:
    ours, theirs = compaction_item("s"), {"type": "compaction", "encrypted_content": "gAAAAB"}
    user = {"type": "message", "role": "user", "content": "next"}
    assert with_summaries({"input": [theirs, user]}) is None
    body = with_summaries({"model": "m", "input": [ours, theirs, user]})
    assert body is not None and body["model"] == "m"
    assert body["input"][0]["role"] == "user" and body["input"][1:] == [theirs, user]


def test_the_trigger_becomes_an_ask_for_a_summary_in_text() -> None:
    history = [{"type": "message", "role": "user", "content": "hi"}]
    body = {"model": "m", "input": [*history, TRIGGER], "tools": [{"type": "function", "name": "f"}],
            "tool_choice": "required", "text": {"format": {"type": "json_object"}}}
    assert compacting(body) and not compacting({"input": history}) and not compacting({"input": "x"})
    asked = summary_request(body)
    assert asked["input"][:-1] == history and asked["input"][-1]["role"] == "user"
    assert asked["tool_choice"] == "none" and "text" not in asked and asked["tools"] == body["tools"]


def test_compact_answers_the_users_messages_then_the_compaction() -> None:
    item = compaction_item("s")
    items = [{"role": "user", "content": "a"}, {"type": "message", "role": "assistant", "content": "b"},
             {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
             {"type": "message", "role": "user", "content": "d"}]
    assert compacted_output(items, item) == [items[0], items[3], item]
