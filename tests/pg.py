"""Test databases: one real Postgres per test session (embedded, or SHIELDES_TEST_DATABASE_URL),
a migrated template database, and a fresh copy of it per test (CREATE DATABASE ... TEMPLATE)."""

from __future__ import annotations

import atexit
import hashlib
import os
import signal
import tempfile
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil
import psycopg

from shieldes import db
from shieldes.embedded import EmbeddedPostgres, Lease

# One template per test session: sessions from different checkouts may run side by side.
TEMPLATE = f"shieldes_tpl_{os.getpid()}"
# Positions per partition of `events` in test databases: small, so every test that appends more than
# a few dozen events runs across several partitions (production: log_head.partition_size).
TEST_PARTITION_SIZE = 64


def test_data_dir() -> Path:
    checkout = hashlib.sha1(str(Path(__file__).resolve().parent.parent).encode()).hexdigest()[:8]
    default = Path(tempfile.gettempdir()) / f"shieldes-test-pg-{checkout}"
    return Path(os.environ.get("SHIELDES_TEST_DATA_DIR", default))


def acquire_server() -> Lease | db.ExternalDatabase:
    """The session's server, held until released: released last, the embedded one is stopped."""
    url = os.environ.get("SHIELDES_TEST_DATABASE_URL")
    if url:
        return db.ExternalDatabase(db.libpq_url(url))
    return EmbeddedPostgres(test_data_dir()).acquire("pytest session")


def scratch_writes(url: str, on: bool) -> None:
    """The suite's embedded server without fsync while a session uses it. Every DROP DATABASE (a
    test's teardown) forces a checkpoint, and with fsync it waited on syncing thousands of files
    (1-6 s each, minutes over a run). Nothing here outlives the session, and a killed Postgres
    loses nothing without it: only a crash of the machine would. Reset in postgresql.auto.conf
    without a reload, so the running server keeps it to the session's end and the next start (a
    bench on the same data dir) has fsync again."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET fsync = off" if on else "ALTER SYSTEM RESET fsync")
        if on:
            conn.execute("SELECT pg_reload_conf()")


def server_url() -> str:
    """For benches: the session's server, released when the process exits (an embedded server is
    then stopped if this process was its last user)."""
    lease = acquire_server()
    atexit.register(lease.release)
    return lease.url


def postgres_running_under(root: Path) -> list[str]:
    """Postgres server processes whose data directory lies under `root` (what a session left behind)."""
    return [f"pid {proc.pid}: {pgdata}" for proc, pgdata in _postmasters_under(root)]


def stop_postgres_under(root: Path) -> None:
    for proc, _ in _postmasters_under(root):
        proc.send_signal(signal.SIGINT)  # a fast shutdown
        try:
            proc.wait(30)
        except psutil.TimeoutExpired:
            proc.kill()


def _postmasters_under(root: Path) -> list[tuple[psutil.Process, Path]]:
    root = root.resolve()
    found = []
    for proc in psutil.process_iter(attrs=["name", "cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if proc.info.get("name") != "postgres" or "-D" not in cmd:
            continue
        pgdata = Path(cmd[cmd.index("-D") + 1]) if cmd.index("-D") + 1 < len(cmd) else None
        if pgdata is not None and pgdata.resolve().is_relative_to(root):
            found.append((proc, pgdata))
    return found


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def make_template(url: str) -> None:
    """(Re)create the migrated template once per session, so every test starts at alembic head."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {TEMPLATE}")
    db.upgrade(with_database(url, TEMPLATE))
    with psycopg.connect(with_database(url, TEMPLATE), autocommit=True) as conn:
        repartition_empty(conn, TEST_PARTITION_SIZE)


def prepare_request_log_days(url: str) -> None:
    """The request log's daily partitions for the session's days (yesterday to today + DAYS_AHEAD) made
    in the template, by the product's own ensure_partitions: a test's node then finds them, as every
    node but a day's first one does in production, instead of making eight tables at each start
    (0.1-0.2 s of an in-process node's 0.3 s start on a busy machine). A node still makes a day's
    that is missing (a session across midnight, a test's own days)."""
    import asyncio

    from shieldes.requestlog.partitions import days_to_prepare
    from shieldes.requestlog.store import ensure_partitions

    async def prepare() -> None:
        async with await psycopg.AsyncConnection.connect(with_database(url, TEMPLATE), autocommit=True) as conn:
            await ensure_partitions(conn, days_to_prepare(datetime.now(UTC).date()))

    asyncio.run(prepare())


async def drop_request_log_days(conn: psycopg.AsyncConnection[Any]) -> None:
    """Drop the request log's daily partitions (the template's, above): for a test whose
    assertions read which partitions exist, as on a database no node had started on."""
    from shieldes.requestlog.store import drop_partitions, partition_days

    await drop_partitions(conn, [name for names in (await partition_days(conn)).values() for name in names])


def repartition_empty(conn: psycopg.Connection[Any], size: int) -> None:
    """Give an empty log partitions of `size` positions (the migration's are 100,000 wide)."""
    with conn.transaction():
        head = conn.execute("SELECT position FROM log_head WHERE id = 1").fetchone()
        assert head is not None and head[0] == 0, "repartition_empty needs an empty log"
        names = conn.execute("SELECT relid::regclass::text FROM pg_partition_tree('events') WHERE isleaf").fetchall()
        for (name,) in names:
            conn.execute(f"DROP TABLE {name}")
        for start in (0, size):
            conn.execute(f"CREATE TABLE events_p{start} PARTITION OF events "
                         f"FOR VALUES FROM ({start}) TO ({start + size})")
        conn.execute("UPDATE log_head SET partition_size = %s, partitions_end = %s WHERE id = 1", (size, 2 * size))


def fresh_database(url: str, *, migrated: bool = True, copy_of: str | None = None) -> str:
    """A new database: at alembic head, empty (`migrated=False`), or a copy of the database at the
    URL `copy_of` (which no connection may be open on)."""
    name = "t_" + uuid.uuid4().hex[:16]
    template = urlsplit(copy_of).path.lstrip("/") if copy_of else TEMPLATE
    with psycopg.connect(url, autocommit=True) as conn:
        if migrated or copy_of:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        else:
            conn.execute(f"CREATE DATABASE {name}")
    return with_database(url, name)


class Databases:
    """Fresh databases at alembic head for one test each, the next one made while the test before it
    runs, and each dropped after its test while the next one runs: a test's setup and teardown no
    longer wait on CREATE and DROP DATABASE (0.05-0.3 s each, longer on a busy server). A database
    is a copy of the template given to one test and never reused: isolation is that of copies made
    on demand. Creates and drops run one at a time, in the order asked."""

    def __init__(self, server: str) -> None:
        self.server = server
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-databases")
        self._next: Future[str] | None = None
        self._drops: list[Future[None]] = []

    def take(self) -> str:
        self._check_drops()
        made = self._next.result() if self._next is not None else fresh_database(self.server)
        self._next = self._worker.submit(fresh_database, self.server)
        return made

    def give_back(self, url: str) -> None:
        self._drops.append(self._worker.submit(drop_database, self.server, url))

    def _check_drops(self) -> None:
        """A drop that failed fails the next test's setup, as it failed its own teardown before."""
        done = [f for f in self._drops if f.done()]
        self._drops = [f for f in self._drops if not f.done()]
        for f in done:
            f.result()

    def close(self) -> None:
        """Wait for the drops asked for, and drop the database made for a test that never came."""
        spare, self._next = self._next, None
        try:
            if spare is not None:
                self.give_back(spare.result())
            for f in self._drops:
                f.result()
        finally:
            self._drops = []
            self._worker.shutdown()


@contextmanager
def seeded(url: str, seed: Callable[[str], object]) -> Iterator[str]:
    """A database at alembic head filled by `seed`, dropped after: made once for a module, whose
    tests read it or take copies of it (copied())."""
    made = fresh_database(url)
    try:
        seed(made)
        yield made
    finally:
        drop_database(url, made)


@contextmanager
def copied(url: str, of: str) -> Iterator[str]:
    """A copy of the database at the URL `of` (no connection may be open on it), dropped after."""
    made = fresh_database(url, copy_of=of)
    try:
        yield made
    finally:
        drop_database(url, made)


def drop_database(url: str, name_url: str) -> None:
    name = urlsplit(name_url).path.lstrip("/")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def drop_template(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
