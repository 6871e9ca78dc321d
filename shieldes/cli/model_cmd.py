"""`shieldes model alias|list|remove`: public model names mapped to weighted (provider, model)
targets, with ordered fallback groups."""

from __future__ import annotations

from typing import Any

import click

from shieldes.cli.common import cli_context, json_option, read_config, remove_named, run, run_read, write
from shieldes.cli.oneline import OneLineGroup, handle_errors
from shieldes.cli.output import emit, warn
from shieldes.projections.shared_commands import RemoveModelAlias, SetModelAlias, parse_alias_target
from shieldes.views import alias_row, takeover_warnings


def _targets_text(row: dict[str, Any]) -> str:
    return ",".join(f"{t['provider']}/{t['model']}:{t['weight']:g}" for t in row["targets"])


@click.group("model", cls=OneLineGroup)
def model_group() -> None:
    """Model aliases and fallback groups (public model names)."""


@model_group.command("alias")
@click.argument("public")
@click.option("--target", "targets", multiple=True, required=True, metavar="PROVIDER/MODEL[:WEIGHT]",
              help="a deployment and upstream model serving PUBLIC (repeat for several; weight default 1)")
@click.option("--fallback", "fallbacks", multiple=True, metavar="PUBLIC2",
              help="model or alias tried, in the order given, when every target failed or the prompt is too long")
@json_option
@handle_errors
def alias(public: str, targets: tuple[str, ...], fallbacks: tuple[str, ...], as_json: bool) -> None:
    """Create or replace the alias PUBLIC."""
    ctx = cli_context()
    api = ctx.remote()
    if api is not None:
        from shieldes.cli.remote import segment

        answer = api.call("PUT", f"/aliases/{segment(public)}",
                          {"targets": list(targets), "fallbacks": list(fallbacks)})
        _print_alias({c: answer[c] for c in ("name", "targets", "fallbacks", "position")}, ctx.as_json,
                     answer.get("warnings") or [])  # (a node of an earlier release sends none)
        return
    view = run_read(read_config())
    parsed = tuple(parse_alias_target(view.state, spec) for spec in targets)
    written = run(write(SetModelAlias(public, parsed, fallbacks)))
    data = written.events[0].data
    row = {"name": public, "targets": data["targets"], "fallbacks": data["fallbacks"], "position": written.position}
    _print_alias(row, ctx.as_json, takeover_warnings(written.state, written.state.aliases[public]))


def _print_alias(row: dict[str, Any], as_json: bool, warnings: list[str]) -> None:
    """The alias written: JSON as the API gives it; the table's targets as `model list` prints them
    (`openai/gpt-4o-mini:1`), not as a Python dict. Warnings (providers the alias takes its name's
    requests from) on stderr, or with --json in the row."""
    if as_json:
        emit({**row, "warnings": warnings} if warnings else row, as_json=True)
        return
    for w in warnings:
        warn(w)
    emit({**row, "targets": _targets_text(row), "fallbacks": ",".join(row["fallbacks"])}, as_json=False)


@model_group.command("list")
@json_option
@handle_errors
def list_(as_json: bool) -> None:
    """Every alias with its targets and fallbacks."""
    ctx = cli_context()
    api = ctx.remote()
    if api is not None:
        rows = api.every("/aliases")
    else:
        view = run_read(read_config())
        rows = [alias_row(a) for _, a in sorted(view.state.aliases.items())]
    if ctx.as_json:
        emit(rows, as_json=True)
        return
    table = [{"name": r["name"], "targets": _targets_text(r), "fallbacks": ",".join(r["fallbacks"])} for r in rows]
    emit(table, as_json=False, columns=("name", "targets", "fallbacks"))


@model_group.command("remove")
@click.argument("public")
@json_option
@handle_errors
def remove(public: str, as_json: bool) -> None:
    """Remove the alias PUBLIC (requests for it then route as a plain model name)."""
    remove_named("name", public, "aliases", RemoveModelAlias(public))
