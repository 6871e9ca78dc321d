"""All SQL on the `stored_responses` table: batched inserts into daily partitions (created on
demand), reads of one response or a whole previous_response_id chain, deletes, and the retention
purge by partition drop. Rows older than the retention are invisible even before their partition
is dropped."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from orjson import dumps
from psycopg_pool import AsyncConnectionPool

from shieldes.responses.objects import Body

PARTITION_LOCK = 0x5348_5250  # "SHRP": serialises partition creation and drops across nodes
PREFIX = "stored_responses_p"
MAX_CHAIN = 10_000


@dataclass(frozen=True, slots=True)
class StoredResponse:
    id: str
    created_at: float  # unix seconds
    key_id: str
    previous_response_id: str | None
    model: str
    input: list[Body]
    response: Body


def day_of(ts: float) -> dt.date:
    return dt.datetime.fromtimestamp(ts, dt.UTC).date()


def partition_name(day: dt.date) -> str:
    return f"{PREFIX}{day:%Y%m%d}"


def expired_partitions(names: Sequence[str], now: float, retention: float) -> list[str]:
    """Partitions whose whole day ended before `now - retention` (pure: tested directly)."""
    horizon = now - retention
    out = []
    for name in names:
        if not name.startswith(PREFIX):
            continue
        try:
            day = dt.datetime.strptime(name[len(PREFIX):], "%Y%m%d").replace(tzinfo=dt.UTC)
        except ValueError:
            continue
        if (day + dt.timedelta(days=1)).timestamp() <= horizon:
            out.append(name)
    return sorted(out)


def _row(r: Sequence[Any]) -> StoredResponse:
    created: dt.datetime = r[1]
    return StoredResponse(r[0], created.timestamp(), r[2], r[3], r[4], list(r[5]), dict(r[6]))


_COLUMNS = "id, created_at, key_id, previous_response_id, model, input, response"


class ResponseTable:
    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool
        self._days: set[dt.date] = set()  # partitions known to exist

    async def ensure_partitions(self, days: set[dt.date]) -> None:
        missing = days - self._days
        if not missing:
            return
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))
            for day in sorted(missing):
                start = dt.datetime.combine(day, dt.time(), dt.UTC)
                end = start + dt.timedelta(days=1)
                # DDL takes no bind parameters; the bounds are our own ISO timestamps
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF stored_responses "
                    f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
                )
        self._days |= missing

    async def insert(self, rows: Sequence[StoredResponse]) -> None:
        """One statement for the whole batch (its own transaction, one round trip): a response
        ends on the request path's heels, so the writer's per-batch cost is paid per response
        whenever batches are small. The arrays go in binary form: as text, every quote of the
        JSON would be escaped on the way out, one regex substitution each."""
        await self.ensure_partitions({day_of(r.created_at) for r in rows})
        async with self._pool.connection() as conn:
            await conn.execute(
                f"INSERT INTO stored_responses ({_COLUMNS}) "
                "SELECT id, to_timestamp(ts), key_id, prev, model, input::jsonb, response::jsonb "
                "FROM unnest(%b::text[], %b::float8[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[]) "
                "AS t(id, ts, key_id, prev, model, input, response) "
                "ON CONFLICT DO NOTHING",
                ([r.id for r in rows], [r.created_at for r in rows], [r.key_id for r in rows],
                 [r.previous_response_id for r in rows], [r.model for r in rows],
                 [dumps(r.input).decode() for r in rows], [dumps(r.response).decode() for r in rows]),
            )

    async def get(self, response_id: str, retention: float) -> StoredResponse | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM stored_responses WHERE id = %s "
                "AND created_at > now() - make_interval(secs => %s)",
                (response_id, retention),
            )
            row = await cur.fetchone()
        return _row(row) if row is not None else None

    async def chain(self, response_id: str, retention: float) -> list[StoredResponse]:
        """The response and its predecessors, newest first, in one round trip."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"""
                WITH RECURSIVE chain AS (
                    SELECT {_COLUMNS}, 1 AS depth FROM stored_responses
                    WHERE id = %(id)s AND created_at > now() - make_interval(secs => %(ret)s)
                  UNION ALL
                    SELECT r.id, r.created_at, r.key_id, r.previous_response_id, r.model, r.input,
                           r.response, c.depth + 1
                    FROM stored_responses r JOIN chain c ON r.id = c.previous_response_id
                    WHERE r.created_at > now() - make_interval(secs => %(ret)s) AND c.depth < %(max)s
                )
                SELECT {_COLUMNS} FROM chain ORDER BY depth
                """,
                {"id": response_id, "ret": retention, "max": MAX_CHAIN},
            )
            rows = await cur.fetchall()
        return [_row(r) for r in rows]

    async def delete(self, response_id: str, key_id: str) -> bool:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM stored_responses WHERE id = %s AND key_id = %s", (response_id, key_id)
            )
            return bool(cur.rowcount > 0)

    async def partitions(self) -> list[str]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'stored_responses'"
            )
            return sorted(r[0] for r in await cur.fetchall())

    async def purge(self, now: float, retention: float) -> list[str]:
        """Drop every partition older than the retention; returns the dropped names."""
        dropped = expired_partitions(await self.partitions(), now, retention)
        if dropped:
            async with self._pool.connection() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))
                for name in dropped:
                    await conn.execute(f"DROP TABLE IF EXISTS {name}")
            self._days.clear()  # a dropped day written again must be recreated
        return dropped

