"""What a key write's process imports: an admin write is a short process whose time is mostly its
imports, so `shieldes key create` / `key revoke` must not load the gateway, the node, the snapshot
codec, a connection pool, pydantic, aiohttp, grpc and the like (docs/benchmarks.md, "CLI key
writes at a million keys")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.integration.serve_process import serving

ROOT = Path(__file__).resolve().parents[2]

# Top-level packages and shieldes modules (with their submodules) a key write must not import.
HEAVY = (
    "pydantic", "pydantic_core", "pydantic_settings", "aiohttp", "grpc", "cryptography", "prometheus_client",
    "opentelemetry", "alembic", "sqlalchemy", "zstandard", "yaml", "jwt",
    "psycopg_pool",  # one connection for a short command: no pool, no second connection to probe first
    "shieldes.settings", "shieldes.gateway", "shieldes.node", "shieldes.cluster", "shieldes.snapshots",
    "shieldes.doctor", "shieldes.routing", "shieldes.providers.registry", "shieldes.embedded",
    "shieldes.requestlog", "shieldes.responses", "shieldes.console", "shieldes.importers",
    "shieldes.projections.projector", "shieldes.projections.usage", "shieldes.providers.base",
    "shieldes.events.folded_read", "shieldes.usage.pricing", "shieldes.providers.kinds",
    "shieldes.projections.shared_commands",  # the shared config's commands: a key write decides none
)


# `python -m shieldes ARGS`, then the names in sys.modules at exit (after click's sys.exit) to a
# file, and whether the cyclic GC is on then (as `gc:True` / `gc:False`)
RUN = ("import atexit, gc, runpy, sys\n"
       "out = sys.argv[1]\n"
       "atexit.register(lambda: open(out, 'w').write('\\n'.join([*sorted(sys.modules), f'gc:{gc.isenabled()}'])))\n"
       "sys.argv = ['shieldes', *sys.argv[2:]]\n"
       "runpy.run_module('shieldes', run_name='__main__', alter_sys=True)\n")


def imported(database_url: str, *args: str, tmp: Path, env: dict[str, str] | None = None) -> set[str]:
    """The modules `python -m shieldes ARGS` has loaded when it exits; the command must succeed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SHIELDES_DATABASE_URL": database_url, "SHIELDES_ACTOR": "ci",
           **(env or {})}
    out = tmp / "modules.txt"
    done = subprocess.run([sys.executable, "-c", RUN, str(out), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return set(out.read_text().split())


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_key_create_and_revoke_import_no_heavy_module(database_url: str, tmp_path: Path) -> None:
    created = imported(database_url, "key", "create", "--name", "light", tmp=tmp_path)
    assert "shieldes.cli.key_cmd" in created and "shieldes.config_writer" in created  # the write ran here
    # the cyclic GC, off while a command imports its modules, is on again for its work
    assert "gc:True" in created and "gc:False" in imported(database_url, "key", "--help", tmp=tmp_path)
    assert heavy(created) == []
    revoked = imported(database_url, "--json", "key", "revoke", "light", tmp=tmp_path)
    assert "shieldes.config_writer" in revoked
    assert heavy(revoked) == []


def test_team_list_and_a_team_budget_import_no_key_table_or_whole_snapshot_codec(database_url: str,
                                                                                tmp_path: Path) -> None:
    """A teams-only read (the teams part of a snapshot plus the config tail) does not load the
    modules that decode a whole snapshot or hold a million keys."""
    assert "shieldes.cli.team_cmd" in imported(database_url, "team", "create", "squad", tmp=tmp_path)
    imported(database_url, "snapshot", "create", tmp=tmp_path)  # a snapshot with a teams part to read
    whole = ("shieldes.snapshots.codec", "shieldes.snapshots.store", "shieldes.snapshots.key_columns",
             "shieldes.projections.keytable", "shieldes.projections.projector", "shieldes.projections.usage",
             "psycopg_pool", "pydantic", "aiohttp")
    for args in (("--json", "team", "list"), ("budget", "show", "--team", "squad")):
        modules = imported(database_url, *args, tmp=tmp_path)
        assert "shieldes.snapshots.teams_start" in modules, args  # the teams-only read ran
        assert sorted(m for m in modules if any(m == w or m.startswith(w + ".") for w in whole)) == [], args


def test_the_guard_sees_a_heavy_import(database_url: str, tmp_path: Path) -> None:
    """A setting only pydantic reads (`yes` for a boolean) makes the same command import it: seen."""
    found = heavy(imported(database_url, "key", "create", "--name", "pydantic-read",
                           tmp=tmp_path, env={"SHIELDES_ALLOW_UNPRICED": "yes"}))
    assert "pydantic" in found and "shieldes.settings" in found
    assert heavy({"aiohttp.web", "shieldes.gateway.app", "pydanticx", "shieldes.settings_env"}) == [
        "aiohttp.web", "shieldes.gateway.app"]


def test_top_level_help_imports_no_command_module(tmp_path: Path) -> None:
    """`shieldes --help` lists every command from main.SHORT_HELP: no command's module (the
    doctor's aiohttp, pydantic and provider kinds among them) is imported to print one line each."""
    modules = imported("postgresql://unused.invalid/none", "--help", tmp=tmp_path)
    assert "shieldes.cli.main" in modules
    assert sorted(m for m in modules if m.startswith("shieldes.cli.") and m.endswith("_cmd")) == []
    assert heavy(modules) == []
    doctor_help = imported("postgresql://unused.invalid/none", "doctor", "--help", tmp=tmp_path)
    assert "shieldes.cli.doctor_cmd" in doctor_help and heavy(doctor_help) == []


def test_top_level_help_lines_are_the_commands_own() -> None:
    """SHORT_HELP says what each command's own help says (a changed docstring changes both)."""
    from shieldes.cli.main import COMMANDS, SHORT_HELP, _load

    assert set(SHORT_HELP) == set(COMMANDS)
    for name in COMMANDS:
        command = _load(name)
        own = command.short_help or " ".join((command.help or "").split("\n\n")[0].split())
        assert SHORT_HELP[name] == own, name


def test_a_node_loads_grpc_only_where_gossip_runs(database_url: str) -> None:
    """gRPC and the gossip's protobuf code are loaded by a node that gossips (a cluster secret set),
    not by one without a secret: read from the shared objects the running node has mapped."""
    def mapped(proc: subprocess.Popen[str]) -> str:
        return Path(f"/proc/{proc.pid}/maps").read_text()

    with serving(database_url, "alone", env={"SHIELDES_CLUSTER_SECRET": ""}) as (proc, _lines, _port):
        assert "cygrpc" not in mapped(proc) and "/aiohttp/" in mapped(proc)  # (the node's own libraries are)
    with serving(database_url, "gossiping", env={"SHIELDES_CLUSTER_SECRET": "s" * 32,
                                                  "SHIELDES_GOSSIP_PORT": "0"}) as (proc, _lines, _port):
        assert "cygrpc" in mapped(proc)
