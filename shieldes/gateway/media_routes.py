"""OpenAI's media and moderation endpoints: POST /v1/moderations, /v1/images/generations,
/v1/images/edits, /v1/images/variations, /v1/audio/speech, /v1/audio/transcriptions and
/v1/audio/translations. Each is passed through to
the route's deployments whose kind serves it (MediaUpstream.media_ops), the client's body as it
came but for the model (the deployment's name for it), with the key's model allow-list, limits,
budget hold and settlement (usage/media.py), failover and the request log of the other routes.
An answer that is JSON is read whole (and billed from its usage); audio and event streams are
relayed as they come, a stream's usage taken from the event that carries it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace

import orjson
from aiohttp import web

from shieldes.errors import BodyTooLarge, InvalidRequest, ProviderMisconfigured
from shieldes.gateway import relay
from shieldes.gateway.call import note_stream_end
from shieldes.gateway.middleware import REQUEST_ID, record_of, request_id
from shieldes.gateway.request_fields import MAX_MODEL_NAME, read_json
from shieldes.gateway.routes import GATEWAY, authenticate
from shieldes.gateway.service import Gateway
from shieldes.projections.state import Deployment
from shieldes.providers import multipart
from shieldes.providers.base import Body, MediaOp, MediaUpstream, Provider, Target, UpstreamFailure
from shieldes.providers.http import TRANSPORT_ERRORS, invalid_response, transport_failure
from shieldes.providers.transport import UpstreamResponse
from shieldes.routing.router import Route, RouteTarget
from shieldes.usage import media
from shieldes.usage.media import Billed
from shieldes.usage.meter import Reservation

PATHS: dict[MediaOp, str] = {
    "moderations": "/v1/moderations",
    "images": "/v1/images/generations",
    "image_edits": "/v1/images/edits",
    "image_variations": "/v1/images/variations",
    "speech": "/v1/audio/speech",
    "transcriptions": "/v1/audio/transcriptions",
    "translations": "/v1/audio/translations",
}
# OpenAI's own default when a request names no model (the openai SDK lets it be left out)
DEFAULT_MODELS: dict[MediaOp, str] = {"moderations": "omni-moderation-latest", "images": "dall-e-2",
                                      "image_edits": "dall-e-2", "image_variations": "dall-e-2"}
FORM_OPS: frozenset[MediaOp] = frozenset({"transcriptions", "translations", "image_edits", "image_variations"})
IMAGE_OPS: frozenset[MediaOp] = frozenset({"images", "image_edits", "image_variations"})
# what a form must hold, in the words of the 400 that says it does not
_FORM_NEEDS: dict[MediaOp, str] = {
    "transcriptions": "a 'file' and a 'model' field", "translations": "a 'file' and a 'model' field",
    "image_edits": "an 'image' (or 'image[]') file and a 'prompt' field", "image_variations": "an 'image' file"}
MAX_IMAGES = 10
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ESTIMATE_HEADER = "x-shieldes-usage"  # "estimate": the answer reports no usage; the estimate is billed


@dataclass(frozen=True, slots=True)
class MediaRequest:
    """A media request as the gateway decides on it: the model asked for, the client's bytes and
    how to rewrite their model, and what admission holds."""

    op: MediaOp
    model: str
    raw: bytes
    content_type: str
    body: Body | None  # a JSON request's object
    model_part: multipart.Part | None  # a form's model field
    streaming: bool  # the answer may run long (audio, events): bounded by silence, not total time
    estimate: Billed
    images: int = 0  # asked for (`n`)
    prompt_bytes: int = 0  # an image request's prompt
    form: tuple[str, multipart.Part] | None = None  # a form's boundary and last part

    def payload(self, model: str) -> bytes:
        """The client's bytes naming `model` (the deployment's name for it)."""
        if self.model_part is not None:
            if multipart.text(self.raw, self.model_part) == model:
                return self.raw
            return multipart.with_value(self.raw, self.model_part, model.encode())
        if self.form is not None:  # a form without a model: the upstream's default, unless named otherwise
            if model == DEFAULT_MODELS.get(self.op):
                return self.raw
            boundary, last = self.form
            return multipart.with_field(self.raw, boundary, last, "model", model.encode())
        assert self.body is not None
        if self.body.get("model") == model:
            return self.raw
        return orjson.dumps(dict(self.body, model=model))


def _model_name(value: object, default: str | None) -> str:
    if value is None and default is not None:
        return default
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_MODEL_NAME:
        raise InvalidRequest(f"field 'model' must be a model name string of at most {MAX_MODEL_NAME} characters, "
                             "e.g. \"gpt-4o-mini-tts\" (see GET /v1/models)",
                             param="model")
    return value


def _positive(body: Body, name: str, most: int, default: int) -> int:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise InvalidRequest(f"field {name!r} must be a whole number from 1 to {most}", param=name)
    return value


def json_request(op: MediaOp, body: Body, raw: bytes) -> MediaRequest:
    """A moderations, images or speech request: its fields checked, its estimate made."""
    model = _model_name(body.get("model"), DEFAULT_MODELS.get(op))
    ctype = "application/json"
    if op == "moderations":
        given = body.get("input")
        if not isinstance(given, str | list) or not given:
            raise InvalidRequest("field 'input' is required: a non-empty string, list of strings or list of "
                                 "text and image_url objects", param="input")
        return MediaRequest(op, model, raw, ctype, body, None, False, media.moderation_estimate(len(raw)))
    if op == "images":
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidRequest("field 'prompt' is required: a non-empty string describing the image", param="prompt")
        n = _positive(body, "n", MAX_IMAGES, 1)
        streaming = body.get("stream") is True
        size = len(prompt.encode())
        return MediaRequest(op, model, raw, ctype, body, None, streaming,
                            media.image_estimate(size, n, per_image=False), n, size)
    text = body.get("input")
    if not isinstance(text, str) or not text:
        raise InvalidRequest("field 'input' is required: the non-empty text to speak", param="input")
    voice = body.get("voice")
    if not isinstance(voice, str | dict) or not voice:
        raise InvalidRequest("field 'voice' is required: a voice name such as \"alloy\"", param="voice")
    return MediaRequest(op, model, raw, ctype, body, None, True, media.speech_estimate(model, text))


def _form_count(raw: bytes, part: multipart.Part | None, name: str, most: int) -> int:
    """A form's whole-number field (`n`): 1 when left out."""
    if part is None:
        return 1
    value = multipart.text(raw, part).strip()
    if not value.isdigit() or not 1 <= int(value) <= most:
        raise InvalidRequest(f"field {name!r} must be a whole number from 1 to {most}", param=name)
    return int(value)


def form_request(op: MediaOp, raw: bytes, content_type: str) -> MediaRequest:
    """A multipart/form-data upload: audio to transcribe or translate (`file`, `model`), images to
    edit (`image` or several `image[]`, optional `mask`, `prompt`) or to vary (`image`)."""
    boundary = multipart.boundary_of(content_type)
    if boundary is None:
        raise InvalidRequest(f"{PATHS[op]} takes multipart/form-data with {_FORM_NEEDS[op]} "
                             f"(got Content-Type {content_type[:80]!r}); send it as a form upload")
    try:
        fields = multipart.parts(raw, boundary)
    except multipart.MalformedForm as exc:
        raise InvalidRequest(f"the multipart/form-data body does not parse ({exc}); send it again as one form") \
            from None
    named = {p.name: p for p in fields}
    model_part = named.get("model")
    stream = named.get("stream")
    streaming = stream is not None and multipart.text(raw, stream).strip().lower() == "true"
    form = (boundary, fields[-1]) if fields else None
    if op in IMAGE_OPS:
        images = [p for p in fields if p.name in ("image", "image[]") and p.filename is not None]
        if not images:
            what = "edit (several as 'image[]')" if op == "image_edits" else "vary"
            raise InvalidRequest(f"field 'image' is required: the image to {what}, uploaded as a file",
                                 param="image")
        model = _model_name(None if model_part is None else multipart.text(raw, model_part), DEFAULT_MODELS[op])
        n = _form_count(raw, named.get("n"), "n", MAX_IMAGES)
        prompt_bytes = 0
        if op == "image_edits":
            prompt = named.get("prompt")
            if prompt is None or not multipart.text(raw, prompt).strip():
                raise InvalidRequest("field 'prompt' is required: a non-empty description of the edit",
                                     param="prompt")
            prompt_bytes = prompt.end - prompt.start
        return MediaRequest(op, model, raw, content_type, None, model_part, streaming,
                            media.image_estimate(prompt_bytes, n, per_image=False), n, prompt_bytes, form)
    upload = named.get("file")
    if upload is None or upload.filename is None:
        raise InvalidRequest("field 'file' is required: the audio file to transcribe, uploaded as a file",
                             param="file")
    if model_part is None:
        raise InvalidRequest("field 'model' is required: e.g. \"whisper-1\" or \"gpt-4o-transcribe\"", param="model")
    model = _model_name(multipart.text(raw, model_part), None)
    estimate = media.transcription_estimate(model, upload.end - upload.start)
    return MediaRequest(op, model, raw, content_type, None, model_part, streaming, estimate, form=form)


async def read_upload(request: web.Request, max_bytes: int) -> bytes:
    """A form upload's bytes, within the node's body limit (SHIELDES_MAX_BODY_BYTES)."""
    declared = request.content_length
    hint = "send a smaller file (or raise SHIELDES_MAX_BODY_BYTES on the node)"
    if declared is not None and declared > max_bytes:
        raise BodyTooLarge(f"request body is {declared} bytes; the limit is {max_bytes}: {hint}")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise BodyTooLarge(f"request body exceeds the limit of {max_bytes} bytes: {hint}") from None
    except web.RequestPayloadError as exc:
        raise InvalidRequest(f"the request body could not be read ({str(exc).strip()[:200]}); send it again") \
            from None
    if not raw:
        raise InvalidRequest("empty request body: send a multipart/form-data upload (see docs/media.md)")
    return raw


def serving_kinds(gw: Gateway, op: MediaOp) -> list[str]:
    return sorted(kind for kind, p in gw.providers.items() if isinstance(p, MediaUpstream) and op in p.media_ops)


def served(route: Route, op: MediaOp, kinds: list[str]) -> Route:
    """The route without deployments whose kind cannot serve `op`; a 400 naming the kinds that can
    when none is left (and no fallback may serve it)."""
    targets = tuple(t for t in route.targets if t.deployment.kind in kinds)
    if targets or route.fallbacks:
        return route if len(targets) == len(route.targets) else replace(route, targets=targets)
    have = ", ".join(sorted({t.deployment.kind for t in route.targets})) or "none"
    raise InvalidRequest(
        f"model {route.requested!r} is served only by deployments of type {have}, which cannot serve "
        f"{PATHS[op]}; it is served by deployments of type {', '.join(kinds)}: add the model to one "
        "(`shieldes provider add NAME --type openai --base-url URL --models MODEL`)",
        code="unsupported_endpoint", param="model")


@dataclass(slots=True)
class Opened:
    """An upstream's answer: read whole (JSON) or still open (a stream to relay)."""

    resp: UpstreamResponse | None
    content_type: str
    body: bytes = b""
    answer: object = None  # the JSON answer, parsed


async def _open(op: MediaOp, asked: MediaRequest, provider: Provider, target: Target, dep: Deployment) -> Opened:
    """One attempt: the request on one deployment; a JSON answer is read here, so that a read that
    fails moves on to the next deployment as a failed call does."""
    if not (isinstance(provider, MediaUpstream) and op in provider.media_ops):
        raise ProviderMisconfigured(f"deployment {dep.name!r} (type {dep.kind}) cannot serve {PATHS[op]}; "
                                    "route the model to a deployment that can (see docs/media.md)")
    resp = await provider.media(op, target, asked.payload(target.model), asked.content_type, asked.streaming)
    ctype = resp.content_type
    if ctype != "application/json":
        return Opened(resp, ctype)
    try:
        raw = await resp.read()
    except TRANSPORT_ERRORS as exc:
        raise transport_failure(target, exc) from exc
    try:
        return Opened(None, ctype, raw, orjson.loads(raw))
    except orjson.JSONDecodeError:
        raise invalid_response(target, "body is not JSON") from None


async def handle(request: web.Request, op: MediaOp) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    key = authenticate(request)
    limit = gw.settings.max_body_bytes
    if op in FORM_OPS:
        raw = await read_upload(request, limit)
        asked = form_request(op, raw, request.headers.get("Content-Type", ""))
    else:
        body, raw = await read_json(request, limit)
        asked = json_request(op, body, raw)
    deployment = request.match_info.get("deployment")
    if deployment is not None:  # Azure-style clients name the deployment in the path: the model routed
        asked = replace(asked, model=deployment)
    rec = record_of(request)
    if rec is not None:
        rec.model = asked.model
    route = served(gw.route(key, asked.model), op, serving_kinds(gw, op))
    if op in IMAGE_OPS and gw.prices.rate(gw.state.config.pricing, route.model).image:
        # a per-image price holds the images asked for, not the most tokens they might take
        asked = replace(asked, estimate=media.image_estimate(asked.prompt_bytes, asked.images, True))
    billed = op != "moderations"  # OpenAI does not bill moderations
    res = gw.admit_estimate(key, route, asked.estimate.usage, asked.estimate.units, billed=billed)
    if rec is not None:
        rec.upstream_model = route.model
        rec.stream = asked.streaming

    async def attempt(provider: Provider, target: Target, dep: Deployment) -> Opened:
        return await _open(op, asked, provider, target, dep)

    try:
        opened, target = await gw.attempts(op, route, attempt, rec, lambda o: o.resp is not None)
    except BaseException:
        gw.meter.release(res)
        raise
    headers = {REQUEST_ID: request_id(request), **res.headers}
    if opened.resp is None:
        return _answer(gw, request, op, asked, res, target, opened, headers)
    return await _relay(gw, request, op, asked, res, target, opened, headers)


def _settle(gw: Gateway, request: web.Request, op: MediaOp, res: Reservation, served_by: RouteTarget,
            bill: Billed) -> None:
    nusd = gw.settle_media(res, served_by.deployment, served_by.model, bill.usage, bill.units,
                           billed=op != "moderations")
    rec = record_of(request)
    if rec is not None:
        rec.upstream_model = served_by.model
        rec.prompt_tokens = bill.usage.prompt_tokens
        rec.completion_tokens = bill.usage.completion_tokens
        rec.cached_tokens = bill.usage.cache_read_tokens
        rec.cache_write_tokens = bill.usage.cache_write_tokens
        units = bill.units  # each in its own column, none where it was not billed
        rec.images, rec.audio_seconds, rec.characters = (n or None for n in (
            units.images, units.audio_seconds, units.characters))
        rec.cost_nusd = nusd


def _answer(gw: Gateway, request: web.Request, op: MediaOp, asked: MediaRequest, res: Reservation,
            served_by: RouteTarget, opened: Opened, headers: dict[str, str]) -> web.Response:
    bill = media.billed(op, asked.estimate, opened.answer)
    _settle(gw, request, op, res, served_by, bill)
    rec = record_of(request)
    if rec is not None:
        rec.t_first_byte = time.perf_counter()
    if bill.estimated and op not in IMAGE_OPS:  # (an image answer without usage is billed per image)
        headers[ESTIMATE_HEADER] = "estimate"
    return web.Response(body=opened.body, headers={"Content-Type": "application/json", **headers})


async def _relay(gw: Gateway, request: web.Request, op: MediaOp, asked: MediaRequest, res: Reservation,
                 served_by: RouteTarget, opened: Opened, headers: dict[str, str]) -> web.StreamResponse:
    """Audio bytes or server-sent events, written to the client as they come from the upstream."""
    upstream = opened.resp
    assert upstream is not None
    events = media.EventUsage() if opened.content_type == "text/event-stream" else None
    if events is None:
        upstream.binary()  # audio bytes, relayed as they come: no event end to look for
    target = Target(served_by.name, served_by.deployment.base_url, served_by.model, None)
    tally = relay.Tally()

    async def frames() -> AsyncIterator[bytes]:
        while True:
            try:
                chunk = await upstream.read_chunk()
            except TRANSPORT_ERRORS as exc:
                raise transport_failure(target, exc) from exc
            if not chunk:
                return
            if not tally.content_chunks:
                tally.first_token_at = time.perf_counter()
            tally.content_chunks += 1
            if events is not None:
                events.feed(chunk)
            yield chunk

    if events is None:
        if not asked.estimate.exact:
            headers[ESTIMATE_HEADER] = "estimate"  # audio bytes carry no usage
        resp = web.StreamResponse(headers={"Content-Type": upstream.headers.get("content-type", opened.content_type),
                                           **headers})
    else:
        resp = relay.sse_response(headers[REQUEST_ID], {k: v for k, v in headers.items() if k != REQUEST_ID})
    rec = record_of(request)
    if rec is not None:
        rec.stream = True
    bill = asked.estimate
    try:
        # a broken audio stream just ends (no error frame belongs in audio bytes); events get one
        await relay.pump(request, resp, frames(), tally, gw.settings.disconnect_drain_seconds, None, gw.scrub,
                         None if events is not None else _cut)
        return resp
    except BaseException as exc:
        relay.note_raised(tally, exc, gw.scrub)
        raise
    finally:
        bill = media.billed(op, asked.estimate, events.last if events is not None else None)
        _settle(gw, request, op, res, served_by, bill)
        note_stream_end(gw, rec, headers[REQUEST_ID], served_by.deployment, tally, bill.usage)
        if tally.outcome == "done":
            upstream.release()
        else:  # closing the connection is what stops the upstream's work
            upstream.close()


def _cut(_failure: UpstreamFailure) -> bytes:
    return b""


async def moderations(request: web.Request) -> web.StreamResponse:
    return await handle(request, "moderations")


async def images(request: web.Request) -> web.StreamResponse:
    return await handle(request, "images")


async def image_edits(request: web.Request) -> web.StreamResponse:
    return await handle(request, "image_edits")


async def image_variations(request: web.Request) -> web.StreamResponse:
    return await handle(request, "image_variations")


async def speech(request: web.Request) -> web.StreamResponse:
    return await handle(request, "speech")


async def transcriptions(request: web.Request) -> web.StreamResponse:
    return await handle(request, "transcriptions")


async def translations(request: web.Request) -> web.StreamResponse:
    return await handle(request, "translations")


def add_media_routes(app: web.Application) -> None:
    app.router.add_post(PATHS["moderations"], moderations)
    handlers: tuple[tuple[MediaOp, Handler], ...] = (
        ("images", images), ("image_edits", image_edits), ("image_variations", image_variations), ("speech", speech),
        ("transcriptions", transcriptions), ("translations", translations))
    for op, handler in handlers:
        app.router.add_post(PATHS[op], handler)
        # Azure OpenAI's paths, as the openai SDK's AzureOpenAI client calls them (see routes.add_routes)
        for prefix in ("/openai/deployments/{deployment}", "/v1/deployments/{deployment}"):
            app.router.add_post(prefix + PATHS[op].removeprefix("/v1"), handler)
    # the AzureOpenAI client sends variations (not a deployment endpoint to it) to /openai/images/variations,
    # naming the model in the form
    app.router.add_post("/openai" + PATHS["image_variations"].removeprefix("/v1"), image_variations)
