"""Bounded fanout over real gRPC: five nodes pushing to one peer per round, pulling by digest and
forwarding news (answers ride on the Acks), converge to every node's own counts."""

from __future__ import annotations

from shieldes.cluster.gossip import Gossip
from shieldes.cluster.view import NodeState, WindowId

SECRET = b"s3cret"
NAMES = ["a", "b", "c", "d", "e"]


async def test_five_nodes_with_fanout_one_converge_over_grpc() -> None:
    windows: dict[str, dict[WindowId, tuple[int, int, int]]] = {n: {} for n in NAMES}
    addresses: list[str] = []
    nodes = [Gossip(node_id=n, secret=SECRET, host="127.0.0.1", port=0, boot_epoch=lambda: 1, fanout=1,
                    targets=lambda: list(addresses),
                    snapshot=lambda n=n: NodeState(n, 1, windows=dict(windows[n])))
             for n in NAMES]
    try:
        for g in nodes:
            await g.bind()
            addresses.append(g.address)

        def converged() -> bool:
            return all(g.view.components.get((n, 1)) is not None
                       and g.view.components[(n, 1)].windows == windows[n]
                       for g in nodes for n in NAMES if n != g.node_id)

        for r in range(40):
            for i, n in enumerate(NAMES):  # every node counts something new every round
                windows[n][("k:hot", "min", 5)] = (r + 1, 10 * (r + 1), 0)
                windows[n][(f"k:{n}{r % 3}", "min", 5)] = (r + i, 0, 0)
            for g in nodes:
                await g.push_once()
        rounds = 0
        while not converged():  # then quiet rounds: every node holds every other's counts
            for g in nodes:
                await g.push_once()
            rounds += 1
            assert rounds <= 8
        assert all(g.stats.send_errors == 0 and g.stats.rejected_signature == 0 for g in nodes)
        assert sum(g.stats.sent for g in nodes) < 40 * len(NAMES) * 2  # about one push per round each (k = 1)
    finally:
        for g in nodes:
            await g.stop()
