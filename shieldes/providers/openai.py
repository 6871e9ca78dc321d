"""Any OpenAI-compatible upstream: OpenAI, Azure OpenAI (deployment URL + api-version + `api-key`
header), vLLM, Ollama, Groq, Together, OpenRouter. The gateway already speaks this format, so the
body only gets the upstream model name; responses pass through as parsed dicts."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import aiohttp
import orjson

from shieldes.errors import InvalidRequest
from shieldes.providers.base import Body, JsonResult, Operation, Target, UpstreamFailure
from shieldes.providers.http import (
    http_failure,
    invalid_response,
    is_azure,
    join_endpoint,
    parse_usage,
    timeouts,
    transport_failure,
)
from shieldes.providers.sse import SSEDecoder
from shieldes.providers.streams import UpstreamChunkStream
from shieldes.settings import Settings

_PATHS: dict[str, str] = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
}
_TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError)


class OpenAIProvider:
    kind = "openai"

    def __init__(self, session: aiohttp.ClientSession, settings: Settings) -> None:
        self._session = session
        self._json_timeout, self._stream_timeout = timeouts(settings)
        # (base_url, op) -> (url, azure?): a handful of deployments, computed once each.
        self._endpoints: dict[tuple[str, str], tuple[str, bool]] = {}

    def _endpoint(self, base_url: str, op: Operation) -> tuple[str, bool]:
        key = (base_url, op)
        found = self._endpoints.get(key)
        if found is None:
            path = _PATHS.get(op)
            if path is None:
                raise InvalidRequest(f"operation {op!r} is not supported by OpenAI-compatible upstreams")
            found = self._endpoints[key] = (join_endpoint(base_url, path), is_azure(base_url))
        return found

    @staticmethod
    def _headers(target: Target, azure: bool) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if target.api_key:
            if azure:
                headers["api-key"] = target.api_key
            else:
                headers["Authorization"] = "Bearer " + target.api_key
        return headers

    async def call(self, op: Operation, target: Target, body: Body) -> JsonResult:
        url, azure = self._endpoint(target.base_url, op)
        payload = dict(body)
        payload["model"] = target.model
        payload.pop("stream", None)
        payload.pop("stream_options", None)
        try:
            async with self._session.post(
                url,
                data=orjson.dumps(payload),
                headers=self._headers(target, azure),
                timeout=self._json_timeout,
            ) as resp:
                raw = await resp.read()
                status, headers = resp.status, resp.headers
        except _TRANSPORT_ERRORS as exc:
            raise transport_failure(target, exc) from exc
        if status >= 400:
            raise http_failure(target, status, raw, headers)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise invalid_response(target, "body is not JSON") from None
        if not isinstance(data, dict):
            raise invalid_response(target, "body is not a JSON object")
        return JsonResult(body=data, usage=parse_usage(data.get("usage")))

    async def stream(self, op: Operation, target: Target, body: Body) -> OpenAIChunkStream:
        if op == "embeddings":
            raise InvalidRequest("embeddings cannot be streamed; remove `stream` from the request")
        url, azure = self._endpoint(target.base_url, op)
        payload = dict(body)
        payload["model"] = target.model
        payload["stream"] = True
        # Usage of a stream is only reported when asked for; accounting depends on it.
        options = payload.get("stream_options")
        payload["stream_options"] = (
            {**options, "include_usage": True} if isinstance(options, dict) else {"include_usage": True}
        )
        try:
            resp = await self._open_stream(url, target, azure, payload)
        except UpstreamFailure as failure:
            # A few OpenAI-compatible servers reject `stream_options`; without it they still stream
            # (usage then comes from the chunks if at all, else the gateway estimates it).
            if failure.status != 400 or "stream_options" not in failure.message:
                raise
            del payload["stream_options"]
            resp = await self._open_stream(url, target, azure, payload)
        stream = OpenAIChunkStream(resp, target)
        await stream.prime()
        return stream

    async def _open_stream(
        self, url: str, target: Target, azure: bool, payload: Body
    ) -> aiohttp.ClientResponse:
        try:
            resp = await self._session.post(
                url,
                data=orjson.dumps(payload),
                headers=self._headers(target, azure),
                timeout=self._stream_timeout,
            )
        except _TRANSPORT_ERRORS as exc:
            raise transport_failure(target, exc) from exc
        if resp.status >= 400:
            try:
                raw = await resp.read()
            except _TRANSPORT_ERRORS:
                raw = b""
            finally:
                resp.release()
            raise http_failure(target, resp.status, raw, resp.headers)
        if resp.content_type == "application/json":
            # The upstream ignored `stream`: refuse rather than relay an empty stream.
            resp.release()
            raise invalid_response(target, "a JSON body instead of an event stream")
        return resp


class OpenAIChunkStream(UpstreamChunkStream):
    """Chunks of one upstream SSE response, ending at `data: [DONE]` (or a clean end of body)."""

    async def _chunks(self) -> AsyncGenerator[Body, None]:
        decoder = SSEDecoder()
        try:
            async for raw in self._resp.content.iter_any():
                for _event, data in decoder.feed(raw):
                    if data == b"[DONE]":
                        self._finished = True
                        return
                    yield self._chunk(data)
            for _event, data in decoder.close():
                if data != b"[DONE]":
                    yield self._chunk(data)
            self._finished = True
        except _TRANSPORT_ERRORS as exc:
            raise transport_failure(self._target, exc) from exc
        finally:
            self._release()

    def _chunk(self, data: bytes) -> Body:
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise invalid_response(self._target, "a stream event is not JSON") from None
        if not isinstance(chunk, dict):
            raise invalid_response(self._target, "a stream event is not a JSON object")
        if "error" in chunk and not chunk.get("choices"):
            err = chunk["error"]
            message = err.get("message") if isinstance(err, dict) else str(err)
            raise UpstreamFailure(
                str(message or "upstream error mid-stream"), status=None, retryable=True, body=chunk
            )
        usage = chunk.get("usage")
        if usage:
            self._usage = parse_usage(usage) or self._usage
        return chunk
