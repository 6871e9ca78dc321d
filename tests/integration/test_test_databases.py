"""The suite's per-test databases (tests/pg.py Databases): each test gets a copy of the migrated
template of its own, made ahead while the test before it ran, and every one is dropped again."""

from __future__ import annotations

from urllib.parse import urlsplit

import psycopg

from shieldes import db
from tests import pg


def names(server: str) -> set[str]:
    with psycopg.connect(server, autocommit=True) as conn:
        return {name for (name,) in conn.execute("SELECT datname FROM pg_database").fetchall()}


def test_each_take_is_a_fresh_database_and_every_one_is_dropped(pg_server: str) -> None:
    made = pg.Databases(pg_server)
    spare = None
    try:
        first = made.take()
        with psycopg.connect(first, autocommit=True) as conn:  # a test writes to its own
            assert db.schema_revision(conn) == db.SCHEMA_HEAD
            assert conn.execute("SELECT count(*) FROM events").fetchone() == (0,)
            conn.execute("CREATE TABLE written_by_the_first (x int)")
        made.give_back(first)
        second = made.take()  # made while the first was in use
        assert second != first
        with psycopg.connect(second, autocommit=True) as conn:
            assert db.schema_revision(conn) == db.SCHEMA_HEAD
            assert conn.execute("SELECT to_regclass('written_by_the_first')").fetchone() == (None,)
        made.give_back(second)
        third = made.take()
        assert third not in (first, second)
        assert made._next is not None  # (a private detail, read only here) the one made for a next test
        spare = made._next.result()
        assert spare not in (first, second, third)
        assert database_name(spare) in names(pg_server)
    finally:
        made.close()
    # the given-back ones and the spare made for no test; the third, never given back, is still there
    assert {database_name(u) for u in (first, second, spare)} & names(pg_server) == set()
    assert database_name(third) in names(pg_server)
    pg.drop_database(pg_server, third)


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")
