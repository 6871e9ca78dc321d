"""What every CLI command shares: settings, a store for one command, output as table or JSON,
and errors as one line on stderr with a non-zero exit."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import click
import psycopg

from shieldes import db
from shieldes.errors import ShieldesError
from shieldes.events.pg_store import PostgresEventStore, open_pool
from shieldes.settings import Settings

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class CliContext:
    settings: Settings
    as_json: bool

    def database_url(self) -> str:
        return db.resolve_database_url(self.settings)


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
    """A small pool for one command; refuses a database that is not at the schema head."""
    pool = open_pool(url, size=2, name="shieldes-cli")
    try:
        await pool.open(wait=True, timeout=10)
    except Exception as exc:  # psycopg_pool.PoolTimeout wraps the connection error
        await pool.close()
        raise db.translate(exc, url) from exc
    try:
        if require_schema:
            async with pool.connection() as conn:
                db.require_head(await db.async_schema_revision(conn))
        yield PostgresEventStore(pool)
    finally:
        await pool.close()


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def handle_errors(f: Callable[P, T]) -> Callable[P, T]:
    """Our errors and database errors become one line on stderr and exit code 1; never a traceback."""

    @wraps(f)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return f(*args, **kwargs)
        except ShieldesError as exc:
            fail(exc.message)
        except psycopg.Error as exc:
            fail(db.translate(exc, "the database").message)
        raise AssertionError("unreachable")

    return wrapper


def emit(data: Any, *, as_json: bool, columns: Sequence[str] | None = None) -> None:
    """Print `data` (a dict or a list of dicts) as JSON or as an aligned table."""
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))
        return
    rows = data if isinstance(data, list) else [data]
    if not rows:
        click.echo("(none)")
        return
    cols = list(columns or rows[0].keys())
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) or "-"
    text = str(value)
    # control characters never reach the terminal raw
    return "".join(ch if ch.isprintable() else "\ufffd" for ch in text)
