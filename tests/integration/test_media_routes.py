"""OpenAI's media and moderation endpoints through a real node and the official openai SDK, against
the fake upstream's wire format (tests/fake_media.py): what reached the upstream, what was billed
(usage_daily and the request log), budgets, failover, kinds that cannot serve a route, Azure."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import pytest

from shieldes.projections.shared_commands import AddProvider, SetPricing
from tests.fake_media import IMAGE_TOKENS, PNG, SPEECH_CHUNK, SPEECH_CHUNKS, TRANSCRIPT
from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import (
    UPSTREAM_KEY,
    UPSTREAM_KEY_ENV,
    Harness,
    harness,
    snapshot_and_load,
    wait_until,
)

REF = "env:" + UPSTREAM_KEY_ENV
NUSD = 1_000_000_000  # per USD


def client_for(h: Harness, secret: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)


async def logged(h: Harness, expected: int, route: str) -> list[dict[str, Any]]:
    """The request log's rows of `route`, once `expected` rows in all were written."""
    writer = h.node.request_log
    assert writer is not None
    try:
        await wait_until(lambda: writer.buffer.added >= expected, timeout=10)
    except AssertionError:
        raise AssertionError(f"{writer.buffer.added} request-log rows, not {expected}") from None
    assert await writer.flush_all(10)
    rows = h.sql("SELECT route, model, deployment, status, error_code, prompt_tokens, completion_tokens,"
                 " cost_usd * 1000000000, stream, images, audio_seconds, characters FROM request_log"
                 " WHERE route = %s ORDER BY started_at", route)
    names = ("route", "model", "deployment", "status", "error_code", "prompt_tokens", "completion_tokens", "cost_nusd",
             "stream", "images", "audio_seconds", "characters")
    return [dict(zip(names, r, strict=True)) for r in rows]


async def test_moderations_pass_through_free_with_limits_failover_and_refusals(database_url: str) -> None:
    up = FakeUpstream(api_key=UPSTREAM_KEY)
    async with harness(database_url, upstream=up, providers=False, upstream_retries=1) as h:
        await h.admin(AddProvider("primary", "openai", up.url, REF, ("omni-moderation-latest", "gpt-4o")))
        await h.admin(AddProvider("backup", "openai", up.url, REF, ("omni-moderation-latest",)))
        await h.admin(AddProvider("claude", "anthropic", up.url, REF, ("claude-guard",)))
        # a budget: moderations cost nothing, so they need no price to be held to one
        secret = await h.create_key("app", budget_usd=1.0)
        narrow = await h.create_key("narrow", models=("gpt-4o",))
        limited = await h.create_key("limited", rpm=1)
        await h.sync()
        client = client_for(h, secret)

        mod = await client.moderations.create(input=["I will kill the process", "hello there"])
        assert [r.flagged for r in mod.results] == [True, False]
        assert mod.results[0].categories.violence is True and mod.model == "omni-moderation-latest"
        sent = up.last("/v1/moderations")
        assert sent.body == {"input": ["I will kill the process", "hello there"], "model": "omni-moderation-latest"}
        assert sent.headers["authorization"] == "Bearer " + UPSTREAM_KEY

        async with aiohttp.ClientSession() as s, s.post(h.base + "/moderations", json={"input": "hi"},
                                                         headers={"Authorization": f"Bearer {secret}"}) as r:
            assert r.status == 200 and (await r.json())["results"][0]["flagged"] is False

        up.inject("/v1/moderations", status=503, times=1)  # one deployment fails, the other serves
        before = len(up.requests_to("/v1/moderations"))
        mod = await client.moderations.create(model="omni-moderation-latest", input="hello")
        assert mod.results[0].flagged is False and len(up.requests_to("/v1/moderations")) == before + 2

        with pytest.raises(openai.BadRequestError) as kind:
            await client.moderations.create(model="claude-guard", input="hello")
        assert kind.value.code == "unsupported_endpoint" and "anthropic" in kind.value.message
        assert "type openai" in kind.value.message
        with pytest.raises(openai.NotFoundError) as unknown:
            await client.moderations.create(model="no-such-moderator", input="hello")
        assert unknown.value.code == "model_not_found"
        with pytest.raises(openai.PermissionDeniedError):
            await client_for(h, narrow).moderations.create(input="hello")
        with pytest.raises(openai.BadRequestError) as bad:
            await client.moderations.create(input="")
        assert bad.value.param == "input" and "'input'" in bad.value.message
        await client_for(h, limited).moderations.create(input="hello")
        with pytest.raises(openai.RateLimitError):
            await client_for(h, limited).moderations.create(input="hello")

        await h.flush()
        totals = h.usage_totals()
        assert totals["app"][0] == 3 and totals["app"][3] == 0  # counted, never billed
        rows = await logged(h, 9, "/v1/moderations")
        served = [r for r in rows if r["status"] == 200]
        assert len(served) == 4 and all(r["cost_nusd"] == 0 and r["model"] == "omni-moderation-latest"
                                        for r in served)
        assert {r["error_code"] for r in rows if r["status"] != 200} >= {
            "unsupported_endpoint", "model_not_found", "model_not_allowed", "invalid_request", "rate_limit_exceeded"}


async def test_images_billed_per_image_or_by_usage_streamed_on_azure_with_budget_and_failover(
        database_url: str) -> None:
    up = FakeUpstream(api_key=UPSTREAM_KEY)
    async with harness(database_url, upstream=up, providers=False, upstream_retries=1) as h:
        await h.admin(AddProvider("oa", "openai", up.url, REF, ("dall-e-3", "gpt-image-1")))
        await h.admin(AddProvider("oa2", "openai", up.url, REF, ("gpt-image-1",)))
        await h.admin(AddProvider("az", "azure", up.url, REF, ("dall-e-3-eu",), options={"api_version": "2025-04-01"}))
        await h.admin(AddProvider("claude", "anthropic", up.url, REF, ("claude-pics",)))
        await h.admin(SetPricing("dall-e-3-eu", 0, 0, per_image=0.05))  # an Azure deployment's own name, priced
        secret = await h.create_key("app", budget_usd=1.0)
        tight = await h.create_key("tight", budget_usd=0.05)
        await h.sync()
        client = client_for(h, secret)

        # dall-e: no usage in the answer, billed per image at the shipped price ($0.04 at 1024x1024)
        dalle = await client.images.generate(model="dall-e-3", prompt="a red fox in the snow", n=2)
        assert dalle.data is not None and [d.url for d in dalle.data] == [
            "https://images.example/0.png", "https://images.example/1.png"]
        assert up.last("/v1/images/generations").body == {"model": "dall-e-3", "prompt": "a red fox in the snow",
                                                          "n": 2}
        # gpt-image-1: billed by the answer's usage at its token prices ($5 / $40 per 1M)
        made = await client.images.generate(model="gpt-image-1", prompt="a red fox in the snow")
        assert made.data is not None and made.data[0].b64_json == PNG
        assert made.usage is not None and (made.usage.input_tokens, made.usage.output_tokens) == (6, IMAGE_TOKENS)
        # streamed: the partial and completed events as they come, billed by the completed event's usage
        stream = await client.images.generate(model="gpt-image-1", prompt="a red fox in the snow", stream=True,
                                              partial_images=1)
        events = [e async for e in stream]
        assert [e.type for e in events] == ["image_generation.partial_image", "image_generation.completed"]
        assert up.last("/v1/images/generations").body["stream"] is True

        up.inject("/v1/images/generations", status=503, times=1)  # one deployment fails, the other serves
        before = len(up.requests_to("/v1/images/generations"))
        await client.images.generate(model="gpt-image-1", prompt="a red fox in the snow")
        assert len(up.requests_to("/v1/images/generations")) == before + 2

        # Azure: the deployment's URL with its api-version, the key in `api-key`
        azure = await client.images.generate(model="dall-e-3-eu", prompt="a red fox", n=1)
        assert azure.data is not None and len(azure.data) == 1
        sent = up.last()
        assert (sent.path, sent.query) == ("/openai/deployments/dall-e-3-eu/images/generations",
                                           {"api-version": "2025-04-01"})
        assert sent.headers["api-key"] == UPSTREAM_KEY and "authorization" not in sent.headers
        assert sent.body["model"] == "dall-e-3-eu"

        # the budget holds the images asked for before the call: 2 x $0.04 > $0.05
        calls = len(up.requests)
        with pytest.raises(openai.RateLimitError) as spent:
            await client_for(h, tight).images.generate(model="dall-e-3", prompt="a fox", n=2)
        assert spent.value.code == "budget_exceeded" and len(up.requests) == calls
        await client_for(h, tight).images.generate(model="dall-e-3", prompt="a fox", n=1)  # $0.04 fits

        with pytest.raises(openai.BadRequestError) as kind:
            await client.images.generate(model="claude-pics", prompt="a fox")
        assert kind.value.code == "unsupported_endpoint" and "azure, openai" in kind.value.message
        with pytest.raises(openai.NotFoundError):
            await client.images.generate(model="no-such-painter", prompt="a fox")
        with pytest.raises(openai.BadRequestError) as bad:
            await client.images.generate(model="dall-e-3", prompt="a fox", n=11)
        assert bad.value.param == "n"
        with pytest.raises(openai.BadRequestError) as empty:
            await client.images.generate(model="dall-e-3", prompt="")
        assert empty.value.param == "prompt"

        await h.flush()
        token_cost = 6 * 5_000 + IMAGE_TOKENS * 40_000
        want = 2 * 40_000_000 + 3 * token_cost + 50_000_000
        assert h.usage_totals()["app"][0] == 5 and h.usage_totals()["app"][3] == want
        assert h.usage_totals()["tight"][3] == 40_000_000
        rows = await logged(h, 11, "/v1/images/generations")
        served = [(r["model"], r["cost_nusd"], r["stream"]) for r in rows if r["status"] == 200]
        assert served == [("dall-e-3", 80_000_000, False), ("gpt-image-1", token_cost, False),
                          ("gpt-image-1", token_cost, True), ("gpt-image-1", token_cost, False),
                          ("dall-e-3-eu", 50_000_000, False), ("dall-e-3", 40_000_000, False)]


AUDIO = b"".join(bytes([65 + i]) * SPEECH_CHUNK for i in range(SPEECH_CHUNKS))  # what the fake speaks


async def test_speech_streams_audio_through_billed_by_characters_or_tokens(database_url: str) -> None:
    up = FakeUpstream(api_key=UPSTREAM_KEY)
    async with harness(database_url, upstream=up, providers=False, upstream_retries=1) as h:
        await h.admin(AddProvider("oa", "openai", up.url, REF, ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")))
        await h.admin(AddProvider("oa2", "openai", up.url, REF, ("tts-1",)))
        await h.admin(AddProvider("az", "azure", up.url, REF, ("tts-eu",), options={"api_version": "2025-04-01"}))
        await h.admin(AddProvider("claude", "anthropic", up.url, REF, ("claude-voice",)))
        secret = await h.create_key("app")
        tight = await h.create_key("tight", budget_usd=0.0001)
        await h.sync()
        client = client_for(h, secret)
        text = "hello world from the gateway"  # 28 characters, 5 words

        async with client.audio.speech.with_streaming_response.create(model="tts-1", voice="alloy",
                                                                      input=text) as resp:
            assert resp.headers["content-type"] == "audio/mpeg" and "x-shieldes-usage" not in resp.headers
            pieces = [p async for p in resp.iter_bytes()]
        assert b"".join(pieces) == AUDIO
        assert up.last("/v1/audio/speech").body == {"model": "tts-1", "voice": "alloy", "input": text}
        # streamed through: the first chunk reaches the client while the upstream holds back the rest
        hold = up.inject("/v1/audio/speech", hold_after=1)
        async with client.audio.speech.with_streaming_response.create(model="tts-1", voice="alloy",
                                                                      input=text) as resp:
            chunks = resp.iter_bytes()
            first = await anext(chunks)
            assert AUDIO.startswith(first) and hold.holding == 1 and not hold.release.is_set()
            hold.release.set()
            assert first + b"".join([c async for c in chunks]) == AUDIO

        # a token-priced model without usage in its audio: an estimate, said so
        estimated = await client.audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input=text,
                                                     response_format="wav")
        assert estimated.content == AUDIO and estimated.response.headers["x-shieldes-usage"] == "estimate"
        assert estimated.response.headers["content-type"] == "audio/wav"
        # its server-sent events carry the usage: billed by it
        events = await client.audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input=text,
                                                  stream_format="sse")
        assert events.response.headers["content-type"].startswith("text/event-stream")
        assert b"speech.audio.done" in events.content and "x-shieldes-usage" not in events.response.headers

        up.inject("/v1/audio/speech", status=503, times=1)
        before = len(up.requests_to("/v1/audio/speech"))
        assert (await client.audio.speech.create(model="tts-1", voice="alloy", input=text)).content == AUDIO
        assert len(up.requests_to("/v1/audio/speech")) == before + 2

        azure = await client.audio.speech.create(model="tts-eu", voice="alloy", input=text)
        sent = up.last()
        assert azure.content == AUDIO and sent.path == "/openai/deployments/tts-eu/audio/speech"
        assert sent.query == {"api-version": "2025-04-01"} and sent.headers["api-key"] == UPSTREAM_KEY

        calls = len(up.requests)  # 28 characters of tts-1-hd ($30 per 1M) do not fit $0.0001
        with pytest.raises(openai.RateLimitError) as spent:
            await client_for(h, tight).audio.speech.create(model="tts-1-hd", voice="alloy", input=text)
        assert spent.value.code == "budget_exceeded" and len(up.requests) == calls
        with pytest.raises(openai.BadRequestError) as kind:
            await client.audio.speech.create(model="claude-voice", voice="alloy", input=text)
        assert kind.value.code == "unsupported_endpoint"
        with pytest.raises(openai.BadRequestError) as bad:
            await client.audio.speech.create(model="tts-1", voice="alloy", input="")
        assert bad.value.param == "input"

        await h.flush()
        chars = len(text)
        rows = await logged(h, 9, "/v1/audio/speech")
        served = [(r["model"], r["prompt_tokens"], r["completion_tokens"], r["characters"], r["cost_nusd"], r["stream"])
                  for r in rows if r["status"] == 200]
        estimate = (-(-chars // 4), -(-chars * 5 // 4))
        # tts-1: billed per character, recorded as characters (no tokens)
        assert served.pop(1) == served[0] == ("tts-1", 0, 0, chars, chars * 15_000, True)  # (the held one)
        assert served[1] == ("gpt-4o-mini-tts", *estimate, None, estimate[0] * 600 + estimate[1] * 12_000, True)
        audio_tokens = SPEECH_CHUNKS * 10  # the speech.audio.done event's usage
        assert served[2] == ("gpt-4o-mini-tts", 5, audio_tokens, None, 5 * 600 + audio_tokens * 12_000, True)
        assert served[3] == ("tts-1", 0, 0, chars, chars * 15_000, True) and served[4][0] == "tts-eu"
        daily = h.sql("SELECT prompt_tokens, completion_tokens, characters, audio_seconds, images FROM usage_daily"
                      " WHERE key_name = 'app'")
        # (tts-eu, an Azure deployment's name, is not a tts-1 model: billed as an estimate of tokens)
        assert daily == [(5 + 2 * estimate[0], audio_tokens + 2 * estimate[1], 3 * chars, 0, 0)]


async def test_transcriptions_pass_the_upload_through_billed_by_duration_or_tokens(database_url: str) -> None:
    up = FakeUpstream(api_key=UPSTREAM_KEY)
    async with harness(database_url, upstream=up, providers=False, upstream_retries=1,
                       max_body_bytes=64 * 1024) as h:
        await h.admin(AddProvider("oa", "openai", up.url, REF, ("whisper-1", "gpt-4o-transcribe")))
        await h.admin(AddProvider("az", "azure", up.url, REF, ("whisper-eu",), options={"api_version": "2025-04-01"}))
        await h.admin(AddProvider("claude", "anthropic", up.url, REF, ("claude-ears",)))
        secret = await h.create_key("app")
        await h.sync()
        client = client_for(h, secret)
        audio = bytes(range(256)) * 20  # 5120 bytes: the fake hears 5.12 seconds, 51 audio tokens

        # pinned: the upstream gets its own model name in the form, the file's bytes as sent
        got = await client.audio.transcriptions.create(model="oa/whisper-1", file=("talk.mp3", audio, "audio/mpeg"))
        assert got.text == TRANSCRIPT
        sent = up.last("/v1/audio/transcriptions")
        assert sent.body["model"] == "whisper-1" and sent.body["file"]["bytes"] == audio
        assert sent.body["file"]["filename"] == "talk.mp3" and sent.headers["content-type"].startswith(
            "multipart/form-data; boundary=")
        assert sent.raw.count(audio) == 1

        stream = await client.audio.transcriptions.create(model="gpt-4o-transcribe", file=("talk.mp3", audio),
                                                          stream=True)
        events = [e async for e in stream]
        assert [e.type for e in events][-1] == "transcript.text.done"
        assert "".join(e.delta for e in events if e.type == "transcript.text.delta").strip() == TRANSCRIPT
        assert up.last("/v1/audio/transcriptions").body["stream"] == "true"

        text = await client.audio.transcriptions.create(model="whisper-1", file=("talk.mp3", audio),
                                                        response_format="text")
        assert text.strip() == TRANSCRIPT  # plain text: no usage, the estimate is billed
        translated = await client.audio.translations.create(model="whisper-1", file=("talk.mp3", audio))
        assert translated.text == TRANSCRIPT and up.last().path == "/v1/audio/translations"

        up.inject("/v1/audio/transcriptions", status=503, times=1)  # retried (SHIELDES_UPSTREAM_RETRIES)
        before = len(up.requests_to("/v1/audio/transcriptions"))
        await client.audio.transcriptions.create(model="gpt-4o-transcribe", file=("talk.mp3", audio))
        assert len(up.requests_to("/v1/audio/transcriptions")) == before + 2

        azure = await client.audio.transcriptions.create(model="whisper-eu", file=("talk.mp3", audio))
        sent = up.last()
        assert azure.text == TRANSCRIPT and sent.path == "/openai/deployments/whisper-eu/audio/transcriptions"
        assert sent.query == {"api-version": "2025-04-01"} and sent.headers["api-key"] == UPSTREAM_KEY
        assert sent.body["model"] == "whisper-eu" and sent.body["file"]["bytes"] == audio

        calls = len(up.requests)
        with pytest.raises(openai.APIStatusError) as too_big:
            await client.audio.transcriptions.create(model="whisper-1", file=("long.mp3", b"x" * (65 * 1024)))
        assert too_big.value.status_code == 413 and "SHIELDES_MAX_BODY_BYTES" in too_big.value.message
        assert len(up.requests) == calls
        with pytest.raises(openai.BadRequestError) as kind:
            await client.audio.transcriptions.create(model="claude-ears", file=("talk.mp3", audio))
        assert kind.value.code == "unsupported_endpoint"
        with pytest.raises(openai.NotFoundError):
            await client.audio.transcriptions.create(model="no-such-ears", file=("talk.mp3", audio))

        await h.flush()
        rows = await logged(h, 9, "/v1/audio/transcriptions")
        served = [(r["model"], r["prompt_tokens"], r["completion_tokens"], r["audio_seconds"], r["cost_nusd"])
                  for r in rows if r["status"] == 200]
        words = len(TRANSCRIPT.split())
        held = -(-len(audio) // 4000)  # the estimate's seconds, from the upload's size
        # whisper: billed per second, recorded as audio_seconds (no tokens)
        assert served == [("oa/whisper-1", 0, 0, 6, 6 * 100_000),  # 5.12 s, billed as 6 whole seconds
                          ("gpt-4o-transcribe", 51, words, None, 51 * 6_000 + words * 10_000),
                          ("whisper-1", 0, 0, held, held * 100_000),
                          ("gpt-4o-transcribe", 51, words, None, 51 * 6_000 + words * 10_000),
                          ("whisper-eu", 0, 0, 6, 0)]  # an Azure deployment's name has no price: $0
        translations = await logged(h, 9, "/v1/audio/translations")
        assert [(r["prompt_tokens"], r["audio_seconds"], r["cost_nusd"]) for r in translations] == [
            (0, held, held * 100_000)]
        daily = h.sql("SELECT prompt_tokens, completion_tokens, audio_seconds, characters FROM usage_daily"
                      " WHERE key_name = 'app'")
        assert daily == [(2 * 51, 2 * words, 6 + held + 6 + held, 0)]
        async with aiohttp.ClientSession() as s, s.get(h.base + "/metrics") as r:
            metrics = await r.text()
        assert f'shieldes_media_units_total{{model="whisper-1",provider="oa",unit="audio_seconds"}} {6 + 2 * held}.0' \
            in metrics


async def test_azure_clients_name_the_deployment_in_the_path(database_url: str) -> None:
    """The openai SDK's AzureOpenAI client calls /openai/deployments/{deployment}/...: the deployment
    is the model routed, as on the chat routes."""
    up = FakeUpstream(api_key=UPSTREAM_KEY)
    async with harness(database_url, upstream=up, providers=False, upstream_retries=0) as h:
        await h.admin(AddProvider("oa", "openai", up.url, REF, ("dall-e-3", "whisper-1", "tts-1")))
        secret = await h.create_key("app")
        await h.sync()
        azure = openai.AsyncAzureOpenAI(azure_endpoint=h.base, api_key=secret, api_version="2024-10-21",
                                        max_retries=0)
        image = await azure.images.generate(model="dall-e-3", prompt="a fox")
        assert image.data is not None and up.last().body["model"] == "dall-e-3"
        heard = await azure.audio.transcriptions.create(model="whisper-1", file=("a.mp3", b"x" * 3000))
        assert heard.text == TRANSCRIPT and up.last().body["model"] == "whisper-1"
        spoken = await azure.audio.speech.create(model="tts-1", voice="alloy", input="hi")
        assert spoken.content == AUDIO
        with pytest.raises(openai.NotFoundError):
            await azure.images.generate(model="no-such-deployment", prompt="a fox")


ADMIN = "admin-" + "token-for-media-tests-" * 2


async def _live(h: Harness) -> dict[str, Any]:
    """GET /admin/v1/usage/live's row of key `app`."""
    async with aiohttp.ClientSession() as s, s.get(h.base + "/admin/v1/usage/live",
                                                    headers={"Authorization": f"Bearer {ADMIN}"}) as r:
        assert r.status == 200
        rows = (await r.json())["data"]
    return next(row for row in rows if row["key"] == "app")


async def test_live_usage_carries_media_units_unflushed_flushed_and_after_a_restart(database_url: str) -> None:
    """GET /admin/v1/usage/live names a key's media units as GET /admin/v1/usage and `shieldes
    usage` do (`images`, `audio_seconds`, `characters`): counted as soon as a call is settled,
    kept once flushed, and kept by a node that starts from a snapshot."""
    up = FakeUpstream(api_key=UPSTREAM_KEY)
    text = "Hello from the speech test."
    async with harness(database_url, upstream=up, providers=False, admin_token=ADMIN, flush_interval=3600) as h:
        await h.admin(AddProvider("oa", "openai", up.url, REF, ("dall-e-3", "tts-1", "whisper-1")))
        secret = await h.create_key("app")
        await h.sync()
        client = client_for(h, secret)
        await client.images.generate(model="dall-e-3", prompt="a red fox in the snow", n=2)
        assert (await client.audio.speech.create(model="tts-1", voice="alloy", input=text)).content
        await client.audio.transcriptions.create(model="whisper-1", file=("talk.mp3", b"\x00" * 64, "audio/mpeg"))
        seconds = (await _live(h))["audio_seconds"]
        assert seconds > 0  # (the fake upstream's transcript length)
        units = {"images": 2, "audio_seconds": seconds, "characters": len(text)}

        unflushed = await _live(h)
        assert unflushed["unflushed_requests"] == 3 and unflushed["requests"] == 3
        assert {k: unflushed[k] for k in units} == units
        await h.flush()
        await wait_until(lambda: h.node.meter.unflushed_by_key(h.node.projector.usage) == {}, timeout=10)
        durable = await _live(h)
        assert durable["unflushed_requests"] == 0 and {k: durable[k] for k in units} == units
        async with aiohttp.ClientSession() as s, s.get(h.base + "/admin/v1/usage?group_by=key",
                                                        headers={"Authorization": f"Bearer {ADMIN}"}) as r:
            logged = next(row for row in (await r.json())["data"] if row["key"] == "app")
        assert {k: logged[k] for k in units} == units  # the same names and numbers as the log's
        projection, report = await snapshot_and_load(h.base, ADMIN, database_url)
    assert report.snapshot_id is not None and report.tail_events == 0, report  # the snapshot alone
    (totals,) = projection.usage.totals.values()
    assert (totals.images, totals.audio_seconds, totals.characters) == tuple(units.values())
    async with harness(database_url, upstream=up, providers=False, admin_token=ADMIN) as again:
        restarted = await _live(again)
        assert {k: restarted[k] for k in units} == units
