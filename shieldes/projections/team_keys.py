"""How many active (not revoked) keys each team has: one count per team, kept by the config fold
in O(1) per key event and counted once when a config is loaded (from a snapshot's key columns
without building a key object). `team list`, `budget show --team` and the admin API's teams read
it instead of walking every key for every team."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from shieldes.projections.pmap import LayeredMap, PMap, with_item, without_item
from shieldes.projections.state import VirtualKey


def counted_team(key: VirtualKey | None) -> str | None:
    """The team a key counts toward: its team while it is not revoked (None: no team's)."""
    return key.team_id if key is not None and not key.revoked else None


def moved(counts: Mapping[str, int], old: VirtualKey | None, new: VirtualKey) -> Mapping[str, int]:
    """`counts` once key `old` (None: not there before) is `new`: a key created in a team, revoked,
    or moved to another team changes at most two counts. A count that reaches 0 is dropped, so the
    same keys always give the same mapping."""
    was, now = counted_team(old), counted_team(new)
    if was == now:
        return counts
    if was is not None:
        left = counts.get(was, 0) - 1
        counts = with_item(counts, was, left) if left > 0 else without_item(counts, was)
    if now is not None:
        counts = with_item(counts, now, counts.get(now, 0) + 1)
    return counts


def _shift(counts: dict[str, int], was: str | None, now: str | None) -> None:
    if was == now:
        return
    if was is not None:
        counts[was] -= 1
        if not counts[was]:
            del counts[was]
    if now is not None:
        counts[now] = counts.get(now, 0) + 1


def team_key_counts(keys: Mapping[str, VirtualKey]) -> PMap[int]:
    """Every team's active keys, counted from scratch. Over a snapshot's key columns (and the keys
    changed since) it reads the team and revoked columns only."""
    from shieldes.projections.keytable import KeyTable  # not at import: a CLI key write never needs it

    if isinstance(keys, LayeredMap) and isinstance(keys.base, KeyTable):
        table, counts = keys.base, keys.base.team_key_counts()
        for key_id, key in keys.changes():
            if key is not None:  # keys are never deleted
                _shift(counts, counted_team(table.get(key_id)), counted_team(key))
        return PMap(counts)
    if isinstance(keys, KeyTable):
        return PMap(keys.team_key_counts())
    return PMap(dict(Counter(k.team_id for k in keys.values() if k.team_id is not None and not k.revoked)))
