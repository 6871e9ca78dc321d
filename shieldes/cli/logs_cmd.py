"""`shieldes logs`: the per-request log (the `request_log` view), filtered, newest N printed oldest
first; `--follow` keeps printing rows as the nodes write them (JSON Lines with --json)."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import click

from shieldes.cli.common import ReadBound, cli_context, json_option, run, run_read
from shieldes.cli.oneline import OneLineCommand, handle_errors
from shieldes.cli.output import emit, one_line_json, table_cell
from shieldes.cli.timefmt import with_table_times
from shieldes.errors import InvalidRequest, SubjectNotFound
from shieldes.requestlog.filters import GATEWAY, LogFilter, parse_status, plain, request_not_found
from shieldes.timeparse import parse_time

# The driver and the request log's SQL are imported by the direct mode only: through the admin API
# (and for --help) `shieldes logs` needs neither psycopg nor asyncio.
if TYPE_CHECKING:
    import psycopg

    from shieldes.cli.remote import AdminApi

# The error message comes last: it is the one long cell, and the columns before it stay aligned.
TABLE_COLUMNS = ("started_at", "request_id", "node_id", "key_name", "route", "model", "deployment", "status",
                 "error_code", "latency_ms", "prompt_tokens", "completion_tokens", "images", "audio_seconds",
                 "characters", "cost_usd", "stream", "error_message")
REMOTE_PAGE = 1000  # the admin API's largest page of the request log
FOLLOW_OVERLAP = timedelta(seconds=10)  # a batch committed this long after its transaction began is still seen



async def _connect() -> psycopg.AsyncConnection[Any]:
    from shieldes import db

    conn = await db.async_connection(cli_context().database_url())
    db.require_head(await db.async_schema_revision(conn))
    return conn


async def _fetch(f: LogFilter, limit: int) -> list[dict[str, Any]]:
    from shieldes.requestlog import store

    conn = await _connect()
    try:
        rows = await store.query(conn, f, limit)
        if not rows:
            await _require_key(conn, f.key)
        return rows
    finally:
        await conn.close()


async def _require_key(conn: psycopg.AsyncConnection[Any], key: str | None) -> None:
    """A misspelt --key is an error, as in `shieldes usage`, not an empty log that looks like no traffic."""
    from shieldes.requestlog import store

    if key is not None and not await store.key_known(conn, key):
        raise SubjectNotFound(f"no virtual key named or with id {key!r}; see `shieldes key list`",
                              code="key_not_found")


def _remote_rows(api: AdminApi, query: dict[str, str | None], limit: int) -> list[dict[str, Any]]:
    """The newest `limit` rows through GET /admin/v1/requests (the same query as direct mode, paged
    backwards by its cursor); a --key that names no key is refused as in direct mode."""
    rows: list[dict[str, Any]] = []
    before = None
    while len(rows) < limit:
        page = api.get("/requests", **query, limit=min(REMOTE_PAGE, limit - len(rows)), before=before)
        rows += page["data"]
        before = page.get("next_before")
        if not page.get("has_more") or before is None:
            break
    if not rows and query["key"] is not None:
        from shieldes.cli.remote import segment

        api.call("GET", f"/keys/{segment(query['key'])}", not_found=f"no virtual key named or with id "
                 f"{query['key']!r}; see `shieldes key list`")
    return rows


class _FollowTable:
    """`logs --follow` as a table that grows: the header line first, then each batch of rows as the
    nodes write them, every column as wide as its header and the widest cell printed so far (a
    wider cell widens its column from that row on; the last column is never padded)."""

    def __init__(self) -> None:
        self.widths = [len(c) for c in TABLE_COLUMNS]
        self.started = False

    def _line(self, cells: list[str]) -> str:
        last = len(cells) - 1
        return "  ".join(c if i == last else c.ljust(w) for i, (c, w) in enumerate(zip(cells, self.widths,
                                                                                         strict=True))).rstrip()

    def print(self, rows: list[dict[str, Any]]) -> None:
        shown = [with_table_times(plain(r)) for r in rows]  # each cell as the table prints it (cost never 3e-06)
        cells = [[table_cell(r.get(c)) for c in TABLE_COLUMNS] for r in shown]
        for row in cells:
            self.widths = [max(w, len(c)) for w, c in zip(self.widths, row, strict=True)]
        lines = [] if self.started else [self._line([c.upper() for c in TABLE_COLUMNS])]
        self.started = True
        lines += [self._line(row) for row in cells]
        if lines:
            click.echo("\n".join(lines))


def _print(rows: list[dict[str, Any]], as_json: bool, *, lines: bool, detail: bool = False) -> None:
    if detail and not as_json and rows:  # one request (a row per node that logged it): every field
        click.echo("\n\n".join(_vertical(plain(r)) for r in rows))
        return
    if lines:  # --follow --json: JSON Lines
        for r in rows:
            click.echo(one_line_json(plain(r), sort_keys=False))  # cost 0.00000315, never 3.15e-06
        return
    emit([plain(r) for r in rows], as_json=as_json, columns=TABLE_COLUMNS)


def _vertical(row: dict[str, Any]) -> str:
    def cell(v: Any) -> str:
        return " -> ".join(map(str, v)) if isinstance(v, list) and v else table_cell(v)

    width = max(len(k) for k in row)
    return "\n".join(f"{k.upper().ljust(width)}  {cell(v)}".rstrip() for k, v in with_table_times(row).items())


async def _follow(f: LogFilter, limit: int, as_json: bool, interval: float) -> None:
    import asyncio

    from shieldes.requestlog import store

    bound = ReadBound()  # each poll's reads: a follow runs for hours, a stalled database ends it
    conn: psycopg.AsyncConnection[Any] | None = None
    try:
        conn = await bound(_connect())
        first = await bound(store.query(conn, f, limit))
        if not first:
            await bound(_require_key(conn, f.key))
        table = None if as_json else _FollowTable()
        show = partial(_print, as_json=True, lines=True) if table is None else table.print
        show(list(reversed(first)))
        seen = {(r["request_id"], r["node_id"], r["started_at"]) for r in first}
        cursor = await bound(store.database_now(conn))
        while True:
            await asyncio.sleep(interval)
            now = await bound(store.database_now(conn))
            after = LogFilter(**{**f.__dict__, "logged_after": cursor - FOLLOW_OVERLAP})
            rows = await bound(store.query(conn, after, 100_000))
            fresh = [r for r in reversed(rows) if (r["request_id"], r["node_id"], r["started_at"]) not in seen]
            show(fresh)
            seen = {(r["request_id"], r["node_id"], r["started_at"]) for r in rows}
            cursor = now
    finally:
        await bound.stop()  # a stalled query's cancellation ends before its connection is closed
        if conn is not None:
            await conn.close()


@click.command("logs", cls=OneLineCommand)
@click.option("--key", help="only this virtual key (name or id)")
@click.option("--model", help="only this model (as requested, or the upstream model)")
@click.option("--status", metavar="S", help="a status (429), a class (4xx, 5xx), error or ok")
@click.option("--error-code", metavar="CODE", help="only refusals and failures with this code, e.g. budget_exceeded")
@click.option("--tag", metavar="T", help="only requests carrying this tag (the client's `tags`, `metadata.tags` or "
              "x-litellm-tags)")
@click.option("--since", metavar="TS", help="from this time (ISO date or timestamp, UTC if no zone), or this long "
              "ago: 15m, 2h, 7d")
@click.option("--until", metavar="TS", help="up to this time (a bare date includes that whole day, a time to the "
              "second that second)")
@click.option("--request-id", metavar="ID", help="the request with this x-request-id")
@click.option("--node", "node_id", metavar="NODE", help="only requests served by this node")
@click.option("--route", metavar="R", help="only this route, e.g. /v1/chat/completions, unmatched, or a prefix: "
              "/v1/*, or '*' for every request; default: gateway (all but the admin API's, the console's and "
              "/health, /ready, /metrics)")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True,
              help="newest N requests, printed oldest first")
@click.option("--follow", "-f", is_flag=True, help="keep printing new requests (Ctrl-C stops; JSON Lines with --json)")
@click.option("--interval", type=click.FloatRange(0.1, 60), default=1.0, show_default=True, hidden=True)
@json_option
@handle_errors
def logs(key: str | None, model: str | None, status: str | None, error_code: str | None, tag: str | None,
         since: str | None,
         until: str | None, request_id: str | None, node_id: str | None, route: str | None, limit: int,
         follow: bool, interval: float, as_json: bool) -> None:
    """Requests served by the nodes (one row each, refused and failed ones included)."""
    ctx = cli_context()
    if status is not None:
        parse_status(status)  # refuse a malformed status before connecting
    if route is None and request_id is None:  # one request by its id is shown whatever its route
        route = GATEWAY
    f = LogFilter(key=key, model=model, status=status, request_id=request_id, node_id=node_id, route=route,
                  error_code=error_code, tag=tag,
                  since=parse_time(since, "--since", ago=True) if since else None,
                  until=parse_time(until, "--until", end_of_day=True, ago=True) if until else None)
    if f.since and f.until and f.since > f.until:
        raise InvalidRequest("--since is after --until; swap them")
    api = ctx.remote()
    if api is not None:
        if follow:
            raise InvalidRequest("`shieldes logs --follow` reads Postgres and does not run through the admin API "
                                 f"(SHIELDES_ADMIN_URL is {ctx.admin_url}); drop --follow, or unset "
                                 "SHIELDES_ADMIN_URL (and drop --admin-url) to follow against Postgres directly")
        query = {"key": key, "model": model, "status": status, "error_code": error_code, "tag": tag, "since": since,
                 "until": until,
                 "request_id": request_id, "node": node_id, "route": route}
        rows = list(reversed(_remote_rows(api, query, limit)))
    elif follow:
        with contextlib.suppress(KeyboardInterrupt):
            run(_follow(f, limit, ctx.as_json, interval))
        return
    else:
        rows = list(reversed(run_read(_fetch(f, limit))))
    if request_id is not None and not rows:  # the id looked up: say why it is not there, as the API does
        others = (key, model, status, error_code, tag, since, until, node_id, route)
        raise request_not_found(request_id, filtered=any(v is not None for v in others))
    _print(rows, ctx.as_json, lines=False, detail=request_id is not None)
