"""`shieldes config show --at POINT` and `shieldes config diff A B`: the config as it was, and who
changed what between two points. POINT is a log position (42) or an ISO 8601 time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from shieldes.cli.common import cli_context, json_option, open_store, run_read
from shieldes.cli.oneline import OneLineGroup, handle_errors
from shieldes.cli.output import emit, plain_number, table_cell
from shieldes.cli.timefmt import is_time_field, table_time
from shieldes.config_writer import ConfigView, load_config
from shieldes.events.catalog import CONFIG_STREAM
from shieldes.events.codec import Codec
from shieldes.events.store import EventStore, RecordedEvent
from shieldes.projections.config import apply_recorded
from shieldes.snapshots.history import Point, config_view, diff, diff_answer, parse_point
from shieldes.snapshots.history import check_in_log as check_point

if TYPE_CHECKING:
    from shieldes.events.pg_store import PostgresEventStore


@click.group("config", cls=OneLineGroup)
def config_group() -> None:
    """The configuration as it was at any point in the log."""


async def _start(store: PostgresEventStore, point: Point) -> ConfigView | None:
    """The newest snapshot before `point` to fold from (None: position 0): at a million keys a fold
    of the whole config stream takes minutes."""
    from shieldes.snapshots.config_start import config_base  # the whole codec, for these commands only
    from shieldes.snapshots.seal import mac_key

    return await config_base(store, store.connections, mac_key(cli_context().settings.cluster_secret), point)


async def _events_until(store: EventStore, after: int, point: Point) -> list[RecordedEvent]:
    """The config events after position `after` that `point` includes (up to the first it does not)."""
    events: list[RecordedEvent] = []
    while page := await store.read(events[-1].position if events else after, 5000, stream=CONFIG_STREAM):
        for e in page:
            if not point.includes(e):
                return events
            events.append(e)
    return events


def _human_cell(field: str, value: Any) -> Any:
    if field == "budget" and value is not None:
        return f"{plain_number(value['amount_usd'])} USD/{value['period']}"
    if is_time_field(field):
        return table_time(value)
    return value


def check_in_log(point: Point, head: int, *, omit: str | None = "--at") -> None:
    """A point past the end of the log (or a time to come) is refused, not shown as 'now'."""
    check_point(point, head, datetime.now(UTC), omit=omit)


@config_group.command("show")
@click.option("--at", "at", default=None, metavar="TIMESTAMP|POSITION", help="default: now")
@json_option
@handle_errors
def show(at: str | None, as_json: bool) -> None:
    """Providers, aliases, routing, pricing, teams and keys (never key hashes) as of a point in the log."""
    ctx = cli_context()
    point = parse_point(at) if at is not None else None

    async def go() -> dict[str, Any]:
        async with open_store(ctx.database_url()) as store:
            if point is not None:
                check_in_log(point, await store.head())
            view = await load_config(
                store, Codec(), upto=point.position if point else None, until=point.time if point else None,
                base=await _start(store, point or Point(position=await store.head())),
            )
        return {"at": at or "now", "position": view.position, **config_view(view.state)}

    out = run_read(go())
    if ctx.as_json:
        emit(out, as_json=True)
        return
    click.echo(f"config at {out['at']} (config position {out['position']})")
    for section in ("providers", "aliases", "routing", "pricing", "teams", "keys"):
        click.echo(f"\n{section}:")
        emit([{k: _human_cell(k, v) for k, v in row.items()} for row in out[section]], as_json=False)


@config_group.command("diff")
@click.argument("a")
@click.argument("b")
@json_option
@handle_errors
def diff_cmd(a: str, b: str, as_json: bool) -> None:
    """What changed from point A to point B (positions or ISO times), by which events and actors."""
    ctx = cli_context()
    pa, pb = parse_point(a), parse_point(b)

    async def go() -> dict[str, Any]:
        async with open_store(ctx.database_url()) as store:
            head = await store.head()
            for point in (pa, pb):  # a future time is a fine "up to now" for B; a position is not
                check_in_log(Point(position=point.position), head, omit=None)
            codec = Codec()
            from shieldes.snapshots.config_diff import check_order, scoped_diff  # these commands only

            # the entities the events between touch, from their own events; else the whole config
            scoped = await scoped_diff(store, codec, pa, pb, ("A", "B"))
            if scoped is not None:
                start, events, changes = scoped
                return diff_answer(a, start, b, events[-1].position if events else start, len(events), changes)
            before = await load_config(store, codec, upto=pa.position, until=pa.time, base=await _start(store, pa))
            await check_order(store, before.position, pa, pb, ("A", "B"))
            between = await _events_until(store, before.position, pb)
        after = apply_recorded(before.state, between, codec)
        pos_b = between[-1].position if between else before.position
        changes = diff(before.state, after, between)
        return diff_answer(a, before.position, b, pos_b, len(between), changes)

    out = run_read(go())
    if ctx.as_json:
        emit(out, as_json=True)
        return
    click.echo(f"config from position {out['from']['position']} to {out['to']['position']}: "
               f"{out['events']} events, {len(out['changes'])} entities changed")
    rows = [
        {
            "change": c["change"], "kind": c["kind"], "name": c["name"],
            "fields": ", ".join(f"{f}: {table_cell(_human_cell(f, v['from']))} -> {table_cell(_human_cell(f, v['to']))}"
                                for f, v in c["fields"].items()),
            "by": "; ".join(f"#{e['position']} {e['type']} by {e['actor']} at {table_time(e['recorded_at'])}"
                            for e in c["events"]),
        }
        for c in out["changes"]
    ]
    emit(rows, as_json=False)
