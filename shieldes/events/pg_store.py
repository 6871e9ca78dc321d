"""The Postgres event store: all of the log's SQL lives here.

Appends take a transaction-scoped advisory lock, so positions are assigned and committed one
transaction at a time: commit order == position order, and a reader tailing `position > cursor`
can never skip a row that commits later. Config events extend a hash chain and NOTIFY in the
same transaction; usage events do not notify (they are many; gossip carries the head instead).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import orjson
import psycopg
from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb, set_json_dumps, set_json_loads
from psycopg_pool import AsyncConnectionPool

from shieldes.errors import AppendTimeout, ConcurrentChange, DatabaseError, DatabaseUnavailable, EventNotReadable
from shieldes.events.catalog import CONFIG_STREAM
from shieldes.events.codec import chain_hash
from shieldes.events.compat import unreadable_by
from shieldes.events.folded_read import read_folded
from shieldes.events.partitions import cover
from shieldes.events.scope import Scope, teams_of
from shieldes.events.store import (
    AppendOptions,
    AppendResult,
    Fingerprint,
    FoldedLog,
    LogPage,
    NewEvent,
    RecordedEvent,
)

APPEND_LOCK = 0x5348_4C44  # "SHLD": the one advisory lock that serialises appends
NOTIFY_CHANNEL = "shieldes_events"
_COLUMNS = "position, stream, type, version, data, metadata, recorded_at, prev_hash, hash"


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


async def configure_connection(conn: psycopg.AsyncConnection[Any]) -> None:
    """JSON through orjson, per connection (no global adapter state)."""
    set_json_dumps(_dumps, conn)
    set_json_loads(orjson.loads, conn)


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

    def __init__(self, pool: AsyncConnectionPool[Any], *, lock_timeout: float = 5.0,
                 statement_timeout: float = 15.0, node_timeout: float = 5.0) -> None:
        self._pool = pool
        self._node_timeout = node_timeout
        self._timeouts = (f"{int(lock_timeout * 1000)}ms", f"{int(statement_timeout * 1000)}ms")
        self._lock_timeout = lock_timeout

    @property
    def pool(self) -> AsyncConnectionPool[Any]:
        """The connection pool (for readers of the other tables next to the log: snapshots)."""
        return self._pool

    async def append(self, stream: str, events: Sequence[NewEvent], options: AppendOptions) -> AppendResult:
        if not events:
            raise ValueError("append needs at least one event")
        try:
            return await self._append(stream, events, options)
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

    async def _append(self, stream: str, events: Sequence[NewEvent], options: AppendOptions) -> AppendResult:
        async with self._pool.connection() as conn:
            try:
                return await self._append_in(conn, stream, events, options)
            except BaseException:
                if conn.pgconn.transaction_status != TransactionStatus.IDLE:
                    await conn.rollback()
                raise

    async def _append_in(self, conn: AsyncConnection[Any], stream: str, events: Sequence[NewEvent],
                         options: AppendOptions) -> AppendResult:
        """One transaction, pipelined: what comes before the hash chain is one round trip (BEGIN,
        timeouts, lock, head, the live nodes' readers), the rows, the head's update, the NOTIFY and
        the COMMIT a second one (each round trip waits on a busy server). BEGIN and COMMIT are
        statements here: psycopg's transaction block would add a round trip for each."""
        is_config = stream == CONFIG_STREAM
        async with conn.pipeline() as pipeline:
            await conn.execute("BEGIN")
            # the timeouts are local to this transaction and set before the lock is waited for
            await conn.execute(
                "SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true), "
                "pg_advisory_xact_lock(%s)",
                (*self._timeouts, APPEND_LOCK),
            )
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
                return AppendResult(existing[0], existing[0], duplicate=True)
            head = await cur.fetchone()
            assert head is not None, "log_head row missing: run `shieldes db upgrade`"
            position, config_position, config_hash, now, partitions_end, partition_size = head
            if (
                options.expected_config_position is not None
                and options.expected_config_position != config_position
            ):
                raise ConcurrentChange(
                    f"the config changed (position {config_position}) after it was read "
                    f"(position {options.expected_config_position}); retry the command"
                )
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
        return AppendResult(first, last, events=tuple(written))

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
        async with translated("read the event log"), self._pool.connection() as conn, \
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
        async with translated("read the event log"), self._pool.connection() as conn, \
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
        async with translated("read the event log"), self._pool.connection() as conn:
            return await read_folded(conn, after)

    async def head(self) -> int:
        async with translated("read the event log's head"), self._pool.connection() as conn:
            cur = await conn.execute("SELECT position FROM log_head WHERE id = 1")
            row = await cur.fetchone()
            return int(row[0]) if row else 0

    async def fingerprint(self, position: int) -> Fingerprint | None:
        async with translated("read the event log"), self._pool.connection() as conn:
            cur = await conn.execute("SELECT stream, type, recorded_at FROM events WHERE position = %s", (position,))
            row = await cur.fetchone()
        return Fingerprint(row[0], row[1], row[2]) if row else None

    async def config_head(self) -> int:
        async with translated("read the event log's head"), self._pool.connection() as conn:
            cur = await conn.execute("SELECT config_position FROM log_head WHERE id = 1")
            row = await cur.fetchone()
            return int(row[0]) if row else 0

    async def find_config(self, metadata_field: str, value: str) -> list[RecordedEvent]:
        async with translated("read the event log"), self._pool.connection() as conn, \
                conn.cursor(row_factory=tuple_row) as cur:
            await cur.execute(
                f"SELECT {_COLUMNS} FROM events WHERE stream = %s AND metadata->>%s = %s ORDER BY position",
                (CONFIG_STREAM, metadata_field, value),
            )
            return [row_to_event(r) for r in await cur.fetchall()]

    async def read_scope(self, scope: Scope) -> tuple[list[RecordedEvent], int]:
        # one snapshot of the log: the head matches the events (REPEATABLE READ)
        async with translated("read the event log"), self._pool.connection() as conn, conn.transaction(), \
                conn.cursor(row_factory=tuple_row) as cur:
            # A point read: the planner, misjudging the shared config's rows, would otherwise start
            # parallel workers (processes) for it, which took longer than the read (20-40 ms at 1M keys).
            await cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;"
                              " SET LOCAL max_parallel_workers_per_gather = 0")
            await cur.execute("SELECT config_position FROM log_head WHERE id = 1")
            head = await cur.fetchone()
            # a value with a NUL byte names nothing in the log (Postgres text cannot hold one): the
            # decision, not the database, says what is wrong with it
            def held(values: tuple[str, ...]) -> list[str]:
                return [v for v in values if "\x00" not in v]

            await cur.execute(SCOPE_IDS_SQL, {"keys": held(scope.keys), "hashes": held(scope.hashes),
                                              "teams": held(scope.teams)})
            ids = {r[0] for r in await cur.fetchall()}
            await cur.execute(SCOPE_EVENTS_SQL, {"ids": list(ids)})
            events = [row_to_event(r) for r in await cur.fetchall()]
            extra = teams_of((e.type, e.data) for e in events) - ids
            if extra:
                await cur.execute(SCOPE_SUBJECTS_SQL, {"ids": list(extra)})
                events = sorted(events + [row_to_event(r) for r in await cur.fetchall()], key=lambda e: e.position)
            return events, int(head[0]) if head else 0


# events/scope.py in SQL. The literals match the partial indexes of migration 0009 (the planner
# uses a partial index only for a clause it can prove implies the index's predicate).
SCOPE_IDS_SQL = (
    "SELECT data->>'id' FROM events WHERE stream = 'config' AND type = 'virtual_key.created'"
    " AND coalesce(data->>'id', data->>'key_id', data->>'subject_id') = ANY(%(keys)s)"
    " UNION SELECT data->>'id' FROM events WHERE stream = 'config' AND type = 'virtual_key.created'"
    " AND data->>'name' = ANY(%(keys)s)"
    " UNION SELECT data->>'id' FROM events WHERE stream = 'config'"
    " AND type IN ('virtual_key.created', 'virtual_key.rotated') AND data->>'key_hash' = ANY(%(hashes)s)"
    " UNION SELECT data->>'id' FROM events WHERE stream = 'config' AND type = 'team.created'"
    " AND coalesce(data->>'id', data->>'key_id', data->>'subject_id') = ANY(%(teams)s)"
    " UNION SELECT data->>'id' FROM events WHERE stream = 'config' AND type = 'team.created'"
    " AND data->>'name' = ANY(%(teams)s)"
)
SCOPE_SUBJECTS_SQL = (
    f"SELECT {_COLUMNS} FROM events"
    " WHERE stream = 'config' AND type IN ('virtual_key.created', 'virtual_key.updated', 'virtual_key.revoked',"
    " 'virtual_key.rotated', 'rate_limit.set', 'budget.set', 'budget.removed', 'team.created')"
    " AND coalesce(data->>'id', data->>'key_id', data->>'subject_id') = ANY(%(ids)s)"
)
SCOPE_EVENTS_SQL = (
    f"SELECT {_COLUMNS} FROM events"
    " WHERE stream = 'config' AND type NOT IN ('virtual_key.created', 'virtual_key.updated', 'virtual_key.revoked',"
    " 'virtual_key.rotated', 'rate_limit.set', 'budget.set', 'budget.removed', 'team.created')"
    " UNION ALL " + SCOPE_SUBJECTS_SQL + " ORDER BY position"
)


def open_pool(url: str, *, size: int = 4, name: str = "shieldes") -> AsyncConnectionPool[Any]:
    """A pool that is opened by the caller (`await pool.open()`); connections speak JSON via orjson."""
    return AsyncConnectionPool(
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
