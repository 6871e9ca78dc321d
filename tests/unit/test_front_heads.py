"""A request's head at the front (gateway/front.py): what the handler sees of its headers (every
one, in order, duplicates and case kept, values as the parser gives them), and the answer to each
hostile head: smuggling shapes, obs-fold, bad bytes, and headers over 64 KiB together, refused
exactly at the limit however the head is cut into reads. In process, on the connection state
machine of test_front_splits."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httptools
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from shieldes.gateway.front_connection import MAX_HEAD
from tests.unit.test_front_splits import answered, connect, feed, pieces_of


async def headers_of(request: web.Request) -> web.StreamResponse:
    await request.read()
    seen = {"all": [[k, v] for k, v in request.headers.items()], "x-a": request.headers.getall("X-A", [])}
    return web.Response(body=json.dumps(seen).encode(), content_type="application/json")


class _Answers:
    """Collects (status, body) of each answer parsed off the bytes the front wrote."""

    def __init__(self, into: list[tuple[int, bytes]]) -> None:
        self.into = into
        self.body = bytearray()
        self.parser: Any = None

    def on_status(self, status: bytes) -> None:
        self.status = status

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.into.append((self.parser.get_status_code(), bytes(self.body)))
        self.body = bytearray()


async def _run(pieces: list[bytes]) -> tuple[list[tuple[int, bytes]], bool, bool]:
    """([(status, body)] the front answered, whether it handed the connection to aiohttp's side,
    whether it closed the connection)."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", headers_of)
    conn, transport, elsewhere = connect(app)
    for piece in pieces:
        await feed(conn, transport, piece)
    await answered(conn)
    answers: list[tuple[int, bytes]] = []
    sink = _Answers(answers)
    parser = sink.parser = httptools.HttpResponseParser(sink)
    parser.feed_data(bytes(transport.out))
    return answers, bool(elsewhere.got), transport.closed


def answer(data: bytes | list[bytes]) -> tuple[list[tuple[int, bytes]], bool, bool]:
    return asyncio.run(_run(data if isinstance(data, list) else [data]))


HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"


@pytest.mark.parametrize("head", [
    b"Content-Length: 2\r\nContent-Length: 2\r\n",  # a duplicate Content-Length
    b"Content-Length: 2\r\nContent-Length: 3\r\n",
    b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n",  # both framings
    b"Transfer-Encoding: chunked, gzip\r\n",  # chunked not last
    b"X-A: one\r\n two\r\nContent-Length: 2\r\n",  # obs-fold
    b"X-A: o\x00ne\r\nContent-Length: 2\r\n",  # a NUL, a control byte, a bare CR in a value
    b"X-A: o\x01ne\r\nContent-Length: 2\r\n",
    b"X-A: a\rb\r\nContent-Length: 2\r\n",
    b"X A: one\r\nContent-Length: 2\r\n",  # a name that is not a token
    b"X-\xe9: one\r\nContent-Length: 2\r\n",
    b"X-A : one\r\nContent-Length: 2\r\n",  # a space before the colon
    b"Bad Header\r\nContent-Length: 2\r\n",
])
def test_hostile_heads_are_refused_as_malformed_and_closed(head: bytes) -> None:
    answers, handed, closed = answer(HEAD + head + b"\r\n{}")
    assert [status for status, _ in answers] == [400] and not handed and closed
    assert json.loads(answers[0][1])["error"]["code"] == "malformed_request"


def test_line_feeds_alone_are_malformed() -> None:
    answers, _, closed = answer(b"POST /v1/chat/completions HTTP/1.1\nHost: gw\nContent-Length: 2\n\n{}")
    assert [status for status, _ in answers] == [400] and closed


def test_the_handler_gets_every_header_as_sent() -> None:
    head = (b"X-A: 1\r\nx-a: 2\r\nX-A:\t three\t \r\nX-Empty:\r\nX-Colon: a:b: c\r\n"
            b"X-Bytes: caf\xc3\xa9 \xff\r\nContent-Length: 2\r\n\r\n{}")
    answers, _, closed = answer(HEAD + head)
    assert [status for status, _ in answers] == [200] and not closed
    seen = json.loads(answers[0][1])
    assert seen["all"] == [["Host", "gw"], ["X-A", "1"], ["x-a", "2"], ["X-A", "three\t "], ["X-Empty", ""],
                           ["X-Colon", "a:b: c"], ["X-Bytes", "caf\u00e9 \udcff"], ["Content-Length", "2"]]
    assert seen["x-a"] == ["1", "2", "three\t "]
    bare = json.loads(answer(b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")[0][0][1])
    assert bare["all"] == [["Content-Length", "2"]]


def test_an_upgrade_is_handed_to_aiohttp() -> None:
    answers, handed, _ = answer(HEAD + b"Upgrade: h2c\r\nConnection: Upgrade\r\nContent-Length: 2\r\n\r\n{}")
    assert answers == [] and handed


def padded(total: int) -> bytes:
    """A head whose header names and values come to `total` bytes together (in X-Pad headers of at
    most 8000 bytes each: one header's bound is 8190)."""
    left = total - (len("Host") + len("gw") + len("Content-Length") + len("2"))
    pads = b""
    while left > 0:
        value = min(8000, left - len("X-Pad"))
        pads += b"X-Pad: " + b"p" * value + b"\r\n"
        left -= len("X-Pad") + value
    return HEAD + pads + b"Content-Length: 2\r\n\r\n{}"


def test_headers_of_64_kib_together_pass_and_one_byte_more_is_431() -> None:
    assert [s for s, _ in answer(padded(MAX_HEAD))[0]] == [200]
    answers, _, closed = answer(padded(MAX_HEAD + 1))
    assert [s for s, _ in answers] == [431] and closed
    assert json.loads(answers[0][1])["error"]["code"] == "headers_too_large"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, MAX_HEAD + 200), max_size=8, unique=True), st.integers(0, 1))
def test_the_limit_holds_however_the_head_is_cut(cuts: list[int], over: int) -> None:
    data = padded(MAX_HEAD + over)
    assert [s for s, _ in answer(pieces_of(data, cuts))[0]] == [431 if over else 200]


def test_a_head_over_the_limit_is_refused_before_it_ends() -> None:
    """Many headers sent without the end of the head: 431 as the read that crosses the limit ends,
    without waiting for the rest."""
    many = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"v" * 4000) for i in range(20))
    answers, _, closed = answer([HEAD + many[:30_000], many[30_000:]])
    assert [s for s, _ in answers] == [431] and closed


def test_the_limit_is_answered_before_a_malformed_header_after_it() -> None:
    over = b"X-Pad: " + b"p" * (MAX_HEAD + 10) + b"\r\n"
    # (a header reaches the front as the next one begins: X-B completes X-Pad)
    answers, _, _ = answer(HEAD + over + b"X-B: 1\r\nBad Header\r\n\r\n")
    assert [s for s, _ in answers] == [431]
    answers, _, _ = answer(HEAD + b"Bad Header\r\n" + over + b"\r\n")
    assert [s for s, _ in answers] == [400]


def test_a_keep_alive_client_that_calls_another_route_is_told_apart() -> None:
    """The route a client called last is recognized by its request line's start; anything else
    (a longer path that starts the same, another method) is read as before."""
    def hot(path: str) -> bytes:
        return f"POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{{}}".encode()

    again = [hot("/v1/chat/completions"), hot("/v1/chat/completions"), hot("/v1/chat/completions?x=1")]
    answers, handed, _ = answer(again)
    assert [s for s, _ in answers] == [200, 200, 200] and not handed
    for other in (hot("/v1/chat/completions/x"), b"GET /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n\r\n"):
        answers, handed, _ = answer([again[0], other])
        assert [s for s, _ in answers] == [200] and handed
