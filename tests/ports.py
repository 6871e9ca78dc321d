"""Ports for what a test must name before it listens (a node process is told its port, a closed
port is one nothing listens on): each xdist worker takes them in turn from its own slice of
20000-32767. That is below the kernel's ephemeral range (32768-60999 by default), so a port picked
here is never given meanwhile to a server another worker started on port 0 (the OS picks those from
the ephemeral range), and no two workers pick the same one. A port picked from the ephemeral range
and released was taken in between by another worker's server on a loaded run (a node's /ready
answered by a fake upstream's 404)."""

from __future__ import annotations

import os
import random
import socket

FIRST, END = 20000, 32768
SLICES = 8
SPAN = (END - FIRST) // SLICES


class _WorkerPorts:
    """This worker's slice, handed out in turn from a random start (two sessions on one machine
    seldom meet): a port comes back only after the rest of the slice was used."""

    def __init__(self, worker: str) -> None:
        n = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
        self.low = FIRST + (n % SLICES) * SPAN
        self.high = self.low + SPAN
        self.at = random.randrange(self.low, self.high)

    def take(self, n: int) -> int:
        for _ in range(SPAN):
            if self.at + n > self.high:
                self.at = self.low
            base = self.at
            self.at += n
            if all(map(_bindable, range(base, base + n))):
                return base
        raise RuntimeError(f"no {n} free ports in {self.low}-{self.high - 1}; stop what listens there")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# One per worker process: the slice's position is the state of the whole session in this process.
_PORTS = _WorkerPorts(os.environ.get("PYTEST_XDIST_WORKER", "gw0"))


def free_port() -> int:
    """A port nothing listens on now, not handed out again soon in this worker, never in another."""
    return _PORTS.take(1)


def free_ports(n: int) -> list[int]:
    """n consecutive free ports (a node's workers' gossip ports are its base + k)."""
    base = _PORTS.take(n)
    return list(range(base, base + n))
