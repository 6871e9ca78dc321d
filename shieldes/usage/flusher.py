"""The flusher: one batched `usage.recorded` append per node per interval.

Each batch carries (node_id, boot epoch, seq); the append uses `boot_epoch * SEQ_SPAN + seq` as the store's
idempotency sequence on stream `usage:<node_id>`, so a retry after an ambiguous failure (the commit
happened, the reply was lost) is a no-op. While Postgres is unreachable the unsent batch is retried
every interval with the same content; new usage keeps aggregating in the meter's accumulator (one
delta per key, deployment, model and hour), and when the meter holds `usage_buffer_max` unflushed
deltas the node refuses new requests with 503 instead of dropping usage.

The same key lets the leader append a dead boot's gossiped flushes on its behalf (`append_flush`,
cluster/runtime.py). A boot that was only paused finds such a seq taken when it flushes it: the log
holds what it had gossiped, a part of its batch, and the rest goes out under its next seq.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from shieldes.events.catalog import UsageDelta, UsageRecorded, usage_stream
from shieldes.events.codec import Codec
from shieldes.events.store import AppendOptions, AppendResult, EventStore, NewEvent
from shieldes.tasks import Wake, stop_task
from shieldes.usage.meter import Meter

SEQ_SPAN = 1_000_000_000  # seqs per boot in the idempotency key (the boot epoch is unix seconds)
APPEND_TIMEOUT = 10.0
log = logging.getLogger(__name__)


async def append_flush(store: EventStore, event: UsageRecorded, codec: Codec, *,
                       appended_by: str | None = None) -> AppendResult:
    """Append one flush of a node's boot, keyed by (node, boot epoch, flush seq): the node's own
    append, its retry after an ambiguous failure, and the leader's append on behalf of a dead boot
    (`appended_by`) are one and the same row, whichever comes first."""
    metadata: dict[str, str] = {"node_id": event.node_id}
    if appended_by is not None:
        metadata |= {"appended_by": appended_by, "actor": "takeover"}
    options = AppendOptions(metadata=metadata, idempotency_seq=event.epoch * SEQ_SPAN + event.seq)
    return await store.append(usage_stream(event.node_id), [NewEvent.of(event, codec)], options)


class Flusher:
    def __init__(self, store: EventStore, meter: Meter, interval: float, *,
                 on_flushed: Callable[[], None] | None = None, codec: Codec | None = None) -> None:
        self.store = store
        self.meter = meter
        self.interval = interval
        self.on_flushed = on_flushed
        self.codec = codec or Codec()
        self.healthy = True
        self.ok_at = 0.0  # monotonic time of the last successful append
        self.appends = 0
        self._task: asyncio.Task[None] | None = None
        self._wake = Wake()
        self._stopping = False
        self._last_error_log = 0.0
        self.waits = 0  # times the loop went to sleep (idle: once, not once per interval)
        meter.on_usage = self._usage_arrived

    async def flush_once(self) -> bool:
        """Append the next batch if there is one; False if the append failed (kept for a retry)."""
        batch = self.meter.cut_batch()
        if batch is None:
            return True
        event = UsageRecorded(self.meter.node_id, self.meter.boot_epoch, batch.seq, batch.deltas)
        try:
            result = await asyncio.wait_for(append_flush(self.store, event, self.codec), APPEND_TIMEOUT)
            if result.duplicate and self.meter.batch_taken_over(batch, await self._stored(result.first_position)):
                self._wake.set()  # the rest of the batch goes out under the next seq, now
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any store failure: keep the batch, retry next interval
            self.healthy = False
            now = time.monotonic()
            if now - self._last_error_log > 10:
                self._last_error_log = now
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                log.warning("usage flush failed (%d deltas kept, will retry): %s",
                            self.meter.buffered(), reason)
            return False
        self.healthy = True
        self.ok_at = time.monotonic()
        self.appends += 1
        self.meter.batch_appended(batch)
        if self.on_flushed is not None:
            self.on_flushed()
        return True

    async def _stored(self, position: int) -> tuple[UsageDelta, ...] | None:
        """The deltas of the flush already at `position` (None: not readable, assume it is ours)."""
        found = await self.store.read(position - 1, 1, stream=usage_stream(self.meter.node_id))
        if not found or found[0].position != position:
            return None
        event = self.codec.decode(found[0].type, found[0].version, found[0].data)
        return event.deltas if isinstance(event, UsageRecorded) else None

    async def flush_all(self, timeout: float) -> bool:
        """Append until nothing is left (shutdown); True if everything reached the log in time."""
        deadline = time.monotonic() + timeout
        while not self.meter.idle():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:  # each attempt within the deadline too: a dead database must not hold shutdown
                flushed = await asyncio.wait_for(self.flush_once(), left)
            except TimeoutError:
                return False
            if flushed:
                continue
            if time.monotonic() + self.interval > deadline:
                return False
            await asyncio.sleep(min(self.interval, 0.5))
        return True

    def wake(self) -> None:
        """Flush now."""
        self._wake.set()

    def _usage_arrived(self) -> None:
        """Usage after none was left to append: the loop, asleep with no timer, appends it an
        interval from now (what follows meanwhile goes in the same batch)."""
        self._wake.within(self.interval)

    async def _run(self) -> None:
        while not self._stopping:
            # nothing to append (no usage, no batch to retry): no timer, the first usage sets one
            self.waits += 1
            await self._wake.wait(None if self.meter.idle() else self.interval)
            self._wake.clear()
            if not self._stopping:
                await self.flush_once()

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="usage-flusher")

    async def stop(self, timeout: float = 30.0) -> bool:
        """Stop the loop, then the final flush, all within `timeout`: an append the loop has under
        way is the final flush's first attempt, not a wait before it (a database that does not
        answer would otherwise add its APPEND_TIMEOUT to the stop). False (and a log line) if
        some usage could not be written."""
        deadline = time.monotonic() + timeout
        if self._task is not None:
            # an append under way may finish within the stop's time; cancelled past it, its batch stays cut
            # under its seq, so the final flush's retry is the same row
            await stop_task(self._task, self, patience=min(APPEND_TIMEOUT + 1, timeout))
            self._task = None
        ok = await self.flush_all(deadline - time.monotonic())
        if not ok:
            log.error("shutdown: %d usage deltas could not be written to Postgres", self.meter.buffered())
        return ok
