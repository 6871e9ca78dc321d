"""multipart/form-data bodies (the audio upload and image edit routes), read where the gateway
decides and rewritten in one field: the uploaded files' bytes stay exactly as the client sent them."""

from __future__ import annotations

import re
from dataclasses import dataclass

_BOUNDARY = re.compile(r'boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)
_NAME = re.compile(rb'(?:^|;)\s*name\s*=\s*"([^"]*)"', re.IGNORECASE)
_FILENAME = re.compile(rb'(?:^|;)\s*filename\s*=\s*"([^"]*)"', re.IGNORECASE)


class MalformedForm(ValueError):
    """The body is not the multipart/form-data its Content-Type says."""


@dataclass(frozen=True, slots=True)
class Part:
    """One form field: its name, the file name of an upload, and where its value lies in the body."""

    name: str
    filename: str | None
    start: int
    end: int


def boundary_of(content_type: str) -> str | None:
    """The boundary of a `multipart/form-data; boundary=...` Content-Type; None for another type."""
    media, _, params = content_type.partition(";")
    if media.strip().lower() != "multipart/form-data":
        return None
    found = _BOUNDARY.search(params)
    return (found.group(1) or found.group(2)) if found else None


def parts(body: bytes, boundary: str) -> list[Part]:
    """The fields of `body` in order. Raises MalformedForm when it does not parse."""
    dash = b"--" + boundary.encode("latin-1")
    pos = body.find(dash)
    if pos < 0:
        raise MalformedForm(f"no part starts with the boundary {boundary[:70]!r}")
    out: list[Part] = []
    while True:
        pos += len(dash)
        if body[pos:pos + 2] == b"--":  # the closing delimiter
            return out
        line_end = body.find(b"\r\n", pos)
        if line_end < 0:
            raise MalformedForm("a part's boundary line does not end")
        head_end = body.find(b"\r\n\r\n", line_end)
        if head_end < 0:
            raise MalformedForm("a part's headers do not end with a blank line")
        headers = body[line_end + 2:head_end] if head_end > line_end else b""
        start = head_end + 4
        end = body.find(b"\r\n" + dash, start)
        if end < 0:
            raise MalformedForm("the body ends inside a part (no closing boundary)")
        out.append(_part(headers, start, end))
        pos = end + 2


def _part(headers: bytes, start: int, end: int) -> Part:
    for line in headers.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-disposition":
            named = _NAME.search(value)
            if named is None:
                break
            filename = _FILENAME.search(value)
            return Part(named.group(1).decode("utf-8", "replace"),
                        None if filename is None else filename.group(1).decode("utf-8", "replace"), start, end)
    raise MalformedForm("a part has no Content-Disposition with a field name")


def text(body: bytes, part: Part) -> str:
    return body[part.start:part.end].decode("utf-8", "replace")


def with_value(body: bytes, part: Part, value: bytes) -> bytes:
    """`body` with `part`'s value replaced: one join, the rest of the bytes as they were."""
    view = memoryview(body)
    return b"".join((view[:part.start], value, view[part.end:]))


def with_field(body: bytes, boundary: str, last: Part, name: str, value: bytes) -> bytes:
    """`body` with one more text field after its `last` part (a field the client left out and the
    upstream must be told: the model a deployment knows the default by): the rest of the bytes as
    they were."""
    view = memoryview(body)
    head = b"\r\n--" + boundary.encode("latin-1") + b'\r\nContent-Disposition: form-data; name="' \
        + name.encode() + b'"\r\n\r\n'
    return b"".join((view[:last.end], head, value, view[last.end:]))
