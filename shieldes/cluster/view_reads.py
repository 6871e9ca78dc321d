"""What the node reads from its cluster view (view.py): peers to split a limit with, their rate
window counts and unused claims, their spend not yet in the log and reservations in flight, and
the deployment health they gossiped. Pure functions of the view, run on the request path: each
visits one entry per peer (a budget read, the subject's own entries of each peer's spend)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from shieldes.cluster.view import Durable, Health, NodeState, PendingId, View, spend_by_subject

if TYPE_CHECKING:
    from shieldes.projections.usage import UsageState


def participants(view: View, *, now: float, within: float, exclude: str,
                 reachable: Iterable[str] = (), gone: Iterable[str] = (), starting: Iterable[str] = ()) -> list[str]:
    """The peers a limit is split with and whose acknowledgements end a round: those that gossiped
    in their current boot and were heard from within `within` seconds, or that still take this
    node's pushes (`reachable`), unless known `gone` (their address refuses connections: the
    process is dead) or `starting` (they gossip, but their HTTP socket does not listen yet: they
    admit nothing, so a share of theirs would only be taken from the serving nodes). A peer never
    heard or a dead one takes no part either."""
    ok, out = set(reachable), set(gone) | set(starting)
    return sorted(n for n, t in view.heard.items()
                  if n != exclude and n not in out and (now - t <= within or n in ok))


def not_serving(view: View, serving: Mapping[str, int] | None) -> set[str]:
    """Peers heard by gossip that do not serve yet: no row of the boot they gossip from says it serves
    (`serving`: node -> boot epoch of its row, when that row says it serves). A node registers its
    row as `starting` before it gossips and writes `serving` once its HTTP socket listens, so a boot
    heard before any row of it was read is starting too. None (rows not read lately): none known."""
    if serving is None:
        return set()
    return {n for n in view.heard if serving.get(n, -1) < view.epochs.get(n, 0)}


def window_count(view: View, subject: str, window: str, starts: Iterable[int], *,
                 exclude: str | None = None, own_epoch: int | None = None) -> tuple[int, int]:
    """(requests, tokens net of released estimates) counted by every component (but node
    `exclude`; with `own_epoch`, only that boot of it: its crashed boots count) over the windows
    starting at `starts`."""
    req = tok = 0
    starts = tuple(starts)
    for (node, epoch), state in view.components.items():
        if node == exclude and (own_epoch is None or epoch >= own_epoch):
            continue
        windows = state.windows
        for start in starts:
            v = windows.get((subject, window, start))
            if v:
                req += v[0]
                tok += v[1] - v[2]
    return req, tok


def window_allowance(view: View, subject: str, window: str, start: int, *, exclude: str | None = None) -> int:
    """Unused limit claims of every component (but node `exclude`) in one window."""
    return sum(s.allowances.get((subject, window, start), 0)
               for (node, _), s in view.components.items() if node != exclude)


def spend_of(state: NodeState) -> Mapping[str, Mapping[PendingId, tuple[int, int, int]]]:
    """`state.pending` by subject (read only). A state built from another one by the functions of
    this module (a merge, a prune, a dead boot's orphan) or by delta.apply takes the other's over,
    updated for the entries that changed (`regrouped`); only a state that arrived whole (a peer's
    first message) is grouped in full, once, the first time a budget check reads it."""
    cache = state.grouping
    groups = cache.groups
    if groups is None:
        groups = cache.groups = spend_by_subject(state.pending)
    return groups


def pending_spend(view: View, subject: str, days: range, durable: Durable, *, exclude: str | None = None) -> int:
    """nUSD of `subject` in `days` gossiped but not yet in the log as far as this node has read it
    (dead boots' too, until the leader's append on their behalf is in the log), plus what peers
    hold reserved for requests in flight. Each state's pending spend is read grouped by subject
    (`spend_of`): a request visits only the subject's own entries, one short list per peer."""
    total = 0
    for states in (view.components, view.orphans):
        for (node, _), state in states.items():
            if node == exclude:
                continue
            if state.pending:
                groups = state.grouping.groups
                entries = (spend_of(state) if groups is None else groups).get(subject)
                if entries:
                    for (epoch, seq, _, day), v in entries.items():
                        if day in days and seq > durable(node, epoch):
                            total += v[2]
            r = state.reservations.get(subject)
            if r and r[0] > r[1]:
                total += r[0] - r[1]
    return total


class ViewReads:
    """The reads requests make of one view value, each computed once. A view is never changed in
    place (every message, prune or takeover makes a new value), so a read of the same value with the
    same arguments gives the same answer: between two gossip messages (a few per second per peer)
    thousands of requests read the same few keys' entries, and only the first of each reads the
    view. The spend read also depends on the flushes the log holds, so those are kept for one log
    position. Memo sizes are bounded (`MAX_MEMO`), as keys come and go."""

    MAX_MEMO = 50_000
    __slots__ = ("allowances", "counts", "exclude", "opened", "own_epoch", "position", "spend", "usage", "view")

    def __init__(self, view: View, exclude: str, own_epoch: int | None = None) -> None:
        self.view = view
        self.exclude = exclude
        self.own_epoch = own_epoch
        self.position = -1
        self.usage: UsageState | None = None
        self.allowances: dict[tuple[str, str, int], int] = {}
        self.counts: dict[tuple[str, str, int], tuple[int, int]] = {}
        self.spend: dict[tuple[str, range], int] = {}
        self.opened: dict[str, frozenset[str]] = {}

    def of(self, view: View) -> ViewReads:
        """The reads of `view`: these if they are of it, else new ones (same node, same boot)."""
        return self if view is self.view else ViewReads(view, self.exclude, self.own_epoch)

    def window_allowance(self, subject: str, window: str, start: int) -> int:
        """`window_allowance` of this view for every node but `exclude`."""
        k = (subject, window, start)
        v = self.allowances.get(k)
        if v is None:
            if len(self.allowances) >= self.MAX_MEMO:
                self.allowances.clear()
            v = self.allowances[k] = window_allowance(self.view, subject, window, start, exclude=self.exclude)
        return v

    def window_count(self, subject: str, window: str, start: int) -> tuple[int, int]:
        """`window_count` of one window of this view for every node but `exclude` (its crashed boots
        count: those before `own_epoch`)."""
        k = (subject, window, start)
        v = self.counts.get(k)
        if v is None:
            if len(self.counts) >= self.MAX_MEMO:
                self.counts.clear()
            v = self.counts[k] = window_count(self.view, subject, window, (start,), exclude=self.exclude,
                                              own_epoch=self.own_epoch)
        return v

    def opened_by(self, deployment: str) -> frozenset[str]:
        """`opened_by` of this view: routing asks it of every request's deployments, and it is
        nearly always empty, so the peers heard from lately need not be listed then."""
        v = self.opened.get(deployment)
        if v is None:
            if len(self.opened) >= self.MAX_MEMO:
                self.opened.clear()
            v = self.opened[deployment] = opened_by(self.view, deployment)
        return v

    def pending_spend(self, subject: str, days: range, usage: UsageState, position: int) -> int:
        """`pending_spend` of this view for every node but `exclude`, with the log as `usage` holds it
        at `position` (the flushes it holds change only with them)."""
        if position != self.position or usage is not self.usage:
            self.spend.clear()
            self.position, self.usage = position, usage
        k = (subject, days)
        v = self.spend.get(k)
        if v is None:
            if len(self.spend) >= self.MAX_MEMO:
                self.spend.clear()
            v = self.spend[k] = pending_spend(self.view, subject, days, usage.durable_seq, exclude=self.exclude)
        return v


def reservations(view: View, *, exclude: str | None = None) -> dict[str, int]:
    """subject -> nUSD peers (all but node `exclude`) hold for requests in flight, nonzero only."""
    out: dict[str, int] = {}
    for (node, _), state in view.components.items():
        if node != exclude:
            for subject, (reserved, released) in state.reservations.items():
                if reserved > released:
                    out[subject] = out.get(subject, 0) + reserved - released
    return out


def deployment_open(view: View, deployment: str, fresh: Iterable[str]) -> bool:
    """Some peer in `fresh` has its circuit breaker resting `deployment`."""
    nodes = set(fresh)
    return any(node in nodes and (h := s.health.get(deployment)) is not None and h.open
               for (node, _), s in view.components.items())


def opened_by(view: View, deployment: str) -> frozenset[str]:
    """The nodes whose gossiped breaker rests `deployment` (fresh or not): `deployment_open` is
    whether one of them is in `fresh`."""
    return frozenset(node for (node, _), s in view.components.items()
                     if (h := s.health.get(deployment)) is not None and h.open)


def peer_health(view: View, fresh: Iterable[str], exclude: str) -> list[Mapping[str, Health]]:
    """The deployment health each peer in `fresh` gossiped (routing merges them with its own)."""
    nodes = set(fresh) - {exclude}
    return [s.health for (node, _), s in view.components.items() if node in nodes]
