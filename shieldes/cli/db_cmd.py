"""`shieldes db upgrade|status|url|start|stop`: the schema, and the embedded Postgres under the data dir."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from shieldes.cli.common import bounded_read, cli_context, json_option, run
from shieldes.cli.oneline import OneLineGroup, handle_errors
from shieldes.cli.output import emit
from shieldes.cli.timefmt import table_time
from shieldes.errors import InvalidRequest

# The driver and the embedded server's code are imported by the command that runs: `db --help` needs
# neither.
if TYPE_CHECKING:
    from shieldes.embedded import EmbeddedPostgres


@click.group("db", cls=OneLineGroup)
def db_group() -> None:
    """Database schema and the embedded Postgres."""


def _embedded() -> EmbeddedPostgres:
    from shieldes.embedded import EmbeddedPostgres

    ctx = cli_context()
    if ctx.settings.database_url:
        raise InvalidRequest(
            "SHIELDES_DATABASE_URL is set, so there is no embedded Postgres to manage; "
            "unset it to use the embedded one"
        )
    return EmbeddedPostgres(ctx.settings.data_dir)


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="alembic revision to upgrade to")
@json_option
@handle_errors
def upgrade(revision: str, as_json: bool) -> None:
    """Apply migrations (same as `alembic upgrade head` from the repository root)."""
    from shieldes import db

    ctx = cli_context()
    url = ctx.database_url()
    db.upgrade(url, revision)
    with db.sync_connection(url) as conn:
        current = db.schema_revision(conn)
    emit({"revision": current, "database": db.describe_url(url)}, as_json=ctx.as_json)


@db_group.command("status")
@json_option
@handle_errors
def status(as_json: bool) -> None:
    """Where the database is, whether it runs, its schema revision and who uses it."""
    from shieldes import db
    from shieldes.embedded import EmbeddedPostgres

    ctx = cli_context()
    data: dict[str, object]
    if ctx.settings.database_url:
        url = db.libpq_url(ctx.settings.database_url)
        data = {"mode": "external", "database": db.describe_url(url), "url": db.redact_url(url)}
        data["schema_revision"] = _revision(url)
        data["running"] = True
    else:
        st = EmbeddedPostgres(ctx.settings.data_dir).status()
        data = {"mode": "embedded", **st.as_dict()}
        data["schema_revision"] = None
        if st.url:
            data["schema_revision"] = _revision(st.url)
    data["schema_head"] = db.SCHEMA_HEAD
    data["notice"] = db.legacy_data_dir_notice(ctx.settings)
    if ctx.as_json:
        emit(data, as_json=True)
        return
    users: list[dict[str, Any]] = data.get("users") or []  # type: ignore[assignment]
    shown = {
        "mode": data["mode"],
        "data_dir": data.get("data_dir", "-"),
        "running": f"yes (pid {data['pid']})" if data.get("pid") else ("yes" if data.get("running") else "no"),
        "url": data.get("url") or "-",
        "schema": f"{data['schema_revision'] or ('none' if data.get('url') else 'unknown (not running)')} "
                  f"(this shieldes needs {db.SCHEMA_HEAD})",
        "users": ", ".join(
            f"{u['role']} (pid {u['pid']}, since {table_time(u['since'])})"
            for u in users
        ) or "-",
    }
    if data["notice"]:
        shown["notice"] = data["notice"]
    if data["mode"] == "embedded":
        shown["kept_running"] = "yes (`shieldes db stop` stops it)" if data.get("pinned") else "no"
    emit(shown, as_json=False, vertical=True)


def _revision(url: str) -> str | None:
    """The schema revision, read within SHIELDES_DB_ADMIN_READ_TIMEOUT (a lock held, a paused
    server: an error saying what to do, not a status that never returns)."""
    from shieldes import db

    async def read() -> str | None:
        conn = await db.async_connection(url)
        try:
            return await db.async_schema_revision(conn)
        finally:
            await conn.close()

    return run(bounded_read(read()))


@db_group.command("url")
@json_option
@handle_errors
def url(as_json: bool) -> None:
    """Print a libpq URL (for psql, psycopg, SHIELDES_DATABASE_URL). An embedded Postgres that is not
    running is started and kept running until `shieldes db stop`."""
    from shieldes import db
    from shieldes.embedded import EmbeddedPostgres

    ctx = cli_context()
    if ctx.settings.database_url:
        value = db.libpq_url(ctx.settings.database_url)
        started = False
    else:
        lease = EmbeddedPostgres(ctx.settings.data_dir).acquire("shieldes db url", pin=True)
        value, started = lease.url, lease.started
        lease.release()
        if started and not ctx.as_json:
            click.echo("started the embedded Postgres; it keeps running until `shieldes db stop`", err=True)
    if ctx.as_json:
        emit({"url": value, "started": started}, as_json=True)
    else:
        click.echo(value)


@db_group.command("start")
@json_option
@handle_errors
def start(as_json: bool) -> None:
    """Start the embedded Postgres and keep it running until `shieldes db stop`."""
    ctx = cli_context()
    lease = _embedded().acquire("shieldes db start", pin=True)
    lease.release()
    emit({"started": lease.started, "url": lease.url}, as_json=ctx.as_json, vertical=True)


@db_group.command("stop")
@click.option("--force", is_flag=True, help="stop it even while shieldes nodes use it")
@json_option
@handle_errors
def stop(force: bool, as_json: bool) -> None:
    """Stop the embedded Postgres (refused while a node uses it, unless --force)."""
    ctx = cli_context()
    embedded = _embedded()
    stopped = embedded.stop(force=force)
    emit({"stopped": stopped, "data_dir": str(embedded.data_dir),
          "note": None if stopped else "it was not running"}, as_json=ctx.as_json, vertical=True)
