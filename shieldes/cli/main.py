"""The `shieldes` command: a click group; each area registers its commands from its own module.

A command's module is imported only when that command runs: `shieldes key create` loads what a key
write needs, not the gateway, the importers or the doctor. `shieldes --help` imports none of them:
the command list is printed from SHORT_HELP (a test keeps it equal to each command's own).
"""

from __future__ import annotations

import gc
import importlib
from collections.abc import Iterator, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

import click

from shieldes.cli.common import CliContext
from shieldes.cli.oneline import ARGS, WHOLE_SENTENCE, OneLineGroup, fail, format_command_list

if TYPE_CHECKING:
    from shieldes.settings import Settings

# command name -> (module in shieldes.cli, attribute holding the click command)
COMMANDS: dict[str, tuple[str, str]] = {
    "db": ("db_cmd", "db_group"),
    "serve": ("serve_cmd", "serve"),
    "provider": ("provider_cmd", "provider_group"),
    "mcp": ("mcp_cmd", "mcp_group"),
    "routing": ("routing_cmd", "routing_group"),
    "model": ("model_cmd", "model_group"),
    "pricing": ("pricing_cmd", "pricing_group"),
    "team": ("team_cmd", "team_group"),
    "key": ("key_cmd", "key_group"),
    "budget": ("budget_cmd", "budget_group"),
    "usage": ("usage_cmd", "usage"),
    "logs": ("logs_cmd", "logs"),
    "audit": ("audit_cmd", "audit_group"),
    "snapshot": ("snapshot_cmd", "snapshot_group"),
    "compact": ("compact_cmd", "compact"),
    "config": ("config_cmd", "config_group"),
    "cluster": ("cluster_cmd", "cluster_group"),
    "admin-token": ("admin_token_cmd", "admin_token_group"),
    "session": ("session_cmd", "session_group"),
    "secrets": ("secrets_cmd", "secrets_group"),
    "doctor": ("doctor_cmd", "doctor"),
}

# command name -> the line `shieldes --help` shows for it (the command's own short help; listing
# help from the commands themselves would import every command module, the doctor's among them)
SHORT_HELP: dict[str, str] = {
    "admin-token": "Tokens for the admin API and web console (roles: admin, operator, viewer, auditor).",
    "audit": "The audit trail of config changes.",
    "budget": "Budgets in USD per period, for a key or a team.",
    "cluster": "Cluster membership, leader and gossip health.",
    "compact": "Fold raw usage events older than the retention window into hourly rollups (totals unchanged).",
    "config": "The configuration as it was at any point in the log.",
    "db": "Database schema and the embedded Postgres.",
    "doctor": "Check the database (reachable, schema, clock skew), this node's provider credentials, each "
              "deployment (a cheap models call), prices for every served model and the cluster's shared secrets.",
    "key": "Virtual keys (KEY arguments take a key's name or id).",
    "logs": "Requests served by the nodes (one row each, refused and failed ones included).",
    "mcp": "MCP servers reached through the gateway at /mcp/NAME (docs/mcp.md).",
    "model": "Model aliases and fallback groups (public model names).",
    "pricing": "Model prices.",
    "provider": "Upstream LLM deployments (providers).",
    "routing": "Routing strategies per model (docs/routing.md).",
    "secrets": "Encryption of provider keys (and MCP servers' header values) stored in the log.",
    "serve": "Run a gateway node: the OpenAI-compatible HTTP API on --port.",
    "session": "Console sessions from SSO sign-in (list, revoke on every node).",
    "snapshot": "Projection snapshots (nodes start from the newest one plus the tail of the log).",
    "team": "Teams (a shared budget over several keys).",
    "usage": "Requests, tokens, media units, hosted tool uses and cost per virtual key (UTC days, inclusive).",
}

# Commands that work on this machine and its database whatever SHIELDES_ADMIN_URL says (the node
# itself, the embedded database, local checks, the log's maintenance and the local encryption key).
LOCAL = frozenset({"serve", "db", "doctor", "compact", "secrets"})


def _load(name: str) -> click.Command:
    module_name, attribute = COMMANDS[name]
    command: click.Command = getattr(importlib.import_module(f"shieldes.cli.{module_name}"), attribute)
    if name == "config":
        # `config show/diff` (history) and `config import/export` (interchange) form one group
        from shieldes.cli import config_io_cmd

        assert isinstance(command, click.Group)
        command.add_command(config_io_cmd.config_import)
        command.add_command(config_io_cmd.config_export)
    return command


class LazyCommands(MutableMapping[str, click.Command]):
    """The root group's commands by name: every name is known up front, a command's module is
    imported on the first read of that name (click reads only the invoked one; help reads all)."""

    def __init__(self) -> None:
        self._loaded: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._loaded:
            if name not in COMMANDS:
                raise KeyError(name)
            self._loaded[name] = _load(name)
        return self._loaded[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        del self._loaded[name]

    def __contains__(self, name: object) -> bool:
        return name in self._loaded or name in COMMANDS

    def __iter__(self) -> Iterator[str]:
        return iter(sorted({*COMMANDS, *self._loaded}))

    def __len__(self) -> int:
        return len({*COMMANDS, *self._loaded})


class LazyGroup(OneLineGroup):
    """The root group, its commands a LazyCommands."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands = LazyCommands()

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from SHORT_HELP: no command module is imported to print it."""
        names = [name for name in self.list_commands(ctx) if name in SHORT_HELP]
        # the whole first sentence, as every group lists its commands (common.OneLineGroup)
        format_command_list(formatter, [(name, click.Command(name, help=SHORT_HELP[name])
                                         .get_short_help_str(WHOLE_SENTENCE)) for name in names])


@click.group(cls=LazyGroup)
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of tables (every command)")
@click.option("--admin-url", metavar="URL",
              help="run admin commands through this node's admin API (default: $SHIELDES_ADMIN_URL; unset: "
                   "write to Postgres directly); the token is $SHIELDES_ADMIN_TOKEN")
@click.pass_context
def cli(ctx: click.Context, as_json: bool, admin_url: str | None) -> None:
    """shieldes: an AI gateway whose cluster state lives in a Postgres event log."""
    settings = _settings(ctx.meta.get(ARGS, ()))
    ctx.obj = CliContext(settings=settings, as_json=as_json,
                         role=f"shieldes {ctx.invoked_subcommand or ''}".strip(),
                         admin_url=(admin_url or settings.admin_url or "").strip() or None,
                         local=ctx.invoked_subcommand in LOCAL)
    ctx.call_on_close(ctx.obj.close)


def _settings(args: Sequence[str]) -> Settings:
    """The environment's settings: read without pydantic where it can be (most commands are short
    and pydantic-settings takes longer to import than a key write takes to run), else by Settings.
    `args`: the command line, whose `--json` (on the command too) makes a refusal JSON."""
    from shieldes.settings_env import read_env

    settings = read_env()
    if settings is not None:
        return settings
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from shieldes.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"SHIELDES_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
        )
        fail(f"invalid setting {problems}; fix the environment variable or .env entry", "invalid_setting",
             args=args)
    except SettingsError as exc:  # a list setting whose value is not JSON: raised before validation
        import re

        field = re.search(r'field "(\w+)"', str(exc))
        name = f"SHIELDES_{field.group(1).upper()}" if field else "a SHIELDES_* variable"
        fail(f"invalid setting {name}: not valid JSON (write a JSON list, e.g. [\"a\", \"b\"]); fix the "
             "environment variable or .env entry", "invalid_setting", args=args)


def main() -> None:
    # A command's start is mostly imports: many long-lived objects and no cycles worth collecting
    # (about 10 ms of collections in a key write). The cyclic GC is off until the command has its
    # database (CliContext.database_url), or for `serve` until the node is up.
    gc.disable()
    try:
        cli(prog_name="shieldes")
    finally:
        # The process ends: the OS takes its memory back, so the interpreter's last collection, a
        # walk over every object the imports made (40-60 ms of CPU here), is left out. Connections
        # and the embedded database's lease are closed by the command itself, not by finalizers.
        gc.freeze()
