"""Gossip at scale, simulated: N in-process nodes running the production gossip code over a
simulated transport, in simulated time (nothing sleeps).

Every node is a real `Gossip` (shieldes/cluster/gossip.py) that is never bound: each round calls
its `prepare` (the production choice of base per target, to_proto, zstd, HMAC: byte counts are real),
the simulated network delivers each envelope to the target's `receive` after a random latency, or
loses, duplicates or reorders it, and carries the Ack back the same way to `acknowledged`.

Load: --keys active keys (every key was used in the current minute before the run starts), then
--rps requests/s cluster-wide, keys drawn Zipf-like (weight 1/rank^1.1), each routed to a random
node, which counts it as the meter does: its rate window, a reservation held and released, pending
spend and a usage delta of the current flush (flushed every --flush-interval: then they leave).

Modes:
- all: every node pushes deltas to every peer every round, with its `seen` acknowledgements (the
  release before bounded fanout: its Acks do not say `fanout`).
- fanout: the production behaviour: --fanout peers per round (0: automatic, fanout.fanout_for) in
  rotation, acknowledgements in `State.ack`, digest pulls (digest.py): each push names what the
  sender holds of a share of the other boots, the target answers in its Ack with what the sender
  lacks (answers are counted in the bytes, sent by the target and received by the asker); news
  forwarded once more and large clusters asking each boot of two targets (news.py,
  fanout.spread_for; --spread HOPS,PER_NEWS,SOURCES to try others).
- pull: digest pulls as the release before forwarded news ran them (one source per boot, news
  only from its origin).
- relay: the release before digest pulls: the same rotation, and every node relays what grew in
  its view to its targets (its Acks do not say `digests`).
- relay1: the same, but a node relays only what it heard from the origin itself (one relay hop).
- full: the release before delta gossip, every message the whole state. Modelled: the sender's
  whole state is really encoded each round (real sizes), and a receiver holds a change once any
  message sent after it arrived; receivers do not decode (N^2 whole states of thousands of keys do
  not fit in a few minutes on 2 cores).

Figures per N and mode: bytes/s and messages/s per node (sent, received; counted after the first 1.5
s, once first contacts are over: steady state; the default 7.5 s counts 6 s, one anti-entropy period
of every-peer gossip, so every target's periodic whole state is in; with bounded fanout a peer gets
one every 40 of its pushes, which a run this short may not hold, so the whole states of the counted
window and those of the long run are printed too, with the bytes sent given the latter), convergence
p50/p99 of a counter change (from the change to every node's view holding it, over --probes
changes), and the process CPU time spent in the gossip calls (prepare, receive, acknowledged) per
node per second. Except in full mode the run also checks the production limit logic
(cluster/limits.py: claims, rounds, acknowledgements; view_reads.py) on one key with a rate
limit and one team budget, all nodes admitting as fast as requests come: admitted / limit and
overshoot against docs/cluster.md.

Run: PYTHONPATH=. python bench/bench_gossip_sim.py [--nodes 3,10,30,100] [--keys 10000]
     [--seconds 7.5] [--modes all,relay,pull,fanout] [--fanout 0] [--loss 0.01] [--dup 0.01] [--seed 1]
"""

from __future__ import annotations

import argparse
import collections
import heapq
import itertools
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shieldes.cluster import digest, fanout, gossip_pb2, view_reads  # noqa: E402
from shieldes.cluster.gossip import Gossip, open_envelope, seal, to_proto  # noqa: E402
from shieldes.cluster.limits import HeadroomSplitter, Rounds  # noqa: E402
from shieldes.cluster.view import NodeState  # noqa: E402
from shieldes.cluster.wire import pulled_from_proto  # noqa: E402

SECRET = b"bench"
WINDOW = 1000  # the rate window every count falls in (the run is shorter than a minute)
DAY = 20000
WARM = 1.5  # simulated seconds before traffic is counted: first contacts and the preload are over
EPOCH = 1
RATE_SUBJECT, RATE_WINDOW = "k:hot", "min"
BUDGET_SUBJECT, BUDGET_WINDOW = "t:team", "budget"
BUDGET_SPLIT_FROM = 0.75  # cluster/meter.py
FANOUT_MODES = ("fanout", "pull", "relay", "relay1")


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@dataclass
class Node:
    name: str
    gossip: Gossip = field(init=False)
    windows: dict[Any, tuple[int, int, int]] = field(default_factory=dict)
    pending: dict[Any, tuple[int, int, int]] = field(default_factory=dict)
    unflushed: dict[Any, tuple[int, ...]] = field(default_factory=dict)
    reservations: dict[str, tuple[int, int]] = field(default_factory=dict)
    flush_seq: int = 2  # 1 holds the simulated budget's spend
    rounds: Rounds = field(default_factory=Rounds)
    splitter: HeadroomSplitter | None = None
    sent: int = 0
    sent_bytes: int = 0
    whole_bytes: int = 0  # of which whole states (base 0)
    received: int = 0
    received_bytes: int = 0
    seq: int = 0  # full mode: the newest message sent
    heard: dict[str, int] = field(default_factory=dict)  # full mode: sender -> newest seq delivered
    rate_admitted: int = 0
    spend: int = 0

    def snapshot(self) -> NodeState:
        assert self.splitter is not None
        return NodeState(self.name, EPOCH, windows=self.windows, pending=self.pending, unflushed=self.unflushed,
                         reservations=self.reservations, allowances=self.splitter.outstanding_all())

    def flush(self) -> None:
        """The usage of the flush just appended is in the log: it leaves the gossiped state."""
        old = self.flush_seq
        self.flush_seq += 1
        self.pending = {p: v for p, v in self.pending.items() if p[1] != old}
        self.unflushed = {u: v for u, v in self.unflushed.items() if u[1] != old}


class Sim:
    def __init__(self, n: int, mode: str, args: argparse.Namespace) -> None:
        self.n, self.mode, self.args = n, mode, args
        self.rng = random.Random(args.seed * 1000 + n)
        self.now = 0.0
        self.events: list[tuple[float, int, str, tuple[Any, ...]]] = []
        self.counter = itertools.count()
        self.nodes: dict[str, Node] = {}
        names = [f"n{i:03d}" for i in range(n)]
        spread = fanout.spread_for
        if args.spread:
            hops, per_news, sources = (int(x) for x in args.spread.split(","))
            spread = lambda _peers, _k: fanout.Spread(hops, per_news, sources)  # noqa: E731
        for name in names:
            node = self.nodes[name] = Node(name)
            node.splitter = HeadroomSplitter(node.rounds)
            node.gossip = Gossip(node_id=name, secret=SECRET, host="127.0.0.1", port=0, interval=args.interval,
                                 boot_epoch=lambda: EPOCH, clock=lambda: self.now, snapshot=node.snapshot,
                                 on_state=lambda st, node=node: self._on_state(node, st),
                                 on_ack=lambda peer, epoch, seq, node=node: self._on_ack(node, peer, epoch, seq),
                                 fanout=args.fanout if mode in FANOUT_MODES else None,
                                 relays=mode in FANOUT_MODES, relay_onward=mode != "relay1",
                                 digests=mode in ("fanout", "pull"), forward=mode == "fanout", spread=spread,
                                 node_timeout=args.node_timeout)
        self.names = names
        weights = [1 / (r + 1) ** 1.1 for r in range(args.keys)]
        self.cum = list(itertools.accumulate(weights))
        self.probes: list[tuple[float, str, Any, int, set[str], int]] = []
        self.converged: list[float] = []
        self.rate_limit, self.budget, self.cost = args.rpm, args.budget, args.cost
        self.cpu = 0.0  # process CPU seconds in the gossip calls (prepare, receive, acknowledged)
        # the longest CPU time of one call of each (a node's event loop is held that long)
        self.longest = {"prepare": 0.0, "receive": 0.0, "acknowledged": 0.0}
        self.answered: collections.Counter[tuple[str, str]] = collections.Counter()  # --answers

    def _spent(self, call: str, cpu: float) -> None:
        self.cpu += cpu
        self.longest[call] = max(self.longest[call], cpu)

    # --- load ----------------------------------------------------------------------------------

    def preload(self) -> None:
        """Every key active: half a minute of load, and each key used at least once, on random nodes
        (after the first rounds: a cold start relays every component to peers that have not heard
        from it yet, which is not the steady state measured here)."""
        names, a = self.names, self.args
        for key in range(a.keys):
            self._count(self.rng.choice(names), key, settled=False)
        for key in self.rng.choices(range(a.keys), cum_weights=self.cum, k=a.rps * 30):
            self._count(self.rng.choice(names), key, settled=False)

    def _count(self, name: str, key: int | str, settled: bool = True) -> tuple[Any, int]:
        """One request of `key` on node `name`: its rate window and, settled, what a node's meter
        also gossips per request (reservation held and released, pending spend and the usage delta
        of the current flush)."""
        node = self.nodes[name]
        wid = (f"k:{key}", "min", WINDOW)
        r, t, rel = node.windows.get(wid, (0, 0, 0))
        node.windows[wid] = (r + 1, t + 120, rel)
        if settled:
            cost = 7000
            res, released = node.reservations.get(wid[0], (0, 0))
            node.reservations[wid[0]] = (res + cost, released + cost)
            pid = (EPOCH, node.flush_seq, wid[0], DAY)
            node.pending[pid] = (0, 0, node.pending.get(pid, (0, 0, 0))[2] + cost)
            uid = (EPOCH, node.flush_seq, f"key{key}", None, "openai", "gpt-4o-mini", DAY * 24)
            u = node.unflushed.get(uid, (0,) * 11)  # (UsageDelta's sums: the last seven are media and tools)
            node.unflushed[uid] = (u[0] + 1, u[1] + 100, u[2] + 20, u[3] + cost, *u[4:])
        return wid, r + 1

    def schedule(self, at: float, kind: str, *payload: Any) -> None:
        heapq.heappush(self.events, (at, next(self.counter), kind, payload))

    def latency(self) -> float:
        lo, hi = self.args.latency_ms
        return self.rng.uniform(lo, hi) / 1000

    # --- gossip --------------------------------------------------------------------------------

    def round(self, name: str) -> None:
        node = self.nodes[name]
        targets = [t for t in self.names if t != name]
        if self.mode == "full":
            node.seq += 1
            msg = to_proto(node.snapshot(), sent_at_ms=0, gossip_address=name)
            msg.seq = node.seq
            envelope = seal(msg, SECRET)
            messages = {t: (0, envelope) for t in targets}
            seq = node.seq
        else:
            cpu = time.process_time()
            seq, messages = node.gossip.prepare(node.gossip.pick(targets))
            self._spent("prepare", time.process_time() - cpu)
            node.rounds.sent(seq)
        for target, (base, envelope) in messages.items():
            copies = 0 if self.rng.random() < self.args.loss else 1
            copies += self.rng.random() < self.args.dup
            size = len(envelope.payload) + len(envelope.signature)
            node.sent += 1
            node.sent_bytes += size
            node.whole_bytes += size if base == 0 else 0
            for _ in range(copies):
                self.schedule(self.now + self.latency(), "deliver", name, target, seq, base, envelope, size)
        self.schedule(self.now + self.args.interval, "round", name)

    def deliver(self, sender: str, target: str, seq: int, base: int, envelope: gossip_pb2.Envelope,
                size: int) -> None:
        node = self.nodes[target]
        node.received += 1
        node.received_bytes += size
        if self.mode == "full":
            node.heard[sender] = max(node.heard.get(sender, 0), seq)
            return
        cpu = time.process_time()
        ack = node.gossip.receive(envelope)
        self._spent("receive", time.process_time() - cpu)
        pulled = len(ack.pulled.payload) + len(ack.pulled.signature) if ack.HasField("pulled") else 0
        node.sent_bytes += pulled
        if self.rng.random() >= self.args.loss:
            self.nodes[sender].received_bytes += pulled
            self.schedule(self.now + self.latency(), "ack", sender, target, seq, base, ack)

    def _on_state(self, node: Node, state: NodeState) -> None:
        """What the runtime does with an accepted message (cluster/runtime.py `_on_state`)."""
        seen = state.seen.get(node.name)
        if seen is not None:
            node.rounds.peer_saw(state.node_id, seen[0], seen[1])
        node.rounds.advance(self.participants(node), EPOCH)

    def _on_ack(self, node: Node, peer: str, epoch: int, seq: int) -> None:
        """An Ack of a peer taking bounded fanout (cluster/runtime.py `_on_ack`)."""
        node.rounds.peer_saw(peer, epoch, seq)
        node.rounds.advance(self.participants(node), EPOCH)

    def participants(self, node: Node) -> list[str]:
        return view_reads.participants(node.gossip.view, now=self.now, within=self.args.node_timeout, exclude=node.name)

    # --- convergence probes ----------------------------------------------------------------------

    def probe(self, i: int) -> None:
        origin = self.rng.choice(self.names)
        wid, value = self._count(origin, f"probe{i}", settled=False)
        # full mode: the change rides on the origin's next message (sequence above the current one)
        self.probes.append((self.now, origin, wid, value, set(self.names) - {origin}, self.nodes[origin].seq + 1))

    def check_probes(self) -> None:
        still = []
        for started, origin, wid, value, missing, seq in self.probes:
            for name in list(missing):
                node = self.nodes[name]
                if self.mode == "full":
                    holds = node.heard.get(origin, 0) >= seq
                else:
                    comp = node.gossip.view.components.get((origin, EPOCH))
                    holds = comp is not None and comp.windows.get(wid, (0, 0, 0))[0] >= value
                if holds:
                    missing.discard(name)
            if missing:
                still.append((started, origin, wid, value, missing, seq))
            else:
                self.converged.append(self.now - started)
        self.probes = still

    def tally_answer(self, node: Node, envelope: gossip_pb2.Envelope) -> None:
        """--answers: each entry of a digest answer, new to the asker or held already (at that value
        or above), by label kind (exact: the message's value; inexact: at most that message's)."""
        held = node.gossip.view.components
        for p in pulled_from_proto(open_envelope(envelope, SECRET)):
            mine = held.get(p.state.component)
            for e, v in digest.entries(p.state).items():
                cur = getattr(mine, digest.KINDS[e[0]]).get(e[1]) if mine is not None else None
                new = cur is None or any(x > c for x, c in zip(v, cur, strict=False))
                self.answered["new" if new else "held", "exact" if p.exact else "inexact"] += 1

    # --- limits (the production split) ----------------------------------------------------------

    def limited_request(self, name: str) -> None:
        node = self.nodes[name]
        assert node.splitter is not None
        v = node.gossip.view
        peers = self.participants(node)
        alive = 1 + len(peers)
        rank = sorted([name, *peers]).index(name)
        own = node.windows.get((RATE_SUBJECT, RATE_WINDOW, WINDOW), (0, 0, 0))[0]
        # own count + peers' counts + peers' unused claims (ClusterMeter._split_rate via the runtime)
        seen = (own + view_reads.window_count(v, RATE_SUBJECT, RATE_WINDOW, (WINDOW,), exclude=name)[0]
                + view_reads.window_allowance(v, RATE_SUBJECT, RATE_WINDOW, WINDOW, exclude=name))
        if node.splitter.admit((RATE_SUBJECT, RATE_WINDOW, WINDOW), self.rate_limit, seen, alive,
                               rank=(rank + WINDOW) % alive):
            r, t, rel = node.windows.get((RATE_SUBJECT, RATE_WINDOW, WINDOW), (0, 0, 0))
            node.windows[(RATE_SUBJECT, RATE_WINDOW, WINDOW)] = (r + 1, t, rel)
            node.rate_admitted += 1
        # a team budget: own spend + peers' gossiped pending spend, split in its last quarter
        spent = node.spend + view_reads.pending_spend(v, BUDGET_SUBJECT, range(DAY, DAY + 1), lambda _n, _e: 0,
                                                exclude=name)
        seen_b = spent + view_reads.window_allowance(v, BUDGET_SUBJECT, BUDGET_WINDOW, DAY, exclude=name)
        ok = (seen_b + self.cost <= self.budget if seen_b < self.budget * BUDGET_SPLIT_FROM else
              node.splitter.admit((BUDGET_SUBJECT, BUDGET_WINDOW, DAY), self.budget, seen_b, alive, self.cost,
                                  (rank + DAY) % alive))
        if ok:
            node.spend += self.cost
            node.pending[(EPOCH, 1, BUDGET_SUBJECT, DAY)] = (0, 0, node.spend)

    # --- run -------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        a = self.args
        for name in self.names:
            self.schedule(self.rng.uniform(0, a.interval), "round", name)
        self.schedule(3 * a.interval, "preload")
        for name in self.names:
            self.schedule(self.rng.uniform(0, a.flush_interval), "flush", name)
        t = 0.0
        while t < a.seconds:  # background load
            t += self.rng.expovariate(a.rps)
            self.schedule(t, "request", self.rng.choice(self.names),
                          self.rng.choices(range(a.keys), cum_weights=self.cum)[0])
        if self.mode != "full":
            t = 0.5
            while t < a.seconds:  # limited traffic, well above both limits
                t += self.rng.expovariate(a.limited_rps)
                self.schedule(t, "limited", self.rng.choice(self.names))
        warm = WARM  # probes start once first contacts are over
        for i in range(a.probes):
            self.schedule(warm + (a.seconds - warm - 1.0) * i / a.probes, "probe", i)
        self.schedule(warm, "warm")
        step = 0.005
        self.schedule(step, "check")
        started = time.monotonic()
        while self.events:
            at, _, kind, payload = heapq.heappop(self.events)
            if at > a.seconds:
                break
            self.now = at
            if kind == "round":
                self.round(*payload)
            elif kind == "deliver":
                self.deliver(*payload)
            elif kind == "ack":
                sender, target, seq, base, ack = payload
                if a.answers and ack.HasField("pulled"):
                    self.tally_answer(self.nodes[sender], ack.pulled)
                cpu = time.process_time()
                self.nodes[sender].gossip.acknowledged(target, seq, base, ack)
                self._spent("acknowledged", time.process_time() - cpu)
            elif kind == "request":
                self._count(*payload)
            elif kind == "limited":
                self.limited_request(*payload)
            elif kind == "probe":
                self.probe(*payload)
            elif kind == "flush":
                self.nodes[payload[0]].flush()
                self.schedule(at + a.flush_interval, "flush", *payload)
            elif kind == "preload":
                self.preload()
            elif kind == "warm":  # traffic is counted from here: first contacts are over
                for x in self.nodes.values():
                    x.sent = x.sent_bytes = x.whole_bytes = x.received = x.received_bytes = 0
                self.cpu = 0.0
                self.longest = dict.fromkeys(self.longest, 0.0)
                self.answered.clear()
            elif kind == "check":
                self.check_probes()
                self.schedule(at + step, "check")
        nodes = list(self.nodes.values())
        per = (a.seconds - warm) * len(nodes)
        return {
            "n": self.n, "mode": self.mode,
            "sent_Bps": sum(x.sent_bytes for x in nodes) / per,
            "recv_Bps": sum(x.received_bytes for x in nodes) / per,
            "sent_mps": sum(x.sent for x in nodes) / per,
            "recv_mps": sum(x.received for x in nodes) / per,
            "conv_p50_ms": percentile(self.converged, 50) * 1000,
            "conv_p99_ms": percentile(self.converged, 99) * 1000,
            "probes": f"{len(self.converged)}/{a.probes}",
            "rate_admitted": sum(x.rate_admitted for x in nodes),
            "spend": sum(x.spend for x in nodes),
            "wall_s": time.monotonic() - started,
            "whole_Bps": sum(x.whole_bytes for x in nodes) / per,
            **({} if self.mode == "full" else self.steady_whole()),
            "cpu_ms": self.cpu / per * 1000,
            "longest_ms": {k: v * 1000 for k, v in self.longest.items()},
            "answered": dict(self.answered),
        }


    def steady_whole(self) -> dict[str, Any]:
        """Whole states in the long run, which a 6 s window may not hold: anti-entropy sends each peer
        one every 40 rounds (every peer) or every 40 of the pushes it gets (bounded fanout, a push
        every ceil((N - 1) / k) rounds). Their size: a whole state of a few nodes at the end of the run
        (each made to forget its links, so its next message is a first contact's whole state)."""
        peers = self.n - 1
        k = peers
        if self.mode in FANOUT_MODES:
            k = self.args.fanout or fanout.fanout_for(peers, interval=self.args.interval,
                                                      timeout=self.args.node_timeout)
        every = 40 * -(-peers // k)
        sizes = []
        for name in self.names[:3]:
            g = self.nodes[name].gossip
            g.forget([])
            _, messages = g.prepare([t for t in self.names if t != name])
            sizes.extend(len(e.payload) + len(e.signature) for _, e in messages.values())
        size = sum(sizes) / len(sizes)
        return {"whole_size": size, "whole_every": every,
                "steady_whole_Bps": peers * size / (every * self.args.interval)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", default="3,10,30,100")
    p.add_argument("--modes", default="all,relay,pull,fanout",
                   help="full (whole states to every peer), all (deltas to every peer each round: the release "
                        "before bounded fanout), fanout (--fanout peers per round, digest pulls, forwarded news), pull "
                        "(digest pulls as the release before forwarded news), relay (the same "
                        "peers, relays instead of pulls: the release before digests), relay1 (relaying only "
                        "what a node heard from the origin itself: one hop)")
    p.add_argument("--fanout", type=int, default=0, help="peers per round in fanout mode (0: automatic)")
    p.add_argument("--node-timeout", type=float, default=5.0)
    p.add_argument("--keys", type=int, default=10_000)
    p.add_argument("--rps", type=int, default=1000, help="cluster-wide requests/s over the keys")
    p.add_argument("--seconds", type=float, default=7.5,
                   help="simulated seconds per run (traffic is counted after the first 1.5 s: the default "
                        "measures 6 s, one anti-entropy period at the default interval)")
    p.add_argument("--interval", type=float, default=0.15)
    p.add_argument("--flush-interval", type=float, default=0.5)
    p.add_argument("--latency-ms", type=lambda s: tuple(float(x) for x in s.split(",")), default=(0.5, 5.0))
    p.add_argument("--loss", type=float, default=0.01)
    p.add_argument("--dup", type=float, default=0.01)
    p.add_argument("--probes", type=int, default=40)
    p.add_argument("--rpm", type=int, default=500, help="the rate-limited key's requests per minute")
    p.add_argument("--budget", type=int, default=400_000, help="the team budget, in cost units")
    p.add_argument("--cost", type=int, default=1000, help="cost units per budgeted request")
    p.add_argument("--limited-rps", type=float, default=400, help="requests/s on the limited key")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--answers", action="store_true",
                   help="count the entries of digest answers new to the asker and those it held already")
    p.add_argument("--spread", default="",
                   help="fanout mode: HOPS,PER_NEWS,SOURCES instead of fanout.spread_for (forwarded news: hops and "
                        "targets per news; targets each boot is asked from)")
    args = p.parse_args()
    print(f"{args.keys} active keys, {args.rps} req/s cluster-wide, {args.seconds:g} simulated s per run, "
          f"interval {args.interval}s, latency {args.latency_ms} ms, loss {args.loss:.0%}, dup {args.dup:.0%}")
    print(f"{'N':>4} {'mode':>6} {'sent B/s/node':>14} {'recv B/s/node':>14} {'msg/s/node':>11} "
          f"{'conv p50 ms':>12} {'conv p99 ms':>12} {'probes':>7} {'rate adm/L (L+N)':>17} "
          f"{'budget spent/limit':>19} {'CPU ms/s/node':>13} {'wall s':>7}")
    for n in (int(x) for x in args.nodes.split(",")):
        for mode in args.modes.split(","):
            r = Sim(n, mode, args).run()
            rate = budget = "-"
            if mode != "full":
                rate = f"{r['rate_admitted']}/{args.rpm} ({args.rpm + n})"
                over = (r["spend"] - args.budget) / args.cost
                budget = f"{r['spend'] / args.budget:.3f} ({over:+.0f} req)"
            print(f"{n:>4} {mode:>6} {r['sent_Bps']:>14,.0f} {r['recv_Bps']:>14,.0f} "
                  f"{r['sent_mps'] + r['recv_mps']:>11.1f} {r['conv_p50_ms']:>12.1f} {r['conv_p99_ms']:>12.1f} "
                  f"{r['probes']:>7} {rate:>17} {budget:>19} {r['cpu_ms']:>13.1f} {r['wall_s']:>7.1f}", flush=True)
            if mode != "full":
                print("      longest single call (CPU ms; a node's event loop is held that long): " + ", ".join(
                    f"{call} {ms:.1f}" for call, ms in r["longest_ms"].items()), flush=True)
                print(f"      whole states: {r['whole_Bps']:,.0f} B/s per node counted; in the long run "
                      f"{r['steady_whole_Bps']:,.0f} (one to each peer every {r['whole_every']} rounds, "
                      f"{r['whole_size']:,.0f} B each): sent B/s with those instead "
                      f"{r['sent_Bps'] - r['whole_Bps'] + r['steady_whole_Bps']:,.0f}", flush=True)
            if args.answers and r["answered"]:
                total = sum(r["answered"].values())
                print("      answered entries: " + ", ".join(
                    f"{kind} {label} {count} ({count / total:.0%})"
                    for (kind, label), count in sorted(r["answered"].items())), flush=True)
    print("bounds (docs/cluster.md), rate limit L over N nodes: admitted <= L + (N-1)*ceil(L/N) + 1 worst case, "
          "<= L + N seen in practice; budget: the spend admitted within one gossip delay past its last quarter "
          "plus (N-1) claims of max(ceil(remaining/N), one request)")


if __name__ == "__main__":
    main()
