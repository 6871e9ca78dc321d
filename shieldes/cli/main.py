"""The `shieldes` command: a click group; each area registers its commands from its own module."""

from __future__ import annotations

import click
from pydantic import ValidationError

from shieldes.cli.common import CliContext, OneLineGroup, fail
from shieldes.settings import Settings


@click.group(cls=OneLineGroup)
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of tables (every command)")
@click.pass_context
def cli(ctx: click.Context, as_json: bool) -> None:
    """shieldes: an AI gateway whose cluster state lives in a Postgres event log."""
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"SHIELDES_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
        )
        fail(f"invalid setting {problems}; fix the environment variable or .env entry")
    ctx.obj = CliContext(settings=settings, as_json=as_json, role=f"shieldes {ctx.invoked_subcommand or ''}".strip())
    ctx.call_on_close(ctx.obj.close)


def _register() -> None:
    from shieldes.cli import (
        admin_token_cmd,
        audit_cmd,
        budget_cmd,
        cluster_cmd,
        compact_cmd,
        config_cmd,
        config_io_cmd,
        db_cmd,
        doctor_cmd,
        key_cmd,
        logs_cmd,
        model_cmd,
        pricing_cmd,
        provider_cmd,
        routing_cmd,
        secrets_cmd,
        serve_cmd,
        snapshot_cmd,
        team_cmd,
        usage_cmd,
    )

    for command in (
        db_cmd.db_group,
        serve_cmd.serve,
        provider_cmd.provider_group,
        routing_cmd.routing_group,
        model_cmd.model_group,
        pricing_cmd.pricing_group,
        team_cmd.team_group,
        key_cmd.key_group,
        budget_cmd.budget_group,
        usage_cmd.usage,
        logs_cmd.logs,
        audit_cmd.audit_group,
        snapshot_cmd.snapshot_group,
        compact_cmd.compact,
        config_cmd.config_group,
        cluster_cmd.cluster_group,
        admin_token_cmd.admin_token_group,
        secrets_cmd.secrets_group,
        doctor_cmd.doctor,
    ):
        cli.add_command(command)
    # `config show/diff` (history) and `config import/export` (interchange) form one group
    config_cmd.config_group.add_command(config_io_cmd.config_import)
    config_cmd.config_group.add_command(config_io_cmd.config_export)


_register()


def main() -> None:
    cli(prog_name="shieldes")
