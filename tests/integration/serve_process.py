"""A real `shieldes serve` process for tests that watch the process itself (its limits, its
memory, its log lines): started on a free port, its stderr collected line by line, stopped with
SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def serving(database_url: str, node_id: str, *, env: dict[str, str] | None = None,
            preexec_fn: Callable[[], None] | None = None, inherit: Callable[[str], bool] = lambda name: True,
            ) -> Iterator[tuple[subprocess.Popen[str], list[str], int]]:
    """The node process, its stderr lines as they come, and its port. It inherits the variables
    of this process that `inherit` keeps, then `env` over them."""
    inherited = {k: v for k, v in os.environ.items() if inherit(k)}
    proc = subprocess.Popen([sys.executable, "-m", "shieldes", "serve", "--host", "127.0.0.1", "--port", "0",
                             "--node-id", node_id], cwd=ROOT, preexec_fn=preexec_fn, stderr=subprocess.PIPE,
                            text=True, env={**inherited, "PYTHONPATH": str(ROOT),
                                            "SHIELDES_DATABASE_URL": database_url, **(env or {})})
    lines: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        listening = wait_for(lambda: next((x for x in lines if "listening on" in x), None), proc)
        yield proc, lines, int(re.search(r":(\d+)\s*$", listening.strip()).group(1))  # type: ignore[union-attr]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        reader.join(timeout=10)


def wait_for(found: Callable[[], str | None], proc: subprocess.Popen[str], timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while (got := found()) is None:
        assert proc.poll() is None, "the node exited"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return got
