"""Another gateway's request fields: which are left out, and when `metadata` is OpenAI's."""

from __future__ import annotations

from shieldes.providers import chat_history
from shieldes.providers.gateway_fields import FOREIGN, anthropic_metadata, foreign_fields, openai_metadata, request_tags


def test_metadata_in_openai_shape_is_kept_litellms_is_not() -> None:
    assert openai_metadata(None) and openai_metadata({}) and openai_metadata({"team": "search"})
    assert not openai_metadata({"tags": ["a"]})  # LiteLLM's tags
    assert not openai_metadata({"trace": {"id": "t"}})
    assert not openai_metadata({str(i): "v" for i in range(17)})
    assert not openai_metadata({"k": "v" * 513}) and not openai_metadata({"k" * 65: "v"})
    assert not openai_metadata("text")


def test_foreign_fields_in_order_metadata_last() -> None:
    body = {"model": "m", "metadata": {"tags": ["a"]}, "num_retries": 1, "tags": ["a"], "user": "u"}
    assert foreign_fields(body) == ["tags", "num_retries", "metadata"]
    assert foreign_fields({"model": "m", "metadata": {"a": "b"}, "user": "u"}) == []


def test_the_chat_reader_reads_every_foreign_field() -> None:
    assert chat_history._Foreign.__struct_fields__ == (*FOREIGN, "metadata")
    read = chat_history.read_chat_request(b'{"messages":[{"role":"user","content":"hi"}],"tags":["a"],"ttl":5}')
    assert read is not None and read.fields == {"tags": ["a"], "ttl": 5}


def test_request_tags_are_bounded_and_what_is_left_out_named() -> None:
    assert request_tags(None, None, None) == (None, [])
    assert request_tags(["a", "b"], {"tags": ["b", "c"], "trace": "t"}, " d, ,a") == (["a", "b", "c", "d"], [])
    assert request_tags("a", {"tags": "x"}, None) == (None, ["tags"])  # (metadata.tags as a string: OpenAI's value)
    assert request_tags(["", 3, "x" * 65, "x" * 64], None, None) == (["x" * 64], ["tags[0]", "tags[1]", "tags[2]"])
    tags, named = request_tags([f"t{i}" for i in range(17)], None, "h")
    assert tags == [f"t{i}" for i in range(16)] and named == ["tags[16]", "x-litellm-tags[0]"]


def test_anthropic_metadata_keeps_only_user_id() -> None:
    assert anthropic_metadata({"user_id": "u"}) == ({"user_id": "u"}, [])
    assert anthropic_metadata({"user_id": "u", "tags": ["a"]}) == ({"user_id": "u"}, ["metadata.tags"])
    assert anthropic_metadata({"tags": ["a"]}) == (None, ["metadata.tags"])
    assert anthropic_metadata("odd") == ("odd", [])  # (Anthropic says what is wrong with it)
