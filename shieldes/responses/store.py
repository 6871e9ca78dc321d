"""All SQL on the `stored_responses` table: batched inserts into daily partitions (created on
demand), reads of one response or a whole previous_response_id chain, deletes, and the retention
purge by partition drop; for background responses, the owner's writes of a run's state and events,
cancel requests and the reads of a run's state with its owner's liveness. Rows older than the
retention are invisible even before their partition is dropped."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from orjson import dumps, loads
from psycopg import AsyncConnection, AsyncCursor
from psycopg.adapt import Buffer, Dumper
from psycopg.postgres import types as pg_types
from psycopg.pq import Format
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from shieldes.db import missing_tables
from shieldes.responses.objects import Body

PARTITION_LOCK = 0x5348_5250  # "SHRP": serialises partition creation and drops across nodes
PREFIX = "stored_responses_p"
MAX_CHAIN = 10_000


@dataclass(slots=True)
class StoredResponse:
    """A response to store (not frozen, as Encoded: one is made per stored turn; never changed)."""

    id: str
    created_at: float  # unix seconds
    key_id: str
    previous_response_id: str | None
    model: str
    # the input items, or their JSON as the client sent them (a turn whose input was never decoded:
    # input_bytes; the items are in the API's form then, as normalized ones are)
    input: list[Body] | bytes
    response: Body

    def items(self) -> list[Body]:
        """The input items (decoded, if they are bytes)."""
        if isinstance(self.input, bytes):
            items: list[Body] = loads(self.input)
            return items
        return self.input


@dataclass(slots=True, init=False)
class Encoded:
    """A stored response with its JSON encoded once, when it is saved: the INSERT sends these
    bytes as they are (a 2 MB screenshot's input is never decoded to a str and encoded back), and
    the memory cache keeps them (below service.PARSED_FROM), decoded only when a response is read.
    As bytes a response takes
    about a third of the memory of its parsed form and gives the cyclic garbage collector nothing
    to walk (a full cache of parsed responses made each full collection walk a million objects).
    `output` is the answer's output items again on their own: a continuation's history is every
    turn's input and output, decoded without the rest of each response (an agent's responses echo
    its instructions and tools, often most of their bytes). Not frozen: one is made per stored
    turn, and a frozen field costs its __init__ a call of object.__setattr__; never changed."""

    id: str
    created_at: float  # unix seconds
    key_id: str
    previous_response_id: str | None
    model: str
    input: bytes  # UTF-8 JSON
    response: bytes
    output: bytes
    # counted once, when it is made: it is read four times on a row's way (the queue's bytes, the
    # batch's length and bound, the bytes written), a property a call each time
    size: int  # the bytes the writer sends (the batch and write bounds count these)

    def __init__(self, id: str, created_at: float, key_id: str, previous_response_id: str | None, model: str,
                 input: bytes, response: bytes, output: bytes) -> None:
        self.id = id
        self.created_at = created_at
        self.key_id = key_id
        self.previous_response_id = previous_response_id
        self.model = model
        self.input = input
        self.response = response
        self.output = output
        self.size = len(input) + len(response)

    @property
    def held(self) -> int:
        """The bytes the memory cache holds for it."""
        return self.size + len(self.output)

    def decoded(self) -> StoredResponse:
        return StoredResponse(self.id, self.created_at, self.key_id, self.previous_response_id, self.model,
                              loads(self.input), loads(self.response))


@dataclass(frozen=True, slots=True)
class RunRow:
    """What the node running a background response writes of it: the response as it stands and
    the events from index `first` on (index == sequence_number)."""

    id: str
    created_at: float
    key_id: str
    previous_response_id: str | None
    model: str
    input: list[Body]
    response: Body
    node: str
    epoch: int
    first: int
    events: list[Body]
    landed: bool  # an earlier write inserted it: only updated now (a row deleted meanwhile stays deleted)


@dataclass(frozen=True, slots=True)
class RunState:
    """A background response as its row says, with its owner's boot as cluster_nodes says
    (`owner_epoch` None: the owner left or its row is gone)."""

    key_id: str
    response: Body
    events: list[Body]  # those after the index asked for
    node: str | None
    epoch: int | None
    owner_epoch: int | None
    owner_alive: bool


# orjson's output keeps the capacity of the buffer it was written in (4-8 kB) however short the
# JSON: a cached 1 kB response held 8 kB of memory. Below this length the bytes are copied to
# their own length (well under a microsecond); above it the slack is a few percent at most.
COMPACT_BELOW = 16 * 1024


def encode(stored: StoredResponse) -> Encoded:
    output = stored.response.get("output")
    given, response = stored.input, dumps(stored.response)
    output_json = dumps(output if isinstance(output, list) else [])
    input_json = given if isinstance(given, bytes) else dumps(given)
    # JSON below COMPACT_BELOW copied to its own length (a call each for it was a third of this)
    return Encoded(stored.id, stored.created_at, stored.key_id, stored.previous_response_id, stored.model,
                   input_json if input_json is given or len(input_json) >= COMPACT_BELOW
                   else bytes(memoryview(input_json)),
                   response if len(response) >= COMPACT_BELOW else bytes(memoryview(response)),
                   output_json if len(output_json) >= COMPACT_BELOW else bytes(memoryview(output_json)))


class Utf8:
    """UTF-8 text already encoded, sent as a Postgres `text` (Utf8Dumper)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class Utf8Dumper(Dumper):
    """`text` in binary form is its UTF-8 bytes: they go out as they are, no copy."""

    format = Format.BINARY
    oid = pg_types["text"].oid

    def dump(self, obj: Utf8) -> Buffer:
        return obj.data


def day_of(ts: float) -> dt.date:
    return dt.datetime.fromtimestamp(ts, dt.UTC).date()


# A created_at this far inside its day's bounds is that day's however it is rounded (Postgres's
# to_timestamp and datetime both round to the microsecond; a day's last one may be the next day's)
DAY_EDGE = 0.001


def inner_span(day: dt.date) -> tuple[float, float]:
    """The unix seconds [low, high) that are `day`'s without a doubt: its bounds, DAY_EDGE inside."""
    start = dt.datetime.combine(day, dt.time(), dt.UTC).timestamp()
    return start + DAY_EDGE, start + 86_400 - DAY_EDGE


DaySpan = tuple[float, float, dt.date]  # a day's inner span (inner_span) and the day


def days_of(times: Sequence[float], known: DaySpan) -> tuple[set[dt.date], DaySpan]:
    """The days of `times` (day_of's), and the inner span of the last day met (`known`: one met
    before): a batch's rows are mostly of one day, and a datetime a row was about 2.5k instructions
    of the 30k a row adds to a statement (`bench/bench_stored_parts.py`)."""
    low, high, day = known
    days = set()
    for ts in times:
        if not low <= ts < high:
            day = day_of(ts)
            low, high = inner_span(day)
        days.add(day)
    return days, (low, high, day)


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


def _text(obj: Any) -> str:
    return dumps(obj).decode()


def _row(r: Sequence[Any]) -> StoredResponse:
    created: dt.datetime = r[1]
    return StoredResponse(r[0], created.timestamp(), r[2], r[3], r[4], list(r[5]), dict(r[6]))


_COLUMNS = "id, created_at, key_id, previous_response_id, model, input, response"
# The batch is UTF-8 JSON sent as bytes (bytea, binary: psycopg's own dumper sends them as they are,
# no adapter registered per statement), read as text by convert_from, which checks it is UTF-8 as a
# text parameter's receipt does (invalid bytes or a NUL: an encoding error, as before).
_INSERT = (f"INSERT INTO stored_responses ({_COLUMNS}) "
           "SELECT r->>0, to_timestamp((r->>1)::float8), r->>2, r->>3, r->>4, r->5, r->6 "
           "FROM jsonb_array_elements(convert_from(%b, 'UTF8')::jsonb) AS r "
           "ON CONFLICT DO NOTHING")


def rows_json(rows: Sequence[Encoded]) -> bytes:
    """The batch as _INSERT reads it: a JSON array of rows, each row's input and response spliced
    in as the bytes they were encoded to."""
    parts = [b"["]
    for r in rows:  # one join at the end: a 2 MB screenshot's input is copied once, not per `+`
        parts += (dumps([r.id, r.created_at, r.key_id, r.previous_response_id, r.model])[:-1], b",",
                  r.input, b",", r.response, b"],")
    parts[-1] = b"]]"
    return b"".join(parts)


def _appended(new: str) -> str:
    """A background row's events with `new` appended if it holds exactly as many as the first
    parameter says, else as they are (a retried write appends nothing twice)."""
    return ("CASE WHEN coalesce(jsonb_array_length(stored_responses.events), 0) = %s "
            f"THEN coalesce(stored_responses.events, '[]'::jsonb) || {new} ELSE stored_responses.events END")


class ResponseTable:
    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self._pool = pool
        self._days: set[dt.date] = set()  # partitions known to exist
        self._day: DaySpan = (0.0, 0.0, dt.date.min)  # the inner span of the last row's day (days_of)
        # the writer's connection kept between its batches (insert(keep=True)), since held_since, with
        # its cursor: a cursor made per statement looks up the batch's dumper afresh in an adapters
        # map of its own, a third of psycopg's work for the statement in the node
        self._held: AsyncCursor[Any] | None = None
        self.held_since = 0.0

    @property
    def pool_size(self) -> int:
        return self._pool.max_size

    @property
    def kept(self) -> bool:
        return self._held is not None

    async def release(self) -> None:
        """Give the connection kept by `insert(keep=True)` back to the pool (nothing if none)."""
        cur, self._held = self._held, None
        if cur is not None:
            await self._pool.putconn(cur.connection)

    async def ensure_partitions(self, days: set[dt.date]) -> None:
        if days - self._days:
            async with self._pool.connection() as conn:
                await self._ensure_partitions_on(conn, days)

    async def _ensure_partitions_on(self, conn: AsyncConnection[Any], days: set[dt.date]) -> None:
        missing = days - self._days
        if not missing:
            return
        absent = await missing_tables(conn, [partition_name(day) for day in missing])
        if absent:  # (no lock, and no wait on another node's, for partitions that exist)
            await self._create_partitions(conn, sorted(d for d in missing if partition_name(d) in absent))
        self._days |= missing

    @staticmethod
    async def _create_partitions(conn: AsyncConnection[Any], days: list[dt.date]) -> None:
        """Make these days' partitions under the lock (another node may be making them too)."""
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))
            for day in days:
                start = dt.datetime.combine(day, dt.time(), dt.UTC)
                end = start + dt.timedelta(days=1)
                # DDL takes no bind parameters; the bounds are our own ISO timestamps
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF stored_responses "
                    f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
                )

    async def insert(self, rows: Sequence[Encoded], keep: bool = False) -> None:
        """One statement for the whole batch (its own transaction, one round trip): a response
        ends on the request path's heels, so the writer's per-batch cost is paid per response
        whenever batches are small. The batch goes as one JSON array of rows, each row's input and
        response spliced in as the bytes they were encoded to, in one parameter (_INSERT): seven
        typed arrays built by psycopg cost the node 334-411 us of CPU per statement for 1-12
        answers, this 233-264 (`bench/bench_stored_insert.py`), and the statement's text never changes, so it is
        prepared once per connection. A row already there (the same id and created_at: a write
        retried after one that did land) is skipped.

        `keep`: the connection stays with this table for the next batch, with its cursor (`release`
        gives it back): the pool's checkout and return and a new cursor's adapters cost the node two
        fifths of a one-row statement (`bench/bench_stored_parts.py`). Any error
        gives it back (the pool discards a broken one or one left mid-statement by a cancel), and
        a kept connection found broken (its backend ended while it waited) is replaced at once:
        the batch goes once more on one from the pool."""
        if not rows:
            return
        batch = rows_json(rows)
        days, self._day = days_of([r.created_at for r in rows], self._day)
        # getconn/putconn, not pool.connection(): its context manager and the connection's own (a
        # commit autocommit makes a no-op) cost the node as much as the checkout itself, per statement
        cur, self._held = self._held, None  # (taken: a write cancelled in the background never shares it)
        if cur is not None:
            try:
                await self._statement(cur, batch, days)
            except psycopg.OperationalError:
                await self._pool.putconn(cur.connection)
                if not cur.connection.broken:
                    raise
                cur = None  # broken while kept (its backend ended): the batch again on one from the pool
            except BaseException:
                await self._pool.putconn(cur.connection)
                raise
        if cur is None:
            conn = await self._pool.getconn()
            self.held_since = time.monotonic()
            try:
                cur = conn.cursor()
                await self._statement(cur, batch, days)
            except BaseException:
                await self._pool.putconn(conn)  # (a connection left mid-statement by a cancel is discarded)
                raise
        if keep and self._held is None:
            self._held = cur
        else:
            await self._pool.putconn(cur.connection)

    async def _statement(self, cur: AsyncCursor[Any], batch: bytes, days: set[dt.date]) -> None:
        conn = cur.connection
        await self._ensure_partitions_on(conn, days)
        await cur.execute(_INSERT, (batch,))
        if not conn.autocommit:  # (a node's pool is autocommit: the statement commits itself)
            await conn.commit()

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

    async def write_runs(self, rows: Sequence[RunRow]) -> dict[str, int]:
        """Insert or update background responses (one transaction); id -> events the row holds,
        for each row there (one deleted while it ran is missing). Events are appended only where
        the row holds exactly `first` of them, so a write retried after one that landed appends
        nothing twice; the count returned says where to go on."""
        if not rows:
            return {}
        await self.ensure_partitions({day_of(r.created_at) for r in rows if not r.landed})
        held: dict[str, int] = {}
        async with self._pool.connection() as conn, conn.transaction():
            for r in rows:
                response, events = Jsonb(r.response, dumps=_text), Jsonb(r.events, dumps=_text)
                if r.landed:
                    cur = await conn.execute(
                        f"UPDATE stored_responses SET response = %s, events = {_appended('%s::jsonb')} "
                        "WHERE id = %s AND created_at = to_timestamp(%s) RETURNING jsonb_array_length(events)",
                        (response, r.first, events, r.id, r.created_at))
                else:
                    cur = await conn.execute(
                        f"INSERT INTO stored_responses ({_COLUMNS}, background_node, background_epoch, events) "
                        "VALUES (%s, to_timestamp(%s), %s, %s, %s, %s, %s, %s, %s, %s) "
                        f"ON CONFLICT (id, created_at) DO UPDATE SET response = EXCLUDED.response, events = "
                        f"{_appended('EXCLUDED.events')} RETURNING jsonb_array_length(events)",
                        (r.id, r.created_at, r.key_id, r.previous_response_id, r.model, Jsonb(r.input, dumps=_text),
                         response, r.node, r.epoch, events, r.first))
                row = await cur.fetchone()
                if row is not None:
                    held[r.id] = int(row[0] or 0)
        return held

    async def cancels_asked(self, ids: Sequence[str], since: float) -> list[str]:
        """Those of `ids` (created at or after `since`) some node was asked to cancel."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id FROM stored_responses WHERE id = ANY(%s) AND created_at >= to_timestamp(%s) "
                "AND cancel_requested", (list(ids), since))
            return [r[0] for r in await cur.fetchall()]

    async def ask_cancel(self, response_id: str, key_id: str, retention: float) -> bool:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE stored_responses SET cancel_requested = true WHERE id = %s AND key_id = %s "
                "AND created_at > now() - make_interval(secs => %s)", (response_id, key_id, retention))
            return bool(cur.rowcount > 0)

    async def run_state(self, response_id: str, after: int, retention: float, node_timeout: float) -> RunState | None:
        """A background response's row, its events after index `after`, and whether the boot that
        runs it is alive (its heartbeat within `node_timeout` by the database's clock)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT r.key_id, r.response, coalesce((SELECT jsonb_agg(e ORDER BY i) FROM "
                "jsonb_array_elements(r.events) WITH ORDINALITY AS t(e, i) WHERE i > %(after)s + 1), '[]'::jsonb), "
                "r.background_node, r.background_epoch, n.boot_epoch, "
                "coalesce(n.heartbeat_at > now() - make_interval(secs => %(timeout)s), false) "
                "FROM stored_responses r LEFT JOIN cluster_nodes n ON n.node_id = r.background_node "
                "WHERE r.id = %(id)s AND r.created_at > now() - make_interval(secs => %(ret)s)",
                {"id": response_id, "after": after, "timeout": node_timeout, "ret": retention})
            row = await cur.fetchone()
        if row is None:
            return None
        return RunState(row[0], dict(row[1]), list(row[2]), row[3], row[4], row[5], bool(row[6]))

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

