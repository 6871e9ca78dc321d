"""Every way Google says its safety systems stopped an answer finishes it as `content_filter`,
in whole answers and streams: a client can tell a filtered answer from a finished one."""

from __future__ import annotations

import pytest

from shieldes.providers.gemini_translate import GeminiStreamTranslator, gemini_to_chat

REFUSALS = ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
            "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "MODEL_ARMOR")


@pytest.mark.parametrize("reason", REFUSALS)
def test_google_refusals_finish_as_content_filter(reason: str) -> None:
    # a refused candidate may come without content at all
    resp = {"candidates": [{"finishReason": reason}], "usageMetadata": {"promptTokenCount": 3}}
    chat, _ = gemini_to_chat(resp, "gemini-2.5-flash", 1)
    assert chat["choices"][0]["finish_reason"] == "content_filter"

    stream = GeminiStreamTranslator("gemini-2.5-flash", 1)
    stream.feed({"candidates": [{"content": {"role": "model", "parts": [{"text": "Once upon"}]}}]})
    stream.feed({"candidates": [{"finishReason": reason}], "usageMetadata": {"promptTokenCount": 3}})
    finishes = [c["choices"][0]["finish_reason"] for c in stream.end() if c["choices"]]
    assert finishes == ["content_filter"]


@pytest.mark.parametrize(("reason", "finish"), [("STOP", "stop"), ("MAX_TOKENS", "length"), ("OTHER", "stop")])
def test_other_finish_reasons(reason: str, finish: str) -> None:
    chat, _ = gemini_to_chat({"candidates": [{"finishReason": reason}]}, "gemini-2.5-flash", 1)
    assert chat["choices"][0]["finish_reason"] == finish


def test_an_answer_without_response_id_gets_a_fresh_id() -> None:
    """Clients tell answers apart by id: one fixed id for every Gemini answer without `responseId`
    made them all the same answer."""
    resp = {"candidates": [{"content": {"role": "model", "parts": [{"text": "hi"}]}, "finishReason": "STOP"}]}
    ids = {gemini_to_chat(resp, "gemini-2.5-flash", 1)[0]["id"] for _ in range(3)}
    streamed = set()
    for _ in range(3):
        stream = GeminiStreamTranslator("gemini-2.5-flash", 1)
        streamed |= {c["id"] for c in stream.feed(resp) + stream.end()}
    assert len(ids) == 3 and len(streamed) == 3 and not ids & streamed
    assert all(i.startswith("chatcmpl-") and len(i) == 33 for i in ids | streamed)
    assert gemini_to_chat(dict(resp, responseId="r-1"), "gemini-2.5-flash", 1)[0]["id"] == "r-1"


def test_an_answer_without_candidates_is_refused() -> None:
    with pytest.raises(ValueError, match="no candidates"):
        gemini_to_chat({"usageMetadata": {"promptTokenCount": 3}}, "gemini-2.5-flash", 1)
