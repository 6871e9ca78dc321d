"""A node and its open-files limit, as a real `shieldes serve` process started under a low one:
it raises its soft limit to the hard one, says so, and warns while connections use most of it
(past the limit new connections would be dropped without a word)."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shieldes.open_files import CEILING
from tests.integration import serve_process
from tests.integration.serve_process import wait_for


@contextmanager
def serving(database_url: str, soft: int, hard: int) -> Iterator[tuple[subprocess.Popen[str], list[str], int]]:
    """A node under (soft, hard) open-files limits; its stderr lines as they come, and its port."""
    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    # the open files counted every 0.2 s instead of every 5 (SHIELDES_OPEN_FILES_CHECK_INTERVAL): the
    # warning and the note each come at the first check after the count crossed, as at the default
    with serve_process.serving(database_url, "files", preexec_fn=limited,
                               env={"SHIELDES_OPEN_FILES_CHECK_INTERVAL": "0.2"}) as served:
        yield served


def limits_of(pid: int) -> tuple[int, int]:
    line = next(x for x in Path(f"/proc/{pid}/limits").read_text().splitlines() if x.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    return int(soft), int(hard)


def test_a_node_raises_its_soft_limit_to_the_hard_one(database_url: str) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    expected = CEILING if hard == resource.RLIM_INFINITY else min(hard, CEILING)
    with serving(database_url, 256, hard) as (proc, lines, _port):
        assert limits_of(proc.pid)[0] == expected
        assert any(f"open files limit raised from 256 to {expected}" in x for x in lines), lines
    assert proc.returncode == 0


def test_a_node_near_its_limit_says_what_to_do(database_url: str) -> None:
    with serving(database_url, 200, 200) as (proc, lines, port):
        assert limits_of(proc.pid) == (200, 200)
        assert any("open files limit is 200 (the hard limit)" in x and "about 100 concurrent streams" in x
                   for x in lines), lines
        held = []
        fds = f"/proc/{proc.pid}/fd"
        # no more connections than take it to 175, however far its accepts lag behind on a busy
        # machine: at its limit (200) the node could not open /proc/self/fd to count, nor warn
        room = 175 - len(os.listdir(fds))
        try:
            while len(os.listdir(fds)) < 175 and len(held) < room:  # over 80% of 200
                held.append(socket.create_connection(("127.0.0.1", port)))
                time.sleep(0.002)  # (let the node accept it before the count is read again)
            warning = wait_for(lambda: next((x for x in lines if "open files at" in x), None), proc)
            warned = time.monotonic()
            assert "WARNING" in warning and "limit of 200" in warning and "ulimit -n" in warning, warning
        finally:
            for s in held:
                s.close()
        wait_for(lambda: next((x for x in lines if "open files back to" in x), None), proc)
        # the note comes at the next check: under a second here, never before 5 s at the default interval
        assert time.monotonic() - warned < 4.0
    assert proc.returncode == 0
