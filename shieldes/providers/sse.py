"""Server-sent events: an incremental decoder for upstream streams and an encoder for our own.

The decoder follows the WHATWG event-stream rules that matter in practice: lines end in \\n, \\r\\n
or \\r (also when split across reads), `data:` lines of one event are joined with \\n, lines
starting with `:` are comments (keep-alives), a blank line dispatches the event."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

_CR = ord("\r")  # (`int in bytes` is a memchr; `bytes in bytes` first fails as an int on 3.11)


@dataclass(slots=True)
class SSEDecoder:
    """Feed raw bytes as they arrive; get back complete (event, data) pairs."""

    _buf: bytes = b""
    _event: str = ""
    _data: list[bytes] = field(default_factory=list)

    def feed(self, chunk: bytes) -> list[tuple[str, bytes]]:
        if not self._buf and not self._data and not self._event and chunk[:6] == b"data: " \
                and chunk[-2:] == b"\n\n" and _CR not in chunk:
            # Whole `data: ...` events of one line each, as OpenAI-style upstreams send: one split.
            payloads = chunk[6:-2].split(b"\n\ndata: ")
            if chunk.count(b"\n") == 2 * len(payloads):
                return [("message", p) for p in payloads]
        buf = self._buf + chunk if self._buf else chunk
        if _CR in buf:
            # A trailing \r may be the first half of \r\n: keep it until the next read.
            hold = buf.endswith(b"\r")
            if hold:
                buf = buf[:-1]
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if hold:
                buf += b"\r"
        lines = buf.split(b"\n")
        self._buf = lines.pop()
        out: list[tuple[str, bytes]] = []
        data = self._data
        for line in lines:
            # The two lines of nearly every LLM event (`data: {...}` and the blank line) inline.
            if line[:6] == b"data: ":
                data.append(line[6:])
            elif not line and data and not self._event:
                out.append(("message", data[0] if len(data) == 1 else b"\n".join(data)))
                data.clear()
            else:
                self._line(line, out)
                data = self._data
        return out

    @property
    def idle(self) -> bool:
        """Whether the bytes fed so far end at an event's end (nothing of a next one held)."""
        return not self._buf and not self._data and not self._event

    def close(self) -> list[tuple[str, bytes]]:
        """End of stream: a last event not followed by a blank line still counts."""
        out: list[tuple[str, bytes]] = []
        if self._buf:
            self._line(self._buf.rstrip(b"\r"), out)
            self._buf = b""
        self._line(b"", out)
        return out

    def _line(self, line: bytes, out: list[tuple[str, bytes]]) -> None:
        if not line:
            if self._data:
                out.append((self._event or "message", b"\n".join(self._data)))
            self._event = ""
            self._data = []
            return
        if line[0] == 0x3A:  # ':' comment / keep-alive
            return
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        # `id` and `retry` carry nothing an upstream LLM stream needs.


def encode_event(event: str | None, data: object) -> bytes:
    """One SSE frame; `event` None gives a bare `data:` frame (the OpenAI style)."""
    payload = orjson.dumps(data)
    if event is None:
        return b"data: " + payload + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"


DONE_FRAME = b"data: [DONE]\n\n"
