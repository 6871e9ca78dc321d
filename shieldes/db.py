"""Where the database is and whether it is usable: embedded Postgres, URL forms, schema-at-head check.

All database errors that reach users pass through `translate` so they read as one actionable line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from shieldes.errors import DatabaseUnavailable, SchemaNotAtHead

if TYPE_CHECKING:  # the embedded Postgres is imported where it is used: most commands name a server
    from shieldes.embedded import Lease as Lease
    from shieldes.settings import Settings

# The newest alembic revision this code understands; tests check it equals alembic's head.
SCHEMA_HEAD = "0027"
REPO_ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger(__name__)


__all__ = ["ExternalDatabase", "acquire"]


class ExternalDatabase:
    """SHIELDES_DATABASE_URL: nothing to start or stop."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.started = False

    def release(self) -> bool:
        return False


def acquire(settings: Settings, role: str) -> Lease | ExternalDatabase:
    """The database this process should use, held until `.release()`: SHIELDES_DATABASE_URL, or the
    embedded Postgres under the data dir (started if needed; released by its last user, stopped)."""
    if settings.database_url:
        return ExternalDatabase(libpq_url(settings.database_url))
    from shieldes.embedded import EmbeddedPostgres

    return EmbeddedPostgres(settings.data_dir).acquire(role)


def legacy_data_dir_notice(settings: Settings) -> str | None:
    """Earlier versions kept the embedded database in ./.shieldes: say so rather than silently use
    an empty one (whose keys the old gateway would not know)."""
    old = Path(".shieldes").absolute()
    if settings.database_url or "data_dir" in settings.model_fields_set or old == settings.data_dir:
        return None
    if not (old / "pg" / "PG_VERSION").exists():
        return None
    return (f"{old} holds an embedded database from an earlier shieldes (which kept it in ./.shieldes); "
            f"this one uses {settings.data_dir}: set SHIELDES_DATA_DIR={old} to keep using the old one")


def embedded_database_url(data_dir: Path) -> str:
    """Start (or reuse) the embedded Postgres under `data_dir` for the rest of this process (benches);
    the lease ends when the process exits, which stops the server if it was its last user."""
    import atexit

    from shieldes.embedded import EmbeddedPostgres

    lease = EmbeddedPostgres(data_dir).acquire("bench")
    atexit.register(lease.release)
    return lease.url


def resolve_database_url(settings: Settings) -> str:
    if settings.database_url:
        return libpq_url(settings.database_url)
    return embedded_database_url(settings.data_dir)


def libpq_url(url: str) -> str:
    """Accept SQLAlchemy spellings (postgresql+psycopg://) too; psycopg wants plain postgresql://."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.startswith(("postgresql", "postgres")):
        raise DatabaseUnavailable(
            f"SHIELDES_DATABASE_URL must look like postgresql://user:pass@host:port/db, got {redact_url(url)!r}"
        )
    return "postgresql://" + rest


def sqlalchemy_url(url: str) -> str:
    return "postgresql+psycopg://" + libpq_url(url).partition("://")[2]


_PASSWORD_PARAM = re.compile(r"(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s]*)")


def redact_url(url: str) -> str:
    """The URL without its password (multi-host URLs `host1:5432,host2:5432` included): the one in
    `user:password@`, with or without a scheme before it (a URL missing its `postgresql://` is
    still printed in the error that says so), and a `password=` parameter (`?password=...`, or a
    libpq `key=value` string)."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, hostpart = (rest if sep else url).rpartition("@")
    if at and ":" in userinfo and "/" not in userinfo:
        url = f"{scheme + sep if sep else ''}{userinfo.split(':', 1)[0]}:***@{hostpart}"
    return _PASSWORD_PARAM.sub(lambda m: m.group(1) + "***", url)


def describe_url(url: str) -> str:
    """Where a URL points, for messages (never the password): `user@host:port/db` as a URL writes
    it, a unix socket directory as `user@/path (unix socket)/db`. libpq multi-host URLs
    (`postgresql://u@h1:5432,h2:5432/db?target_session_attrs=read-write`) list every host."""
    try:
        info = conninfo_to_dict(libpq_url(url)) if "://" in url else {}
    except (psycopg.Error, DatabaseUnavailable):
        return "<unparseable url>"
    hosts = str(info.get("host") or "").split(",")
    ports = str(info.get("port") or "5432").split(",")
    ports += [ports[-1]] * (len(hosts) - len(ports))
    where = ",".join(_where(h, p) for h, p in zip(hosts, ports, strict=False))
    user = str(info.get("user") or "")
    return f"{user + '@' if user else ''}{where}/{info.get('dbname') or user or 'postgres'}"


def _where(host: str, port: str) -> str:
    if host and not host.startswith("/"):
        return f"{host}:{port}"
    at = f", port {port}" if port != "5432" else ""  # the socket file is .s.PGSQL.<port>
    return f"{host} (unix socket{at})" if host else f"the default unix socket{at}"


def translate(exc: BaseException, url: str) -> DatabaseUnavailable:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DatabaseUnavailable(
        f"cannot reach Postgres at {describe_url(url)}: {first_line}; check SHIELDES_DATABASE_URL and that "
        "the server is running"
    )


@contextmanager
def sync_connection(url: str, *, autocommit: bool = True, timeout: float = 10.0) -> Iterator[psycopg.Connection]:
    try:
        conn = psycopg.connect(url, autocommit=autocommit, connect_timeout=max(1, int(timeout)))
    except psycopg.Error as exc:
        raise translate(exc, url) from exc
    try:
        yield conn
    finally:
        conn.close()


async def async_connection(url: str, *, timeout: int = 5) -> psycopg.AsyncConnection[Any]:
    """An autocommit connection; a server that cannot be reached raises DatabaseUnavailable (translate)."""
    try:
        return await psycopg.AsyncConnection.connect(url, connect_timeout=timeout, autocommit=True)
    except psycopg.Error as exc:
        raise translate(exc, url) from exc


def schema_revision(conn: psycopg.Connection) -> str | None:
    row = conn.execute(
        "SELECT to_regclass('public.alembic_version') IS NOT NULL"
    ).fetchone()
    if not row or not row[0]:
        return None
    version = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return str(version[0]) if version else None


async def async_schema_revision(conn: psycopg.AsyncConnection) -> str | None:
    """One round trip, on an autocommit connection outside a transaction (a database without the
    table fails this one statement, nothing else)."""
    try:
        cur = await conn.execute("SELECT version_num FROM alembic_version")
    except psycopg.errors.UndefinedTable:
        return None
    version = await cur.fetchone()
    return str(version[0]) if version else None


async def missing_tables(conn: psycopg.AsyncConnection, names: list[str]) -> set[str]:
    """Which of these tables (in the search path) do not exist: one catalog read, no lock taken, so
    partitions that exist already need no wait on the advisory lock another node's upkeep holds."""
    cur = await conn.execute("SELECT n FROM unnest(%s::text[]) AS n WHERE to_regclass(quote_ident(n)) IS NULL",
                             (names,))
    return {str(r[0]) for r in await cur.fetchall()}


def is_newer(revision: str) -> bool:
    """A revision this code does not know because a later release added it (revisions are numbered)."""
    return revision.isdigit() and int(revision) > int(SCHEMA_HEAD)


def newer_schema_message(revision: str) -> str:
    # `shieldes db upgrade` of this release cannot help (alembic knows no way down from a revision it
    # lacks): what helps is the release that migrated the database, i.e. finishing the rollout.
    return (
        f"the database schema is at revision {revision}, newer than this shieldes (which needs {SCHEMA_HEAD}): "
        "a newer release migrated it; run that release's shieldes here (finish the rolling upgrade)"
    )


def require_head(revision: str | None) -> None:
    """Refuse a database whose schema is not the one this code was written for."""
    if revision == SCHEMA_HEAD:
        return
    if revision is None:
        raise SchemaNotAtHead(
            "the database has no shieldes schema; run `shieldes db upgrade` (or `alembic upgrade head`)"
        )
    if is_newer(revision):
        raise SchemaNotAtHead(newer_schema_message(revision))
    raise SchemaNotAtHead(
        f"the database schema is at revision {revision} but this shieldes needs {SCHEMA_HEAD}; "
        "run `shieldes db upgrade` (or `alembic upgrade head`)"
    )


def upgrade(url: str, revision: str = "head") -> None:
    """`alembic upgrade` against `url`, using the repository's alembic/ directory."""
    from alembic.config import Config

    from alembic import command

    ini = REPO_ROOT / "alembic.ini"
    script_location = REPO_ROOT / "alembic"
    if not script_location.is_dir():
        raise SchemaNotAtHead(
            f"migrations not found at {script_location}; run shieldes from a checkout of the repository"
        )
    cfg = Config(str(ini)) if ini.exists() else Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.attributes["database_url"] = url
    cfg.attributes["skip_logging"] = True
    with sync_connection(url) as conn:
        current = schema_revision(conn)
    if current is not None and is_newer(current):  # else alembic's traceback: "Can't locate revision"
        raise SchemaNotAtHead(newer_schema_message(current))
    try:
        command.upgrade(cfg, revision)
    except psycopg.OperationalError as exc:
        raise translate(exc, url) from exc
    except Exception as exc:
        cause = exc.__cause__ or exc
        if isinstance(cause, psycopg.OperationalError):
            raise translate(cause, url) from exc
        raise
