"""Pure rollup arithmetic for compaction: exact sums per (key, team, deployment, model, hour), and
the plan that lays a fold out as bounded rollup events on free positions."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from shieldes.events.catalog import UsageDelta
from shieldes.events.codec import DELTA_FIELDS

# (hour, key_id, provider, model, team_id or ""): sorts as plain tuples, in C ("" is never a team id)
GroupKey = tuple[int, str, str, str, str]
# a group and its sums: GroupKey + (requests, prompt_tokens, completion_tokens, cost_nusd, images,
# audio_seconds, characters, web_searches, file_searches, containers, tools_nusd): SUMS of them; rows
# from the database may carry more columns after these (the deltas counted)
SumRow = tuple[Any, ...]
SUMS = 11
# per group, the sums of the numeric members of its deltas this release does not know (a newer
# release's counters, carried through the rollups so that release reads them exact)
Extras = dict[GroupKey, dict[str, int | float]]
Plan = list[tuple[int, int | None, tuple[UsageDelta, ...]]]  # (position, hour or None, deltas)
# (position, hour or None, first, stop): a rollup holds items[first:stop] of a fold sorted by hour
Chunks = list[tuple[int, int | None, int, int]]
# Deltas per rollup event: bounds the row (~0.5 MB of JSON) and the CPU one encode/decode takes,
# so a leader's event loop is never held for long by one event.
MAX_ROLLUP_DELTAS = 5000


class Folder:
    """Sums deltas per group; fed in slices so an async caller can yield between them."""

    def __init__(self) -> None:
        # values are tuples, not lists: tuples of ints drop out of the cyclic GC's view, so a large
        # fold does not lengthen every full collection on the leader's event loop
        self.acc: dict[GroupKey, tuple[int, ...]] = {}
        self.extras: Extras = {}
        self.count = 0

    def _add(self, k: GroupKey, sums: tuple[int, ...]) -> None:
        s = self.acc.get(k)
        if s is None:
            self.acc[k] = sums
        else:  # written out: it runs once per delta folded
            self.acc[k] = (s[0] + sums[0], s[1] + sums[1], s[2] + sums[2], s[3] + sums[3], s[4] + sums[4],
                           s[5] + sums[5], s[6] + sums[6], s[7] + sums[7], s[8] + sums[8], s[9] + sums[9],
                           s[10] + sums[10])

    def add(self, deltas: Iterable[UsageDelta]) -> None:
        for d in deltas:
            self.count += 1
            self._add((d.hour, d.key_id, d.provider, d.model, d.team_id or ""),
                      (d.requests, d.prompt_tokens, d.completion_tokens, d.cost_nusd, d.images, d.audio_seconds,
                       d.characters, d.web_searches, d.file_searches, d.containers, d.tools_nusd))

    def add_data(self, deltas: Iterable[dict[str, Any]]) -> None:
        """The same from the stored JSON of the current event version (skips building objects:
        compaction reads millions of deltas); the media units are absent when zero."""
        for d in deltas:
            self.count += 1
            k = (int(d["hour"]), d["key_id"], d["provider"], d["model"], d.get("team_id") or "")
            self._add(k, (int(d["requests"]), int(d["prompt_tokens"]), int(d["completion_tokens"]),
                          int(d["cost_nusd"]), int(d.get("images", 0)), int(d.get("audio_seconds", 0)),
                          int(d.get("characters", 0)), int(d.get("web_searches", 0)), int(d.get("file_searches", 0)),
                          int(d.get("containers", 0)), int(d.get("tools_nusd", 0))))
            if not d.keys() <= DELTA_FIELDS:
                self._add_extras(k, ((m, v) for m, v in d.items() if m not in DELTA_FIELDS))

    def _add_extras(self, k: GroupKey, members: Iterable[tuple[str, Any]]) -> None:
        """Numeric members only (a bool is not one): a string or an object has no sum, it is dropped."""
        sums = self.extras.setdefault(k, {})
        for m, v in members:
            if isinstance(v, int | float | Decimal) and not isinstance(v, bool):
                if isinstance(v, Decimal):  # the database's exact sum: back to JSON's int or float
                    v = int(v) if v == v.to_integral_value() else float(v)
                sums[m] = sums.get(m, 0) + v
        if not sums:
            del self.extras[k]

    def add_extras(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Unknown members' sums grouped by the database: (hour, key, provider, model, team or "",
        member, sum)."""
        for hour, key_id, provider, model, team, member, total in rows:
            self._add_extras((hour, key_id, provider, model, team), ((member, total),))

    def add_sums(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Sums already grouped by the database: (hour, key, provider, model, team or "", requests,
        prompt, completion, nUSD, images, seconds, characters, web searches, file searches,
        containers, tools nUSD, deltas counted)."""
        for hour, key_id, provider, model, team, *sums, count in rows:
            self.count += count
            self._add((hour, key_id, provider, model, team), tuple(sums))

    def rows(self) -> list[SumRow]:
        """The fold as sorted SumRows (what the database's sums look like)."""
        return [(*k, *self.acc[k]) for k in sorted(self.acc)]

    def _delta(self, k: GroupKey) -> UsageDelta:
        return UsageDelta(k[1], k[4] or None, k[2], k[3], k[0], *self.acc[k])

    def result(self) -> tuple[UsageDelta, ...]:
        """Sorted, so the same input always gives the same rollups."""
        return tuple(self._delta(k) for k in sorted(self.acc))


def fold_deltas(deltas: Iterable[UsageDelta]) -> tuple[UsageDelta, ...]:
    folder = Folder()
    folder.add(deltas)
    return folder.result()


def _runs_and_chunks(hours: Sequence[int], max_deltas: int) -> tuple[list[tuple[int, int, int]], Chunks]:
    """Runs of one hour (hour, first, stop) and their chunks of at most `max_deltas` (no position yet).
    `hours` ascend: each run's end is found by bisection, not a step per item (a partition's ~70k
    items walked one by one held the leader's event loop ~10 ms, twice per partition)."""
    runs: list[tuple[int, int, int]] = []
    i, n = 0, len(hours)
    while i < n:
        hour = hours[i]
        stop = bisect_right(hours, hour, i)
        runs.append((hour, i, stop))
        i = stop
    chunks: Chunks = [(0, hour, a, min(a + max_deltas, stop)) for hour, first, stop in runs
                      for a in range(first, stop, max_deltas)]
    return runs, chunks


def chunks_wanted(hours: Sequence[int], max_deltas: int = MAX_ROLLUP_DELTAS) -> int:
    """How many positions `plan_chunks` can use at most: it only ever takes the newest this many, so
    a caller may pass just those (with fewer free positions than this, all of them)."""
    return len(_runs_and_chunks(hours, max_deltas)[1])


def plan_chunks(hours: Sequence[int], positions: Sequence[int], max_deltas: int = MAX_ROLLUP_DELTAS) -> Chunks:
    """Where the rollups of a fold go, given the hour of each of its items in order (sorted by
    hour): one rollup per hour (split in chunks of at most `max_deltas`), each on a distinct
    position from `positions` (the newest ones). With fewer positions than chunks, one unsplit
    rollup per hour; with fewer positions than hours (a few flushes straddling many hours), one
    mixed rollup (hour None) holds everything."""
    runs, chunks = _runs_and_chunks(hours, max_deltas)
    if len(chunks) > len(positions):
        if len(runs) > len(positions):
            return [(max(positions), None, 0, len(hours))]
        chunks = [(0, hour, first, stop) for hour, first, stop in runs]
    slots = sorted(positions)[-len(chunks):] if chunks else []
    return [(slot, hour, a, b) for slot, (_, hour, a, b) in zip(slots, chunks, strict=True)]


def plan_rollups(
    folded: tuple[UsageDelta, ...], positions: list[int], max_deltas: int = MAX_ROLLUP_DELTAS
) -> Plan:
    """`plan_chunks` of folded deltas (sorted, as Folder.result gives them)."""
    return [(slot, hour, folded[a:b]) for slot, hour, a, b in plan_chunks([d.hour for d in folded], positions,
                                                                          max_deltas)]
