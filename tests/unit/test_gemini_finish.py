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
