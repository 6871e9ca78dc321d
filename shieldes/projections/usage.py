"""Durable usage totals folded from usage events (raw flushes and compaction rollups alike).

This fold mutates its accumulator for speed (millions of deltas at replay); it is still a pure
function of the event sequence: no I/O, no clock. Time comes from the deltas' own hour stamps.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from shieldes.events.catalog import Event, UsageDelta, UsageRecorded, UsageRolledUp

# Days of per-day cost kept in memory: enough for the longest budget window (366d) plus slack.
DAYS_KEPT = 372
# Flush watermarks kept per node: its newest boot (its own flushes) and the one before (a leader may
# still append that dead boot's last flushes on its behalf, and peers must see them land). Older
# boots can neither flush nor be taken over any more; compaction folds their raw events away.
BOOTS_KEPT = 2


@dataclass(slots=True)
class Totals:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_nusd: int = 0
    # what media calls were billed in besides tokens, each in its unit (usage/units.py)
    images: int = 0
    audio_seconds: int = 0
    characters: int = 0
    # the hosted tool uses billed per use and the part of cost_nusd they make (usage/units.py)
    web_searches: int = 0
    file_searches: int = 0
    containers: int = 0
    tools_nusd: int = 0

    def add(self, d: UsageDelta) -> None:
        self.requests += d.requests
        self.prompt_tokens += d.prompt_tokens
        self.completion_tokens += d.completion_tokens
        self.cost_nusd += d.cost_nusd
        self.images += d.images
        self.audio_seconds += d.audio_seconds
        self.characters += d.characters
        self.web_searches += d.web_searches
        self.file_searches += d.file_searches
        self.containers += d.containers
        self.tools_nusd += d.tools_nusd


@dataclass(slots=True)
class UsageState:
    totals: dict[str, Totals] = field(default_factory=dict)  # key_id -> all-time totals
    key_daily_cost: dict[str, dict[int, int]] = field(default_factory=dict)  # key_id -> day -> nUSD
    team_daily_cost: dict[str, dict[int, int]] = field(default_factory=dict)
    # Highest flush sequence in the log per (node_id, boot epoch), for the node's BOOTS_KEPT newest
    # boots: gossiped usage at or below it is already durable and must not be counted again.
    node_seqs: dict[str, dict[int, int]] = field(default_factory=dict)
    latest_day: int = 0

    def key_cost(self, key_id: str, days: range) -> int:
        daily = self.key_daily_cost.get(key_id)
        return sum(daily.get(d, 0) for d in days) if daily else 0

    def team_cost(self, team_id: str, days: range) -> int:
        daily = self.team_daily_cost.get(team_id)
        return sum(daily.get(d, 0) for d in days) if daily else 0

    def durable_seq(self, node_id: str, epoch: int) -> int:
        return self.node_seqs.get(node_id, {}).get(epoch, 0)

    def boot_floors(self) -> dict[str, int]:
        """node -> its newest boot epoch that flushed usage to the log (older boots are over)."""
        return {node: max(seqs) for node, seqs in self.node_seqs.items() if seqs}


def _add_deltas(state: UsageState, deltas: tuple[UsageDelta, ...]) -> None:
    # The replay hot loop (millions of deltas): attribute and method lookups hoisted into locals.
    totals_by_key = state.totals
    key_daily, team_daily = state.key_daily_cost, state.team_daily_cost
    for d in deltas:
        key_id = d.key_id
        totals = totals_by_key.get(key_id)
        if totals is None:
            totals = totals_by_key[key_id] = Totals()
        cost = d.cost_nusd
        totals.requests += d.requests
        totals.prompt_tokens += d.prompt_tokens
        totals.completion_tokens += d.completion_tokens
        totals.cost_nusd += cost
        if d.images or d.audio_seconds or d.characters:  # (a media call's; most deltas have none)
            totals.images += d.images
            totals.audio_seconds += d.audio_seconds
            totals.characters += d.characters
        if d.web_searches or d.file_searches or d.containers:  # (hosted tools: most deltas have none)
            totals.web_searches += d.web_searches
            totals.file_searches += d.file_searches
            totals.containers += d.containers
            totals.tools_nusd += d.tools_nusd
        day = d.hour // 24
        if day > state.latest_day:
            _advance_day(state, day)
        if not cost or day <= state.latest_day - DAYS_KEPT:
            continue
        daily = key_daily.get(key_id)
        if daily is None:
            daily = key_daily[key_id] = {}
        daily[day] = daily.get(day, 0) + cost
        team_id = d.team_id
        if team_id:
            tdaily = team_daily.get(team_id)
            if tdaily is None:
                tdaily = team_daily[team_id] = {}
            tdaily[day] = tdaily.get(day, 0) + cost


def _advance_day(state: UsageState, day: int) -> None:
    state.latest_day = day
    cutoff = day - DAYS_KEPT
    for table in (state.key_daily_cost, state.team_daily_cost):
        for owner, daily in list(table.items()):
            for old in [k for k in daily if k <= cutoff]:
                del daily[old]
            if not daily:  # no empty maps: the state does not depend on the order days arrived in
                del table[owner]


def note_flush(seqs: dict[int, int], epoch: int, seq: int) -> None:
    """Record a flush watermark of one node, keeping only its BOOTS_KEPT newest boots (a flush of an
    older boot, appended late on its behalf, counts its usage but leaves no watermark)."""
    if seq <= seqs.get(epoch, 0):
        return
    if epoch not in seqs and len(seqs) >= BOOTS_KEPT:
        oldest = min(seqs)
        if epoch < oldest:
            return
        del seqs[oldest]
    seqs[epoch] = seq


def keep_newest_boots(node_seqs: dict[str, dict[int, int]]) -> dict[str, dict[int, int]]:
    """The watermarks note_flush would have kept (a state from a release that kept them all)."""
    return {node: {e: seqs[e] for e in sorted(seqs)[-BOOTS_KEPT:]} for node, seqs in node_seqs.items()}


# Usage folded by the database per (key_id, team_id or "", UTC day): requests, prompt tokens,
# completion tokens, nUSD, whether any delta of the group had a cost, images, audio seconds and
# characters, web searches, file searches, containers and their nUSD (events/folded_read.py).
UsageGroup = tuple[str, str, int, int, int, int, int, bool, int, int, int, int, int, int, int]


def apply_usage_sums(state: UsageState, groups: Iterable[UsageGroup], max_day: int | None,
                     seqs: Iterable[tuple[str, int, int]]) -> UsageState:
    """Fold many usage events at once from their sums: the same state as `apply_usage` of each of
    them, in any order. Totals are sums, which commute. A per-day cost is kept iff its day lies in
    the window of the newest day seen (`max_day`: the newest over these deltas), whatever the
    order, because the window only moves forward and `_advance_day` drops what leaves it; a day's
    entry exists iff one of its deltas had a cost. A node keeps the highest seq of its BOOTS_KEPT
    newest boots whatever the order `note_flush` sees them in. `seqs`: (node, epoch, max seq) of
    the raw flushes."""
    if max_day is not None and max_day > state.latest_day:
        _advance_day(state, max_day)
    floor = state.latest_day - DAYS_KEPT
    totals_by_key, key_daily, team_daily = state.totals, state.key_daily_cost, state.team_daily_cost
    for (key_id, team_id, day, requests, prompt, completion, cost, costed, images, seconds, characters,
         searches, file_searches, containers, tools) in groups:
        totals = totals_by_key.get(key_id)
        if totals is None:
            totals = totals_by_key[key_id] = Totals()
        totals.requests += requests
        totals.prompt_tokens += prompt
        totals.completion_tokens += completion
        totals.cost_nusd += cost
        totals.images += images
        totals.audio_seconds += seconds
        totals.characters += characters
        totals.web_searches += searches
        totals.file_searches += file_searches
        totals.containers += containers
        totals.tools_nusd += tools
        if not costed or day <= floor:
            continue
        daily = key_daily.setdefault(key_id, {})
        daily[day] = daily.get(day, 0) + cost
        if team_id:
            tdaily = team_daily.setdefault(team_id, {})
            tdaily[day] = tdaily.get(day, 0) + cost
    for node_id, epoch, seq in seqs:
        note_flush(state.node_seqs.setdefault(node_id, {}), epoch, seq)
    return state


def apply_usage_parts(state: UsageState, node_id: str, epoch: int, seq: int,
                      parts: Iterable[tuple[UsageDelta, ...]]) -> Iterator[None]:
    """`apply_usage` of a flush whose deltas come in parts, a step after each part: the same state
    at the end (the deltas fold one by one, in order, either way). The flush's seq is noted after
    its last part only, so until then its spend still counts as pending too: a budget read between
    two steps sees more spend than there is, never less."""
    for part in parts:
        _add_deltas(state, part)
        yield
    note_flush(state.node_seqs.setdefault(node_id, {}), epoch, seq)


def apply_usage(state: UsageState, event: Event) -> UsageState:
    if isinstance(event, UsageRecorded):
        _add_deltas(state, event.deltas)
        note_flush(state.node_seqs.setdefault(event.node_id, {}), event.epoch, event.seq)
    elif isinstance(event, UsageRolledUp):
        _add_deltas(state, event.deltas)
    return state
