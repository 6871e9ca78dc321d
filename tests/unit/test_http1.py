"""The front's pure decisions (gateway/http1.py): which requests it answers itself, and the head of an answer."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shieldes.gateway.http1 import head, hot_target


def test_hot_target_takes_post_to_model_routes_only() -> None:
    assert hot_target(b"POST /v1/chat/completions HTTP/1.1\r\n") is True
    assert hot_target(b"POST /messages?beta=true HTTP/1.1\r\n") is True  # unversioned, with a query
    assert hot_target(b"POST /v1/responses/input_tokens HTTP/1.1\r\n") is True
    assert hot_target(b"GET /v1/chat/completions HTTP/1.1\r\n") is False  # aiohttp answers 405
    assert hot_target(b"POST /v1/responses/resp_1/cancel HTTP/1.1\r\n") is False
    assert hot_target(b"POST /admin/v1/keys HTTP/1.1\r\n") is False
    assert hot_target(b"POST http://gw/v1/chat/completions HTTP/1.1\r\n") is False  # absolute form
    assert hot_target(b"PRI * HTTP/2.0\r\n") is False
    assert hot_target(b"POST /v1/" + b"x" * 100) is False  # no hot path is that long


def test_hot_target_waits_for_enough_bytes() -> None:
    assert hot_target(b"") is None
    assert hot_target(b"PO") is None
    assert hot_target(b"POST /v1/chat/compl") is None
    assert hot_target(b"G") is False


def test_head_frames_and_cleans() -> None:
    got = head(200, "OK", {"X-A": "1", "Content-Length": "9", "Connection": "keep-alive"}, 5, True, b"D")
    assert got == (b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Type: application/octet-stream\r\n"
                   b"Content-Length: 5\r\nDate: D\r\n\r\n")
    streamed = head(200, None, {"content-type": "text/event-stream"}, None, False, b"D")
    assert streamed == (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
                        b"Connection: close\r\nDate: D\r\n\r\n")
    assert b"Transfer-Encoding" not in head(200, "OK", {}, None, False, b"D", chunked=False)
    # a line break inside a value cannot split the head
    split = head(429, None, {"Content-Type": "a/b", "X-Why": "slow\r\nSet-Cookie: x"}, 0, True, b"D")
    assert b"\r\nSet-Cookie" not in split and b"X-Why: slow  Set-Cookie: x\r\n" in split
    assert split.startswith(b"HTTP/1.1 429 Too Many Requests\r\n")


def test_head_names_are_matched_whole_and_in_any_case() -> None:
    from multidict import CIMultiDict

    # a name that only contains a framing or Content-Type name is the handler's own: kept, and no default
    got = head(200, "OK", CIMultiDict({"X-Content-Type": "a", "X-Connection-Id": "7", "TRANSFER-ENCODING": "gzip",
                                       "content-TYPE": "a/b"}), 2, True, b"D")
    assert got == (b"HTTP/1.1 200 OK\r\nX-Content-Type: a\r\nX-Connection-Id: 7\r\ncontent-TYPE: a/b\r\n"
                   b"Content-Length: 2\r\nDate: D\r\n\r\n")
    alone = head(200, "OK", {"X-Content-Type": "a", "Keep-Alive": "timeout=5"}, 0, True, b"D")
    assert alone == (b"HTTP/1.1 200 OK\r\nX-Content-Type: a\r\nContent-Type: application/octet-stream\r\n"
                     b"Content-Length: 0\r\nDate: D\r\n\r\n")
    # a lone LF (or CR) in a name or a value is a line break too
    assert head(200, "OK", {"X-A\nB": "1", "X-C": "2\r"}, 0, True, b"D").startswith(
        b"HTTP/1.1 200 OK\r\nX-A B: 1\r\nX-C: 2 \r\n")


def test_request_bodies_are_decompressed_within_the_limit() -> None:
    import zlib

    import pytest

    from shieldes.errors import InvalidRequest
    from shieldes.gateway.http1 import decompressed

    body = b'{"model": "gpt-4o"}' * 10
    gz = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    assert decompressed(gz.compress(body) + gz.flush(), "gzip", 1000) == body
    assert decompressed(zlib.compress(body), "deflate", 1000) == body
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert decompressed(raw.compress(body) + raw.flush(), "deflate", 1000) == body
    assert decompressed(body, "identity", 1000) == body
    bomb = zlib.compress(b"\0" * 10_000_000)
    assert len(decompressed(bomb, "deflate", 1000)) == 1001  # the caller refuses it as too large
    with pytest.raises(InvalidRequest, match="not supported"):
        decompressed(body, "br", 1000)
    with pytest.raises(InvalidRequest, match="not valid gzip"):
        decompressed(body, "gzip", 1000)


@given(st.dictionaries(st.text("aZ-\r\n", min_size=1, max_size=6), st.text("a \r\n:", max_size=8), max_size=4))
def test_no_header_can_add_a_line_to_the_head(headers: dict[str, str]) -> None:
    """Whatever CR and LF a header's name or value holds, each header is one line of the head."""
    got = head(200, "OK", headers, 0, True, b"D")
    lines = got.split(b"\r\n")
    assert lines[-2:] == [b"", b""] and b"\r" not in b"".join(lines) and b"\n" not in b"".join(lines)
    named = [h for h in headers if h.lower() not in ("content-length", "transfer-encoding", "connection",
                                                     "keep-alive")]
    typed = any(h.lower() == "content-type" for h in named)
    assert len(lines) == 1 + len(named) + (0 if typed else 1) + 2 + 2  # status, headers, length, date, end
