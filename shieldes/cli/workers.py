"""`serve --workers N`: the supervisor of the worker processes.

A worker that dies after it was ready (a crash, the kernel's OOM killer) is started again under
the same node id, as any node restarted with its id (its usage stream goes on, peers learn the new
boot); without that, the port kept serving on fewer processes, quietly, until every worker was
gone. A worker that dies before it was ready failed to start (a schema too old, a port taken): the
others are stopped and `serve` exits with its code, as a single node would. A worker that exits
with code 0 was asked to stop (SIGTERM) and is not started again. Restarts back off, 1 s doubling
to 30 s, from the first again once the worker ran for a minute. A worker whose supervisor dies
(SIGKILL) gets SIGTERM and stops, instead of serving on with nobody to restart it or hold the
embedded database for it (Linux)."""

from __future__ import annotations

import contextlib
import ctypes
import heapq
import logging
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

FIRST_DELAY = 1.0
LONGEST_DELAY = 30.0
STABLE_AFTER = 60.0  # a worker that ran this long restarts after FIRST_DELAY again
PR_SET_PDEATHSIG = 1  # prctl(2)


def stop_with_parent() -> None:
    """In a worker: SIGTERM when the supervisor dies (Linux; elsewhere nothing). The signal comes
    when the thread that started the process ends, so the supervisor starts workers from its main
    thread only."""
    with contextlib.suppress(OSError, AttributeError):  # (not Linux)
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def restart_delay(ran_for: float, previous: float | None) -> float:
    """Seconds to wait before starting a worker again that ran `ran_for` seconds, `previous` the
    delay before its last start (None: it never restarted)."""
    if previous is None or ran_for >= STABLE_AFTER:
        return FIRST_DELAY
    return min(LONGEST_DELAY, previous * 2)


@dataclass
class Worker:
    number: int  # K of `<node-id>-wK`
    ready_file: Path  # the worker creates it once it serves
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    delay: float | None = None  # before its last start

    @property
    def ready(self) -> bool:
        return self.ready_file.exists()


class Supervisor:
    """Starts the workers, forwards SIGTERM and SIGINT to them, restarts those that crash; `run`
    returns the exit code of `serve`: 0, or the code of a worker that failed to start."""

    def __init__(self, start: Callable[[Worker], subprocess.Popen[bytes]], workers: list[Worker]) -> None:
        self._start = start
        self.workers = workers
        self._exits: queue.Queue[tuple[Worker, subprocess.Popen[bytes], int]] = queue.Queue()
        self._stopping = False
        self._code = 0

    def _launch(self, worker: Worker) -> None:
        worker.ready_file.unlink(missing_ok=True)
        worker.started = time.monotonic()
        proc = worker.proc = self._start(worker)
        threading.Thread(target=lambda: self._exits.put((worker, proc, proc.wait())), daemon=True,
                         name=f"shieldes-worker-{worker.number}").start()

    def _stop(self, signum: int = signal.SIGTERM) -> None:
        self._stopping = True
        for w in self.workers:
            if w.proc is not None and w.proc.poll() is None:
                w.proc.send_signal(signum)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda signum, _frame: self._stop(signum))
        signal.signal(signal.SIGINT, lambda signum, _frame: self._stop(signum))
        for w in self.workers:
            self._launch(w)
        running = len(self.workers)
        restarts: list[tuple[float, int]] = []  # (when, worker number)
        while running or (restarts and not self._stopping):
            timeout = max(0.0, restarts[0][0] - time.monotonic()) if restarts else None
            try:
                worker, proc, code = self._exits.get(timeout=timeout)
            except queue.Empty:
                _, number = heapq.heappop(restarts)
                if not self._stopping:
                    worker = self.workers[number - 1]
                    self._launch(worker)
                    running += 1
                continue
            running -= 1
            if code == 0:  # asked to stop (SIGTERM), by us or by someone else
                if not self._stopping:
                    log.info("worker %d stopped (code 0); not started again", worker.number)
                continue
            if self._stopping or not worker.ready:
                if not self._stopping:
                    log.error("worker %d exited with code %d before it was ready: stopping the others",
                              worker.number, code)
                    self._stop()
                self._code = self._code or (code if code > 0 else 1)
                continue
            ran_for = time.monotonic() - worker.started
            worker.delay = restart_delay(ran_for, worker.delay)
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            log.warning("worker %d (pid %d) %s after %.0f s; starting it again with the same node id in %g s",
                        worker.number, proc.pid, how, ran_for, worker.delay)
            heapq.heappush(restarts, (time.monotonic() + worker.delay, worker.number))
        return self._code
