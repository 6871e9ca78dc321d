"""`shieldes team create|list`: teams group keys under one shared budget. The domain model is
imported by the direct path only: a remote command does not need it."""

from __future__ import annotations

import click

from shieldes.cli.common import budget_period_for, cli_context, json_option, read_teams, run, run_read, write
from shieldes.cli.oneline import OneLineGroup, handle_errors
from shieldes.cli.output import emit


@click.group("team", cls=OneLineGroup)
def team_group() -> None:
    """Teams (a shared budget over several keys)."""


@team_group.command("create")
@click.argument("name")
@click.option("--budget", "budget_usd", type=float, metavar="USD", help="team budget in USD per period")
@click.option("--budget-period", metavar="P", help="1d, 30d (Nd) or 1mo; with --budget (default 30d)")
@json_option
@handle_errors
def create(name: str, budget_usd: float | None, budget_period: str | None, as_json: bool) -> None:
    """Create team NAME."""
    ctx = cli_context()
    budget_period = budget_period_for(budget_usd, budget_period)
    api = ctx.remote()
    if api is not None:
        body = {"name": name, **({"budget": budget_usd, "budget_period": budget_period} if budget_usd is not None
                                 else {})}
        answer = api.call("POST", "/teams", body, create=True)
        emit({c: answer[c] for c in ("id", "name", "budget_usd", "budget_period", "position")}, as_json=ctx.as_json)
        return
    from shieldes import secrets  # the direct path only: a remote command loads no domain model
    from shieldes.projections.commands import CreateTeam

    team_id = secrets.new_id("team")
    written = run(write(CreateTeam(team_id, name, budget_usd, budget_period)))
    emit(
        {"id": team_id, "name": name, "budget_usd": budget_usd,
         "budget_period": budget_period if budget_usd is not None else None, "position": written.position},
        as_json=ctx.as_json,
    )


@team_group.command("list")
@json_option
@handle_errors
def list_(as_json: bool) -> None:
    """Every team with its budget and number of keys."""
    ctx = cli_context()
    columns = ("id", "name", "budget_usd", "budget_period", "keys")
    api = ctx.remote()
    if api is not None:
        emit([{c: t[c] for c in columns} for t in api.every("/teams")], as_json=ctx.as_json, columns=columns)
        return
    state = run_read(read_teams()).state  # the teams and their counts: no key is loaded
    rows = []
    for team in sorted(state.teams.values(), key=lambda t: t.name):
        rows.append({
            "id": team.id,
            "name": team.name,
            "budget_usd": team.budget.amount_usd if team.budget else None,
            "budget_period": team.budget.period if team.budget else None,
            "keys": state.team_keys.get(team.id, 0),
        })
    emit(rows, as_json=ctx.as_json, columns=columns)
