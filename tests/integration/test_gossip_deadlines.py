"""Push deadlines per target over real gRPC (shieldes/cluster/push_deadline.py, gossip.py): a peer
that answers slower than the base deadline still has pushes taken, as its deadline grows past its
round trip, and returns to the base once it answers quickly; a black-holed peer holds back neither
the rounds nor the pushes to a quick peer (a push in flight is not sent a second one, and rounds do
not wait for it); a peer that refuses connections is not slow."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc

from shieldes.cluster import gossip_pb2, gossip_pb2_grpc
from shieldes.cluster.gossip import Gossip
from shieldes.cluster.view import NodeState, WindowId
from shieldes.cluster.view_reads import window_count
from tests.integration.gateway_harness import wait_until
from tests.ports import free_port

SECRET = b"s3cret"
BASE = 0.2  # the base push deadline here
CLOSED = "127.0.0.1:9"  # nothing listens there: pushes are refused


class Delayed(gossip_pb2_grpc.GossipServicer):
    """A real gossip node's Push behind an injected delay (a loaded or paused peer): `delay` seconds,
    or until `released` is set if `hold` (a black hole)."""

    def __init__(self, gossip: Gossip, delay: float = 0.0, hold: bool = False) -> None:
        self.gossip, self.delay, self.hold = gossip, delay, hold
        self.released = asyncio.Event()
        self.calls = 0

    async def Push(self, request: gossip_pb2.Envelope, context: Any) -> gossip_pb2.Ack:
        self.calls += 1
        if self.hold:
            await self.released.wait()
        elif self.delay:
            await asyncio.sleep(self.delay)  # the fault injected: this peer answers late
        return self.gossip.receive(request)


@asynccontextmanager
async def peer(name: str, **fault: Any) -> AsyncIterator[tuple[Gossip, Delayed, str]]:
    """A gossip receiver served through `Delayed`."""
    g = Gossip(node_id=name, secret=SECRET, host="127.0.0.1", port=0, boot_epoch=lambda: 20)
    servicer = Delayed(g, **fault)
    server = grpc.aio.server()
    gossip_pb2_grpc.add_GossipServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield g, servicer, f"127.0.0.1:{port}"
    finally:
        servicer.released.set()
        await server.stop(grace=0)


def sender(windows: dict[WindowId, tuple[int, int, int]], targets: list[str], node_timeout: float) -> Gossip:
    return Gossip(node_id="a", secret=SECRET, host="127.0.0.1", port=0, boot_epoch=lambda: 10, interval=0.05,
                  timeout=BASE, node_timeout=node_timeout, targets=lambda: list(targets),
                  snapshot=lambda: NodeState("a", 10, windows=dict(windows)))


async def test_a_peer_slower_than_the_base_deadline_still_takes_pushes_and_then_returns_to_the_base() -> None:
    windows: dict[WindowId, tuple[int, int, int]] = {("k:1", "min", 5): (1, 0, 0)}
    async with peer("b", delay=3 * BASE) as (b, slow, address):
        a = sender(windows, [address], node_timeout=4.0)  # deadlines up to 2 s
        await a.start()
        try:
            # every push misses the 0.2 s base; the deadline doubles past the 0.6 s answer and pushes are taken
            await wait_until(lambda: b.stats.received >= 3, 20)
            assert a.stats.push_timeouts >= 1 and BASE < a.push_deadline(address) <= a.max_timeout
            assert a.stats.to_dict()["targets"][address]["deadline_s"] > 3 * BASE
            # a change made while a push is in flight arrives (deltas on late acknowledgements apply)
            windows[("k:1", "min", 5)] = (7, 70, 0)
            await wait_until(lambda: window_count(b.view, "k:1", "min", [5]) == (7, 70), 20)
            assert b.stats.need_full == 0
            slow.delay = 0.0  # quick again: its deadline comes back to the base
            await wait_until(lambda: a.push_deadline(address) == BASE, 20)
            taken = b.stats.received
            await wait_until(lambda: b.stats.received >= taken + 10, 10)
        finally:
            await a.stop()


async def test_a_black_holed_peer_holds_back_neither_the_rounds_nor_a_quick_peer() -> None:
    windows: dict[WindowId, tuple[int, int, int]] = {("k:1", "min", 5): (1, 0, 0)}
    async with peer("hole", hold=True) as (_, hole, hole_address), peer("quick") as (quick, _, quick_address):
        targets = [hole_address, quick_address, CLOSED]
        a = sender(windows, targets, node_timeout=20.0)  # deadlines up to 10 s
        started = time.monotonic()
        await a.start()
        try:
            # 60 rounds at 0.05 s: 3 s; waiting on the black hole's deadline every round would take 12 s or more
            await wait_until(lambda: quick.stats.received >= 60, 20)
            elapsed = time.monotonic() - started
            # never a second push in flight, each one given twice the time of the one before (0.2, 0.4,
            # 0.8 s...): at most 1 + log2(elapsed / 0.2 + 1) pushes, where every round would make 60
            assert hole.calls <= 1 + math.log2(elapsed / BASE + 1), (hole.calls, elapsed)
            assert a.stats.rounds >= 60 and a.stats.push_timeouts <= hole.calls
            assert a.push_deadline(hole_address) > BASE  # it grows with every timeout
            assert a.push_deadline(CLOSED) == BASE  # refused over and over: not slow
            assert a.stats.refused.get(CLOSED)
            # the quick peer's deadline follows its own answers, not the hole's timeouts (not == BASE:
            # on a loaded machine its round trips alone raise it past 0.2 s, 0.26 s seen at load 18)
            assert a.stats.push_timers[quick_address].srtt > 0
            assert a.push_deadline(quick_address) < a.push_deadline(hole_address)
            windows[("k:1", "min", 5)] = (9, 0, 0)  # the quick peer keeps up while the hole holds a push
            await wait_until(lambda: window_count(quick.view, "k:1", "min", [5]) == (9, 0), 5)
            assert quick.stats.need_full == 0
        finally:
            await a.stop()
        assert not a._pushes  # stopping ended the push still held by the black hole


async def test_an_answer_to_a_push_of_a_previous_boot_is_not_taken_for_this_boots() -> None:
    epoch = [10]
    async with peer("slow", delay=0.5) as (slow, servicer, slow_address), peer("quick") as (_, _, quick_address):
        a = Gossip(node_id="a", secret=SECRET, host="127.0.0.1", port=0, boot_epoch=lambda: epoch[0],
                   timeout=5.0, targets=lambda: [slow_address, quick_address])
        try:
            assert await a.push_once(wait=False) == 0  # both in flight; the slow peer's answer comes late
            await wait_until(lambda: quick_address not in a._pushes, 5)
            assert slow_address in a._pushes
            epoch[0] = 11  # a new boot: sequences and acknowledgements start over
            await a.push_once(wait=False)  # to the quick peer only: the slow one's push is still in flight
            await wait_until(lambda: not a._pushes and servicer.calls == 1, 10)
            assert slow.stats.received == 1  # it took boot 10's message, and said so, late
            assert slow_address not in a._links  # ... which acknowledges nothing of boot 11
            assert await a.push_once() == 2  # so boot 11 goes to it whole, not as a delta it cannot apply
            assert slow.stats.need_full == 0 and ("a", 11) in slow.view.components
        finally:
            await a.stop()


async def test_a_target_that_leaves_takes_its_push_and_its_state_with_it() -> None:
    """Peers come back at new addresses (a restart on another port or host): what is held per
    target address goes with the address, the push in flight to it included."""
    async with peer("hole", hold=True) as (_, hole, hole_address), peer("quick") as (_, _, quick_address):
        targets = [hole_address, quick_address, CLOSED]
        a = sender({}, targets, node_timeout=20.0)
        try:
            await a.push_once(wait=False)
            await wait_until(lambda: hole.calls == 1 and quick_address not in a._pushes and CLOSED not in a._pushes, 10)
            await a.push_once(wait=False)  # a second round: the hole's push is still in flight
            held = (a._channels, a._whole_at, a._tried_since, a.stats.push_timers, a.stats.push_deadline)
            assert all(hole_address in d or CLOSED in d for d in held), held
            targets[:] = [quick_address]  # the hole and the closed address leave
            await a.push_once()
            assert hole_address not in a._pushes  # its push was cancelled, not left to run on
            for d in (*held, a._links, a._untaken):
                assert hole_address not in d and CLOSED not in d, d
            assert a.stats.to_dict()["targets"].keys() == {quick_address}
        finally:
            await a.stop()
        assert not a._pushes


async def test_a_peer_back_after_refusing_for_twenty_seconds_takes_pushes_within_a_second_or_so() -> None:
    """A kept channel to a refusing address reconnects with gRPC's backoff; left at its default
    (growing to 120 s) a peer restarted at the same address took no push for seconds more (about 6 s
    after 20 s down), so it held none of this node's usage meanwhile."""
    address = f"127.0.0.1:{free_port()}"  # nothing listens on it
    a = sender({}, [address], node_timeout=20.0)
    try:
        down = time.monotonic()
        while time.monotonic() - down < 20:  # refused round after round (a peer down or restarting)
            assert await a.push_once() == 0
            await asyncio.sleep(0.1)
        assert a.stats.refused.get(address)
        g = Gossip(node_id="b", secret=SECRET, host="127.0.0.1", port=int(address.rsplit(":", 1)[1]),
                   boot_epoch=lambda: 20)
        await g.bind()  # the peer is back, at the same address
        try:
            back = time.monotonic()
            while await a.push_once() == 0 and time.monotonic() - back < 10:  # a round every 0.1 s
                await asyncio.sleep(0.1)
            assert g.stats.received >= 1
            # reconnecting at most a second apart (about 6 s with gRPC's default backoff); slack for load
            assert time.monotonic() - back < 3.0, time.monotonic() - back
        finally:
            await g.stop()
    finally:
        await a.stop()
