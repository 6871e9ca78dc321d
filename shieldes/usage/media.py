"""What the media routes hold at admission and bill at the end, pure: the estimate from what a
request asks for, and the usage its answer reports (or the estimate, said so, when it reports none).

Units: a model's prices are per 1M of the units it is billed in. Tokens for most; characters of
input for tts-1 and tts-1-hd (OpenAI's list unit: $15 per 1M characters); seconds of audio for
whisper-1 (`{"type": "duration", "seconds": N}`); and images at the per-image price for answers
that carry no token usage (dall-e-2/3). Each is counted in its own unit (usage/units.py): the
usage and the request log keep tokens in their token columns and the rest in `images`,
`audio_seconds` and `characters`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from shieldes.providers.base import MediaOp, TokenUsage
from shieldes.providers.modalities import openai_modal
from shieldes.usage.units import NO_UNITS, Units

# gpt-image-1's output tokens for its largest image at high quality (1536x1024): the hold per image
# for a token-priced image model, which settles at what the answer's usage says
IMAGE_TOKENS_MOST = 6240
# audio speech: about 1,000 characters are spoken a minute, which gpt-4o-mini-tts bills as about
# 1,250 audio tokens ($0.015 a minute at $12 per 1M)
AUDIO_TOKENS_PER_CHAR = 1.25
# an upload's length, guessed from its size at 32 kbit/s (a low bitrate: the guess runs long)
UPLOAD_BYTES_PER_SECOND = 4000
AUDIO_TOKENS_PER_SECOND = 17  # gpt-4o-transcribe: about $0.006 a minute at $6 per 1M audio tokens
TEXT_TOKENS_PER_SECOND = 4  # a transcript: about 150 words a minute


@dataclass(frozen=True, slots=True)
class Billed:
    """What a media call costs: tokens at the model's token rates plus `units` (images at its
    per-image price, seconds and characters at its input price); `estimated` when the answer
    reported nothing and the estimate is billed; `exact` for a hold that is the real count (the
    characters a tts-1 model speaks)."""

    usage: TokenUsage
    units: Units = NO_UNITS
    estimated: bool = False
    exact: bool = False

    @property
    def images(self) -> int:
        return self.units.images


def per_character(model: str) -> bool:
    """tts-1 and tts-1-hd are billed per input character; other speech models by tokens."""
    return model.startswith("tts-1")


def per_second(model: str) -> bool:
    """whisper models are billed per second of audio; other transcription models by tokens."""
    return "whisper" in model


def moderation_estimate(input_bytes: int) -> Billed:
    """A moderation is free (OpenAI does not bill it); its input counts against token limits."""
    return Billed(TokenUsage(input_bytes // 4, 0))


def image_estimate(prompt_bytes: int, n: int, per_image: bool) -> Billed:
    """`n` images at the per-image price when the model has one, else at the most tokens an image
    may take (settled at the answer's usage)."""
    if per_image:
        return Billed(TokenUsage(prompt_bytes // 4, 0), Units(images=n))
    return Billed(TokenUsage(prompt_bytes // 4, n * IMAGE_TOKENS_MOST))


def speech_estimate(model: str, text: str) -> Billed:
    """Characters for tts-1 models; tokens for others (the text's, the audio's from its length)."""
    chars = len(text)
    if per_character(model):
        return Billed(TokenUsage(0, 0), Units(characters=chars), exact=True)
    return Billed(TokenUsage(math.ceil(chars / 4), math.ceil(chars * AUDIO_TOKENS_PER_CHAR)))


def transcription_estimate(model: str, file_bytes: int) -> Billed:
    """Seconds of audio for whisper models, tokens for others, from the upload's size (audio
    tokens: billed at the model's audio input price)."""
    seconds = max(1, math.ceil(file_bytes / UPLOAD_BYTES_PER_SECOND))
    if per_second(model):
        return Billed(TokenUsage(0, 0), Units(audio_seconds=seconds))
    heard = seconds * AUDIO_TOKENS_PER_SECOND
    return Billed(TokenUsage(heard, seconds * TEXT_TOKENS_PER_SECOND, modal=(("audio_input", heard),)))


def _count(obj: dict[str, Any], name: str) -> int | None:
    value = obj.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def reported(usage: object) -> Billed | None:
    """The usage a media answer (or its last event) reports: `input_tokens`/`output_tokens` (images,
    speech events, `{"type": "tokens"}` transcriptions; cached input tokens as cache reads; the image
    and audio tokens of `input_tokens_details`/`output_tokens_details` at their own prices), or the
    seconds of a `{"type": "duration"}` one, rounded up to a whole second. None when it reports
    neither."""
    if not isinstance(usage, dict):
        return None
    if usage.get("type") == "duration":
        seconds = usage.get("seconds")
        if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds >= 0:
            return Billed(TokenUsage(0, 0), Units(audio_seconds=math.ceil(seconds)))
        return None
    inputs, outputs = _count(usage, "input_tokens"), _count(usage, "output_tokens")
    if inputs is None:
        return None
    details = usage.get("input_tokens_details") or usage.get("input_token_details")
    cached = _count(details, "cached_tokens") if isinstance(details, dict) else None
    return Billed(TokenUsage(inputs, outputs or 0, cache_read_tokens=cached if cached and cached <= inputs else 0,
                             modal=openai_modal(usage, "input_tokens_details", "output_tokens_details")))


def billed(op: MediaOp, estimate: Billed, answer: object) -> Billed:
    """What to bill for `answer` (a JSON answer, or the last stream event that carried `usage`;
    None when nothing was read): a moderation its estimate at no cost; otherwise the usage the
    answer reports, an image answer without one its images, else the estimate, marked as such."""
    if op == "moderations":
        return estimate
    found = answer if isinstance(answer, dict) else {}
    usage = reported(found.get("usage"))
    if usage is not None:
        return usage
    data = found.get("data")
    if op in ("images", "image_edits", "image_variations") and isinstance(data, list):
        return Billed(TokenUsage(estimate.usage.prompt_tokens, 0), Units(images=len(data)), True)
    if estimate.exact:
        return estimate
    return Billed(estimate.usage, estimate.units, True)


class EventUsage:
    """The usage of a relayed event stream (speech.audio.done, image_generation.completed,
    transcript.text.done), read off its `data:` lines as they go by, however the reads split them:
    the last event that carried a `usage` object, in `last`."""

    def __init__(self) -> None:
        self._pending: list[bytes] = []  # the current line's pieces (a partial image is megabytes)
        self.last: dict[str, Any] | None = None

    def feed(self, chunk: bytes) -> None:
        self._pending.append(chunk)
        if 10 not in chunk:  # (a newline as an int: a memchr, see providers/sse_blocks.py)
            return
        *lines, rest = b"".join(self._pending).split(b"\n")
        self._pending = [rest] if rest else []
        for line in lines:
            if line.startswith(b"data:") and b'"usage"' in line:
                try:
                    event = orjson.loads(line[5:])
                except orjson.JSONDecodeError:
                    continue
                if isinstance(event, dict) and isinstance(event.get("usage"), dict):
                    self.last = event
