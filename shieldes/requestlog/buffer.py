"""The bounded in-memory queue between requests and the writer.

`add` never blocks and never fails. It holds at most `capacity` records, counting the batch the
writer is writing: when full (a database outage), the oldest record goes and `dropped` counts it.
The oldest records are in the batch being written; they are marked (`owed`) and dropped only if
that write fails (`put_back`); if it succeeds they were written after all and nothing is counted.
So `dropped` is exact: every record is either written once or counted once."""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Buffer(Generic[T]):
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: deque[T] = deque()
        self.added = 0
        self.dropped = 0
        self.in_flight = 0  # records taken by the writer, not yet written or put back
        self.owed = 0  # of those, how many (the oldest) go if the write fails

    def __len__(self) -> int:
        """Records held, the batch being written included."""
        return len(self.items) + self.in_flight - self.owed

    def add(self, item: T) -> None:
        items = self.items
        if len(items) + self.in_flight - self.owed >= self.capacity:
            if self.owed < self.in_flight:
                self.owed += 1
            else:
                items.popleft()
                self.dropped += 1
        items.append(item)
        self.added += 1

    def take(self, limit: int) -> list[T]:
        """The oldest records (at most `limit`); call `written` or `put_back` with them next."""
        items = self.items
        batch = [items.popleft() for _ in range(min(limit, len(items)))]
        self.in_flight, self.owed = len(batch), 0
        return batch

    def written(self) -> None:
        self.in_flight = self.owed = 0

    def put_back(self, batch: list[T]) -> None:
        drop = min(self.owed, len(batch))
        self.dropped += drop
        self.items.extendleft(reversed(batch[drop:]))
        self.in_flight = self.owed = 0
