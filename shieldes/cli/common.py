"""What every CLI command shares: settings, a store for one command, output as table or JSON,
and errors as one line on stderr with a non-zero exit."""

from __future__ import annotations

import gc
import json
import math
import os
import re
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from functools import wraps
from typing import TYPE_CHECKING, Any, LiteralString, NoReturn, ParamSpec, TypeVar

import click

from shieldes.cli.timefmt import is_time_field, table_time
from shieldes.errors import InvalidRequest, ShieldesError

# The database, the event store and the config fold are imported where a command uses them: every
# command imports this module, and `shieldes key create` must not pay for what `serve` needs.
if TYPE_CHECKING:
    from shieldes import db
    from shieldes.cli.remote import AdminApi
    from shieldes.config_writer import ConfigView
    from shieldes.events.pg_store import PostgresEventStore
    from shieldes.events.store import RecordedEvent
    from shieldes.projections.commands import Command
    from shieldes.projections.state import ConfigState
    from shieldes.projections.teams_view import TeamsView
    from shieldes.settings import Settings

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class CliContext:
    """What every command of one `shieldes` process shares: its settings, output form and database."""

    settings: Settings
    as_json: bool
    role: str = "cli"
    admin_url: str | None = None  # remote mode: admin commands go through this node's admin API
    local: bool = False  # a command that works on this machine (serve, db, doctor...): never remote
    _database: db.Lease | db.ExternalDatabase | None = None
    _api: AdminApi | None = None

    def remote(self) -> AdminApi | None:
        """The admin API this command goes through, or None to work on the database directly."""
        if self.admin_url is None or self.local:
            return None
        if self._api is None:
            from shieldes.cli.remote import AdminApi, answer_wait

            self._api = AdminApi.from_url(self.admin_url, self.settings.admin_token,
                                          answer_wait(self.settings.db_admin_read_timeout))
        return self._api

    def database_url(self) -> str:
        """The database for this command; the embedded one is started on first use and released
        (stopped, unless a node or another client uses it) when the command ends. In remote mode an
        admin command that does not go through the admin API is refused here, before it reads or
        writes."""
        if self.admin_url is not None and not self.local:
            path = click.get_current_context().command_path
            raise InvalidRequest(f"`{path}` does not run through the admin API (SHIELDES_ADMIN_URL is "
                                 f"{self.admin_url}); unset SHIELDES_ADMIN_URL (and drop --admin-url) to run it "
                                 "against Postgres directly")
        if self._database is None:
            from shieldes import db

            notice = db.legacy_data_dir_notice(self.settings)
            if notice:
                click.echo(f"warning: {notice}", err=True)
            self._database = db.acquire(self.settings, self.role)
            if not gc.isenabled():  # off since main(): the command's modules are loaded now
                # they stay out of the collector's sight (else its first pass would walk every
                # object the imports made); what the command's work makes is collected as usual
                gc.freeze()
                gc.enable()
        return self._database.url

    def close(self) -> None:
        if self._database is not None:
            database, self._database = self._database, None
            try:
                database.release()
            except ShieldesError as exc:  # the command's own outcome stands; say why the server stays
                click.echo(f"warning: {exc.message}", err=True)


def cli_context() -> CliContext:
    ctx = click.get_current_context()
    root = ctx.find_root()
    obj = root.obj
    assert isinstance(obj, CliContext)
    # `--json` may be given at the root or on the subcommand
    if ctx.params.get("as_json"):
        obj.as_json = True
    return obj


def json_option(f: Callable[P, T]) -> Callable[P, T]:
    return click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")(f)


@asynccontextmanager
async def open_store(url: str, *, require_schema: bool = True) -> AsyncIterator[PostgresEventStore]:
    """The event store on one connection for one command (a command runs one statement at a time;
    no pool to import or fill); refuses a database that is not at the schema head."""
    import psycopg

    from shieldes import db
    from shieldes.events.connections import OneConnection
    from shieldes.events.pg_store import PostgresEventStore

    try:
        one = await OneConnection.connect(url)
    except psycopg.Error as exc:
        raise db.translate(exc, url) from exc
    try:
        if require_schema:
            async with one.connection() as conn:
                db.require_head(await db.async_schema_revision(conn))
        yield PostgresEventStore(one, node_timeout=cli_context().settings.node_timeout)
    finally:
        await one.close()


async def query(sql: LiteralString, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[dict[str, Any]]:
    """Run one read-only SQL query (audit views) on a short connection; rows as dicts."""
    import psycopg
    from psycopg.rows import dict_row

    from shieldes import db

    values = params.values() if isinstance(params, Mapping) else params
    if any(isinstance(v, str) and "\x00" in v for v in values):
        raise InvalidRequest("an argument contains a NUL character (\\x00), which Postgres text cannot hold; "
                             "remove it")
    url = cli_context().database_url()
    try:
        conn = await psycopg.AsyncConnection.connect(url, connect_timeout=5, autocommit=True)
    except psycopg.Error as exc:
        raise db.translate(exc, url) from exc
    try:
        db.require_head(await db.async_schema_revision(conn))
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, params)
            return await cur.fetchall()
    finally:
        await conn.close()


def actor() -> str:
    """Who is making a change, for event metadata: $SHIELDES_ACTOR, else user@host."""
    explicit = os.environ.get("SHIELDES_ACTOR", "").strip()
    if explicit:
        return explicit[:200]
    import getpass  # (and termios): a remote command records no actor of its own

    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry (containers): fall back to the uid
        user = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass
class Written:
    """A CLI write's outcome: the events it appended and the config they lead to."""

    events: list[RecordedEvent]
    state: ConfigState  # the config right after the write, for printing the result

    @property
    def position(self) -> int:
        return self.events[-1].position


async def write(command: Command) -> Written:
    """Decide `command` against the current config and append its events (nothing on refusal).
    A key create or revoke folds only the shared config and the entities it names (a read in SQL);
    any other command the newest snapshot's config plus the config events after it, not a fold
    from 0."""
    from shieldes.config_writer import scoped_write, write_config
    from shieldes.events.codec import Codec

    ctx = cli_context()
    codec = Codec()
    url = ctx.database_url()  # the embedded server's start is no write: not within the bound

    async def go() -> Written:
        async with open_store(url) as store:
            done = await scoped_write(store, command, actor=actor(), codec=codec)
            if done is None:
                from shieldes.snapshots.codec import mac_key
                from shieldes.snapshots.config_start import config_from_snapshot

                base = await config_from_snapshot(store.connections, mac_key(ctx.settings.cluster_secret))
                done = await write_config(store, command, actor=actor(), codec=codec, base=base)
        return Written(done.events, done.state)

    return await bounded_write(go())


def remove_named(label: str, name: str, collection: str, command: Command) -> None:
    """A `remove` command: `DELETE /admin/v1/{collection}/{name}` in remote mode, else `command`
    written to the log; prints `{label: name, "removed": true}` and the log position."""
    ctx = cli_context()
    api = ctx.remote()
    if api is not None:
        from shieldes.cli.remote import segment

        position = api.call("DELETE", f"/{collection}/{segment(name)}")["position"]
    else:
        position = run(write(command)).position
    emit({label: name, "removed": True, "position": position}, as_json=ctx.as_json)


def list_named(collection: str, columns: tuple[str, ...], rows: Callable[[ConfigState], list[dict[str, Any]]]) -> None:
    """A `list` command: every page of `GET /admin/v1/{collection}` in remote mode, else `rows` of
    the config read from the log; printed with `columns` (all of them, in --json too)."""
    ctx = cli_context()
    api = ctx.remote()
    if api is not None:
        listed = [{c: item[c] for c in columns} for item in api.every(f"/{collection}")]
    else:
        listed = rows(run_read(read_config()).state)
    emit(listed, as_json=ctx.as_json, columns=columns)


async def bounded_write(op: Awaitable[T]) -> T:
    """The one bound on a config write in direct mode (`write`, `config import`, `pricing import`):
    the whole of it (the config's fold, the append, its COMMIT) within SHIELDES_DB_ADMIN_READ_TIMEOUT,
    as long as a read may take (the fold reads as much). Past it the error says the change may or
    may not have landed (the answer to the COMMIT may be what stalled) and which command shows it."""
    what = f"`{click.get_current_context().command_path}` was not confirmed"
    return await DbBound(what, unconfirmed_advice()).only(op)


def unconfirmed_advice() -> str:
    """What to do after a write's wait ran out: look before running it again (a second `key create`
    makes a second key), with the command that shows the group's config, and `shieldes doctor`."""
    shows = ["`shieldes audit log`"]
    group = click.get_current_context().parent
    if group is not None and group.parent is not None and isinstance(group.command, click.Group):
        # a subcommand of a group (`key create`): that group's `list` (or `show`) first
        listed = [name for name in ("list", "show") if name in group.command.commands]
        shows[:0] = [f"`{group.command_path} {name}`" for name in listed[:1]]
    return (f"it may or may not have been written: look for the change with {' or '.join(shows)} before running "
            "it again; if it persists, run `shieldes doctor` and check the database (is it up and answering, a "
            "session holding locks in pg_stat_activity, free disk space)")


async def read_config() -> ConfigView:
    from shieldes.config_writer import load_config
    from shieldes.events.codec import Codec
    from shieldes.snapshots.codec import mac_key
    from shieldes.snapshots.config_start import config_from_snapshot

    ctx = cli_context()
    async with open_store(ctx.database_url()) as store:
        base = await config_from_snapshot(store.connections, mac_key(ctx.settings.cluster_secret))
        return await load_config(store, Codec(), base=base)


async def read_teams() -> TeamsView:
    """The teams and each one's active keys without loading the keys: the teams part of the newest
    snapshot that has one plus the config events after it (snapshots/teams_start.py); else (no
    such snapshot yet) the whole config, as read_config."""
    from shieldes.events.codec import Codec
    from shieldes.snapshots.seal import mac_key  # not the whole snapshot codec
    from shieldes.snapshots.teams_start import load_teams, teams_from_snapshot

    ctx = cli_context()
    key = mac_key(ctx.settings.cluster_secret)
    async with open_store(ctx.database_url()) as store:
        base = await teams_from_snapshot(store.connections, key)
        if base is not None:
            return await load_teams(store, Codec(), base)
        from shieldes.config_writer import load_config
        from shieldes.projections.teams_view import TeamsView, teams_of
        from shieldes.snapshots.config_start import config_from_snapshot  # the whole codec, this once

        view = await load_config(store, Codec(), base=await config_from_snapshot(store.connections, key))
        return TeamsView(teams_of(view.state), view.position)


def split_list(value: str | None, what: str = "--models") -> tuple[str, ...] | None:
    """'a, b,c' -> ('a', 'b', 'c'); None stays None; an empty list or an empty entry is refused."""
    if value is None:
        return None
    items = tuple(v.strip() for v in value.split(","))
    if not any(items):
        raise InvalidRequest(f"{what} is empty: pass a comma-separated list, e.g. {what} gpt-4o,gpt-4o-mini")
    if not all(items):
        raise InvalidRequest(f"{what} {value!r} has an empty entry: remove the extra comma")
    duplicates = sorted({v for v in items if items.count(v) > 1})
    if duplicates:
        raise InvalidRequest(f"{what} names {duplicates[0]!r} twice: list each once")
    return items


def budget_period_for(budget_usd: float | None, period: str | None, default: str = "30d") -> str:
    """A period means nothing without an amount: refused rather than silently ignored."""
    if period is not None and budget_usd is None:
        raise InvalidRequest(f"--budget-period {period!r} needs --budget USD (the amount to spend per period)")
    return period or default


def run(coro: Awaitable[T]) -> T:
    import asyncio  # a remote command (SHIELDES_ADMIN_URL) runs no event loop

    return asyncio.run(coro)  # type: ignore[arg-type]


class DbBound:
    """Bounds each of a command's waits on Postgres by SHIELDES_DB_ADMIN_READ_TIMEOUT (a paused
    server, a lock held, a full disk): past it an error naming `what` and `advice`, not a command
    that never returns. `stop()` before the event loop ends: a stalled query's cancellation is
    awaited there (else it is cut short)."""

    def __init__(self, what: str, advice: str) -> None:
        from shieldes.dbwait import DbWait

        self._what, self._advice = what, advice
        self._wait = DbWait(cli_context().settings.db_admin_read_timeout)

    async def __call__(self, op: Awaitable[T]) -> T:
        return await self._wait.within(op, self._what, advice=self._advice)

    async def stop(self) -> None:
        await self._wait.stop()

    async def only(self, op: Awaitable[T]) -> T:
        """`op`, the one wait of this bound: its cancellation awaited before this returns."""
        try:
            return await self(op)
        finally:
            await self.stop()


class ReadBound(DbBound):
    """A DbBound for reads: nothing was changed, a retry is safe."""

    def __init__(self) -> None:
        from shieldes.dbwait import READ_ADVICE

        super().__init__(f"`{click.get_current_context().command_path}` cannot read the database right now",
                         READ_ADVICE)


def run_read(coro: Awaitable[T]) -> T:
    """`run` for a command that reads Postgres directly, the whole read within one ReadBound. The
    database's own errors are left to `handle_errors`."""
    import asyncio

    try:  # the embedded server's start (initdb on first use) is no read: not within the bound
        cli_context().database_url()
    except BaseException:
        if isinstance(coro, Coroutine):
            coro.close()  # never awaited: closed, so no warning joins the error line
        raise
    return asyncio.run(bounded_read(coro))


async def bounded_read(op: Awaitable[T]) -> T:
    """`op` within one ReadBound, its cancellation awaited."""
    return await ReadBound().only(op)


def fail(message: str, code: str | None = None, exit_code: int = 1, *, args: Sequence[str] = ()) -> NoReturn:
    """The one error line on stderr and exit `exit_code`. With `--json` the line is JSON,
    `{"error": {"message": ..., "code": ...}}` (a script parses it as it parses the output).
    `args`: the arguments being parsed when an option did not parse (click has not read `--json`
    from them yet)."""
    if json_errors() or "--json" in (args[:args.index("--")] if "--" in args else args):
        click.echo(json.dumps({"error": {"message": message, "code": code or "error"}}, ensure_ascii=False),
                   err=True)
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(exit_code)


def json_errors() -> bool:
    """Whether this command was given `--json` (at the root or on the command)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return False
    root = ctx.find_root().obj
    return (isinstance(root, CliContext) and root.as_json) or any(c.params.get("as_json") for c in _lineage(ctx))


def _lineage(ctx: click.Context) -> list[click.Context]:
    found: list[click.Context] = []
    current: click.Context | None = ctx
    while current is not None:
        found.append(current)
        current = current.parent
    return found


def handle_errors(f: Callable[P, T]) -> Callable[P, T]:
    """Our errors and database errors become one line on stderr and exit code 1; never a traceback."""

    @wraps(f)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return f(*args, **kwargs)
        except ShieldesError as exc:
            fail(exc.message, exc.code)
        except Exception as exc:
            fail(*_error_line(exc))
        raise AssertionError("unreachable")

    return wrapper


def _error_line(exc: Exception) -> tuple[str, str]:
    """The one line for an error of the log or the database; anything else is re-raised. (The
    modules are imported here, not at the top: a command that fails before using them never loads
    them.)"""
    import psycopg

    from shieldes import db
    from shieldes.events.codec import UnknownEvent

    if isinstance(exc, UnknownEvent):  # the log holds events from a newer shieldes
        return f"{exc}; upgrade shieldes to read this log", "unknown_event"
    if isinstance(exc, psycopg.OperationalError):
        error = db.translate(exc, "the database")
        return error.message, error.code or "database_unavailable"
    if isinstance(exc, psycopg.Error):  # the server refused a statement: not a connection problem
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"the database refused the request: {first}; check the arguments (see --help)", "database_error"
    raise exc


def _usage_error(ctx: click.Context | None, exc: click.UsageError, args: Sequence[str]) -> None:
    no_args = getattr(click.exceptions, "NoArgsIsHelpError", None)
    if no_args is not None and isinstance(exc, no_args) and ctx is not None:
        click.echo(ctx.get_help(), err=True)  # a bare group (`shieldes key`): its help, as click does
        sys.exit(2)
    path = ctx.command_path if ctx is not None else "shieldes"
    message = " ".join(exc.format_message().split()).rstrip(".")  # one line, whatever click composed
    fail(f"{message}; see `{path} --help`", "usage_error", exit_code=2, args=args)


class OneLineCommand(click.Command):
    """A click command whose usage errors (bad or missing option) are one line on stderr."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        given = list(args)  # click's parser consumes the list
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            _usage_error(exc.ctx or ctx, exc, given)
            raise AssertionError("unreachable") from None


# A command list shows each command's whole first sentence, wrapped: click cuts it to the width
# left on the line and ends it with "...", which hid what half the commands do.
WHOLE_SENTENCE = 10_000


def format_command_list(formatter: click.HelpFormatter, rows: list[tuple[str, str]]) -> None:
    if rows:
        with formatter.section("Commands"):
            formatter.write_dl(rows)


class OneLineGroup(click.Group):
    """A click group whose commands default to `Command`, whose usage errors are one line and whose
    command list says in full what each command does."""

    command_class = OneLineCommand
    group_class = type

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        shown = [(name, self.get_command(ctx, name)) for name in self.list_commands(ctx)]
        format_command_list(formatter, [(name, cmd.get_short_help_str(WHOLE_SENTENCE)) for name, cmd in shown
                                        if cmd is not None and not cmd.hidden])

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        given = list(args)  # click's parser consumes the list
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            _usage_error(exc.ctx or ctx, exc, given)
            raise AssertionError("unreachable") from None

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        given = list(args)
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            _usage_error(exc.ctx or ctx, exc, given)
            raise AssertionError("unreachable") from None


def warn(message: str) -> None:
    """A warning on stderr: the command did what was asked, but something needs the user's attention."""
    click.echo(f"warning: {message}", err=True)


def emit(data: Any, *, as_json: bool, columns: Sequence[str] | None = None, vertical: bool = False) -> None:
    """Print `data` (a dict or a list of dicts) as JSON or as an aligned table; `vertical` prints
    one record as `FIELD  value` lines (for wide single records such as `key show`). A table
    prints its time fields (`*_at`, `period_start`) as `2026-12-03 17:38:11Z` (cli/timefmt.py);
    JSON keeps them as they are, ISO 8601. Written in one piece: a list of ten thousand rows is
    one write, not a write (and flush) per row."""
    if as_json:
        click.echo(json_text(data))
        return
    if vertical and isinstance(data, dict):
        width = max((len(k) for k in data), default=0)
        click.echo("\n".join(f"{k.upper().ljust(width)}  {_cell(table_time(v) if is_time_field(k) else v)}".rstrip()
                              for k, v in data.items()))
        return
    rows = data if isinstance(data, list) else [data]
    if not rows:
        click.echo("(none)")
        return
    cols = list(columns or rows[0].keys())
    # column by column: one loop each; a time column in the one table format (cli/timefmt.py)
    cells = [_column([table_time(r.get(c)) for r in rows] if is_time_field(c) else [r.get(c) for r in rows])
             for c in cols]
    widths = [max(len(c), *map(len, column)) for c, column in zip(cols, cells, strict=True)]
    line = "  ".join(f"{{:<{w}}}" for w in widths).format
    lines = [line(*(c.upper() for c in cols)).rstrip()]
    lines += [line(*row).rstrip() for row in zip(*cells, strict=True)]
    click.echo("\n".join(lines))


def _column(values: list[Any]) -> list[str]:
    """The cells of one column (_cell's, with the common cases inline: a call per cell costs as much)."""
    return [v if type(v) is str and v.isprintable() else "-" if v is None else _cell(v) for v in values]


def json_text(data: Any) -> str:
    """`data` as indented JSON whose numbers never use exponent notation (money reads as decimals).
    orjson writes plain data (a pure-Python indenting encoder took ~0.1 s for ten thousand rows);
    anything else (a float orjson may write with an exponent, a value JSON has no type for, a key
    that is not a string) goes the standard library's way with the floats marked, as before."""
    if _plain(data):
        import orjson

        try:
            return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()
        except orjson.JSONEncodeError:  # an integer past 64 bits, a lone surrogate
            pass
    text = json.dumps(_mark_floats(data), indent=2, default=str, ensure_ascii=False)
    return _MARKED.sub(r"\1", text)


def one_line_json(data: Any, *, sort_keys: bool = True) -> str:
    """`data` as compact one-line JSON, keys sorted unless told (a table cell; a JSON Lines row keeps
    its columns' order), numbers as json_text writes them: never in exponent notation."""
    text = json.dumps(_mark_floats(data), ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys,
                      default=str)
    return _MARKED.sub(r"\1", text)


def _plain(data: Any) -> bool:
    """Whether `data` is strings, integers, booleans, None, floats orjson writes as the standard
    library does (no exponent: not very small or very large), and dicts (string keys), lists and
    tuples of them."""
    kind = type(data)
    if kind in _SCALARS:
        return True
    if kind is float:
        return bool(data == 0 or 1e-4 <= abs(data) < 1e15)
    if kind is dict:
        for k, v in data.items():  # noqa: SIM110 (a loop, not all() over a generator: ~2x faster here)
            if type(k) is not str or (type(v) not in _SCALARS and not _plain(v)):
                return False
        return True
    if kind is list or kind is tuple:
        for v in data:  # noqa: SIM110 (as above)
            if type(v) not in _SCALARS and not _plain(v):
                return False
        return True
    return False


_SCALARS = frozenset({str, int, bool, type(None)})


def plain_number(value: float) -> str:
    """1.8e-05 -> '0.000018': money and rates read as decimals, never in exponent notation."""
    text = format(Decimal(repr(value)), "f")
    return text if "." in text else text + ".0"


# JSON numbers keep their type but lose the exponent: floats are marked, dumped as strings, unquoted.
_MARK = "\x00num:"
_MARKED = re.compile(r'"\\u0000num:([-0-9.]+)"')


def _mark_floats(data: Any) -> Any:
    if isinstance(data, float):
        return _MARK + plain_number(data) if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _mark_floats(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_mark_floats(v) for v in data]
    return data


def table_cell(value: Any) -> str:
    """One value as a table prints it (for output that is not one `emit` table: streamed lines)."""
    return _cell(value)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if type(value) is str and value.isprintable():  # most cells: nothing to do
        return value
    if isinstance(value, float):
        return plain_number(value)
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) or "-"
    if isinstance(value, dict):  # provider options and the like: key=value, not a Python dict's repr
        return ",".join(f"{k}={_cell(v)}" for k, v in value.items()) or "-"
    text = str(value)
    # control characters never reach the terminal raw
    return "".join(ch if ch.isprintable() else "\ufffd" for ch in text)
