"""Access-log benchmark: CPU per access line, the node's own path against `logging`'s.

In one process, for each format (text, json): the line the node writes per request (built by
`AccessLog` and queued on the process's `LineHandler`, one write per event-loop turn) against
the same line through `logging` with a `StreamHandler` (a LogRecord, a formatter, a locked write
and a flush per line: what the node did before). Lines go to a pipe drained by a thread, like a
node's stderr read by its supervisor; 8 lines per loop turn. Best of 3 rounds, CPU microseconds
of this process per line (the draining thread included).

    python bench/bench_access_log.py [--lines 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shieldes import logformat  # noqa: E402
from shieldes.projections.state import VirtualKey  # noqa: E402
from shieldes.requestlog.record import RequestRecord  # noqa: E402

PER_TURN = 8


def _record() -> RequestRecord:
    rec = RequestRecord("5b401850482ed458a04511e4", time.time(), 1.0, "POST", "/v1/chat/completions")
    rec.t_end, rec.status, rec.model, rec.cost_nusd = 1.0072, 200, "gpt-4o", 21_000
    rec.key = VirtualKey("k1", "bench", "h", "sk-bench", None, None, None)
    rec.attempt("openai")
    return rec


def _pipe() -> tuple[object, threading.Thread]:
    read_fd, write_fd = os.pipe()

    def drain() -> None:
        while os.read(read_fd, 1 << 16):
            pass

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    return os.fdopen(write_fd, "w"), reader


async def _per_line(emit: object, lines: int) -> float:
    assert callable(emit)
    start = time.process_time()
    for i in range(lines):
        emit()
        if i % PER_TURN == PER_TURN - 1:
            await asyncio.sleep(0)
    await asyncio.sleep(0)
    return (time.process_time() - start) / lines * 1e6


def measure(fmt: str, lines: int) -> tuple[float, float]:
    rec = _record()
    stream, _reader = _pipe()
    formatter = logformat.JsonFormatter() if fmt == "json" else logging.Formatter(logformat.TEXT_FORMAT)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.handlers = [logformat.LineHandler(stream, formatter)]  # type: ignore[arg-type]
    access = logformat.AccessLog("bench")
    assert access.handler is not None
    classic = logging.StreamHandler(stream)  # type: ignore[arg-type]
    classic.setFormatter(formatter)
    logger = logging.getLogger(logformat.ACCESS_LOGGER)

    def through_logging() -> None:
        logger.info("%s", logformat.access_message(rec), extra={"record": rec, "node_id": "bench"})

    fast, slow = [], []
    for _ in range(3):
        root.handlers = [access.handler]
        fast.append(asyncio.run(_per_line(lambda: access(rec), lines)))
        root.handlers = [classic]
        slow.append(asyncio.run(_per_line(through_logging, lines)))
    root.handlers = []
    return min(fast), min(slow)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=50_000)
    args = parser.parse_args()
    print("| format | node's access line (us/line) | through logging + StreamHandler (us/line) |")
    print("|---|---:|---:|")
    for fmt in ("text", "json"):
        fast, slow = measure(fmt, args.lines)
        print(f"| {fmt} | {fast:.1f} | {slow:.1f} |")
    print(f"(load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
