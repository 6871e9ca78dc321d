"""Process logging: `SHIELDES_LOG_FORMAT=text|json`. In json, one object per line with `ts`,
`level`, `logger`, `message`, and for access lines every request-log field of the request."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from shieldes.requestlog.record import RequestRecord

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rec = getattr(record, "record", None)
        if isinstance(rec, RequestRecord):
            fields = rec.fields(str(getattr(record, "node_id", "")))
            fields["cost_usd"] = fields["cost_nusd"] / 1e9 if fields["cost_nusd"] is not None else None
            out.update((k, _plain(v)) for k, v in fields.items())
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def configure(fmt: str, level: int = logging.INFO) -> None:
    """Install one stderr handler on the root logger in the chosen format (replacing others)."""
    # Neither format shows the caller's file and line, thread or process: not collecting them saves
    # a stack walk and a few system calls per record (one access line per request adds up).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
