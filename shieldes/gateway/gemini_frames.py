"""The two forms of a Gemini API stream, and how one that breaks ends in each.

`alt=sse`: one `data:` event per GenerateContentResponse. Without it (Google's default): the
responses as the elements of one JSON array, written as they come. A stream the upstream breaks
after bytes went out ends with Google's error object, `{"error": {"code", "message", "status"}}`:
as a last `data:` event (google-genai raises a streamed object whose first key is `error` as its
APIError with that code and message), or as the array's last element, the array then closed."""

from __future__ import annotations

from collections.abc import Callable

import orjson

from shieldes.gateway.middleware import google_error
from shieldes.gateway.relay import STREAM_ERROR_CODE
from shieldes.providers.base import OVERLOADED, UpstreamFailure
from shieldes.providers.stream_failures import classify


class Framing:
    """Frames one answer's responses (their JSON payloads) for the client's form."""

    def __init__(self, sse: bool) -> None:
        self.sse = sse
        self._opened = False  # array form: the `[` is written

    def element(self, payload: bytes) -> bytes:
        if self.sse:
            return b"data: " + payload + b"\r\n\r\n"
        head = b",\r\n" if self._opened else b"["
        self._opened = True
        return head + payload

    def end(self) -> bytes:
        """What closes a stream that ended well."""
        if self.sse:
            return b""
        return b"]" if self._opened else b"[]"

    def error(self, failure: UpstreamFailure, scrub: Callable[[str], str]) -> bytes:
        """What ends a stream the upstream broke: Google's error object, the status the upstream
        gave (an error event's code), the one its words name (stream_failures: 503 for an
        overloaded upstream, 429 for a rate-limited one) or 502 for a cut, with the upstream's
        words scrubbed of keys."""
        status = failure.status if failure.status is not None and 400 <= failure.status <= 599 and \
            failure.status != OVERLOADED else classify(failure).status
        payload = orjson.dumps(google_error(status, f"upstream stream failed: {scrub(failure.message)}; "
                                                    "retry the request", STREAM_ERROR_CODE))  # its ErrorInfo
        return self.element(payload) + self.end()
