"""A node gives the memory a burst of large request bodies left in its C heap back to the system
once it has been idle for SHIELDES_MEMORY_TRIM_INTERVAL, as a real `shieldes serve` process."""

from __future__ import annotations

import http.client
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shieldes.malloc import TRIM_ABOVE, should_trim
from tests.integration import serve_process

MB = 1024 * 1024


@contextmanager
def serving(database_url: str, trim_interval: float) -> Iterator[tuple[subprocess.Popen[str], list[str], int]]:
    """The node, its stderr lines (at debug level: a trim says so) and its port."""
    with serve_process.serving(database_url, "trim", env={"SHIELDES_MEMORY_TRIM_INTERVAL": str(trim_interval),
                                                          "SHIELDES_LOG_LEVEL": "debug"}) as (proc, lines, port):
        yield proc, lines, port


def rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024  # type: ignore[union-attr]


def post_large_bodies(port: int, n: int, size: int) -> list[int]:
    """`n` chat requests of `size` bytes each, their bodies sent in two halves so that all of them
    are being read at once (with no valid key: the node reads each whole body, then answers 401)."""
    body = b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "' + b"a" * size + b'"}]}'
    half = len(body) // 2
    statuses: list[int] = []
    halfway = threading.Barrier(n)

    def one() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.putrequest("POST", "/v1/chat/completions")
        for name, value in (("Content-Type", "application/json"), ("Authorization", "Bearer sk-nobody"),
                            ("Content-Length", str(len(body)))):
            conn.putheader(name, value)
        conn.endheaders(body[:half])
        halfway.wait(timeout=60)
        conn.send(body[half:])
        statuses.append(conn.getresponse().status)
        conn.close()

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return statuses


def test_trimming_waits_for_an_idle_interval_and_for_enough_free_memory() -> None:
    assert should_trim(500 * MB, 100 * MB, idle=True)
    assert not should_trim(500 * MB, 100 * MB, idle=False)  # a busy node reuses its heap
    assert not should_trim(100 * MB + TRIM_ABOVE - 1, 100 * MB, idle=True)
    assert should_trim(100 * MB + TRIM_ABOVE, 100 * MB, idle=True)


def test_an_idle_node_hands_back_what_a_burst_of_large_bodies_left(database_url: str) -> None:
    with serving(database_url, trim_interval=2.0) as (proc, lines, port):  # (longer than any pause in the burst)
        before = rss(proc.pid)
        # 20 bodies: their heap is more than a trim waits for (TRIM_ABOVE) and less than glibc's own
        # trim threshold (malloc.TRIM_BYTES, 256 MB), past which free() hands the heap top back
        # itself and a fall of the RSS would come without the idle trim (32 bodies went past it).
        assert post_large_bodies(port, 20, 8 * MB) == [401] * 20
        peak = rss(proc.pid)
        assert peak - before > TRIM_ABOVE, (before, peak)  # the burst left its bodies' memory in the process
        # The trim itself, seen in the node's log
        serve_process.wait_for(lambda: next((x for x in lines if "of free heap to the system" in x), None), proc)
        deadline = time.monotonic() + 20
        # (at least half handed back: heap the burst left fragmented may stay; with no trim it all stays)
        while rss(proc.pid) > before + (peak - before) / 2:
            assert time.monotonic() < deadline, (before, peak, rss(proc.pid))
            time.sleep(0.1)


def post_half_bodies(port: int, n: int, size: int) -> None:
    """`n` chat requests whose clients send half of a `size`-byte body and go away: the node is
    reading all of them when their connections close."""
    half = size // 2
    halfway = threading.Barrier(n)

    def one() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.putrequest("POST", "/v1/chat/completions")
        for name, value in (("Content-Type", "application/json"), ("Authorization", "Bearer sk-nobody"),
                            ("Content-Length", str(size))):
            conn.putheader(name, value)
        conn.endheaders(b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "' + b"a" * half)
        halfway.wait(timeout=60)
        conn.close()

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)


def open_files(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def test_closed_connections_keep_nothing_of_their_bodies(database_url: str) -> None:
    """A connection closed by its client is freed by the cyclic collector's oldest generation only
    (its parser holds its callbacks), which may run millions of allocations later: until then it
    must not hold the body it was reading. Bursts of clients that send half of an 8 MB body and go
    away, trimming off: the node's RSS stops growing once a burst's peak is reached."""
    with serving(database_url, trim_interval=0) as (proc, _lines, port):
        files = open_files(proc.pid)
        after: list[int] = []
        for _ in range(5):
            post_half_bodies(port, 24, 8 * MB)
            # a node on cores shared with other work takes its time to read and drop 24 half bodies
            serve_process.wait_for(lambda: "closed" if open_files(proc.pid) <= files else None, proc,
                                   timeout=120)
            after.append(rss(proc.pid))
        # Bodies kept by closed connections add a burst's 96 MB each time (+290 MB over the last
        # three). Without them the heap grows only when a burst overlaps more than the ones before
        # (a busy node reads more of a burst at once), never by more than one burst holds.
        assert after[-1] - max(after[:2]) < 24 * 4 * MB + 32 * MB, [a // MB for a in after]
