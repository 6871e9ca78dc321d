"""Fuzzing the HTTP surface with malformed input: never a 5xx, never a traceback, always the
OpenAI error shape and an x-request-id. The node runs in its own thread and event loop so
hypothesis can drive it with a plain blocking HTTP client."""

from __future__ import annotations

import asyncio
import http.client
import json
import random
import re
import socket
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.gateway_harness import Harness, harness
from tests.pool_jitter import POOL_JITTER

PATHS = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/messages",
    "/v1/models",
    "/health",
    "/ready",
    "/metrics",
    "/v1/nope",
    "/%ff%fe",
    "/v1/chat/completions?x=%C3%A9&y=%ff",
]


# An unknown response id is polled for this long before its 404 (the product's 2 s is for a row another
# node may still be writing: there is none here); the fuzz checks the 404's shape, not the wait
READ_WAIT = 0.2


class Running:
    def __init__(self, database_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.done: asyncio.Event | None = None
        self.h: Harness | None = None
        self.secret = ""
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(database_url),))

    async def _main(self, database_url: str) -> None:
        self.done = asyncio.Event()
        async with harness(database_url, max_body_bytes=64 * 1024, responses_read_wait=READ_WAIT) as h:
            self.secret = await h.create_key("fuzz", models=("gpt-4o", "claude-3-5-haiku-latest"), rpm=10**9)
            await h.sync()
            self.h = h
            self.ready.set()
            await self.done.wait()

    def stop(self) -> None:
        assert self.done is not None
        self.loop.call_soon_threadsafe(self.done.set)
        self.thread.join(30)
        self.loop.close()


def started(running: Running) -> Iterator[Running]:
    """`running`'s node, from its start until the test ends."""
    running.thread.start()
    assert running.ready.wait(60), "node did not start"
    yield running
    running.stop()


@pytest.fixture
def node(database_url: str) -> Iterator[Running]:
    yield from started(Running(database_url))


def send(
    port: int, method: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v.encode("latin-1", "replace"))
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = ["model", "messages", "stream", "max_tokens", "prompt", "input", "stream_options", "system"]


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["raw", "json", "shaped", "deep", "utf8", "chat"]))
    if kind == "chat":  # passes the gateway's own checks, so it reaches translation and the upstream
        message = st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "assistant", "system", "tool", "developer", "x"])},
            optional={
                "content": st.text(max_size=20) | st.lists(json_values, max_size=3),
                "tool_calls": json_values,
                "name": json_values,
                "tool_call_id": json_values,
            },
        )
        chat: dict[str, Any] = {
            "model": draw(st.sampled_from(["gpt-4o", "claude-3-5-haiku-latest"])),
            "messages": draw(st.lists(message, min_size=1, max_size=3)),
            "max_tokens": draw(st.integers(1, 50)),
        }
        for f in draw(
            st.lists(
                st.sampled_from(
                    [
                        "tools",
                        "tool_choice",
                        "temperature",
                        "stop",
                        "system",
                        "n",
                        "response_format",
                        "stream",
                    ]
                ),
                unique=True,
                max_size=3,
            )
        ):
            chat[f] = draw(json_values)
        return json.dumps(chat).encode()
    if kind == "raw":
        return draw(st.binary(max_size=200))
    if kind == "deep":
        depth = draw(st.integers(100, 5000))
        return b'{"model":' + b"[" * depth + b"]" * depth + b"}"
    if kind == "utf8":
        return b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "\xff\xfe\xc3"}]}'
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    body: dict[str, Any] = {}
    for f in draw(st.lists(st.sampled_from(FIELDS), unique=True, max_size=6)):
        body[f] = draw(json_values)
    if draw(st.booleans()):
        body["model"] = draw(
            st.sampled_from(["gpt-4o", "openai/gpt-4o", "claude-3-5-haiku-latest", "nope", "", "x" * 300])
        )
    return json.dumps(body).encode()


odd_headers = st.dictionaries(
    st.sampled_from(["Content-Type", "x-request-id", "Authorization", "x-api-key", "Accept", "X-Weird"]),
    st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=60),
    max_size=4,
)


@POOL_JITTER
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(PATHS),
    method=st.sampled_from(["POST", "GET", "PUT"]),
    body=bodies(),
    headers=odd_headers,
    authed=st.booleans(),
)
def test_no_5xx_and_no_traceback(
    node: Running, path: str, method: str, body: bytes, headers: dict[str, str], authed: bool
) -> None:
    assert node.h is not None
    if authed:
        headers = {**headers, "Authorization": f"Bearer {node.secret}"}
    status, resp_headers, payload = send(node.h.node.port, method, path, body, headers)
    assert status < 500, (status, payload[:300])
    assert b"Traceback" not in payload and b'File "' not in payload
    # Not valid HTTP either (e.g. a control byte in a header, on a route aiohttp serves): a JSON 400.
    assert resp_headers.get("x-request-id"), (status, resp_headers, payload[:300])
    if status >= 400:
        err = orjson.loads(payload)["error"]
        assert isinstance(err["message"], str) and err["message"] and "type" in err and "code" in err


def refused_request_id(port: int, raw: bytes) -> str:
    """The x-request-id of the answer to `raw`, bytes that are not a valid HTTP request."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(raw)
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = sock.recv(65536)
            assert chunk, got
            got += chunk
    head = got.partition(b"\r\n\r\n")[0].decode("latin-1")
    assert head.startswith("HTTP/1.1 4"), head
    found = re.search(r"(?im)^x-request-id: *(\S+)", head)
    assert found, head
    return found.group(1)


def test_request_ids_leave_the_process_random_alone(node: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node names its requests from its own generator: a request, answered by a handler or
    refused before one, draws nothing from the process-wide `random` a library or a test draws
    from (hypothesis warns when it moves while it draws), and each id is 96 bits in hex, none
    repeated. (A library's own draws, such as the connection pool's jitter, are not the node's.)"""
    assert node.h is not None
    port = node.h.node.port
    drawn: list[int] = []

    def counted(k: int) -> int:
        drawn.append(k)
        return random.Random().getrandbits(k)

    monkeypatch.setattr(random, "getrandbits", counted)
    ids = [send(port, "POST", path, body, {})[1]["x-request-id"]
           for path, body in [("/v1/chat/completions", b"{"), ("/v1/models", b""), ("/v1/nope", b"")]]
    ids.append(refused_request_id(port, b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: x\r\n\r\n"))
    assert not drawn, f"the process-wide random drew {drawn}"
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"[0-9a-f]{24}", i) for i in ids), ids


def test_huge_body_is_413(node: Running) -> None:
    assert node.h is not None
    status, _, payload = send(
        node.h.node.port,
        "POST",
        "/v1/chat/completions",
        b"x" * (128 * 1024),
        {"Authorization": f"Bearer {node.secret}"},
    )
    assert status == 413 and orjson.loads(payload)["error"]["code"] == "request_too_large"
