"""What every CLI command shares: its context (settings, output form, the database or the admin API),
a store for one command, and config reads and writes, each wait on Postgres within a bound. Output is
output.py's; an error's one line on stderr oneline.py's."""

from __future__ import annotations

import gc
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, LiteralString, ParamSpec, TypeVar

import click

from shieldes.cli.output import emit
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

    def require_direct(self) -> None:
        """Refuse, in remote mode, an admin command that does not go through the admin API. A command
        that reads a file first calls it before, so the refusal is not hidden behind the file's errors."""
        if self.admin_url is not None and not self.local:
            path = click.get_current_context().command_path
            raise InvalidRequest(f"`{path}` does not run through the admin API (SHIELDES_ADMIN_URL is "
                                 f"{self.admin_url}); unset SHIELDES_ADMIN_URL (and drop --admin-url) to run it "
                                 "against Postgres directly")

    def database_url(self) -> str:
        """The database for this command; the embedded one is started on first use and released
        (stopped, unless a node or another client uses it) when the command ends. In remote mode an
        admin command that does not go through the admin API is refused here, before it reads or
        writes."""
        self.require_direct()
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
    from psycopg.rows import dict_row

    from shieldes import db

    values = params.values() if isinstance(params, Mapping) else params
    if any(isinstance(v, str) and "\x00" in v for v in values):
        raise InvalidRequest("an argument contains a NUL character (\\x00), which Postgres text cannot hold; "
                             "remove it")
    conn = await db.async_connection(cli_context().database_url())
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
