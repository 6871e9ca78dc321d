"""Gossip transport: a grpc.aio service per node and a push loop to every alive peer.

Each round the node sends a State (its own CRDT component, see view.py) to every target:
serialised, zstd-compressed, HMAC-SHA256 signed with SHIELDES_CLUSTER_SECRET. A target that said it
understands deltas gets only what changed since the newest message it accepted (delta.py); the
whole state goes on first contact, to a target that lacks the delta's base, periodically (anti-
entropy) and always to older releases. Receivers refuse a
bad signature, a malformed payload, and a (node, boot_epoch, seq) not newer than the last accepted
one (replays and stale messages), counting each refusal. Accepted states merge into `view`; the
sender's log head is handed to `on_head` (a wake-up hint for the projector).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import grpc
import zstandard

from shieldes.cluster import delta, gossip_pb2, gossip_pb2_grpc, view
from shieldes.cluster.delta import Link, Part
from shieldes.cluster.gossip_tls import GossipTLS
from shieldes.cluster.view import Health, NodeState, View, ViewCell
from shieldes.errors import ShieldesError
from shieldes.tasks import cancel_and_wait

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 8 * 1024 * 1024


class GossipRejected(ShieldesError):
    status = 400
    code = "gossip_rejected"


# --- wire format (pure) ------------------------------------------------------------------------


def sign(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, payload, hashlib.sha256).digest()


def seal(state: gossip_pb2.State, secret: bytes, level: int = 3) -> gossip_pb2.Envelope:
    payload = zstandard.ZstdCompressor(level=level).compress(state.SerializeToString())
    return gossip_pb2.Envelope(payload=payload, signature=sign(secret, payload))


def open_envelope(envelope: gossip_pb2.Envelope, secret: bytes) -> gossip_pb2.State:
    """Verify, then decompress and parse. Raises GossipRejected with code signature|malformed."""
    if not hmac.compare_digest(sign(secret, envelope.payload), envelope.signature):
        raise GossipRejected("bad gossip signature: check SHIELDES_CLUSTER_SECRET on every node",
                             code="signature")
    try:
        raw = zstandard.ZstdDecompressor().decompress(envelope.payload, max_output_size=MAX_MESSAGE_BYTES)
        state: gossip_pb2.State = gossip_pb2.State.FromString(raw)
    except Exception as exc:  # zstd or protobuf: the peer runs an incompatible version
        raise GossipRejected(f"malformed gossip payload: {exc}", code="malformed") from exc
    if not state.node_id:
        raise GossipRejected("gossip payload without a node id", code="malformed")
    return state


def to_proto(ns: NodeState, *, sent_at_ms: int, gossip_address: str,
             relayed: Iterable[NodeState] = ()) -> gossip_pb2.State:
    msg = gossip_pb2.State(node_id=ns.node_id, boot_epoch=ns.boot_epoch, seq=ns.seq, log_head=ns.log_head,
                           sent_at_ms=sent_at_ms, gossip_address=gossip_address)
    for ident in ns.windows.keys() | ns.allowances.keys():
        req, tok, released = ns.windows.get(ident, (0, 0, 0))
        msg.windows.add(subject=ident[0], window=ident[1], start=ident[2], requests=req, tokens=tok,
                        tokens_released=released, allowance=ns.allowances.get(ident, 0))
    for other in relayed:
        c = msg.relayed.add(node_id=other.node_id, boot_epoch=other.boot_epoch)
        for (subject, window, start), (req, tok, released) in other.windows.items():
            c.windows.add(subject=subject, window=window, start=start, requests=req, tokens=tok,
                          tokens_released=released)
    for (epoch, seq, subject, day), (req, tok, cost) in ns.pending.items():
        msg.pending.add(flush_epoch=epoch, flush_seq=seq, subject=subject, day=day, requests=req, tokens=tok,
                        cost_nusd=cost)
    for (epoch, seq, key_id, team_id, provider, model, hour), (req, prompt, completion, cost) in ns.unflushed.items():
        msg.unflushed.add(flush_epoch=epoch, flush_seq=seq, key_id=key_id, team_id=team_id or "", provider=provider,
                          model=model, hour=hour, requests=req, prompt_tokens=prompt,
                          completion_tokens=completion, cost_nusd=cost)
    for subject, (reserved, released) in ns.reservations.items():
        msg.reservations.add(subject=subject, reserved_nusd=reserved, released_nusd=released)
    for deployment, h in ns.health.items():
        msg.health.add(deployment=deployment, latency_ms=h.latency_ms, error_rate=h.error_rate,
                       requests=h.requests, open=h.open)
    for peer, (epoch, seq) in ns.seen.items():
        msg.seen.add(node_id=peer, boot_epoch=epoch, seq=seq)
    return msg


def part_to_proto(part: Part, *, base: int, sent_at_ms: int, gossip_address: str) -> gossip_pb2.State:
    """A delta (or, with base 0, whole) message from its content (delta.unflatten)."""
    msg = to_proto(part.state, sent_at_ms=sent_at_ms, gossip_address=gossip_address, relayed=part.relayed)
    msg.base_seq = base
    msg.health_removed.extend(part.removed_health)
    msg.seen_removed.extend(part.removed_seen)
    return msg


def from_proto(msg: gossip_pb2.State) -> NodeState:
    return NodeState(
        node_id=msg.node_id,
        boot_epoch=msg.boot_epoch,
        seq=msg.seq,
        log_head=msg.log_head,
        windows={(w.subject, w.window, w.start): (w.requests, w.tokens, w.tokens_released) for w in msg.windows},
        pending={
            (p.flush_epoch, p.flush_seq, p.subject, p.day): (p.requests, p.tokens, p.cost_nusd)
            for p in msg.pending
        },
        unflushed={
            (u.flush_epoch, u.flush_seq, u.key_id, u.team_id or None, u.provider, u.model, u.hour):
                (u.requests, u.prompt_tokens, u.completion_tokens, u.cost_nusd)
            for u in msg.unflushed
        },
        reservations={r.subject: (r.reserved_nusd, r.released_nusd) for r in msg.reservations},
        health={h.deployment: Health(h.latency_ms, h.error_rate, h.requests, h.open) for h in msg.health},
        allowances={(w.subject, w.window, w.start): w.allowance for w in msg.windows if w.allowance},
        seen={s.node_id: (s.boot_epoch, s.seq) for s in msg.seen},
    )


def relayed_from_proto(msg: gossip_pb2.State) -> list[NodeState]:
    """The other boots' counts a message relays, each as a state holding only its windows."""
    return [NodeState(c.node_id, c.boot_epoch, windows={
        (w.subject, w.window, w.start): (w.requests, w.tokens, w.tokens_released) for w in c.windows})
        for c in msg.relayed if c.node_id]


def is_newer(last: tuple[int, int] | None, epoch: int, seq: int) -> bool:
    """Accept only (boot_epoch, seq) above the last accepted from that node: no replays, no rewinds."""
    return last is None or (epoch, seq) > last


def _port_free(host: str, port: int) -> bool:
    try:
        with socket.create_server((host or "0.0.0.0", port)):
            return True
    except OSError:
        return False


# --- stats -------------------------------------------------------------------------------------


@dataclass
class PeerStats:
    received: int = 0
    received_bytes: int = 0
    last_seen: float = 0.0  # monotonic
    last_seen_wall: float = 0.0
    boot_epoch: int = 0
    seq: int = 0
    address: str = ""


@dataclass
class GossipStats:
    sent: int = 0
    sent_bytes: int = 0
    send_errors: int = 0
    received: int = 0
    received_bytes: int = 0
    rejected_signature: int = 0
    rejected_stale: int = 0
    rejected_malformed: int = 0
    full_sent: int = 0  # whole states sent (first contact, anti-entropy, older peers, need_full)
    deltas_sent: int = 0
    need_full: int = 0  # deltas this node could not apply (it lacked the base): answered need_full
    rounds: int = 0
    peers: dict[str, PeerStats] = field(default_factory=dict)
    pushed_ok: dict[str, float] = field(default_factory=dict)  # target address -> monotonic time of its last ack
    refused: dict[str, float] = field(default_factory=dict)  # target address -> last "connection refused"

    def to_dict(self) -> dict[str, Any]:
        now = time.time()
        return {
            "sent": self.sent, "sent_bytes": self.sent_bytes, "send_errors": self.send_errors,
            "received": self.received, "received_bytes": self.received_bytes,
            "rejected_signature": self.rejected_signature, "rejected_stale": self.rejected_stale,
            "rejected_malformed": self.rejected_malformed,
            "full_sent": self.full_sent, "deltas_sent": self.deltas_sent, "need_full": self.need_full,
            "peers": {
                node: {"received": p.received, "bytes": p.received_bytes, "address": p.address,
                       "last_seen_age": round(now - p.last_seen_wall, 3) if p.last_seen_wall else None}
                for node, p in sorted(self.peers.items())
            },
        }


# --- the service -------------------------------------------------------------------------------


class _Servicer(gossip_pb2_grpc.GossipServicer):
    def __init__(self, gossip: Gossip) -> None:
        self._gossip = gossip

    async def Push(self, request: gossip_pb2.Envelope, context: Any) -> gossip_pb2.Ack:
        return self._gossip.receive(request)


class Gossip:
    def __init__(
        self,
        *,
        node_id: str,
        secret: bytes,
        host: str = "0.0.0.0",
        port: int = 7946,
        advertise_host: str | None = None,
        interval: float = 0.15,
        timeout: float = 1.0,
        targets: Callable[[], list[str]] = list,
        snapshot: Callable[[], NodeState] | None = None,
        on_head: Callable[[int], None] | None = None,
        boot_epoch: Callable[[], int] = lambda: 0,
        local_head: Callable[[], int] = lambda: 0,
        on_state: Callable[[NodeState], None] | None = None,
        view: ViewCell | None = None,
        on_sent: Callable[[int], None] | None = None,
        tls: GossipTLS | None = None,
        deltas: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not secret:
            raise GossipRejected("gossip needs SHIELDES_CLUSTER_SECRET (the same on every node)")
        self.node_id = node_id
        self._secret = secret
        self._host = host
        self.port = port
        self._advertise_host = advertise_host  # what peers dial (SHIELDES_ADVERTISE_HOST), with the bound port
        self.interval = interval
        self.timeout = timeout
        self._targets = targets
        self._snapshot = snapshot or (lambda: NodeState(node_id, boot_epoch()))
        self._on_head = on_head
        self._boot_epoch = boot_epoch
        self._local_head = local_head
        self._on_state = on_state
        self._on_sent = on_sent
        self._tls = tls  # mutual TLS on top of the HMAC (gossip_tls.py); None: plaintext gRPC
        self._deltas = deltas  # advertise that deltas are understood (False: peers send whole states)
        self._clock = clock
        self._versions = delta.Versions()  # what changed in which of this boot's messages
        self._links: dict[str, Link] = {}  # target address -> what it acknowledged
        self._sent_epoch: int | None = None
        self.cell = view if view is not None else ViewCell()  # where accepted messages are folded in
        self.stats = GossipStats()
        self._accepted: dict[str, tuple[int, int]] = {}
        self._seq = 0
        self._server: grpc.aio.Server | None = None
        self._channels: dict[str, tuple[grpc.aio.Channel, gossip_pb2_grpc.GossipStub]] = {}
        self._task: asyncio.Task[None] | None = None
        self.received = asyncio.Event()  # set on every accepted message (tests wait on it)

    @property
    def address(self) -> str:
        host = "127.0.0.1" if self._host in ("0.0.0.0", "::", "") else self._host
        return f"{self._advertise_host or host}:{self.port}"

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
        for channel, _ in self._channels.values():
            await channel.close()
        self._channels.clear()
        if self._server is not None:
            await self._server.stop(grace=0.5)
            self._server = None

    # --- receiving -------------------------------------------------------------------------

    def receive(self, envelope: gossip_pb2.Envelope) -> gossip_pb2.Ack:
        size = len(envelope.payload)
        try:
            msg = open_envelope(envelope, self._secret)
        except GossipRejected as exc:
            if exc.code == "signature":
                self.stats.rejected_signature += 1
            else:
                self.stats.rejected_malformed += 1
            return gossip_pb2.Ack(accepted=False, reason=exc.code or "rejected")
        if msg.node_id == self.node_id:
            return gossip_pb2.Ack(accepted=False, reason="self")
        if not is_newer(self._accepted.get(msg.node_id), msg.boot_epoch, msg.seq):
            self.stats.rejected_stale += 1
            return gossip_pb2.Ack(accepted=False, reason="stale", deltas=self._deltas)
        now = self._clock()
        state = from_proto(msg)
        if msg.base_seq:
            if not delta.can_apply(self.cell.value, msg.node_id, msg.boot_epoch, msg.base_seq):
                self.stats.need_full += 1
                return gossip_pb2.Ack(accepted=False, reason="need_full", need_full=True, deltas=self._deltas)
            state = delta.apply(self.cell.value.components[(msg.node_id, msg.boot_epoch)],
                                Part(state, removed_health=list(msg.health_removed),
                                     removed_seen=list(msg.seen_removed)))
        self._accepted[msg.node_id] = (msg.boot_epoch, msg.seq)
        if not self.cell.accept(state, now, whole=bool(msg.base_seq)):  # an older boot than one already known
            self.stats.rejected_stale += 1
            return gossip_pb2.Ack(accepted=False, reason="superseded", deltas=self._deltas)
        peer = self.stats.peers.setdefault(msg.node_id, PeerStats())
        peer.received += 1
        peer.received_bytes += size
        peer.last_seen, peer.last_seen_wall = now, time.time()
        peer.boot_epoch, peer.seq, peer.address = msg.boot_epoch, msg.seq, msg.gossip_address
        self.stats.received += 1
        self.stats.received_bytes += size
        for other in relayed_from_proto(msg):
            self.cell.accept_relayed(other, self.node_id, self._boot_epoch())
        if self._on_head is not None and msg.log_head:
            self._on_head(msg.log_head)
        if self._on_state is not None:
            self._on_state(state)
        self.received.set()
        return gossip_pb2.Ack(accepted=True, log_head=self._local_head(), deltas=self._deltas)

    def recently_seen(self, within: float) -> list[str]:
        """Peers heard from in the last `within` seconds (alive by gossip, even without Postgres)."""
        now = self._clock()
        return sorted(n for n, p in self.stats.peers.items() if now - p.last_seen <= within)

    def reachable(self, within: float) -> list[str]:
        """Peers (by node id) that acknowledged one of our pushes in the last `within` seconds."""
        now = self._clock()
        ok = {a for a, t in self.stats.pushed_ok.items() if now - t <= within}
        return sorted(n for n, p in self.stats.peers.items() if p.address in ok)

    def gone(self, silent_for: float) -> list[str]:
        """Peers (by node id) silent for `silent_for` seconds whose address refused our latest push:
        nothing listens there any more, the process is dead (a slow or paused peer times out instead)."""
        now, st = self._clock(), self.stats
        return sorted(n for n, p in st.peers.items()
                      if now - p.last_seen > silent_for
                      and st.refused.get(p.address, 0.0) > st.pushed_ok.get(p.address, 0.0))

    @property
    def view(self) -> View:
        return self.cell.value

    # --- sending ---------------------------------------------------------------------------

    def _own(self) -> tuple[NodeState, list[NodeState]]:
        epoch = self._boot_epoch()
        if epoch != self._sent_epoch:  # a new boot: sequences restart, nothing acknowledged yet
            self._sent_epoch, self._versions, self._links = epoch, delta.Versions(), {}
        own = replace(self._snapshot(), node_id=self.node_id, boot_epoch=epoch, seq=self._seq,
                      seen=dict(self._accepted))
        return own, view.relayed(self.cell.value)

    def prepare(self, targets: list[str]) -> tuple[int, dict[str, tuple[int, gossip_pb2.Envelope]]]:
        """One round's messages: (seq, target -> (base, envelope)); targets with the same base
        share one message (base 0: the whole state)."""
        self._seq += 1
        seq = self._seq
        own, relayed = self._own()
        entries = delta.flatten(own, relayed)
        self._versions.record(entries, seq)
        sent_at, address = time.time_ns() // 1_000_000, self.address
        by_base: dict[int, gossip_pb2.Envelope] = {}
        out: dict[str, tuple[int, gossip_pb2.Envelope]] = {}
        for target in targets:
            base = delta.base_for(self._links.get(target), seq, self._versions.floor)
            envelope = by_base.get(base)
            if envelope is None:
                if base == 0:
                    msg = to_proto(own, sent_at_ms=sent_at, gossip_address=address, relayed=relayed)
                else:
                    header = NodeState(self.node_id, own.boot_epoch, seq, own.log_head)
                    part = delta.unflatten(header, *self._versions.since(base))
                    msg = part_to_proto(part, base=base, sent_at_ms=sent_at, gossip_address=address)
                envelope = by_base[base] = seal(msg, self._secret)
            out[target] = (base, envelope)
        return seq, out

    def acknowledged(self, target: str, seq: int, base: int, ack: gossip_pb2.Ack) -> None:
        """Note a target's answer to message `seq` (sent with `base`)."""
        link = self._links.get(target) or Link(phase=delta.phase_of(target))
        self._links[target] = delta.acknowledged(link, seq, base, accepted=ack.accepted, deltas=ack.deltas,
                                                 need_full=ack.need_full)

    async def push_once(self) -> int:
        """One round: a message to every target; returns how many accepted it."""
        targets = [t for t in self._targets() if t != self.address]
        seq, messages = self.prepare(targets)
        if self._on_sent is not None:
            self._on_sent(seq)
        for gone in set(self._channels) - set(targets):
            channel, _ = self._channels.pop(gone)
            await channel.close()
        for gone in set(self._links) - set(targets):
            del self._links[gone]
        results = await asyncio.gather(*(self._send(t, seq, *messages[t]) for t in targets))
        self.stats.rounds += 1
        return sum(results)

    async def _send(self, target: str, seq: int, base: int, envelope: gossip_pb2.Envelope) -> bool:
        entry = self._channels.get(target)
        if entry is None:
            channel = (grpc.aio.insecure_channel(target) if self._tls is None
                       else grpc.aio.secure_channel(target, self._tls.channel_credentials()))
            stub = gossip_pb2_grpc.GossipStub(channel)  # type: ignore[no-untyped-call]
            entry = self._channels[target] = (channel, stub)
        try:
            ack = await entry[1].Push(envelope, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:  # a peer down or slow: it drops out of the view by age
            self.stats.send_errors += 1
            if exc.code() == grpc.StatusCode.UNAVAILABLE:  # nothing listens there (a slow peer times out)
                self.stats.refused[target] = self._clock()
            log.debug("gossip to %s failed: %s", target, exc.code())
            return False
        self.stats.sent += 1
        self.stats.sent_bytes += len(envelope.payload) + len(envelope.signature)
        if base:
            self.stats.deltas_sent += 1
        else:
            self.stats.full_sent += 1
        self.stats.pushed_ok[target] = self._clock()
        self.acknowledged(target, seq, base, ack)
        if ack.log_head and self._on_head is not None:
            self._on_head(ack.log_head)
        return bool(ack.accepted)

    async def _loop(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.push_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("gossip round failed")
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))
