"""`shieldes budget set|show|remove`: USD budgets per key or team, per period (1d, 30d, 1mo). The
commands (the domain model) are imported by the direct path only: a remote command does not need them."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import click

from shieldes.cli.common import cli_context, json_option, query, read_config, read_teams, run, run_read, write
from shieldes.cli.oneline import OneLineGroup, handle_errors
from shieldes.cli.output import emit, notes
from shieldes.errors import CommandRejected, InvalidRequest
from shieldes.projections.periods import period_days, period_reset_at, unix_day
from shieldes.projections.state import Budget

if TYPE_CHECKING:
    from shieldes.cli.remote import AdminApi

NANO = Decimal(1_000_000_000)


def subject(key: str | None, team: str | None) -> tuple[str, str]:
    if (key is None) == (team is None):
        raise InvalidRequest("pass a KEY (name or id) or --team T, exactly one")
    return ("key", key) if key is not None else ("team", team)  # type: ignore[return-value]


@click.group("budget", cls=OneLineGroup)
def budget_group() -> None:
    """Budgets in USD per period, for a key or a team."""


@budget_group.command("set")
@click.argument("key", required=False)
@click.option("--team", help="set a team budget instead of a key budget")
@click.option("--amount", type=float, required=True, metavar="USD", help="budget in USD per period")
@click.option("--period", default="30d", show_default=True, metavar="P", help="1d, 30d (Nd) or 1mo")
@json_option
@handle_errors
def set_(key: str | None, team: str | None, amount: float, period: str, as_json: bool) -> None:
    """Set the budget of KEY (or of --team T)."""
    ctx = cli_context()
    kind, ref = subject(key, team)
    api = ctx.remote()
    if api is not None:
        from shieldes.cli.remote import segment

        answer = api.call("PUT", f"/budgets/{kind}/{segment(ref)}", {"amount_usd": amount, "period": period})
        row = {"subject_kind": kind, "subject": ref, "subject_id": answer["subject_id"],
               "amount_usd": answer["amount_usd"], "period": answer["period"], "position": answer["position"]}
        notes(row, answer.get("unpriced_models") or [], [], ctx.as_json)
        emit(row, as_json=ctx.as_json)
        return
    from shieldes.projections.commands import SetBudget  # the direct path only (as the rest of this module)
    from shieldes.views import budget_unpriced

    written = run(write(SetBudget(kind, ref, amount, period)))
    data = written.events[0].data
    row = {"subject_kind": kind, "subject": ref, "subject_id": data["subject_id"], "amount_usd": data["amount_usd"],
           "period": data["period"], "position": written.position}
    # as `key create --budget` says it: the models this budget refuses for want of a price
    notes(row, budget_unpriced(written.state, kind, data["subject_id"]), [], ctx.as_json)
    emit(row, as_json=ctx.as_json)


@budget_group.command("remove")
@click.argument("key", required=False)
@click.option("--team", help="remove a team budget instead of a key budget")
@json_option
@handle_errors
def remove(key: str | None, team: str | None, as_json: bool) -> None:
    """Remove the budget of KEY (or of --team T): no spend limit."""
    ctx = cli_context()
    kind, ref = subject(key, team)
    api = ctx.remote()
    if api is not None:
        from shieldes.cli.remote import segment

        answer = api.call("DELETE", f"/budgets/{kind}/{segment(ref)}")
        emit({"subject_kind": kind, "subject": ref, "removed": True, "position": answer["position"]},
             as_json=ctx.as_json)
        return
    from shieldes.projections.commands import SetBudget, find_key, find_team

    view = run_read(read_config())
    found = find_team(view.state, ref) if kind == "team" else find_key(view.state, ref)
    if found.budget is None:  # refused as the decide function (and so the admin API) refuses it
        raise CommandRejected(f"{kind} {found.name!r} has no budget; nothing to remove")
    written = run(write(SetBudget(kind, ref, None, found.budget.period)))
    emit({"subject_kind": kind, "subject": ref, "removed": True, "position": written.position},
         as_json=ctx.as_json)




@budget_group.command("show")
@click.argument("key", required=False)
@click.option("--team", help="show a team budget instead of a key budget")
@json_option
@handle_errors
def show(key: str | None, team: str | None, as_json: bool) -> None:
    """Budget of KEY (or --team T) with the spend so far in the current period (from SQL)."""
    ctx = cli_context()
    kind, ref = subject(key, team)
    today = unix_day(time.time())
    api = ctx.remote()
    if api is not None:
        target_id, name, budget, spent_nusd = _remote_target(api, kind, ref)
        period = budget.period if budget else "30d"
        start = datetime.fromtimestamp(period_days(period, today).start * 86400, UTC)
        if budget is None:  # the node counts spend in a budget's period only: the last 30 days, as direct mode
            rows = api.get("/usage", group_by=kind, since=start.date().isoformat(), **{kind: target_id})["data"]
            spent_nusd = sum(int(r["cost_nusd"]) for r in rows)
    else:
        # a team's budget needs the teams only (no key loaded); a key's, the config
        state = run_read(read_teams()).state if kind == "team" else run_read(read_config()).state
        target_id, name, budget = _target(state, kind, ref)
        period = budget.period if budget else "30d"
        start = datetime.fromtimestamp(period_days(period, today).start * 86400, UTC)
        from shieldes.events.queries import spent_since_sql

        sql = spent_since_sql(kind)
        spent_nusd = int(run_read(query(sql, (target_id, start)))[0]["nusd"])
    spent = Decimal(spent_nusd) / NANO
    row: dict[str, Any] = {
        "subject_kind": kind,
        "subject": name,
        "subject_id": target_id,
        "amount_usd": budget.amount_usd if budget else None,
        "period": budget.period if budget else None,
        "period_start": start.isoformat().replace("+00:00", "Z"),
        "resets_at": period_reset_at(period, today).isoformat().replace("+00:00", "Z") if budget else None,
        "spent_usd": float(spent),
        "spent_nusd": spent_nusd,
        "remaining_usd": float(max(Decimal(0), Decimal(str(budget.amount_usd)) - spent)) if budget else None,
    }
    emit(row, as_json=ctx.as_json, vertical=True)


def _remote_target(api: AdminApi, kind: str, ref: str) -> tuple[str, str, Budget | None, int]:
    """The subject, its budget and the spend in its current period as the node answering counts
    it (the usage in the log plus what that node has not flushed yet)."""
    from shieldes.cli.remote import segment

    if kind == "team":
        t = api.call("GET", f"/teams/{segment(ref)}",
                     not_found=f"no team named or with id {ref!r}; create it with `shieldes team create`")
        budget = Budget(t["budget_usd"], t["budget_period"]) if t["budget_usd"] is not None else None
        return t["id"], t["name"], budget, round((t["spend_usd_in_period"] or 0) * 1e9)
    k = api.call("GET", f"/keys/{segment(ref)}",
                 not_found=f"no virtual key named or with id {ref!r}; see `shieldes key list`")
    budget = Budget(k["budget"]["amount_usd"], k["budget"]["period"]) if k["budget"] is not None else None
    return k["id"], k["name"], budget, round((k["spend_usd_in_period"] or 0) * 1e9)


def _target(state: Any, kind: str, ref: str) -> tuple[str, str, Budget | None]:
    from shieldes.projections.commands import find_key, find_team

    if kind == "team":
        t = find_team(state, ref, subject=True)  # `team_not_found`, as in remote mode
        return t.id, t.name, t.budget
    k = find_key(state, ref)
    return k.id, k.name, k.budget
