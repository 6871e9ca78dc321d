"""The Anthropic Messages API as an upstream: OpenAI chat requests are translated on the way out,
responses and stream events back into OpenAI responses and chunks (anthropic_translate)."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator

import aiohttp
import orjson

from shieldes.errors import InvalidRequest
from shieldes.providers.anthropic_native import (
    ANTHROPIC_VERSION,
    NativeAnswer,
    NativeEventStream,
    Passthrough,
    open_native_stream,
    post_native,
)
from shieldes.providers.anthropic_translate import (
    StreamTranslator,
    chat_request_to_anthropic,
    messages_response_to_chat,
)
from shieldes.providers.base import Body, JsonResult, Operation, Target, TokenUsage
from shieldes.providers.http import (
    TRANSPORT_ERRORS,
    invalid_response,
    join_endpoint,
    open_event_stream,
    post_for_object,
    timeouts,
    transport_failure,
)
from shieldes.providers.sse import SSEDecoder
from shieldes.providers.streams import UpstreamChunkStream
from shieldes.settings import Settings

_SHAPE_ERRORS = (AttributeError, TypeError, ValueError, KeyError)


def _only_chat(op: Operation) -> None:
    if op != "chat":
        raise InvalidRequest(
            f"Anthropic models only serve chat completions, not {op}; use /v1/chat/completions "
            "or route this model to an OpenAI-compatible provider"
        )


class AnthropicProvider:
    kind = "anthropic"

    def __init__(self, session: aiohttp.ClientSession, settings: Settings) -> None:
        self._session = session
        self._json_timeout, self._stream_timeout = timeouts(settings)
        self._urls: dict[str, str] = {}

    def _url(self, base_url: str) -> str:
        url = self._urls.get(base_url)
        if url is None:
            url = self._urls[base_url] = join_endpoint(base_url, "/messages")
        return url

    @staticmethod
    def _headers(target: Target) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "anthropic-version": ANTHROPIC_VERSION}
        if target.api_key:
            headers["x-api-key"] = target.api_key
        return headers

    async def call(self, op: Operation, target: Target, body: Body) -> JsonResult:
        _only_chat(op)
        request = chat_request_to_anthropic({**body, "stream": False}, target.model)
        data, _raw = await post_for_object(
            self._session, target, self._url(target.base_url), orjson.dumps(request), self._headers(target),
            self._json_timeout,
        )
        # Like OpenAI-compatible upstreams, the response names the model that actually answered.
        try:
            chat, usage = messages_response_to_chat(
                data, str(data.get("model") or target.model), int(time.time())
            )
        except _SHAPE_ERRORS as exc:  # an answer that is JSON but not a Messages response
            raise invalid_response(target, f"unexpected message shape: {exc}") from None
        return JsonResult(body=chat, usage=usage)

    async def stream(self, op: Operation, target: Target, body: Body) -> AnthropicChunkStream:
        _only_chat(op)
        request = chat_request_to_anthropic({**body, "stream": True}, target.model)
        resp = await open_event_stream(
            self._session, target, self._url(target.base_url), orjson.dumps(request), self._headers(target),
            self._stream_timeout,
        )
        translator = StreamTranslator(target.model, int(time.time()))
        stream = AnthropicChunkStream(resp, target, translator)
        await stream.prime()
        return stream


    # --- pass-through (clients speaking the Messages API: anthropic_native) ---------------------

    async def messages(self, target: Target, payload: bytes, passthrough: Passthrough) -> NativeAnswer:
        return await post_native(self._session, target, "/messages", payload, passthrough, self._json_timeout)

    async def messages_stream(self, target: Target, payload: bytes, passthrough: Passthrough) -> NativeEventStream:
        return await open_native_stream(self._session, target, payload, passthrough, self._stream_timeout)

    async def count_tokens(self, target: Target, payload: bytes, passthrough: Passthrough) -> NativeAnswer:
        return await post_native(self._session, target, "/messages/count_tokens", payload, passthrough,
                                 self._json_timeout)


class AnthropicChunkStream(UpstreamChunkStream):
    """OpenAI chunks translated from one Anthropic event stream."""

    def __init__(self, resp: aiohttp.ClientResponse, target: Target, translator: StreamTranslator) -> None:
        super().__init__(resp, target)
        self._translator = translator

    @property
    def usage(self) -> TokenUsage | None:
        return self._translator.usage

    async def _chunks(self) -> AsyncGenerator[Body, None]:
        decoder = SSEDecoder()
        try:
            async for raw in self._resp.content.iter_any():
                for event, data in decoder.feed(raw):
                    for chunk in self._translate(event, data):
                        yield chunk
                if self._translator.done:
                    self._finished = True
                    return
            for event, data in decoder.close():
                for chunk in self._translate(event, data):
                    yield chunk
            if not self._translator.done:
                raise invalid_response(self._target, "the event stream ended before message_stop")
            self._finished = True
        except TRANSPORT_ERRORS as exc:
            raise transport_failure(self._target, exc) from exc
        finally:
            self._release()

    def _translate(self, event: str, data: bytes) -> list[Body]:
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise invalid_response(self._target, "a stream event is not JSON") from None
        if not isinstance(parsed, dict):
            raise invalid_response(self._target, "a stream event is not a JSON object")
        try:
            return self._translator.feed(event, parsed)
        except _SHAPE_ERRORS as exc:
            raise invalid_response(self._target, f"unexpected {event} event shape: {exc}") from None
