"""Delta-state gossip over real gRPC: after the first whole state an idle round is tiny, a change
arrives, a receiver restarted under the same node id is sent the whole state again, and a peer of an
older release (whose Ack does not say it understands deltas) only ever gets whole states."""

from __future__ import annotations

from typing import Any

import grpc

from shieldes.cluster import gossip_pb2, gossip_pb2_grpc
from shieldes.cluster.gossip import Gossip, open_envelope
from shieldes.cluster.view import NodeState, WindowId
from shieldes.cluster.view_reads import window_count

SECRET = b"s3cret"
KEYS = 2000


def sender(windows: dict[WindowId, tuple[int, int, int]], targets: list[str]) -> Gossip:
    return Gossip(node_id="a", secret=SECRET, host="127.0.0.1", port=0, boot_epoch=lambda: 10,
                  targets=lambda: targets, snapshot=lambda: NodeState("a", 10, windows=dict(windows)))


async def receiver(port: int = 0) -> Gossip:
    g = Gossip(node_id="b", secret=SECRET, host="127.0.0.1", port=port, boot_epoch=lambda: 20)
    await g.bind()  # serves, pushes nothing
    return g


async def test_idle_rounds_are_small_changes_arrive_and_a_restarted_peer_gets_the_whole_state() -> None:
    windows = {(f"k:{i}", "min", 5): (i + 1, 7 * i, 0) for i in range(KEYS)}
    targets: list[str] = []
    a = sender(windows, targets)
    b = await receiver()
    targets.append(b.address)
    try:
        assert await a.push_once() == 1
        full = a.stats.sent_bytes
        assert a.stats.full_sent == 1 and len(b.view.components[("a", 10)].windows) == KEYS
        assert await a.push_once() == 1
        idle = a.stats.sent_bytes - full
        assert a.stats.deltas_sent == 1 and idle < 120 and full > 50 * idle, (full, idle)

        windows[("k:7", "min", 5)] = (500, 100, 0)
        await a.push_once()
        assert window_count(b.view, "k:7", "min", [5]) == (500, 100)
        assert a.stats.deltas_sent == 2

        port = b.port
        await b.stop()
        b = await receiver(port)  # the same node id on the same address, holding nothing
        assert await a.push_once() == 0  # a delta it cannot apply: it asks for the whole state
        assert b.stats.need_full == 1
        assert await a.push_once() == 1
        assert a.stats.full_sent == 2 and len(b.view.components[("a", 10)].windows) == KEYS
        assert window_count(b.view, "k:7", "min", [5]) == (500, 100)
    finally:
        await b.stop()
        await a.stop()


class OlderRelease(gossip_pb2_grpc.GossipServicer):
    """A peer of the release before deltas: reads the State it knows and acks without `deltas`."""

    def __init__(self) -> None:
        self.states: list[gossip_pb2.State] = []

    async def Push(self, request: gossip_pb2.Envelope, context: Any) -> gossip_pb2.Ack:
        self.states.append(open_envelope(request, SECRET))
        return gossip_pb2.Ack(accepted=True, log_head=1)


async def test_a_peer_of_an_older_release_only_gets_whole_states() -> None:
    old = OlderRelease()
    server = grpc.aio.server()
    gossip_pb2_grpc.add_GossipServicer_to_server(old, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    a = sender({("k:1", "min", 5): (3, 0, 0)}, [f"127.0.0.1:{port}"])
    try:
        for _ in range(4):
            assert await a.push_once() == 1
        assert [s.base_seq for s in old.states] == [0, 0, 0, 0]
        assert all(len(s.windows) == 1 for s in old.states) and a.stats.deltas_sent == 0
    finally:
        await a.stop()
        await server.stop(grace=0)
