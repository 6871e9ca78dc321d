"""The fake upstream's OpenAI media and moderation endpoints, in their wire format as the openai SDK's
types read it: /v1/moderations; /v1/images/generations (JSON; `stream: true` answers
image_generation.partial_image / image_generation.completed events); /v1/images/edits (multipart:
one `image` or several `image[]`, optional `mask`; `stream` answers image_edit.partial_image /
image_edit.completed events) and /v1/images/variations (multipart `image`, dall-e-2);
/v1/audio/speech (audio bytes
in chunks, a Fault's `hold_after` holding the rest; `stream_format: "sse"` answers
speech.audio.delta / speech.audio.done events);
/v1/audio/transcriptions and /v1/audio/translations (multipart uploads; JSON with usage, plain text
for `response_format: text`, transcript.text.delta / transcript.text.done events with `stream`);
and Azure's forms of the image and audio paths (/openai/deployments/{deployment}/...).

Deterministic counts: an image answer's usage is (words of the prompt, 100 output tokens per image)
for gpt-image models, none for dall-e; an edit's input tokens add EDIT_IMAGE_TOKENS per image sent;
speech audio is SPEECH_CHUNKS chunks of SPEECH_CHUNK bytes;
a whisper transcription reports `{"type": "duration", "seconds": <file bytes / 1000>}`, other
models `{"type": "tokens", "input_tokens": <file bytes // 100>, "output_tokens": <words of text>}`.
"""

from __future__ import annotations

import base64
import json
import time
from email.parser import BytesParser
from email.policy import HTTP
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests import fake_wire as wire

if TYPE_CHECKING:
    from tests.fake_upstream import FakeUpstream, Fault

IMAGE_TOKENS = 100
EDIT_IMAGE_TOKENS = 50  # input tokens per image sent to an edit
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"fake image").decode()
SPEECH_CHUNK = 1024
SPEECH_CHUNKS = 4
TRANSCRIPT = "Hello from the fake transcriber"
CATEGORIES = ("harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
              "self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "sexual/minors", "violence",
              "violence/graphic")


def form_fields(raw: bytes, content_type: str) -> dict[str, Any]:
    """A multipart/form-data body, parsed by the standard library (not the gateway's parser): text
    fields as strings, files as {"filename", "content_type", "bytes"}; a name sent more than once
    (`image[]`) as the list of its values."""
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        value: Any = payload.decode() if filename is None else {
            "filename": filename, "content_type": part.get_content_type(), "bytes": payload}
        if str(name) in fields:
            had = fields[str(name)]
            fields[str(name)] = [*had, value] if isinstance(had, list) else [had, value]
        else:
            fields[str(name)] = value
    return fields


def _sse(event: dict[str, Any]) -> bytes:
    return b"event: " + event["type"].encode() + b"\ndata: " + json.dumps(event).encode() + b"\n\n"


class MediaRoutes:
    def __init__(self, fake: FakeUpstream) -> None:
        self.fake = fake

    def add(self, app: web.Application) -> None:
        app.router.add_post("/v1/moderations", self.moderations)
        for prefix in ("/v1", "/openai/deployments/{deployment}"):
            app.router.add_post(prefix + "/images/generations", self.images)
            app.router.add_post(prefix + "/images/edits", self.image_edits)
            app.router.add_post(prefix + "/images/variations", self.image_variations)
            app.router.add_post(prefix + "/audio/speech", self.speech)
            app.router.add_post(prefix + "/audio/transcriptions", self.transcriptions)
            app.router.add_post(prefix + "/audio/translations", self.translations)

    async def _stream(self, request: web.Request, content_type: str, pieces: list[bytes],
                      fault: Fault | None = None) -> web.StreamResponse:
        """`pieces` written one by one; a fault's `hold_after` holds the rest until it is released."""
        from tests.fake_upstream import _held

        resp = web.StreamResponse(headers={"Content-Type": content_type})
        await resp.prepare(request)
        for i, piece in enumerate(pieces):
            if fault is not None and fault.hold_after == i and not await _held(request, fault):
                return resp
            await resp.write(piece)
        await resp.write_eof()
        return resp

    async def moderations(self, request: web.Request) -> web.StreamResponse:
        body, _fault, error = await self.fake._begin(request, anthropic=False)
        if error:
            return error
        given = body.get("input")
        inputs = given if isinstance(given, list) else [given]
        if not given:
            return wire.error(400, "'input' is a required property", False)
        results = []
        for item in inputs:
            text = item if isinstance(item, str) else json.dumps(item)
            flagged = "kill" in text
            results.append({
                "flagged": flagged,
                "categories": {c: flagged and c == "violence" for c in CATEGORIES},
                "category_scores": {c: 0.9 if flagged and c == "violence" else 0.001 for c in CATEGORIES},
                "category_applied_input_types": {c: ["text"] for c in CATEGORIES},
            })
        model = body.get("model") or "omni-moderation-latest"
        return self.fake._json({"id": self.fake._id("modr-", 24), "model": model, "results": results})

    async def images(self, request: web.Request) -> web.StreamResponse:
        body, _fault, error = await self.fake._begin(request, anthropic=False)
        if error:
            return error
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            return wire.error(400, "'prompt' is a required property", False)
        model = str(body.get("model") or "dall-e-2")
        n = int(body.get("n") or 1)
        words = len(prompt.split())
        usage = {"input_tokens": words, "output_tokens": IMAGE_TOKENS * n, "total_tokens": words + IMAGE_TOKENS * n,
                 "input_tokens_details": {"text_tokens": words, "image_tokens": 0}}
        tokens = not model.startswith("dall-e")
        if body.get("stream") is True:
            common = {"b64_json": PNG, "created_at": int(time.time()), "size": "1024x1024", "quality": "low",
                      "background": "opaque", "output_format": "png"}
            events = [_sse({"type": "image_generation.partial_image", "partial_image_index": 0, **common}),
                      _sse({"type": "image_generation.completed", **common, "usage": usage})]
            return await self._stream(request, "text/event-stream", events)
        data: list[dict[str, Any]] = [{"b64_json": PNG} if tokens or body.get("response_format") == "b64_json"
                                      else {"url": f"https://images.example/{i}.png", "revised_prompt": prompt}
                                      for i in range(n)]
        answer: dict[str, Any] = {"created": int(time.time()), "data": data}
        if tokens:
            answer.update(usage=usage, size="1024x1024", quality="low", output_format="png", background="opaque")
        return self.fake._json(answer)

    async def image_edits(self, request: web.Request) -> web.StreamResponse:
        form, _fault, error = await self.fake._begin(request, anthropic=False)
        if error:
            return error
        given = form.get("image") if isinstance(form, dict) else None
        if given is None and isinstance(form, dict):
            given = form.get("image[]")
        sent = given if isinstance(given, list) else [given] if given is not None else []
        prompt = form.get("prompt") if isinstance(form, dict) else None
        if not sent or not all(isinstance(i, dict) for i in sent) or not isinstance(prompt, str) or not prompt:
            return wire.error(400, "'image' and 'prompt' are required", False)
        model = str(form.get("model") or "dall-e-2")
        n = int(form.get("n") or 1)
        words = len(prompt.split())
        inputs = words + EDIT_IMAGE_TOKENS * len(sent)
        usage = {"input_tokens": inputs, "output_tokens": IMAGE_TOKENS * n, "total_tokens": inputs + IMAGE_TOKENS * n,
                 "input_tokens_details": {"text_tokens": words, "image_tokens": EDIT_IMAGE_TOKENS * len(sent)}}
        if model.startswith("dall-e"):
            data = [{"url": f"https://images.example/edit-{i}.png"} for i in range(n)]
            return self.fake._json({"created": int(time.time()), "data": data})
        common = {"b64_json": PNG, "created_at": int(time.time()), "size": "1024x1024", "quality": "low",
                  "background": "opaque", "output_format": "png"}
        if form.get("stream") == "true":
            events = [_sse({"type": "image_edit.partial_image", "partial_image_index": 0, **common}),
                      _sse({"type": "image_edit.completed", **common, "usage": usage})]
            return await self._stream(request, "text/event-stream", events)
        return self.fake._json({"created": int(time.time()), "data": [{"b64_json": PNG}] * n, "usage": usage,
                                "size": "1024x1024", "quality": "low", "output_format": "png",
                                "background": "opaque"})

    async def image_variations(self, request: web.Request) -> web.StreamResponse:
        form, _fault, error = await self.fake._begin(request, anthropic=False)
        if error:
            return error
        if not isinstance(form, dict) or not isinstance(form.get("image"), dict):
            return wire.error(400, "'image' is required", False)
        n = int(form.get("n") or 1)
        data = [{"b64_json": PNG} if form.get("response_format") == "b64_json"
                else {"url": f"https://images.example/variation-{i}.png"} for i in range(n)]
        return self.fake._json({"created": int(time.time()), "data": data})

    async def speech(self, request: web.Request) -> web.StreamResponse:
        body, fault, error = await self.fake._begin(request, anthropic=False)
        if error:
            return error
        text, voice = body.get("input"), body.get("voice")
        if not isinstance(text, str) or not text or not voice:
            return wire.error(400, "'input' and 'voice' are required properties", False)
        audio = [bytes([65 + i]) * SPEECH_CHUNK for i in range(SPEECH_CHUNKS)]
        if body.get("stream_format") == "sse":
            words = len(text.split())
            events = [_sse({"type": "speech.audio.delta", "audio": base64.b64encode(a).decode()}) for a in audio]
            out = SPEECH_CHUNKS * 10
            events.append(_sse({"type": "speech.audio.done", "usage": {
                "input_tokens": words, "output_tokens": out, "total_tokens": words + out}}))
            return await self._stream(request, "text/event-stream", events)
        kind = {"mp3": "audio/mpeg", "wav": "audio/wav", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac",
                "pcm": "audio/pcm"}.get(str(body.get("response_format") or "mp3"), "audio/mpeg")
        return await self._stream(request, kind, audio, fault)

    async def transcriptions(self, request: web.Request) -> web.StreamResponse:
        return await self._transcribe(request, translate=False)

    async def translations(self, request: web.Request) -> web.StreamResponse:
        return await self._transcribe(request, translate=True)

    async def _transcribe(self, request: web.Request, translate: bool) -> web.StreamResponse:
        form, _fault, error = await self.fake._begin(request, anthropic=False)
        if error:
            return error
        upload = form.get("file")
        model = form.get("model")
        if not isinstance(upload, dict) or not isinstance(model, str):
            return wire.error(400, "'file' and 'model' are required", False)
        size = len(upload["bytes"])
        words = len(TRANSCRIPT.split())
        if form.get("response_format") == "text":
            return web.Response(text=TRANSCRIPT + "\n", content_type="text/plain")
        if translate:
            return self.fake._json({"text": TRANSCRIPT})
        if "whisper" in model:
            return self.fake._json({"text": TRANSCRIPT, "usage": {"type": "duration", "seconds": size / 1000}})
        usage = {"type": "tokens", "input_tokens": size // 100, "output_tokens": words,
                 "total_tokens": size // 100 + words,
                 "input_token_details": {"audio_tokens": size // 100, "text_tokens": 0}}
        if form.get("stream") == "true":
            events = [_sse({"type": "transcript.text.delta", "delta": w + " "}) for w in TRANSCRIPT.split()]
            events.append(_sse({"type": "transcript.text.done", "text": TRANSCRIPT, "usage": usage}))
            return await self._stream(request, "text/event-stream", events)
        return self.fake._json({"text": TRANSCRIPT, "usage": usage})
