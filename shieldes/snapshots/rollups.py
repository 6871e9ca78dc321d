"""Pure rollup arithmetic for compaction: exact sums per (key, team, deployment, model, hour), and
the plan that lays a fold out as bounded rollup events on free positions."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from shieldes.events.catalog import UsageDelta

# (hour, key_id, provider, model, team_id or ""): sorts as plain tuples, in C ("" is never a team id)
GroupKey = tuple[int, str, str, str, str]
Plan = list[tuple[int, int | None, tuple[UsageDelta, ...]]]  # (position, hour or None, deltas)
# Deltas per rollup event: bounds the row (~0.5 MB of JSON) and the CPU one encode/decode takes,
# so a leader's event loop is never held for long by one event.
MAX_ROLLUP_DELTAS = 5000


class Folder:
    """Sums deltas per group; fed in slices so an async caller can yield between them."""

    def __init__(self) -> None:
        # values are tuples, not lists: tuples of ints drop out of the cyclic GC's view, so a large
        # fold does not lengthen every full collection on the leader's event loop
        self.acc: dict[GroupKey, tuple[int, int, int, int]] = {}
        self.count = 0

    def _add(self, k: GroupKey, r: int, p: int, c: int, n: int) -> None:
        s = self.acc.get(k)
        self.acc[k] = (r, p, c, n) if s is None else (s[0] + r, s[1] + p, s[2] + c, s[3] + n)

    def add(self, deltas: Iterable[UsageDelta]) -> None:
        for d in deltas:
            self.count += 1
            self._add((d.hour, d.key_id, d.provider, d.model, d.team_id or ""),
                      d.requests, d.prompt_tokens, d.completion_tokens, d.cost_nusd)

    def add_data(self, deltas: Iterable[dict[str, Any]]) -> None:
        """The same from the stored JSON of the current event version (skips building objects:
        compaction reads millions of deltas)."""
        for d in deltas:
            self.count += 1
            self._add((int(d["hour"]), d["key_id"], d["provider"], d["model"], d.get("team_id") or ""),
                      int(d["requests"]), int(d["prompt_tokens"]), int(d["completion_tokens"]),
                      int(d["cost_nusd"]))

    def add_sums(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Sums already grouped by the database: (hour, key, provider, model, team or "", requests,
        prompt, completion, nUSD, deltas counted)."""
        for hour, key_id, provider, model, team, r, p, c, n, count in rows:
            self.count += count
            self._add((hour, key_id, provider, model, team), r, p, c, n)

    def _delta(self, k: GroupKey) -> UsageDelta:
        return UsageDelta(k[1], k[4] or None, k[2], k[3], k[0], *self.acc[k])

    def result(self) -> tuple[UsageDelta, ...]:
        """Sorted, so the same input always gives the same rollups."""
        return tuple(self._delta(k) for k in sorted(self.acc))

    async def result_async(self, slice_: int = 2000) -> tuple[UsageDelta, ...]:
        """The same, yielding to the event loop every `slice_` groups (an hour of a busy cluster
        folds to tens of thousands of groups)."""
        keys = sorted(self.acc)
        out: list[UsageDelta] = []
        for i in range(0, len(keys), slice_):
            out.extend(self._delta(k) for k in keys[i:i + slice_])
            await asyncio.sleep(0)
        return tuple(out)


def deltas_of_sums(rows: list[tuple[Any, ...]]) -> tuple[UsageDelta, ...]:
    """`Folder.add_sums(rows)` then `result()`, for rows the database already grouped and sorted the
    same way (events/compaction_sql.partition_sums): the deltas straight away."""
    return tuple(UsageDelta(k, t or None, p, m, h, r, pt, ct, n) for h, k, p, m, t, r, pt, ct, n, _ in rows)


def fold_deltas(deltas: Iterable[UsageDelta]) -> tuple[UsageDelta, ...]:
    folder = Folder()
    folder.add(deltas)
    return folder.result()


def plan_rollups(
    folded: tuple[UsageDelta, ...], positions: list[int], max_deltas: int = MAX_ROLLUP_DELTAS
) -> Plan:
    """One rollup per hour (split in chunks of at most `max_deltas`), each on a distinct position
    from `positions` (the newest ones). With fewer positions than chunks, one unsplit rollup per
    hour; with fewer positions than hours (a few flushes straddling many hours), one mixed rollup
    (hour None) holds everything."""
    by_hour: dict[int, list[UsageDelta]] = {}
    for d in folded:
        by_hour.setdefault(d.hour, []).append(d)
    chunks = [
        (hour, tuple(deltas[i:i + max_deltas]))
        for hour, deltas in sorted(by_hour.items())
        for i in range(0, len(deltas), max_deltas)
    ]
    if len(chunks) > len(positions):
        if len(by_hour) > len(positions):
            return [(max(positions), None, folded)]
        chunks = [(hour, tuple(deltas)) for hour, deltas in sorted(by_hour.items())]
    slots = sorted(positions)[-len(chunks):] if chunks else []
    return [(slot, hour, part) for slot, (hour, part) in zip(slots, chunks, strict=True)]
