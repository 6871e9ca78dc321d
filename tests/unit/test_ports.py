"""The suite's port picks (tests/ports.py): each worker's slice is its own and below the kernel's
ephemeral range, a port in use is passed over, and none is handed out twice in a row of picks."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.ports import SLICES, _WorkerPorts


def test_each_worker_picks_from_its_own_slice_below_the_ephemeral_range() -> None:
    ephemeral_start = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    slices = [_WorkerPorts(f"gw{n}") for n in range(SLICES)]
    for i, a in enumerate(slices):
        assert a.high <= ephemeral_start, (a.low, a.high, ephemeral_start)
        for b in slices[i + 1:]:
            assert a.high <= b.low or b.high <= a.low, ((a.low, a.high), (b.low, b.high))
        picked = [a.take(1) for _ in range(50)]
        assert all(a.low <= p < a.high for p in picked)
        assert len(set(picked)) == len(picked)  # not handed out again within the slice's turn


def test_a_port_in_use_is_passed_over_and_blocks_stay_in_the_slice() -> None:
    ports = _WorkerPorts("gw5")
    with socket.socket() as held:
        held.bind(("127.0.0.1", ports.at))
        held.listen()
        taken = held.getsockname()[1]
        assert ports.take(1) != taken
    ports.at = ports.high - 2  # a block of 3 does not fit at the end: it starts over at the slice's start
    base = ports.take(3)
    assert ports.low <= base and base + 3 <= ports.high
