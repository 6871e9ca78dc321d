"""Process logging: `SHIELDES_LOG_FORMAT=text|json`. In json, one object per line with `ts`,
`level`, `logger`, `message`, and for access lines every request-log field of the request.

Every line reaches stderr through one `LineHandler`, in the order it was logged. The access log
(one line per request) formats its line itself and queues it on that handler, skipping
`logging`'s per-record machinery (a LogRecord, a lock, a formatter, a flush); the access lines
of one event-loop turn go out in one write, and at most one such write every ACCESS_LINES_WAIT
seconds: the same lines for a fraction of the CPU, and at a moderate load one write syscall for
many requests instead of one each."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from asyncio import _get_running_loop
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TextIO

import orjson

from shieldes.requestlog.record import RequestRecord

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ACCESS_LOGGER = "shieldes.access"
# An access line in the text format: logging's asctime (its milliseconds a %03d of a float, as
# int() cuts them), then access_message's text
_TEXT_LINE = (f"%s,%03d INFO {ACCESS_LOGGER}: %s %s %s %.1fms key=%s model=%s deployment=%s attempts=%d error=%s "
              "rid=%s\n")


def _plain(value: Any) -> Any:
    """What orjson does not encode itself (it writes datetimes as isoformat() does)."""
    if isinstance(value, Decimal):
        return float(value)
    return str(value)


def _dumps(out: dict[str, Any]) -> str:
    return orjson.dumps(out, default=_plain).decode()


def access_fields(rec: RequestRecord, node_id: str) -> dict[str, Any]:
    """An access line's JSON fields beyond ts/level/logger/message: the request-log row."""
    fields = rec.fields(node_id)
    fields["cost_usd"] = fields["cost_nusd"] / 1e9 if fields["cost_nusd"] is not None else None
    return fields


def access_message(rec: RequestRecord) -> str:
    key = rec.key
    return (f"{rec.method} {rec.path} {rec.status} {(rec.t_end - rec.t0) * 1000.0:.1f}ms "
            f"key={key.name if key else '-'} model={rec.model or '-'} deployment={rec.deployment or '-'} "
            f"attempts={len(rec.tried) if rec.tried else 0} error={rec.error_code or '-'} rid={rec.request_id}")


def _iso(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rec = getattr(record, "record", None)
        if isinstance(rec, RequestRecord):
            out.update(access_fields(rec, str(getattr(record, "node_id", ""))))
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return _dumps(out)


# at most one write of access lines this often: within it, lines wait for the next write (a request
# a loop turn at a moderate load would otherwise cost a write syscall each); after a quiet spell a
# line goes out at the end of its turn (no timer wake-up for a lone request)
ACCESS_LINES_WAIT = 0.05


class LineHandler(logging.Handler):
    """Formats each record and writes its line to `stream` at once, after any access lines still
    queued (so lines keep the order they were logged in). Access lines (`queue`) wait for the end
    of the event-loop turn they were logged in, or ACCESS_LINES_WAIT s after the last write if that
    is later, and go out together in one write. `flush()` (also run at exit) writes whatever waits."""

    def __init__(self, stream: TextIO, formatter: logging.Formatter) -> None:
        super().__init__()
        self.stream = stream
        self.setFormatter(formatter)
        self.json = isinstance(formatter, JsonFormatter)
        self._pending: list[str] = []
        self._lines_lock = threading.Lock()
        self._scheduled_on: asyncio.AbstractEventLoop | None = None
        self._written_at = -ACCESS_LINES_WAIT  # time.monotonic() of the last write

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:
            self.handleError(record)
            return
        with self._lines_lock:
            self._pending.append(line)
        self.flush()

    def queue(self, line: str, loop: asyncio.AbstractEventLoop | None) -> None:
        """Queue one line (ending in a newline) to go out at the end of the current turn of `loop`
        (the running loop) or ACCESS_LINES_WAIT s after the last write if later, or at once
        without a loop."""
        with self._lines_lock:
            self._pending.append(line)
            if loop is not None:
                if self._scheduled_on is loop:
                    return
                self._scheduled_on = loop
        if loop is not None:
            wait = self._written_at + ACCESS_LINES_WAIT - time.monotonic()
            if wait > 0:
                loop.call_later(wait, self.flush)
            else:
                loop.call_soon(self.flush)
        else:
            self.flush()

    def flush(self) -> None:
        with self._lines_lock:
            self._scheduled_on = None  # a loop that closed before its turn ended leaves no debt
            lines, self._pending = self._pending, []
        if lines:
            self._written_at = time.monotonic()
            try:
                self.stream.write("".join(lines))
                self.stream.flush()
            except (OSError, ValueError):  # stderr closed or gone: nothing left to tell
                pass


class AccessLog:
    """One line per request on the `shieldes.access` logger. When that logger's lines end in the
    process's LineHandler alone (what `configure` sets up), the line is built here and queued on
    it directly; otherwise (logging set up by someone else) it goes through `logging` as usual.
    Where lines go is found once, whether the level lets them through once a second."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.logger = logging.getLogger(ACCESS_LOGGER)
        self.handler = _sole_line_handler(self.logger)
        self._second = -1
        self._asctime = ""
        self._enabled = True  # the logger's level lets INFO through (read as each second begins)
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop the last line was queued in
        self._thread = 0  # the thread it ran on

    def __call__(self, rec: RequestRecord) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:  # once a second: logging's asctime (its date part), and the level
            self._second, self._asctime = second, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
            self._enabled = self.logger.isEnabledFor(logging.INFO)
        if not self._enabled:
            return
        handler = self.handler
        if handler is None:
            self.logger.info("%s", access_message(rec), extra={"record": rec, "node_id": self.node_id})
            return
        loop = self._running_loop()  # (None outside one: the line is written at once)
        if handler.json:
            out = {"ts": _iso(now), "level": "info", "logger": ACCESS_LOGGER, "message": access_message(rec),
                   **access_fields(rec, self.node_id)}
            handler.queue(_dumps(out) + "\n", loop)
            return
        # access_message's text in the same format as the line's prefix: one string built, not three
        # (and one %-format: no opcode per field to format it)
        key = rec.key
        handler.queue(_TEXT_LINE % (self._asctime, (now - second) * 1000, rec.method, rec.path, rec.status,
                                    (rec.t_end - rec.t0) * 1000.0, key.name if key else "-", rec.model or "-",
                                    rec.deployment or "-", len(rec.tried) if rec.tried else 0, rec.error_code or "-",
                                    rec.request_id), loop)


    def _running_loop(self) -> asyncio.AbstractEventLoop | None:
        """The running loop, or None: the last line's loop while it still runs on this thread (a
        thread runs one loop at a time), else asyncio's answer, which on Python 3.11 costs a
        getpid syscall (its fork check) a line."""
        loop, thread = self._loop, threading.get_ident()
        if loop is not None and thread == self._thread and loop.is_running():
            return loop
        self._loop, self._thread = _get_running_loop(), thread
        return self._loop


def _sole_line_handler(logger: logging.Logger) -> LineHandler | None:
    """The LineHandler every line of `logger` ends in, if it is the only handler they reach."""
    found: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        found.extend(current.handlers)
        if not current.propagate:
            break
        current = current.parent
    sole = found[0] if len(found) == 1 else None
    if isinstance(sole, LineHandler) and not sole.filters and not logger.filters:
        return sole
    return None


def announcement(fmt: str, message: str) -> str:
    """A line `shieldes serve` prints whatever the log level (the node listens, it shuts down): as
    is in text format, one JSON log object in json format, so every line on stderr is then JSON."""
    if fmt != "json":
        return message
    return JsonFormatter().format(logging.LogRecord("shieldes.serve", logging.INFO, "", 0, message, None, None))


def configure(fmt: str, level: int = logging.INFO) -> None:
    """Install one stderr handler on the root logger in the chosen format (replacing others)."""
    # Neither format shows the caller's file and line, thread or process: not collecting them saves
    # a stack walk and a few system calls per record.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = LineHandler(sys.stderr, JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
