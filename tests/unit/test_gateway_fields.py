"""Another gateway's request fields: which are left out, and when `metadata` is OpenAI's."""

from __future__ import annotations

from shieldes.providers import chat_history
from shieldes.providers.gateway_fields import FOREIGN, foreign_fields, openai_metadata


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
