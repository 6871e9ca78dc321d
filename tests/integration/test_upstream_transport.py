"""The node's upstream HTTP/1.1 client against real sockets that answer byte for byte what each
case needs: framings, compression, dropped keep-alive connections, silence, back-pressure."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import gzip
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shieldes.doctor import probe
from shieldes.projections.state import Deployment
from shieldes.providers.transport import UpstreamClient, parse_target
from shieldes.providers.upstream_connection import (
    CallTimedOut,
    ConnectFailed,
    Disconnected,
    InvalidAnswer,
    InvalidTarget,
    Pieces,
    Timeouts,
    written,
)
from shieldes.secrets import Keyring
from tests.integration.test_gossip_tls import make_ca
from tests.ports import free_port


@pytest.fixture(params=["asyncio", "uvloop"], autouse=True)
def event_loop_policy(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoopPolicy:
    """Each case on both loops: nodes run on uvloop, whose transports differ in type."""
    if request.param == "uvloop":
        import uvloop

        return uvloop.EventLoopPolicy()
    return asyncio.DefaultEventLoopPolicy()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[bool]]
T = Timeouts(connect=5, total=10)


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    length = next(int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length"))
    return head, await reader.readexactly(length)


@asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[tuple[str, list[bytes], list[int]]]:
    """A server whose `handler(reader, writer, n)` answers the n-th request of the server and
    returns whether to keep the connection; yields (base URL, request heads, connections opened)."""
    heads: list[bytes] = []
    connections: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(connections))
        try:
            while True:
                try:
                    head, _body = await read_request(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                heads.append(head)
                if not await handler(reader, writer, len(heads)):
                    return
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1/x", heads, connections
    finally:
        server.close()


def answer(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


async def test_a_gzip_body_sent_in_chunks_is_decoded_and_the_connection_reused() -> None:
    packed = gzip.compress(b'{"ok": true}')

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n")
        for piece in (packed[:5], packed[5:]):
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        return True

    async with raw_server(handler) as (url, heads, conns), UpstreamClient() as client:
        for _ in range(2):
            resp = await client.post(url, b"{}", {"Content-Type": "application/json"}, T)
            assert resp.status == 200
            assert await resp.read() == b'{"ok": true}'
    assert len(conns) == 1
    assert b"accept-encoding" not in heads[0].lower()  # upstreams are not asked to compress


@pytest.mark.parametrize("size", [100, 16 * 1024 - 1, 16 * 1024, 73_000, 300_000])
async def test_a_body_over_16_kb_goes_beside_its_head_uncopied_and_arrives_whole(size: int) -> None:
    """A coding agent's 73 kB turn is written as the caller's buffer beside the head (uvloop
    writes both with one writev), not copied into a join with it; a small body is joined."""
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    head = b"POST /v1/x HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % size
    pieces = written(head, body)
    assert b"".join(pieces) == head + body
    if size >= 16 * 1024:
        assert pieces[0] is head and pieces[1] is body
    else:
        assert len(pieces) == 1
    got: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.append((await read_request(reader))[1])
        writer.write(answer(b"ok"))
        await writer.drain()
        writer.close()

    # the client's body with the gateway's fields added after it (top_level.appended): its pieces
    # written as they are, a view of the client's bytes among them
    added = Pieces(memoryview(body)[:-1], b",", b'"n": 1}')
    parts = written(head, added)
    assert b"".join(parts) == head + body[:-1] + b',"n": 1}'
    assert len(parts) == (4 if len(added) >= 16 * 1024 else 1)
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/x"
    try:
        async with UpstreamClient() as client:
            assert await (await client.post(url, body, {}, T)).read() == b"ok"
            assert await (await client.post(url, added, {}, T)).read() == b"ok"
    finally:
        server.close()
    assert got == [body, bytes(added)]


async def test_a_pooled_call_asks_asyncio_for_no_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """On Python 3.11 asyncio.get_running_loop() is a getpid syscall (its fork check): the pool's
    clock is time.monotonic, so a call on a kept-alive connection makes none."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(answer(b"ok"))
        return True

    callers: list[str] = []
    running = asyncio.get_running_loop

    def recorded() -> asyncio.AbstractEventLoop:
        callers.append(sys._getframe(1).f_globals["__name__"])
        return running()

    async with raw_server(handler) as (url, _heads, conns), UpstreamClient() as client:
        assert await (await client.post(url, b"{}", {}, T)).read() == b"ok"
        monkeypatch.setattr(asyncio, "get_running_loop", recorded)
        for _ in range(3):
            assert await (await client.post(url, b"{}", {}, T)).read() == b"ok"
        monkeypatch.undo()
    assert len(conns) == 1
    assert [c for c in callers if c.startswith("shieldes.")] == []


async def test_connections_a_burst_opened_are_closed_once_idle_past_the_keep_alive_time() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        await asyncio.sleep(0.05)  # slow enough that the burst's calls overlap
        writer.write(answer(b"ok"))
        return True

    async with raw_server(handler) as (url, _heads, conns), UpstreamClient(keepalive_timeout=1.0) as client:
        async def call() -> bytes:
            return await (await client.post(url, b"{}", {}, T)).read()

        assert await asyncio.gather(call(), call(), call()) == [b"ok"] * 3
        origin = parse_target(url)[0]
        burst = list(client._idle[origin])
        assert len(burst) == 3 and len(conns) == 3
        await asyncio.sleep(0.6)
        assert await call() == b"ok"  # steady traffic keeps reusing the most recent connection
        await asyncio.sleep(0.6)  # the two others are now idle past the keep-alive time (1 s)
        assert await call() == b"ok"
        assert [c.closed for c in burst] == [True, True, False]
        assert list(client._idle[origin]) == [burst[2]] and len(conns) == 3


async def test_a_body_that_ends_with_the_connection_is_read_whole_and_not_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
        await writer.drain()
        return False

    async with raw_server(handler) as (url, _heads, conns), UpstreamClient() as client:
        for _ in range(2):
            resp = await client.post(url, b"{}", {}, T)
            assert await resp.read() == b"all of it"
    assert len(conns) == 2


async def test_a_kept_alive_connection_the_upstream_dropped_is_replaced_without_a_failure() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        if n == 2:  # closes as the next request arrives, as an upstream's idle timeout racing it would
            return False
        writer.write(answer(b"%d" % n))
        return True

    async with raw_server(handler) as (url, heads, conns), UpstreamClient() as client:
        first = await client.post(url, b"{}", {}, T)
        assert await first.read() == b"1"
        second = await client.post(url, b"{}", {}, T)
        assert await second.read() == b"3"
    assert len(heads) == 3 and len(conns) == 2


async def test_a_stream_released_before_its_last_bytes_goes_back_to_the_pool_once_they_arrive() -> None:
    tail = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"e\r\ndata: [DONE]\n\n\r\n")
        await writer.drain()
        if n == 1:
            await tail.wait()
        writer.write(b"0\r\n\r\n")
        return True

    async with raw_server(handler) as (url, heads, conns), UpstreamClient() as client:
        stream = await client.post(url, b"{}", {}, Timeouts(connect=5, idle=5))
        assert await stream.read_chunk() == b"data: [DONE]\n\n"
        conn = stream._live()
        stream.release()  # the event stream said it is done; the chunked body is not complete yet
        assert not conn.complete
        tail.set()
        while not conn.complete:
            await asyncio.sleep(0.01)
        again = await client.post(url, b"{}", {}, Timeouts(connect=5, idle=5))
        assert await again.read() == b"data: [DONE]\n\n"
    assert len(heads) == 2 and len(conns) == 1


async def test_an_answer_cut_mid_body_fails_as_disconnected() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        await writer.drain()
        return False

    async with raw_server(handler) as (url, _heads, _conns), UpstreamClient() as client:
        resp = await client.post(url, b"{}", {}, T)
        with pytest.raises(Disconnected):
            await resp.read()


@pytest.mark.parametrize("stage", ["head", "body"])
async def test_a_cancelled_call_closes_its_connection_so_the_upstream_stops(stage: str) -> None:
    gone = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        if stage == "body":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart")
        await reader.read()  # an upstream still generating: it only notices the client left
        gone.set()
        return False

    async with raw_server(handler) as (url, _heads, _conns), UpstreamClient() as client:

        async def call() -> bytes:
            resp = await client.post(url, b"{}", {}, T)
            return await resp.read()

        task = asyncio.create_task(call())
        while not _heads:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with asyncio.timeout(2):
            await gone.wait()


async def test_silence_past_the_idle_timeout_fails_a_stream_and_past_the_total_a_call() -> None:
    hold = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await hold.wait()
        return False

    async with raw_server(handler) as (url, _heads, _conns), UpstreamClient() as client:
        loop = asyncio.get_running_loop()
        stream = await client.post(url, b"{}", {}, Timeouts(connect=5, idle=0.2))
        assert await stream.read_chunk() == b"first"
        started = loop.time()
        with pytest.raises(CallTimedOut, match=r"sent nothing for 0\.2 s"):
            await stream.read_chunk()
        assert 0.15 < loop.time() - started < 2
        call = await client.post(url, b"{}", {}, Timeouts(connect=5, total=0.3))
        with pytest.raises(CallTimedOut, match=r"within 0\.3 s"):
            await call.read()
        hold.set()


async def test_a_slow_reader_pauses_the_socket_instead_of_buffering_everything() -> None:
    piece = b"x" * 65536
    total = 64 * len(piece)  # 4 MiB

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
        for _ in range(64):
            writer.write(piece)
            await writer.drain()
        return True

    async with raw_server(handler) as (url, _heads, _conns), UpstreamClient() as client:
        resp = await client.post(url, b"{}", {}, Timeouts(connect=5, idle=5))
        conn = resp._live()
        got = 0
        first = await resp.read_chunk()
        got += len(first)
        for _ in range(50):  # let the server push as much as the socket takes
            await asyncio.sleep(0.01)
        assert conn._buffered <= 2 * (1 << 20)  # bounded read-ahead, not the whole answer
        while chunk := await resp.read_chunk():
            got += len(chunk)
        assert got == total
        resp.release()


async def test_an_interim_100_answer_is_skipped() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + answer(b"done"))
        return True

    async with raw_server(handler) as (url, _heads, _conns), UpstreamClient() as client:
        resp = await client.post(url, b"{}", {}, T)
        assert resp.status == 200
        assert await resp.read() == b"done"


async def test_what_is_not_http_fails_as_an_invalid_answer() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        return True

    async with raw_server(handler) as (url, _heads, _conns), UpstreamClient() as client:
        with pytest.raises(InvalidAnswer):
            await client.post(url, b"{}", {}, T)


async def test_a_header_with_a_line_break_is_never_sent() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(answer(b"{}"))
        return True

    async with raw_server(handler) as (url, heads, _conns), UpstreamClient() as client:
        with pytest.raises(InvalidTarget, match="line break"):
            await client.post(url, b"{}", {"X-Note": "a\r\nX-Injected: 1"}, T)
        resp = await client.post(url, b"{}", {"X-Note": "fine", "Host": "ignored", "Content-Length": "9"}, T)
        await resp.read()
    assert len(heads) == 1
    assert heads[0].count(b"Host:") == 1 and b"ignored" not in heads[0]
    assert b"Content-Length: 2\r\n" in heads[0] and b"X-Note: fine\r\n" in heads[0]


async def test_nothing_listening_fails_to_connect_with_the_reason() -> None:
    port = free_port()  # nothing listens on it
    async with UpstreamClient() as client:
        with pytest.raises(ConnectFailed) as info:
            await client.post(f"http://127.0.0.1:{port}/v1/x", b"{}", {}, T)
    assert info.value.os_error is not None


def server_tls_for(tmp_path: Path, name: str) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context with a certificate for `name` from a CA of its own; (context, CA file)."""
    ca_key, ca_cert = make_ca("proxy-test-ca")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (tmp_path / "srv.pem").write_bytes(cert.public_bytes(pem))
    (tmp_path / "srv.key").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    (tmp_path / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "srv.pem", tmp_path / "srv.key")
    return ctx, tmp_path / "ca.pem"


@asynccontextmanager
async def tls_server(tmp_path: Path, name: str = "localhost",
                     body: bytes = b"secure") -> AsyncIterator[tuple[int, Path]]:
    """An HTTPS server answering `body`, with a certificate for `name` from a CA of its own;
    yields (its port, the CA's PEM file)."""
    tls, ca_file = server_tls_for(tmp_path, name)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await read_request(reader)
                writer.write(answer(body))
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
    try:
        yield server.sockets[0].getsockname()[1], ca_file
    finally:
        server.close()


async def test_https_upstreams_are_verified_against_the_trust_store_and_ssl_cert_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with tls_server(tmp_path) as (port, ca_file):
        url = f"https://localhost:{port}/v1/x"
        async with UpstreamClient() as client:  # the system's trust store does not know this CA
            with pytest.raises(ConnectFailed, match=r"not trusted .*SSL_CERT_FILE"):
                await client.post(url, b"{}", {}, T)
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
        async with UpstreamClient() as client:
            for _ in range(2):
                resp = await client.post(url, b"{}", {}, T)
                assert await resp.read() == b"secure"
            assert len(client._idle[parse_target(url)[0]]) == 1  # one TLS connection, kept alive


@asynccontextmanager
async def egress_proxy(origin_port: int, auth: str | None = None) -> AsyncIterator[tuple[str, list[bytes]]]:
    """An HTTP proxy: CONNECT tunnels go to 127.0.0.1:`origin_port` whatever host they name, plain
    requests are answered by the proxy itself; `auth` is the Proxy-Authorization value it wants.
    Yields (proxy URL, the request line and proxy header of everything it was asked)."""
    asked: list[bytes] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        given = next((ln.split(b": ", 1)[1] for ln in lines if ln.lower().startswith(b"proxy-authorization")), None)
        asked.append(lines[0] + (b" auth=" + given if given else b""))
        if auth is not None and given != auth.encode():
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        if lines[0].startswith(b"CONNECT "):
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", origin_port)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            with contextlib.suppress(asyncio.CancelledError):  # the test ends with tunnels open
                await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
            return
        length = next((int(ln.split(b":")[1]) for ln in lines if ln.lower().startswith(b"content-length")), 0)
        await reader.readexactly(length)
        writer.write(answer(b"via the proxy"))
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", asked
    finally:
        server.close()


async def test_https_upstreams_go_through_a_connect_tunnel_and_http_ones_by_absolute_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = "Basic " + base64.b64encode(b"svc:pw").decode()
    async with tls_server(tmp_path, "api.example.test", b"secure, through the tunnel") as (port, ca_file):
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
        async with egress_proxy(port, auth=secret) as (proxy_url, asked):
            with_auth = proxy_url.replace("http://", "http://svc:pw@")
            env = {"https": with_auth, "http": with_auth}
            async with UpstreamClient(proxies=env) as client:
                for _ in range(2):
                    resp = await client.post("https://api.example.test/v1/x", b"{}", {}, T)
                    assert await resp.read() == b"secure, through the tunnel"
                resp = await client.post("http://plain.example.test:8000/v1/x", b"{}", {}, T)
                assert await resp.read() == b"via the proxy"
            async with UpstreamClient(proxies={"https": proxy_url}) as client:
                with pytest.raises(ConnectFailed, match=r"refused a tunnel .*407.*user and password"):
                    await client.post("https://api.example.test/v1/x", b"{}", {}, T)
    auth = b" auth=" + secret.encode()
    assert asked == [
        b"CONNECT api.example.test:443 HTTP/1.1" + auth,  # one tunnel, kept alive for the second call
        b"POST http://plain.example.test:8000/v1/x HTTP/1.1" + auth,
        b"CONNECT api.example.test:443 HTTP/1.1",
    ]


async def test_doctor_reaches_upstreams_through_the_same_proxy_as_the_node() -> None:
    dep = Deployment("corp-vllm", "openai", "http://vllm.example.test:8000/v1", "env:NOPE", ("m",), 1.0)
    async with egress_proxy(0) as (proxy_url, asked), aiohttp.ClientSession() as session:
        finding = await probe(session, dep, Keyring(None), {}, {"http": proxy_url})
    assert finding.ok, finding
    assert asked == [b"GET http://vllm.example.test:8000/v1/models HTTP/1.1"]


@pytest.mark.parametrize(
    ("url", "target", "host"),
    [
        ("https://api.openai.com/v1/chat/completions", b"/v1/chat/completions", b"api.openai.com"),
        ("http://127.0.0.1:8080/v1/x?api-version=2024-10-21", b"/v1/x?api-version=2024-10-21", b"127.0.0.1:8080"),
        ("https://h.example:443", b"/", b"h.example"),
        ("http://[::1]:9000/p", b"/p", b"[::1]:9000"),
        ("https://bedrock-runtime.us-east-1.amazonaws.com/model/a%3Ab/converse",
         b"/model/a%3Ab/converse", b"bedrock-runtime.us-east-1.amazonaws.com"),
        ("http://h/d\u00e9ploiement?q=\u00e9", b"/d%C3%A9ploiement?q=%C3%A9", b"h"),
    ],
)
def test_targets_keep_the_path_as_given(url: str, target: bytes, host: bytes) -> None:
    _origin, path, host_header = parse_target(url)
    assert (path, host_header) == (target, host)


@pytest.mark.parametrize("url", ["ftp://h/x", "http:///nohost", "http://h:99999/x", "not a url"])
def test_urls_that_cannot_be_called_are_refused(url: str) -> None:
    with pytest.raises(InvalidTarget, match="shieldes provider update"):
        parse_target(url)
