"""Runs the folds over the log: (state, position), catch_up() from a store, wait_for(position)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable, Sequence
from dataclasses import dataclass

from shieldes.errors import ShieldesError, UnknownEvent
from shieldes.events.catalog import USAGE_EVENTS, Event, UsageDelta, UsageRecorded
from shieldes.events.codec import GENESIS_HASH, Codec, deltas_from_data
from shieldes.events.store import EventStore, Fingerprint, FoldedLog, FoldingStore, LogPage, RecordedEvent
from shieldes.projections.config import apply_config
from shieldes.projections.state import ConfigState
from shieldes.projections.usage import UsageState, apply_usage, apply_usage_parts, apply_usage_sums

_USAGE_TYPES = frozenset(c.TYPE for c in USAGE_EVENTS)
PAGE = 5000
# A usage flush holding more deltas than this is decoded and folded this many at a time (each part
# ~2 ms), with the loop let turn between parts: a flush after a database outage holds every delta
# of the outage (100k deltas: ~400 ms to decode and fold in one step, on every node).
DELTAS_PER_PART = 1000
# The longest a fold holds the event loop before letting it turn (seconds): a page of key creations
# at 100k-1M keys folds for 80-150 ms of CPU, and every request and stream on the node waited as long.
TURN_EVERY = 0.005
log = logging.getLogger(__name__)
UNREADABLE_KEPT = 20


@dataclass(frozen=True)
class UnreadableEvent:
    position: int
    type: str
    version: int
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {"position": self.position, "type": self.type, "version": self.version, "reason": self.reason}


class Projection:
    """The whole in-memory state at one log position. Pure: `apply` only folds."""

    def __init__(
        self,
        config: ConfigState | None = None,
        usage: UsageState | None = None,
        position: int = 0,
        codec: Codec | None = None,
    ) -> None:
        self.config = config if config is not None else ConfigState()
        self.usage = usage if usage is not None else UsageState()
        self.position = position
        self.codec = codec if codec is not None else Codec()
        # The config hash chain's tip as of `position`: snapshots record it, so a loader can check
        # that the config it trusts is the one the log's chain ends with.
        self.config_tip: tuple[int, str] = (0, GENESIS_HASH)
        self.unreadable: list[UnreadableEvent] = []  # the first UNREADABLE_KEPT skipped events
        self.unreadable_count = 0

    def apply(self, recorded: RecordedEvent) -> Event | None:
        """Fold one recorded event; returns the decoded event (None if already folded or unreadable).

        An event this release cannot read (a newer type or version written during a rolling
        upgrade) or a config event whose fold fails is skipped and kept in `unreadable`: the node
        keeps applying everything else (revocations included) and says so; see docs/deploy.md."""
        if recorded.position <= self.position:
            return None
        try:
            event = self.codec.decode(recorded.type, recorded.version, recorded.data)
            if recorded.type in _USAGE_TYPES:
                apply_usage(self.usage, event)
            else:
                self.config = apply_config(self.config, event)
        except UnknownEvent as exc:
            self._skip(recorded, str(exc))
            return None
        except Exception as exc:  # a config fold that fails leaves the (immutable) old state intact
            if recorded.type in _USAGE_TYPES:
                raise  # usage folds mutate in place: a half-applied one must not be skipped silently
            self._skip(recorded, f"cannot apply: {type(exc).__name__}: {exc}")
            return None
        if recorded.hash is not None:
            self.config_tip = (recorded.position, recorded.hash)
        self.position = recorded.position
        return event

    def apply_parts(self, recorded: RecordedEvent) -> Generator[None, None, Event]:
        """`apply` of a large flush (`large_flush`) in steps, the caller letting the loop turn
        between them: its deltas decoded, then folded, DELTAS_PER_PART at a time (all decoded before
        any is folded, so a delta that cannot be read leaves the state as it was, as `apply` does);
        the position moves after the last part. Returns (StopIteration's value) the decoded event."""
        data, deltas = recorded.data, recorded.data["deltas"]
        node_id, epoch, seq = data["node_id"], int(data["epoch"]), int(data["seq"])
        parts: list[tuple[UsageDelta, ...]] = []
        for a in range(0, len(deltas), DELTAS_PER_PART):
            parts.append(deltas_from_data(deltas[a:a + DELTAS_PER_PART]))
            yield
        yield from apply_usage_parts(self.usage, node_id, epoch, seq, parts)
        self.position = recorded.position
        return UsageRecorded(node_id, epoch, seq, tuple(itertools.chain.from_iterable(parts)))

    def _skip(self, recorded: RecordedEvent, reason: str) -> None:
        self.unreadable_count += 1
        if len(self.unreadable) < UNREADABLE_KEPT:
            self.unreadable.append(UnreadableEvent(recorded.position, recorded.type, recorded.version, reason))
        if recorded.hash is not None:
            self.config_tip = (recorded.position, recorded.hash)
        self.position = recorded.position

    def apply_all(self, events: Iterable[RecordedEvent]) -> None:
        for e in events:
            self.apply(e)

    def apply_folded(self, folded: FoldedLog) -> None:
        """Everything up to `folded.upto`: the events not folded, one by one in order, then the usage
        the store folded. Config and usage are separate folds, so applying all of one before the
        other ends in the state a one-by-one replay reaches (usage.apply_usage_sums)."""
        self.apply_all(folded.events)
        apply_usage_sums(self.usage, folded.groups, folded.max_day, folded.seqs)
        self.position = max(self.position, folded.upto)


def large_flush(projection: Projection, recorded: RecordedEvent) -> bool:
    """A usage flush (this release's version) of more than DELTAS_PER_PART deltas, not folded yet."""
    if recorded.type != UsageRecorded.TYPE or recorded.version != UsageRecorded.VERSION:
        return False
    deltas = recorded.data.get("deltas")
    return recorded.position > projection.position and isinstance(deltas, list) and len(deltas) > DELTAS_PER_PART


class Turns:
    """Lets the event loop turn once `every` seconds of folding have passed since the last turn."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.since = time.perf_counter()

    def due(self) -> bool:
        return time.perf_counter() - self.since >= self.every

    async def turn(self) -> None:
        await asyncio.sleep(0)
        self.since = time.perf_counter()

    async def fold(self, projection: Projection, recorded: RecordedEvent) -> Event | None:
        """`projection.apply(recorded)`, a large flush a part at a time with turns between."""
        if not large_flush(projection, recorded):
            return projection.apply(recorded)
        steps = projection.apply_parts(recorded)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                event: Event = done.value
                return event
            if self.due():
                await self.turn()


async def apply_in_turns(projection: Projection, events: Iterable[RecordedEvent],
                         turn_every: float | None = None) -> None:
    """`projection.apply_all(events)` with the event loop turning every `turn_every` seconds
    (TURN_EVERY when None) of folding: a reload's tail folded on a serving node."""
    turns = Turns(TURN_EVERY if turn_every is None else turn_every)
    for recorded in events:
        await turns.fold(projection, recorded)
        if turns.due():
            await turns.turn()


Listener = Callable[[RecordedEvent, Event], None]
Reload = Callable[[], Awaitable[Projection]]


class BelowHorizon(ShieldesError):
    """The log was compacted past this projection's position (the node was paused or cut off
    longer than the node timeout): reading on would count usage twice or miss some."""

    status = 503
    code = "below_compaction_horizon"


class LogDiverged(ShieldesError):
    """The log no longer holds what this projection applied: the database failed over to a replica
    that lacked (or replaced) events. Reading on would skip the new primary's events at those
    positions; the projection must be loaded again (the log poller does)."""

    status = 503
    code = "log_diverged"


def divergence_in(anchor: tuple[int, Fingerprint] | None, position: int, page: LogPage) -> str | None:
    """Why `page` (read after `position`) shows a log other than the one this projection applied,
    None if it does not. `anchor` is the last event applied (position, fingerprint); compaction
    never rewrites a position a node applied, so only a failover to a lagging replica differs."""
    if page.head < position:
        return f"the log ends at position {page.head}, before this node's position {position}"
    if anchor is None or anchor[0] != position:
        return None  # nothing applied by this process yet (just loaded): nothing to compare
    if page.at_cursor != anchor[1]:
        return f"the event at position {position} is not the one this node applied"
    return None


def below_horizon(position: int, page: LogPage) -> bool:
    """A projection that applied events (position > 0) below the horizon cannot read on; one at 0
    replays rollups instead of the raw events they replaced, which is the same state."""
    return 0 < position < page.horizon


class Projector:
    """Keeps a Projection caught up with a store. Readers always catch up from their cursor, so a
    lost wake-up never loses an event (NOTIFY and gossip only shorten the wait)."""

    def __init__(self, store: EventStore, projection: Projection | None = None, *,
                 reload: Reload | None = None, fold_in_store: bool = True,
                 turn_every: float = TURN_EVERY) -> None:
        self.store = store
        self.turn_every = turn_every
        # a replay from position 0 reads usage folded by the store when it can (FoldingStore) and
        # nobody listens to single events
        self.fold_in_store = fold_in_store
        self.reload = reload  # a fresh projection (snapshot + tail) for when this one fell below the horizon
        self.reloads = 0
        self.projection = projection if projection is not None else Projection()
        self._lock = asyncio.Lock()
        self._advanced = asyncio.Condition()
        self._listeners: list[Listener] = []
        self.known_head = 0
        self.read_at = 0.0  # monotonic time the store last returned a page: the database answers
        self._reported_unreadable = 0
        # The last event applied, as (position, fingerprint): after a database failover the new
        # primary may lack it (asynchronous replication) or hold another event there.
        self.anchor: tuple[int, Fingerprint] | None = None

    def _report_unreadable(self, recorded: RecordedEvent | UnreadableEvent) -> None:
        self._reported_unreadable = self.projection.unreadable_count
        log.error(
            "cannot apply event %s v%d at position %d; skipped it and keep applying the rest. Upgrade this "
            "node (it runs an older release than the writer) and restart it to apply it (%d skipped so far)",
            recorded.type, recorded.version, recorded.position, self.projection.unreadable_count,
        )

    @property
    def position(self) -> int:
        return self.projection.position

    @property
    def config(self) -> ConfigState:
        return self.projection.config

    @property
    def usage(self) -> UsageState:
        return self.projection.usage

    def on_event(self, listener: Listener) -> None:
        """Called for each event applied live (e.g. to drop gossip components the log now holds)."""
        self._listeners.append(listener)

    async def _reload(self, horizon: int) -> None:
        if self.reload is None:
            raise BelowHorizon(f"the log was compacted up to position {horizon}, past this projection's "
                               f"position {self.projection.position}; load it again (snapshot + tail)")
        log.warning("the log was compacted up to position %d while this node was at position %d (paused or "
                    "cut off longer than the node timeout); reloading the state from the newest snapshot and "
                    "the tail instead of counting folded usage twice", horizon, self.projection.position)
        self._swap(await self.reload())
        self.reloads += 1

    async def catch_up(self, *, first_read_timeout: float | None = None) -> int:
        """Apply everything after the current position; returns the new position. A position below
        the log's compaction horizon reloads the projection first (see LogPage); a log that no
        longer holds what was applied raises LogDiverged (checked in the same read).
        `first_read_timeout` bounds the first read (TimeoutError): a poller's sign of a stuck database."""
        async with self._lock:
            if (self.projection.position == 0 and self.fold_in_store and not self._listeners
                    and isinstance(self.store, FoldingStore)):
                folded = await self.store.read_folded(0)
                self.projection.apply_folded(folded)
                if self.projection.unreadable_count > self._reported_unreadable:
                    self._report_unreadable(self.projection.unreadable[-1])
                if folded.last is not None:
                    self.anchor = (folded.upto, folded.last)
                    self.known_head = max(self.known_head, folded.upto)
            async with asyncio.timeout(first_read_timeout):  # (no task per read, unlike wait_for)
                page = await self._read_page(self.projection.position)
            diverged = divergence_in(self.anchor, self.projection.position, page)
            if diverged is not None:
                raise LogDiverged(f"{diverged}: the database lost or replaced events (a failover to a replica "
                                  "behind it?); this node loads its state from the log again: retry in a few seconds")
            self.known_head = max(self.known_head, page.head)
            if below_horizon(self.projection.position, page):
                await self._reload(page.horizon)
                page = await self._read_page(self.projection.position)
            # Rollups up to the horizon this read began under are part of the state it builds (a
            # replay from 0 reads them instead of raw events); a horizon raised past the cursor
            # between two pages is not: stop before that page, the next catch-up reloads.
            trusted = page.horizon
            while True:
                if page.horizon != trusted and below_horizon(self.projection.position, page):
                    raise BelowHorizon(f"the log was compacted up to position {page.horizon} during a catch-up "
                                       f"at position {self.projection.position}; the next one reloads")
                events = page.events
                # A full page means more may follow: fetch the next page while this one is folded,
                # so the database's work overlaps ours (replay from 0 is mostly these two costs).
                ahead = None
                if len(events) >= PAGE:
                    ahead = asyncio.ensure_future(self._read_page(events[-1].position))
                try:
                    await self._apply(events)
                except BaseException:
                    if ahead is not None:
                        ahead.cancel()
                    raise
                if ahead is None:
                    return self.projection.position
                page = await ahead

    async def _read_page(self, after: int) -> LogPage:
        page = await self.store.read_page(after, PAGE)
        self.read_at = time.monotonic()
        return page

    async def apply_appended(self, events: Sequence[RecordedEvent]) -> int:
        """Read-your-writes after this node's own append: its committed events (the append's result)
        are applied without reading them back when they directly follow the projection's position;
        otherwise (another writer's events in between) a catch-up reads them in order."""
        async with self._lock:
            if events and events[0].position == self.projection.position + 1:
                await self._apply(events)
                return self.projection.position
        return await self.catch_up()

    async def _apply(self, events: Sequence[RecordedEvent]) -> None:
        """Fold `events` (ascending, right after the position) and tell listeners and waiters.
        Every `turn_every` seconds the loop turns between two events (each event boundary is a
        consistent state; the lock stays held, so no other catch-up or reload interleaves), or
        between two parts of a large usage flush (`Projection.apply_parts`)."""
        turns, last = Turns(self.turn_every), len(events) - 1
        for i, recorded in enumerate(events):
            event = await turns.fold(self.projection, recorded)
            if event is not None:
                for listener in self._listeners:
                    listener(recorded, event)
            elif self.projection.unreadable_count > self._reported_unreadable:
                self._report_unreadable(recorded)
            if i < last and turns.due():
                await self._applied(recorded)  # waiters for what is folded so far go on now
                await turns.turn()
        if events:
            await self._applied(events[-1])

    async def _applied(self, recorded: RecordedEvent) -> None:
        self.anchor = (recorded.position, Fingerprint.of(recorded))
        self.known_head = max(self.known_head, recorded.position)
        async with self._advanced:
            self._advanced.notify_all()

    @contextlib.asynccontextmanager
    async def still(self) -> AsyncIterator[Projection]:
        """The projection, unchanged while the block runs (no event applied, no reload): a reader
        that awaits inside (a snapshot reading the usage a slice at a time) sees one position's
        state. Events wait meanwhile: hold it briefly."""
        async with self._lock:
            yield self.projection

    async def replace(self, projection: Projection) -> None:
        """Start over from `projection` (a reload after the log diverged)."""
        async with self._lock:
            self._swap(projection)

    def _swap(self, projection: Projection) -> None:
        projection.codec = self.projection.codec
        self.projection = projection
        self.anchor = None
        self.known_head = max(self.known_head, projection.position)
        self._reported_unreadable = projection.unreadable_count

    def note_head(self, head: int) -> None:
        """A hint (NOTIFY payload, gossip) that the log reaches at least `head`."""
        self.known_head = max(self.known_head, head)

    @property
    def lag(self) -> int:
        return max(0, self.known_head - self.projection.position)

    async def wait_for(self, position: int, timeout: float | None = None) -> bool:
        """Wait until the projection has applied `position`; False on timeout."""

        async def reached() -> None:
            async with self._advanced:
                await self._advanced.wait_for(lambda: self.projection.position >= position)

        try:
            await asyncio.wait_for(reached(), timeout)
        except TimeoutError:
            return False
        return True
