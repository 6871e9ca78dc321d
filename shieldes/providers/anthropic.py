"""The Anthropic Messages API as an upstream: OpenAI chat requests are translated on the way out,
responses and stream events back into OpenAI responses and chunks (anthropic_translate)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

import orjson

from shieldes.errors import InvalidRequest
from shieldes.providers.anthropic_native import (
    NO_PASSTHROUGH,
    MessagesUpstream,
    NativeAnswer,
    NativeEventStream,
    Passthrough,
    native_headers,
    native_url,
    open_native_stream,
    post_native,
)
from shieldes.providers.anthropic_translate import StreamTranslator, anthropic_request, messages_response_to_chat
from shieldes.providers.base import Body, JsonResult, Operation, Target, UpstreamFailure
from shieldes.providers.http import (
    SHAPE_ERRORS,
    event_object,
    invalid_response,
    join_endpoint,
    open_event_stream,
    post_for_object,
    timeouts,
)
from shieldes.providers.sse import SSEDecoder
from shieldes.providers.streams import TranslatedChunkStream
from shieldes.providers.transport import UpstreamClient, UpstreamResponse
from shieldes.settings import Settings


def _only_chat(op: Operation) -> None:
    if op != "chat":
        raise InvalidRequest(
            f"Anthropic models only serve chat completions, not {op}; use /v1/chat/completions "
            "or route this model to an OpenAI-compatible provider"
        )


# The three calls of the Messages API an upstream takes: JSON, event stream, token count.
Endpoint = Literal["messages", "stream", "count_tokens"]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A Messages body as the upstream takes it, the request headers it adds, and what of the
    client's request it left out (named in x-shieldes-dropped)."""

    body: bytes
    headers: Mapping[str, str]
    dropped: Sequence[str] = ()


class _Dropping(Protocol):
    dropped: list[str]


NativeT = TypeVar("NativeT", bound=_Dropping)  # a pass-through answer: JSON or event stream


class AnthropicProvider(MessagesUpstream):
    """Anthropic's own API. Where another platform serves Claude in the same wire format (Vertex
    AI: providers/vertex.py), a subclass says where a call goes (`_endpoint`), how it authenticates
    (`_auth`), what the body carries there (`_payload`), what of a client's headers it refuses
    (`_sent`) and what its failures advise (`_advice`); the rest (translation, pass-through,
    usage, stream checks) is this class's."""

    kind = "anthropic"

    def __init__(self, client: UpstreamClient, settings: Settings) -> None:
        self._client = client
        self._json_timeout, self._stream_timeout = timeouts(settings)
        self._urls: dict[tuple[str, str], str] = {}

    def _url(self, base_url: str, path: str) -> str:
        url = self._urls.get((base_url, path))
        if url is None:
            url = self._urls[(base_url, path)] = join_endpoint(base_url, path)
        return url

    def _endpoint(self, target: Target, endpoint: Endpoint, query: str = "") -> str:
        """The URL of a call, with the client's query string (`?beta=true`) on pass-through calls."""
        path = "/messages/count_tokens" if endpoint == "count_tokens" else "/messages"
        return native_url(self._url(target.base_url, path), query)

    async def _auth(self, target: Target) -> dict[str, str]:
        return {"x-api-key": target.api_key} if target.api_key else {}

    def _payload(self, payload: bytes, endpoint: Endpoint) -> Outgoing:
        """The body the upstream takes for a Messages body naming the upstream's model: that body."""
        return Outgoing(payload, {})

    async def _sent(self, target: Target, send: Callable[[Passthrough], Awaitable[NativeT]],
                    passthrough: Passthrough) -> NativeT:
        """A pass-through call made (`send` with the client's `anthropic-*` headers): as the client sent them."""
        return await send(passthrough)

    def _advice(self, target: Target, failure: UpstreamFailure) -> UpstreamFailure:
        """A failure as the client hears of it: as the upstream said it."""
        return failure

    async def _headers(self, target: Target, passthrough: Passthrough = NO_PASSTHROUGH) -> dict[str, str]:
        return native_headers(passthrough, await self._auth(target))

    @contextlib.contextmanager
    def _advised(self, target: Target) -> Iterator[None]:
        try:
            yield
        except UpstreamFailure as failure:
            raise self._advice(target, failure) from None

    async def call(self, op: Operation, target: Target, body: Body) -> JsonResult:
        _only_chat(op)
        out = anthropic_request({**body, "stream": False}, target.model)
        sent = self._payload(orjson.dumps(out.request), "messages")
        with self._advised(target):
            data, _raw = await post_for_object(
                self._client, target, self._endpoint(target, "messages"),
                sent.body, {**await self._headers(target), **sent.headers}, self._json_timeout,
            )
        if not isinstance(data.get("content"), list):
            raise invalid_response(target, "an answer without `content`")
        # Like OpenAI-compatible upstreams, the response names the model that actually answered.
        try:
            chat, usage = messages_response_to_chat(
                data, str(data.get("model") or target.model), int(time.time())
            )
        except SHAPE_ERRORS as exc:  # an answer that is JSON but not a Messages response
            raise invalid_response(target, f"unexpected message shape: {exc}") from None
        return JsonResult(body=chat, usage=usage, dropped=[*out.dropped, *sent.dropped])

    async def stream(self, op: Operation, target: Target, body: Body) -> AnthropicChunkStream:
        _only_chat(op)
        out = anthropic_request({**body, "stream": True}, target.model)
        sent = self._payload(orjson.dumps(out.request), "stream")
        with self._advised(target):
            resp = await open_event_stream(
                self._client, target, self._endpoint(target, "stream"),
                sent.body, {**await self._headers(target), **sent.headers}, self._stream_timeout,
            )
        translator = StreamTranslator(target.model, int(time.time()))
        stream = AnthropicChunkStream(resp, target, translator, [*out.dropped, *sent.dropped])
        await stream.prime()
        return stream

    # --- pass-through (clients speaking the Messages API: anthropic_native) ---------------------

    async def messages(self, target: Target, payload: bytes, passthrough: Passthrough) -> NativeAnswer:
        sent = self._payload(payload, "messages")

        async def send(p: Passthrough) -> NativeAnswer:
            return await post_native(self._client, target, self._endpoint(target, "messages", p.query), sent.body,
                                     {**await self._headers(target, p), **sent.headers}, self._json_timeout,
                                     "content")
        return await self._passed(target, sent, send, passthrough)

    async def messages_stream(self, target: Target, payload: bytes, passthrough: Passthrough) -> NativeEventStream:
        sent = self._payload(payload, "stream")

        async def send(p: Passthrough) -> NativeEventStream:
            return await open_native_stream(
                self._client, target, self._endpoint(target, "stream", p.query), sent.body,
                {**await self._headers(target, p), **sent.headers}, self._stream_timeout)
        return await self._passed(target, sent, send, passthrough)

    async def count_tokens(self, target: Target, payload: bytes, passthrough: Passthrough) -> NativeAnswer:
        sent = self._payload(payload, "count_tokens")

        async def send(p: Passthrough) -> NativeAnswer:
            return await post_native(self._client, target, self._endpoint(target, "count_tokens", p.query),
                                     sent.body, {**await self._headers(target, p), **sent.headers},
                                     self._json_timeout)
        return await self._passed(target, sent, send, passthrough)

    async def _passed(self, target: Target, sent: Outgoing, send: Callable[[Passthrough], Awaitable[NativeT]],
                      passthrough: Passthrough) -> NativeT:
        with self._advised(target):
            answer = await self._sent(target, send, passthrough)
        answer.dropped[:0] = sent.dropped  # the body's, before any the headers lost
        return answer


class AnthropicChunkStream(TranslatedChunkStream[StreamTranslator, tuple[str, bytes]]):
    """OpenAI chunks translated from one Anthropic event stream (SSE, ends at message_stop)."""

    def __init__(self, resp: UpstreamResponse, target: Target, translator: StreamTranslator,
                 dropped: Sequence[str] = ()) -> None:
        super().__init__(resp, target, translator, dropped)
        self._decoder = SSEDecoder()

    def _events(self, raw: bytes) -> list[tuple[str, bytes]]:
        return self._decoder.feed(raw)

    def _ended(self) -> bool:
        return self._translator.done

    def _close(self) -> list[Body]:
        chunks = [c for event in self._decoder.close() for c in self._translate(event)]
        if not self._translator.done:
            raise invalid_response(self._target, "the event stream ended before message_stop")
        return chunks

    def _translate(self, item: tuple[str, bytes]) -> list[Body]:
        event, data = item
        parsed = event_object(self._target, data)
        try:
            return self._translator.feed(event, parsed)
        except SHAPE_ERRORS as exc:
            raise invalid_response(self._target, f"unexpected {event} event shape: {exc}") from None
