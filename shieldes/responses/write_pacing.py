"""When the stored-response writer writes and how long a read waits for a row another node is
writing: the pure decisions of responses/service.py's store, with the figures they rest on."""

from __future__ import annotations

from shieldes.responses.store import Encoded

# A read whose first answer took this long waited for Postgres (an outage, or a pool reconnecting):
# the node holding the row was kept out just as long, and its pool's reconnection backs off (tries
# 1 and 2 s apart) before its writer's next try, so the poll for the row lasts this much longer.
WAITED_FOR_POSTGRES = 1.0
RECONNECT_SLACK = 3.0
# After the first response of a batch the writer waits this long for more: every write is a round
# trip that wakes Postgres, and psycopg's work per statement costs the node more CPU than the rows
# themselves, so under load many responses share one (25 ms rather than 5: 6% less node CPU per
# stored Responses stream at saturation; read-your-writes on another node polls for longer than this).
LINGER = 0.025
# The writer keeps its connection from one batch to the next (the pool's checkout and return cost the
# node a quarter of a one-row statement) while batches keep coming: given back after HOLD_IDLE without
# one (the pool's other users get it), and at least every HOLD_MOST (the pool then applies its max
# lifetime to it). Never kept from a pool of one: every other reader and writer of the node needs it.
HOLD_IDLE = 1.0
HOLD_MOST = 60.0
# A write's bound beyond db_request_timeout: a second per MB it carries (a backlog written after an
# outage, or a batch of screenshots, takes longer than a request's query without being stalled).
WRITE_RATE = 1_000_000
# What one write (one statement) takes at most: a backlog is written in pieces, each well within
# its bound, never as one statement that could not finish within any.
MAX_BATCH_ROWS = 1000
MAX_BATCH_BYTES = 8_000_000


def write_bound(seconds: float, size: int) -> float:
    """Seconds one write of `size` bytes of JSON may take before it counts as stalled."""
    return seconds + size / WRITE_RATE


def poll_deadline(asked: float, answered: float, read_wait: float, unstored: bool) -> float:
    """Until when a read for a row another node may still be writing polls, given when it asked and
    when Postgres first answered: read_wait from that answer, RECONNECT_SLACK more if that answer
    came only after waiting for Postgres; no poll for an id minted for a response never stored."""
    if unstored:
        return answered
    return answered + read_wait + (RECONNECT_SLACK if answered - asked >= WAITED_FOR_POSTGRES else 0.0)


def batch_length(pending: list[Encoded], at_most: int | None = None) -> int:
    """How many of the oldest pending responses the next write takes: at least one, then up to
    MAX_BATCH_ROWS and MAX_BATCH_BYTES. `at_most`: a bound on their bytes (the writer's count of
    what waits, the batch in flight included); within MAX_BATCH_BYTES, no row's size is read."""
    if at_most is not None and at_most <= MAX_BATCH_BYTES:
        return min(len(pending), MAX_BATCH_ROWS)
    total = 0
    for n, row in enumerate(pending[:MAX_BATCH_ROWS]):
        total += row.size
        if n and total > MAX_BATCH_BYTES:
            return n
    return min(len(pending), MAX_BATCH_ROWS)


def keeps_connection(pool_size: int, held_for: float | None) -> bool:
    """Whether the writer keeps the connection of the write it makes now for its next one, the
    connection it keeps having been kept `held_for` seconds (None: it keeps none now)."""
    return pool_size > 1 and (held_for is None or held_for < HOLD_MOST)
