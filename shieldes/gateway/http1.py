"""HTTP/1.1 on the wire, as pure functions the front (front.py) runs: which requests it answers
itself, the head and bytes of an answer, and request bodies sent compressed."""

from __future__ import annotations

import zlib
from collections.abc import Container, Iterable, Mapping

from aiohttp import web

from shieldes.errors import InvalidRequest

# The routes the front answers, with and without the /v1 prefix; their handlers come from the app.
HOT_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/messages",
             "/v1/messages/count_tokens", "/v1/responses", "/v1/responses/input_tokens")
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
            404: "Not Found", 408: "Request Timeout", 409: "Conflict", 413: "Payload Too Large",
            422: "Unprocessable Entity", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
            499: "Client Closed Request", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable", 504: "Gateway Timeout", 529: "Overloaded"}
_HOP_HEADERS = frozenset(("content-length", "transfer-encoding", "connection", "keep-alive"))
HOT_SET = frozenset(HOT_PATHS) | frozenset(p[len("/v1"):] for p in HOT_PATHS)


def hot_target(data: bytes | bytearray, paths: Container[str] = HOT_SET) -> bool | None:
    """Whether a request starting with `data` is `POST <one of paths>[?query]`: True, False, or
    None while too few bytes have arrived to tell. `paths`: the hot routes the app has (default:
    all of HOT_PATHS, with and without /v1)."""
    end = data.find(b" ", 5, 5 + 64)
    if end >= 0 and data.startswith(b"POST /"):  # (the usual case first: a whole request line)
        return data[5:end].partition(b"?")[0].decode("latin-1") in paths
    if not data.startswith(b"POST /"):
        return None if len(data) < 6 and b"POST /".startswith(data) else False
    return None if len(data) < 5 + 64 else False


def decompressed(body: bytes, encoding: str, limit: int) -> bytes:
    """`body` decoded from `encoding`; at most `limit` + 1 bytes come out (a small body cannot
    unpack into gigabytes)."""
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise InvalidRequest(f"the request body's Content-Encoding {encoding[:40]!r} is not supported; send it "
                             "uncompressed, or with gzip or deflate")
    try:
        if "gzip" in encoding:
            return _inflate(body, 16 + zlib.MAX_WBITS, limit)
        try:
            return _inflate(body, zlib.MAX_WBITS, limit)
        except zlib.error:  # deflate as some clients send it: raw, without the zlib header
            return _inflate(body, -zlib.MAX_WBITS, limit)
    except zlib.error:
        raise InvalidRequest(f"the request body is not valid {encoding} data; send it as its Content-Encoding "
                             "says, or uncompressed") from None


def _inflate(body: bytes, wbits: int, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    out = inflater.decompress(body, limit + 1)
    if not inflater.eof and len(out) <= limit:  # cut off before its end: what came out may be half a body
        raise zlib.error("truncated stream")
    return out


def head(status: int, reason: str | None, headers: Mapping[str, str], length: int | None, keep_alive: bool,
         date: bytes, *, chunked: bool = True) -> bytes:
    """An answer's status line and headers: the handler's headers, then the framing ones (a
    length, else chunked unless the close ends the body), Date, and Connection: close when the
    connection ends with it."""
    # the names, lowered, in one string: each between NULs (a name holds none), so a name is found
    # whole by one search (no bytecode and no set entry per header)
    names = "\0".join(("", *headers, "")).lower()
    fields: Iterable[tuple[str, str]] = headers.items()
    if ("\0content-length\0" in names or "\0transfer-encoding\0" in names or "\0connection\0" in names
            or "\0keep-alive\0" in names):
        fields = [(name, value) for name, value in fields if name.lower() not in _HOP_HEADERS]
    lines = [f"HTTP/1.1 {status} {reason or _REASONS.get(status, 'Unknown')}", *map(": ".join, fields)]
    if "\0content-type\0" not in names:
        lines.append("Content-Type: application/octet-stream")
    lines.append("")
    text = "\r\n".join(lines)
    # every line ends in CRLF: any other CR or LF is a line break inside a header, looked for in
    # the lines joined without them (`in` scans with memchr; str.count walks the text in C code
    # of its own, some 2,000 instructions for a JSON answer's head)
    joined = "".join(lines)
    if "\n" in joined or "\r" in joined:
        text = "".join(line.replace("\r", " ").replace("\n", " ") + "\r\n" for line in lines[:-1])
    if length is not None:
        framing = b"Content-Length: %d\r\n" % length
    else:
        framing = b"Transfer-Encoding: chunked\r\n" if chunked else b""
    close = b"" if keep_alive else b"Connection: close\r\n"
    return text.encode("latin-1", "replace") + framing + close + b"Date: " + date + b"\r\n\r\n"


def answer_bytes(resp: web.StreamResponse, keep_alive: bool, date: bytes) -> bytes:
    body = resp.body if isinstance(resp, web.Response) else None
    if not isinstance(body, bytes):
        body = b""
    return head(resp.status, resp.reason, resp.headers, len(body), keep_alive, date) + body
