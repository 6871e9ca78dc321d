"""The cluster view: what this node believes every peer has used, reserved and acknowledged.

One pure value and pure functions over it (no I/O, no clock: callers pass `now`): the value and
how messages, epochs, pruning and takeovers change it. What the meter, routing and the admin API
read from it is in view_reads.py. Production (cluster/runtime.py) and the tests use the same
functions.

* A node is identified by (node id, boot epoch). Each boot owns one component and only ever grows
  it; components merge by maximum per entry (a G-counter; reservations are a PN-counter of
  cumulative reserved and released totals), so duplicated, reordered or replayed messages change
  nothing.
* A newer boot epoch of a node supersedes every older one: the old component's unused claims,
  reservations in flight and pending usage are gone, and a message of an older epoch arriving
  later brings none of them back. Epochs are learned from gossip and from outside (the
  `cluster_nodes` rows and the boot epochs the log holds), so a replayed old-epoch message cannot
  resurrect a crashed boot's reservations, even after this node restarted. What the old boot
  admitted (its rate windows) did happen: those counts stay until their window ends.
* Usage not yet in the log is tagged with the flush (boot epoch, seq) that will carry it and
  stops counting once the log holds that flush (`durable`): never twice.
* `heard` is when (this node's monotonic clock) a node's newest message arrived. Only peers heard
  within the split timeout take part in splitting a limit; a starting node (no gossip yet) or a
  dead one (silent) cannot freeze a round.
* A boot that is superseded or forgotten (silent) also leaves an **orphan**: its usage not yet in
  the log (pending spend and the unflushed deltas by flush seq). Orphans keep counting for budgets
  until the log holds their flushes; the leader appends them on the dead boot's behalf
  (`takeover`), idempotently by (node, boot epoch, flush seq).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TypeVar

Component = tuple[str, int]  # (node_id, boot_epoch)
WindowId = tuple[str, str, int]  # (subject e.g. "k:<id>", window name e.g. "rpm", window start)
PendingId = tuple[int, int, str, int]  # (boot epoch, flush seq, subject, unix day)
# (boot epoch, flush seq, key_id, team_id, provider, model, unix hour): one usage delta of a flush
UnflushedId = tuple[int, int, str, str | None, str, str, int]
# requests, prompt tokens, completion tokens, nUSD, images, audio seconds, characters (usage/units.py)
# (web searches, file searches, containers, tools nUSD: the hosted tool uses, UsageDelta's order)
Usage = tuple[int, ...]
Delta = tuple[str, str | None, str, str, int, Usage]  # key_id, team_id, provider, model, hour, usage
Durable = Callable[[str, int], int]  # (node_id, boot epoch) -> highest flush seq in the log

# subject -> its pending entries: one state's pending spend grouped by subject (owned by one state)
SubjectSpend = dict[str, dict[PendingId, tuple[int, int, int]]]

K = TypeVar("K")


class Grouping:
    """The cache that holds one state's pending spend grouped by subject (`spend_of`): derived from
    the state's `pending`, filled on the first budget read or handed on by `regrouped`. The one
    mutable part of a state, kept apart so the state itself stays frozen."""

    __slots__ = ("groups",)

    def __init__(self) -> None:
        self.groups: SubjectSpend | None = None


@dataclass(frozen=True)
class Health:
    """A deployment's recent behaviour as one node sees it. A gauge: the newer message wins."""

    latency_ms: float = 0.0
    error_rate: float = 0.0
    requests: int = 0  # sample size behind the two figures
    open: bool = False  # the node's circuit breaker is resting this deployment
    ttft_ms: float = 0.0  # moving time to first token of streams (this node's own; not gossiped)


@dataclass(frozen=True)
class NodeState:
    """Everything one boot of a node gossips about itself (one component)."""

    node_id: str
    boot_epoch: int
    seq: int = 0
    log_head: int = 0
    # -> (requests, tokens, tokens released): released tokens are estimates handed back at settlement
    windows: Mapping[WindowId, tuple[int, int, int]] = field(default_factory=dict)
    pending: Mapping[PendingId, tuple[int, int, int]] = field(default_factory=dict)  # -> (req, tok, nUSD)
    # the deltas of flushes not yet appended, enough for a peer to append them if this boot dies
    unflushed: Mapping[UnflushedId, Usage] = field(default_factory=dict)
    reservations: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # -> (reserved, released) nUSD
    health: Mapping[str, Health] = field(default_factory=dict)
    # gauges, taken from the newest message: unused limit claims, and what the sender saw of peers
    allowances: Mapping[WindowId, int] = field(default_factory=dict)
    seen: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # peer -> (boot_epoch, seq)
    # `pending` by subject, for budget reads (spend_of): derived, never compared, a fresh empty one
    # per state (`replace` included); a state built from this one takes the grouping over and keeps
    # it up to date (`regrouped`)
    grouping: Grouping = field(default_factory=Grouping, init=False, repr=False, compare=False)

    @property
    def component(self) -> Component:
        return (self.node_id, self.boot_epoch)

    @property
    def holds_usage(self) -> bool:
        return bool(self.pending or self.unflushed)


@dataclass(frozen=True)
class View:
    components: Mapping[Component, NodeState] = field(default_factory=dict)
    epochs: Mapping[str, int] = field(default_factory=dict)  # node -> newest boot epoch known
    heard: Mapping[str, float] = field(default_factory=dict)  # node -> monotonic time of its newest message
    # dead boots' usage not yet in the log (pending and unflushed only), and since when they are dead
    orphans: Mapping[Component, NodeState] = field(default_factory=dict)
    orphaned_at: Mapping[Component, float] = field(default_factory=dict)


EMPTY = View()


def _max_tuples(a: Mapping[K, tuple[int, ...]], b: Mapping[K, tuple[int, ...]],
                changed: list[K] | None = None) -> Mapping[K, tuple[int, ...]]:
    """Max per entry; `a` itself when `b` raises none of its entries (no copy: states are never
    changed in place, and most of what a relay, a pull or forwarded news brings is held already).
    The keys whose value changed are appended to `changed`."""
    out: dict[K, tuple[int, ...]] | None = None
    for k, vb in b.items():
        va = a.get(k)
        if va is not None:
            if va == vb:
                continue
            vb = tuple(map(max, va, vb))
            if vb == va:
                continue
        if out is None:
            out = dict(a)
        out[k] = vb
        if changed is not None:
            changed.append(k)
    return a if out is None else out


def merge_node(a: NodeState, b: NodeState) -> NodeState:
    """Join of two states of the same component: max per entry; gauges from the newer message."""
    if a.component != b.component:
        raise ValueError(f"cannot merge components {a.component} and {b.component}")
    newer = b if (b.seq, b.log_head) >= (a.seq, a.log_head) else a
    changed: list[PendingId] = []
    return regrouped(NodeState(
        node_id=a.node_id,
        boot_epoch=a.boot_epoch,
        seq=max(a.seq, b.seq),
        log_head=max(a.log_head, b.log_head),
        windows=_max_tuples(a.windows, b.windows),  # type: ignore[arg-type]
        pending=_max_tuples(a.pending, b.pending, changed),  # type: ignore[arg-type]
        unflushed=_max_tuples(a.unflushed, b.unflushed),
        reservations=_max_tuples(a.reservations, b.reservations),  # type: ignore[arg-type]
        health=dict(newer.health),
        allowances=dict(newer.allowances),
        seen=dict(newer.seen),
    ), a, changed)


def _superseded(view: View, node: str, epoch: int) -> bool:
    return epoch < view.epochs.get(node, epoch)


def _admitted_only(state: NodeState) -> NodeState:
    """What outlives a boot (superseded, or silent for long): the requests and tokens it admitted,
    which count against their windows until those end. Claims, reservations and pending usage died
    with it."""
    return NodeState(state.node_id, state.boot_epoch, state.seq, state.log_head, windows=state.windows)


def _orphan(state: NodeState) -> NodeState:
    """What a dead boot leaves for the leader to append: its usage not yet in the log."""
    return regrouped(NodeState(state.node_id, state.boot_epoch, state.seq, pending=dict(state.pending),
                               unflushed=dict(state.unflushed)), state)


def _adopt(orphans: dict[Component, NodeState], at: dict[Component, float], state: NodeState,
           now: float) -> None:
    if not state.holds_usage:
        return
    old = orphans.get(state.component)
    orphans[state.component] = _orphan(state) if old is None else merge_node(old, _orphan(state))
    at[state.component] = min(now, at.get(state.component, now))


def _fold_in(comps: dict[Component, NodeState], state: NodeState, whole: bool = False) -> None:
    old = comps.get(state.component)
    comps[state.component] = state if old is None or whole else merge_node(old, state)


def observe_epochs(view: View, epochs: Mapping[str, int], now: float = 0.0) -> View:
    """Learn boot epochs from outside gossip (cluster_nodes rows, the log): every component of an
    older boot of those nodes keeps only what it admitted, its usage not yet in the log becomes an
    orphan (from `now`), and later messages of older boots bring nothing else back."""
    known = dict(view.epochs)
    newer = set()
    for node, epoch in epochs.items():
        if epoch > known.get(node, -1):
            known[node] = epoch
            newer.add(node)
    if not newer:
        return view
    comps: dict[Component, NodeState] = {}
    orphans, at = dict(view.orphans), dict(view.orphaned_at)
    for c, st in view.components.items():
        if c[1] >= known.get(c[0], c[1]):
            comps[c] = st
        else:
            comps[c] = _admitted_only(st)
            _adopt(orphans, at, st, now)
    # a new boot has not been heard from until its own first message
    heard = {n: t for n, t in view.heard.items() if n not in newer or (n, known[n]) in comps}
    return View(comps, known, heard, orphans, at)


def merge(view: View, state: NodeState, now: float = 0.0, *, whole: bool = False) -> View:
    """The view with one more message folded in (received at `now`); of a message of a superseded
    boot only what it admitted counts. A boot heard from again is no orphan: its own messages
    carry its usage. `whole`: `state` already joins the component held (a delta applied to it,
    delta.apply), so it replaces it without another pass over every entry."""
    if _superseded(view, state.node_id, state.boot_epoch):
        comps = dict(view.components)
        _fold_in(comps, _admitted_only(state))
        return replace(view, components=comps)
    view = observe_epochs(view, {state.node_id: state.boot_epoch}, now)
    comps = dict(view.components)
    _fold_in(comps, state, whole)
    heard = dict(view.heard)
    heard[state.node_id] = max(now, heard.get(state.node_id, now))
    orphans, at = view.orphans, view.orphaned_at
    if state.component in orphans:
        orphans = {c: o for c, o in orphans.items() if c != state.component}
        at = {c: t for c, t in at.items() if c != state.component}
    return View(comps, view.epochs, heard, orphans, at)


def is_live(view: View, comp: Component) -> bool:
    """This node heard from that boot itself and still takes it for alive (current, not forgotten
    as silent): relayed entries of it count in full, not only its windows."""
    return comp[0] in view.heard and comp in view.components and not _superseded(view, *comp)


def merge_admitted(view: View, state: NodeState) -> View:
    """Fold in a boot's entries relayed by a peer (`relayed`), by max, without marking its node as
    heard, learning epochs from it or touching its gauges or sequence. Of a boot this node heard
    from itself and still takes for alive (current, not forgotten as silent): its monotone entries
    (counts, pending usage, unflushed deltas, reservations); of any other: its windows only (what it
    admitted did happen; its reservations and pending usage must not come back through a relay)."""
    if is_live(view, state.component):
        part = NodeState(state.node_id, state.boot_epoch, windows=state.windows, pending=state.pending,
                         unflushed=state.unflushed, reservations=state.reservations)
    else:
        part = NodeState(state.node_id, state.boot_epoch, windows=state.windows)
    comps = dict(view.components)
    _fold_in(comps, part)
    return replace(view, components=comps)


def relayed(view: View, *, lag: int = 4) -> list[NodeState]:
    """The counts this node's next message relays (windows only): every crashed boot it still counts,
    and the current boot of any node one of its peers has fallen behind on (that peer's latest
    acknowledgement of the node lags this node's by more than `lag` messages, or names an older boot):
    a peer cut off from one node still learns, through the others, what that node admitted."""
    current = {c[0]: c for c in view.components if not _superseded(view, *c)}
    wanted: set[str] = set()
    for comp_of_peer, state in view.components.items():
        peer = comp_of_peer[0]
        if comp_of_peer != current.get(peer) or not state.seen:  # a release with bounded fanout sends
            continue  # no acknowledgements: relays carry what it lacks (fanout.py)
        for node, comp in current.items():
            if node == peer or node in wanted:
                continue
            seen = state.seen.get(node)
            if seen is None or seen[0] < comp[1] or seen[1] + lag < view.components[comp].seq:
                wanted.add(node)
    return [_admitted_only(s) for c, s in view.components.items()
            if s.windows and (_superseded(view, *c) or c[0] in wanted)]


def join(a: View, b: View) -> View:
    """Join of two views (commutative, associative, idempotent)."""
    out = observe_epochs(a, b.epochs)
    for state in b.components.values():
        out = merge(out, state, b.heard.get(state.node_id, 0.0))
    orphans, at = dict(out.orphans), dict(out.orphaned_at)
    for comp, orphan in b.orphans.items():
        if not (comp in out.components and not _superseded(out, *comp) and comp[0] in out.heard):
            _adopt(orphans, at, orphan, b.orphaned_at.get(comp, 0.0))
    return replace(out, orphans=orphans, orphaned_at=at)


def fold(states: Iterable[NodeState], view: View = EMPTY) -> View:
    for s in states:
        view = merge(view, s)
    return view


# --- pruning ---------------------------------------------------------------------------------------


def prune(view: View, *, min_window_start: Mapping[str, int], durable: Durable) -> View:
    """Drop what can no longer count: ended windows and claims, pending usage the log now holds
    (an orphan whose flushes are all in the log is gone). Monotone (a dropped entry would be
    ignored by the readers anyway), so it commutes with merge."""
    comps: dict[Component, NodeState] = {}
    for comp, state in view.components.items():
        windows = {w: v for w, v in state.windows.items() if w[2] >= min_window_start.get(w[1], w[2])}
        allowances = {w: v for w, v in state.allowances.items() if w[2] >= min_window_start.get(w[1], w[2])}
        if not windows and _superseded(view, *comp):  # an old boot whose windows all ended
            continue
        pending, unflushed, dropped = _not_durable(state, durable)
        comps[comp] = regrouped(replace(state, windows=windows, pending=pending, unflushed=unflushed,
                                        allowances=allowances), state, removed=dropped)
    orphans: dict[Component, NodeState] = {}
    for comp, orphan in view.orphans.items():
        pending, unflushed, dropped = _not_durable(orphan, durable)
        if pending or unflushed:
            orphans[comp] = regrouped(replace(orphan, pending=pending, unflushed=unflushed), orphan, removed=dropped)
    at = {c: t for c, t in view.orphaned_at.items() if c in orphans}
    return View(comps, view.epochs, view.heard, orphans, at)


def _not_durable(state: NodeState, durable: Durable) -> tuple[
        Mapping[PendingId, tuple[int, int, int]], Mapping[UnflushedId, Usage], list[PendingId]]:
    """The state's pending and unflushed usage the log does not hold yet, and the pending entries
    dropped; a mapping that loses nothing is returned as it is (no copy)."""
    epochs = {p[0] for p in state.pending} | {u[0] for u in state.unflushed}
    floor = {e: durable(state.node_id, e) for e in epochs}
    pending = {p: v for p, v in state.pending.items() if p[1] > floor[p[0]]}
    unflushed = {u: v for u, v in state.unflushed.items() if u[1] > floor[u[0]]}
    if len(pending) == len(state.pending):
        return state.pending, state.unflushed if len(unflushed) == len(state.unflushed) else unflushed, []
    dropped = [p for p in state.pending if p[1] <= floor[p[0]]]
    return pending, state.unflushed if len(unflushed) == len(state.unflushed) else unflushed, dropped


def forget_silent(view: View, *, now: float, after: float, keep: Iterable[str] = ()) -> View:
    """Forget what nodes silent for `after` seconds (and not in `keep`) held: claims, reservations.
    What they admitted counts until its window ends (`prune`); their usage not yet in the log stays
    as an orphan. Their known epochs stay (replays remain refused)."""
    kept = set(keep)
    alive = {n for n, t in view.heard.items() if now - t <= after} | kept
    comps: dict[Component, NodeState] = {}
    orphans, at = dict(view.orphans), dict(view.orphaned_at)
    for c, st in view.components.items():
        if c[0] in alive:
            comps[c] = st
            continue
        _adopt(orphans, at, st, now)
        if st.windows:
            comps[c] = _admitted_only(st)
    heard = {n: t for n, t in view.heard.items() if n in alive}
    return View(comps, view.epochs, heard, orphans, at)


def expire_orphans(view: View, *, now: float, after: float) -> View:
    """Give up on orphans older than `after` seconds (no leader appended them: none runs, or the
    database stayed down): they stop counting, so a dead boot cannot hold a budget forever."""
    at = {c: t for c, t in view.orphaned_at.items() if now - t <= after}
    if len(at) == len(view.orphaned_at):
        return view
    return replace(view, orphans={c: o for c, o in view.orphans.items() if c in at}, orphaned_at=at)


def takeover(view: View, durable: Durable, *, orphaned_before: float | None = None
             ) -> list[tuple[str, int, int, list[Delta]]]:
    """The flushes dead boots had gossiped that the log does not hold yet, as (node, boot epoch,
    flush seq, deltas) in seq order: what the leader appends on their behalf (with
    `orphaned_before`, only boots dead since before then: what any peer appends as a fallback)."""
    out: list[tuple[str, int, int, list[Delta]]] = []
    for (node, epoch), orphan in sorted(view.orphans.items()):
        if orphaned_before is not None and view.orphaned_at.get((node, epoch), 0.0) >= orphaned_before:
            continue
        floor = durable(node, epoch)
        by_seq: dict[int, list[Delta]] = {}
        for (e, seq, key_id, team_id, provider, model, hour), usage in orphan.unflushed.items():
            if e == epoch and seq > floor:
                by_seq.setdefault(seq, []).append((key_id, team_id, provider, model, hour, usage))
        out.extend((node, epoch, seq, sorted(deltas, key=_delta_order)) for seq, deltas in sorted(by_seq.items()))
    return out


def _delta_order(d: Delta) -> tuple[str, str, str, str, int]:
    return (d[0], d[1] or "", d[2], d[3], d[4])


# --- the pending spend of a state, grouped by subject (budget reads) -----------------------------


def spend_by_subject(pending: Mapping[PendingId, tuple[int, int, int]]) -> SubjectSpend:
    """One state's pending spend grouped by budget subject."""
    out: SubjectSpend = {}
    for pid, v in pending.items():
        entries = out.get(pid[2])
        if entries is None:
            out[pid[2]] = {pid: v}
        else:
            entries[pid] = v
    return out



def regrouped(new: NodeState, old: NodeState, changed: Collection[PendingId] = (),
              removed: Collection[PendingId] = ()) -> NodeState:
    """`new`, just built from `old`, takes `old`'s grouping by subject over: `new.pending` must be
    `old.pending` with the `changed` entries set (to their values in `new.pending`) and the
    `removed` ones gone, nothing else. The grouping is updated in place for the entries named (as
    cheap per entry as grouping it afresh, and no copy of the rest), so it moves: `old` has none
    afterwards (read again, it would be grouped afresh) and a grouping always belongs to one state.
    When more entries changed than are left (a prune dropping old flushes), what is left is
    grouped afresh instead. Without `old`'s grouping, `new` has none either: it is grouped when
    first read."""
    groups = old.grouping.groups
    if groups is None:
        return new
    old.grouping.groups = None  # it moves to `new`
    if len(changed) + len(removed) > len(new.pending):
        groups = spend_by_subject(new.pending)
    else:
        for pid in removed:
            entries = groups.get(pid[2])
            if entries is not None:
                entries.pop(pid, None)
                if not entries:
                    del groups[pid[2]]
        pending = new.pending
        for pid in changed:
            entries = groups.get(pid[2])
            if entries is None:
                groups[pid[2]] = {pid: pending[pid]}
            else:
                entries[pid] = pending[pid]
    new.grouping.groups = groups
    return new



class ViewCell:
    """The one mutable holder of a node's view: the gossip receiver folds messages in, the cluster
    runtime prunes and feeds outside epochs, the meter reads (view_reads). Every change goes through
    the pure functions above."""

    def __init__(self) -> None:
        self.value: View = EMPTY

    def accept(self, state: NodeState, now: float, *, whole: bool = False) -> bool:
        """Fold one message in; False if it belongs to a superseded boot (only what it admitted counts)."""
        superseded = _superseded(self.value, state.node_id, state.boot_epoch)
        self.value = merge(self.value, state, now, whole=whole)
        return not superseded

    def accept_relayed(self, state: NodeState, me: str, my_epoch: int) -> None:
        """Fold in a boot's counts a peer relayed (never this node's own current boot: it counts itself)."""
        if state.node_id != me or state.boot_epoch < my_epoch:
            self.value = merge_admitted(self.value, state)

    def observe_epochs(self, epochs: Mapping[str, int], now: float = 0.0) -> None:
        self.value = observe_epochs(self.value, epochs, now)
