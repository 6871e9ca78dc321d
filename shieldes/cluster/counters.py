"""Gossiped hot counters as CRDTs: pure data and pure merges, no I/O, no clock.

Each node owns one component, `(node_id, boot_epoch)`, and only ever grows it; a restart starts a
new component (new boot epoch) instead of rewinding the old one. Merging takes the maximum per
component and per entry (a G-counter), so duplicated, reordered or replayed messages change
nothing. Values that go down are split into two grow-only halves (reserved and released: a
PN-counter). Usage not yet in the log is tagged with the flush `(epoch, seq)` that will carry it,
and stops counting as soon as the log holds that flush (`UsageState.durable_seq`): never twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TypeVar

Component = tuple[str, int]  # (node_id, boot_epoch)
WindowId = tuple[str, str, int]  # (subject e.g. "key:<id>", window name e.g. "rpm", window start)
PendingId = tuple[int, int, str, int]  # (flush epoch, flush seq, subject, unix day)
Durable = Callable[[str, int], int]  # (node_id, flush epoch) -> highest flush seq in the log

K = TypeVar("K")


@dataclass(frozen=True)
class Health:
    """A deployment's recent behaviour as one node sees it. A gauge: the newer message wins."""

    latency_ms: float = 0.0
    error_rate: float = 0.0
    requests: int = 0  # sample size behind the two figures
    open: bool = False  # the node's circuit breaker is resting this deployment


@dataclass(frozen=True)
class NodeState:
    """Everything one node gossips about itself (one G-counter component)."""

    node_id: str
    boot_epoch: int
    seq: int = 0
    log_head: int = 0
    windows: Mapping[WindowId, tuple[int, int]] = field(default_factory=dict)  # -> (requests, tokens)
    pending: Mapping[PendingId, tuple[int, int, int]] = field(default_factory=dict)  # -> (req, tok, nUSD)
    reservations: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # -> (reserved, released) nUSD
    health: Mapping[str, Health] = field(default_factory=dict)
    # gauges, taken from the newest message: unused limit claims, and what the sender saw of peers
    allowances: Mapping[WindowId, int] = field(default_factory=dict)
    seen: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # peer -> (boot_epoch, seq)

    @property
    def component(self) -> Component:
        return (self.node_id, self.boot_epoch)


View = Mapping[Component, NodeState]


def _max_tuples(a: Mapping[K, tuple[int, ...]], b: Mapping[K, tuple[int, ...]]) -> dict[K, tuple[int, ...]]:
    out = dict(a)
    for k, vb in b.items():
        va = out.get(k)
        out[k] = vb if va is None else tuple(max(x, y) for x, y in zip(va, vb, strict=True))
    return out


def merge_node(a: NodeState, b: NodeState) -> NodeState:
    """Join of two states of the same component: max per entry; gauges from the newer message."""
    if a.component != b.component:
        raise ValueError(f"cannot merge components {a.component} and {b.component}")
    newer = b if (b.seq, b.log_head) >= (a.seq, a.log_head) else a
    return NodeState(
        node_id=a.node_id,
        boot_epoch=a.boot_epoch,
        seq=max(a.seq, b.seq),
        log_head=max(a.log_head, b.log_head),
        windows=_max_tuples(a.windows, b.windows),  # type: ignore[arg-type]
        pending=_max_tuples(a.pending, b.pending),  # type: ignore[arg-type]
        reservations=_max_tuples(a.reservations, b.reservations),  # type: ignore[arg-type]
        health=dict(newer.health),
        allowances=dict(newer.allowances),
        seen=dict(newer.seen),
    )


def merge(view: View, state: NodeState) -> dict[Component, NodeState]:
    """The view with one more message folded in."""
    out = dict(view)
    old = out.get(state.component)
    out[state.component] = state if old is None else merge_node(old, state)
    return out


def merge_views(a: View, b: View) -> dict[Component, NodeState]:
    out = dict(a)
    for state in b.values():
        out = merge(out, state)
    return out


def fold(states: Iterable[NodeState], view: View | None = None) -> dict[Component, NodeState]:
    out = dict(view or {})
    for s in states:
        out = merge(out, s)
    return out


# --- reading a view ------------------------------------------------------------------------------


def window_count(
    view: View, subject: str, window: str, start: int, *, exclude: str | None = None
) -> tuple[int, int]:
    """(requests, tokens) counted by every component (but node `exclude`) in one window."""
    req = tok = 0
    for (node, _), state in view.items():
        if node == exclude:
            continue
        v = state.windows.get((subject, window, start))
        if v:
            req += v[0]
            tok += v[1]
    return req, tok


def window_allowance(view: View, subject: str, window: str, start: int, *, exclude: str | None = None) -> int:
    """Unused limit claims of every component (but node `exclude`) in one window."""
    return sum(
        s.allowances.get((subject, window, start), 0) for (node, _), s in view.items() if node != exclude
    )


def pending_usage(
    view: View, subject: str, durable: Durable, *, exclude: str | None = None
) -> tuple[int, int, int]:
    """(requests, tokens, nUSD) gossiped but not yet in the log as far as this node has read it."""
    req = tok = cost = 0
    for (node, _), state in view.items():
        if node == exclude:
            continue
        for (epoch, seq, subj, _day), v in state.pending.items():
            if subj == subject and seq > durable(node, epoch):
                req += v[0]
                tok += v[1]
                cost += v[2]
    return req, tok, cost


def reserved_in_flight(view: View, subject: str, *, exclude: str | None = None) -> int:
    total = 0
    for (node, _), state in view.items():
        if node == exclude:
            continue
        r = state.reservations.get(subject)
        if r:
            total += max(0, r[0] - r[1])
    return total


def log_head(view: View) -> int:
    return max((s.log_head for s in view.values()), default=0)


def prune(view: View, *, min_window_start: Mapping[str, int], durable: Durable) -> dict[Component, NodeState]:
    """Drop what can no longer count: ended windows and pending usage the log now holds.

    `min_window_start` maps a window name to the oldest start still current. Pruning is monotone
    (an entry dropped here would also be ignored by the readers), so it commutes with merging.
    """
    out: dict[Component, NodeState] = {}
    for comp, state in view.items():
        windows = {
            w: v for w, v in state.windows.items() if w[2] >= min_window_start.get(w[1], w[2])
        }
        pending = {p: v for p, v in state.pending.items() if p[1] > durable(comp[0], p[0])}
        allowances = {
            w: v for w, v in state.allowances.items() if w[2] >= min_window_start.get(w[1], w[2])
        }
        out[comp] = replace(state, windows=windows, pending=pending, allowances=allowances)
    return out


def forget_nodes(view: View, keep: Callable[[Component], bool]) -> dict[Component, NodeState]:
    return {c: s for c, s in view.items() if keep(c)}
