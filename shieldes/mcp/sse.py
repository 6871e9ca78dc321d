"""Server-sent events relayed one event at a time: an event is passed on as soon as its blank line
arrives, and only an event whose JSON data must change (a tools/list answer) is re-encoded.
Pure: bytes in, bytes out."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
MAX_EVENT = 16 * 1024 * 1024  # an event larger than this is passed through unparsed


class EventSplitter:
    """Cuts a byte stream into whole SSE events (each with its terminating blank line)."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buf += chunk
        out: list[bytes] = []
        while True:
            m = _END.search(self._buf)
            if m is None:
                break
            out.append(self._buf[:m.end()])
            self._buf = self._buf[m.end():]
        if len(self._buf) > MAX_EVENT:  # not an event stream we can read: pass it on as it is
            out.append(self._buf)
            self._buf = b""
        return out

    def rest(self) -> bytes:
        rest, self._buf = self._buf, b""
        return rest


def rewrite_event(event: bytes, change: Callable[[Any], Any]) -> bytes:
    """`event` with its JSON `data` passed through `change`; the event as it is when it has no
    JSON data or `change` returns it unchanged."""
    lines = event.splitlines()
    data = [ln[5:].removeprefix(b" ") for ln in lines if ln.startswith(b"data:")]
    if not data:
        return event
    try:
        message = orjson.loads(b"\n".join(data))
    except orjson.JSONDecodeError:
        return event
    changed = change(message)
    if changed is message:
        return event
    kept = [ln for ln in lines if ln and not ln.startswith(b"data:")]
    return b"\n".join([*kept, b"data: " + orjson.dumps(changed)]) + b"\n\n"
