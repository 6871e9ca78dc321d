"""The node's HTTP/1.1 front (gateway/front.py) on the wire: hot routes answered by it, every other
request handed to aiohttp on the same connection, HTTP framing and refusals in the API's shape."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket

import httptools
import openai

from shieldes.gateway.observe import IN_FLIGHT
from tests.both_loops import event_loop_policy  # noqa: F401 (each test on asyncio and on uvloop)
from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import UPSTREAM_KEY, Harness, harness, wait_until

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there"}]}



class Answers:
    """Responses parsed off one raw connection, in order."""

    def __init__(self) -> None:
        self.done: list[tuple[int, dict[str, str], bytes]] = []
        self._parser = httptools.HttpResponseParser(self)
        self._headers: dict[str, str] = {}
        self._body = bytearray()

    def feed(self, data: bytes) -> None:
        self._parser.feed_data(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode().lower()] = value.decode()

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        self.done.append((self._parser.get_status_code(), self._headers, bytes(self._body)))
        self._headers, self._body = {}, bytearray()


class Raw:
    """One raw TCP connection to the node."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.answers = Answers()

    @classmethod
    async def open(cls, h: Harness) -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", h.node.port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answers_until(self, count: int) -> list[tuple[int, dict[str, str], bytes]]:
        """Read until `count` answers are complete (or the node closes the connection)."""
        while len(self.answers.done) < count:
            data = await asyncio.wait_for(self.reader.read(65536), 10)
            if not data:
                break
            self.answers.feed(data)
        return self.answers.done

    async def closed_by_node(self) -> bool:
        return await asyncio.wait_for(self.reader.read(65536), 10) == b""

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def post(path: str, key: str, body: object, extra: str = "") -> bytes:
    data = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n{extra}\r\n").encode() + data


def get(path: str, key: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {key}\r\n\r\n".encode()


async def test_hot_and_other_requests_share_one_keep_alive_connection(database_url: str) -> None:
    async with harness(database_url) as h:
        key = await h.create_key("app")
        await h.sync()
        raw = await Raw.open(h)
        await raw.send(post("/v1/chat/completions", key, CHAT))
        await raw.answers_until(1)
        await raw.send(post("/chat/completions?trace=1", key, CHAT))  # unversioned alias with a query
        await raw.answers_until(2)
        await raw.send(get("/v1/models", key))  # not hot: the connection goes to aiohttp
        await raw.answers_until(3)
        await raw.send(post("/v1/chat/completions", key, CHAT))  # aiohttp answers it now
        answers = await raw.answers_until(4)
        await raw.close()
        statuses = [a[0] for a in answers]
        assert statuses == [200, 200, 200, 200], answers
        first = json.loads(answers[0][2])
        assert first["choices"][0]["message"]["content"] == "Hello from the fake upstream"
        assert answers[0][1]["content-type"] == "application/json" and answers[0][1]["x-request-id"]
        assert "date" in answers[0][1] and "connection" not in answers[0][1]
        assert [m["id"] for m in json.loads(answers[2][2])["data"]]
        assert len(h.upstream.requests) == 3
        rows = await _request_log(h, 4)
        assert [r[0] for r in rows] == ["/v1/chat/completions", "/v1/chat/completions", "/v1/models",
                                        "/v1/chat/completions"]
        assert {r[1] for r in rows} == {"127.0.0.1"}


async def _request_log(h: Harness, count: int) -> list[tuple[object, ...]]:
    writer = h.node.request_log
    assert writer is not None
    await wait_until(lambda: writer.buffer.added >= count, timeout=10)
    assert await writer.flush_all(10)
    rows = h.sql("SELECT route, client_ip, status, path FROM request_log ORDER BY started_at")
    return [tuple(r) for r in rows]


async def test_framing_expect_continue_http10_and_pipelining(database_url: str) -> None:
    async with harness(database_url) as h:
        key = await h.create_key("app")
        await h.sync()
        # Expect: 100-continue: the interim answer, then the body, then the answer
        raw = await Raw.open(h)
        data = json.dumps(CHAT).encode()
        await raw.send((f"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {key}\r\n"
                        f"Content-Length: {len(data)}\r\nExpect: 100-continue\r\n\r\n").encode())
        interim = await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), 10)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        await raw.send(data)
        assert [a[0] for a in await raw.answers_until(1)] == [200]
        # a chunked request body
        head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {key}\r\n"
        await raw.send((head + "Transfer-Encoding: chunked\r\n\r\n").encode()
                       + b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
        assert [a[0] for a in await raw.answers_until(2)] == [200, 200]
        # two hot requests pipelined in one write: two answers, in order
        await raw.send(post("/v1/chat/completions", key, CHAT) + post("/v1/embeddings", key,
                                                                      {"model": "text-embedding-3-small",
                                                                       "input": "a b"}))
        answers = await raw.answers_until(4)
        assert [a[0] for a in answers] == [200, 200, 200, 200]
        assert "choices" in json.loads(answers[2][2]) and "data" in json.loads(answers[3][2])
        # a request that is not hot pipelined behind a hot one: refused, then the connection closes
        await raw.send(post("/v1/chat/completions", key, CHAT) + get("/v1/models", key))
        answers = await raw.answers_until(6)
        assert [a[0] for a in answers][4:] == [200, 400]
        error = json.loads(answers[5][2])["error"]
        assert error["code"] == "pipelining_not_supported" and "send it after" in error["message"]
        assert await raw.closed_by_node()
        await raw.close()

        # a request asking to upgrade (h2c, as `curl --http2` sends) goes to aiohttp, which answers it
        raw = await Raw.open(h)
        await raw.send(post("/v1/chat/completions", key, CHAT, extra="Connection: Upgrade, HTTP2-Settings\r\n"
                            "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"))
        answers = await raw.answers_until(1)
        assert answers[0][0] == 200 and json.loads(answers[0][2])["choices"], answers
        await raw.close()

        # HTTP/1.0: the answer, then the node closes; a stream is sent unchunked
        raw = await Raw.open(h)
        body = json.dumps(dict(CHAT, stream=True)).encode()
        await raw.send((f"POST /v1/chat/completions HTTP/1.0\r\nAuthorization: Bearer {key}\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
        data = b""
        while chunk := await asyncio.wait_for(raw.reader.read(65536), 10):
            data += chunk
        head_bytes, _, stream = data.partition(b"\r\n\r\n")
        assert head_bytes.startswith(b"HTTP/1.1 200") and b"Connection: close" in head_bytes
        assert b"Transfer-Encoding" not in head_bytes
        assert stream.endswith(b"data: [DONE]\n\n") and b"Hello" in stream
        await raw.close()


async def test_refusals_are_api_shaped_and_close_the_connection(database_url: str) -> None:
    async with harness(database_url, max_body_bytes=10_000) as h:
        key = await h.create_key("app")
        await h.sync()
        big = dict(CHAT, messages=[{"role": "user", "content": "x" * 20_000}])
        # declared too large: refused before the body is read
        raw = await Raw.open(h)
        await raw.send(post("/v1/chat/completions", key, big))
        answers = await raw.answers_until(1)
        assert answers[0][0] == 413 and json.loads(answers[0][2])["error"]["code"] == "request_too_large"
        assert answers[0][1]["connection"] == "close"
        await raw.close()
        # too large in chunks (no length declared): 413 on the Messages route in Anthropic's shape
        raw = await Raw.open(h)
        data = json.dumps({"model": "claude-3-5-haiku-latest", "max_tokens": 10, **big}).encode()
        await raw.send((f"POST /v1/messages HTTP/1.1\r\nHost: gw\r\nx-api-key: {key}\r\n"
                        "anthropic-version: 2023-06-01\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
                       + b"".join(b"%x\r\n%s\r\n" % (len(data[i:i + 4096]), data[i:i + 4096])
                                  for i in range(0, len(data), 4096)) + b"0\r\n\r\n")
        answers = await raw.answers_until(1)
        assert answers[0][0] == 413
        shaped = json.loads(answers[0][2])
        assert shaped["type"] == "error" and shaped["error"]["type"] == "request_too_large"
        await raw.close()
        # malformed HTTP: a 400 in OpenAI's shape, then the node closes
        raw = await Raw.open(h)
        await raw.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nBad Header\r\n\r\n")
        answers = await raw.answers_until(1)
        assert answers[0][0] == 400
        assert json.loads(answers[0][2])["error"]["code"] == "malformed_request"
        refusals = {answers[0][1]["x-request-id"]: ("POST", 400, json.loads(answers[0][2])["error"])}
        assert await raw.closed_by_node()
        await raw.close()
        # headers too large together: 431
        raw = await Raw.open(h)
        many = "".join(f"X-Filler-{i}: {'v' * 4000}\r\n" for i in range(20))
        await raw.send(post("/v1/chat/completions", key, CHAT, extra=many))
        answers = await raw.answers_until(1)
        assert answers[0][0] == 431 and json.loads(answers[0][2])["error"]["code"] == "headers_too_large"
        refusals[answers[0][1]["x-request-id"]] = ("POST", 431, json.loads(answers[0][2])["error"])
        await raw.close()
        # a request line too long on a path aiohttp answers: its refusal, as the front's
        raw = await Raw.open(h)
        await raw.send(f"GET /v1/models?q={'x' * 9000} HTTP/1.1\r\nHost: gw\r\n\r\n".encode())
        answers = await raw.answers_until(1)
        assert answers[0][0] == 400 and "over 8190 bytes" in json.loads(answers[0][2])["error"]["message"]
        refusals[answers[0][1]["x-request-id"]] = ("UNKNOWN", 400, json.loads(answers[0][2])["error"])  # unread
        await raw.close()
        # a compressed body is read as aiohttp reads it; a bomb is too large; an unknown encoding is refused
        data = json.dumps(CHAT).encode()
        for encoding, sent, status in (("gzip", gzip.compress(data), 200),
                                       ("gzip", gzip.compress(b" " * 50_000 + data), 413),
                                       ("br", data, 400)):
            raw = await Raw.open(h)
            await raw.send((f"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {key}\r\n"
                            f"Content-Encoding: {encoding}\r\nContent-Length: {len(sent)}\r\n\r\n").encode() + sent)
            answers = await raw.answers_until(1)
            assert answers[0][0] == status, (encoding, answers)
            await raw.close()
        assert len(h.upstream.requests) == 1
        h.upstream.requests.clear()
        # nothing of these reached the upstream
        assert h.upstream.requests == []
        # and the node still answers SDK clients
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=key, max_retries=0)
        chat = await client.chat.completions.create(model="gpt-4o", messages=CHAT["messages"])  # type: ignore[arg-type]
        assert chat.choices[0].message.content == "Hello from the fake upstream"
        # each refusal before any handler has its row, under the request id its answer named
        writer = h.node.request_log
        assert writer is not None and await writer.flush_all(10)
        for rid, (method, status, error) in refusals.items():
            rows = h.sql("SELECT method, status, error_code, error_message, route, client_ip FROM request_log"
                         " WHERE request_id = %s", rid)
            assert rows == [(method, status, error["code"], error["message"], "unmatched", "127.0.0.1")], rid


async def test_stop_waits_for_a_hot_answer_in_flight(database_url: str) -> None:
    async with harness(database_url) as h:
        key = await h.create_key("app")
        await h.sync()
        h.upstream.inject("/v1/chat/completions", delay=0.3)
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=key, max_retries=0)
        call = asyncio.create_task(client.chat.completions.create(model="gpt-4o", messages=CHAT["messages"]))  # type: ignore[arg-type]
        await wait_until(lambda: len(h.upstream.requests) == 1)
        idle = await Raw.open(h)  # an idle keep-alive connection: closed at once by the stop
        await idle.send(post("/v1/chat/completions", key, CHAT))
        await wait_until(lambda: len(h.upstream.requests) == 2)
        await idle.answers_until(1)
        await h.node.stop()
        chat = await call
        assert chat.choices[0].message.content == "Hello from the fake upstream"
        assert await idle.closed_by_node()
        await idle.close()


async def test_a_client_that_stops_reading_pauses_its_stream(database_url: str) -> None:
    up = FakeUpstream(completion_tokens=40_000, api_key=UPSTREAM_KEY, models=("gpt-4o",))
    async with harness(database_url, upstream=up) as h:
        key = await h.create_key("app")
        await h.sync()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", h.node.port))
        sock.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=sock)
        raw = Raw(reader, writer)
        await raw.send(post("/v1/chat/completions", key, dict(CHAT, stream=True, max_tokens=50_000)))
        front = h.node.http.front  # type: ignore[union-attr]
        assert front is not None
        await wait_until(lambda: any(c.paused for c in front.connections), timeout=20)
        assert h.node.http.app[IN_FLIGHT].count == 1  # type: ignore[union-attr]  # the stream waits
        data = b""
        while not data.endswith(b"0\r\n\r\n"):
            data += await asyncio.wait_for(reader.read(1 << 20), 20)
        assert data.count(b"data: {") > 40_000 // 4 and b"data: [DONE]" in data
        await raw.close()


async def test_a_failure_outside_the_handlers_still_gets_an_answer(database_url: str) -> None:
    async with harness(database_url) as h:
        key = await h.create_key("app")
        await h.sync()
        front = h.node.http.front  # type: ignore[union-attr]
        assert front is not None
        observe = front.observe

        async def broken(request: object, handler: object) -> object:
            raise RuntimeError("a bug outside the observer")

        front.observe = broken  # type: ignore[assignment]
        raw = await Raw.open(h)
        await raw.send(post("/v1/chat/completions", key, CHAT))
        answers = await raw.answers_until(1)
        assert answers[0][0] == 500 and json.loads(answers[0][2])["error"]["code"] == "internal_error"
        assert await raw.closed_by_node()
        await raw.close()
        front.observe = observe
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=key, max_retries=0)
        chat = await client.chat.completions.create(model="gpt-4o", messages=CHAT["messages"])  # type: ignore[arg-type]
        assert chat.choices[0].message.content == "Hello from the fake upstream"


async def test_large_bodies_whole_in_pieces_and_cut_short(database_url: str) -> None:
    """A coding agent's turn, larger than a read, reaches the upstream byte for byte on one
    keep-alive connection: sent in one write, then in pieces with the head apart; a body of 0
    bytes is refused in the API's shape as before; a client that sends fewer bytes than its
    Content-Length and closes gets nothing, and the node goes on serving."""
    async with harness(database_url) as h:
        key = await h.create_key("app")
        await h.sync()
        turn = dict(CHAT, messages=[{"role": "user", "content": "".join(f"line {i} of the file\n"
                                                                        for i in range(20_000))}])
        whole = post("/v1/chat/completions", key, turn)
        assert len(whole) > 400_000
        raw = await Raw.open(h)
        await raw.send(whole)
        assert [a[0] for a in await raw.answers_until(1)] == [200]
        head_end = whole.index(b"\r\n\r\n") + 4
        for piece in (whole[:head_end], whole[head_end:head_end + 1000], whole[head_end + 1000:300_000],
                      whole[300_000:]):
            await raw.send(piece)
        empty = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {key}\r\n"
                 "Content-Type: application/json\r\nContent-Length: 0\r\n\r\n").encode()
        await raw.send(empty)
        answers = await raw.answers_until(3)
        assert [a[0] for a in answers] == [200, 200, 400]
        assert json.loads(answers[2][2])["error"]["type"] == "invalid_request_error"
        await raw.close()
        assert [r.body["messages"] for r in h.upstream.requests_to("/v1/chat/completions")] == [turn["messages"]] * 2

        raw = await Raw.open(h)
        await raw.send(whole[:-5000])
        await raw.close()
        raw = await Raw.open(h)
        await raw.send(post("/v1/chat/completions", key, CHAT))
        assert [a[0] for a in await raw.answers_until(1)] == [200]
        await raw.close()
        assert len(h.upstream.requests_to("/v1/chat/completions")) == 3


async def test_bodies_of_many_connections_read_interleaved_reach_the_upstream_whole(database_url: str) -> None:
    """Every connection's reads land in the front's one buffer: 12 clients sending bodies of their
    own, 3 kB at a time in turn, each body reaches the upstream whole and as its client sent it."""
    async with harness(database_url) as h:
        key = await h.create_key("app")
        await h.sync()
        contents = [" ".join(f"c{i:02d}w{n}" for n in range(12_000)) for i in range(12)]
        requests = [post("/v1/chat/completions", key, {**CHAT, "messages": [{"role": "user", "content": text}]})
                    for text in contents]
        raws = [await Raw.open(h) for _ in requests]
        for at in range(0, max(map(len, requests)), 3000):
            for raw, data in zip(raws, requests, strict=True):
                if at < len(data):
                    await raw.send(data[at:at + 3000])
                    await asyncio.sleep(0)  # (the node reads between the clients' writes)
        answers = [await raw.answers_until(1) for raw in raws]
        for raw in raws:
            await raw.close()
        assert [a[0][0] for a in answers] == [200] * len(raws), answers
        got = sorted(r.body["messages"][0]["content"] for r in h.upstream.requests)
        assert got == sorted(contents)
