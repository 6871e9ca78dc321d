"""A request carrying an image is held to its tokens-per-minute limit by what the image costs (about
1600 tokens), not by its base64 bytes: at one token per 4 bytes a 2 MB screenshot was estimated at
half a million tokens and refused by any tpm limit below that, through every API."""

from __future__ import annotations

import base64

import anthropic
import openai
import pytest

from tests.integration.gateway_harness import harness

# 2 MB of image data (the bytes do not matter to the gateway): about 2.7 MB of base64
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8192).decode()
TPM = 100_000


async def test_an_image_counts_as_an_image_against_a_tpm_limit(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("screens", tpm=TPM)
        await h.sync()
        oa = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        chat = await oa.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": [
            {"type": "text", "text": "what is on the screen?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG}}]}])
        assert chat.choices[0].message.content
        sent = h.upstream.last("/v1/chat/completions").body  # megabytes, written past their head whole
        assert sent["messages"][0]["content"][1]["image_url"]["url"] == "data:image/png;base64," + PNG
        turn = await oa.responses.create(model="gpt-4o", input=[{"role": "user", "content": [
            {"type": "input_text", "text": "and now?"},
            {"type": "input_image", "image_url": "data:image/png;base64," + PNG, "detail": "auto"}]}])
        assert turn.output_text
        an = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        message = await an.messages.create(model="claude-3-5-haiku-latest", max_tokens=64, messages=[
            {"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                {"type": "text", "text": "what is on the screen?"}]}])
        assert message.content
        assert h.upstream.last("/v1/messages").body["messages"][0]["content"][0]["source"]["data"] == PNG
        # translated: the data URL becomes Anthropic's base64 source, every byte of it
        await oa.chat.completions.create(model="claude-3-5-haiku-latest", max_tokens=64, messages=[
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG}}]}])
        source = h.upstream.last("/v1/messages").body["messages"][0]["content"][0]["source"]
        assert source == {"type": "base64", "media_type": "image/png", "data": PNG}


async def test_text_is_still_counted_by_its_bytes(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("texts", tpm=TPM)
        await h.sync()
        oa = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        text = "base64 " * (TPM * 4 // 7 + 10)  # more than TPM tokens of text, naming base64 all along
        with pytest.raises(openai.RateLimitError) as refused:
            await oa.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": text}])
        # more than the whole limit: no wait helps, so the client is told not to retry (it was a 500)
        assert "request too large" in refused.value.message and f"limit of {TPM} tokens per minute" in \
            refused.value.message
        assert refused.value.response.headers["x-should-retry"] == "false"
