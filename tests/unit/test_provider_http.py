"""The provider edge helpers: SSE decoding, endpoint URLs, upstream error mapping."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shieldes.providers.base import Target
from shieldes.providers.http import (
    error_message,
    filter_verdicts,
    http_failure,
    is_azure,
    join_endpoint,
    parse_usage,
    retry_delay,
)
from shieldes.providers.sse import SSEDecoder, encode_event

TARGET = Target("dep", "http://upstream", "m", None)


def decode_all(*chunks: bytes) -> list[tuple[str, bytes]]:
    decoder = SSEDecoder()
    out = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out + decoder.close()


def test_sse_basic_comments_multiline_and_events() -> None:
    stream = (
        b': keep-alive\n\ndata: {"a":1}\n\nevent: message_stop\ndata: line1\ndata:line2\n\ndata: [DONE]\n\n'
    )
    assert decode_all(stream) == [
        ("message", b'{"a":1}'),
        ("message_stop", b"line1\nline2"),
        ("message", b"[DONE]"),
    ]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_sse_any_line_ending_split_at_every_byte(newline: bytes) -> None:
    stream = b"event: x" + newline + b"data: 1" + newline + newline + b"data: 2" + newline + newline
    expected = [("x", b"1"), ("message", b"2")]
    assert decode_all(stream) == expected
    assert decode_all(*[stream[i : i + 1] for i in range(len(stream))]) == expected


_LINES = st.sampled_from([b"data: {\"a\": 1}", b"data: [DONE]", b"data: ", b"data:x", b"event: ping", b": keep-alive",
                          b"", b"data: two\ndata: lines", b"id: 7"])


@given(st.lists(_LINES, max_size=12), st.sampled_from([b"\n", b"\r\n"]), st.lists(st.integers(1, 400), max_size=4))
def test_sse_whole_reads_decode_as_byte_by_byte(lines: list[bytes], newline: bytes, cuts: list[int]) -> None:
    """Reads of whole one-line `data:` events take a shortcut; any read gives what feeding the
    same bytes one at a time gives."""
    stream = b"".join(line + newline + newline for line in lines)
    reads, at = [], 0
    for cut in sorted(set(c for c in cuts if c < len(stream))):
        reads.append(stream[at:cut])
        at = cut
    reads.append(stream[at:])
    whole, slow = SSEDecoder(), SSEDecoder()
    fast_events = [e for r in reads for e in whole.feed(r)] + whole.close()
    slow_events = [e for i in range(len(stream)) for e in slow.feed(stream[i:i + 1])] + slow.close()
    assert fast_events == slow_events


def test_sse_last_event_without_blank_line_is_flushed_on_close() -> None:
    assert decode_all(b"data: tail") == [("message", b"tail")]


def test_encode_event_round_trips() -> None:
    frame = encode_event("ping", {"type": "ping"}) + encode_event(None, {"x": 1})
    assert decode_all(frame) == [("ping", b'{"type":"ping"}'), ("message", b'{"x":1}')]


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("https://api.openai.com", "https://api.openai.com/v1/chat/completions"),
        ("https://api.openai.com/", "https://api.openai.com/v1/chat/completions"),
        ("https://api.openai.com/v1", "https://api.openai.com/v1/chat/completions"),
        ("https://api.openai.com/v1/", "https://api.openai.com/v1/chat/completions"),
        ("http://localhost:11434", "http://localhost:11434/v1/chat/completions"),
        ("https://api.groq.com/openai/v1", "https://api.groq.com/openai/v1/chat/completions"),
        ("https://openrouter.ai/api/v1", "https://openrouter.ai/api/v1/chat/completions"),
        (
            "https://generativelanguage.googleapis.com/v1beta/openai/",
            "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions",
        ),
        (
            "https://res.openai.azure.com/openai/deployments/gpt4o?api-version=2024-10-21",
            "https://res.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21",
        ),
        ("https://api.openai.com/v1/chat/completions", "https://api.openai.com/v1/chat/completions"),
    ],
)
def test_join_endpoint(base: str, url: str) -> None:
    assert join_endpoint(base, "/chat/completions") == url


def test_azure_detection() -> None:
    assert is_azure("https://x.openai.azure.com/openai/deployments/d?api-version=2024-10-21")
    assert is_azure("https://x.openai.azure.com/openai/v1")
    assert not is_azure("https://api.openai.com/v1")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"error": {"message": "bad model", "type": "invalid_request_error"}}, "bad model"),
        ({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "Overloaded"),
        ({"error": "model 'x' not found"}, "model 'x' not found"),
        ({"object": "error", "message": "vllm says no"}, "vllm says no"),
        (
            {"detail": [{"loc": ["body"], "msg": "field required"}]},
            '[{"loc":["body"],"msg":"field required"}]',
        ),
        ([1, 2], None),
    ],
)
def test_error_message_shapes(body: object, message: str | None) -> None:
    assert error_message(body) == message


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(400, False), (401, False), (404, False), (408, True), (429, True), (500, True), (529, True)],
)
def test_http_failure_retryable(status: int, retryable: bool) -> None:
    failure = http_failure(TARGET, status, b'{"error":{"message":"nope"}}', {"retry-after": "3"})
    assert (failure.status, failure.retryable, failure.message) == (status, retryable, "nope")
    assert failure.body == {"error": {"message": "nope"}}
    assert failure.retry_after == (3.0 if status in (429, 529) else None)


def test_http_failure_with_text_or_empty_body() -> None:
    # an HTML page (a proxy's, a load balancer's) is told by its title, else its text, never its markup
    assert http_failure(TARGET, 502, b"<html>Bad Gateway</html>", {}).message == (
        "upstream deployment 'dep' answered HTTP 502 with an HTML page (Bad Gateway), not an API error: a proxy "
        "or load balancer in front of it failed")
    page = b"<html><head><title>503 Service Temporarily Unavailable</title></head><body><h1>nginx</h1></body></html>"
    assert "HTML page (503 Service Temporarily Unavailable)" in http_failure(TARGET, 503, page, {}).message
    assert http_failure(TARGET, 500, b"Internal Server Error", {}).message == (
        "upstream deployment 'dep' answered HTTP 500: Internal Server Error")
    assert "HTTP 503" in http_failure(TARGET, 503, b"", {}).message


def test_google_quota_429_waits_its_retry_info_delay() -> None:
    body = {"error": {"code": 429, "message": "You exceeded your current quota", "status": "RESOURCE_EXHAUSTED",
                      "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
                                  {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "36.5s"}]}}
    assert http_failure(TARGET, 429, orjson.dumps(body), {}).retry_after == 36.5
    assert http_failure(TARGET, 429, orjson.dumps(body), {"retry-after": "3"}).retry_after == 3.0  # the header first
    assert retry_delay({"error": {"details": [{"@type": "x", "retryDelay": "5s"}]}}) is None
    assert retry_delay({"error": {"details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                                "retryDelay": "soon"}]}}) is None


def test_azure_content_filter_refusal_names_the_categories_from_innererror() -> None:
    verdicts = {"hate": {"filtered": True, "severity": "high"}, "sexual": {"filtered": False, "severity": "safe"},
                "jailbreak": {"filtered": True, "detected": True},
                "custom_blocklists": {"filtered": True, "details": [{"filtered": True, "id": "Competitors"},
                                                                     {"filtered": False, "id": "Other"}]}}
    body = {"error": {"message": "The response was filtered", "type": None, "param": "prompt",
                      "code": "content_filter", "status": 400,
                      "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": verdicts}}}
    failure = http_failure(TARGET, 400, orjson.dumps(body), {})
    assert failure.code == "content_filter" and not failure.retryable
    assert failure.message == ("The response was filtered (filtered: hate (severity high), jailbreak (detected), "
                               "custom_blocklists (Competitors))")
    assert filter_verdicts({"error": {"message": "x", "code": "content_filter"}}) is None
    assert http_failure(TARGET, 400, b'{"error":{"message":"x","code":"content_filter"}}', {}).message == "x"


def test_parse_usage() -> None:
    assert parse_usage({"prompt_tokens": 3, "total_tokens": 3}) is not None
    assert parse_usage(None) is None
    assert parse_usage({"prompt_tokens": "3"}) is None
