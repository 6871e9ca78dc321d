"""`shieldes config import FILE` and `shieldes config export`: move configuration in from Bifrost,
LiteLLM or a shieldes export, and out again, as events in the log."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any

import click

from shieldes.cli.common import bounded_read, bounded_write, cli_context, json_option, open_store, run, run_read
from shieldes.cli.oneline import OneLineCommand, OneLineGroup, handle_errors
from shieldes.cli.output import emit, json_text
from shieldes.config_writer import load_config
from shieldes.events.codec import Codec
from shieldes.importers.apply import apply_import
from shieldes.importers.bifrost_governance import with_secrets
from shieldes.importers.export import EXPORT_FORMATS, export
from shieldes.importers.plan import Plan, plan_import
from shieldes.importers.source import FORMATS, load_document, parse
from shieldes.importers.spec import ImportRejected, ImportSpec
from shieldes.projections.state import ConfigState
from shieldes.secrets import encryption_key_for


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}:config-import"
    except Exception:  # no passwd entry (containers): still say where the change came from
        return "cli:config-import"


@click.command("import", cls=OneLineCommand)
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True,
              help="source format; auto tells Bifrost config.json, LiteLLM config.yaml (or its keys and teams, "
                   "{\"keys\": [...], \"teams\": [...]}) and a shieldes export apart")
@click.option("--dry-run", is_flag=True, help="show what would change and write nothing")
@click.option("--skip-unsupported", is_flag=True,
              help="import the rest when some entries use provider types shieldes does not support")
@json_option
@handle_errors
def config_import(file: Path, fmt: str, dry_run: bool, skip_unsupported: bool, as_json: bool) -> None:
    """Import providers, aliases and prices from a Bifrost, LiteLLM or `shieldes config export` file (which also
    carries routing, teams, keys' settings and MCP access, and MCP servers), or LiteLLM's keys and teams (each key
    keeping its secret)."""
    ctx = cli_context()
    ctx.require_direct()  # in remote mode: refused before the file is read
    detected, spec = parse(load_document(file), fmt)
    with_secrets(spec, os.environ)  # keys whose secret the file gives as env.VAR (Bifrost)
    if spec.skipped and not skip_unsupported:
        raise ImportRejected(
            f"{len(spec.skipped)} entr{'y' if len(spec.skipped) == 1 else 'ies'} cannot be imported: "
            f"{spec.skipped[0]}{' (and more)' if len(spec.skipped) > 1 else ''}; "
            "pass --skip-unsupported to import the rest"
        )
    encryption_key = encryption_key_for(ctx.settings, create=True)

    def make_plan(state: ConfigState) -> Plan:
        return plan_import(state, spec, encryption_key)

    async def go() -> tuple[Plan, int]:
        async with open_store(url) as store:
            return await apply_import(store, make_plan, actor=_actor(), dry_run=dry_run)

    url = ctx.database_url()  # the embedded server's start is no write: not within the bound
    plan, appended = run(bounded_read(go()) if dry_run else bounded_write(go()))
    _report(detected, spec, plan, appended, dry_run=dry_run, as_json=ctx.as_json)


def _report(fmt: str, spec: ImportSpec, plan: Plan, appended: int, *, dry_run: bool, as_json: bool) -> None:
    counts = plan.counts()
    if as_json:
        emit({"format": fmt, "dry_run": dry_run, "changes": [c.as_dict() for c in plan.changes],
              "summary": counts, "events_appended": appended, "notes": [*spec.notes, *plan.notes],
              "skipped": spec.skipped},
             as_json=True)
        return
    emit([c.as_dict() for c in plan.changes], as_json=False, columns=["kind", "name", "action", "detail"])
    for line in spec.skipped:
        click.echo(f"skipped: {line}", err=True)
    for line in (*spec.notes, *plan.notes):
        click.echo(f"note: {line}", err=True)
    verb = "would" if dry_run else "did"
    tail = "dry run: nothing written" if dry_run else f"{appended} event(s) appended"
    missing = counts.get("missing", 0)
    keys = f"; {missing} key(s) missing: create them with the commands shown" if missing else ""
    click.echo(f"{fmt}: {verb} add {counts['add']}, update {counts['update']}, "
               f"leave {counts['unchanged']} unchanged{keys} ({tail})")


@click.command("export", cls=OneLineCommand)
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS), default="shieldes", show_default=True,
              help="shieldes (JSON of the whole config), bifrost (config.json) or litellm (config.yaml)")
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="write to this file instead of stdout")
@json_option
@handle_errors
def config_export(fmt: str, output: Path | None, as_json: bool) -> None:
    """Print the current configuration; secrets (provider keys, MCP header values) appear only as env
    references, never in plaintext (encrypted ones as "encrypted", with a warning)."""
    ctx = cli_context()

    async def go() -> ConfigState:
        async with open_store(ctx.database_url()) as store:
            return (await load_config(store, Codec())).state

    doc, warnings = export(run_read(go()), fmt)
    text = _render(doc, yaml_out=fmt == "litellm" and not ctx.as_json)
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ImportRejected(f"cannot write {output}: {exc.strerror or exc}; check the path") from None


def _render(doc: dict[str, Any], *, yaml_out: bool) -> str:
    if yaml_out:
        import yaml  # deferred: only the LiteLLM shape is YAML

        return str(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))
    return json_text(doc) + "\n"  # prices as decimals (`0.00002`, never `2e-05`), as every `--json`


@click.group("config", cls=OneLineGroup)
def config_io_group() -> None:
    """Configuration import and export."""


config_io_group.add_command(config_import)
config_io_group.add_command(config_export)
