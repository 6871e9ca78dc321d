"""Stored responses of one node: a bounded in-memory cache of recent responses, a batched writer
that makes them durable off the request path, reads that work from any node, and the retention
purge.

Read-your-writes across nodes: a response is queued for writing when its last byte is produced and
the writer inserts whatever is queued LINGER (25 ms) later (one INSERT statement per batch; batches
grow under load; what arrives during a write waits LINGER after it), so it is durable at most
LINGER plus two write latencies after the response ended. A node
that does not hold the id in memory reads Postgres; if the row is not there yet it polls for up to `responses_read_wait`
seconds from Postgres's first answer before answering 404, which covers a next turn that races the writer on another
node (also after an outage both waited out).

That poll waits for a row that may appear; each of its reads (and a delete) is a query that may
never return on a stalled database, bounded apart by the node's DbWait (`db_request_timeout`): a
read past it is a 503 to retry, so a request waits at most the poll plus two bounds (the first read, the last).

The writer's own writes are bounded too (`write_bound`): a write that a stalled database holds
past it is cancelled and retried on another connection (the insert skips rows already there, so
none lands twice), and the stall is logged and counted (`shieldes_stored_responses_*`) with the
responses waiting in memory meanwhile, where this node serves them from.

A delete is never undone by a write: it takes a response still queued out of the queue (also one
a failed write put back), waits for the batch in flight holding it to land before deleting the
row, and a continuation that read the chain from Postgres while a delete ran caches none of it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg

from shieldes.dbwait import DbWait
from shieldes.errors import DatabaseStalled, NotFound, PreviousResponseNotFound, StoredResponsesBacklog
from shieldes.responses.cached_chain import PARSED_FROM, Cached, conversation, items_weight, own_items
from shieldes.responses.history import History
from shieldes.responses.objects import never_stored
from shieldes.responses.store import Encoded, ResponseTable, RunState, StoredResponse, encode
from shieldes.responses.stored_histories import NO_SEQUENCE, Known, StoredHistories, extended, usable
from shieldes.responses.write_pacing import (
    HOLD_IDLE,
    LINGER,
    batch_length,
    keeps_connection,
    poll_deadline,
    write_bound,
)
from shieldes.settings import Settings
from shieldes.tasks import Wake, stop_task

log = logging.getLogger(__name__)
POLL = 0.02  # seconds between reads while waiting for another node's write
MAX_PENDING = 100_000  # responses held while the database is unreachable
ROOM_RETRY_AFTER = 1  # seconds a request refused for the backlog is told to wait (Retry-After)
RETRY = 1.0
DELETE = "stored responses cannot be deleted right now"
STALLED = ("it is retried on a new connection; check the database (`shieldes doctor`, a session holding a lock on "
           "stored_responses in pg_stat_activity, free disk space)")
T = TypeVar("T")


def not_found(response_id: str) -> NotFound:
    return NotFound(
        f"Response with id {response_id!r} not found: it never existed, was deleted, expired, was created "
        "with store: false, or belongs to another API key",
        code="not_found",
    )


def previous_not_found(response_id: str) -> PreviousResponseNotFound:
    """The refusal of a continuation whose conversation cannot be read (the response continued, or
    one before it, is not found), in OpenAI's words and code."""
    return PreviousResponseNotFound(
        f"Previous response with id {response_id!r} not found: it or a response before it in its "
        "conversation never existed, was deleted, expired, was created with store: false, or belongs to "
        "another API key; send the whole conversation as `input` without previous_response_id",
        param="previous_response_id",
    )


class ResponseStore:
    def __init__(self, table: ResponseTable, settings: Settings, wait: DbWait) -> None:
        self.table, self.wait = table, wait
        self.retention = settings.responses_retention_seconds
        self.read_wait = settings.responses_read_wait
        self.cache_bytes = settings.responses_cache_bytes
        self.pending_bytes_max = settings.responses_pending_bytes
        self.purge_interval = settings.responses_purge_interval
        self.node_timeout = settings.node_timeout  # a background run's node silent this long is gone
        self.hold_idle = HOLD_IDLE  # the writer's kept connection goes back after this long without a batch
        # each with the JSON bytes it stands for and its insertion's sequence number (they leave oldest first)
        self._cache: OrderedDict[str, tuple[Cached, int, int]] = OrderedDict()
        self._cached_bytes = 0
        self._sequence = NO_SEQUENCE  # of the latest insertion
        self._evicted = NO_SEQUENCE  # the newest insertion evicted for the bound
        self._histories = StoredHistories(settings.responses_history_bytes)
        # continuations by how the conversation before them was found: remembered whole, a remembered
        # one extended by the turns after it, or read (every turn decoded)
        self.continued = {"remembered": 0, "extended": 0, "read": 0}
        self._pending: list[Encoded] = []
        self._pending_bytes = 0  # of the rows queued or being written: what `check_room` bounds
        self._writing: dict[str, Encoded] = {}
        # one write at a time: `_writing` is the batch in flight, which a delete waits for, and a
        # flush returns once everything queued before it landed, the writer's batch in flight included
        self._flushing = asyncio.Lock()
        self._deletes = 0  # deletes served: a read from Postgres that overlapped one caches nothing
        self._unsure: set[str] = set()  # queued again after a failed write, which may have landed all the same
        self._writes = DbWait(settings.db_request_timeout)  # the writer's own: stop() awaits its cancellations
        self.stalls = 0  # writes cancelled past their bound
        self.dropped = 0  # responses dropped unwritten (more than MAX_PENDING waiting)
        self._refused: set[str] = set()  # cached responses Postgres refused: read from the cache
        self._wake = Wake()
        self._written: asyncio.Event | None = None  # set when the batch in flight is done (made by a waiter)
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._next_purge = 0.0

    # --- writes --------------------------------------------------------------------------------

    def save(self, stored: StoredResponse, before: History | None = None) -> None:
        """Queue a finished response for writing (no I/O here) and remember it locally. Its JSON is
        encoded here, once: the cache keeps it and the writer sends it. `before`: the history the
        turn continued; when it is the one `history()` gave for its previous response, the
        response's own conversation is remembered as that followed by its input and output."""
        row = encode(stored)
        sequence = self._remember(row, stored)
        if before is not None and stored.previous_response_id is not None and sequence != NO_SEQUENCE:
            self._extend(stored, before, sequence, row)
        if len(self._pending) >= MAX_PENDING:
            dropped = self._pending.pop(0)
            self._pending_bytes -= dropped.size
            self._unsure.discard(dropped.id)
            self.dropped += 1
            log.warning("stored responses: %d waiting for the database; dropped %s", MAX_PENDING, dropped.id)
        self._pending.append(row)
        self._pending_bytes += row.size
        self._wake.set()

    @property
    def histories_weight(self) -> int:
        """JSON bytes of the conversations remembered (stored_histories), as their bound counts them."""
        return self._histories.weight

    @property
    def pending(self) -> int:
        """Responses waiting to be written, the write in flight included."""
        return len(self._pending) + len(self._writing)

    @property
    def pending_bytes(self) -> int:
        """Their bytes of JSON (what the writer sends, and about what they hold in memory)."""
        return self._pending_bytes

    def check_room(self) -> None:
        """Refuse a request that would store its response while the responses waiting to be written
        are past `pending_bytes_max`, before it calls an upstream. A database slower than the turns
        it is sent (2 MB screenshots at tens per second) or unreachable holds them in this node's
        memory, and without a bound in bytes that memory grows until the process is killed, taking
        every unwritten response with it. Refused at once (a request never waits on the database):
        nothing was sent upstream or billed, the client retries after Retry-After, and a response
        already served is never dropped for the bound."""
        if self._pending_bytes >= self.pending_bytes_max:
            raise StoredResponsesBacklog(
                f"this node holds {self._pending_bytes / 1e6:.1f} MB of stored responses waiting for Postgres, "
                f"past its bound of {self.pending_bytes_max / 1e6:.1f} MB (SHIELDES_RESPONSES_PENDING_BYTES): retry "
                "in a few seconds or on another node, or send store: false; if it lasts, check the database "
                "(`shieldes doctor`, shieldes_stored_responses_write_stalls_total)", retry_after=ROOM_RETRY_AFTER)

    def _extend(self, stored: StoredResponse, before: History, sequence: int, row: Encoded) -> None:
        base = self._histories.get(stored.key_id, stored.previous_response_id or "")
        if base is None or base.history is not before or not isinstance(stored.input, list):
            return  # (a WebSocket's or a conversation's history, or an input kept as bytes: read when continued)
        cached = self._cache[stored.id][0]
        self._histories.put(stored.key_id, extended(base, stored.id, own_items(stored, cached),
                                                    len(row.input) + len(row.output), sequence, stored.created_at))

    def _remember(self, row: Encoded, stored: StoredResponse) -> int:
        """Keep the newest responses up to `cache_bytes` of JSON (agent conversations get large).
        Returns the insertion's sequence number (NO_SEQUENCE: too large to keep)."""
        if row.id in self._cache:  # (a new id, but for a retried turn: nothing to forget)
            self._forget(row.id)
        held = row.held
        if held > self.cache_bytes:
            return NO_SEQUENCE
        self._sequence += 1
        # (an input kept as the client's bytes is cached as JSON: readers get items, decoded on reading)
        self._cache[row.id] = (stored if held >= PARSED_FROM and isinstance(stored.input, list) else row, held,
                               self._sequence)
        self._cached_bytes += held
        while self._cached_bytes > self.cache_bytes:
            old, (_, old_held, old_sequence) = self._cache.popitem(last=False)
            self._refused.discard(old)
            self._cached_bytes -= old_held
            self._evicted = old_sequence  # (the oldest insertion left: every one before it is gone)
        return self._sequence

    def _forget(self, response_id: str) -> None:
        found = self._cache.pop(response_id, None)
        self._refused.discard(response_id)
        if found is not None:
            self._cached_bytes -= found[1]
            # an insertion gone out of order: a remembered conversation holding it would outlive it
            self._histories.forget(found[0].key_id)

    async def flush(self, limit: int | None = None) -> bool:
        """Write everything queued, or its oldest `limit` rows, after the write in flight (one at a
        time); False if the database refused or stalled (the rows stay queued)."""
        async with self._flushing:
            left = len(self._pending) if limit is None else limit
            while self._pending and left > 0:
                n = min(batch_length(self._pending, self._pending_bytes), left)  # (those bytes bound the queue's)
                left -= n
                batch, self._pending = self._pending[:n], self._pending[n:]
                if not await self._write(batch):
                    return False
            return True

    async def _write(self, batch: list[Encoded]) -> bool:
        self._writing = {r.id: r for r in batch}
        size = sum(r.size for r in batch)
        try:
            try:
                await self._bounded(batch, size)
            except psycopg.errors.DataError:
                await self._insert_one_by_one(batch)
        except DatabaseStalled as exc:
            self.stalls += 1
            self._pending = batch + self._pending
            self._unsure.update(r.id for r in batch)  # (cancelled on its way, its INSERT may have committed)
            log.warning("%s; %d responses wait in this node's memory (served from it meanwhile)",
                        exc.message, len(self._pending))
            return False
        except (psycopg.Error, OSError) as exc:
            log.warning("stored responses: write of %d failed, will retry: %s", len(batch), exc)
            self._pending = batch + self._pending
            self._unsure.update(r.id for r in batch)  # (a connection lost may have taken the commit's answer)
            return False
        except asyncio.CancelledError:  # the writer stopped mid-write (shutdown): the batch waits for stop's flush
            self._pending = batch + self._pending
            self._unsure.update(r.id for r in batch)
            raise
        else:
            self._pending_bytes -= size  # written, or refused and kept in memory only
            if self._unsure:
                self._unsure.difference_update(r.id for r in batch)
            return True
        finally:
            self._writing = {}
            done, self._written = self._written, None
            if done is not None:
                done.set()

    async def _bounded(self, rows: list[Encoded], size: int) -> None:
        table = self.table
        keep = keeps_connection(table.pool_size, time.monotonic() - table.held_since if table.kept else None)
        await self._writes.within(
            table.insert(rows, keep),
            f"stored responses: a write of {len(rows)} ({size / 1e6:.1f} MB) was cancelled",
            advice=STALLED, seconds=write_bound(self._writes.seconds, size))

    async def _insert_one_by_one(self, batch: list[Encoded]) -> None:
        """A batch Postgres refused for its content (jsonb holds no NUL character, for one): each
        response alone, and the ones it refuses are kept only in this node's memory."""
        for row in batch:
            try:
                await self._bounded([row], row.size)
            except psycopg.errors.DataError as exc:
                if row.id in self._cache:
                    self._refused.add(row.id)
                log.warning("stored responses: %s cannot be stored in Postgres (%s); it stays readable on this "
                            "node until it leaves the memory cache", row.id, str(exc).splitlines()[0][:200])

    async def _run(self) -> None:
        while not self._stopping:
            idle = min(self.purge_interval, 60.0)
            if not await self._wake.wait(min(idle, self.hold_idle) if self.table.kept else idle) \
                    and not self._pending:
                await self.table.release()  # no batch for hold_idle: the pool's other users get it back
            if self._pending and not self._stopping:
                await asyncio.sleep(LINGER)
            self._wake.clear()
            # What arrives while this write runs waits for the next one, LINGER after it: written
            # straight after, it went as a statement every few ms of 1-5 rows at moderate load
            # (Postgres's and psycopg's cost per statement paid for each; `bench_stored_pg.py node`).
            if not await self.flush(len(self._pending)):
                await asyncio.sleep(RETRY)
                self._wake.set()
            if time.time() >= self._next_purge:
                await self.purge()

    async def purge(self) -> list[str]:
        self._next_purge = time.time() + self.purge_interval
        try:
            dropped = await self._writes.within(self.table.purge(time.time(), self.retention),
                                                "stored responses: the retention purge was cancelled",
                                                advice="it is tried again at the next purge interval")
        except DatabaseStalled as exc:
            log.warning("%s", exc.message)
            return []
        except (psycopg.Error, OSError) as exc:
            log.warning("stored responses: retention purge failed, will retry: %s", exc)
            return []
        if dropped:
            log.info("stored responses: dropped expired partitions %s", ", ".join(dropped))
        return dropped

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="responses-writer")

    async def stop(self, timeout: float = 5.0) -> None:
        if self._task is not None:
            await stop_task(self._task, self)
            self._task = None
        deadline = time.monotonic() + timeout
        while self._pending and time.monotonic() < deadline:
            if not await self.flush():
                await asyncio.sleep(0.1)
        if self._pending:
            log.warning("stored responses: %d not written at shutdown", len(self._pending))
        await self._writes.stop()  # writes cancelled past their bound: before the pool closes
        await self.table.release()

    # --- reads ---------------------------------------------------------------------------------

    def _fresh(self, entry: Cached) -> bool:
        return entry.created_at > time.time() - self.retention

    def _local(self, response_id: str) -> Cached | None:
        cached = self._cache.get(response_id)
        entry = cached[0] if cached is not None else self._unwritten_row(response_id)
        return entry if entry is not None and self._fresh(entry) else None

    async def _db(self, op: Awaitable[T], what: str = "stored responses cannot be read right now") -> T:
        return await self.wait.run(op, what)

    async def _waiting(self, read: Callable[[], Awaitable[T]],
                       what: str = "stored responses cannot be read right now", response_id: str = "") -> T:
        """Run `read()` until it finds something or its `poll_deadline` has passed (another node
        may still be writing the row). Counted from Postgres's first answer, not from the request:
        a read that waited out a short outage for a connection would otherwise find the poll over,
        while the writer holding the row was kept from Postgres just as long (and reconnects
        through its pool's backoff). Read once for an id minted for a response that is not stored."""
        deadline: float | None = None
        asked = time.monotonic()
        while True:
            found = await self._db(read(), what)
            if deadline is None:
                deadline = poll_deadline(asked, time.monotonic(), self.read_wait, never_stored(response_id))
            if found or time.monotonic() >= deadline:
                return found
            await asyncio.sleep(POLL)

    def _unwritten_row(self, response_id: str) -> Encoded | None:
        return self._writing.get(response_id) or next((r for r in self._pending if r.id == response_id), None)

    def _unwritten(self, response_id: str) -> StoredResponse | None:
        entry: Cached | None = self._unwritten_row(response_id)
        if entry is None and response_id in self._refused:
            entry = self._cache[response_id][0]
        if entry is None or not self._fresh(entry):
            return None
        return entry.decoded() if isinstance(entry, Encoded) else entry

    async def get(self, response_id: str, key_id: str) -> StoredResponse:
        """Reads Postgres (the truth: a delete on another node shows at once) unless the response
        is still waiting to be written by this node."""
        stored = self._unwritten(response_id)
        if stored is None:
            stored = await self._waiting(lambda: self.table.get(response_id, self.retention), response_id=response_id)
        if stored is None or stored.key_id != key_id:
            raise not_found(response_id)
        return stored

    async def history(self, response_id: str, key_id: str) -> History:
        """The conversation up to and including `response_id`, for a continuation: the chain of
        stored responses walked from it, from this node's memory and then Postgres. The walk stops
        at a response whose conversation is remembered while every response before it is still
        where the walk would find it (stored_histories.usable): only the turns after it are read."""
        chain: list[Cached] = []
        base: Known | None = None
        horizon = time.time() - self.retention
        next_id: str | None = response_id
        while next_id is not None:
            known = self._histories.get(key_id, next_id)
            if known is not None and usable(known, self._evicted, horizon):
                base, next_id = known, None
                break
            entry = self._local(next_id)
            if entry is None:
                break
            chain.append(entry)
            next_id = entry.previous_response_id
        deletes = self._deletes
        if next_id is not None:
            rest: list[StoredResponse] = await self._waiting(lambda: self.table.chain(next_id, self.retention),
                                                             response_id=next_id)
            if not rest:
                raise not_found(next_id if next_id == response_id else response_id)
            if rest[-1].previous_response_id is not None:
                raise not_found(rest[-1].previous_response_id)
            for s in rest:
                if deletes == self._deletes:  # (a delete meanwhile: the rows read may be gone, keep none)
                    self._remember(encode(s), s)
                chain.append(s)
        if any(entry.key_id != key_id for entry in chain):
            raise not_found(response_id)
        if base is not None and not chain:
            self.continued["remembered"] += 1
            return base.history
        self.continued["read" if base is None else "extended"] += 1
        history = History.of(conversation(chain)) if base is None else base.history.then(conversation(chain))
        if deletes == self._deletes:
            self._keep(response_id, key_id, base, chain, history)
        return history

    def _keep(self, response_id: str, key_id: str, base: Known | None, chain: list[Cached],
              history: History) -> None:
        """Remember `history`, the conversation of `response_id` (the responses of `chain`, newest
        first, after `base`'s), if every response of `chain` is in the memory cache now (one the
        walk found waiting to be written, or that a read from Postgres brought in too large for it,
        is not)."""
        first, weight, oldest = (self._sequence, 0, float("inf")) if base is None else \
            (base.first, base.weight, base.oldest)
        for entry in chain:
            cached = self._cache.get(entry.id)
            if cached is None:
                return
            weight += items_weight(cached[0], cached[1])
            first, oldest = min(first, cached[2]), min(oldest, entry.created_at)
        self._histories.put(key_id, Known(response_id, history, weight, first, oldest,
                                          None if base is None else base.response_id))

    async def _landed(self, response_id: str) -> None:
        """Until the writer's batch holding `response_id` is done (a stalled database may hold it)."""
        while response_id in self._writing:
            if self._written is None:
                self._written = asyncio.Event()
            await self._written.wait()

    def _unqueue(self, response_id: str) -> bool:
        """Take `response_id` out of the rows waiting to be written; False if it is not there."""
        for n, row in enumerate(self._pending):
            if row.id == response_id:
                del self._pending[n]
                self._pending_bytes -= row.size
                return True
        return False

    async def delete(self, response_id: str, key_id: str) -> None:
        local = self._local(response_id)
        if local is not None and local.key_id != key_id:
            raise not_found(response_id)
        self._deletes += 1
        self._forget(response_id)
        self._histories.forget(key_id)  # (a response only waiting to be written, too large to cache, too)
        while response_id in self._writing:  # being written right now: delete the row once it landed
            await self._db(self._landed(response_id), DELETE)
        # (no await from here to the table's delete: the row is written, or queued and never will be)
        if self._unqueue(response_id):  # never written: forgetting it is enough
            if response_id in self._unsure:  # unless a write that failed landed it all the same
                self._unsure.discard(response_id)
                await self._db(self._writes.settled(), DELETE)  # (a cancelled INSERT may still commit)
                await self._db(self.table.delete(response_id, key_id), DELETE)
            return
        if local is not None:
            await self._db(self.table.delete(response_id, key_id), DELETE)
            return
        if not await self._waiting(lambda: self.table.delete(response_id, key_id), DELETE, response_id):
            raise not_found(response_id)

    # --- background responses run by other nodes ----------------------------------------------

    async def run_state(self, response_id: str, key_id: str, after: int) -> RunState:
        """A background response's row with its events after index `after` and its node's
        liveness (polled for up to read_wait, as `get`: the node running it may not have written
        it yet)."""
        state = await self._waiting(lambda: self.table.run_state(response_id, after, self.retention,
                                                                 self.node_timeout), response_id=response_id)
        if state is None or state.key_id != key_id:
            raise not_found(response_id)
        return state

    async def ask_cancel(self, response_id: str, key_id: str) -> None:
        """Ask the node running it to cancel it (it reads the request within its TICK)."""
        if not await self._db(self.table.ask_cancel(response_id, key_id, self.retention),
                              "background responses cannot be cancelled right now"):
            raise not_found(response_id)
