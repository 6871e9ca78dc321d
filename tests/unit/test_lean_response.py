"""A JSON answer the front writes without aiohttp's response: the same bytes on the wire, and what
the observer and the error middleware read of it."""

from __future__ import annotations

from aiohttp import web

from shieldes.gateway.http1 import answer_bytes
from shieldes.gateway.lean_request import LeanResponse


def test_a_lean_answer_is_written_as_aiohttp_s_response_is() -> None:
    body = b'{"id":"chatcmpl-1","choices":[]}'
    headers = {"Content-Type": "application/json", "x-request-id": "rid-1", "x-ratelimit-limit-requests": "10"}
    lean = LeanResponse(body, dict(headers))
    full = web.Response(body=body, headers=headers)
    for keep_alive in (True, False):
        assert answer_bytes(lean, keep_alive, b"D") == answer_bytes(full, keep_alive, b"D")
    assert isinstance(lean, web.Response)
    assert (lean.status, lean.reason, lean.body, lean.prepared) == (200, "OK", body, False)
    lean.headers["x-request-id"] = "rid-2"  # (the error middleware names the request again)
    assert b"\r\nx-request-id: rid-2\r\n" in answer_bytes(lean, True, b"D")
