"""Any OpenAI-compatible upstream: OpenAI, Azure OpenAI (deployment URL + api-version + `api-key`
header), vLLM, Ollama, Groq, Together, OpenRouter. The gateway already speaks this format, so the
body only gets the upstream model name; responses pass through as parsed dicts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from shieldes.errors import InvalidRequest
from shieldes.providers.base import Body, JsonResult, MediaOp, MediaUpstream, Operation, Target, UpstreamFailure
from shieldes.providers.http import (
    invalid_response,
    is_azure,
    join_endpoint,
    open_event_stream,
    parse_usage,
    post_for_object,
    timeouts,
)
from shieldes.providers.openai_responses import ResponsesEventStream
from shieldes.providers.openai_stream import OpenAIChunkStream
from shieldes.providers.openai_strict import STRICT_OPS, Refit, openai_itself, refit
from shieldes.providers.tool_args import OBJECT_ARGUMENTS, string_answer_arguments, string_arguments
from shieldes.providers.tool_ids import all_fit, chat_history_fits, fit_chat_ids, rule_for
from shieldes.providers.transport import UpstreamClient, UpstreamResponse
from shieldes.providers.upstream_connection import Payload
from shieldes.settings import Settings

_PATHS: dict[str, str] = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
    "responses": "/responses",
    "input_tokens": "/responses/input_tokens",
    "moderations": "/moderations",
    "images": "/images/generations",
    "image_edits": "/images/edits",
    "image_variations": "/images/variations",
    "speech": "/audio/speech",
    "transcriptions": "/audio/transcriptions",
    "translations": "/audio/translations",
}
MEDIA_OPS = frozenset({"moderations", "images", "image_edits", "image_variations", "speech", "transcriptions",
                       "translations"})


def op_path(op: Operation) -> str:
    path = _PATHS.get(op)
    if path is None:
        raise InvalidRequest(f"operation {op!r} is not supported by OpenAI-compatible upstreams")
    return path


# The list an answer of each operation must hold (its choices, vectors, output items)
ANSWER_LISTS: Mapping[str, str] = {"chat": "choices", "completions": "choices", "embeddings": "data",
                                "responses": "output"}


class OpenAIProvider(MediaUpstream):
    kind = "openai"
    media_ops = MEDIA_OPS

    def __init__(self, client: UpstreamClient, settings: Settings) -> None:
        self._client = client
        self._json_timeout, self._stream_timeout = timeouts(settings)
        # (base_url, op) -> (url, azure?): a handful of deployments, computed once each.
        self._endpoints: dict[tuple[str, str], tuple[str, bool]] = {}
        self._header_sets: dict[tuple[str | None, bool], dict[str, str]] = {}
        self._strict: dict[str, bool] = {}  # base_url -> openai_itself(base_url)

    def _endpoint(self, target: Target, op: Operation) -> tuple[str, bool]:
        """(URL, whether the key goes in an Azure-style `api-key` header) of `op` on `target`."""
        key = (target.base_url, op)
        found = self._endpoints.get(key)
        if found is None:
            found = self._endpoints[key] = (join_endpoint(target.base_url, op_path(op)), is_azure(target.base_url))
        return found

    def _headers(self, target: Target, azure: bool) -> dict[str, str]:
        """Request headers per (key, auth style), built once (aiohttp copies them per request)."""
        ck = (target.api_key, azure)
        headers = self._header_sets.get(ck)
        if headers is None:
            headers = {"Content-Type": "application/json"}
            if target.api_key:
                if azure:
                    headers["api-key"] = target.api_key
                else:
                    headers["Authorization"] = "Bearer " + target.api_key
            if len(self._header_sets) > 1000:  # keys rotate: keep the cache bounded
                self._header_sets.clear()
            self._header_sets[ck] = headers
        return headers

    def strict(self, target: Target) -> bool:
        """Whether `target` is OpenAI itself or Azure OpenAI (openai_strict)."""
        found = self._strict.get(target.base_url)
        if found is None:
            found = self._strict[target.base_url] = openai_itself(target.base_url)
        return found

    def refit(self, op: Operation, target: Target, field: Callable[[str], Any]) -> Refit | None:
        """What of the client's request (`field`: its top-level fields) this upstream refuses though
        other OpenAI-compatible servers take it, fitted (openai_strict.refit); None: as sent."""
        return refit(target.model, field) if op in STRICT_OPS and self.strict(target) else None

    def outgoing(self, op: Operation, target: Target, body: Body) -> Body:
        """`body` as this upstream takes it: a chat history's tool call ids fitted to the
        upstream's rule (tool_ids), tool call arguments sent as objects encoded as the JSON text
        OpenAI requires (tool_args). The same object when nothing changes."""
        messages = body.get("messages")
        if op != "chat" or not isinstance(messages, list):
            return body
        rule = rule_for(self.kind, target.base_url)
        if chat_history_fits(messages, rule, text_arguments=True):  # the common case: one pass
            return body
        return fit_chat_ids(string_arguments(body), rule)

    def takes_as_sent(self, op: Operation, target: Target, ids: list[str] | None) -> bool:
        """Whether this upstream takes the client's body with only top-level fields changed (the
        model, what the gateway adds), so its bytes can go: any request but a chat whose history
        `outgoing` would change. `ids`: the chat history's tool call ids, read off its bytes
        (chat_history); None when it could not be read so, and then the body is decoded."""
        return op != "chat" or (ids is not None and all_fit(ids, rule_for(self.kind, target.base_url)))

    async def call(self, op: Operation, target: Target, body: Body) -> JsonResult:
        payload = dict(self.outgoing(op, target, body))
        payload["model"] = target.model
        payload.pop("stream", None)
        payload.pop("stream_options", None)
        return await self.call_raw(op, target, orjson.dumps(payload))

    async def call_raw(self, op: Operation, target: Target, payload: Payload) -> JsonResult:
        """A non-streaming call with a body already encoded for this upstream (the client's own
        bytes when `takes_as_sent`: `model` the target's, no stream fields). The answer comes back
        parsed (for usage and translation) and as the upstream's bytes, to forward without
        re-encoding."""
        url, azure = self._endpoint(target, op)
        data, raw = await post_for_object(
            self._client, target, url, payload, self._headers(target, azure), self._json_timeout
        )
        listing = ANSWER_LISTS.get(op)
        if listing is not None and not isinstance(data.get(listing), list):
            raise invalid_response(target, f"an answer without `{listing}`")
        # Ollama: arguments as an object; found by a look at the bytes first, as the stream's frames
        # are (most answers call no tool: no walk of the parsed answer)
        if op == "chat" and b'"arguments"' in raw and OBJECT_ARGUMENTS.search(raw) \
                and string_answer_arguments(data):
            return JsonResult(body=data, usage=parse_usage(data.get("usage"), data.get("service_tier")))
        return JsonResult(body=data, usage=parse_usage(data.get("usage"), data.get("service_tier")), raw=raw)

    async def stream(self, op: Operation, target: Target, body: Body) -> OpenAIChunkStream:
        payload = dict(self.outgoing(op, target, body))
        payload["model"] = target.model
        payload["stream"] = True
        # Usage of a stream is only reported when asked for; accounting depends on it.
        options = payload.get("stream_options")
        payload["stream_options"] = (
            {**options, "include_usage": True} if isinstance(options, dict) else {"include_usage": True}
        )
        return await self.stream_bytes(op, target, orjson.dumps(payload), lambda: payload)

    async def stream_bytes(self, op: Operation, target: Target, payload: Payload,
                           whole: Callable[[], Body]) -> OpenAIChunkStream:
        """A streaming call with a body already encoded for this upstream (the client's own bytes
        when `takes_as_sent`: a coding agent's long history is not encoded again), which names
        `target.model` and `stream: true` and asks for the stream's usage. `whole`: the same body
        decoded, for an upstream that refuses `stream_options`."""
        if op == "embeddings":
            raise InvalidRequest("embeddings cannot be streamed; remove `stream` from the request", param="stream")
        url, azure = self._endpoint(target, op)
        try:
            resp = await self._open_stream(url, target, azure, payload)
        except UpstreamFailure as failure:
            # A few OpenAI-compatible servers reject `stream_options`; without it they still stream
            # (usage then comes from the chunks if at all, else the gateway estimates it).
            if failure.status != 400 or "stream_options" not in failure.message:
                raise
            plain = dict(self.outgoing(op, target, whole()))
            del plain["stream_options"]
            resp = await self._open_stream(url, target, azure, orjson.dumps(plain))
        stream = OpenAIChunkStream(resp, target)
        await stream.prime()
        return stream

    async def responses_stream(self, target: Target, body: Body, raw: Payload | None = None) -> ResponsesEventStream:
        """A streaming call to the upstream's own /v1/responses: its typed events, parsed. `raw`:
        the client's own encoding of exactly this request (model and `stream: true` included), sent
        instead of encoding `body` again."""
        url, azure = self._endpoint(target, "responses")
        encoded = raw if raw is not None else orjson.dumps(dict(body, model=target.model, stream=True))
        resp = await self._open_stream(url, target, azure, encoded)
        stream = ResponsesEventStream(resp, target)
        await stream.prime()
        return stream

    async def media(self, op: MediaOp, target: Target, payload: bytes, content_type: str,
                    streaming: bool) -> UpstreamResponse:
        """The client's media or moderation request, as it is but for its model (MediaUpstream)."""
        url, azure = self._endpoint(target, op)
        headers = dict(self._headers(target, azure), **{"Content-Type": content_type})
        return await open_event_stream(self._client, target, url, payload, headers,
                                       self._stream_timeout if streaming else self._json_timeout)

    async def _open_stream(self, url: str, target: Target, azure: bool, payload: Payload) -> UpstreamResponse:
        resp = await open_event_stream(
            self._client, target, url, payload, self._headers(target, azure), self._stream_timeout
        )
        if resp.content_type == "application/json":
            # The upstream ignored `stream`: refuse rather than relay an empty stream.
            resp.release()
            raise invalid_response(target, "a JSON body instead of an event stream")
        return resp
