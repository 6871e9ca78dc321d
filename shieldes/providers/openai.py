"""Any OpenAI-compatible upstream: OpenAI, Azure OpenAI (deployment URL + api-version + `api-key`
header), vLLM, Ollama, Groq, Together, OpenRouter. The gateway already speaks this format, so the
body only gets the upstream model name; responses pass through as parsed dicts."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import orjson

from shieldes.errors import InvalidRequest
from shieldes.providers.base import Body, JsonResult, Operation, Target, UpstreamFailure
from shieldes.providers.http import (
    TRANSPORT_ERRORS,
    event_object,
    invalid_response,
    is_azure,
    join_endpoint,
    open_event_stream,
    parse_usage,
    post_for_object,
    timeouts,
    transport_failure,
)
from shieldes.providers.openai_responses import ResponsesEventStream
from shieldes.providers.sse import SSEDecoder
from shieldes.providers.streams import UpstreamChunkStream
from shieldes.providers.tool_args import OBJECT_ARGUMENTS, string_answer_arguments, string_arguments
from shieldes.providers.tool_ids import chat_history_fits, fit_chat_ids, rule_for
from shieldes.providers.transport import UpstreamClient, UpstreamResponse
from shieldes.settings import Settings

_PATHS: dict[str, str] = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
    "responses": "/responses",
    "input_tokens": "/responses/input_tokens",
}


def op_path(op: Operation) -> str:
    path = _PATHS.get(op)
    if path is None:
        raise InvalidRequest(f"operation {op!r} is not supported by OpenAI-compatible upstreams")
    return path


class OpenAIProvider:
    kind = "openai"

    def __init__(self, client: UpstreamClient, settings: Settings) -> None:
        self._client = client
        self._json_timeout, self._stream_timeout = timeouts(settings)
        # (base_url, op) -> (url, azure?): a handful of deployments, computed once each.
        self._endpoints: dict[tuple[str, str], tuple[str, bool]] = {}
        self._header_sets: dict[tuple[str | None, bool], dict[str, str]] = {}

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

    def outgoing(self, op: Operation, target: Target, body: Body) -> Body:
        """`body` as this upstream takes it: a chat history's tool call ids fitted to the
        upstream's rule (tool_ids), tool call arguments sent as objects encoded as the JSON text
        OpenAI requires (tool_args). The same object when nothing changes, so the client's own
        bytes can go instead (see call_raw)."""
        messages = body.get("messages")
        if op != "chat" or not isinstance(messages, list):
            return body
        rule = rule_for(self.kind, target.base_url)
        if chat_history_fits(messages, rule, text_arguments=True):  # the common case: one pass
            return body
        return fit_chat_ids(string_arguments(body), rule)

    async def call(self, op: Operation, target: Target, body: Body) -> JsonResult:
        payload = dict(self.outgoing(op, target, body))
        payload["model"] = target.model
        payload.pop("stream", None)
        payload.pop("stream_options", None)
        return await self.call_raw(op, target, orjson.dumps(payload))

    async def call_raw(self, op: Operation, target: Target, payload: bytes) -> JsonResult:
        """A non-streaming call with a body already encoded for this upstream (the client's own
        bytes when they name `target.model`, ask for no stream and `outgoing` leaves them as they
        are). The answer comes back parsed (for usage and translation) and as the upstream's bytes,
        to forward without re-encoding."""
        url, azure = self._endpoint(target, op)
        data, raw = await post_for_object(
            self._client, target, url, payload, self._headers(target, azure), self._json_timeout
        )
        if op == "chat" and string_answer_arguments(data):  # Ollama: arguments as an object
            return JsonResult(body=data, usage=parse_usage(data.get("usage")))
        return JsonResult(body=data, usage=parse_usage(data.get("usage")), raw=raw)

    async def stream(self, op: Operation, target: Target, body: Body) -> OpenAIChunkStream:
        if op == "embeddings":
            raise InvalidRequest("embeddings cannot be streamed; remove `stream` from the request")
        url, azure = self._endpoint(target, op)
        payload = dict(self.outgoing(op, target, body))
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

    async def responses_stream(self, target: Target, body: Body) -> ResponsesEventStream:
        """A streaming call to the upstream's own /v1/responses: its typed events, parsed."""
        url, azure = self._endpoint(target, "responses")
        payload = dict(body, model=target.model, stream=True)
        resp = await self._open_stream(url, target, azure, payload)
        stream = ResponsesEventStream(resp, target)
        await stream.prime()
        return stream

    async def _open_stream(
        self, url: str, target: Target, azure: bool, payload: Body
    ) -> UpstreamResponse:
        resp = await open_event_stream(
            self._client, target, url, orjson.dumps(payload), self._headers(target, azure), self._stream_timeout
        )
        if resp.content_type == "application/json":
            # The upstream ignored `stream`: refuse rather than relay an empty stream.
            resp.release()
            raise invalid_response(target, "a JSON body instead of an event stream")
        return resp


class OpenAIChunkStream(UpstreamChunkStream):
    """Chunks of one upstream SSE response, ending at `data: [DONE]` (or a clean end of body).

    Two ways to read it: iteration gives parsed chunk dicts; `frames()` gives SSE frames built
    from the upstream's own bytes, for a relay to an OpenAI-speaking client (no re-encoding).
    Both account usage and raise mid-stream errors the same way."""

    def __init__(self, resp: UpstreamResponse, target: Target) -> None:
        super().__init__(resp, target)
        self._src: AsyncGenerator[list[bytes], None] | None = None
        self._rest: list[bytes] = []  # payloads of the current upstream read not handed out yet
        self._head_raw: list[bytes] = []
        self._frame_gen: AsyncGenerator[tuple[bytes, int], None] | None = None

    async def _reads(self) -> AsyncGenerator[list[bytes], None]:
        """The event payloads of each upstream read (one list per read, never empty)."""
        decoder = SSEDecoder()
        try:
            async for raw in self._resp.chunks():
                out: list[bytes] = []
                for _event, data in decoder.feed(raw):
                    if data == b"[DONE]":
                        self._finished = True
                        if out:
                            yield out
                        return
                    out.append(data)
                if out:
                    yield out
            tail = [data for _event, data in decoder.close() if data != b"[DONE]"]
            self._finished = True
            if tail:
                yield tail
        except TRANSPORT_ERRORS as exc:
            raise transport_failure(self._target, exc) from exc
        finally:
            self._release()

    async def _chunks(self) -> AsyncGenerator[Body, None]:
        if self._src is None:
            self._src = self._reads()
        priming = self._gen is None and self._frame_gen is None
        async for batch in self._src:
            self._rest = batch
            while self._rest:
                data = self._rest.pop(0)
                chunk = self._chunk(data)
                if priming:  # keep the first payload's bytes for frames()
                    self._head_raw, priming = [data], False
                yield chunk

    def frames(self, strip_usage: bool) -> AsyncGenerator[tuple[bytes, int], None]:
        """The stream as OpenAI SSE frames for an OpenAI-speaking client, one (bytes, number of
        content chunks) per upstream read, forwarding the upstream's own bytes. Usage and
        mid-stream errors are handled exactly as iteration does; with `strip_usage` the frames
        are those openai_frames would send a client that did not ask for usage (no usage chunk,
        no `usage` fields). Use either this or iteration on a stream, not both."""
        if self._frame_gen is None:
            self._frame_gen = self._iterate_frames(strip_usage)
        return self._frame_gen

    async def _iterate_frames(self, strip_usage: bool) -> AsyncGenerator[tuple[bytes, int], None]:
        if self._head:  # primed: the first payload was read already (and parsed: parse it again)
            self._head.clear()
            batch, self._rest = self._head_raw + self._rest, []
            out, content, failure = self._read_frames(batch, strip_usage)
            if out:
                yield out, content
            if failure is not None:
                raise failure
        if self._src is None:
            self._src = self._reads()
        async for batch in self._src:
            out, content, failure = self._read_frames(batch, strip_usage)
            if out:
                yield out, content
            if failure is not None:
                raise failure

    def _read_frames(self, batch: list[bytes], strip_usage: bool) -> tuple[bytes, int, UpstreamFailure | None]:
        """Frames of one read. Fast path: scans of the joined bytes show there is no error and no
        usage beyond `"usage":null` fields (cut when stripping) and one usage chunk per frame
        that says so, which alone is parsed; anything else goes frame by frame (parse, re-encode)."""
        for data in batch:
            if data[:1] != b"{" or data[-1:] != b"}":
                return self._parsed_frames(batch, strip_usage)
        joined = b"data: " + b"\n\ndata: ".join(batch) + b"\n\n"
        if b'"error"' in joined or (b'"arguments"' in joined and OBJECT_ARGUMENTS.search(joined)):
            return self._parsed_frames(batch, strip_usage)  # (arguments as objects are re-encoded as text)
        n_usage = joined.count(b'"usage"')
        if n_usage:
            n_null = joined.count(b'"usage":null')
            if n_usage != n_null + joined.count(b'"usage":{'):
                return self._parsed_frames(batch, strip_usage)
            if n_usage != n_null:  # the usage chunk(s): parse those only
                last = batch[-1]
                if n_usage == n_null + 1 and b'"usage":{' in last:  # the usual one, last of its read
                    kept = batch[:-1] + self._usage_frame(last, strip_usage)
                else:
                    kept = []
                    for data in batch:
                        kept += self._usage_frame(data, strip_usage) if b'"usage":{' in data else (data,)
                batch = kept
                joined = b"data: " + b"\n\ndata: ".join(batch) + b"\n\n" if batch else b""
            if strip_usage and n_null:
                cut = joined.replace(b',"usage":null', b"")
                if len(joined) - len(cut) != 13 * n_null:  # a null not after a comma: go slowly
                    return self._parsed_frames(batch, strip_usage)
                joined = cut
        return joined, len(batch) - joined.count(b'"choices":[]'), None

    def _usage_frame(self, data: bytes, strip_usage: bool) -> list[bytes]:
        """A payload holding usage, read (the stream's usage is kept); what the client gets of it."""
        chunk = self._chunk(data)
        if not strip_usage:
            return [data]
        if not chunk.get("choices"):
            return []
        chunk.pop("usage", None)
        return [orjson.dumps(chunk)]

    def _parsed_frames(self, batch: list[bytes], strip_usage: bool) -> tuple[bytes, int, UpstreamFailure | None]:
        """Frame by frame, as openai_frames does; a failure comes back with the frames before it."""
        out: list[bytes] = []
        content = 0
        for data in batch:
            try:
                chunk = self._chunk(data)
            except UpstreamFailure as failure:
                return b"".join(out), content, failure
            if chunk.get("choices"):
                content += 1
                if strip_usage:
                    chunk.pop("usage", None)
            elif strip_usage and "usage" in chunk:
                continue
            out.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
        return b"".join(out), content, None

    async def aclose(self) -> None:
        if self._frame_gen is not None:
            await self._frame_gen.aclose()
        await super().aclose()
        if self._src is not None:
            await self._src.aclose()

    def _chunk(self, data: bytes) -> Body:
        chunk = event_object(self._target, data)
        if "error" in chunk and not chunk.get("choices"):
            err = chunk["error"]
            message = err.get("message") if isinstance(err, dict) else str(err)
            raise UpstreamFailure(
                str(message or "upstream error mid-stream"), status=None, retryable=True, body=chunk
            )
        usage = chunk.get("usage")
        if usage:
            self._usage = parse_usage(usage) or self._usage
        string_answer_arguments(chunk)  # arguments sent as an object (Ollama) become JSON text
        return chunk
