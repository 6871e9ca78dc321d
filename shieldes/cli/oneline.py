"""How a command fails: one line on stderr (JSON with `--json`) and a non-zero exit, never a
traceback; click's command and group classes whose usage errors are that line too and whose command
list says in full what each command does."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from functools import wraps
from typing import NoReturn, ParamSpec, TypeVar

import click

from shieldes.cli.common import CliContext
from shieldes.errors import ShieldesError

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")


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


def _each_once(parse: Callable[[click.Context, list[str]], R],
               command: click.Command) -> Callable[[click.Context, list[str]], R]:
    """`parse`, refusing first an option of one value that `args` give twice (click keeps the last)."""

    def checked(ctx: click.Context, args: list[str]) -> R:
        try:
            _, _, order = command.make_parser(ctx).parse_args(args=list(args))
        except click.UsageError:
            order = []  # the parse itself says what is wrong
        seen: set[str | None] = set()
        for param in order:
            if isinstance(param, click.Option) and not (param.multiple or param.count or param.is_flag):
                if param.name in seen:
                    raise click.UsageError(f"{param.opts[0]} is given twice; give it once", ctx)
                seen.add(param.name)
        return parse(ctx, args)

    return checked


def _one_line_usage(parse: Callable[[click.Context, list[str]], R], ctx: click.Context, args: list[str]) -> R:
    """`parse(ctx, args)` (click's parsing of a command's or group's arguments), a usage error one line."""
    given = list(args)  # click's parser consumes the list
    try:
        return parse(ctx, args)
    except click.UsageError as exc:
        _usage_error(exc.ctx or ctx, exc, given)
        raise AssertionError("unreachable") from None


class OneLineCommand(click.Command):
    """A click command whose usage errors (bad or missing option) are one line on stderr, and which
    refuses an option of one value given twice (click keeps the last: `--models a --models b` would
    allow only b)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return _one_line_usage(_each_once(super().parse_args, self), ctx, args)


# A command list shows each command's whole first sentence, wrapped: click cuts it to the width
# left on the line and ends it with "...", which hid what half the commands do.
WHOLE_SENTENCE = 10_000


def format_command_list(formatter: click.HelpFormatter, rows: list[tuple[str, str]]) -> None:
    if rows:
        with formatter.section("Commands"):
            formatter.write_dl(rows)


ARGS = "shieldes.args"  # ctx.meta: the whole command line, for an error raised before it is parsed


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
        if ctx.parent is None:  # the root's callback reads the settings before the command parses its `--json`
            ctx.meta[ARGS] = tuple(args)
        return _one_line_usage(_each_once(super().parse_args, self), ctx, args)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        return _one_line_usage(super().resolve_command, ctx, args)
