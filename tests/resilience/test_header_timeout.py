"""Slow clients cannot hold a node's connections open forever: a request's line and headers must
arrive within SHIELDES_HEADER_TIMEOUT, however slowly they trickle, on the model API's hot routes
(the node's own HTTP front) as on every other route (aiohttp's). An idle keep-alive connection
between requests, and a slow body, are not affected."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.resilience.live_node import Live, live_node

TIMEOUT = 0.5  # the node's header timeout here (30 s by default)


@pytest.fixture(scope="module")
def live(pg_server: str) -> Iterator[Live]:
    with live_node(pg_server, header_timeout=TIMEOUT, upstream_retries=0) as node:
        yield node


def connect(live: Live) -> socket.socket:
    return socket.create_connection(("127.0.0.1", live.port), timeout=15)


def read_all(s: socket.socket) -> bytes:
    """Everything the node sends until it closes the connection (the socket's timeout bounds it)."""
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def refused_late(reply: bytes) -> None:
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), reply[:300]
    error = json.loads(body)["error"]
    assert error["code"] == "request_timeout"
    assert "send them whole" in error["message"]


@pytest.mark.parametrize("start", [
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n",  # the front's
    b"GET /v1/models HTTP/1.1\r\nHost: x\r\n",  # aiohttp's
], ids=["hot-route", "other-route"])
def test_a_trickled_head_is_refused_at_the_timeout(live: Live, start: bytes) -> None:
    s = connect(live)
    s.sendall(start)
    stop = threading.Event()

    def trickle() -> None:  # a header byte at a time: bytes arriving do not extend the bound
        while not stop.wait(0.05):
            with contextlib.suppress(OSError):
                s.sendall(b"X")

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    began = time.monotonic()
    try:
        reply = read_all(s)
    finally:
        stop.set()
        t.join()
        s.close()
    refused_late(reply)
    assert time.monotonic() - began < TIMEOUT + 5


def test_a_connection_that_sends_nothing_is_closed(live: Live) -> None:
    with connect(live) as s:
        refused_late(read_all(s))


def test_a_slow_head_after_a_keep_alive_request_is_refused_and_an_idle_one_is_not(live: Live) -> None:
    request = (b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + live.secret.encode() + b"\r\n\r\n")
    chat = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
    hot = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Authorization: Bearer " + live.secret.encode() + b"\r\nContent-Length: " + str(len(chat)).encode()
           + b"\r\n\r\n" + chat)
    with connect(live) as a, connect(live) as b:
        a.sendall(hot)
        assert a.recv(65536).startswith(b"HTTP/1.1 200"), "the first request is answered"
        b.sendall(request)
        assert b.recv(65536).startswith(b"HTTP/1.1 200")
        # both idle now; a connection opened after them is refused at its timeout, by which time
        # both have been idle longer than that
        with connect(live) as c:
            refused_late(read_all(c))
        a.sendall(hot)
        assert a.recv(65536).startswith(b"HTTP/1.1 200"), "an idle keep-alive connection is kept"
        b.sendall(request)
        assert b.recv(65536).startswith(b"HTTP/1.1 200")
        # a later request's head is bounded too, on either route
        a.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        b.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n")
        refused_late(read_all(a))
        refused_late(read_all(b))


def test_a_slow_body_is_not_cut_by_the_header_timeout(live: Live) -> None:
    """Only the head is timed: a body that takes longer than the timeout (a large upload on a slow
    link) is read whole, on the front's routes as on aiohttp's."""
    chat = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
    gemini = json.dumps({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}).encode()
    for path, body in (("/v1/chat/completions", chat), ("/v1beta/models/gpt-4o-mini:generateContent", gemini)):
        with connect(live) as s, connect(live) as late:
            s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: "
                      f"Bearer {live.secret}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:5])
            refused_late(read_all(late))  # opened after the head went out: the timeout has passed since
            s.sendall(body[5:])
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
