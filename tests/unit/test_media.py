"""The media routes' pure decisions: multipart fields read and rewritten, what is held and billed
(usage/media.py), per-image prices, and which deployments serve a route."""

from __future__ import annotations

import pytest

from shieldes.errors import InvalidRequest
from shieldes.gateway.media_routes import form_request, json_request, served
from shieldes.projections.state import Deployment, Price
from shieldes.providers import multipart
from shieldes.providers.base import TokenUsage
from shieldes.routing.router import Route, RouteTarget
from shieldes.usage import media
from shieldes.usage.pricing import media_cost_nusd, rate_of
from shieldes.usage.units import Units

BOUNDARY = "----form7"


def form(*fields: tuple[str, str | None, bytes]) -> bytes:
    out = b""
    for name, filename, value in fields:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        out += (b"Content-Type: audio/mpeg\r\n" if filename else b"") + b"\r\n" + value + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def test_multipart_fields_are_found_and_one_is_rewritten_leaving_the_file_as_sent() -> None:
    audio = bytes(range(256)) * 4 + b"\r\n--not-the-boundary\r\n"
    body = form(("model", None, b"whisper-1"), ("file", "a.mp3", audio), ("stream", None, b"false"))
    assert multipart.boundary_of(f"multipart/form-data; boundary={BOUNDARY}") == BOUNDARY
    assert multipart.boundary_of(f'multipart/form-data; boundary="{BOUNDARY}"') == BOUNDARY
    assert multipart.boundary_of("application/json") is None
    found = {p.name: p for p in multipart.parts(body, BOUNDARY)}
    assert found["file"].filename == "a.mp3" and body[found["file"].start:found["file"].end] == audio
    assert multipart.text(body, found["model"]) == "whisper-1" and found["model"].filename is None
    rewritten = multipart.with_value(body, found["model"], b"whisper-eu")
    again = {p.name: p for p in multipart.parts(rewritten, BOUNDARY)}
    assert multipart.text(rewritten, again["model"]) == "whisper-eu"
    assert rewritten[again["file"].start:again["file"].end] == audio
    with pytest.raises(multipart.MalformedForm):
        multipart.parts(body[:-40], BOUNDARY)
    with pytest.raises(multipart.MalformedForm):
        multipart.parts(b"no boundary here", BOUNDARY)


def test_form_requests_need_a_file_and_a_model() -> None:
    ctype = f"multipart/form-data; boundary={BOUNDARY}"
    asked = form_request("transcriptions", form(("model", None, b"whisper-1"), ("file", "a.mp3", b"x" * 8000)), ctype)
    assert asked.model == "whisper-1" and not asked.streaming
    assert asked.estimate == media.Billed(TokenUsage(0, 0), Units(audio_seconds=2))  # from 8000 bytes at 32 kbit/s
    assert asked.payload("whisper-eu").count(b"whisper-eu") == 1
    streamed = form_request("transcriptions", form(("model", None, b"gpt-4o-transcribe"),
                                                   ("file", "a.mp3", b"x"), ("stream", None, b"true")), ctype)
    assert streamed.streaming and streamed.estimate.usage.completion_tokens > 0
    with pytest.raises(InvalidRequest) as no_file:
        form_request("transcriptions", form(("model", None, b"whisper-1")), ctype)
    assert no_file.value.param == "file"
    with pytest.raises(InvalidRequest) as no_model:
        form_request("translations", form(("file", "a.mp3", b"x")), ctype)
    assert no_model.value.param == "model"
    with pytest.raises(InvalidRequest) as not_form:
        form_request("transcriptions", b"{}", "application/json")
    assert "multipart/form-data" in not_form.value.message


def test_image_forms_need_images_and_an_edit_a_prompt() -> None:
    ctype = f"multipart/form-data; boundary={BOUNDARY}"
    photo = b"\x89PNG" + bytes(range(256))
    edit = form(("image[]", "a.png", photo), ("image[]", "b.png", photo), ("mask", "m.png", b"m"),
                ("prompt", None, b"add a hat"), ("n", None, b"2"), ("stream", None, b"true"))
    asked = form_request("image_edits", edit, ctype)
    assert (asked.model, asked.images, asked.prompt_bytes, asked.streaming) == ("dall-e-2", 2, 9, True)
    assert asked.estimate == media.image_estimate(9, 2, per_image=False)
    assert asked.payload("dall-e-2") is edit  # no model named: OpenAI's default, sent as it came
    renamed = asked.payload("dall-e-2-eu")  # another name for the default: the form gets a model field
    fields = {p.name: p for p in multipart.parts(renamed, BOUNDARY)}
    assert multipart.text(renamed, fields["model"]) == "dall-e-2-eu" and renamed.count(photo) == 2
    assert renamed.startswith(edit[:edit.rindex(f"--{BOUNDARY}--".encode())])
    named = form_request("image_edits", form(("image", "a.png", photo), ("prompt", None, b"x"),
                                             ("model", None, b"gpt-image-1")), ctype)
    assert named.model == "gpt-image-1" and named.payload("gpt-image-eu").count(b"gpt-image-eu") == 1
    varied = form_request("image_variations", form(("image", "a.png", photo)), ctype)
    assert (varied.model, varied.images, varied.prompt_bytes) == ("dall-e-2", 1, 0)
    for op, body, param in (("image_edits", form(("prompt", None, b"x")), "image"),
                            ("image_edits", form(("image", None, b"not a file"), ("prompt", None, b"x")), "image"),
                            ("image_edits", form(("image", "a.png", photo), ("prompt", None, b" ")), "prompt"),
                            ("image_edits", form(("image", "a.png", photo), ("prompt", None, b"x"),
                                                 ("n", None, b"11")), "n"),
                            ("image_variations", form(("image", "a.png", photo), ("n", None, b"two")), "n"),
                            ("image_variations", form(("model", None, b"dall-e-2")), "image")):
        with pytest.raises(InvalidRequest) as refused:
            form_request(op, body, ctype)  # type: ignore[arg-type]
        assert refused.value.param == param, (op, body)
    with pytest.raises(InvalidRequest) as not_form:
        form_request("image_edits", b"{}", "application/json")
    assert "'image'" in not_form.value.message and "'prompt'" in not_form.value.message


def test_json_requests_are_checked_field_by_field() -> None:
    assert json_request("moderations", {"input": "hi"}, b'{"input":"hi"}').model == "omni-moderation-latest"
    images = json_request("images", {"prompt": "a fox", "n": 3}, b"{}")
    assert (images.model, images.images) == ("dall-e-2", 3)
    assert json_request("speech", {"model": "tts-1", "input": "hello", "voice": "alloy"}, b"{}").streaming
    for op, body, param in (("moderations", {"input": []}, "input"), ("images", {"prompt": " "}, "prompt"),
                            ("images", {"prompt": "a", "n": 0}, "n"), ("images", {"prompt": "a", "n": True}, "n"),
                            ("speech", {"model": "tts-1", "voice": "alloy"}, "input"),
                            ("speech", {"model": "tts-1", "input": "hi"}, "voice"),
                            ("speech", {"input": "hi", "voice": "alloy"}, "model")):
        with pytest.raises(InvalidRequest) as refused:
            json_request(op, body, b"{}")  # type: ignore[arg-type]
        assert refused.value.param == param, (op, body)


def test_what_is_held_and_billed() -> None:
    assert media.image_estimate(40, 2, per_image=True) == media.Billed(TokenUsage(10, 0), Units(images=2))
    assert media.image_estimate(40, 2, per_image=False) == media.Billed(TokenUsage(10, 2 * media.IMAGE_TOKENS_MOST))
    # characters and seconds in their own unit: no tokens
    assert media.speech_estimate("tts-1-hd", "hello world") == media.Billed(TokenUsage(0, 0), Units(characters=11),
                                                                            exact=True)
    assert media.speech_estimate("gpt-4o-mini-tts", "hello world") == media.Billed(TokenUsage(3, 14))
    held = media.Billed(TokenUsage(9, 0))
    assert media.billed("moderations", held, {"usage": {"input_tokens": 99}}) == held  # never billed otherwise
    tokens = {"usage": {"input_tokens": 6, "output_tokens": 100, "input_tokens_details": {"cached_tokens": 2}}}
    assert media.billed("images", held, tokens) == media.Billed(TokenUsage(6, 100, cache_read_tokens=2))
    assert media.billed("images", held, {"data": [{}, {}, {}]}) == media.Billed(TokenUsage(9, 0), Units(images=3), True)
    for op in ("image_edits", "image_variations"):
        assert media.billed(op, held, {"data": [{}, {}]}) == media.Billed(TokenUsage(9, 0), Units(images=2), True)
        assert media.billed(op, held, tokens) == media.Billed(TokenUsage(6, 100, cache_read_tokens=2))
    assert media.billed("transcriptions", held, {"usage": {"type": "duration", "seconds": 12.2}}) == \
        media.Billed(TokenUsage(0, 0), Units(audio_seconds=13))
    assert media.billed("transcriptions", held, {"usage": {"type": "tokens", "input_tokens": 50,
                                                           "output_tokens": 7}}) == media.Billed(TokenUsage(50, 7))
    assert media.billed("speech", held, None) == media.Billed(held.usage, estimated=True)
    characters = media.speech_estimate("tts-1", "hello")
    assert media.billed("speech", characters, None) == characters  # the characters are the real count
    assert media.reported({"input_tokens": -1}) is None and media.reported("x") is None


def test_a_per_image_price_costs_each_image() -> None:
    rate = rate_of(Price(0, 0, per_image=0.04))
    assert rate.image == 40_000_000_000  # pUSD
    assert media_cost_nusd(rate, TokenUsage(0, 0), Units(images=2)) == 80_000_000
    tokens = rate_of(Price(5, 40))
    assert tokens.image == 0
    assert media_cost_nusd(tokens, TokenUsage(6, 100), Units(images=1)) == 6 * 5_000 + 100 * 40_000
    # seconds and characters at the input price (USD per 1M of them), with any tokens
    whisper, tts = rate_of(Price(100, 0)), rate_of(Price(15, 0))
    assert media_cost_nusd(whisper, TokenUsage(0, 0), Units(audio_seconds=6)) == 6 * 100_000
    assert media_cost_nusd(tts, TokenUsage(2, 0), Units(characters=28)) == 30 * 15_000
    assert Price(1, 2, per_image=0.5).fields() == {"input_per_1m": 1, "output_per_1m": 2, "per_image": 0.5}


def _dep(name: str, kind: str) -> Deployment:
    return Deployment(name, kind, "http://up", None, ("m",), 1.0)


def test_a_route_keeps_the_deployments_whose_kind_serves_it() -> None:
    oa, claude = _dep("oa", "openai"), _dep("claude", "anthropic")
    both = Route("m", "m", (RouteTarget(oa, "m", 1), RouteTarget(claude, "m", 1)), False)
    assert served(both, "images", ["azure", "openai"]).deployments == (oa,)
    only = Route("m", "m", (RouteTarget(claude, "m", 1),), False)
    with pytest.raises(InvalidRequest) as none:
        served(only, "images", ["azure", "openai"])
    assert none.value.code == "unsupported_endpoint" and none.value.param == "model"
    assert "type anthropic" in none.value.message and "type azure, openai" in none.value.message
    with_fallback = Route("m", "m", (RouteTarget(claude, "m", 1),), False, ("other",))
    assert served(with_fallback, "images", ["openai"]).targets == ()  # the fallback may serve it


def test_a_streams_usage_is_read_however_the_reads_split_its_events() -> None:
    done = b'event: transcript.text.done\ndata: {"type":"transcript.text.done","usage":{"input_tokens":5}}\n\n'
    stream = b'data: {"type":"transcript.text.delta","delta":"hi"}\n\n' + done + b"data: [DONE]\n\n"
    for size in (1, 7, len(stream)):
        events = media.EventUsage()
        for i in range(0, len(stream), size):
            events.feed(stream[i:i + size])
        assert events.last == {"type": "transcript.text.done", "usage": {"input_tokens": 5}}, size
    crlf = media.EventUsage()
    crlf.feed(done.replace(b"\n", b"\r\n"))
    assert crlf.last is not None and media.reported(crlf.last["usage"]) == media.Billed(TokenUsage(5, 0))
    nothing = media.EventUsage()
    nothing.feed(b'data: {"usage": "not an object"}\n\ndata: {broken "usage"\n\n')
    assert nothing.last is None
