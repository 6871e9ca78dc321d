"""Google as an upstream: the Gemini API (`gemini`, API key in `x-goog-api-key`) and Vertex AI
(`vertex`, OAuth tokens from a service account or Application Default Credentials through
google-auth, extra `shieldes[vertex]`). Both take the same generateContent bodies
(gemini_translate); they differ in URL, authentication and the embeddings method. The Claude
models of a `vertex` provider speak Anthropic's wire format (providers/vertex.py)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from urllib.parse import quote

import orjson

from shieldes.errors import InvalidRequest
from shieldes.providers import vertex_options
from shieldes.providers.anthropic_native import NativeAnswer
from shieldes.providers.base import (
    Body,
    InputTokenCounter,
    JsonResult,
    ModelDialects,
    Operation,
    Provider,
    Target,
    UpstreamFailure,
)
from shieldes.providers.chat_answers import embeddings_response
from shieldes.providers.dropped import JSON_OBJECT, METADATA, dropped_fields
from shieldes.providers.gemini_native import EmbedMethod, GenerateContentUpstream, GoogleEventStream, answer_usage
from shieldes.providers.gemini_translate import (
    GeminiStreamTranslator,
    chat_to_gemini,
    embeddings_request,
    gemini_to_chat,
    vertex_embeddings_request,
)
from shieldes.providers.http import (
    SHAPE_ERRORS,
    event_object,
    invalid_response,
    open_event_stream,
    post_for_object,
    timeouts,
    with_version,
)
from shieldes.providers.sse import SSEDecoder
from shieldes.providers.streams import TranslatedChunkStream
from shieldes.providers.transport import UpstreamClient, UpstreamResponse
from shieldes.providers.vertex import GoogleTokens, VertexClaudeProvider, model_url
from shieldes.settings import Settings

# What generationConfig carries of dropped_fields' names (seed, penalties, JSON output) and
# reasoning_effort as thinkingConfig (reasoning.gemini_thinking); the rest is named as dropped.
_CARRIED = frozenset({"seed", "frequency_penalty", "presence_penalty", "reasoning_effort", JSON_OBJECT})


class GeminiProvider(InputTokenCounter, GenerateContentUpstream):
    """The Gemini API (generativelanguage.googleapis.com)."""

    kind = "gemini"

    def __init__(self, client: UpstreamClient, settings: Settings) -> None:
        self._client = client
        self._json_timeout, self._stream_timeout = timeouts(settings)

    def _model_url(self, target: Target, method: str) -> str:
        return f"{with_version(target.base_url, 'v1beta')}/models/{quote(target.model, safe='')}:{method}"

    async def _headers(self, target: Target) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if target.api_key:
            headers["x-goog-api-key"] = target.api_key
        return headers

    async def call(self, op: Operation, target: Target, body: Body) -> JsonResult:
        if op == "embeddings":
            return await self._embed(target, body)
        _only_chat(op, self.kind)
        request, headers, dropped = self._outbound(body, target)
        data, _raw = await post_for_object(
            self._client, target, self._model_url(target, "generateContent"),
            orjson.dumps(request), {**await self._headers(target), **headers}, self._json_timeout)
        try:
            chat, usage = gemini_to_chat(data, target.model, int(time.time()))
        except SHAPE_ERRORS as exc:
            raise invalid_response(target, f"unexpected generateContent shape: {exc}") from None
        return JsonResult(body=chat, usage=usage, dropped=dropped)

    def _outbound(self, body: Body, target: Target) -> tuple[Body, dict[str, str], list[str]]:
        """The generateContent request for a chat request, the headers it adds, and what of the
        chat request it leaves out (the Gemini API has no tiers and no labels)."""
        return chat_to_gemini(body, target.model), {}, dropped_fields(body, _CARRIED)

    async def count_input_tokens(self, target: Target, body: Body) -> int | None:
        """Google's countTokens on the generateContent request the chat request becomes (contents,
        system instruction, tools: what it would bill as input)."""
        request = chat_to_gemini(body, target.model)
        counted: Body = {k: request[k] for k in ("contents", "systemInstruction", "tools") if k in request}
        data, _raw = await post_for_object(
            self._client, target, self._model_url(target, "countTokens"),
            orjson.dumps(self._count_request(target, counted)), await self._headers(target), self._json_timeout)
        total = data.get("totalTokens")
        if not isinstance(total, int) or isinstance(total, bool):
            raise invalid_response(target, f"unexpected countTokens response: {str(data)[:200]}")
        return total

    def _count_request(self, target: Target, counted: Body) -> Body:
        # the Gemini API counts a system instruction and tools only inside a whole generateContentRequest
        return {"generateContentRequest": {"model": f"models/{target.model}", **counted}}

    async def _embed(self, target: Target, body: Body) -> JsonResult:
        # The Gemini API reports no token counts for embeddings: usage is left to the gateway's estimate.
        data, _raw = await post_for_object(
            self._client, target, self._model_url(target, "batchEmbedContents"),
            orjson.dumps(embeddings_request(body, target.model)), await self._headers(target), self._json_timeout)
        try:
            vectors = [list(e["values"]) for e in data["embeddings"]]
        except SHAPE_ERRORS as exc:
            raise invalid_response(target, f"unexpected batchEmbedContents shape: {exc}") from None
        out, usage = embeddings_response(vectors, target.model, None, body.get("encoding_format"))
        return JsonResult(body=out, usage=usage)

    # --- pass-through (clients speaking the Gemini API: gemini_native) ---------------------------

    async def generate(self, target: Target, payload: bytes) -> NativeAnswer:
        data, raw = await post_for_object(self._client, target, self._model_url(target, "generateContent"),
                                          payload, await self._headers(target), self._json_timeout)
        if not isinstance(data.get("candidates"), list) and not isinstance(data.get("promptFeedback"), dict):
            raise invalid_response(target, "a generateContent answer without candidates")
        return NativeAnswer(raw, data, answer_usage(data))

    async def generate_stream(self, target: Target, payload: bytes) -> GoogleEventStream:
        # always SSE from the upstream: its events are what either of the client's forms is made of
        url = self._model_url(target, "streamGenerateContent") + "?alt=sse"
        resp = await open_event_stream(self._client, target, url, payload, await self._headers(target),
                                       self._stream_timeout)
        stream = GoogleEventStream(resp, target)
        await stream.prime()
        return stream

    async def embed_content(self, target: Target, method: EmbedMethod, payload: bytes) -> NativeAnswer:
        # Vertex serves both methods for Gemini embedding models, with the same bodies
        data, raw = await post_for_object(self._client, target, self._model_url(target, method), payload,
                                          await self._headers(target), self._json_timeout)
        return NativeAnswer(raw, data, answer_usage(data))

    async def stream(self, op: Operation, target: Target, body: Body) -> GeminiChunkStream:
        _only_chat(op, self.kind)
        url = self._model_url(target, "streamGenerateContent") + "?alt=sse"
        request, headers, dropped = self._outbound(body, target)
        resp = await open_event_stream(self._client, target, url, orjson.dumps(request),
                                       {**await self._headers(target), **headers}, self._stream_timeout)
        translator = GeminiStreamTranslator(target.model, int(time.time()))
        stream = GeminiChunkStream(resp, target, translator, dropped)
        await stream.prime()
        return stream


def _only_chat(op: Operation, kind: str) -> None:
    if op != "chat":
        raise InvalidRequest(f"{kind} models serve chat completions and embeddings, not {op}; "
                             "use /v1/chat/completions")


class GeminiChunkStream(TranslatedChunkStream[GeminiStreamTranslator, bytes]):
    """OpenAI chunks from one streamGenerateContent?alt=sse response (it ends by closing)."""

    def __init__(self, resp: UpstreamResponse, target: Target, translator: GeminiStreamTranslator,
                 dropped: Sequence[str] = ()) -> None:
        super().__init__(resp, target, translator, dropped)
        self._decoder = SSEDecoder()

    def _events(self, raw: bytes) -> list[bytes]:
        return [data for _event, data in self._decoder.feed(raw)]

    def _close(self) -> list[Body]:
        chunks = [c for _event, data in self._decoder.close() for c in self._translate(data)]
        if not self._translator.started:
            raise invalid_response(self._target, "an answer without any server-sent event where an event stream "
                                   "was expected; check the provider's base URL")
        if not self._translator.finished:  # cut short: billed as an estimate (its last counts predate the end)
            raise invalid_response(self._target, "the stream ended before a finishReason")
        return chunks + self._translator.end()

    def _translate(self, data: bytes) -> list[Body]:
        parsed = event_object(self._target, data)
        if isinstance(parsed.get("error"), dict):
            err = parsed["error"]
            raise UpstreamFailure(str(err.get("message") or "upstream error mid-stream"), status=None,
                                  retryable=True, body=parsed)
        try:
            return self._translator.feed(parsed)
        except SHAPE_ERRORS as exc:
            raise invalid_response(self._target, f"unexpected stream event shape: {exc}") from None


class VertexProvider(GeminiProvider, ModelDialects):
    """Vertex AI: Google's models at `.../publishers/google/models/{model}` (generateContent), and
    Anthropic's (vertex_options.serves_claude) in their own wire format (vertex.VertexClaudeProvider),
    both with the same access tokens."""

    kind = "vertex"

    def __init__(self, client: UpstreamClient, settings: Settings) -> None:
        super().__init__(client, settings)
        self._tokens = GoogleTokens()
        self._claude = VertexClaudeProvider(client, settings, self._tokens)

    def for_model(self, model: str) -> Provider:
        return self._claude if vertex_options.serves_claude(model) else self

    def _model_url(self, target: Target, method: str) -> str:
        return model_url(target, "google", target.model, method)

    async def _headers(self, target: Target) -> dict[str, str]:
        return {"Content-Type": "application/json", "Authorization": "Bearer " + await self._tokens.token(target)}

    def _count_request(self, target: Target, counted: Body) -> Body:
        return counted  # Vertex takes the request's fields as they are

    def _outbound(self, body: Body, target: Target) -> tuple[Body, dict[str, str], list[str]]:
        """Vertex has both: `service_tier` as its tier headers, `metadata` as the request's labels."""
        request = chat_to_gemini(body, target.model)
        tags = vertex_options.labels(body.get("metadata"))
        if tags:
            request["labels"] = tags
        carried = (_CARRIED | {METADATA}) if tags else _CARRIED
        return (request, vertex_options.tier_headers(body.get("service_tier")),
                dropped_fields(body, carried, vertex_options.TIERS))

    async def _embed(self, target: Target, body: Body) -> JsonResult:
        data, _raw = await post_for_object(
            self._client, target, self._model_url(target, "predict"), orjson.dumps(vertex_embeddings_request(body)),
            await self._headers(target), self._json_timeout)
        try:
            predictions = [p["embeddings"] for p in data["predictions"]]
            vectors = [list(p["values"]) for p in predictions]
            tokens = sum(int((p.get("statistics") or {}).get("token_count") or 0) for p in predictions)
        except SHAPE_ERRORS as exc:
            raise invalid_response(target, f"unexpected predict shape: {exc}") from None
        out, usage = embeddings_response(vectors, target.model, tokens, body.get("encoding_format"))
        return JsonResult(body=out, usage=usage)
