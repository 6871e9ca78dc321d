"""All SQL of the request log: COPY of batches, partition upkeep and retention (DROP, never
DELETE), and the one query function with filters and keyset pagination that the CLI (and any
other reader) uses. Not the event log: these tables are plain rows, not events."""

from __future__ import annotations

import asyncio
import re
import struct
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import psycopg
from psycopg import postgres, sql
from psycopg.abc import AdaptContext, Buffer
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg.rows import dict_row

from shieldes.db import missing_tables
from shieldes.errors import InvalidRequest
from shieldes.requestlog.filters import GATEWAY, LogFilter, parse_status
from shieldes.requestlog.partitions import TABLES, parse_partition, partition_name
from shieldes.requestlog.record import COLUMNS

BODY_COLUMNS = ("request_id", "started_at", "node_id", "request_body", "response_body", "truncated")
# Binary COPY with the column types given: about 3x less client CPU per row than text COPY. Its
# dumpers truncate out-of-range integers silently, so counts are int8 and clamped in record.py.
ROW_TYPES = ("text", "timestamptz", "timestamptz", "text", "text", "text", "text", "int2", "text", "text", "text",
             "text", "text", "text", "text", "int2", "text[]", "bool", "float8", "float8", "float8", "int8", "int8",
             "int8", "int8", "int8", "text", "text", "text", "text", "int8", "int8", "int8", "int8", "text",
             "int8", "int8", "int8", "text", "text[]", "text")
BODY_TYPES = ("text", "timestamptz", "text", "text", "text", "bool")
# Rows formatted for COPY between two turns of the event loop: psycopg formats (and hands libpq)
# a COPY's rows without yielding while the socket takes them, so a batch at once would hold every
# request on the node for its whole formatting (~1-2 us a row); 256 rows is well under a ms
ROWS_PER_TURN = 256
PARTITION_LOCK = 0x5EED_0014  # serializes partition DDL across nodes
# The columns of the request_log view, as `shieldes logs --json` prints them.
VIEW_COLUMNS = (
    "request_id", "started_at", "finished_at", "node_id", "key_id", "key_name", "team_id", "method", "route",
    "path", "model", "upstream_model", "deployment", "attempts", "failover_path", "status", "error_code",
    "error_message", "latency_ms", "ttfb_ms", "ttft_ms", "prompt_tokens", "completion_tokens", "cached_tokens",
    "cache_write_tokens", "reasoning_tokens", "images", "audio_seconds", "characters", "cost_usd", "cost_nusd",
    "stream", "client_ip", "user_agent", "trace_id", "logged_at", "service_tier", "web_searches", "file_searches",
    "containers", "actor", "tags", "fallback",
)

_TEXT_OID = postgres.types["text"].oid
_ARRAY_HEAD = struct.Struct("!IIIII")  # dimensions, has nulls, element type; the one dimension's length, lower bound
_EMPTY_ARRAY = struct.pack("!III", 0, 0, _TEXT_OID)
_ONE_ITEM = struct.Struct("!IIIIIi")  # the head of an array of one item, and the item's length
_LENGTH = struct.Struct("!i")
_NULL_ITEM = _LENGTH.pack(-1)


class DeploymentsDumper(Dumper):
    """`failover_path` (the deployments tried, text[]) in binary COPY, packed at once: psycopg's
    own list dumper walks any depth of nesting item by item (2.0 against 0.9 us a row)."""

    format = Format.BINARY
    oid = postgres.types["text"].array_oid

    def __init__(self, cls: type, context: AdaptContext | None = None) -> None:
        super().__init__(cls, context)
        conn = self.connection  # the client encoding, as psycopg's own text dumper encodes
        encoding = conn.info.encoding if conn is not None else "utf-8"
        self._encoding = encoding if encoding != "ascii" else "utf-8"

    def dump(self, obj: list[str | None]) -> Buffer:
        if not obj:
            return _EMPTY_ARRAY
        encoding = self._encoding
        if len(obj) == 1 and obj[0] is not None:  # the usual path: one deployment
            data = obj[0].encode(encoding)
            return _ONE_ITEM.pack(1, 0, _TEXT_OID, 1, 1, len(data)) + data
        parts = [b""]
        nulls = 0
        for name in obj:
            if name is None:
                nulls = 1
                parts.append(_NULL_ITEM)
            else:
                data = name.encode(encoding)
                parts += (_LENGTH.pack(len(data)), data)
        parts[0] = _ARRAY_HEAD.pack(1, nulls, _TEXT_OID, len(obj), 1)
        return b"".join(parts)


_COPY_ROWS = sql.SQL("COPY request_log_rows ({}) FROM STDIN (FORMAT BINARY)").format(
    sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS))
_COPY_BODIES = sql.SQL("COPY request_log_bodies ({}) FROM STDIN (FORMAT BINARY)").format(
    sql.SQL(", ").join(sql.Identifier(c) for c in BODY_COLUMNS))


async def write_batch(conn: psycopg.AsyncConnection[Any], rows: Sequence[tuple[Any, ...]],
                      bodies: Sequence[tuple[Any, ...]] = ()) -> None:
    """One transaction: rows (and captured bodies) with COPY."""
    async with conn.transaction(), conn.cursor() as cur:
        cur.adapters.register_dumper(None, DeploymentsDumper)  # this cursor's: text[] columns of its COPY
        async with cur.copy(_COPY_ROWS) as copy:
            copy.set_types(ROW_TYPES)
            await _write_rows(copy, rows)
        if bodies:
            async with cur.copy(_COPY_BODIES) as copy:
                copy.set_types(BODY_TYPES)
                await _write_rows(copy, bodies)


async def _write_rows(copy: psycopg.AsyncCopy, rows: Sequence[tuple[Any, ...]]) -> None:
    for start in range(0, len(rows), ROWS_PER_TURN):
        if start:
            await asyncio.sleep(0)  # (see ROWS_PER_TURN)
        for row in rows[start:start + ROWS_PER_TURN]:
            await copy.write_row(row)


async def ensure_partitions(conn: psycopg.AsyncConnection[Any], days: Iterable[date]) -> None:
    """Create the daily partitions of both tables for `days` (idempotent, safe across nodes)."""
    wanted = sorted(set(days))
    if not wanted:
        return
    missing = await missing_tables(conn, [partition_name(t, d) for d in wanted for t in TABLES])
    wanted = [d for d in wanted if any(partition_name(t, d) in missing for t in TABLES)]
    if not wanted:  # (most calls: a node's start, a new day's first write on a node after the first)
        return
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))
        for day in wanted:
            for table in TABLES:
                await conn.execute(sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})"
                ).format(sql.Identifier(partition_name(table, day)), sql.Identifier(table),
                         sql.Literal(f"{day.isoformat()} 00:00:00+00"),
                         sql.Literal(f"{(day + timedelta(days=1)).isoformat()} 00:00:00+00")))


async def partition_days(conn: psycopg.AsyncConnection[Any]) -> dict[date, list[str]]:
    """Day -> partition names (of either table) that exist."""
    cur = await conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = ANY(%s)", (list(TABLES),))
    out: dict[date, list[str]] = {}
    for (name,) in await cur.fetchall():
        parsed = parse_partition(name)
        if parsed is not None:
            out.setdefault(parsed[1], []).append(name)
    return out


async def drop_partitions(conn: psycopg.AsyncConnection[Any], names: Iterable[str]) -> list[str]:
    """DROP TABLE each partition (instant, no dead tuples, unlike DELETE)."""
    dropped: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))
        for name in names:
            if parse_partition(name) is None:
                continue
            await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
            dropped.append(name)
    return dropped


# --- reading ---------------------------------------------------------------------------------

def status_clause(status: str) -> tuple[str, dict[str, Any]]:
    cls, code, word = parse_status(status)
    if cls:
        return "status >= %(s_lo)s AND status < %(s_hi)s", {"s_lo": int(cls) * 100, "s_hi": int(cls) * 100 + 100}
    if code:
        return "status = %(s_code)s", {"s_code": int(code)}
    if word == "error":
        return "(status >= 400 OR error_code IS NOT NULL)", {}
    return "(status < 400 AND error_code IS NULL)", {}


def build_query(f: LogFilter, limit: int) -> tuple[str, dict[str, Any]]:
    """SQL and parameters for `f`, newest first (pure; tested directly)."""
    where: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    if f.key is not None:
        where.append("(key_id = %(key)s OR key_name = %(key)s)")
        params["key"] = f.key
    if f.model is not None:
        where.append("(model = %(model)s OR upstream_model = %(model)s)")
        params["model"] = f.model
    if f.status is not None:
        clause, more = status_clause(f.status)
        where.append(clause)
        params.update(more)
    for name, op_ in (("since", ">="), ("until", "<=")):
        value = getattr(f, name)
        if value is not None:
            where.append(f"started_at {op_} %({name})s")
            params[name] = value
    if f.tag is not None:
        where.append("tags @> ARRAY[%(tag)s]::text[]")  # (GIN-indexed, migration 0026; `= ANY` is not)
        params["tag"] = f.tag
    for name in ("request_id", "node_id", "error_code"):
        value = getattr(f, name)
        if value is not None:
            where.append(f"{name} = %({name})s")
            params[name] = value
    if f.route == GATEWAY:  # the clients' requests: not the admin API's, the console's or the probes'
        where.append("route NOT LIKE '/admin/%%' AND route NOT LIKE '/ui/%%'"
                     " AND route NOT IN ('/ui', '/health', '/ready', '/metrics')")
    elif f.route is not None and f.route.endswith("*"):  # a prefix: /v1/* is every gateway route
        where.append("route LIKE %(route)s")
        params["route"] = re.sub(r"([\\%_])", r"\\\1", f.route[:-1]) + "%"
    elif f.route is not None:
        where.append("route = %(route)s")
        params["route"] = f.route
    if f.before is not None:
        where.append("(started_at, request_id) < (%(b_at)s, %(b_id)s)")
        params["b_at"], params["b_id"] = f.before
    if f.logged_after is not None:
        where.append("logged_at > %(logged_after)s")
        params["logged_after"] = f.logged_after
    text = (f"SELECT {', '.join(VIEW_COLUMNS)} FROM request_log"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY started_at DESC, request_id DESC LIMIT %(limit)s")
    return text, params


async def query(conn: psycopg.AsyncConnection[Any], f: LogFilter, limit: int = 100) -> list[dict[str, Any]]:
    """Rows matching `f`, newest first, at most `limit`; page on with
    `LogFilter(..., before=(rows[-1]['started_at'], rows[-1]['request_id']))`."""
    for value in (f.key, f.model, f.request_id, f.node_id, f.route, f.error_code, f.tag):
        if value is not None and "\x00" in value:
            raise InvalidRequest("a filter contains a NUL character (\\x00); remove it")
    text, params = build_query(f, limit)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(text, params)
        return await cur.fetchall()


async def key_known(conn: psycopg.AsyncConnection[Any], key: str) -> bool:
    """Whether a virtual key (revoked ones included) has this name or id: a `key` filter that
    matches no row names either a key with no requests or a typo, and only the first is an answer."""
    if "\x00" in key:
        return False
    cur = await conn.execute("SELECT 1 FROM virtual_keys WHERE key_name = %s OR key_id = %s LIMIT 1", (key, key))
    return await cur.fetchone() is not None


async def bodies(conn: psycopg.AsyncConnection[Any], request_id: str) -> list[dict[str, Any]]:
    """The captured bodies of one request (a row per node that logged it; none when not captured)."""
    if "\x00" in request_id:
        raise InvalidRequest("a request id contains a NUL character (\\x00); remove it")
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT node_id, started_at, request_body, response_body, truncated FROM request_log_bodies "
                          "WHERE request_id = %s ORDER BY started_at, node_id", (request_id,))
        return await cur.fetchall()


async def database_now(conn: psycopg.AsyncConnection[Any]) -> datetime:
    cur = await conn.execute("SELECT now()")
    row = await cur.fetchone()
    assert row is not None
    value = row[0]
    assert isinstance(value, datetime)
    return value
