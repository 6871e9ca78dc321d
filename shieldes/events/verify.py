"""Verification of the config hash chain: a pure walk over recorded config events.

Each config event stores `prev_hash` (its predecessor's hash) and `hash` (over a canonical encoding
of itself plus `prev_hash`); `log_head` stores the tip. Editing any field of a row, deleting or
inserting a row, or moving the tip shows up as the first position where the walk disagrees.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shieldes.events.codec import GENESIS_HASH, chain_hash
from shieldes.events.store import RecordedEvent


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int  # config events walked
    last_position: int  # position of the last good config event (0: none)
    tip_hash: str
    bad_position: int | None = None
    reason: str | None = None


class ChainWalker:
    """Feed config events in position order with `feed`; call `finish` with the log_head row."""

    def __init__(self) -> None:
        self.prev = GENESIS_HASH
        self.checked = 0
        self.last_position = 0
        self.failure: ChainReport | None = None

    def _fail(self, position: int, reason: str) -> ChainReport:
        self.failure = ChainReport(False, self.checked, self.last_position, self.prev, position, reason)
        return self.failure

    def feed(self, e: RecordedEvent) -> ChainReport | None:
        """Check one event; returns a failure report at the first bad event, else None."""
        if self.failure is not None:
            return self.failure
        if e.prev_hash != self.prev:
            what = "a config event before it was deleted or altered" if self.checked else "the chain start"
            return self._fail(e.position, f"prev_hash does not match {what}")
        expected = chain_hash(
            self.prev, position=e.position, stream=e.stream, type_=e.type, version=e.version,
            data=e.data, metadata=e.metadata, recorded_at=e.recorded_at,
        )
        if e.hash != expected:
            return self._fail(e.position, "the row's content does not match its hash (edited)")
        self.prev = expected
        self.checked += 1
        self.last_position = e.position
        return None

    def finish(self, head_position: int, head_hash: str) -> ChainReport:
        if self.failure is not None:
            return self.failure
        if head_position != self.last_position or head_hash != self.prev:
            return self._fail(
                max(head_position, self.last_position),
                f"log_head points at position {head_position} but the chain ends at {self.last_position} "
                "(a config event was deleted, or log_head was altered)",
            )
        return ChainReport(True, self.checked, self.last_position, self.prev)


def verify_chain(events: Iterable[RecordedEvent], head_position: int, head_hash: str) -> ChainReport:
    walker = ChainWalker()
    for e in events:
        if walker.feed(e) is not None:
            break
    return walker.finish(head_position, head_hash)
