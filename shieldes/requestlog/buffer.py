"""The bounded in-memory queue between requests and the writer.

`add` never blocks and never fails. The buffer holds at most `capacity` records, the batch the
writer is writing included (those records stay in memory until the write ends). When it is full
(a database outage) the oldest record waiting goes and `dropped` counts it; a record of the batch
being written is never dropped, as its write may have succeeded. A batch is at most half the
buffer, so the newest half of what arrives is always kept (with a buffer of 1, a record arriving
while the one held is being written is the one dropped). So `dropped` is exact: every record is
either written once or counted once."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Buffer(Generic[T]):
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: deque[T] = deque()
        self.added = 0
        self.dropped = 0
        self.in_flight = 0  # records taken by the writer, not yet written or put back
        self.on_first: Callable[[], None] | None = None  # a record added to an empty buffer (the writer)

    def __len__(self) -> int:
        """Records held, the batch being written included."""
        return len(self.items) + self.in_flight

    def add(self, item: T) -> None:
        self.added += 1
        items = self.items
        if not items and not self.in_flight and self.on_first is not None:
            self.on_first()
        if len(items) + self.in_flight >= self.capacity:
            self.dropped += 1
            if not items:  # everything held is being written: the newcomer is the one that goes
                return
            items.popleft()
        items.append(item)

    def batch_size(self, limit: int) -> int:
        return min(limit, max(1, self.capacity // 2))

    def batches(self, records: int, limit: int) -> int:
        """How many `take(limit)` calls write `records` records."""
        return -(-records // self.batch_size(limit))

    def take(self, limit: int) -> list[T]:
        """The oldest records (at most `limit` and half the capacity); call `written` or `put_back`
        with them next."""
        items = self.items
        batch = [items.popleft() for _ in range(min(len(items), self.batch_size(limit)))]
        self.in_flight = len(batch)
        return batch

    def written(self) -> None:
        self.in_flight = 0

    def put_back(self, batch: list[T]) -> None:
        self.items.extendleft(reversed(batch))
        self.in_flight = 0
