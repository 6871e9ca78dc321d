"""What one node's gossip decides and folds, without sockets (gossip.py sends and serves it).

Each round the node sends a State (its own CRDT component, see view.py) to its targets:
serialised, zstd-compressed, HMAC-SHA256 signed with SHIELDES_CLUSTER_SECRET (wire.py). A target
that said it understands deltas gets only what changed since the newest message it accepted
(delta.py); the whole state goes on first contact, to a target that lacks the delta's base,
periodically (anti-entropy) and always to older releases. With bounded fanout (fanout.py) a round
pushes to `k` peers in rotation: to a peer that answers digest pulls (digest.py) the gauges, the
round's news and a digest of what this node holds of a share of the other boots, answered in the
Ack with what it lacks; to a peer of the release before, the whole delta and relays of what grew
in this node's view since the previous round; news is forwarded once more (news.py). Peers of an
older release still get a push every round. Receivers refuse a bad signature, a malformed payload,
and a (node, boot_epoch, seq) not newer than the last accepted one (replays and stale messages),
counting each refusal. Accepted states merge into `view`; the sender's log head is handed to
`on_head` (a wake-up hint for the projector).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from shieldes.cluster import delta, digest, gossip_pb2, news, quiet, view, wire
from shieldes.cluster import fanout as fanout_mod
from shieldes.cluster.delta import Link, Part
from shieldes.cluster.gossip_stats import GossipStats, PeerStats
from shieldes.cluster.view import Component, NodeState, View, ViewCell
from shieldes.cluster.wire import GossipRejected, from_proto, to_proto


class GossipRounds:
    """One node's side of the protocol: `pick` and `prepare` build a round's messages, `receive`
    folds a peer's message in and answers it, `acknowledged` takes a target's Ack (and the answer
    to this node's digest it carries)."""

    def __init__(
        self,
        *,
        node_id: str,
        secret: bytes,
        host: str = "0.0.0.0",
        port: int = 7946,
        advertise_host: str | None = None,
        interval: float = 0.15,
        snapshot: Callable[[], NodeState] | None = None,
        on_head: Callable[[int], None] | None = None,
        boot_epoch: Callable[[], int] = lambda: 0,
        local_head: Callable[[], int] = lambda: 0,
        on_state: Callable[[NodeState], None] | None = None,
        view: ViewCell | None = None,
        deltas: bool = True,
        clock: Callable[[], float] = time.monotonic,
        fanout: int | None = None,
        relays: bool = True,
        node_timeout: float = 5.0,
        on_ack: Callable[[str, int, int], None] | None = None,
        relay_onward: bool = True,
        digests: bool = True,
        forward: bool = True,
        spread: Callable[[int, int], fanout_mod.Spread] = fanout_mod.spread_for,
        fanout_from: int = 0,
        exact_labels: bool = True,
        keepalive: float = 0.0,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        if not secret:
            raise GossipRejected("gossip needs SHIELDES_CLUSTER_SECRET (the same on every node)")
        self.node_id = node_id
        self._secret = secret
        self._sealer = wire.Sealer(secret)  # signs, compresses and opens this node's messages
        self._host = host
        self.port = port
        self._advertise_host = advertise_host  # what peers dial (SHIELDES_ADVERTISE_HOST), with the bound port
        self.interval = interval
        self._snapshot = snapshot or (lambda: NodeState(node_id, boot_epoch()))
        self._on_head = on_head
        self._boot_epoch = boot_epoch
        self._local_head = local_head
        self._on_state = on_state
        self._deltas = deltas  # advertise that deltas are understood (False: peers send whole states)
        self._clock = clock
        self._wall_ms = wall_ms  # what messages are stamped with (`sent_at_ms`; quiet.calls_for_answer reads it)
        # pushes per round to peers that take bounded fanout: None every peer (the previous behaviour), 0
        # fanout.fanout_for (log N, every peer within node_timeout / 3); every peer below `fanout_from` nodes
        self.fanout, self._fanout_from = fanout, fanout_from
        self._relays = relays  # advertise bounded fanout in Acks (False: peers push as to an older release)
        self._node_timeout = node_timeout
        self._on_ack = on_ack  # a peer's State.ack: (peer node, this boot's epoch, seq it accepted)
        self._relay = fanout_mod.Relay()  # what grew in the view since the last round, to relay
        self._relay_onward = relay_onward  # relay what was relayed to this node too (False: only what origins told it)
        # answer digest pulls and pull from peers that do (digest.py; with bounded fanout configured:
        # every peer every round needs neither); False: relays, as the release before
        self._pulls = digests and relays and fanout is not None
        self._holdings = digest.Holdings()  # versions and labels of the other boots this node holds
        self._forward = news.Forward()  # news told to this node, pushed on next round (news.py)
        self._spread = fanout_mod.Spread()  # forwarding and pull sources of this round (fanout.spread_for)
        self._forwards = forward and self._pulls  # False: as the release before forwarded news (tests, bench)
        # whole states give each entry the message it last changed in, and labels are read from them
        # (digest.Holdings.learn); False: as the release before exact labels (tests)
        self._exact = exact_labels and self._pulls
        self._spread_for = spread  # (peers, k) -> Spread: fanout.spread_for but in tests and the bench
        self._own_labels = digest.Labels()  # this boot's monotone entries by the message they changed in
        self._gauges = delta.Versions()  # this boot's gauges alone (unused claims, health): pushed, never pulled
        self._cursor = 0  # where the rotation of direct pushes is
        self._partial = False  # rounds leave out some peers that take fanout (then relays, no `seen`)
        self._spacing = 1  # rounds between two pushes to a peer that takes fanout (`pick`)
        self._versions = delta.Versions()  # what changed in which of this boot's messages
        self._links: dict[str, Link] = {}  # target address -> what it acknowledged
        # bumped whenever `_links` are reset (a new boot, fanout turned partial or back): an Ack to a push
        # sent before (still in flight then, gossip.py) answers a message of what no longer holds
        self.links_generation = 0
        self._sent_epoch: int | None = None
        self.cell = view if view is not None else ViewCell()  # where accepted messages are folded in
        self.stats = GossipStats()
        self._accepted: dict[str, tuple[int, int]] = {}
        self._seq = 0
        # every-peer rounds with nothing but acknowledgements are left out, one goes at least this
        # often (quiet.py); 0: every round (`prepare` called directly always builds one)
        self.keepalive = keepalive
        self._owed = False  # a peer's message calls for an answer (quiet.calls_for_answer)
        self._retry = False  # a push of the previous round was not taken
        self._pushed_at = float("-inf")  # when the last round went out
        self._sent_head = -1  # the log head the last round carried
        self._whole_at: dict[str, float] = {}  # target address -> when it was last sent the whole state
        self._heard_at: dict[str, int] = {}  # peer node -> sent_at_ms of its last accepted message
        self.asking = True  # the last round prepared calls for an answer (measures.Convergence times it)
        self.received = asyncio.Event()  # set on every accepted message (tests wait on it)

    @property
    def address(self) -> str:
        host = "127.0.0.1" if self._host in ("0.0.0.0", "::", "") else self._host
        return f"{self._advertise_host or host}:{self.port}"

    # --- receiving -------------------------------------------------------------------------

    def receive(self, envelope: gossip_pb2.Envelope) -> gossip_pb2.Ack:
        size = len(envelope.payload)
        try:
            msg = self._sealer.open(envelope)
        except GossipRejected as exc:
            self._refused(exc)
            return gossip_pb2.Ack(accepted=False, reason=exc.code or "rejected")
        if msg.node_id == self.node_id:
            return gossip_pb2.Ack(accepted=False, reason="self")
        if not wire.is_newer(self._accepted.get(msg.node_id), msg.boot_epoch, msg.seq):
            self.stats.rejected_stale += 1
            return self._ack(False, reason="stale")
        now = self._clock()
        state = incoming = from_proto(msg)
        if msg.base_seq:
            if not delta.can_apply(self.cell.value, msg.node_id, msg.boot_epoch, msg.base_seq):
                self.stats.need_full += 1
                return self._ack(False, reason="need_full", need_full=True)
            state = delta.apply(self.cell.value.components[(msg.node_id, msg.boot_epoch)],
                                Part(state, removed_health=list(msg.health_removed),
                                     removed_seen=list(msg.seen_removed)))
        self._accepted[msg.node_id] = (msg.boot_epoch, msg.seq)
        before = self.cell.value.components.get(state.component)
        if self.keepalive:
            last_at, self._heard_at[msg.node_id] = self._heard_at.get(msg.node_id), msg.sent_at_ms
            self._owed = self._owed or quiet.calls_for_answer(
                msg, last_at, before.log_head if before is not None else None,
                pause_ms=quiet.PAUSE_ROUNDS * self.interval * 1000)
        fresh = self._forwards and msg.gauges_only and not self._holdings.holds(state.component, msg.seq)
        given = wire.labels_from_proto(msg) if self._exact and not msg.base_seq else None
        current = self.cell.accept(state, now, whole=bool(msg.base_seq))
        after = self.cell.value.components.get(state.component)
        if self._pulls:
            self._holdings.direct(state.component, before, after, incoming, msg.seq, base=msg.base_seq,
                                  news=msg.gauges_only, current=current, given=given)
            if fresh and current:  # news of the origin itself: pushed on (news.py)
                self._forward.note(news.Rumor(news.monotone(incoming), msg.seq, self._spread.hops - 1, msg.node_id))
        if not current:  # an older boot than one already known: only what it admitted counted
            self.stats.rejected_stale += 1
            return self._ack(False, reason="superseded")
        self._relay.note(before, after, incoming)
        peer = self.stats.peers.setdefault(msg.node_id, PeerStats())
        peer.received += 1
        peer.received_bytes += size
        peer.last_seen, peer.last_seen_wall = now, time.time()
        peer.boot_epoch, peer.seq, peer.address = msg.boot_epoch, msg.seq, msg.gossip_address
        self.stats.received += 1
        self.stats.received_bytes += size
        me, my_epoch = self.node_id, self._boot_epoch()
        for c, other in zip([c for c in msg.relayed if c.node_id], wire.relayed_from_proto(msg), strict=True):
            comp = other.component
            if other.node_id == me and other.boot_epoch >= my_epoch:
                continue  # this node counts its own current boot itself
            told = self._forwards and c.news and view.is_live(self.cell.value, comp)  # forwarded news (news.py)
            fresh = told and not self._holdings.holds(comp, c.label)
            before = self.cell.value.components.get(comp)
            self.cell.accept_relayed(other, me, my_epoch)
            after = self.cell.value.components.get(comp)
            if self._relay_onward:
                self._relay.note(before, after, other)
            if self._pulls:  # at most that message's values (a relay of an older release: unknown)
                self._holdings.learn(comp, before, after, other, c.label or digest.UNKNOWN, exact=told, news=told)
            if fresh:
                self._forward.note(news.Rumor(other, c.label, c.hops - 1, msg.node_id))
        if self._on_head is not None and msg.log_head:
            self._on_head(msg.log_head)
        if self._on_state is not None:
            self._on_state(state)
        if msg.HasField("ack") and msg.ack.node_id == me and self._on_ack is not None:
            self._on_ack(msg.node_id, msg.ack.boot_epoch, msg.ack.seq)
        self.received.set()
        pulled = self._answer(msg) if self._pulls and me in msg.pull_from else None
        return self._ack(True, log_head=self._local_head(), pulled=pulled)

    def _refused(self, exc: GossipRejected) -> None:
        if exc.code == "signature":
            self.stats.rejected_signature += 1
        else:
            self.stats.rejected_malformed += 1

    def _ack(self, accepted: bool, **fields: Any) -> gossip_pb2.Ack:
        if self._relays:
            fields.update(fanout=True, node_id=self.node_id, digests=self._pulls)
        return gossip_pb2.Ack(accepted=accepted, deltas=self._deltas, **fields)

    def _answer(self, msg: gossip_pb2.State) -> gossip_pb2.Envelope | None:
        """The signed answer to a push's digest: what its sender lacks (digest.answer)."""
        own_epoch = self._sent_epoch if self._sent_epoch is not None else self._boot_epoch()
        pulled = digest.answer(
            self.cell.value, self._holdings, me=self.node_id,
            asked={(d.node_id, d.boot_epoch): (d.version, frozenset(d.news)) for d in msg.digest},
            targets=list(msg.pull_from), salt=msg.seq, asker=msg.node_id, own=(self.node_id, own_epoch),
            own_seq=self._seq, own_labels=self._own_labels, own_values=self._versions.values)
        if not pulled:
            return None
        reply = gossip_pb2.State(node_id=self.node_id, boot_epoch=own_epoch, seq=self._seq,
                                 ack=gossip_pb2.Seen(node_id=msg.node_id, boot_epoch=msg.boot_epoch, seq=msg.seq))
        wire.add_pulled(reply, pulled)
        envelope = self._sealer.seal(reply)
        self.stats.sent_bytes += len(envelope.payload) + len(envelope.signature)
        return envelope

    def _take_answer(self, envelope: gossip_pb2.Envelope) -> None:
        """Fold in what a target answered to this node's digest (never this boot's own entries;
        of a boot this node does not take for alive, only the windows: view.merge_admitted)."""
        try:
            msg = self._sealer.open(envelope)
        except GossipRejected as exc:
            self._refused(exc)
            return
        me, my_epoch = self.node_id, self._boot_epoch()
        if msg.ack.node_id != me or msg.ack.boot_epoch != my_epoch:
            return  # an answer to an earlier boot's push: its versions are not this boot's
        self.stats.received_bytes += len(envelope.payload) + len(envelope.signature)
        for pulled in wire.pulled_from_proto(msg):
            comp = pulled.state.component
            if comp[0] == me and comp[1] >= my_epoch:
                continue
            before = self.cell.value.components.get(comp)
            self.cell.accept_relayed(pulled.state, me, my_epoch)
            after = self.cell.value.components.get(comp)
            self._holdings.absorb(pulled, before, after, live=view.is_live(self.cell.value, comp))
            if self._relay_onward:
                self._relay.note(before, after, pulled.state)

    def recently_seen(self, within: float) -> list[str]:
        """Peers heard from in the last `within` seconds (alive by gossip, even without Postgres)."""
        return self.stats.recently_seen(self._clock(), within)

    def reachable(self, within: float) -> list[str]:
        """Peers (by node id) that acknowledged one of our pushes in the last `within` seconds."""
        return self.stats.reachable(self._clock(), within)

    def gone(self, silent_for: float) -> list[str]:
        """Peers (by node id) silent for `silent_for` seconds whose address refused our latest push."""
        return self.stats.gone(self._clock(), silent_for)

    def forget_silent_peers(self, silent_for: float, keep: Iterable[str], targets: Iterable[str]) -> None:
        """Forget peers silent for `silent_for` seconds and not in `keep`, and push times of addresses
        no longer targeted (GossipStats.forget)."""
        self.stats.forget(self._clock(), silent_for, keep, targets)

    @property
    def view(self) -> View:
        return self.cell.value

    # --- sending ---------------------------------------------------------------------------

    def _own(self) -> tuple[NodeState, list[NodeState]]:
        epoch = self._boot_epoch()
        if epoch != self._sent_epoch:  # a new boot: sequences restart, nothing acknowledged yet
            self._sent_epoch, self._versions, self._links = epoch, delta.Versions(), {}
            self.links_generation += 1
            self._own_labels, self._gauges = digest.Labels(), delta.Versions()
        # acknowledgements of the nodes the view holds: one forgotten as silent (gone for good, or
        # back under a new id) is nothing to relay, and would otherwise ride in every whole state for good
        held = {c[0] for c in self.cell.value.components}
        own = replace(self._snapshot(), node_id=self.node_id, boot_epoch=epoch, seq=self._seq,
                      seen={n: s for n, s in self._accepted.items() if n in held})
        return own, view.relayed(self.cell.value)

    def pick(self, targets: list[str]) -> list[str]:
        """This round's targets: every peer not known to take bounded fanout (an older release, or
        one that has not answered yet), and the next `k` of the others in rotation (fanout.py). While
        `k` covers them all, every peer gets every round, with `seen`, exactly as before. Peers not heard
        from yet count as taking fanout: a first round to every peer with `seen` would leave that `seen`
        with each peer until this node's rotation reaches it, and meanwhile this node would seem to lag
        on the others, so every whole state its peers send would relay their counts (view.relayed)."""
        relaying = [t for t in targets if (link := self._links.get(t)) is not None and link.fanout]
        taking = len(targets) - sum(1 for t in targets if (link := self._links.get(t)) is not None and not link.fanout)
        k = taking if self.fanout is None or len(targets) + 1 < self._fanout_from else (
            self.fanout or fanout_mod.fanout_for(len(targets), interval=self.interval, timeout=self._node_timeout))
        partial = k < taking
        self._spread = self._spread_for(len(targets), k) if partial and self._forwards else fanout_mod.Spread()
        if partial != self._partial:  # what targets hold of this node's `seen` changes: whole states next
            self._partial = partial
            self._links = {t: replace(link, acked=0) for t, link in self._links.items()}
            self.links_generation += 1
        # rounds between two pushes to one peer that takes fanout: its anti-entropy counts its pushes
        self._spacing = max(1, -(-len(relaying) // k)) if partial else 1
        if not partial:
            return targets
        chosen, self._cursor = fanout_mod.pick(fanout_mod.rotation(self.node_id, relaying), self._cursor, k)
        picked = set(chosen)
        return [t for t in targets if t in picked or t not in relaying]

    def prepare(self, targets: list[str],
                quiet_ok: bool = False) -> tuple[int, dict[str, tuple[int, gossip_pb2.Envelope]]]:
        """One round's messages: (seq, target -> (base, envelope)); targets with the same base share
        one message (base 0: the whole state). With bounded fanout (`pick` leaves peers out), a target
        that takes it gets its own acknowledgement (`State.ack`), no `seen`, and relays or, if it
        answers pulls, `_pull_message`; so does a first contact, without either (it may be older).
        `quiet_ok`: with `keepalive` set and every peer every round, a round with nothing for its
        targets but acknowledgements is left out (quiet.py): no messages, its seq unused."""
        self._seq += 1
        seq = self._seq
        own, relayed = self._own()
        entries = delta.flatten(own, relayed)
        changed, gone = self._versions.record(entries, seq)
        if self._pulls:  # (every peer every round, the default, needs neither)
            self._gauges.record(delta.flatten(NodeState(own.node_id, own.boot_epoch, allowances=own.allowances,
                                                        health=own.health)), seq)
            self._own_labels.record(changed, gone, seq)
            self._holdings.forget(self.cell.value.components)
        floor = max(self._versions.floor, self._gauges.floor)
        now, asking = self._clock(), True
        forced: set[str] = set()  # targets whose anti-entropy is due by time (quiet rounds send fewer messages)
        if quiet_ok and self.keepalive > 0 and not self._partial:
            own_news = quiet.own_news(changed, gone, own.log_head, self._sent_head)
            every = delta.ANTI_ENTROPY_ROUNDS * self.interval
            forced = {t for t in targets if now - self._whole_at.get(t, now) >= every}
            whole = bool(forced) or any(delta.base_for(self._links.get(t), seq, floor) == 0 for t in targets)
            if not quiet.round_due(news=own_news, owed=self._owed, retry=self._retry, whole=whole,
                                   since_push=now - self._pushed_at, keepalive=self.keepalive):
                self._seq -= 1  # nothing goes out: the next round is message `seq` (seqs count messages)
                return seq, {}
            # news, a whole state or a round after quiet ones is acknowledged by each target's next round
            # (quiet.calls_for_answer, which takes a shorter pause for one); a bare answer only when they
            # next have news or a keepalive of theirs is due
            asking = own_news or whole or now - self._pushed_at > (quiet.PAUSE_ROUNDS + 1) * self.interval
        self.asking, self._sent_head, self._pushed_at, self._owed = asking, own.log_head, now, False
        sent_at, address = self._wall_ms(), self.address
        rumors = self._relay.take()  # taken every round: what grew before it is not news any more
        pulling = [t for t in targets if self._pulls and self._partial and (link := self._links.get(t)) is not None
                   and link.fanout and link.digests and link.node]
        nodes = [self._links[t].node for t in pulling]
        asks = digest.ask(self.cell.value.components, self._holdings, nodes, seq, self.node_id, self._spread.sources)
        told: dict[str, list[news.Rumor]] = {}
        for rumor in self._forward.take() if self._pulls else ():
            for node in news.forward_to(rumor, nodes, self._spread.per_news, seq):
                told.setdefault(node, []).append(rumor)
        by_key: dict[tuple[int, bool, str], gossip_pb2.Envelope] = {}
        out: dict[str, tuple[int, gossip_pb2.Envelope]] = {}
        for target in targets:
            link = self._links.get(target)
            fan = self._partial and (link is None or link.fanout)
            base = 0 if target in forced else delta.base_for(
                link, seq, floor, every=delta.ANTI_ENTROPY_ROUNDS * (self._spacing if fan else 1))
            if base == 0:
                self._whole_at[target] = self._clock()
            node = link.node if fan and link is not None else ""
            if target in pulling:
                out[target] = (base, self._pull_message(own, relayed, base, seq, node, asks, sent_at,
                                                        told.get(node, [])))
                continue
            envelope = by_key.get((base, fan, node))
            if envelope is None:
                if base == 0:  # a first contact with fanout may answer pulls: it gets the labels too
                    msg = to_proto(replace(own, seen={}) if fan else own, sent_at_ms=sent_at,
                                   gossip_address=address, relayed=relayed,
                                   labels=self._own_labels.of if self._exact and fan else None)
                else:
                    header = NodeState(self.node_id, own.boot_epoch, seq, own.log_head)
                    part = delta.unflatten(header, *self._versions.since(base, skip="s" if fan else ""))
                    msg = wire.part_to_proto(part, base=base, sent_at_ms=sent_at, gossip_address=address)
                if self._pulls:
                    self._label_relayed(msg)
                if fan and link is not None:
                    wire.add_relayed(msg, rumors)
                    self._add_ack(msg, node)
                envelope = by_key[(base, fan, node)] = self._sealer.seal(msg)
            out[target] = (base, envelope)
        return seq, out

    def _add_ack(self, msg: gossip_pb2.State, node: str) -> None:
        if node and (seen := self._accepted.get(node)) is not None:
            msg.ack.CopyFrom(gossip_pb2.Seen(node_id=node, boot_epoch=seen[0], seq=seen[1]))

    def _pull_message(self, own: NodeState, relayed: list[NodeState], base: int, seq: int, node: str,
                      asks: dict[str, dict[Component, digest.Asked]], sent_at: int, told: list[news.Rumor]
                      ) -> gossip_pb2.Envelope:
        """A push to a target that answers digest pulls: the whole state (base 0), or the gauges changed
        after `base` and the entries changed in this very message (news: a round's targets are a change's
        first holders); its acknowledgement, the news `told` this node it forwards, and the digest of what
        this node asks it. A whole state relays crashed boots' counts with the newest label held of each."""
        if base == 0:
            msg = to_proto(replace(own, seen={}), sent_at_ms=sent_at, gossip_address=self.address, relayed=relayed,
                           labels=self._own_labels.of if self._exact else None)
            self._label_relayed(msg)
        else:
            header = NodeState(self.node_id, own.boot_epoch, seq, own.log_head)
            gauges, removed = self._gauges.since(base)
            fresh, _ = self._versions.since(seq - 1, skip="hsx")
            part = delta.unflatten(header, {**gauges, **fresh}, removed)
            msg = wire.part_to_proto(part, base=base, sent_at_ms=sent_at, gossip_address=self.address)
            msg.gauges_only = True
        self._add_ack(msg, node)
        wire.add_news(msg, told)
        msg.pull_from.extend(asks)
        for (peer, epoch), (version, held) in asks[node].items():
            msg.digest.add(node_id=peer, boot_epoch=epoch, version=version, news=sorted(held))
        return self._sealer.seal(msg)

    def _label_relayed(self, msg: gossip_pb2.State) -> None:
        """Other boots' counts a whole state relays carry the newest label held of each (their values
        are at most that message's): a receiver that answers pulls labels them so, not as unknown."""
        for c in msg.relayed:
            c.label = self._holdings.newest((c.node_id, c.boot_epoch))

    def acknowledged(self, target: str, seq: int, base: int, ack: gossip_pb2.Ack) -> None:
        """Note a target's answer to message `seq` (sent with `base`)."""
        first = target not in self._links
        link = self._links.get(target) or Link(phase=delta.phase_of(target))
        link = delta.acknowledged(link, seq, base, accepted=ack.accepted, deltas=ack.deltas,
                                  need_full=ack.need_full, fanout=ack.fanout, node=ack.node_id, digests=ack.digests)
        if first and self._partial and not ack.fanout:  # an older release took a first contact without `seen`:
            link = replace(link, acked=0)  # the whole state, `seen` included, next (deltas carry only what changed)
        self._links[target] = link
        if self._pulls and ack.HasField("pulled"):
            self._take_answer(ack.pulled)

    def forget(self, known: list[str]) -> None:
        """Drop what is held of targets that are no longer peers."""
        for gone in set(self._links) - set(known):
            del self._links[gone]
        for gone in set(self._whole_at) - set(known):  # (a peer back at new addresses leaves old ones)
            del self._whole_at[gone]
