"""Gossip wire format (pure): the signed, zstd-compressed envelope and the State message to and
from the cluster view's values (view.py)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any

import zstandard

from shieldes.cluster import gossip_pb2
from shieldes.cluster.delta import Part
from shieldes.cluster.digest import UNKNOWN, Entry, Pulled
from shieldes.cluster.news import Rumor
from shieldes.cluster.view import Health, NodeState, PendingId, UnflushedId, WindowId
from shieldes.errors import ShieldesError

MAX_MESSAGE_BYTES = 8 * 1024 * 1024


class GossipRejected(ShieldesError):
    status = 400
    code = "gossip_rejected"


# --- wire format (pure) ------------------------------------------------------------------------


def sign(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, payload, hashlib.sha256).digest()


def seal(state: gossip_pb2.State, secret: bytes, level: int = 3) -> gossip_pb2.Envelope:
    return Sealer(secret, level).seal(state)


def open_envelope(envelope: gossip_pb2.Envelope, secret: bytes) -> gossip_pb2.State:
    """Verify, then decompress and parse. Raises GossipRejected with code signature|malformed."""
    return Sealer(secret).open(envelope)


class Sealer:
    """`seal` and `open_envelope` for one secret, keeping the zstd contexts and the keyed HMAC state:
    making them anew cost more than compressing and signing a small message (about 8, 5 and 2 us
    of the 20 us a round trip spent on them). One per node, used from its event loop only (the
    contexts are not thread-safe)."""

    def __init__(self, secret: bytes, level: int = 3) -> None:
        self._compressor = zstandard.ZstdCompressor(level=level)
        self._decompressor = zstandard.ZstdDecompressor()
        self._mac = hmac.new(secret, digestmod=hashlib.sha256)

    def sign(self, payload: bytes) -> bytes:
        mac = self._mac.copy()
        mac.update(payload)
        return mac.digest()

    def seal(self, state: gossip_pb2.State) -> gossip_pb2.Envelope:
        payload = self._compressor.compress(state.SerializeToString())
        return gossip_pb2.Envelope(payload=payload, signature=self.sign(payload))

    def open(self, envelope: gossip_pb2.Envelope) -> gossip_pb2.State:
        """Verify, then decompress and parse. Raises GossipRejected with code signature|malformed."""
        if not hmac.compare_digest(self.sign(envelope.payload), envelope.signature):
            raise GossipRejected("bad gossip signature: check SHIELDES_CLUSTER_SECRET on every node",
                                 code="signature")
        try:
            raw = self._decompressor.decompress(envelope.payload, max_output_size=MAX_MESSAGE_BYTES)
            state: gossip_pb2.State = gossip_pb2.State.FromString(raw)
        except Exception as exc:  # zstd or protobuf: the peer runs an incompatible version
            raise GossipRejected(f"malformed gossip payload: {exc}", code="malformed") from exc
        if not state.node_id:
            raise GossipRejected("gossip payload without a node id", code="malformed")
        return state


def to_proto(ns: NodeState, *, sent_at_ms: int, gossip_address: str,
             relayed: Iterable[NodeState] = (), labels: Mapping[Entry, int] | None = None) -> gossip_pb2.State:
    """`labels`: entry -> the label code (digest.code) of each monotone entry, sent as its exact label
    (the message it last changed in; a whole state to a peer that answers digest pulls)."""
    msg = gossip_pb2.State(node_id=ns.node_id, boot_epoch=ns.boot_epoch, seq=ns.seq, log_head=ns.log_head,
                           sent_at_ms=sent_at_ms, gossip_address=gossip_address)
    for ident in ns.windows.keys() | ns.allowances.keys():
        req, tok, released = ns.windows.get(ident, (0, 0, 0))
        msg.windows.add(subject=ident[0], window=ident[1], start=ident[2], requests=req, tokens=tok,
                        tokens_released=released, allowance=ns.allowances.get(ident, 0))
    add_relayed(msg, relayed)
    _add_usage(msg, ns)
    if labels:
        _add_labels(msg, labels)
    for deployment, h in ns.health.items():
        msg.health.add(deployment=deployment, latency_ms=h.latency_ms, error_rate=h.error_rate,
                       requests=h.requests, open=h.open)
    for peer, (epoch, seq) in ns.seen.items():
        msg.seen.add(node_id=peer, boot_epoch=epoch, seq=seq)
    return msg


def _add_usage(msg: gossip_pb2.State | gossip_pb2.Counts, ns: NodeState) -> None:
    """Pending usage, unflushed deltas and reservations (the same fields in State and Counts)."""
    for (epoch, seq, subject, day), (req, tok, cost) in ns.pending.items():
        msg.pending.add(flush_epoch=epoch, flush_seq=seq, subject=subject, day=day, requests=req, tokens=tok,
                        cost_nusd=cost)
    for (epoch, seq, key_id, team_id, provider, model, hour), (req, prompt, completion, cost, images, seconds,
                                                                characters, web, files, containers,
                                                                tools) in ns.unflushed.items():
        msg.unflushed.add(flush_epoch=epoch, flush_seq=seq, key_id=key_id, team_id=team_id or "", provider=provider,
                          model=model, hour=hour, requests=req, prompt_tokens=prompt,
                          completion_tokens=completion, cost_nusd=cost, images=images, audio_seconds=seconds,
                          characters=characters, web_searches=web, file_searches=files, containers=containers,
                          tools_nusd=tools)
    for subject, (reserved, released) in ns.reservations.items():
        msg.reservations.add(subject=subject, reserved_nusd=reserved, released_nusd=released)


def _add_labels(msg: gossip_pb2.State, labels: Mapping[Entry, int]) -> None:
    for w in msg.windows:
        if w.requests or w.tokens or w.tokens_released:  # (not a window named for its unused claim only)
            w.label = labels.get(("w", _window_id(w)), 0) >> 1
    for p in msg.pending:
        p.label = labels.get(("p", _pending_id(p)), 0) >> 1
    for u in msg.unflushed:
        u.label = labels.get(("u", _unflushed_id(u)), 0) >> 1
    for r in msg.reservations:
        r.label = labels.get(("r", r.subject), 0) >> 1


def add_relayed(msg: gossip_pb2.State, relayed: Iterable[NodeState]) -> None:
    """Other boots' entries the message relays (Counts: windows, and with bounded fanout the rest
    of their monotone entries)."""
    for other in relayed:
        c = msg.relayed.add(node_id=other.node_id, boot_epoch=other.boot_epoch)
        for (subject, window, start), (req, tok, released) in other.windows.items():
            c.windows.add(subject=subject, window=window, start=start, requests=req, tokens=tok,
                          tokens_released=released)
        _add_usage(c, other)


def add_pulled(msg: gossip_pb2.State, pulled: Iterable[Pulled]) -> None:
    """A digest answer's components (digest.answer) as relayed Counts with their versions."""
    for p in pulled:
        add_relayed(msg, [p.state])
        c = msg.relayed[-1]
        c.since, c.version, c.label, c.exact, c.windows_only = p.since, p.version, p.label, p.exact, p.windows_only


def add_news(msg: gossip_pb2.State, rumors: Iterable[Rumor]) -> None:
    """Forwarded news (news.py) as relayed Counts marked `news`, with their label (exact) and hops."""
    for r in rumors:
        add_relayed(msg, [r.state])
        c = msg.relayed[-1]
        c.label, c.exact, c.news, c.hops = r.label, True, True, r.hops


def pulled_from_proto(msg: gossip_pb2.State) -> list[Pulled]:
    return [Pulled(NodeState(c.node_id, c.boot_epoch, **_usage(c)), c.since, c.version, c.label or UNKNOWN,
                   c.exact, c.windows_only) for c in msg.relayed if c.node_id]


def part_to_proto(part: Part, *, base: int, sent_at_ms: int, gossip_address: str) -> gossip_pb2.State:
    """A delta (or, with base 0, whole) message from its content (delta.unflatten)."""
    msg = to_proto(part.state, sent_at_ms=sent_at_ms, gossip_address=gossip_address, relayed=part.relayed)
    msg.base_seq = base
    msg.health_removed.extend(part.removed_health)
    msg.seen_removed.extend(part.removed_seen)
    return msg


def _window_id(w: gossip_pb2.WindowCount) -> WindowId:
    return (w.subject, w.window, w.start)


def _pending_id(p: gossip_pb2.PendingUsage) -> PendingId:
    return (p.flush_epoch, p.flush_seq, p.subject, p.day)


def _unflushed_id(u: gossip_pb2.UnflushedDelta) -> UnflushedId:
    return (u.flush_epoch, u.flush_seq, u.key_id, u.team_id or None, u.provider, u.model, u.hour)


def _usage(msg: gossip_pb2.State | gossip_pb2.Counts) -> dict[str, Any]:
    return {
        "windows": {_window_id(w): (w.requests, w.tokens, w.tokens_released) for w in msg.windows},
        "pending": {_pending_id(p): (p.requests, p.tokens, p.cost_nusd) for p in msg.pending},
        "unflushed": {_unflushed_id(u): (u.requests, u.prompt_tokens, u.completion_tokens, u.cost_nusd, u.images,
                                         u.audio_seconds, u.characters, u.web_searches, u.file_searches,
                                         u.containers, u.tools_nusd) for u in msg.unflushed},
        "reservations": {r.subject: (r.reserved_nusd, r.released_nusd) for r in msg.reservations},
    }


def labels_from_proto(msg: gossip_pb2.State) -> dict[Entry, int]:
    """The exact labels a whole state gives its entries (to_proto's `labels`), those given only."""
    out: dict[Entry, int] = {("w", _window_id(w)): w.label for w in msg.windows if w.label}
    out.update((("p", _pending_id(p)), p.label) for p in msg.pending if p.label)
    out.update((("u", _unflushed_id(u)), u.label) for u in msg.unflushed if u.label)
    out.update((("r", r.subject), r.label) for r in msg.reservations if r.label)
    return out


def from_proto(msg: gossip_pb2.State) -> NodeState:
    return NodeState(
        node_id=msg.node_id,
        boot_epoch=msg.boot_epoch,
        seq=msg.seq,
        log_head=msg.log_head,
        health={h.deployment: Health(h.latency_ms, h.error_rate, h.requests, h.open) for h in msg.health},
        allowances={(w.subject, w.window, w.start): w.allowance for w in msg.windows if w.allowance},
        seen={s.node_id: (s.boot_epoch, s.seq) for s in msg.seen},
        **_usage(msg),
    )


def relayed_from_proto(msg: gossip_pb2.State) -> list[NodeState]:
    """The other boots' entries a message relays, each as a state holding only those (windows;
    with bounded fanout also pending usage, unflushed deltas and reservations)."""
    return [NodeState(c.node_id, c.boot_epoch, **_usage(c)) for c in msg.relayed if c.node_id]


def is_newer(last: tuple[int, int] | None, epoch: int, seq: int) -> bool:
    """Accept only (boot_epoch, seq) above the last accepted from that node: no replays, no rewinds."""
    return last is None or (epoch, seq) > last
