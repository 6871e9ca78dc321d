"""The nemesis checker: pure functions over a recorded history (what the upstream served, the faults
injected, what the log holds, what each node reports) that return the violations they find.

The bounds are the ones docs/cluster.md and docs/guarantees.md state, written once here as formulas
(the docs quote these functions):

* rate: right after each admission of a key with limit L over N nodes, its sliding minute (what
  the window holds so far plus the previous window weighted by the share of it the last 60 s
  cover, as the gateway counts) is at most `rate_bound(L, N, P, R)` = L + (N - 1)·⌈L/N⌉ + 1 +
  P·⌈L/N⌉ + R, P the nodes disturbed (paused, partitioned or restarted) in that window or the one
  before, R what nodes SIGKILLed then admitted in their last `gossip_window` seconds (no peer heard
  of those; what a crashed boot admitted before, its peers keep counting and relay to its next boot).
* budget: real spend (what the upstream served, at the configured prices) at most
  B + `budget_slack(...)`: hidden claims in the last quarter, (N - 1 + P)·max(⌈B/4N⌉, e), plus
  what the requests in flight at once can add (C·e), plus usage a crash lost before any node
  could count it.
* usage: the log never holds more than was served (nothing counted twice); it holds all of it but,
  per SIGKILL, what the killed boot served and had not answered by `loss_since`: the recorded_at
  of the second newest usage append the node wrote itself before the kill. A node cuts a batch
  only once the one before is in the log, so everything it settled before the cut of its last
  batch in the log (which came after that second newest append) is in the log, whatever an
  append or a Postgres outage took; a request is settled before its answer leaves the node. The
  leader's appends of what the dead boot had gossiped only save more. A SIGTERM loses nothing.
  What the killed boot served is told by `of_killed_boot`, from the client's times and not the
  upstream's alone (see there).
* reservations: none left anywhere once no request is in flight.
* convergence: every node at the same log position, with the same spend per key as the log.

A request's admission happened between the client sending it and the upstream receiving it, so a
request is placed in a window only when both instants fall in it (the few straddling a boundary
are reported, not guessed), and the previous window is weighed at the later instant.

Every instant is stamped by the harness's one process (the clients, the fake upstream, the
faults), which on a loaded machine runs late: an answer is stamped when that process gets to it
(later than the node sent it, which only widens what may be lost), and a request when the fake
upstream reads it, which can come after a SIGKILL for a request the killed node forwarded before
it died. Postgres stamps recorded_at on the same clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from shieldes.usage.admission import sliding

WINDOW = 60.0


@dataclass(frozen=True)
class Served:
    """One request the upstream answered."""

    key: str
    node: str  # the node the client sent it to
    sent_at: float  # the client sent it (wall clock)
    at: float  # the upstream read it (admission happened in [sent_at, at]); see of_killed_boot
    cost_nusd: int
    answered_at: float | None = None  # the client got its answer (None: it got none)


@dataclass(frozen=True)
class Fault:
    kind: str  # kill (SIGKILL, then a restart with the same node id) | pause | pg_cut | partition | term
    nodes: tuple[str, ...]
    start: float
    end: float


@dataclass(frozen=True)
class KeySpec:
    name: str
    rpm: int | None = None
    budget_nusd: int | None = None
    estimate_nusd: int = 0  # what admission holds for one request
    concurrency: int = 1  # clients of this key with a request in flight at once, cluster-wide


@dataclass(frozen=True)
class Logged:
    requests: int
    cost_nusd: int


@dataclass(frozen=True)
class NodeReadout:
    node: str
    position: int
    spend_nusd: Mapping[str, int]  # key name -> durable + unflushed spend as the node knows it
    reserved_nusd: Mapping[str, int] = field(default_factory=dict)  # own reservations in flight
    peers_reserved_nusd: Mapping[str, int] = field(default_factory=dict)  # as gossiped by peers


# --- bounds ------------------------------------------------------------------------------------------


def rate_bound(limit: int, nodes: int, disturbed: int, restarted_admitted: int = 0) -> int:
    share = math.ceil(limit / nodes)
    return limit + (nodes - 1) * share + 1 + disturbed * share + restarted_admitted


def budget_slack(budget_nusd: int, nodes: int, disturbed: int, estimate_nusd: int, concurrency: int,
                 lost_nusd: int = 0) -> int:
    claim = max(math.ceil(budget_nusd / 4 / nodes), estimate_nusd)
    return (nodes - 1 + disturbed) * claim + concurrency * estimate_nusd + lost_nusd


# --- helpers -----------------------------------------------------------------------------------------


def window_of(t: float) -> int:
    return int(t // WINDOW)


def window_counts(served: Iterable[Served], key: str) -> dict[int, tuple[int, int]]:
    """window -> (requests surely admitted in it, requests that may have been: straddlers included)."""
    out: dict[int, list[int]] = {}
    for s in served:
        if s.key != key:
            continue
        first, last = window_of(s.sent_at), window_of(s.at)
        for w in range(first, last + 1):
            counts = out.setdefault(w, [0, 0])
            counts[1] += 1
            if first == last:
                counts[0] += 1
    return {w: (c[0], c[1]) for w, c in out.items()}


def sliding_counts(served: Iterable[Served], key: str) -> list[tuple[Served, int]]:
    """Each request surely placed in a window, with its sliding minute's count once it was admitted:
    the window's requests up to it, plus the previous window's weighted at the time it arrived,
    rounded up as admission rounds it (`sliding`, the gateway's own function)."""
    placed: dict[int, list[Served]] = {}
    for s in served:
        if s.key == key and window_of(s.sent_at) == window_of(s.at):
            placed.setdefault(window_of(s.at), []).append(s)
    out = []
    for w, mine in placed.items():
        prev = len(placed.get(w - 1, ()))
        for i, s in enumerate(sorted(mine, key=lambda s: s.at)):
            out.append((s, sliding(i + 1, prev, s.at - w * WINDOW)))
    return out


def most_in_any_minute(served: Iterable[Served], key: str) -> int:
    """The most requests the upstream received for `key` within any 60 s."""
    times = sorted(s.at for s in served if s.key == key)
    most, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] < t - WINDOW:
            lo += 1
        most = max(most, hi - lo + 1)
    return most


def disturbed_in(faults: Iterable[Fault], start: float, end: float) -> set[str]:
    """Nodes paused, partitioned, killed or restarted at some point of [start, end)."""
    out: set[str] = set()
    for f in faults:
        if f.kind in ("pause", "partition", "kill", "term") and f.start < end and f.end >= start:
            out.update(f.nodes)
    return out


def unheard_before_kills(served: Iterable[Served], key: str, faults: Iterable[Fault], w: int,
                        gossip_window: float) -> int:
    """Requests of `key` that nodes SIGKILLed in window `w` admitted in it within `gossip_window`
    seconds before the kill: no peer may have heard of them."""
    kills = [f for f in faults if f.kind == "kill" and window_of(f.start) == w]
    return sum(1 for s in served for f in kills if s.key == key and s.node in f.nodes
               and window_of(s.sent_at) == w and of_killed_boot(s, f.start) and s.at >= f.start - gossip_window)


def of_killed_boot(s: Served, kill: float) -> bool:
    """Whether the boot of `s.node` SIGKILLed at `kill` may have served `s` (forwarded it to the
    upstream): its client sent it before the kill, and the upstream got it before the kill or it was
    never answered. The upstream's time alone does not tell: it is when the harness's loaded
    process read the request, after the kill for one the node forwarded just before it died (no
    answer can come back then); a request answered and read after the kill was the next boot's."""
    return s.sent_at <= kill and (s.at <= kill or s.answered_at is None)


def loss_since(own_appends: Sequence[float], kill: float) -> float:
    """From when what a node SIGKILLed at `kill` served may be missing from the log: the recorded_at
    (transaction start) of the second newest usage append it wrote itself before the kill (-inf
    without two). Its newest one holds everything settled before that batch was cut, and the cut
    came after the append before it committed, so after that one's recorded_at."""
    before = sorted(t for t in own_appends if t < kill)
    return before[-2] if len(before) >= 2 else float("-inf")


def loss_intervals(faults: Sequence[Fault], node: str, own_appends: Sequence[float]) -> list[tuple[float, float]]:
    """Per SIGKILL of `node`: (`loss_since`, the kill). A request the killed boot served
    (`of_killed_boot`) may be missing if its answer reached the client at `loss_since` or later, or
    never (one of an earlier boot is then counted at that boot's kill)."""
    return [(loss_since(own_appends, f.start), f.start) for f in faults if f.kind == "kill" and node in f.nodes]


def may_be_lost(s: Served, faults: Sequence[Fault], own_appends: Mapping[str, Sequence[float]]) -> bool:
    return any(of_killed_boot(s, kill) and (s.answered_at is None or s.answered_at >= since)
               for since, kill in loss_intervals(faults, s.node, own_appends.get(s.node, ())))


# --- checks (each returns the violations it found) --------------------------------------------------


def check_rate(served: Sequence[Served], spec: KeySpec, nodes: int, faults: Sequence[Fault],
               gossip_window: float) -> list[str]:
    if spec.rpm is None:
        return []
    worst: dict[int, tuple[int, int, str]] = {}  # window -> (count over its bound, count, why)
    for s, count in sliding_counts(served, spec.name):
        w = window_of(s.at)
        disturbed = len(disturbed_in(faults, (w - 1) * WINDOW, (w + 1) * WINDOW))
        unheard = sum(unheard_before_kills(served, spec.name, faults, v, gossip_window) for v in (w - 1, w))
        bound = rate_bound(spec.rpm, nodes, disturbed, unheard)
        if count > bound and count - bound > worst.get(w, (0, 0, ""))[0]:
            worst[w] = (count - bound, count, f"bound {bound} with {nodes} nodes, {disturbed} disturbed, "
                                              f"{unheard} admitted unheard before SIGKILLs")
    return [f"key {spec.name}: a sliding minute of {count} requests in window {w} (limit {spec.rpm}, {why})"
            for w, (_, count, why) in sorted(worst.items())]


def check_budget(served: Sequence[Served], spec: KeySpec, nodes: int, faults: Sequence[Fault],
                 own_appends: Mapping[str, Sequence[float]]) -> list[str]:
    if spec.budget_nusd is None:
        return []
    mine = [s for s in served if s.key == spec.name]
    spent = sum(s.cost_nusd for s in mine)
    lost = sum(s.cost_nusd for s in mine if may_be_lost(s, faults, own_appends))
    disturbed = len(disturbed_in(faults, float("-inf"), float("inf")))
    slack = budget_slack(spec.budget_nusd, nodes, disturbed, spec.estimate_nusd, spec.concurrency, lost)
    if spent > spec.budget_nusd + slack:
        return [f"key {spec.name}: spent {spent} nUSD of a {spec.budget_nusd} nUSD budget, over by "
                f"{spent - spec.budget_nusd} (bound {slack})"]
    return []


def check_usage(served: Sequence[Served], logged: Mapping[str, Logged], keys: Iterable[str],
                faults: Sequence[Fault], own_appends: Mapping[str, Sequence[float]]) -> list[str]:
    out = []
    for key in keys:
        mine = [s for s in served if s.key == key]
        got = logged.get(key, Logged(0, 0))
        cost = sum(s.cost_nusd for s in mine)
        if got.requests > len(mine) or got.cost_nusd > cost:
            out.append(f"key {key}: the log holds {got.requests} requests / {got.cost_nusd} nUSD but the upstream "
                       f"served {len(mine)} / {cost}: counted twice")
            continue
        lossy = [s for s in mine if may_be_lost(s, faults, own_appends)]
        if len(mine) - got.requests > len(lossy) or cost - got.cost_nusd > sum(s.cost_nusd for s in lossy):
            out.append(f"key {key}: the log holds {got.requests} of {len(mine)} requests served "
                       f"({got.cost_nusd} of {cost} nUSD); at most {len(lossy)} may be lost to SIGKILLs")
    return out


def check_reservations(readouts: Iterable[NodeReadout]) -> list[str]:
    out = []
    for r in readouts:
        for what, held in (("holds", r.reserved_nusd), ("sees peers holding", r.peers_reserved_nusd)):
            held = {k: v for k, v in held.items() if v}
            if held:
                out.append(f"node {r.node} {what} reservations with no request in flight: {held}")
    return out


def check_convergence(readouts: Sequence[NodeReadout], logged: Mapping[str, Logged]) -> list[str]:
    out = []
    positions = {r.node: r.position for r in readouts}
    if len(set(positions.values())) > 1:
        out.append(f"nodes at different log positions: {positions}")
    for r in readouts:
        spend = {k: v for k, v in r.spend_nusd.items() if v}
        want = {k: v.cost_nusd for k, v in logged.items() if v.cost_nusd}
        if spend != want:
            out.append(f"node {r.node} sees spend {spend}, the log holds {want}")
    return out


# --- figures (what the bench prints) ---------------------------------------------------------------


def rate_figures(served: Sequence[Served], spec: KeySpec) -> tuple[int, int, int]:
    """(the highest sliding-minute count after an admission, most requests in one fixed window,
    most within any 60 s)."""
    counts = window_counts(served, spec.name).values()
    return (max((c for _, c in sliding_counts(served, spec.name)), default=0),
            max((c[1] for c in counts), default=0), most_in_any_minute(served, spec.name))


def budget_overshoot(served: Sequence[Served], spec: KeySpec) -> int:
    if spec.budget_nusd is None:
        return 0
    return sum(s.cost_nusd for s in served if s.key == spec.name) - spec.budget_nusd
