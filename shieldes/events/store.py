"""The event store boundary: a narrow Protocol with a Postgres implementation and an in-memory twin."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from shieldes.events.catalog import CONFIG_STREAM, Event
from shieldes.events.codec import Codec
from shieldes.events.scope import Scope

Data = dict[str, Any]


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as stored: its position, stream, type and version, data, metadata, time and hash chain."""

    position: int
    stream: str
    type: str
    version: int
    data: Data
    metadata: Data
    recorded_at: datetime
    prev_hash: str | None = None
    hash: str | None = None

    @property
    def is_config(self) -> bool:
        return self.stream == CONFIG_STREAM


@dataclass(frozen=True, slots=True)
class LogPage:
    """Events after a cursor and the log's compaction horizon, read in one statement (one snapshot):
    raw usage at or below `horizon` may have been folded into rollups, so a reader whose cursor is
    below it would count those rollups on top of what it applied; it must reload instead. `head`
    (the log's head) and `at_cursor` (what identifies the event at the cursor, None: none there)
    tell a reader whether the log still holds what it applied (projector.divergence_in)."""

    events: list[RecordedEvent]
    horizon: int
    head: int
    at_cursor: Fingerprint | None


@dataclass(frozen=True)
class FoldedLog:
    """The log after a cursor up to `upto` (the log's head) with the usage events of this release's
    versions folded by the store (events/folded_read.py): `events` (ascending) are the others;
    `groups` the folded usage as projections/usage.UsageGroup rows, `max_day` the newest UTC day
    of their deltas, `seqs` (node, epoch, max seq) of the raw flushes; `last` identifies the event
    at `upto` (None: there is none); `folded_events` counts the usage events folded."""

    upto: int
    horizon: int
    events: list[RecordedEvent]
    groups: list[tuple[str, str, int, int, int, int, int, bool, int, int, int, int, int, int, int]]
    max_day: int | None
    seqs: list[tuple[str, int, int]]
    last: Fingerprint | None
    folded_events: int = 0


@dataclass(frozen=True)
class NewEvent:
    """An event to append: its type, version and data (positions and hashes are the store's)."""

    type: str
    version: int
    data: Data

    @classmethod
    def of(cls, event: Event, codec: Codec) -> NewEvent:
        type_, version, data = codec.encode(event)
        return cls(type_, version, data)


@dataclass(frozen=True)
class AppendResult:
    """The positions an append took (or that an idempotent repeat found) and its events."""

    first_position: int
    last_position: int
    duplicate: bool = False  # an idempotency key had already been written: nothing appended
    # the events as committed (none for a duplicate): a writer applies them without reading them back
    events: tuple[RecordedEvent, ...] = ()


@dataclass(frozen=True)
class AppendOptions:
    """`expected_config_position`: refuse if a config event was appended after it (optimistic lock).
    `idempotency_key`: (stream, seq); a second append with the same pair is a no-op."""

    metadata: Data = field(default_factory=dict)
    expected_config_position: int | None = None
    idempotency_seq: int | None = None


@dataclass(frozen=True)
class Fingerprint:
    """What tells the event at a position from another event written there."""

    stream: str
    type: str
    recorded_at: datetime  # the appending transaction's clock: differs for a different event

    @classmethod
    def of(cls, e: RecordedEvent) -> Fingerprint:
        return cls(e.stream, e.type, e.recorded_at)


# a config write's decision on the events of its scope: the events to append (or an exception)
Decide = Callable[[Sequence[RecordedEvent]], Sequence[NewEvent]]


@runtime_checkable
class FoldingStore(Protocol):
    async def read_folded(self, after: int) -> FoldedLog:
        """Everything after `after` in one consistent read, usage folded (see FoldedLog)."""
        ...


class EventStore(Protocol):
    async def append(self, stream: str, events: Sequence[NewEvent], options: AppendOptions) -> AppendResult:
        """Append atomically. Positions are commit-ordered: a reader tailing by position never skips."""
        ...

    async def read(self, after: int, limit: int = 1000, *, stream: str | None = None) -> list[RecordedEvent]:
        """Events with position > after, ascending; only `stream` when given."""
        ...

    async def read_page(self, after: int, limit: int = 1000) -> LogPage:
        """`read(after, limit)` of the whole log plus the compaction horizon as of the same read."""
        ...

    async def head(self) -> int:
        """The highest committed position (0 for an empty log)."""
        ...

    async def config_head(self) -> int:
        """The position of the newest config event (0 if none)."""
        ...

    async def config_position_at(self, position: int) -> int:
        """The position of the newest config event at or before `position` (0 if none)."""
        ...

    async def first_config_after(self, time: datetime) -> int | None:
        """The position of the first config event recorded after `time` (None if none): a fold up
        to `time` stops before it."""
        ...

    async def keys_naming_teams(self, teams: Sequence[str]) -> set[str]:
        """The ids of the keys created in or moved to any of `teams` at some point: every key
        such a team holds at any position is one of them."""
        ...

    async def find_config(self, metadata_field: str, value: str) -> list[RecordedEvent]:
        """Config events whose metadata has `metadata_field` == `value`, ascending (idempotency keys)."""
        ...

    async def read_scope(self, scope: Scope) -> tuple[list[RecordedEvent], int]:
        """The config events `scope` selects (events/scope.py), ascending, and the config head as
        of the same read."""
        ...

    async def append_scoped(
        self, scope: Scope, decide: Decide, options: AppendOptions
    ) -> tuple[list[RecordedEvent], AppendResult]:
        """`read_scope(scope)`, then `decide(those events)` (it may raise: nothing is appended), then
        `append(CONFIG_STREAM, ...)` of what it returned, refused with ConcurrentChange if a config
        event was appended after the read (as with `expected_config_position`, which `options` leaves
        unset). Returns the events read and the append's result."""
        ...

    async def fingerprint(self, position: int) -> Fingerprint | None:
        """What identifies the event at `position` (None: no event there). After a database
        failover a node compares it with the event it applied there: a different one means the new
        primary's log diverged from what the node holds."""
        ...
