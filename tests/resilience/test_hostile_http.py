"""Hostile HTTP input on every route of a real node: fuzzed JSON (wrong types, deep nesting, huge
values), truncated and invalid UTF-8 bodies, oversized bodies, huge headers and slow clients.
Every answer is a clear OpenAI-shaped error or a success: no 5xx, no traceback, no secret — and no
secret in the logs, the metrics or the event log afterwards."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shieldes.secrets import hash_key
from tests.pool_jitter import POOL_JITTER
from tests.resilience.live_node import ADMIN_TOKEN, Live, live_node

POST_ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/messages", "/v1/responses",
               "/v1/responses/input_tokens")
GET_ROUTES = ("/v1/models", "/health", "/ready", "/metrics", "/admin/status", "/admin/keys", "/admin/usage")
MAX_BODY = 64 * 1024
FIELDS = ("model", "messages", "stream", "max_tokens", "max_completion_tokens", "input", "prompt",
          "stream_options", "system", "tools", "tool_choice", "stop", "temperature", "n", "instructions",
          "text", "store", "max_output_tokens", "reasoning", "metadata", "parallel_tool_calls")


@pytest.fixture(scope="module")
def live(pg_server: str) -> Iterator[Live]:
    with live_node(pg_server, max_body_bytes=MAX_BODY, upstream_retries=0) as node:
        yield node


def send(live: Live, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None, timeout: float = 15) -> tuple[int, bytes, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def check(live: Live, status: int, body: bytes, headers: dict[str, str], *, upstream_5xx: bool = False) -> None:
    """`upstream_5xx`: a body the gateway relays may crash the fake upstream (a random `stop` or `tools`
    value); the gateway then correctly answers 502 upstream_error. Nothing else may be a 5xx."""
    if upstream_5xx and status == 502:
        assert json.loads(body)["error"]["code"] == "upstream_error" and b"500" in body
    else:
        assert status < 500, (status, body[:500])
    text = body.decode("utf-8", "replace")
    assert "Traceback" not in text and 'File "' not in text
    for secret in live.secrets:
        assert secret not in text
    if status >= 400 and headers.get("content-type", "").startswith("application/json"):
        err = json.loads(body)["error"]
        assert isinstance(err["message"], str) and err["message"] and err["type"] and "code" in err


def auth(live: Live, which: int) -> dict[str, str]:
    return [{"Authorization": f"Bearer {live.secret}"}, {"x-api-key": live.secret}, {},
            {"Authorization": "Bearer sk-shd-" + "A" * 43}, {"Authorization": "Basic Zm9vOmJhcg=="},
            {"Authorization": f"Bearer {ADMIN_TOKEN}"}][which]


scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=30)
json_values = st.recursive(
    scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=15)
messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "tool", 7]),
                                           "content": json_values | st.text(max_size=40)}), max_size=3)
plausible = {
    "model": st.sampled_from(["gpt-4o-mini", "openai/gpt-4o-mini", "nope", "", "x" * 300, "a/b/c"]) | json_values,
    "messages": messages | json_values,
    "stream": st.booleans() | json_values,
    "max_tokens": st.integers(-5, 10) | json_values,
    "input": st.text(max_size=20) | json_values,
    "prompt": st.text(max_size=20) | json_values,
}
bodies = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6).flatmap(
    lambda base: st.fixed_dictionaries({k: v for k, v in plausible.items()}).map(lambda p: {**base, **p})
    | st.just(base)) | json_values


@POOL_JITTER
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(POST_ROUTES), body=bodies, who=st.integers(0, 5), cut=st.integers(0, 3),
       salt=st.binary(max_size=6))
def test_fuzzed_bodies_get_clear_errors(live: Live, path: str, body: Any, who: int, cut: int, salt: bytes) -> None:
    raw = json.dumps(body).encode()
    if cut == 1:
        raw = raw[: len(raw) // 2]  # truncated
    elif cut == 2:
        raw = raw[:3] + b"\xff\xfe" + salt + raw[3:]  # invalid UTF-8
    headers = {"Content-Type": "application/json", **auth(live, who)}
    if cut == 3:
        headers["Content-Type"] = "text/plain; charset=latin-1"
    check(live, *send(live, "POST", path, raw, headers), upstream_5xx=True)


@POOL_JITTER
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from((*GET_ROUTES, "/v1/nope", "/admin/", "/%00", "/v1/models?x=%ff")),
       method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]), who=st.integers(0, 5),
       junk=st.text(max_size=40))
def test_every_route_and_method_answers_cleanly(live: Live, path: str, method: str, who: int, junk: str) -> None:
    headers = {**auth(live, who), "x-request-id": "".join(c for c in junk if " " < c < "\x7f")[:40] or "r"}
    body = json.dumps({"junk": junk}).encode() if method != "GET" else None
    check(live, *send(live, method, path, body, headers))


def test_oversized_deep_and_odd_bodies(live: Live) -> None:
    h = {"Content-Type": "application/json", **auth(live, 0)}
    cases: list[tuple[bytes, int | None]] = [
        (b"{" + b'"a":' * 1 + b"[" * 100_000 + b"]" * 100_000 + b"}", None),  # very deep nesting
        (json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * MAX_BODY * 2}]}).encode(),
         413),
        (b"", 400), (b"   ", 400), (b"null", 400), (b"[]", 400), (b'"str"', 400), (b"1e999999", 400),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\\ud800"}]}', None),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1e308}', 400),
        (b"\x00\x01\x02\x03" * 100, 400),
    ]
    for body, expected in cases:
        status, resp, headers = send(live, "POST", "/v1/chat/completions", body, h)
        check(live, status, resp, headers)
        if expected is not None:
            assert status == expected, (body[:60], status, resp[:200])
    # a chunked body over the cap (no Content-Length) is cut off while reading
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=15)
    conn.putrequest("POST", "/v1/chat/completions")
    for k, v in h.items():
        conn.putheader(k, v)
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    chunk = b"x" * 16384
    try:
        for _ in range(8):
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        conn.send(b"0\r\n\r\n")
    except OSError:
        pass  # the node may close the connection as soon as the cap is crossed
    resp = conn.getresponse()
    assert resp.status == 413
    check(live, resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()})
    conn.close()


def test_huge_and_odd_headers(live: Live) -> None:
    for headers in ({"X-Big": "a" * 20_000}, {"Authorization": "Bearer " + "k" * 100_000},
                    {f"X-H{i}": "v" * 100 for i in range(200)}, {"Authorization": "Bearer \x7f\x01"}):
        try:
            status, body, resp_headers = send(live, "GET", "/v1/models", None, headers)
        except (ConnectionError, http.client.RemoteDisconnected):
            continue  # refusing the connection outright is fine too
        assert status in (400, 401, 413, 431), (status, body[:200])
        check(live, status, body, resp_headers)
    # raw invalid UTF-8 in a header value
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as s:
        s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\xfd\r\n\r\n")
        reply = s.recv(65536)
    assert reply.startswith(b"HTTP/1.1 4"), reply[:100]
    # request smuggling shapes: both framings at once, or a bogus chunk size
    for raw in (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"zz\r\nabc\r\n0\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", live.port), timeout=10) as s:
            s.sendall(raw)
            reply = s.recv(65536)
        assert reply.startswith((b"HTTP/1.1 4", b"HTTP/1.0 4")), reply[:100]


def test_header_count_and_size_bounds_hold_on_the_hot_routes_too(live: Live) -> None:
    """At most 128 headers, each name and value at most 8190 bytes, on the model API's POST routes
    (the node's own HTTP front) as on every other route (aiohttp's)."""
    chat = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()

    def post(path: str, extra: bytes) -> bytes:
        head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {live.secret}\r\nContent-Length: {len(chat)}\r\n").encode()
        with socket.create_connection(("127.0.0.1", live.port), timeout=10) as s:
            s.sendall(head + extra + b"\r\n" + chat)
            reply = b""
            while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
        return reply

    many = b"".join(b"x-h%d: v\r\n" % i for i in range(130))
    big = b"x-big: " + b"a" * 8191 + b"\r\n"
    for path in ("/v1/chat/completions", "/v1/embeddings", "/v1/messages"):
        for extra, code in ((many, b"too_many_headers"), (big, b"header_too_large")):
            reply = post(path, extra)
            assert reply.startswith(b"HTTP/1.1 431"), (path, reply[:300])
            assert code in reply and b"send" in reply
    # aiohttp's routes refuse the same heads
    for extra in (many, b"x-big: " + b"a" * 8191 + b"\r\n"):
        assert post("/v1/models", extra).startswith((b"HTTP/1.1 4", b"HTTP/1.0 4"))
    # within the bounds: served
    within = b"".join(b"x-h%d: v\r\n" % i for i in range(100)) + b"x-big: " + b"a" * 8000 + b"\r\n"
    assert post("/v1/chat/completions", within).startswith(b"HTTP/1.1 200")


def test_slow_clients_do_not_hang_others(live: Live) -> None:
    """slowloris: many connections trickle a request byte by byte; normal clients are served meanwhile."""
    socks = []
    for _ in range(50):
        s = socket.create_connection(("127.0.0.1", live.port), timeout=10)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n")
        socks.append(s)
    stop = threading.Event()

    def trickle() -> None:
        while not stop.is_set():
            for s in socks:
                with contextlib.suppress(OSError):
                    s.sendall(b"X")
            time.sleep(0.05)

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        started = time.monotonic()
        for _ in range(10):
            status, body, _ = send(live, "GET", "/v1/models", None, auth(live, 0), timeout=5)
            assert status == 200
            body2 = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
            status, body, _headers = send(live, "POST", "/v1/chat/completions", body2,
                                         {"Content-Type": "application/json", **auth(live, 0)}, timeout=5)
            assert status == 200, body[:300]
        assert time.monotonic() - started < 10
    finally:
        stop.set()
        t.join()
        for s in socks:
            s.close()


def test_no_secret_in_metrics_logs_or_event_log(live: Live) -> None:
    # runs last in this module: everything above went through the node first
    status, metrics, _ = send(live, "GET", "/metrics", None)
    assert status == 200
    text = metrics.decode()
    with psycopg.connect(live.database_url) as conn:
        log_text = "\n".join(str(r) for r in conn.execute("SELECT stream, type, data, metadata FROM events"))
    logs = "\n".join(live.logs.lines)
    assert "shieldes.access GET /metrics 200" in logs  # (the node's own records are the ones kept)
    assert "Traceback" not in logs, logs[-3000:]
    for secret in live.secrets:
        assert secret not in text and secret not in logs and secret not in log_text
    assert hash_key(live.secret) in log_text  # the log holds the hash, as designed
    assert hash_key(live.secret) not in text and hash_key(live.secret) not in logs
