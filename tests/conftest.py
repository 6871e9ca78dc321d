from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import settings
from psycopg_pool import AsyncConnectionPool

import shieldes.cluster  # noqa: F401  (first: it turns gRPC's fork handlers off before any test imports grpc)
from shieldes import db
from shieldes.embedded import EmbeddedPostgres
from shieldes.events.pg_store import PostgresEventStore, open_pool
from tests import pg

if TYPE_CHECKING:
    from tests.fake_oidc import FakeOidc

PG_USED = pytest.StashKey[bool]()

# Property tests draw the same examples on every run, so a run's outcome depends only on the code and
# the hypothesis version; HYPOTHESIS_PROFILE=explore draws new ones each run, and more of them.
settings.register_profile("shieldes", derandomize=True)
settings.register_profile("explore", max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "shieldes"))


@pytest.fixture(scope="session")
def pg_server(request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of the session's Postgres server (maintenance database); the embedded one is stopped
    when the session ends (pytest_sessionfinish checks nothing is left running)."""
    server = pg.acquire_server()
    request.config.stash[PG_USED] = True
    scratch = not isinstance(server, db.ExternalDatabase)  # never an outside server's settings
    try:
        if scratch:
            pg.scratch_writes(server.url, True)
        pg.make_template(server.url)
        pg.prepare_request_log_days(server.url)
        yield server.url
        pg.drop_template(server.url)
        if scratch:
            pg.scratch_writes(server.url, False)
    finally:
        server.release()


LEAKS = pytest.StashKey[list[str]]()


@pytest.fixture
def fresh_home(request: pytest.FixtureRequest) -> Iterator[Path]:
    """An empty directory for a HOME or a data dir with its own embedded Postgres. Not under
    pytest's basetemp: as root the server runs as pgserver's system user, which must traverse every
    parent, and any pytest session resets /tmp/pytest-of-<user> to 0700. A Postgres the test left
    running there is stopped, and reported by pytest_sessionfinish."""
    path = Path(tempfile.mkdtemp(prefix="shieldes-home-"))
    path.chmod(0o755)
    yield path
    left = pg.postgres_running_under(path)
    if left:
        request.config.stash.setdefault(LEAKS, []).extend(left)
        pg.stop_postgres_under(path)
    shutil.rmtree(path, ignore_errors=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The suite stops every Postgres it starts: the session's server and any embedded one a test
    started under its temporary directories (a fresh HOME, a cluster's data dir)."""
    roots = [session.config._tmp_path_factory.getbasetemp()]  # type: ignore[attr-defined]
    if (session.config.stash.get(PG_USED, False) and not os.environ.get("SHIELDES_TEST_DATABASE_URL")
            and not EmbeddedPostgres(pg.test_data_dir()).users()):
        roots.append(pg.test_data_dir())
    left = session.config.stash.get(LEAKS, []) + [
        p for root in roots if root.exists() for p in pg.postgres_running_under(root)]
    if left:
        print(f"\nerror: the test session left Postgres running: {'; '.join(left)}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def databases(pg_server: str) -> Iterator[pg.Databases]:
    made = pg.Databases(pg_server)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def database_url(databases: pg.Databases) -> Iterator[str]:
    """A fresh database at alembic head, dropped after the test (both while another test runs)."""
    url = databases.take()
    yield url
    databases.give_back(url)


@pytest.fixture
def empty_database_url(pg_server: str) -> Iterator[str]:
    """A fresh database with no schema at all."""
    url = pg.fresh_database(pg_server, migrated=False)
    yield url
    pg.drop_database(pg_server, url)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool[Any]]:
    p = open_pool(database_url, size=10)
    await p.open(wait=True)
    yield p
    await p.close()


@pytest.fixture
async def pg_store(pool: AsyncConnectionPool[Any]) -> PostgresEventStore:
    return PostgresEventStore(pool)


@pytest.fixture
async def idp() -> AsyncIterator[FakeOidc]:
    """A started fake OpenID provider (tests/fake_oidc.py), stopped after the test."""
    from tests.fake_oidc import FakeOidc  # only the tests that sign in load jwt and cryptography

    provider = await FakeOidc().start()
    try:
        yield provider
    finally:
        await provider.stop()
