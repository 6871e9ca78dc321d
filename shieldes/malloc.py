"""How the C allocator keeps memory between requests. Request bodies of megabytes (an agent's
screenshots) are parsed and copied into buffers of their size; with glibc's defaults, freeing them
hands the pages back to the system (the heap top is trimmed, large blocks are unmapped) and the
next such request faults every page in again: 3,700 page faults and half its CPU for a 3 MB body
here. A node keeps up to TRIM_BYTES free at its heap top instead, grows its heap TOP_PAD_BYTES
at a time, and takes blocks up to MMAP_BYTES from the heap: that memory stays in the process (its
RSS does not fall back after a burst of large bodies) and is reused (3 MB bodies: about 110 page
faults and 15 ms of CPU per request instead of 3,700 and 30 ms).

Kept for good, though, a burst of such bodies left the node hundreds of MB above its live data
(870 MB of RSS against 259 MB after 32 concurrent 2.7 MB streams). So once the node has handled no
request for a whole interval, IdleTrim hands the free pages back (malloc_trim), and busy nodes keep
their heap."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
from collections.abc import Callable

from shieldes.tasks import cancel_and_wait

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
TRIM_BYTES = 256 * 1024 * 1024
TOP_PAD_BYTES = 64 * 1024 * 1024  # the heap grows by this much more than asked: fewer, larger steps
MMAP_BYTES = 32 * 1024 * 1024  # glibc's largest (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit)
TRIM_ABOVE = 64 * 1024 * 1024  # RSS grown this much past what the last trim left is worth a trim

log = logging.getLogger(__name__)


def _libc_function(name: str) -> Callable[..., int] | None:
    library = ctypes.util.find_library("c")
    if library is None:
        return None
    try:
        function: Callable[..., int] = getattr(ctypes.CDLL(library), name)
    except (OSError, AttributeError):  # musl, macOS: no mallopt, no malloc_trim
        return None
    return function


def keep_freed_memory() -> bool:
    """Tune glibc's malloc as above; False where the C library is not glibc (nothing changed)."""
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    return all([mallopt(M_TRIM_THRESHOLD, TRIM_BYTES), mallopt(M_TOP_PAD, TOP_PAD_BYTES),
                mallopt(M_MMAP_THRESHOLD, MMAP_BYTES)])


def resident_bytes() -> int | None:
    """This process's RSS, from /proc (None elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def should_trim(rss: int, after_last_trim: int, idle: bool) -> bool:
    """Whether to hand free heap pages back now: only when no request came for a whole interval (a
    busy node reuses them; giving them back costs a page fault each later) and RSS grew TRIM_ABOVE
    past what the last trim left."""
    return idle and rss - after_last_trim >= TRIM_ABOVE


class IdleTrim:
    """Every `interval` seconds, trims the C heap if should_trim says so. `activity`: a count that
    grows with every request begun and every read of request bytes; unchanged over an interval
    with nothing in flight means idle."""

    def __init__(self, interval: float, activity: Callable[[], int], in_flight: Callable[[], int]) -> None:
        self.interval = interval
        self._activity, self._in_flight = activity, in_flight
        self._trim = _libc_function("malloc_trim")
        self.trims = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        rss = resident_bytes()
        if self.interval <= 0 or self._trim is None or rss is None:
            return
        self._task = asyncio.create_task(self._run(rss), name="idle-trim")

    async def _run(self, after_last_trim: int) -> None:
        trim = self._trim
        assert trim is not None
        seen = self._activity()
        while True:
            await asyncio.sleep(self.interval)
            now = self._activity()
            idle = now == seen and self._in_flight() == 0
            seen = now
            rss = resident_bytes() or 0
            if should_trim(rss, after_last_trim, idle):
                await asyncio.to_thread(trim, 0)  # (off the event loop: it walks the whole heap)
                after_last_trim = resident_bytes() or 0
                self.trims += 1
                log.debug("idle: returned %.0f MB of free heap to the system", (rss - after_last_trim) / 1e6)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
