"""Delta-state gossip: what a push to one peer carries, and how its receiver folds it in.

A node's component only grows (view.py: entries merge by max) except its gauges (unused claims,
deployment health, acknowledgements), which the newest message sets. So a peer that holds the
component as of some message `base` needs only the entries that changed after `base` to hold it as
of the newest one: counts, pending usage, unflushed deltas, reservations and relayed counts by
value, gauges by value too, and a gauge that disappeared as an explicit removal.

* The sender keeps, per entry, the sequence of the message in which it last changed (`Versions`),
  and per peer the newest of its messages the peer accepted (`Links`). A push carries the entries
  changed after that (`base_seq` in the message); a peer never heard from, one that did not say it
  understands deltas (an older release), and every peer once per anti-entropy period get the whole
  state (`base_seq` 0).
* The receiver folds a delta in only if it holds the sender's component as of `base_seq` or later
  (`can_apply`): otherwise (it restarted, or forgot the sender) it answers `need_full` and the
  sender's next push is the whole state.

Everything here is pure or a small value holder without I/O; gossip_rounds.py runs it, the tests and the
simulation bench (bench/bench_gossip_sim.py) run the same code.
"""

from __future__ import annotations

import zlib
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, cast

from shieldes.cluster.view import Health, NodeState, View, WindowId, regrouped

Entry = tuple[str, Hashable]  # (kind, key): "w" window, "p" pending, "u" unflushed, "r" reservation,
# "h" health, "s" seen, "x" relayed (node, boot epoch, window)
GAUGES = frozenset("hs")  # kinds whose disappearance must be told (the rest merge by max: a prune)
ANTI_ENTROPY_ROUNDS = 40  # a peer gets the whole state at least this often (6 s at 0.15 s)


def flatten(own: NodeState, relayed: Iterable[NodeState] = ()) -> dict[Entry, Any]:
    """Every entry a message of `own` (relaying `relayed`) carries, keyed by kind and key."""
    out: dict[Entry, Any] = {}
    windows, allowances = own.windows, own.allowances
    for wid in windows.keys() | allowances.keys():
        out[("w", wid)] = (*windows.get(wid, (0, 0, 0)), allowances.get(wid, 0))
    for kind, entries in (("p", own.pending), ("u", own.unflushed), ("r", own.reservations),
                          ("h", own.health), ("s", own.seen)):
        for k, v in entries.items():
            out[(kind, k)] = v
    for other in relayed:
        for wid, v in other.windows.items():
            out[("x", (other.node_id, other.boot_epoch, wid))] = v
    return out


class Versions:
    """The sequence at which each entry of this boot's messages last changed, and the gauges that
    disappeared (tombstones, kept `ANTI_ENTROPY_ROUNDS` rounds: a peer further behind gets the
    whole state)."""

    def __init__(self, keep: int = ANTI_ENTROPY_ROUNDS) -> None:
        self.values: dict[Entry, Any] = {}
        self.changed: dict[Entry, int] = {}
        self.removed: dict[Entry, int] = {}
        self.floor = 0  # deltas from a base below this cannot be built any more
        self._keep = keep

    def record(self, entries: Mapping[Entry, Any], seq: int) -> tuple[list[Entry], list[Entry]]:
        """The entries of message `seq` (flatten): note what changed since the previous one;
        returns the entries changed and those gone."""
        old, changed, removed = self.values, self.changed, self.removed
        now: list[Entry] = []
        for e, v in entries.items():
            if old.get(e) != v:
                changed[e] = seq
                removed.pop(e, None)
                now.append(e)
        gone = list(old.keys() - entries.keys())
        for e in gone:
            del changed[e]
            if e[0] in GAUGES or (e[0] == "w" and old[e][3]):  # a gauge (or an unused claim) went away
                removed[e] = seq
        self.values = dict(entries)
        cut = seq - self._keep
        for e, at in [(e, at) for e, at in removed.items() if at <= cut]:
            del removed[e]
            self.floor = max(self.floor, at + 1)
        return now, gone

    def since(self, base: int, skip: str = "") -> tuple[dict[Entry, Any], list[Entry]]:
        """Entries changed after message `base` (with their current values) and gauges removed,
        but those of the kinds in `skip`."""
        values = self.values
        return ({e: values[e] for e, s in self.changed.items() if s > base and e[0] not in skip},
                [e for e, s in self.removed.items() if s > base and e[0] not in skip])


@dataclass(frozen=True)
class Part:
    """A message's content as entries: the own component (partial for a delta), relayed counts and
    the gauges removed since the base."""

    state: NodeState
    relayed: list[NodeState] = field(default_factory=list)
    removed_health: list[str] = field(default_factory=list)
    removed_seen: list[str] = field(default_factory=list)


def unflatten(header: NodeState, entries: Mapping[Entry, Any], removed: Iterable[Entry] = ()) -> Part:
    """Build a message's content from entries (all of them: a full state; some: a delta)."""
    windows: dict[WindowId, tuple[int, int, int]] = {}
    allowances: dict[WindowId, int] = {}
    maps: dict[str, dict[Any, Any]] = {k: {} for k in "purhs"}
    relayed: dict[tuple[str, int], dict[WindowId, tuple[int, int, int]]] = {}
    for (kind, key), v in entries.items():
        if kind == "w":
            windows[key] = v[:3]  # type: ignore[index]
            if v[3]:
                allowances[key] = v[3]  # type: ignore[index]
        elif kind == "x":
            node, epoch, wid = cast(tuple[str, int, WindowId], key)
            relayed.setdefault((node, epoch), {})[wid] = v
        else:
            maps[kind][key] = v
    removed_health, removed_seen = [], []
    for kind, key in removed:
        if kind == "w":
            windows.setdefault(key, (0, 0, 0))  # type: ignore[arg-type]  # allowance 0: the claim is gone
        elif kind == "h":
            removed_health.append(str(key))
        elif kind == "s":
            removed_seen.append(str(key))
    state = replace(header, windows=windows, allowances=allowances, pending=maps["p"], unflushed=maps["u"],
                    reservations=maps["r"], health=maps["h"], seen=maps["s"])
    return Part(state, [NodeState(n, e, windows=w) for (n, e), w in sorted(relayed.items())],
                removed_health, removed_seen)


def _max_into(out: dict[Any, Any], new: Mapping[Any, tuple[int, ...]]) -> dict[Any, Any]:
    for k, v in new.items():
        old = out.get(k)
        out[k] = v if old is None else tuple(map(max, old, v))
    return out


def apply(held: NodeState, part: Part) -> NodeState:
    """The sender's component as of the delta's message: `held` (as of its base or later) with
    the delta's entries merged by max and its gauges set (a window it names carries that window's
    unused claim, 0 meaning none). `held`'s pending spend grouped by subject moves to the result,
    updated for the delta's entries only (view.regrouped)."""
    d = part.state
    allowances = dict(held.allowances)
    for wid in d.windows:
        if d.allowances.get(wid):
            allowances[wid] = d.allowances[wid]
        else:
            allowances.pop(wid, None)
    health: dict[str, Health] = {**held.health, **d.health}
    for name in part.removed_health:
        health.pop(name, None)
    seen = {**held.seen, **d.seen}
    for name in part.removed_seen:
        seen.pop(name, None)
    return regrouped(NodeState(
        node_id=held.node_id, boot_epoch=held.boot_epoch, seq=max(held.seq, d.seq),
        log_head=max(held.log_head, d.log_head),
        windows=_max_into(dict(held.windows), d.windows), pending=_max_into(dict(held.pending), d.pending),
        unflushed=_max_into(dict(held.unflushed), d.unflushed),
        reservations=_max_into(dict(held.reservations), d.reservations),
        health=health, allowances=allowances, seen=seen,
    ), held, d.pending)


def can_apply(view: View, node: str, epoch: int, base: int) -> bool:
    """The receiver holds `node`'s boot `epoch` whole as of message `base` or later: it has heard
    from that boot (not only relayed counts), not forgotten it as silent, and not seen it superseded."""
    held = view.components.get((node, epoch))
    return (held is not None and node in view.heard and view.epochs.get(node, epoch) == epoch
            and held.seq >= base)


@dataclass
class Link:
    """What this node knows of one target: the newest of its messages (this boot) the target
    accepted, whether the target understands deltas, and when it last got the whole state."""

    acked: int = 0
    deltas: bool = False
    full_at: int = -ANTI_ENTROPY_ROUNDS  # the sequence of the last whole state sent (the first: less `phase`)
    phase: int = 0  # rounds (below half the anti-entropy period) that spread targets' whole states apart
    fanout: bool = False  # it takes bounded fanout: pushes every few rounds, relays, no `seen` (fanout.py)
    node: str = ""  # its node id (from its Ack)
    digests: bool = False  # it answers digest pulls (digest.py): no relays, own counts pulled, not pushed


def phase_of(target: str, every: int = ANTI_ENTROPY_ROUNDS) -> int:
    """A stable spread per target, so whole states to many targets do not all fall in one round."""
    return zlib.crc32(target.encode()) % max(1, every // 2)


def base_for(link: Link | None, seq: int, floor: int, every: int = ANTI_ENTROPY_ROUNDS) -> int:
    """The base of the next push to a target (0: the whole state): the newest message it accepted,
    if it understands deltas, that base is still buildable and its anti-entropy round is not due."""
    if link is None or not link.deltas or link.acked <= 0 or link.acked < floor or seq - link.full_at >= every:
        return 0
    return link.acked


def acknowledged(link: Link, seq: int, base: int, *, accepted: bool, deltas: bool, need_full: bool,
                 fanout: bool = False, node: str = "", digests: bool = False) -> Link:
    """The target's answer to message `seq` (sent with `base`)."""
    node = node or link.node
    if need_full:  # it lacks the base (restarted, or forgot us): the whole state next
        return Link(0, deltas, link.full_at, link.phase, fanout, node, digests)
    acked = max(link.acked, seq) if accepted else link.acked
    if not (accepted and base == 0):
        return Link(acked, deltas, link.full_at, link.phase, fanout, node, digests)
    # the first whole state counts as sent `phase` rounds earlier: targets first contacted together
    # get their anti-entropy in different rounds from then on, each every `every` rounds
    return Link(acked, deltas, seq - link.phase if link.full_at < 0 else seq, link.phase, fanout, node, digests)
