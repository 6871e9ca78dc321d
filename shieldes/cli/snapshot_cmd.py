"""`shieldes snapshot create|list`: write a snapshot of the current projection, list stored ones."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import click

from shieldes.cli.common import cli_context, json_option, run, run_read
from shieldes.cli.oneline import OneLineGroup, handle_errors
from shieldes.cli.output import emit

# The pool, the driver and the snapshot codec are imported where a command runs: `snapshot --help`
# and `compact --help` need none of them.
if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool


@asynccontextmanager
async def checked_pool(url: str, *, size: int = 2) -> AsyncIterator[AsyncConnectionPool[Any]]:
    """A small pool for one command, refusing a database whose schema is not at head."""
    from shieldes import db
    from shieldes.events.pg_store import open_pool

    pool = open_pool(url, size=size, name="shieldes-cli")
    try:
        await pool.open(wait=True, timeout=10)
    except Exception as exc:  # psycopg_pool.PoolTimeout wraps the connection error
        await pool.close()
        raise db.translate(exc, url) from exc
    try:
        async with pool.connection() as conn:
            db.require_head(await db.async_schema_revision(conn))
        yield pool
    finally:
        await pool.close()


@click.group("snapshot", cls=OneLineGroup)
def snapshot_group() -> None:
    """Projection snapshots (nodes start from the newest one plus the tail of the log)."""


@snapshot_group.command("create")
@json_option
@handle_errors
def create(as_json: bool) -> None:
    """Build the projection now (newest snapshot + tail) and store it as a new snapshot."""
    from shieldes.snapshots.codec import mac_key
    from shieldes.snapshots.loader import load_projection_report
    from shieldes.snapshots.store import save_snapshot

    ctx = cli_context()

    async def go() -> dict[str, Any]:
        async with checked_pool(ctx.database_url()) as pool:
            key = mac_key(ctx.settings.cluster_secret)
            projection, report = await load_projection_report(pool, snapshot_key=key)
            info = await save_snapshot(
                pool, projection, node_id=f"cli:{ctx.settings.node_id}", keep=ctx.settings.snapshots_kept, key=key
            )
            out = info.as_dict()
            out["built_from_snapshot"] = report.snapshot_id
            out["tail_events"] = report.tail_events
            return out

    emit(run(go()), as_json=ctx.as_json,
         columns=["id", "position", "size_bytes", "built_from_snapshot", "tail_events", "created_at"])


@snapshot_group.command("list")
@json_option
@handle_errors
def list_(as_json: bool) -> None:
    """Stored snapshots, newest first."""
    from shieldes.snapshots.store import list_snapshots

    ctx = cli_context()

    async def go() -> list[dict[str, Any]]:
        async with checked_pool(ctx.database_url()) as pool:
            return [s.as_dict() for s in await list_snapshots(pool)]

    emit(run_read(go()), as_json=ctx.as_json,
         columns=["id", "position", "size_bytes", "schema_version", "format", "compatible", "node_id",
                  "leader_epoch", "created_at"])
