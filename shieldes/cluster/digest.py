"""Digest pulls: with bounded fanout, what a node asks each round's targets for, and what a target
answers. Each change then crosses each link about once instead of once per relay.

* **Labels and versions.** Each entry a node holds of a boot's component carries a *label*: the
  sequence of that boot's message in which the entry took the value held (the message that carried
  it; a pulled entry keeps the label its sender had). A node holds a component *as of* version `s`
  when every entry it holds is at least that boot's value as of message `s` (a whole state `s`, a
  delta on a base it held, or an answer built against a version it held). It also holds the
  *news* of the messages of that boot pushed to it (every entry that changed in that message),
  which the version takes in once the messages between are held.
* **Exact labels.** A whole state to a peer that answers pulls names, per entry, the message in which
  it last changed (its value is that message's), so its receiver labels every entry exactly rather
  than "at most this whole state's value", which would have it answer every entry to any asker
  holding an earlier version. An entry a message leaves as it was keeps the tighter of its label and
  the one the message gives (an entry first held under a looser label, e.g. a relay of an older
  release, "unknown", stops being answered to every asker at its origin's next whole state).
* **Digest.** A push to a target that answers pulls (`Ack.digests`) names the components this node
  asks that target about, each with the version and news held; every component is asked from
  exactly one target per round (`responsible`: its own node if it is a target, else one picked by
  a hash that changes each round), and the push names the round's targets (`State.pull_from`), so
  a target also answers for the components the asker does not hold at all (a restart, a crashed
  boot's counts) that fall to it.
* **Answer** (`answer`, in the target's Ack, signed): of each component asked about, the entries
  labelled above the asker's version but those of messages whose news it holds, grouped by label;
  of the others that fall to it, everything. The asker holds every entry left out already (its
  value is at least the boot's as of that version or that message, and a label names the message
  the value comes from).
* The asker folds an answer in by max (view.merge_admitted: of a boot it does not take for alive,
  windows only, so no pull brings a reservation back) and then holds the component as of the
  answer's version if it held it as of the version the answer was built against (`Holdings.absorb`).

Pure functions and small value holders without I/O: gossip_rounds.py runs them, the tests and the
simulation bench run the same code.
"""

from __future__ import annotations

import zlib
from bisect import bisect_right, insort
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shieldes.cluster.view import Component, NodeState, View, is_live

Entry = tuple[str, Hashable]  # ("w" window | "p" pending | "u" unflushed | "r" reservation, key)
KINDS = {"w": "windows", "p": "pending", "u": "unflushed", "r": "reservations"}  # the monotone parts
UNKNOWN = 2**62  # the label of a value of unknown origin (an older release's relay): always answered
Asked = tuple[int, frozenset[int]]  # the version held of a boot, and later messages whose news is held
NOTHING: Asked = (0, frozenset())


def entries(state: NodeState) -> dict[Entry, tuple[int, ...]]:
    """The monotone entries of a state (counts, pending usage, unflushed deltas, reservations)."""
    out: dict[Entry, tuple[int, ...]] = {}
    for kind, name in KINDS.items():
        for key, value in getattr(state, name).items():
            out[(kind, key)] = value
    return out


def state_of(node: str, epoch: int, found: Mapping[Entry, tuple[int, ...]]) -> NodeState:
    parts: dict[str, dict[Any, Any]] = {name: {} for name in KINDS.values()}
    for (kind, key), value in found.items():
        parts[KINDS[kind]][key] = value
    return NodeState(node, epoch, windows=parts["windows"], pending=parts["pending"],
                     unflushed=parts["unflushed"], reservations=parts["reservations"])


def _get(state: NodeState, entry: Entry) -> tuple[int, ...] | None:
    value: tuple[int, ...] | None = getattr(state, KINDS[entry[0]]).get(entry[1])
    return value


def code(label: int, exact: bool) -> int:
    """A label as stored: exact (the value is that message's) or an upper bound (at most that
    message's value: a join, a whole state), ordered so that `above` is one comparison."""
    return 2 * label + (0 if exact else 1)


class Labels:
    """entry -> label code (`code`), with the entries grouped by it so those above a version are
    found without a pass over every entry."""

    def __init__(self) -> None:
        self.of: dict[Entry, int] = {}
        self._at: dict[int, set[Entry]] = {}
        self._order: list[int] = []

    def set(self, entry: Entry, label: int) -> None:
        old = self.of.get(entry)
        if old == label:
            return
        if old is not None:
            self._discard(entry, old)
        self.of[entry] = label
        bucket = self._at.get(label)
        if bucket is None:
            bucket = self._at[label] = set()
            insort(self._order, label)
        bucket.add(entry)

    def record(self, changed: Iterable[Entry], gone: Iterable[Entry], seq: int) -> None:
        """A node's own message `seq` (delta.Versions.record): its monotone entries that changed
        take that label, those gone leave."""
        for e in changed:
            if e[0] in KINDS:
                self.set(e, code(seq, True))
        for e in gone:
            self.drop(e)

    def drop(self, entry: Entry) -> None:
        old = self.of.pop(entry, None)
        if old is not None:
            self._discard(entry, old)

    def _discard(self, entry: Entry, label: int) -> None:
        bucket = self._at[label]
        bucket.discard(entry)
        if not bucket:
            del self._at[label]
            del self._order[bisect_right(self._order, label) - 1]

    def newest(self) -> int:
        """The newest label: every value is at most that message's."""
        return self._order[-1] >> 1 if self._order else UNKNOWN

    def above(self, version: int) -> list[Entry]:
        """Entries whose value may be newer than `version`'s."""
        out: list[Entry] = []
        for label in self._order[bisect_right(self._order, code(version, False)):]:
            out.extend(self._at[label])
        return out


@dataclass
class Held:
    """What this node holds of one boot: every entry as of `version` (its windows only, if
    `windows_only`: a boot it does not take for alive), the news of some later messages, and the
    labels of its entries."""

    version: int = 0
    windows_only: bool = False
    news: set[int] = field(default_factory=set)
    labels: Labels = field(default_factory=Labels)

    def advance(self, version: int) -> None:
        v = max(self.version, version)
        while v + 1 in self.news:  # the news of the next message: held as of it
            v += 1
        self.version = v
        self.news = {m for m in self.news if m > v}


@dataclass(frozen=True)
class Pulled:
    """Part of an answer: entries of one boot that share a label (`label`, `exact` or an upper
    bound), the asker's version they were chosen against (`since`) and the answerer's version
    (0: it claims none)."""

    state: NodeState
    since: int = 0
    version: int = 0
    label: int = UNKNOWN
    exact: bool = False
    windows_only: bool = False


class Holdings:
    """Versions, news and labels of the other boots' components this node holds."""

    def __init__(self) -> None:
        self.held: dict[Component, Held] = {}

    def forget(self, keep: Iterable[Component]) -> None:
        """Drop what is known of components the view no longer holds."""
        kept = set(keep)
        for comp in [c for c in self.held if c not in kept]:
            del self.held[comp]

    def holds(self, comp: Component, label: int) -> bool:
        """Whether this node holds every entry that changed in that boot's message `label`."""
        h = self.held.get(comp)
        return h is not None and not h.windows_only and (h.version >= label or label in h.news)

    def newest(self, comp: Component) -> int:
        """The newest label held of a boot: every value held is at most that message's."""
        h = self.held.get(comp)
        return h.labels.newest() if h is not None else UNKNOWN

    def direct(self, comp: Component, before: NodeState | None, after: NodeState | None, incoming: NodeState,
               seq: int, *, base: int, news: bool, current: bool, given: Mapping[Entry, int] | None = None) -> None:
        """A message `seq` of the boot itself was folded in: a whole state (`base` 0), a delta of
        every entry changed after `base`, or (`news`) its gauges and the entries changed in `seq`;
        of a boot already superseded (not `current`), only its windows. `given`: the exact labels
        the message gives its entries (a whole state of this release: the message each last changed in)."""
        if not current:
            self.learn(comp, before, after, incoming, seq, given=given)
        elif news:
            self.learn(comp, before, after, incoming, seq, exact=True, news=True)
        else:
            self.whole(comp, before, after, incoming, seq, base, given)

    def learn(self, comp: Component, before: NodeState | None, after: NodeState | None,
              incoming: NodeState, label: int, *, exact: bool = False, news: bool = False,
              given: Mapping[Entry, int] | None = None) -> None:
        """`incoming` (entries of one boot, their values those of that boot's message `label`, or
        if not `exact` at most those; an entry in `given` is exactly the value of the message named
        there) was folded into `before`, giving `after`: label what changed, and what it left as it
        was with the tighter of the two labels that then hold (an entry first held under a loose
        label, e.g. relayed by an older release, is no longer answered to every asker once its
        origin's next whole state names the message it comes from). `news`: `incoming` holds every
        entry that changed in message `label`."""
        if after is None:
            return
        h = self.held.setdefault(comp, Held())
        labels = h.labels
        of = labels.of
        plain = code(label, exact)
        for entry, value in entries(incoming).items():
            now = _get(after, entry)
            if now is None:
                continue
            if entry[0] == "w" and not any(value):  # a window named for its unused claim only (a gauge)
                continue
            changed = before is None or now != _get(before, entry)
            if now == value:
                told = given.get(entry, 0) if given else 0
                c = code(told, True) if 0 < told <= label else plain
                old = of.get(entry)
                if changed or old is None or c < old:
                    labels.set(entry, c)
            elif changed:  # a join of two values: at most the later message's
                labels.set(entry, code(max(of.get(entry, code(UNKNOWN, False)) >> 1, label), False))
        if news and label > h.version and not h.windows_only:
            h.news.add(label)
            h.advance(h.version)

    def whole(self, comp: Component, before: NodeState | None, after: NodeState | None,
              incoming: NodeState, seq: int, base: int = 0, given: Mapping[Entry, int] | None = None) -> None:
        """A direct message `seq` of the boot itself (a whole state, or with `base` a delta of every
        entry changed after message `base`) was folded in."""
        self.learn(comp, before, after, incoming, seq, given=given)
        h = self.held.get(comp)
        if h is None:
            return
        if base == 0:
            if h.windows_only:
                h.version, h.windows_only, h.news = 0, False, set()
            h.advance(seq)
        elif not h.windows_only and h.version >= base:
            h.advance(seq)

    def absorb(self, pulled: Pulled, before: NodeState | None, after: NodeState | None, *, live: bool) -> None:
        """Part of an answer was folded in (all its entries if `live` here, else its windows):
        label what changed, and hold the component as of the answer's version if this node held
        it as of the version the answer was built against."""
        comp = pulled.state.component
        self.learn(comp, before, after, pulled.state, pulled.label, exact=pulled.exact)
        h = self.held.setdefault(comp, Held())
        if not pulled.version or h.version < pulled.since:
            return
        if live:
            if not (h.windows_only or pulled.windows_only):
                h.advance(pulled.version)
        else:
            h.windows_only = True
            h.advance(pulled.version)


def responsible(component: Component, targets: Sequence[str], salt: int) -> str:
    """The target of this round (by node id) a component is asked from: its own node if that is
    one of them (the freshest holder), else one picked by hash, different from round to round."""
    node, epoch = component
    if node in targets:
        return node
    return targets[zlib.crc32(f"{salt}:{node}:{epoch}".encode()) % len(targets)]


def sources(component: Component, targets: Sequence[str], salt: int, count: int = 1) -> list[str]:
    """The targets a component is asked from this round: `responsible`, and while the origin is not
    a target, up to `count` - 1 others picked by another hash (a second source halves the rounds a
    pull epidemic takes to reach its last nodes)."""
    first = responsible(component, targets, salt)
    if count <= 1 or component[0] in targets or len(targets) < 2:
        return [first]
    node, epoch = component
    rest = sorted((t for t in targets if t != first), key=lambda t: zlib.crc32(f"{salt}/{node}:{epoch}>{t}".encode()))
    return [first, *rest[:count - 1]]


def ask(held: Iterable[Component], holdings: Holdings, targets: Sequence[str], salt: int,
        me: str, count: int = 1) -> dict[str, dict[Component, Asked]]:
    """target -> the components this node asks it about, with what it holds of each (every
    component held but this node's own, each asked from `sources`)."""
    out: dict[str, dict[Component, Asked]] = {t: {} for t in targets}
    if not targets:
        return out
    for comp in held:
        if comp[0] != me:
            h = holdings.held.get(comp)
            asked = (h.version, frozenset(h.news)) if h else NOTHING
            for t in sources(comp, targets, salt, count):
                out[t][comp] = asked
    return out


def answer(view: View, holdings: Holdings, *, me: str, asked: Mapping[Component, Asked], targets: Sequence[str],
           salt: int, asker: str, own: Component, own_seq: int, own_labels: Labels,
           own_values: Mapping[Entry, tuple[int, ...]]) -> list[Pulled]:
    """What `asker` lacks of the components it asked this node (`me`) about, and of those it does
    not hold that fall to this node (`responsible`): never the asker's own current boot, never a
    component this node does not hold. This node's own boot `own` is answered from its last message
    (`own_seq`, its Versions' labels and values)."""
    out: list[Pulled] = []
    wanted = dict(asked)
    for comp in view.components:
        if comp not in wanted and comp[0] != asker and responsible(comp, targets, salt) == me:
            wanted[comp] = NOTHING
    if own not in wanted and own_seq and me in targets:
        wanted[own] = NOTHING
    asker_epoch = view.epochs.get(asker)
    for comp, (since, news) in wanted.items():
        if comp[0] == asker and (asker_epoch is None or comp[1] >= asker_epoch):
            continue  # the asker counts its own current boot itself
        groups: dict[int, dict[Entry, tuple[int, ...]]] = {}  # label code -> entries
        if comp == own:
            if not own_seq:
                continue
            for e in own_labels.above(since):
                c = own_labels.of[e]
                if not (c & 1 == 0 and c >> 1 in news) and (v := _own_value(own_values, e)) is not None:
                    groups.setdefault(c, {})[e] = v
            version, windows_only = own_seq, False
        else:
            state = view.components.get(comp)
            if state is None:
                continue
            h = holdings.held.get(comp)
            if h is None:
                groups = {code(UNKNOWN, False): entries(state)}
                version, windows_only = 0, True
            else:
                of = h.labels.of
                for e in h.labels.above(since):
                    c = of[e]
                    if not (c & 1 == 0 and c >> 1 in news) and (v := _get(state, e)) is not None:
                        groups.setdefault(c, {})[e] = v
                version, windows_only = h.version, h.windows_only or not is_live(view, comp)
        for c, found in sorted(groups.items()):
            if found:
                out.append(Pulled(state_of(*comp, found), since, version, c >> 1, c & 1 == 0, windows_only))
        if not any(groups.values()) and version > since:  # nothing it lacks: it holds the boot as of `version`
            out.append(Pulled(state_of(*comp, {}), since, version, UNKNOWN, False, windows_only))
    return out


def _own_value(values: Mapping[Entry, Any], entry: Entry) -> tuple[int, ...] | None:
    v = values.get(entry)
    if v is None:
        return None
    if entry[0] == "w":  # Versions keep a window with its unused claim (a gauge, pushed directly)
        v = v[:3]
        return v if any(v) else None
    return tuple(v)
