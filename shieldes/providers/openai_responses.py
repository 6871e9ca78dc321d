"""The event stream of an upstream's own /v1/responses (native mode): typed Responses events,
parsed, with the final response object and its usage kept as they go by."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from shieldes.providers.base import Body, Target, TokenUsage, UpstreamFailure
from shieldes.providers.http import TRANSPORT_ERRORS, event_object, transport_failure
from shieldes.providers.sse import SSEDecoder
from shieldes.providers.streams import UpstreamChunkStream
from shieldes.providers.transport import UpstreamResponse
from shieldes.responses.objects import ResponsesUsage, usage_from_responses

TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


class ResponsesEventStream(UpstreamChunkStream):
    """Iteration gives the upstream's event dicts. An `error` event as the very first event is
    raised as UpstreamFailure (the gateway may still try another deployment); later ones are
    passed on to the client as they are."""

    def __init__(self, resp: UpstreamResponse, target: Target) -> None:
        super().__init__(resp, target)
        self.final: Body | None = None
        self.responses_usage: ResponsesUsage | None = None
        self.last_sequence = -1
        self.snapshot: Body | None = None

    async def _chunks(self) -> AsyncGenerator[Body, None]:
        decoder = SSEDecoder()
        first = True
        try:
            while raw := await self._resp.read_chunk():
                for _event, data in decoder.feed(raw):
                    if data == b"[DONE]":
                        continue
                    event = self._event(data, first)
                    first = False
                    yield event
            for _event, data in decoder.close():
                if data != b"[DONE]":
                    yield self._event(data, first)
            self._finished = True
        except TRANSPORT_ERRORS as exc:
            raise transport_failure(self._target, exc) from exc
        finally:
            self._release()

    def _event(self, data: bytes, first: bool) -> Body:
        event = event_object(self._target, data)
        kind = event.get("type")
        if first and kind == "error":
            message = event.get("message") or (event.get("error") or {}).get("message") or "upstream error"
            raise UpstreamFailure(str(message), status=None, retryable=True, body=event)
        if isinstance(event.get("sequence_number"), int):
            self.last_sequence = event["sequence_number"]
        response = event.get("response")
        if isinstance(response, dict):
            self.snapshot = response
            if kind in TERMINAL:
                self.final = response
                usage = usage_from_responses(response.get("usage"))
                if usage is not None:
                    self.responses_usage = usage
                    self._usage = TokenUsage(usage.input_tokens, usage.output_tokens)
        return event
