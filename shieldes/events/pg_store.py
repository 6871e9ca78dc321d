"""The Postgres event store: all of the log's SQL lives here.

Appends take a transaction-scoped advisory lock, so positions are assigned and committed one
transaction at a time: commit order == position order, and a reader tailing `position > cursor`
can never skip a row that commits later. Config events extend a hash chain and NOTIFY in the
same transaction; usage events do not notify (they are many; gossip carries the head instead).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from shieldes.errors import AppendTimeout, ConcurrentChange, DatabaseError, DatabaseUnavailable, EventNotReadable
from shieldes.events.catalog import CONFIG_STREAM
from shieldes.events.codec import chain_hash
from shieldes.events.compat import unreadable_by
from shieldes.events.connections import Connections, prefer_lz4, use_orjson
from shieldes.events.partitions import cover
from shieldes.events.scope import Scope
from shieldes.events.scope_sql import COLUMNS as _COLUMNS
from shieldes.events.scope_sql import EVENTS_SQL, POSITIONS_SQL, scope_events, scope_params, scope_positions
from shieldes.events.store import (
    AppendOptions,
    AppendResult,
    Decide,
    Fingerprint,
    FoldedLog,
    LogPage,
    NewEvent,
    RecordedEvent,
)

if TYPE_CHECKING:  # a node's pool; a CLI command's store has one connection (events/connections.py)
    from psycopg_pool import AsyncConnectionPool

APPEND_LOCK = 0x5348_4C44  # "SHLD": the one advisory lock that serialises appends
NOTIFY_CHANNEL = "shieldes_events"


async def configure_connection(conn: psycopg.AsyncConnection[Any]) -> None:
    """A pool's hook for each new connection: JSON through orjson; lz4 for large values where the
    server has it (a node's pool writes stored responses and snapshots)."""
    use_orjson(conn)
    await prefer_lz4(conn)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@asynccontextmanager
async def translated(what: str) -> AsyncIterator[None]:
    """psycopg's errors become the error tree's (shieldes/errors.py) at this boundary: callers of
    the store see one family whatever the driver, with a message saying what to do."""
    try:
        yield
    except psycopg.errors.QueryCanceled:
        raise DatabaseUnavailable(f"cannot {what}: a statement took too long and was cancelled; retry, and "
                                  "check the database's load") from None
    except psycopg.OperationalError as exc:  # the connection (or the pool's wait for one) failed
        raise DatabaseUnavailable(f"cannot {what}: {_first_line(exc)}; check that Postgres is reachable and "
                                  "retry") from exc
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
        raise DatabaseError(f"cannot {what}: {_first_line(exc)}; the database schema is not the one this "
                            "shieldes needs: run `shieldes db upgrade`") from exc
    except psycopg.Error as exc:
        raise DatabaseError(f"cannot {what}: the database refused it: {_first_line(exc)}") from exc


def row_to_event(row: Sequence[Any]) -> RecordedEvent:
    return RecordedEvent(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8])


class PostgresEventStore:
    """`lock_timeout`: how long an append waits for the append lock (a stuck writer or a
    maintenance job must not hang every writer); `statement_timeout` bounds each statement of it."""

    def __init__(self, connections: Connections, *, lock_timeout: float = 5.0,
                 statement_timeout: float = 15.0, node_timeout: float = 5.0) -> None:
        self._connections = connections
        self._node_timeout = node_timeout
        self._timeouts = (f"{int(lock_timeout * 1000)}ms", f"{int(statement_timeout * 1000)}ms")
        self._lock_timeout = lock_timeout

    @property
    def connections(self) -> Connections:
        """Where the store's connections come from (for readers of the tables next to the log: snapshots)."""
        return self._connections

    async def append(self, stream: str, events: Sequence[NewEvent], options: AppendOptions) -> AppendResult:
        if not events:
            raise ValueError("append needs at least one event")
        return (await self._append(stream, events, options))[1]

    async def append_scoped(
        self, scope: Scope, decide: Decide, options: AppendOptions
    ) -> tuple[list[RecordedEvent], AppendResult]:
        """One transaction of three round trips: the positions of the scope's events are found,
        then the events are read before the append lock is taken (so the lock is never held while
        they are planned and fetched), and the head the lock then reveals must be the config
        position they reach."""
        return await self._append(CONFIG_STREAM, decide, options, scope)

    async def _append(
        self, stream: str, events: Sequence[NewEvent] | Decide, options: AppendOptions, scope: Scope | None = None
    ) -> tuple[list[RecordedEvent], AppendResult]:
        try:
            async with self._connections.connection() as conn:
                try:
                    return await self._append_in(conn, stream, events, options, scope)
                except BaseException:
                    if conn.pgconn.transaction_status != TransactionStatus.IDLE:
                        await conn.rollback()
                    raise
        except psycopg.errors.LockNotAvailable:
            raise AppendTimeout(
                f"the event log's append lock was held for more than {self._lock_timeout:g} s by another "
                "writer; retry, and if it persists look for a stuck session in pg_stat_activity"
            ) from None
        except psycopg.errors.QueryCanceled:
            raise AppendTimeout("an append to the event log took too long and was cancelled; retry, and check "
                                "the database's load") from None
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(f"cannot append to the event log: {_first_line(exc)}; check that Postgres "
                                      "is reachable and retry") from exc
        except psycopg.Error as exc:
            raise DatabaseError(f"cannot append to the event log: the database refused it: {_first_line(exc)}") \
                from exc

    async def _append_in(
        self, conn: AsyncConnection[Any], stream: str, events: Sequence[NewEvent] | Decide,
        options: AppendOptions, scope: Scope | None,
    ) -> tuple[list[RecordedEvent], AppendResult]:
        """One transaction, pipelined: what comes before the hash chain is one round trip (BEGIN,
        timeouts, lock, head, the live nodes' readers; a scoped write first finds the positions of
        its scope's events, a round trip of its own, and reads them here), the rows, the head's
        update, the NOTIFY and the COMMIT a second one (each round trip waits on a busy server).
        BEGIN and COMMIT are statements here: psycopg's transaction block would add a round trip
        for each. `events` may be a decision on the scope's events, made once they are read and the
        head is known to be theirs."""
        is_config = stream == CONFIG_STREAM
        async with conn.pipeline() as pipeline:
            await conn.execute("BEGIN")
            # the timeouts are local to this transaction and set before the lock is waited for
            timeouts = "SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true)"
            scoped = None
            expected = options.expected_config_position
            if scope is None:
                await conn.execute(timeouts + ", pg_advisory_xact_lock(%s)", (*self._timeouts, APPEND_LOCK))
            else:
                # a point read: no parallel workers (processes) for it, whatever the planner estimates
                await conn.execute(timeouts + ", set_config('max_parallel_workers_per_gather', '0', true)",
                                   self._timeouts)
                found = await conn.execute(POSITIONS_SQL, scope_params(scope))
                await pipeline.sync()
                positions, expected = scope_positions(await found.fetchone())
                scoped = await conn.execute(EVENTS_SQL, (positions,))
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK,))
            duplicate = None
            if options.idempotency_seq is not None:
                duplicate = await conn.execute(
                    "SELECT position FROM events WHERE stream = %s AND seq = %s",
                    (stream, options.idempotency_seq),
                )
            cur = await conn.execute(
                "SELECT position, config_position, config_hash, now(), partitions_end, partition_size "
                "FROM log_head WHERE id = 1"
            )
            readers = await self._readers(conn) if is_config else None
            # a sync, not just a flush: the connection then knows it is in a transaction, so the
            # savepoint `cover` may open is one inside this transaction, not a new one
            await pipeline.sync()
            existing = await duplicate.fetchone() if duplicate is not None else None
            if existing is not None:
                await conn.execute("COMMIT")
                return [], AppendResult(existing[0], existing[0], duplicate=True)
            read = scope_events(await scoped.fetchall()) if scoped is not None else []
            head = await cur.fetchone()
            assert head is not None, "log_head row missing: run `shieldes db upgrade`"
            position, config_position, config_hash, now, partitions_end, partition_size = head
            if expected is not None and expected != config_position:
                raise ConcurrentChange(
                    f"the config changed (position {config_position}) after it was read "
                    f"(position {expected}); retry the command"
                )
            if callable(events):
                events = events(read)
                if not events:
                    raise ValueError("append needs at least one event")
            if readers is not None:
                await self._refuse_unreadable(readers, events)
            first = position + 1
            written = []
            prev = config_hash
            for i, event in enumerate(events):
                pos = first + i
                prev_hash = event_hash = None
                if is_config:
                    prev_hash = prev
                    event_hash = chain_hash(
                        prev,
                        position=pos,
                        stream=stream,
                        type_=event.type,
                        version=event.version,
                        data=event.data,
                        metadata=options.metadata,
                        recorded_at=now,
                    )
                    prev = event_hash
                written.append(RecordedEvent(pos, stream, event.type, event.version, event.data, options.metadata,
                                             now, prev_hash, event_hash))
            last = first + len(events) - 1
            await cover(conn, last, int(partitions_end), int(partition_size))
            async with conn.cursor() as c:
                await c.executemany(
                    "INSERT INTO events (position, stream, type, version, data, metadata, recorded_at, seq,"
                    " prev_hash, hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [(e.position, stream, e.type, e.version, Jsonb(e.data), Jsonb(e.metadata), now,
                      options.idempotency_seq if i == 0 else None, e.prev_hash, e.hash)
                     for i, e in enumerate(written)],
                )
            if is_config:
                await conn.execute(
                    "UPDATE log_head SET position = %s, config_position = %s, config_hash = %s WHERE id = 1",
                    (last, last, prev),
                )
                await conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, str(last)))
            else:
                await conn.execute("UPDATE log_head SET position = %s WHERE id = 1", (last,))
            await conn.execute("COMMIT")
        return read, AppendResult(first, last, events=tuple(written))

    async def _readers(self, conn: AsyncConnection[Any]) -> psycopg.AsyncCursor[Any]:
        """The live nodes' readable event versions (fetched with the head, in the same round trip)."""
        return await conn.execute(
            "SELECT node_id, info->'reads' FROM cluster_nodes"
            " WHERE heartbeat_at > now() - make_interval(secs => %s)",
            (self._node_timeout,),
        )

    async def _refuse_unreadable(self, readers: psycopg.AsyncCursor[Any], events: Sequence[NewEvent]) -> None:
        """Rolling upgrades: a config event some live node cannot apply is not appended."""
        nodes = {str(r[0]): r[1] if isinstance(r[1], dict) else None for r in await readers.fetchall()}
        problems = unreadable_by(((e.type, e.version) for e in events), nodes)
        if problems:
            raise EventNotReadable(problems[0].message())

    async def read(self, after: int, limit: int = 1000, *, stream: str | None = None) -> list[RecordedEvent]:
        async with translated("read the event log"), self._connections.connection() as conn, \
                conn.cursor(row_factory=tuple_row) as cur:
            if stream is None:
                await cur.execute(
                    f"SELECT {_COLUMNS} FROM events WHERE position > %s ORDER BY position LIMIT %s",
                    (after, limit),
                )
            else:
                await cur.execute(
                    f"SELECT {_COLUMNS} FROM events WHERE stream = %s AND position > %s "
                    "ORDER BY position LIMIT %s",
                    (stream, after, limit),
                )
            return [row_to_event(r) for r in await cur.fetchall()]

    async def read_page(self, after: int, limit: int = 1000) -> LogPage:
        # one statement, one snapshot: the horizon, the head and the event at the cursor are the ones
        # in force when these events were read (a tailing node's catch-up is this one round trip)
        async with translated("read the event log"), self._connections.connection() as conn, \
                conn.cursor(row_factory=tuple_row) as cur:
            await cur.execute(
                "SELECT h.horizon, h.position, c.stream, c.type, c.recorded_at, e.* FROM log_head h "
                "LEFT JOIN LATERAL (SELECT stream, type, recorded_at FROM events WHERE position = %s) c ON true "
                f"LEFT JOIN LATERAL (SELECT {_COLUMNS} FROM events WHERE position > %s ORDER BY position LIMIT %s) e "
                "ON true WHERE h.id = 1 ORDER BY e.position",
                (after, after, limit),
            )
            rows = await cur.fetchall()
        if not rows:
            return LogPage([], 0, 0, None)
        first = rows[0]
        at_cursor = Fingerprint(first[2], first[3], first[4]) if first[2] is not None else None
        return LogPage([row_to_event(r[5:]) for r in rows if r[5] is not None], int(first[0]), int(first[1]), at_cursor)

    async def read_folded(self, after: int) -> FoldedLog:
        """The log after `after` with its usage folded by the database (a replay from 0)."""
        from shieldes.events.folded_read import read_folded  # a node's start, not a CLI write

        async with translated("read the event log"), self._connections.connection() as conn:
            return await read_folded(conn, after)

    async def head(self) -> int:
        async with translated("read the event log's head"), self._connections.connection() as conn:
            cur = await conn.execute("SELECT position FROM log_head WHERE id = 1")
            row = await cur.fetchone()
            return int(row[0]) if row else 0

    async def fingerprint(self, position: int) -> Fingerprint | None:
        async with translated("read the event log"), self._connections.connection() as conn:
            cur = await conn.execute("SELECT stream, type, recorded_at FROM events WHERE position = %s", (position,))
            row = await cur.fetchone()
        return Fingerprint(row[0], row[1], row[2]) if row else None

    async def config_head(self) -> int:
        async with translated("read the event log's head"), self._connections.connection() as conn:
            cur = await conn.execute("SELECT config_position FROM log_head WHERE id = 1")
            row = await cur.fetchone()
            return int(row[0]) if row else 0

    async def config_position_at(self, position: int) -> int:
        # config_index holds every config event's position (its primary key): no plan over the
        # partitions of `events`
        async with translated("read the event log"), self._connections.connection() as conn:
            cur = await conn.execute("SELECT max(position) FROM config_index WHERE position <= %s", (position,))
            row = await cur.fetchone()
            return int(row[0]) if row and row[0] is not None else 0

    async def first_config_after(self, time: datetime) -> int | None:
        async with translated("read the event log"), self._connections.connection() as conn:
            cur = await conn.execute(
                "SELECT position FROM events WHERE stream = 'config' AND recorded_at > %s ORDER BY position LIMIT 1",
                (time,))
            row = await cur.fetchone()
            return int(row[0]) if row else None

    async def keys_naming_teams(self, teams: Sequence[str]) -> set[str]:
        # config_index.team_id is set for the creations and updates of keys (migration 0010)
        async with translated("read the event log"), self._connections.connection() as conn:
            cur = await conn.execute(
                "SELECT DISTINCT subject FROM config_index WHERE team_id = ANY(%s)"
                " AND type IN ('virtual_key.created', 'virtual_key.updated')", ([t for t in teams if "\x00" not in t],))
            return {str(r[0]) for r in await cur.fetchall()}

    async def find_config(self, metadata_field: str, value: str) -> list[RecordedEvent]:
        async with translated("read the event log"), self._connections.connection() as conn, \
                conn.cursor(row_factory=tuple_row) as cur:
            if metadata_field == "idempotency_key":  # in config_index (migration 0011): no scan of the log
                await cur.execute("SELECT position FROM config_index WHERE idempotency_key = %s", (value,))
                positions = [r[0] for r in await cur.fetchall()]
                if not positions:
                    return []
                await cur.execute(EVENTS_SQL, (positions,))
                return scope_events(await cur.fetchall())
            await cur.execute(
                f"SELECT {_COLUMNS} FROM events WHERE stream = %s AND metadata->>%s = %s ORDER BY position",
                (CONFIG_STREAM, metadata_field, value),
            )
            return [row_to_event(r) for r in await cur.fetchall()]

    async def read_scope(self, scope: Scope) -> tuple[list[RecordedEvent], int]:
        # the positions and the config position in one statement (one snapshot), then the events
        async with translated("read the event log"), self._connections.connection() as conn:
            cur = await conn.execute(POSITIONS_SQL, scope_params(scope))
            positions, config_position = scope_positions(await cur.fetchone())
            cur = await conn.execute(EVENTS_SQL, (positions,))
            return scope_events(await cur.fetchall()), config_position


def open_pool(url: str, *, size: int = 4, name: str = "shieldes") -> AsyncConnectionPool[Any]:
    """A pool that is opened by the caller (`await pool.open()`); connections speak JSON via orjson.
    Its idle connections are all checked once one is returned broken (events/pool.py)."""
    from shieldes.events.pool import CheckedPool

    return CheckedPool(
        url,
        min_size=1,
        max_size=size,
        open=False,
        name=name,
        configure=configure_connection,
        kwargs={"autocommit": True},
        reconnect_timeout=5.0,
    )


async def config_tip_mismatch(conn: AsyncConnection[Any], tip: tuple[int, str], up_to: int) -> str | None:
    """Why the log's config chain does not end at `tip` as of position `up_to` (None: it does).
    A snapshot whose recorded tip fails this holds config the log does not (a stale state re-sealed
    under a newer position, or a forgery), so its config must not be trusted."""
    tip_position, tip_hash = tip
    cur = await conn.execute(
        "SELECT max(position) FROM events WHERE stream = 'config' AND position <= %s", (up_to,)
    )
    row = await cur.fetchone()
    last = int(row[0]) if row and row[0] is not None else 0
    if last != tip_position:
        return (f"its config ends at position {tip_position} but the log's config chain reaches "
                f"position {last} by position {up_to}")
    if tip_position == 0:
        return None
    cur = await conn.execute("SELECT hash FROM events WHERE position = %s", (tip_position,))
    row = await cur.fetchone()
    if row is None or row[0] != tip_hash:
        return f"its config chain tip hash does not match the log's event at position {tip_position}"
    return None


async def raise_horizon(conn: AsyncConnection[Any], position: int) -> None:
    """Compaction is about to fold raw usage up to `position`: readers below it must reload (see
    LogPage). Never lowers it. Runs in the transaction that fixes the cutoff, before any fold."""
    await conn.execute("UPDATE log_head SET horizon = greatest(horizon, %s) WHERE id = 1", (position,))


async def horizon(conn: AsyncConnection[Any]) -> int:
    cur = await conn.execute("SELECT horizon FROM log_head WHERE id = 1")
    row = await cur.fetchone()
    return int(row[0]) if row else 0
