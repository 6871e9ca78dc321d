"""In-memory twin of the event store, for pure tests and tools; same contract as Postgres."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from shieldes.errors import ConcurrentChange
from shieldes.events.catalog import CONFIG_STREAM
from shieldes.events.codec import GENESIS_HASH, chain_hash
from shieldes.events.scope import KEY_CREATED, KEY_UPDATED, Scope, select
from shieldes.events.store import (
    AppendOptions,
    AppendResult,
    Decide,
    Fingerprint,
    LogPage,
    NewEvent,
    RecordedEvent,
)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class InMemoryEventStore:
    def __init__(self, clock: Callable[[], datetime] = _utcnow) -> None:
        self._events: list[RecordedEvent] = []
        self._seqs: dict[tuple[str, int], int] = {}
        self._lock = asyncio.Lock()
        self._clock = clock
        self._config_position = 0
        self._config_hash = GENESIS_HASH
        self.horizon = 0  # no compaction here; tests set it to act as one

    async def append(self, stream: str, events: Sequence[NewEvent], options: AppendOptions) -> AppendResult:
        if not events:
            raise ValueError("append needs at least one event")
        async with self._lock:
            if options.idempotency_seq is not None:
                existing = self._seqs.get((stream, options.idempotency_seq))
                if existing is not None:
                    return AppendResult(existing, existing, duplicate=True)
            if (
                options.expected_config_position is not None
                and options.expected_config_position != self._config_position
            ):
                raise ConcurrentChange(
                    f"the config changed (position {self._config_position}) after it was read "
                    f"(position {options.expected_config_position}); retry the command"
                )
            now = self._clock()
            first = (self._events[-1].position if self._events else 0) + 1
            metadata = copy.deepcopy(options.metadata)
            for i, event in enumerate(events):
                pos = first + i
                prev_hash = event_hash = None
                data = copy.deepcopy(event.data)
                if stream == CONFIG_STREAM:
                    prev_hash = self._config_hash
                    event_hash = chain_hash(
                        prev_hash, position=pos, stream=stream, type_=event.type, version=event.version,
                        data=data, metadata=metadata, recorded_at=now,
                    )
                    self._config_hash = event_hash
                    self._config_position = pos
                self._events.append(
                    RecordedEvent(pos, stream, event.type, event.version, data, metadata, now, prev_hash, event_hash)
                )
            if options.idempotency_seq is not None:
                self._seqs[(stream, options.idempotency_seq)] = first
            return AppendResult(first, first + len(events) - 1, events=tuple(self._events[-len(events):]))

    async def read(self, after: int, limit: int = 1000, *, stream: str | None = None) -> list[RecordedEvent]:
        out: list[RecordedEvent] = []
        for e in self._events:  # positions ascend; a bisect would do if this ever mattered
            if e.position > after and (stream is None or e.stream == stream):
                out.append(e)
                if len(out) >= limit:
                    break
        return out

    async def read_page(self, after: int, limit: int = 1000) -> LogPage:
        return LogPage(await self.read(after, limit), self.horizon, await self.head(), await self.fingerprint(after))

    async def head(self) -> int:
        return self._events[-1].position if self._events else 0

    async def fingerprint(self, position: int) -> Fingerprint | None:
        for e in self._events:
            if e.position == position:
                return Fingerprint.of(e)
        return None

    async def config_head(self) -> int:
        return self._config_position

    async def config_position_at(self, position: int) -> int:
        return max((e.position for e in self._events if e.stream == CONFIG_STREAM and e.position <= position),
                   default=0)

    async def first_config_after(self, time: datetime) -> int | None:
        return next((e.position for e in self._events if e.stream == CONFIG_STREAM and e.recorded_at > time), None)

    async def keys_naming_teams(self, teams: Sequence[str]) -> set[str]:
        return {e.data["id"] for e in self._events if e.stream == CONFIG_STREAM
                and e.type in (KEY_CREATED, KEY_UPDATED) and e.data.get("team_id") in teams}

    async def find_config(self, metadata_field: str, value: str) -> list[RecordedEvent]:
        return [e for e in self._events if e.stream == CONFIG_STREAM and e.metadata.get(metadata_field) == value]

    async def read_scope(self, scope: Scope) -> tuple[list[RecordedEvent], int]:
        config = [e for e in self._events if e.stream == CONFIG_STREAM]
        return [config[i] for i in select([(e.type, e.data) for e in config], scope)], self._config_position

    async def append_scoped(
        self, scope: Scope, decide: Decide, options: AppendOptions
    ) -> tuple[list[RecordedEvent], AppendResult]:
        events, head = await self.read_scope(scope)
        new = decide(events)
        return events, await self.append(CONFIG_STREAM, new, replace(options, expected_config_position=head))
