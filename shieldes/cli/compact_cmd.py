"""`shieldes compact [--retain DURATION]`: fold old raw usage into hourly rollups, once."""

from __future__ import annotations

from typing import Any

import click

from shieldes.cli.common import cli_context, json_option, run
from shieldes.cli.oneline import OneLineCommand, handle_errors
from shieldes.cli.output import emit
from shieldes.cli.snapshot_cmd import checked_pool
from shieldes.timeparse import parse_duration


@click.command("compact", cls=OneLineCommand)
@click.option("--retain", "retain", default=None, metavar="DURATION",
              help="keep raw usage newer than this (e.g. 7d; 0s folds every raw event it can); "
                   "default SHIELDES_COMPACT_RETAIN_SECONDS")
@json_option
@handle_errors
def compact(retain: str | None, as_json: bool) -> None:
    """Fold raw usage events older than the retention window into hourly rollups (totals unchanged).

    Runs once, holding the leader lock; refuses if a node is leader (it compacts on its schedule)."""
    from shieldes.snapshots.compaction import compact_once

    ctx = cli_context()
    seconds = parse_duration(retain, "--retain") if retain is not None else ctx.settings.compact_retain_seconds

    async def go() -> dict[str, Any]:
        async with checked_pool(ctx.database_url(), size=3) as pool:
            report = await compact_once(
                pool, holder=f"cli:{ctx.settings.node_id}", retain_seconds=seconds,
                node_timeout=ctx.settings.node_timeout,
            )
            return report.as_dict()

    emit(run(go()), as_json=ctx.as_json,
         columns=["cutoff", "limited_by", "replaced_events", "rollup_events", "snapshots_deleted", "seconds"])
