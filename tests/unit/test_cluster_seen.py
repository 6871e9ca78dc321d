"""A node's messages acknowledge (`seen`) only the nodes its view holds: a node forgotten as silent
(gone for good, or back under a new id) no longer rides in every message it sends."""

from __future__ import annotations

from shieldes.cluster import view
from shieldes.cluster.gossip import Gossip
from shieldes.cluster.view import NodeState

SECRET = b"s3cret"


def test_a_forgotten_node_leaves_the_acknowledgements() -> None:
    clock = [0.0]
    nodes = {n: Gossip(node_id=n, secret=SECRET, host="127.0.0.1", port=0, boot_epoch=lambda: 1,
                       snapshot=lambda n=n: NodeState(n, 1), clock=lambda: clock[0], interval=0.15)
             for n in "abc"}

    def push(sender: str, target: str) -> None:
        node = nodes[sender]
        seq, messages = node.prepare([target])
        base, envelope = messages[target]
        node.acknowledged(target, seq, base, nodes[target].receive(envelope))

    for sender, target in (("b", "a"), ("c", "a"), ("a", "b")):
        push(sender, target)
    assert set(nodes["b"].view.components[("a", 1)].seen) == {"b", "c"}
    clock[0] += 100.0  # c silent since; b heard again
    push("b", "a")
    a = nodes["a"]
    a.cell.value = view.forget_silent(a.cell.value, now=clock[0], after=15.0)  # as the cluster runtime prunes
    push("a", "b")
    assert set(nodes["b"].view.components[("a", 1)].seen) == {"b"}
