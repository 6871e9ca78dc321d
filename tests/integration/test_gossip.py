"""Gossip over real gRPC between two (and a rogue third) services in one event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
import zstandard

from shieldes.cluster import gossip_pb2, gossip_pb2_grpc
from shieldes.cluster.gossip import Gossip, seal, sign
from shieldes.cluster.view import NodeState, fold, observe_epochs
from shieldes.cluster.view_reads import window_count

SECRET = b"s3cret"


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Gossip, Gossip, dict[str, Any]]]:
    shared: dict[str, Any] = {"a_count": 1, "heads": []}
    peers: dict[str, list[str]] = {"a": [], "b": []}
    a = Gossip(node_id="a", secret=SECRET, host="127.0.0.1", port=0, interval=0.02, boot_epoch=lambda: 10,
               targets=lambda: peers["a"],
               snapshot=lambda: NodeState("a", 10, log_head=77,
                                          windows={("key:k", "rpm", 5): (shared["a_count"], 9, 0)}))
    b = Gossip(node_id="b", secret=SECRET, host="127.0.0.1", port=0, interval=0.02, boot_epoch=lambda: 20,
               targets=lambda: peers["b"], on_head=shared["heads"].append)
    await a.start()
    await b.start()
    peers["a"].append(b.address)
    peers["b"].append(a.address)
    yield a, b, shared
    await a.stop()
    await b.stop()


async def test_counters_and_head_hint_flow_between_nodes(pair: tuple[Gossip, Gossip, dict[str, Any]]) -> None:
    a, b, shared = pair
    await until(lambda: window_count(b.view, "key:k", "rpm", [5]) == (1, 9))
    assert 77 in shared["heads"]
    shared["a_count"] = 40
    await until(lambda: window_count(b.view, "key:k", "rpm", [5]) == (40, 9))
    await until(lambda: "b" in a.stats.peers)  # and the other way round
    assert a.stats.sent > 0 and a.stats.sent_bytes > 0 and b.stats.received_bytes > 0
    assert b.recently_seen(5.0) == ["a"]


async def test_a_restarted_node_hears_from_a_peer_what_its_crashed_boot_admitted(
    pair: tuple[Gossip, Gossip, dict[str, Any]],
) -> None:
    a, b, _ = pair
    # a still counts what b's crashed boot (epoch 19; b now runs epoch 20) admitted in window 5
    a.cell.value = observe_epochs(fold([NodeState("b", 19, seq=8, windows={("key:k", "rpm", 5): (12, 0, 0)},
                                                  reservations={"key:k": (5, 0)})]), {"b": 20})
    await until(lambda: window_count(b.view, "key:k", "rpm", [5], exclude="b", own_epoch=20) == (1 + 12, 9))
    assert ("b", 19) in b.view.components and not b.view.components[("b", 19)].reservations
    assert b.recently_seen(5.0) == ["a"]


async def test_bad_signature_replay_and_garbage_are_rejected_and_counted(
    pair: tuple[Gossip, Gossip, dict[str, Any]],
) -> None:
    _, b, _ = pair
    async with grpc.aio.insecure_channel(b.address) as channel:
        stub = gossip_pb2_grpc.GossipStub(channel)
        state = gossip_pb2.State(node_id="rogue", boot_epoch=1, seq=1)
        state.windows.add(subject="key:k", window="rpm", start=5, requests=10_000)

        forged = seal(state, b"wrong secret")
        ack = await stub.Push(forged)
        assert (ack.accepted, ack.reason) == (False, "signature")
        assert b.stats.rejected_signature == 1

        tampered = seal(state, SECRET)
        tampered.payload = zstandard.ZstdCompressor().compress(
            gossip_pb2.State(node_id="rogue", boot_epoch=1, seq=1).SerializeToString())
        assert (await stub.Push(tampered)).reason == "signature"

        genuine = seal(state, SECRET)
        assert (await stub.Push(genuine)).accepted
        replay = await stub.Push(genuine)
        assert (replay.accepted, replay.reason) == (False, "stale")
        older = seal(gossip_pb2.State(node_id="rogue", boot_epoch=0, seq=99), SECRET)
        assert (await stub.Push(older)).reason == "stale"  # an older boot epoch is stale whatever its seq
        assert b.stats.rejected_stale == 2

        garbage = gossip_pb2.Envelope(payload=b"not zstd", signature=sign(SECRET, b"not zstd"))
        assert (await stub.Push(garbage)).reason == "malformed"
    assert window_count(b.view, "key:k", "rpm", [5], exclude="a") == (10_000, 0)  # only the genuine one


async def test_a_node_with_another_secret_is_kept_out(pair: tuple[Gossip, Gossip, dict[str, Any]]) -> None:
    _, b, _ = pair
    rogue = Gossip(node_id="r", secret=b"other", host="127.0.0.1", port=0, interval=0.02,
                   targets=lambda: [b.address],
                   snapshot=lambda: NodeState("r", 1, windows={("key:k", "rpm", 5): (500, 0, 0)}))
    await rogue.start()
    try:
        await until(lambda: b.stats.rejected_signature >= 3)
        assert "r" not in b.stats.peers
        assert all(node != "r" for node, _ in b.view.components)
    finally:
        await rogue.stop()


class _StalledPeer(gossip_pb2_grpc.GossipServicer):
    """A live peer that takes pushes only once `open` is set: until then each push outlasts its
    deadline, as every push does on a machine too loaded to answer within it."""

    def __init__(self) -> None:
        self.open = asyncio.Event()

    async def Push(self, request: gossip_pb2.Envelope, context: Any) -> gossip_pb2.Ack:
        await self.open.wait()
        return gossip_pb2.Ack(accepted=True)


async def test_a_live_peer_that_takes_no_push_for_a_node_timeout_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    """Such a peer holds none of this node's usage: the leader's appends on behalf of a crashed boot
    can only save what a peer took, so a gossip that silently times out must not stay silent."""
    server = grpc.aio.server()
    peer = _StalledPeer()
    gossip_pb2_grpc.add_GossipServicer_to_server(peer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    a = Gossip(node_id="a", secret=SECRET, host="127.0.0.1", port=0, interval=0.02, timeout=0.05, node_timeout=0.2,
               boot_epoch=lambda: 10, targets=lambda: [f"127.0.0.1:{port}"], snapshot=lambda: NodeState("a", 10))
    caplog.set_level(logging.WARNING, logger="shieldes.cluster.gossip")
    await a.start()
    try:
        await until(lambda: "no push taken" in caplog.text)
        assert a.stats.sent == 0 and a.stats.send_errors > 0
        assert caplog.text.count("no push taken") == 1  # once per stall, not once per push
        peer.open.set()
        await until(lambda: "pushes are taken again" in caplog.text)
    finally:
        await a.stop()
        await server.stop(0)
