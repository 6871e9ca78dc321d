"""The front's connection state machine over any split of the byte stream: a connection that gets
its requests one byte at a time, or cut anywhere (inside the method, the path, a header, the body,
between pipelined requests), answers exactly as one that gets them in one read; a request that is
not hot hands the rest of the stream to aiohttp's side unchanged. In process, with a transport
that records what is written."""

from __future__ import annotations

import asyncio
import itertools
import re
from typing import Any

from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from shieldes.gateway.front import Front
from shieldes.gateway.front_connection import _Connection
from shieldes.gateway.middleware import RequestIds


class Recorder(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False
        self.protocol: Any = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 50000) if name == "peername" else default


class Elsewhere(asyncio.Protocol):
    """Stands for aiohttp's request handler: keeps what it is given."""

    def __init__(self) -> None:
        self.got = bytearray()

    def data_received(self, data: bytes) -> None:
        self.got += data


async def echo(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    return web.Response(body=request.path.encode() + b" " + body, content_type="text/plain")


async def observe(request: web.Request, handler: Any) -> web.StreamResponse:
    resp: web.StreamResponse = await handler(request)
    return resp


def post(path: str, body: bytes, chunked: bool = False) -> bytes:
    if chunked:
        half = len(body) // 2
        parts = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:half], body[half:]) if p)
        return f"POST {path} HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n".encode() + parts + b"0\r\n\r\n"
    return f"POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


DATE_HEADER = re.compile(rb"Date: [^\r\n]*\r\n")


def connect(app: web.Application, max_body: int = 10_000) -> tuple[_Connection, Recorder, Elsewhere]:
    """A front connection serving `app` (bodies up to `max_body` bytes), its transport and aiohttp's side."""
    elsewhere = Elsewhere()
    front = Front(app, lambda: elsewhere, observe, max_body=max_body, ids=RequestIds())
    transport = Recorder()
    conn = _Connection(front)
    conn.connection_made(transport)
    return conn, transport, elsewhere


def deliver(conn: _Connection, transport: Recorder, piece: bytes) -> None:
    """`piece` read as a transport reads for a buffered protocol: into the buffer the protocol
    gives, as much as it holds, then the protocol told how much landed; what is left of it goes
    to aiohttp's side if the connection was handed over meanwhile. The buffer is overwritten
    after each read, as the next read overwrites it, so a view kept of it shows."""
    while piece:
        if transport.protocol is not None:
            transport.protocol.data_received(piece)
            return
        buffer = conn.get_buffer(-1)
        n = min(len(buffer), len(piece))
        buffer[:n] = piece[:n]
        conn.buffer_updated(n)
        buffer[:n] = b"\xff" * n
        piece = piece[n:]


async def feed(conn: _Connection, transport: Recorder, piece: bytes) -> None:
    """`piece` to whichever side holds the connection now, then a few turns for answers to run."""
    deliver(conn, transport, piece)
    for _ in range(5):  # (each answer is a task on this loop)
        await asyncio.sleep(0)


async def answered(conn: _Connection) -> None:
    """Wait until every answer so far is out."""
    while conn._task is not None:
        await asyncio.sleep(0)


async def run(pieces: list[bytes], max_body: int = 10_000) -> tuple[bytes, bytes]:
    """(what the front wrote, what was handed to aiohttp's side) after feeding `pieces`."""
    app = web.Application()
    for path in ("/v1/chat/completions", "/v1/embeddings", "/embeddings"):
        app.router.add_post(path, echo)
    conn, transport, elsewhere = connect(app, max_body)
    for piece in pieces:
        if not piece:  # wait until every answer so far is out
            await answered(conn)
            continue
        await feed(conn, transport, piece)
    await answered(conn)
    if transport.protocol is None:
        conn._next()
        await answered(conn)
    # Every Date header masked: a run may cross a second boundary (two runs are compared)
    return DATE_HEADER.sub(b"Date: DATE\r\n", bytes(transport.out)), bytes(elsewhere.got)


HOT = (post("/v1/chat/completions", b'{"a": 1}') + post("/embeddings?x=1", b'{"b": 22}', chunked=True)
       + post("/v1/chat/completions", b""))
OTHER = b"GET /v1/models HTTP/1.1\r\nHost: gw\r\n\r\n" + post("/v1/chat/completions", b'{"after": "handoff"}')


def pieces_of(data: bytes, cuts: list[int]) -> list[bytes]:
    edges = [0, *sorted(c for c in cuts if 0 < c < len(data)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(1, len(HOT) - 1), max_size=12, unique=True))
def test_any_split_of_hot_requests_answers_as_one_read(cuts: list[int]) -> None:
    whole = asyncio.run(run([HOT]))
    assert asyncio.run(run(pieces_of(HOT, cuts))) == whole
    answers, handed = whole
    assert handed == b""
    assert answers.count(b"HTTP/1.1 200 OK") == 3  # pipelined in one read: answered in order
    assert answers.index(b'/v1/chat/completions {"a": 1}') < answers.index(b'/embeddings {"b": 22}')


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, len(HOT) - 1), max_size=6, unique=True),
       st.lists(st.integers(1, len(OTHER) - 1), max_size=6, unique=True))
def test_a_request_that_is_not_hot_hands_over_the_rest_unchanged(hot_cuts: list[int], cuts: list[int]) -> None:
    """After the hot answers, a GET arrives (cut anywhere): it and everything after it reach
    aiohttp's side byte for byte, whatever the cuts."""
    answers, handed = asyncio.run(run([*pieces_of(HOT, hot_cuts), b"", *pieces_of(OTHER, cuts)]))
    assert handed == OTHER
    assert answers == asyncio.run(run([HOT]))[0]


def test_one_byte_at_a_time() -> None:
    data = HOT + OTHER
    answers, handed = asyncio.run(run([data[i:i + 1] for i in range(len(data))]))
    assert answers == asyncio.run(run([HOT]))[0]
    assert handed == OTHER


# Bodies larger than a read (the front's buffer holds READ_BUFFER bytes), each different at every
# byte, pipelined on one keep-alive connection with an empty one and a chunked one between them.
LARGE = bytes(range(256)) * 1200 + b"end"  # 307,203 bytes: two reads at least, whole
LARGE_HOT = (post("/v1/chat/completions", LARGE) + post("/v1/embeddings", b"") + post("/embeddings", LARGE[:70_001])
             + post("/v1/chat/completions", LARGE[1:50_000], chunked=True) + post("/v1/chat/completions", LARGE[::-1]))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, len(LARGE_HOT) - 1), max_size=10, unique=True))
def test_large_bodies_over_many_reads_reach_the_handler_whole(cuts: list[int]) -> None:
    """Each read lands in the front's one buffer, which the next read overwrites (here with 0xff
    at once): every body the handler gets is the one sent, however the stream is cut."""
    answers, handed = asyncio.run(run(pieces_of(LARGE_HOT, cuts), max_body=400_000))
    assert handed == b""
    bodies = [b"/v1/chat/completions " + LARGE, b"/v1/embeddings ", b"/embeddings " + LARGE[:70_001],
              b"/v1/chat/completions " + LARGE[1:50_000], b"/v1/chat/completions " + LARGE[::-1]]
    at = 0
    for body in bodies:
        found = answers.find(b"Content-Length: %d\r\n" % len(body), at)
        assert found >= 0
        at = answers.index(b"\r\n\r\n", found) + 4
        assert answers[at:at + len(body)] == body
        at += len(body)
    assert at == len(answers)


def test_a_head_cut_across_reads_is_handed_over_as_sent() -> None:
    """A request asking to upgrade is handed to aiohttp's side with its head as sent, the parts
    of it that came in earlier reads (long overwritten in the buffer) included."""
    data = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nX-Long: " + b"v" * 3000
            + b"\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nContent-Length: 2\r\n\r\n{}")
    answers, handed = asyncio.run(run(pieces_of(data, [40, 1000, 2000, 3050])))
    assert answers == b"" and handed == data


def test_a_client_that_closes_before_its_body_ends_gets_no_answer() -> None:
    """Fewer bytes than Content-Length, then the close: no handler runs, nothing is written, and
    what was read of the body is let go."""
    async def go() -> None:
        called: list[bytes] = []

        async def handler(request: web.Request) -> web.StreamResponse:
            called.append(await request.read())
            return web.Response(body=b"")

        app = web.Application()
        app.router.add_post("/v1/chat/completions", handler)
        conn, transport, _ = connect(app, max_body=400_000)
        await feed(conn, transport, post("/v1/chat/completions", LARGE)[:-100])
        conn.connection_lost(None)
        for _ in range(5):
            await asyncio.sleep(0)
        assert called == [] and transport.out == b"" and conn._body == [] and conn.closed
    asyncio.run(go())
