"""Pure parts of the Conversations API: the `conversation` of a Responses request, items' ids and
how an item is shown."""

from __future__ import annotations

import pytest

from shieldes.errors import InvalidRequest
from shieldes.responses.conversation_store import ItemRow
from shieldes.responses.conversations import item_row, parse_items, parse_metadata, shown_item
from shieldes.responses.request import forwards_as_sent, parse_request, upstream_body


def test_conversation_is_an_id_or_an_object_and_excludes_previous_response_id() -> None:
    assert parse_request({"model": "m", "input": "hi", "conversation": "conv_1"}).conversation == "conv_1"
    assert parse_request({"model": "m", "input": "hi", "conversation": {"id": "conv_2"}}).conversation == "conv_2"
    assert parse_request({"model": "m", "input": "hi"}).conversation is None
    for bad in (5, {"name": "x"}, ""):
        with pytest.raises(InvalidRequest, match="conversation id"):
            parse_request({"model": "m", "input": "hi", "conversation": bad})
    with pytest.raises(InvalidRequest, match="Mutually exclusive") as both:
        parse_request({"model": "m", "input": "hi", "conversation": "c", "previous_response_id": "r"})
    assert both.value.code == "mutually_exclusive_parameters"


def test_the_conversation_is_not_sent_upstream() -> None:
    body = {"model": "m", "input": [{"type": "message", "role": "user", "content": "b"}], "conversation": "c"}
    history = [{"type": "message", "role": "user", "content": "a"}]
    sent = upstream_body(body, history, body["input"])
    assert "conversation" not in sent and sent["input"] == history + body["input"]
    assert not forwards_as_sent(body, body["input"])


def test_items_keep_their_own_ids_and_get_typed_new_ones() -> None:
    assert item_row({"type": "message", "id": "msg_own"}).id == "msg_own"
    assert item_row({"type": "message", "role": "user"}).id.startswith("msg_")
    assert item_row({"type": "function_call"}).id.startswith("fc_")
    row = item_row({"type": "message", "role": "user", "content": []})
    assert "id" not in row.item  # upstream gets the item as sent
    shown = shown_item(row, encrypted=False)
    assert shown["id"] == row.id and shown["status"] == "completed"
    sealed = ItemRow("rs_1", {"type": "reasoning", "summary": [], "encrypted_content": "x"})
    assert "encrypted_content" not in shown_item(sealed, encrypted=False)
    assert shown_item(sealed, encrypted=True)["encrypted_content"] == "x"


def test_bad_items_and_metadata_say_what_to_send() -> None:
    assert parse_items(None, required=False) == []
    with pytest.raises(InvalidRequest, match="must be a list"):
        parse_items(None, required=True)
    with pytest.raises(InvalidRequest, match=r"items\[1\]"):
        parse_items([{"role": "user", "content": "a"}, "b"], required=True)
    with pytest.raises(InvalidRequest, match="at most 20"):
        parse_items([{"role": "user", "content": "a"}] * 21, required=True)
    assert parse_items([{"role": "user", "content": "a"}], required=True)[0]["type"] == "message"
    with pytest.raises(InvalidRequest, match="16 string values"):
        parse_metadata({"a": 1})
    assert parse_metadata(None) == {}
