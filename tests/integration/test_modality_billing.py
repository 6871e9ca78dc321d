"""Providers bill audio and image tokens at their own prices, several times the text price
(gpt-4o-audio-preview: text $2.50 / $10 per 1M, audio $40 / $80; Gemini 2.5 Flash: text input $0.30,
audio input $1), and report how many of the tokens were audio: OpenAI in
`prompt_tokens_details.audio_tokens` and `completion_tokens_details.audio_tokens`, Gemini in
`promptTokensDetails` by modality. Through a real node and the official SDKs, JSON and streamed,
those tokens cost their modality's price and the rest the text price, in usage_daily and the
request log alike; a budget holds a request at the dearest price its answer may cost."""

from __future__ import annotations

import base64
import os
from typing import Any

import openai
import pytest
from google import genai
from google.genai import types

from shieldes.projections.shared_commands import AddProvider, SetPricing, UpdateProvider
from tests.fake_google import AUDIO_PART_TOKENS as GEMINI_AUDIO
from tests.fake_google import FakeGoogle
from tests.fake_upstream import AUDIO_PART_TOKENS, AUDIO_PER_WORD
from tests.integration.gateway_harness import harness, wait_until

AUDIO_MODEL = "gpt-4o-audio-preview"
# nUSD per token: text input, text output, audio input, audio output (the catalog's, LiteLLM's list)
PRICES = (2500, 10_000, 40_000, 80_000)
WAV = base64.b64encode(b"RIFF....WAVEfmt fake audio").decode()
SPOKEN: Any = [{"role": "user", "content": [{"type": "text", "text": "what is said here"},
                                            {"type": "input_audio", "input_audio": {"data": WAV, "format": "wav"}}]}]
AUDIO_OUT: Any = {"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}}


def cost(usage: Any, prices: tuple[int, int, int, int] = PRICES) -> int:
    audio_in = usage.prompt_tokens_details.audio_tokens or 0
    audio_out = usage.completion_tokens_details.audio_tokens or 0
    return ((usage.prompt_tokens - audio_in) * prices[0] + (usage.completion_tokens - audio_out) * prices[1]
            + audio_in * prices[2] + audio_out * prices[3])


async def test_audio_tokens_cost_the_audio_price(database_url: str) -> None:
    async with harness(database_url) as h:
        await h.admin(UpdateProvider("openai", models=("gpt-4o", AUDIO_MODEL, "house-audio")))
        # an operator's own modality prices, set as `pricing set --modality` does
        await h.admin(SetPricing("house-audio", 1.0, 2.0, modalities=(("audio_input", 5.0), ("audio_output", 7.0))))
        names = ("json", "stream", "text", "house")
        keys = {name: await h.create_key(name) for name in names}
        await h.sync()

        def client(name: str) -> openai.AsyncOpenAI:
            return openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=keys[name], max_retries=0)

        answer = await client("json").chat.completions.create(model=AUDIO_MODEL, messages=SPOKEN, **AUDIO_OUT)
        assert answer.choices[0].message.audio is not None
        assert answer.usage is not None and answer.usage.prompt_tokens_details is not None
        assert answer.usage.prompt_tokens_details.audio_tokens == AUDIO_PART_TOKENS
        stream = await client("stream").chat.completions.create(
            model=AUDIO_MODEL, messages=SPOKEN, stream=True, stream_options={"include_usage": True}, **AUDIO_OUT)
        streamed = [c.usage async for c in stream if c.usage is not None][-1]
        text = await client("text").chat.completions.create(
            model=AUDIO_MODEL, messages=[{"role": "user", "content": "hello"}])
        house = await client("house").chat.completions.create(model="house-audio", messages=SPOKEN, **AUDIO_OUT)
        assert house.usage is not None and answer.usage.completion_tokens_details is not None
        assert answer.usage.completion_tokens_details.audio_tokens == AUDIO_PER_WORD * 5

        await h.flush()
        totals = h.usage_totals()
        assert totals["json"][3] == cost(answer.usage)
        assert totals["stream"][3] == cost(streamed)
        assert totals["text"][3] == cost(text.usage)  # no audio: the text prices
        assert totals["house"][3] == cost(house.usage, (1000, 2000, 5000, 7000))
        # the audio tokens are not billed at the text price any more: 120 x $40/1M + 20 x $80/1M of
        # the answer's 25 completion tokens, where the text price made them $2.50 and $10
        assert cost(answer.usage) > cost(answer.usage, (2500, 10_000, 2500, 10_000)) * 4

        writer = h.node.request_log
        assert writer is not None
        await wait_until(lambda: writer.buffer.added >= len(names), timeout=10)
        assert await writer.flush_all(10)
        logged = dict(h.sql("SELECT key_name, cost_nusd FROM request_log"))
        assert logged == {name: totals[name][3] for name in names}


async def test_a_budget_holds_an_audio_answer_at_the_audio_price(database_url: str) -> None:
    async with harness(database_url) as h:
        await h.admin(UpdateProvider("openai", models=("gpt-4o", AUDIO_MODEL)))
        # $0.005: 100 completion tokens fit at the $10/1M text price ($0.001), not at the $80/1M
        # audio price the answer may cost ($0.008)
        secret = await h.create_key("tight", budget_usd=0.005)
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        with pytest.raises(openai.APIStatusError) as err:
            await client.chat.completions.create(model=AUDIO_MODEL, messages=SPOKEN, max_tokens=100, **AUDIO_OUT)
        assert err.value.status_code in (402, 403, 429)
        assert "budget" in err.value.message
        assert h.upstream.requests_to("/v1/chat/completions") == []
        # what fits at the audio price is served
        await client.chat.completions.create(model=AUDIO_MODEL, messages=SPOKEN, max_tokens=10, **AUDIO_OUT)
        await client.close()


async def test_gemini_audio_input_costs_the_audio_price(database_url: str) -> None:
    async with FakeGoogle() as google:
        os.environ["SHIELDES_TEST_GEMINI_KEY"] = google.api_key
        async with harness(database_url, providers=False, upstream_retries=0) as h:
            await h.admin(AddProvider("gem", "gemini", google.url + "/v1beta", "env:SHIELDES_TEST_GEMINI_KEY",
                                      ("gemini-2.5-flash",)))
            keys = {name: await h.create_key(name) for name in ("audio", "stream", "text")}
            await h.sync()

            def models(name: str) -> Any:
                return genai.Client(api_key=keys[name], http_options=types.HttpOptions(
                    base_url=h.base, retry_options=types.HttpRetryOptions(attempts=1))).aio.models

            heard = [types.Part.from_text(text="what is said here"),
                     types.Part.from_bytes(data=b"RIFF fake", mime_type="audio/wav")]
            audio = await models("audio").generate_content(model="gemini-2.5-flash", contents=heard)
            streamed = [c async for c in await models("stream").generate_content_stream(
                model="gemini-2.5-flash", contents=heard)][-1]
            text = await models("text").generate_content(model="gemini-2.5-flash", contents="hello")
            await h.flush()
            totals = h.usage_totals()

            def flash(meta: Any) -> int:  # $0.30 text / $1 audio input, $2.50 output (thoughts too)
                details = meta.prompt_tokens_details or []
                spoken = sum(d.token_count for d in details if str(d.modality).endswith("AUDIO"))
                out = meta.candidates_token_count + (meta.thoughts_token_count or 0)
                return (meta.prompt_token_count - spoken) * 300 + spoken * 1000 + out * 2500

            assert audio.usage_metadata is not None and streamed.usage_metadata is not None
            assert [d.token_count for d in audio.usage_metadata.prompt_tokens_details or []
                    if str(d.modality).endswith("AUDIO")] == [GEMINI_AUDIO]
            assert totals["audio"][3] == flash(audio.usage_metadata)
            assert totals["stream"][3] == flash(streamed.usage_metadata)
            assert totals["text"][3] == flash(text.usage_metadata)
