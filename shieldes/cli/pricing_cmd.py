"""`shieldes pricing set|list`: USD per 1M input/output tokens per model, used to cost usage."""

from __future__ import annotations

import click

from shieldes.cli.common import (
    OneLineGroup,
    cli_context,
    emit,
    handle_errors,
    json_option,
    read_config,
    run,
    write,
)
from shieldes.projections.commands import SetPricing


@click.group("pricing", cls=OneLineGroup)
def pricing_group() -> None:
    """Model prices."""


@pricing_group.command("set")
@click.argument("model")
@click.option("--input", "input_per_1m", type=float, required=True, metavar="USD_PER_1M",
              help="USD per 1M prompt tokens")
@click.option("--output", "output_per_1m", type=float, required=True, metavar="USD_PER_1M",
              help="USD per 1M completion tokens")
@json_option
@handle_errors
def set_(model: str, input_per_1m: float, output_per_1m: float, as_json: bool) -> None:
    """Set the price of MODEL (replaces an earlier price)."""
    ctx = cli_context()
    written = run(write(SetPricing(model, input_per_1m, output_per_1m)))
    emit(
        {"model": model, "input_per_1m": input_per_1m, "output_per_1m": output_per_1m,
         "position": written.position},
        as_json=ctx.as_json,
    )


@pricing_group.command("list")
@json_option
@handle_errors
def list_(as_json: bool) -> None:
    """Every priced model."""
    ctx = cli_context()
    view = run(read_config())
    rows = [
        {"model": m, "input_per_1m": p.input_per_1m, "output_per_1m": p.output_per_1m}
        for m, p in sorted(view.state.pricing.items())
    ]
    emit(rows, as_json=ctx.as_json, columns=("model", "input_per_1m", "output_per_1m"))
