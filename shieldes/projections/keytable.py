"""Virtual keys as columns: the key map a node loads from a snapshot without building one object
per key.

A million keys as a map of VirtualKey objects take seconds to build (one object and three map
entries each); as parallel lists of their fields they are one parse plus one dict built by zip
(hash -> id, which serving needs at once). id -> row is a binary search over the sorted ids
until its dict is built, and name -> id is built on its first read: a node builds both in a
thread after it is ready (`warm`). A key is materialised on each read (about a microsecond:
nothing to keep, nothing grows). The table is never changed: the fold
layers changes over it (pmap.LayeredMap), so the columns a snapshot gave stay as they were.

Fields that most keys leave at their default (models, team, expiry, revocation, limits, budget)
are sparse: row -> value for the rows that set them.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import ItemsView, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from shieldes.projections.name_search import NameText
from shieldes.projections.pmap import LayeredMap
from shieldes.projections.state import VirtualKey

NAME_SLICE = 20_000
SORT_SLICE = 5_000  # ids sorted in one call: a few ms
SPARSE = ("models", "team_id", "expires_at", "revoked", "rpm", "tpm", "budget")


@dataclass(frozen=True)
class KeyColumns:
    """Every key's fields, one list per dense field and row -> value per sparse field; rows in the
    order of `id` (sorted, so the same keys always give the same columns)."""

    id: Sequence[str]
    name: Sequence[str]
    key_hash: Sequence[str]
    prefix: Sequence[str]
    # SPARSE field -> {row: value} (revoked: {row: True}), or anything with .get(row) -> value | None
    sparse: Mapping[str, Any]


def _fields(k: VirtualKey) -> tuple[tuple[str, Any], ...]:
    return (("models", k.models), ("team_id", k.team_id), ("expires_at", k.expires_at),
            ("revoked", True if k.revoked else None), ("rpm", k.rpm), ("tpm", k.tpm), ("budget", k.budget))


def columns_of(keys: Mapping[str, VirtualKey]) -> KeyColumns:
    """The columns of any key map, sparse fields as {row: value}. Keys loaded from columns and
    changed since (a node snapshotting what it loaded) are merged column-wise, without building
    an object per key."""
    if isinstance(keys, LayeredMap) and isinstance(keys.base, KeyTable):
        changes = dict(keys.changes())
        if all(v is not None for v in changes.values()):  # keys are never deleted; else the general way
            return keys.base.merged({k: v for k, v in changes.items() if v is not None})
    ordered = [keys[key_id] for key_id in _sorted_in_slices(iter(keys))]
    sparse: dict[str, dict[int, Any]] = {f: {} for f in SPARSE}
    for row, k in enumerate(ordered):
        for field, value in _fields(k):
            if value is not None:
                sparse[field][row] = value
    return KeyColumns([k.id for k in ordered], [k.name for k in ordered], [k.key_hash for k in ordered],
                      [k.prefix for k in ordered], sparse)


def _sorted_in_slices(ids: Iterator[str]) -> Iterator[str]:
    """The ids in order: sorted a slice at a time and merged lazily, so a thread snapshotting a
    million keys never holds the GIL (and the event loop waiting for it) for one whole sort. Ids
    alone, not (id, key) pairs: strings are not tracked by the cyclic collector, a million pairs
    were, and its collections over them held the GIL for 0.1-0.3 s each."""
    runs = []
    while run := list(islice(ids, SORT_SLICE)):
        run.sort()
        runs.append(run)
    return heapq.merge(*runs)


def _spliced(old: Sequence[Any], at: list[int], new: list[Any]) -> list[Any]:
    """`old` with new[j] inserted before old[at[j]] (`at` ascending)."""
    out: list[Any] = []
    start = 0
    for j, cut in enumerate(at):
        out.extend(old[start:cut])
        out.append(new[j])
        start = cut
    out.extend(old[start:])
    return out


class KeyTable(Mapping[str, VirtualKey]):
    """key id -> VirtualKey over KeyColumns (ids sorted). A lookup is a binary search over the ids
    until `warm()` has built the id -> row dict, O(1) from then on."""

    __slots__ = ("_budget", "_c", "_expires", "_index", "_models", "_revoked", "_rpm", "_team", "_tpm")

    def __init__(self, columns: KeyColumns) -> None:
        self._c = columns
        self._index: dict[str, int] | None = None
        s = columns.sparse
        self._models, self._team, self._expires = s.get("models", {}), s.get("team_id", {}), s.get("expires_at", {})
        self._revoked, self._rpm, self._tpm = s.get("revoked", {}), s.get("rpm", {}), s.get("tpm", {})
        self._budget = s.get("budget", {})

    def _row(self, key_id: str) -> int | None:
        index = self._index
        if index is not None:
            return index.get(key_id)
        ids = self._c.id
        row = bisect_left(ids, key_id)
        return row if row < len(ids) and ids[row] == key_id else None

    def warm(self) -> None:
        """Build the id -> row dict (in slices: a node does it in a thread, and one C call over a
        million entries would hold the GIL, and stall the event loop, for its whole length)."""
        if self._index is not None:
            return
        ids, index = self._c.id, dict[str, int]()
        for start in range(0, len(ids), NAME_SLICE):
            end = min(start + NAME_SLICE, len(ids))
            index.update(zip(ids[start:end], range(start, end), strict=True))
        self._index = index

    def _make(self, key_id: str, row: int) -> VirtualKey:
        c = self._c
        return VirtualKey(key_id, c.name[row], c.key_hash[row], c.prefix[row], self._models.get(row),
                          self._team.get(row), self._expires.get(row), row in self._revoked,
                          self._rpm.get(row), self._tpm.get(row), self._budget.get(row))

    def __getitem__(self, key_id: str) -> VirtualKey:
        row = self._row(key_id)
        if row is None:
            raise KeyError(key_id)
        return self._make(key_id, row)

    def get(self, key_id: str, default: Any = None) -> Any:
        row = self._row(key_id)
        return default if row is None else self._make(key_id, row)

    def __contains__(self, key_id: object) -> bool:
        return isinstance(key_id, str) and self._row(key_id) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._c.id)

    def __len__(self) -> int:
        return len(self._c.id)

    def items(self) -> ItemsView[str, VirtualKey]:
        return _KeyItems(self)

    def rows(self) -> Iterator[tuple[str, VirtualKey]]:
        return ((key_id, self._make(key_id, row)) for row, key_id in enumerate(self._c.id))

    def __repr__(self) -> str:
        return f"KeyTable({len(self)} keys)"

    def ids_with(self, field: str) -> list[str]:
        column, ids = self._c.sparse.get(field, {}), self._c.id
        if isinstance(column, Mapping):
            return [ids[r] for r in column]
        return [ids[r] for r, v in enumerate(column) if v is not None]

    def ids_in_teams(self, teams: set[str]) -> list[str]:
        """The ids of the keys (revoked or not) in any of `teams`, from the team column alone."""
        team, ids = self._team, self._c.id
        rows = team.items() if isinstance(team, Mapping) else enumerate(team)
        return [ids[r] for r, t in rows if t is not None and t in teams]

    def team_key_counts(self) -> dict[str, int]:
        """team id -> its keys that are not revoked (teams with none left out), from the columns."""
        team = self._team
        counts = Counter(team.values() if isinstance(team, Mapping) else team)
        counts.pop(None, None)  # a dense column's unset rows
        for row in self._revoked:
            revoked_team = team.get(row)
            if revoked_team is not None:
                counts[revoked_team] -= 1
        return {t: n for t, n in counts.items() if n > 0}

    def merged(self, changes: Mapping[str, VirtualKey]) -> KeyColumns:
        """These columns with `changes` (new or changed keys by id) applied, rows still in id order."""
        c = self._c
        added = sorted(k for k in changes if k not in self)
        at = [bisect_left(c.id, k) for k in added]  # each new id goes before the old row at[j]

        def moved(row: int) -> int:  # an old row's row in the merged columns
            return row + bisect_right(at, row)

        keys = [changes[k] for k in added]
        ids, names = _spliced(c.id, at, added), _spliced(c.name, at, [k.name for k in keys])
        hashes, prefixes = _spliced(c.key_hash, at, [k.key_hash for k in keys]), _spliced(c.prefix, at,
                                                                                       [k.prefix for k in keys])
        sparse: dict[str, dict[int, Any]] = {}
        for field in SPARSE:
            column = c.sparse.get(field, {})
            rows = column.items() if isinstance(column, Mapping) else (
                (r, v) for r, v in enumerate(column) if v is not None)
            sparse[field] = {moved(r): v for r, v in rows} if at else dict(rows)
        new_rows = {k: at[j] + j for j, k in enumerate(added)}
        for key_id, key in changes.items():
            old = self._row(key_id)
            row = moved(old) if old is not None else new_rows[key_id]
            names[row], hashes[row], prefixes[row] = key.name, key.key_hash, key.prefix
            for field, value in _fields(key):
                if value is None:
                    sparse[field].pop(row, None)
                else:
                    sparse[field][row] = value
        return KeyColumns(ids, names, hashes, prefixes, sparse)

    def ids_by_hash(self) -> dict[str, str]:
        """The live keys' hashes (a revoked key's secret is no longer looked up)."""
        c = self._c
        out = dict(zip(c.key_hash, c.id, strict=True))
        for row in self._revoked:
            if out.get(c.key_hash[row]) == c.id[row]:
                del out[c.key_hash[row]]
        if len(out) != len(c.id) - len(self._revoked):  # a revoked key's hash reused by a live key
            out = {h: i for row, (h, i) in enumerate(zip(c.key_hash, c.id, strict=True)) if row not in self._revoked}
        return out



class NameIndex(Mapping[str, str]):
    """key name -> id over a KeyTable, built on its first read: a node serves requests by hash and
    needs names only for admin commands, so its start does not wait for a million more entries."""

    __slots__ = ("_ids", "_index", "_names", "_sorted", "_text")

    def __init__(self, columns: KeyColumns) -> None:
        self._names, self._ids = columns.name, columns.id
        self._index: dict[str, str] | None = None
        self._sorted: list[str] | None = None
        self._text: NameText | None = None

    def sorted_names(self) -> list[str]:
        """Every name, ascending; sorted once (in slices merged lazily, so a thread building it
        never holds the GIL for a whole million-entry sort)."""
        if self._sorted is None:
            names = self._names
            runs = [sorted(names[start:start + NAME_SLICE]) for start in range(0, len(names), NAME_SLICE)]
            self._sorted = list(heapq.merge(*runs))
        return self._sorted

    def name_text(self) -> NameText:
        """The sorted names as one lowered text a search finds its names in (name_search.py)."""
        if self._text is None:
            self._text = NameText(self.sorted_names())
        return self._text

    def _built(self) -> dict[str, str]:
        if self._index is None:  # deterministic: every reader sees the same mapping
            index: dict[str, str] = {}
            # in slices: a node builds it in a thread, and one C call over a million entries would
            # hold the GIL (and stall the event loop) for its whole length
            for start in range(0, len(self._ids), NAME_SLICE):
                index.update(zip(self._names[start:start + NAME_SLICE], self._ids[start:start + NAME_SLICE],
                                 strict=True))
            self._index = index
        return self._index

    def __getitem__(self, name: str) -> str:
        return self._built()[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self._built().get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._built()

    def __iter__(self) -> Iterator[str]:
        return iter(self._built())

    def __len__(self) -> int:
        return len(self._ids)


def warm(keys: Mapping[str, VirtualKey], ids_by_name: Mapping[str, str]) -> None:
    """Build the indexes a snapshot's key columns defer (id -> row, name -> id, names in order and
    as the text a search reads), if
    these maps are layered over them; a node runs this in a thread once it is ready."""
    if isinstance(keys, LayeredMap) and isinstance(keys.base, KeyTable):
        keys.base.warm()
    if isinstance(ids_by_name, LayeredMap) and isinstance(ids_by_name.base, NameIndex):
        ids_by_name.base.get("")
        ids_by_name.base.name_text()


def names_in_order(ids_by_name: Mapping[str, str], after: str | None = None) -> Iterator[str]:
    """The names of `ids_by_name` above `after`, ascending, produced as they are read: over a
    snapshot's names (sorted once) merged with the names changed since, a page of a listing reads
    only as far as it goes instead of sorting every name again."""
    if not (isinstance(ids_by_name, LayeredMap) and isinstance(ids_by_name.base, NameIndex)):
        yield from sorted(n for n in ids_by_name if after is None or n > after)
        return
    base = ids_by_name.base.sorted_names()
    start = 0 if after is None else bisect_right(base, after)
    yield from _merged(_from(base, start), ids_by_name, after)


def _from(names: list[str], start: int) -> Iterator[str]:
    """names[start:], read a slice at a time (no copy of a million names, no Python step per name)."""
    for at in range(start, len(names), 1024):
        yield from names[at:at + 1024]


def _merged(base: Iterator[str], ids_by_name: LayeredMap[str], after: str | None) -> Iterator[str]:
    """The snapshot's names `base` (ascending, above `after`) merged with the names changed since:
    a base name the overlay does not hold is there as it was (no lookup), one it removed is not."""
    changes = dict(ids_by_name.changes())  # name -> id, None: removed since
    if not changes:
        yield from base
        return
    added = sorted(n for n, v in changes.items() if v is not None and (after is None or n > after))
    last = None
    for name in heapq.merge(base, added):
        if name == last:  # changed since the snapshot: in both
            continue
        last = name
        if changes.get(name, name) is not None:
            yield name


def names_matching(ids_by_name: Mapping[str, str], search: str, after: str | None = None) -> Iterator[str]:
    """The names of `ids_by_name` above `after` that hold `search` in any case, ascending. Over a
    snapshot's names, the base's are found in its text (name_search.py), not looked at one by one
    (0.8 s at a million keys), and merged with the names changed since that hold it."""
    search = search.lower()
    if not (isinstance(ids_by_name, LayeredMap) and isinstance(ids_by_name.base, NameIndex)):
        yield from (n for n in names_in_order(ids_by_name, after) if search in n.lower())
        return
    matching = ids_by_name.base.name_text().matching(search, after)
    yield from (n for n in _merged(matching, ids_by_name, after) if search in n.lower())


def keys_with(keys: Mapping[str, VirtualKey], field: str) -> Iterator[VirtualKey]:
    """The keys whose optional `field` (one of SPARSE) is set. Over columns (and the changes
    since) only those keys are materialised: a scan for budgets does not read a million keys."""
    if isinstance(keys, LayeredMap) and isinstance(keys.base, KeyTable):
        table, changed = keys.base, dict(keys.changes())
        for key_id in table.ids_with(field):
            if key_id not in changed:
                yield table[key_id]
        keys = {k: v for k, v in changed.items() if v is not None}
    for key in keys.values():
        if dict(_fields(key))[field] is not None:
            yield key


def key_ids_in_teams(keys: Mapping[str, VirtualKey], teams: set[str]) -> set[str]:
    """The ids of the keys of `teams`, revoked or not. Over columns (and the changes since) it reads
    the team column, not a million keys."""
    if not teams:
        return set()
    if isinstance(keys, KeyTable):
        return set(keys.ids_in_teams(teams))
    if isinstance(keys, LayeredMap) and isinstance(keys.base, KeyTable):
        changed = {k: v for k, v in keys.changes() if v is not None}
        out = {k for k in keys.base.ids_in_teams(teams) if k not in changed}
        return out | {k for k, v in changed.items() if v.team_id in teams}
    return {k for k, v in keys.items() if v.team_id in teams}


class _KeyItems(ItemsView[str, VirtualKey]):
    def __init__(self, table: KeyTable) -> None:
        super().__init__(table)
        self._table = table

    def __iter__(self) -> Iterator[tuple[str, VirtualKey]]:
        return self._table.rows()


def layered_key_maps(columns: KeyColumns) -> tuple[LayeredMap[VirtualKey], LayeredMap[str], LayeredMap[str]]:
    """(keys, key_ids_by_hash, key_ids_by_name) for a ConfigState, each a frozen base the fold
    layers its changes over."""
    table = KeyTable(columns)
    return LayeredMap(table), LayeredMap(table.ids_by_hash()), LayeredMap(NameIndex(columns))
