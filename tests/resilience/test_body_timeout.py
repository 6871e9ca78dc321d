"""A request's body cannot stall a connection for good: once its head is read, a body that goes
SHIELDES_BODY_TIMEOUT without a byte is answered 408 `request_timeout` in the route's own error
shape and the connection closed, on the model API's hot routes (the node's own HTTP front) as on
aiohttp's (the Gemini API, media uploads); nothing reaches an upstream, nothing is left in
flight. A body whose bytes keep coming, however slowly, is read whole."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest

from tests.resilience.live_node import Live, live_node

TIMEOUT = 0.5  # the node's body timeout here (60 s by default)


@pytest.fixture(scope="module")
def live(pg_server: str) -> Iterator[Live]:
    with live_node(pg_server, body_timeout=TIMEOUT, upstream_retries=0) as node:
        yield node


def read_all(s: socket.socket) -> bytes:
    """Everything the node sends until it closes the connection (the socket's timeout bounds it)."""
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def head(live: Live, path: str, length: int, ctype: str = "application/json") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\nAuthorization: Bearer {live.secret}\r\n"
            f"x-api-key: {live.secret}\r\nx-goog-api-key: {live.secret}\r\nContent-Length: {length}\r\n\r\n").encode()


CHAT = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
MESSAGES = json.dumps({"model": "claude-3-5-haiku-latest", "max_tokens": 5,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
GEMINI = json.dumps({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}).encode()
FORM = (b"--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--b\r\nContent-Disposition: "
        b"form-data; name=\"file\"; filename=\"a.mp3\"\r\nContent-Type: audio/mpeg\r\n\r\n" + b"\0" * 64
        + b"\r\n--b--\r\n")


def message_of(shape: str, body: bytes) -> str:
    data = json.loads(body)
    if shape == "anthropic":
        assert data["type"] == "error" and data["error"]["code"] == "request_timeout", data
        return str(data["error"]["message"])
    if shape == "google":
        assert data["error"]["code"] == 408, data
        return str(data["error"]["message"])
    assert data["error"]["code"] == "request_timeout", data
    return str(data["error"]["message"])


@pytest.mark.parametrize(("path", "body", "ctype", "shape"), [
    ("/v1/chat/completions", CHAT, "application/json", "openai"),  # the front's
    ("/v1/messages", MESSAGES, "application/json", "anthropic"),  # the front's
    ("/v1beta/models/gpt-4o-mini:generateContent", GEMINI, "application/json", "google"),  # aiohttp's
    ("/v1/audio/transcriptions", FORM, "multipart/form-data; boundary=b", "openai"),  # aiohttp's, an upload
], ids=["chat", "messages", "gemini", "upload"])
def test_a_stalled_body_is_refused_in_the_routes_shape(live: Live, path: str, body: bytes, ctype: str,
                                                       shape: str) -> None:
    upstream = live.harness.upstream
    before = len(upstream.requests)
    with socket.create_connection(("127.0.0.1", live.port), timeout=15) as s:
        s.sendall(head(live, path, len(body), ctype) + body[:10])  # then nothing more
        reply = read_all(s)  # the node closes the connection
    status, _, rest = reply.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 408"), reply[:400]
    assert b"no byte of the request's body arrived" in rest
    assert "keep coming" in message_of(shape, rest)
    assert len(upstream.requests) == before, "nothing reached an upstream"
    assert live.harness.node.in_flight.count == 0, "nothing is left in flight"


def test_a_slow_body_whose_bytes_keep_coming_is_read_whole(live: Live) -> None:
    """A byte every tenth of the timeout, for twice the timeout in all: the silence is bounded, not
    the upload's length (on the front's routes as on aiohttp's)."""
    for path, body in (("/v1/chat/completions", CHAT), ("/v1beta/models/gpt-4o-mini:generateContent", GEMINI)):
        with socket.create_connection(("127.0.0.1", live.port), timeout=15) as s:
            s.sendall(head(live, path, len(body)) + body[:-20])
            stop = threading.Event()
            for i in range(20):
                if stop.wait(TIMEOUT / 10):
                    break
                s.sendall(body[len(body) - 20 + i:len(body) - 19 + i])
            assert s.recv(65536).startswith(b"HTTP/1.1 200")

