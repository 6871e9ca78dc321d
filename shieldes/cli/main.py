"""The `shieldes` command: a click group; each area registers its commands from its own module."""

from __future__ import annotations

import click

from shieldes.cli.common import CliContext
from shieldes.settings import Settings


@click.group()
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of tables (every command)")
@click.pass_context
def cli(ctx: click.Context, as_json: bool) -> None:
    """shieldes: an AI gateway whose cluster state lives in a Postgres event log."""
    ctx.obj = CliContext(settings=Settings(), as_json=as_json)


def _register() -> None:
    from shieldes.cli import config_io_cmd, db_cmd, serve_cmd

    cli.add_command(db_cmd.db_group)
    cli.add_command(serve_cmd.serve)
    cli.add_command(config_io_cmd.config_io_group)


_register()


def main() -> None:
    cli(prog_name="shieldes")
