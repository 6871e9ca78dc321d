"""Command output: a table (aligned columns, one record as FIELD value lines) or JSON whose numbers
never use exponent notation; warnings on stderr."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import click

from shieldes.cli.timefmt import is_time_field, table_time


def warn(message: str) -> None:
    """A warning on stderr: the command did what was asked, but something needs the user's attention."""
    click.echo(f"warning: {message}", err=True)


def notes(row: dict[str, Any], unpriced: list[str], warnings: list[str], as_json: bool) -> None:
    """What a write says besides its result: unpriced models under a budget (a warning line, and in
    the row), and other warnings (warning lines, or with --json in the row)."""
    if unpriced:
        from shieldes.usage.pricing import unpriced_warning

        row["unpriced_models"] = unpriced
        warn(unpriced_warning(unpriced))
    if as_json and warnings:
        row["warnings"] = warnings
    else:
        for w in warnings:
            warn(w)


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
    cells = [column_cells([table_time(r.get(c)) for r in rows] if is_time_field(c) else [r.get(c) for r in rows])
             for c in cols]
    widths = [max(len(c), *map(len, column)) for c, column in zip(cols, cells, strict=True)]
    line = "  ".join(f"{{:<{w}}}" for w in widths).format
    lines = [line(*(c.upper() for c in cols)).rstrip()]
    lines += [line(*row).rstrip() for row in zip(*cells, strict=True)]
    click.echo("\n".join(lines))


def column_cells(values: list[Any]) -> list[str]:
    """The cells of one column (_cell's, with the common cases inline: a call per cell costs as much)."""
    return [v if type(v) is str and v.isprintable() else "-" if v is None else _cell(v) for v in values]


def json_text(data: Any) -> str:
    """`data` as indented JSON whose numbers never use exponent notation (money reads as decimals).
    orjson writes plain data (a pure-Python indenting encoder took ~0.1 s for ten thousand rows);
    anything else (a float orjson may write with an exponent, a value JSON has no type for, a key
    that is not a string) goes the standard library's way with the floats marked."""
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
