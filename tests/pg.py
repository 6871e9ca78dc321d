"""Test databases: one real Postgres per test session (embedded, or SHIELDES_TEST_DATABASE_URL),
a migrated template database, and a fresh copy of it per test (CREATE DATABASE ... TEMPLATE)."""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from shieldes import db

# One template per test session: sessions from different checkouts may run side by side.
TEMPLATE = f"shieldes_tpl_{os.getpid()}"


def server_url() -> str:
    url = os.environ.get("SHIELDES_TEST_DATABASE_URL")
    if url:
        return db.libpq_url(url)
    checkout = hashlib.sha1(str(Path(__file__).resolve().parent.parent).encode()).hexdigest()[:8]
    default = Path(tempfile.gettempdir()) / f"shieldes-test-pg-{checkout}"
    data_dir = Path(os.environ.get("SHIELDES_TEST_DATA_DIR", default))
    return db.embedded_database_url(data_dir)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def make_template(url: str) -> None:
    """(Re)create the migrated template once per session, so every test starts at alembic head."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {TEMPLATE}")
    db.upgrade(with_database(url, TEMPLATE))


def fresh_database(url: str, *, migrated: bool = True) -> str:
    name = "t_" + uuid.uuid4().hex[:16]
    with psycopg.connect(url, autocommit=True) as conn:
        if migrated:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        else:
            conn.execute(f"CREATE DATABASE {name}")
    return with_database(url, name)


def drop_database(url: str, name_url: str) -> None:
    name = urlsplit(name_url).path.lstrip("/")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def drop_template(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
