from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from shieldes.events.pg_store import PostgresEventStore, open_pool
from tests import pg


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """URL of the session's Postgres server (maintenance database)."""
    url = pg.server_url()
    pg.make_template(url)
    yield url
    pg.drop_template(url)


@pytest.fixture
def database_url(pg_server: str) -> Iterator[str]:
    """A fresh database at alembic head, dropped after the test."""
    url = pg.fresh_database(pg_server)
    yield url
    pg.drop_database(pg_server, url)


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
