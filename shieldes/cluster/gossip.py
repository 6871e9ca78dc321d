"""Gossip transport: a grpc.aio service per node and a push loop to a few peers per round; what
the messages carry and how they are folded in is gossip_rounds.py.

A round picks its targets and prepares their messages (GossipRounds), sends each over a kept
channel (mutual TLS on top of the HMAC when configured, gossip_tls.py) and hands every Ack back.
A peer that is down or slow only costs its push: it drops out of the view by age.

Rounds do not wait for their pushes: each push is a task of its own, with a deadline that adapts to
its target (push_deadline.py), and a target whose push is still in flight is left out of the
rounds until it ends (never two pushes in flight to one target), so one slow or black-holed peer
holds back neither the rounds nor the pushes to the others. An Ack arriving rounds later is folded
in as any Ack (a target's acknowledgements only grow; `GossipRounds.links_generation` drops one that
answers a message sent before the targets' links were reset).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import grpc

from shieldes.cluster import gossip_pb2, gossip_pb2_grpc
from shieldes.cluster.gossip_rounds import GossipRounds
from shieldes.cluster.gossip_stats import GossipStats, PeerStats, unreached
from shieldes.cluster.gossip_tls import GossipCertificates
from shieldes.cluster.push_deadline import Outcome, PushTimer, deadline, observe
from shieldes.cluster.wire import MAX_MESSAGE_BYTES, GossipRejected, from_proto, open_envelope, seal, sign, to_proto
from shieldes.tasks import cancel_and_wait

__all__ = ["MAX_MESSAGE_BYTES", "Gossip", "GossipRejected", "GossipStats", "PeerStats", "from_proto",
           "open_envelope", "seal", "sign", "to_proto"]

log = logging.getLogger(__name__)

# A kept channel whose peer refused reconnects with gRPC's backoff (1 s growing 1.6 times, up to
# 120 s), failing every push meanwhile: a peer back after 20 s down took none for 6 s more, and
# after minutes down for up to two minutes. Capped at 1 s, a restarted peer takes pushes within about
# a second (tests/integration/test_gossip_deadlines.py).
_CHANNEL_OPTIONS = (("grpc.initial_reconnect_backoff_ms", 200), ("grpc.max_reconnect_backoff_ms", 1000))


def _port_free(host: str, port: int) -> bool:
    try:
        with socket.create_server((host or "0.0.0.0", port)):
            return True
    except OSError:
        return False


# --- the service -------------------------------------------------------------------------------


class _Servicer(gossip_pb2_grpc.GossipServicer):
    def __init__(self, gossip: Gossip) -> None:
        self._gossip = gossip

    async def Push(self, request: gossip_pb2.Envelope, context: Any) -> gossip_pb2.Ack:
        return self._gossip.receive(request)

class Gossip(GossipRounds):
    """GossipRounds on the network. `rounds`: GossipRounds' settings (node id, secret, host and
    port, interval, callbacks, fanout...). `timeout`: the base push deadline; a target's own grows
    from it, up to `max_timeout` (default half the node timeout: push_deadline.py)."""

    def __init__(self, *, timeout: float = 1.0, max_timeout: float | None = None,
                 targets: Callable[[], list[str]] = list, on_sent: Callable[[int, bool], None] | None = None,
                 tls: GossipCertificates | None = None, **rounds: Any) -> None:
        super().__init__(**rounds)
        self.timeout = timeout
        self.max_timeout = max(timeout, self._node_timeout / 2 if max_timeout is None else max_timeout)
        self._pushes: dict[str, asyncio.Task[bool]] = {}  # target -> its push in flight (at most one)
        self._untaken: set[str] = set()  # targets whose latest push ended not taken (GossipRounds._retry)
        self._targets = targets
        self._on_sent = on_sent
        self._tls = self.certificates = tls  # mutual TLS on top of the HMAC (gossip_tls.py); None: plaintext
        self._server: grpc.aio.Server | None = None
        self._channels: dict[str, tuple[grpc.aio.Channel, gossip_pb2_grpc.GossipStub]] = {}
        self._channels_generation = 0  # of the TLS set the channels were opened with
        self._closing: set[asyncio.Task[None]] = set()  # channels of an older TLS set, closing
        self._task: asyncio.Task[None] | None = None
        self._tried_since: dict[str, float] = {}  # target -> when pushes to it began (it counts as unreached from then)
        self._unreached: set[str] = set()  # targets reported as not taking this node's pushes

    async def bind(self) -> None:
        """Start serving (binds the port, so `address` is known) without pushing yet."""
        if self._server is not None:
            return
        if self.port and not _port_free(self._host, self.port):  # before gRPC logs its own bind error
            raise GossipRejected(f"cannot listen for gossip on {self._host}:{self.port}: the port is in use; "
                                 "set SHIELDES_GOSSIP_PORT (or --gossip-port)", code="bind")
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)])
        gossip_pb2_grpc.add_GossipServicer_to_server(_Servicer(self), server)  # type: ignore[no-untyped-call]
        try:
            address = f"{self._host}:{self.port}"
            if self._tls is None:
                bound = server.add_insecure_port(address)
            else:
                bound = server.add_secure_port(address, self._tls.server_credentials())
        except RuntimeError:
            bound = 0
        if bound == 0:
            raise GossipRejected(f"cannot listen for gossip on {self._host}:{self.port}; is the port in use? "
                                 "set SHIELDES_GOSSIP_PORT (or --gossip-port)", code="bind")
        self.port = bound
        await server.start()
        self._server = server

    async def start(self) -> None:
        await self.bind()
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="shieldes-gossip")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await cancel_and_wait(*self._pushes.values())
        await cancel_and_wait(*self._closing)
        for channel, _ in self._channels.values():
            await channel.close()
        self._channels.clear()
        if self._server is not None:
            await self._server.stop(grace=0.5)
            self._server = None

    async def push_once(self, quiet_ok: bool = False, wait: bool = True) -> int:
        """One round: a message to every target picked whose previous push has ended. `wait`: wait
        for this round's pushes and return how many accepted it; else return 0 at once, the pushes
        ending on their own (the push loop). `quiet_ok`: the round may be left out if it would carry
        only acknowledgements (GossipRounds.prepare)."""
        known = [t for t in self._targets() if t != self.address]
        for gone in (set(self._channels) | set(self._pushes)) - set(known):
            await cancel_and_wait(self._pushes.get(gone))
            if (entry := self._channels.pop(gone, None)) is not None:
                await entry[0].close()
        self.forget(known)
        busy = set(self._pushes)
        targets = [t for t in self.pick(known) if t not in busy]
        if known and not targets:  # every target picked is still busy with an earlier push
            self._report_unreached(known, sorted(busy))
            return 0
        seq, messages = self.prepare(targets, quiet_ok)
        if targets and not messages:
            self.stats.quiet_rounds += 1
            return 0
        if self._on_sent is not None:
            self._on_sent(seq, self.asking)
        pushes = [self._start_push(t, seq, *messages[t]) for t in targets]
        self.stats.rounds += 1
        taken = 0
        if wait:
            results = await asyncio.gather(*pushes, return_exceptions=True)
            taken = sum(1 for r in results if r is True)
        self._report_unreached(known, sorted(busy | set(targets)))
        return taken

    def forget(self, known: list[str]) -> None:
        super().forget(known)
        for target in set(self.stats.push_deadline) - set(known):
            self.stats.push_deadline.pop(target, None)
            self.stats.push_timers.pop(target, None)
        self._untaken &= set(known)

    def push_deadline(self, target: str) -> float:
        """The deadline the next push to `target` gets (push_deadline.deadline)."""
        return deadline(self.stats.push_timers.get(target, PushTimer()), base=self.timeout, cap=self.max_timeout)

    def _start_push(self, target: str, seq: int, base: int, envelope: gossip_pb2.Envelope) -> asyncio.Task[bool]:
        task = asyncio.create_task(self._push(target, seq, base, envelope, self.links_generation),
                                   name=f"shieldes-gossip-push-{target}")
        self._pushes[target] = task

        def ended(done: asyncio.Task[bool]) -> None:  # (also when cancelled before it ran)
            if self._pushes.get(target) is done:
                del self._pushes[target]
        task.add_done_callback(ended)
        return task

    def _report_unreached(self, known: list[str], pushed: list[str]) -> None:
        """Say so (once, and once more when it ends) when a live peer has taken none of this node's
        pushes for a node timeout: it holds nothing this node settled since, so a crash of this node
        now loses that usage (docs/guarantees.md). Pushes that time out for that long (a black hole,
        or every push missing its deadline on an overloaded machine) are not routine; a refused one
        (nothing listens: the peer is down or restarting) is, and is left to the peer's heartbeat."""
        now = self._clock()
        for target in pushed:
            self._tried_since.setdefault(target, now)
        for gone in set(self._tried_since) - set(known):
            del self._tried_since[gone]
        ok, refused = self.stats.pushed_ok, self.stats.refused
        live = [t for t in pushed if refused.get(t, 0.0) <= ok.get(t, 0.0)]
        stalled = set(unreached(ok, self._tried_since, live, now=now, within=self._node_timeout))
        for target in sorted(stalled - self._unreached):
            last = ok.get(target)
            log.warning("gossip to %s: no push taken for %s; that peer holds none of this node's usage since, "
                        "and could not append it if this node crashed now", target,
                        f"{now - last:.1f}s" if last else "as long as this node has pushed to it")
        for target in sorted((self._unreached & set(pushed)) - stalled):
            if ok.get(target, 0.0) >= now - self._node_timeout:
                log.warning("gossip to %s: pushes are taken again", target)
        self._unreached = ((self._unreached & set(known)) - set(pushed)) | stalled

    async def _push(self, target: str, seq: int, base: int, envelope: gossip_pb2.Envelope,
                    generation: int) -> bool:
        """One push as a task nobody may await (the push loop's): whatever fails is logged here."""
        try:
            return await self._send(target, seq, base, envelope, generation)
        except Exception:
            log.exception("gossip push to %s failed", target)
            self._ended(target, seq, taken=False)
            return False

    async def _send(self, target: str, seq: int, base: int, envelope: gossip_pb2.Envelope,
                    generation: int) -> bool:
        timeout = self.stats.push_deadline[target] = self.push_deadline(target)
        started = time.monotonic()
        tls = self._tls
        if tls is not None:
            tls.maybe_check()
            if tls.generation != self._channels_generation:  # renewed: new channels present the new set
                self._channels_generation = tls.generation
                self._retire(list(self._channels.values()))
                self._channels.clear()
        try:
            entry = self._channels.get(target)
            if entry is None:
                channel = (grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS) if tls is None
                           else grpc.aio.secure_channel(target, tls.current.channel_credentials(),
                                                        options=_CHANNEL_OPTIONS))
                stub = gossip_pb2_grpc.GossipStub(channel)  # type: ignore[no-untyped-call]
                entry = self._channels[target] = (channel, stub)
            ack = await entry[1].Push(envelope, timeout=timeout)
        except grpc.aio.AioRpcError as exc:  # a peer down or slow: it drops out of the view by age
            self.stats.send_errors += 1
            code = exc.code()
            if code == grpc.StatusCode.UNAVAILABLE:  # nothing listens there (a slow peer times out)
                self.stats.refused[target] = self._clock()
                self._timed(target, Outcome.REFUSED)
            elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
                self.stats.push_timeouts += 1
                self._timed(target, Outcome.TIMED_OUT)
            else:
                self._timed(target, Outcome.FAILED)
            log.debug("gossip to %s failed: %s (deadline %.2fs)", target, code, timeout)
            self._ended(target, seq, taken=False)
            return False
        self._timed(target, Outcome.ANSWERED, time.monotonic() - started)
        self.stats.sent += 1
        self.stats.sent_bytes += len(envelope.payload) + len(envelope.signature)
        if base:
            self.stats.deltas_sent += 1
        else:
            self.stats.full_sent += 1
        self.stats.pushed_ok[target] = self._clock()
        if generation == self.links_generation:  # else: links were reset since it was sent (links_generation)
            self.acknowledged(target, seq, base, ack)
        if ack.log_head and self._on_head is not None:
            self._on_head(ack.log_head)
        self._ended(target, seq, taken=bool(ack.accepted))
        return bool(ack.accepted)

    def _retire(self, entries: list[tuple[grpc.aio.Channel, gossip_pb2_grpc.GossipStub]]) -> None:
        """Close channels once the pushes in flight on them had their deadline."""
        async def close() -> None:
            await asyncio.sleep(self.max_timeout)
            for channel, _ in entries:
                await channel.close()

        if entries:
            task = asyncio.get_running_loop().create_task(close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def _timed(self, target: str, outcome: Outcome, rtt: float = 0.0) -> None:
        timer = self.stats.push_timers[target] = observe(self.stats.push_timers.get(target, PushTimer()), outcome, rtt)
        self.stats.push_deadline[target] = deadline(timer, base=self.timeout, cap=self.max_timeout)

    def _ended(self, target: str, seq: int, *, taken: bool) -> None:
        """A push ended: a round goes out next if it was not taken (quiet.round_due's `retry`), or if
        rounds went out while it was in flight (that target missed them: its next push catches up)."""
        if taken:
            self._untaken.discard(target)
        else:
            self._untaken.add(target)
        self._retry = bool(self._untaken)
        if self._seq > seq:
            self._owed = True

    async def _loop(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.push_once(quiet_ok=True, wait=False)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("gossip round failed")
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))
