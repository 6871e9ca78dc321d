"""A long list printed page by page as it is read (`key list` of a million keys): the first lines
come at once and no more than a page is held. JSON is the bytes `emit` prints for the whole list;
a table takes its column widths from the first page and widens a column only when a later row is
wider (a list of one page prints exactly as `emit` prints it)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import click

from shieldes.cli.output import column_cells, json_text
from shieldes.cli.timefmt import is_time_field, table_time


def emit_pages(pages: Iterable[list[dict[str, Any]]], *, as_json: bool, columns: Sequence[str]) -> None:
    """Print the rows of `pages` (in order) as one JSON list or one table, each page once it comes."""
    if as_json:
        _json_pages(pages)
    else:
        _table_pages(pages, columns)


def _json_pages(pages: Iterable[list[dict[str, Any]]]) -> None:
    started = False
    for rows in pages:
        if not rows:
            continue
        # a page's list without its brackets: the items as the whole list's text holds them
        inner = json_text(rows)[2:-2]
        click.echo(("[\n" if not started else ",\n") + inner, nl=False)
        started = True
    click.echo("\n]" if started else "[]")


def _table_pages(pages: Iterable[list[dict[str, Any]]], columns: Sequence[str]) -> None:
    cols, widths = list(columns), [len(c) for c in columns]
    started = False
    for rows in pages:
        if not rows:
            continue
        cells = [column_cells([table_time(r.get(c)) for r in rows] if is_time_field(c) else [r.get(c) for r in rows])
                 for c in cols]
        widths = [max(w, *map(len, column)) for w, column in zip(widths, cells, strict=True)]
        line = "  ".join(f"{{:<{w}}}" for w in widths).format
        lines = [] if started else [line(*(c.upper() for c in cols)).rstrip()]
        lines += [line(*row).rstrip() for row in zip(*cells, strict=True)]
        click.echo("\n".join(lines))
        started = True
    if not started:
        click.echo("(none)")
