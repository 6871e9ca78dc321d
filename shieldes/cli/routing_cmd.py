"""`shieldes routing set|list`: how requests for a model (or alias) choose among its deployments."""

from __future__ import annotations

import click

from shieldes.cli.common import cli_context, json_option, read_config, run, run_read, write
from shieldes.cli.oneline import OneLineGroup, handle_errors
from shieldes.cli.output import emit
from shieldes.errors import InvalidRequest
from shieldes.projections.shared_commands import SetRouting
from shieldes.routing.strategies import DEFAULT_STRATEGY, STRATEGIES
from shieldes.views import routing_rows


@click.group("routing", cls=OneLineGroup)
def routing_group() -> None:
    """Routing strategies per model (docs/routing.md)."""


@routing_group.command("set")
@click.argument("model")
@click.option("--strategy", type=click.Choice(STRATEGIES), help=f"default: {DEFAULT_STRATEGY}")
@click.option("--default", "to_default", is_flag=True, help="forget the model's strategy: use the default")
@json_option
@handle_errors
def set_(model: str, strategy: str | None, to_default: bool, as_json: bool) -> None:
    """Route MODEL (a model or alias name) with --strategy."""
    ctx = cli_context()
    if strategy is not None and to_default:
        raise InvalidRequest("pass either --strategy or --default, not both")
    if strategy is None and not to_default:
        raise InvalidRequest(f"pass --strategy {'|'.join(STRATEGIES)}, or --default to forget {model}'s strategy")
    written = run(write(SetRouting(model, None if to_default else strategy)))
    emit({"model": model, "strategy": strategy or DEFAULT_STRATEGY, "position": written.position},
         as_json=ctx.as_json)


@routing_group.command("list")
@json_option
@handle_errors
def list_(as_json: bool) -> None:
    """Every served model and alias with its strategy (`source`: set, or the default)."""
    ctx = cli_context()
    state = run_read(read_config()).state
    emit(routing_rows(state, DEFAULT_STRATEGY), as_json=ctx.as_json, columns=("model", "strategy", "source"))
