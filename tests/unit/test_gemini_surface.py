"""The pure decisions of the Gemini API surface: what a pass-through changes in the client's body,
what a stream's watch bills, how a broken stream ends, embeddings translated, model-list pages."""

from __future__ import annotations

import base64
import json
import struct

import orjson
import pytest

from shieldes.errors import InvalidRequest
from shieldes.gateway.gemini_frames import Framing
from shieldes.gateway.google_pages import google_page
from shieldes.gateway.top_level import GEMINI_HISTORY, TopLevel
from shieldes.providers.base import TokenUsage, UpstreamFailure
from shieldes.providers.gemini_embed import embed_requests, google_embeddings, openai_embeddings_request
from shieldes.providers.gemini_native import GoogleWatch, bounds, native_changes, native_payload


def test_the_clients_bytes_go_as_they_are_unless_a_field_must_change() -> None:
    raw = b'{"contents": [{"parts": [{"text": "hi", "thoughtSignature": "c2ln"}]}],  "safetySettings": []}'
    body = json.loads(raw)
    assert native_payload(body, raw, "gemini-2.5-pro") is raw
    capped = json.loads(native_payload(body, raw, "gemini-2.5-pro", 300))
    assert capped == {**body, "generationConfig": {"maxOutputTokens": 300}}
    snake = {"generation_config": {"temperature": 0.1}, "model": "models/mine"}
    assert json.loads(native_payload(snake, orjson.dumps(snake), "up", 9)) == {
        "generation_config": {"temperature": 0.1, "max_output_tokens": 9}, "model": "models/up"}
    batch = {"requests": [{"model": "models/alias", "content": {}}, {"content": {}}]}
    assert json.loads(native_payload(batch, orjson.dumps(batch), "up"))["requests"] == [
        {"model": "models/up", "content": {}}, {"content": {}}]
    named = {"model": "models/up", "requests": [{"model": "models/up", "content": {}}]}
    assert native_changes(named, "up") == {} and native_payload(named, b"as sent", "up") == b"as sent"


def test_a_generate_request_keeps_its_contents_as_sent_when_a_field_changes() -> None:
    raw = b'{"contents":[{"parts":[{"text":"h\\u00e9"}]}],"model":"models/alias","generationConfig":{"topK":3}}'
    top = TopLevel(raw, GEMINI_HISTORY)
    assert "contents" not in top.small
    sent = top.with_fields(native_changes(top.small, "up", 50))
    assert sent == (b'{"contents":[{"parts":[{"text":"h\\u00e9"}]}],"model":"models/up",'
                    b'"generationConfig":{"topK":3,"maxOutputTokens":50}}')


def test_bounds_size_the_reservation() -> None:
    assert bounds({}) == (None, 1)
    assert bounds({"generationConfig": {"maxOutputTokens": 64, "candidateCount": 3}}) == (64, 3)
    assert bounds({"generation_config": {"max_output_tokens": 8}}) == (8, 1)
    for bad in ({"generationConfig": {"candidateCount": 0}}, {"generationConfig": "x"}, []):
        with pytest.raises(InvalidRequest):
            bounds(bad)


def test_the_watch_bills_the_last_usage_and_at_least_what_was_relayed_when_cut() -> None:
    watch = GoogleWatch()
    part = {"candidates": [{"content": {"parts": [{"text": "a"}]}}], "usageMetadata": {"promptTokenCount": 7}}
    watch.see(orjson.dumps(part))
    watch.see(orjson.dumps(part))
    assert watch.usage == TokenUsage(7, 2) and not watch.done  # cut here: one token per event relayed
    last = {"candidates": [{"content": {"parts": [{"text": "b"}]}, "finishReason": "STOP"}], "usageMetadata": {
        "promptTokenCount": 7, "candidatesTokenCount": 5, "thoughtsTokenCount": 4, "cachedContentTokenCount": 3}}
    watch.see(orjson.dumps(last))
    assert watch.done and watch.usage == TokenUsage(7, 9, cache_read_tokens=3)


def test_a_broken_stream_ends_in_googles_shape_in_either_form() -> None:
    cut = UpstreamFailure("closed with sk-secret", status=None, retryable=True)
    sse = Framing(True)
    assert sse.element(b"{}") == b"data: {}\r\n\r\n"
    ended = json.loads(sse.error(cut, lambda t: t.replace("sk-secret", "[redacted]"))[6:])
    assert ended["error"]["code"] == 502 and ended["error"]["status"] == "UNAVAILABLE"
    assert "[redacted]" in ended["error"]["message"]
    assert ended["error"]["details"][0]["metadata"] == {"code": "upstream_stream_error"}  # its ErrorInfo
    array = Framing(False)
    written = array.element(b'{"a": 1}') + array.error(UpstreamFailure("busy", status=503, retryable=True), str)
    assert json.loads(written)[1]["error"]["code"] == 503
    assert json.loads(Framing(False).error(cut, str))[0]["error"]["code"] == 502  # nothing before: still an array
    empty = Framing(False)
    assert empty.end() == b"[]"


def test_embeddings_translated_both_ways() -> None:
    requests = embed_requests({"requests": [{"content": {"parts": [{"text": "a"}, {"text": "b"}]},
                                             "task_type": "RETRIEVAL_QUERY", "output_dimensionality": 4}]}, True)
    out, dropped = openai_embeddings_request(requests, "text-embedding-3-small", True)
    assert out == {"model": "text-embedding-3-small", "input": ["a\nb"], "encoding_format": "float", "dimensions": 4}
    assert dropped == ["requests[].taskType"]
    mixed = [{"content": {"parts": [{"text": "a"}]}, "outputDimensionality": 4},
             {"content": {"parts": [{"text": "b"}]}}]
    with pytest.raises(InvalidRequest, match="same `outputDimensionality`"):
        openai_embeddings_request(mixed, "m", True)
    packed = base64.b64encode(struct.pack("<2f", 0.5, -1.0)).decode()
    answer = {"data": [{"index": 1, "embedding": packed}, {"index": 0, "embedding": [1, 2]}]}
    assert google_embeddings(answer, True) == {"embeddings": [{"values": [1.0, 2.0]}, {"values": [0.5, -1.0]}]}
    assert google_embeddings(answer, False) == {"embedding": {"values": [1.0, 2.0]}}


def test_model_list_pages_follow_the_last_name() -> None:
    names = [f"m{i}" for i in range(5)]
    first, token = google_page(names, "2", None)
    assert first == ["m0", "m1"] and token
    second, token = google_page(sorted([*names, "m10"]), "2", token)  # added meanwhile: not skipped
    assert second == ["m10", "m2"] and token
    assert google_page(names, "1000", token) == (["m3", "m4"], None)
    assert google_page(names, None, None) == (names, None)
    with pytest.raises(InvalidRequest):
        google_page(names, "2", "not a token!")
