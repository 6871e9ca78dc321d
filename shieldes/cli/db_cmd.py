"""`shieldes db upgrade`: the same migrations as `alembic upgrade head`."""

from __future__ import annotations

import click

from shieldes import db
from shieldes.cli.common import cli_context, emit, handle_errors, json_option


@click.group("db")
def db_group() -> None:
    """Database schema."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="alembic revision to upgrade to")
@json_option
@handle_errors
def upgrade(revision: str, as_json: bool) -> None:
    """Apply migrations (same as `alembic upgrade head` from the repository root)."""
    ctx = cli_context()
    url = ctx.database_url()
    db.upgrade(url, revision)
    with db.sync_connection(url) as conn:
        current = db.schema_revision(conn)
    emit({"revision": current, "database": db.describe_url(url)}, as_json=ctx.as_json)



