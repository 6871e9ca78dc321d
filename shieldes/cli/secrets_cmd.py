"""`shieldes secrets generate-key|status|rotate`: the encryption key of provider secrets stored in the log.

Rotation re-encrypts every stored provider key, and every MCP server's encrypted header values
(listed as `mcp:NAME`), under SHIELDES_ENCRYPTION_KEY, reading the old ciphertexts with
SHIELDES_ENCRYPTION_KEY_OLD; nodes holding both keys keep serving throughout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from shieldes.cli.common import cli_context, json_option, read_config, run, run_read, write
from shieldes.cli.oneline import OneLineGroup, handle_errors
from shieldes.cli.output import emit
from shieldes.errors import InvalidRequest
from shieldes.projections.shared_commands import SetMcpHeaders, UpdateProvider
from shieldes.projections.state import Deployment, McpServer
from shieldes.secrets import Keyring, SecretError, generate_key, key_id_of, keyring_for


@click.group("secrets", cls=OneLineGroup)
def secrets_group() -> None:
    """Encryption of provider keys (and MCP servers' header values) stored in the log."""


def _keyring() -> Keyring:
    return keyring_for(cli_context().settings)


def _encrypted(providers: Mapping[str, Deployment]) -> list[Deployment]:
    return [d for _, d in sorted(providers.items()) if key_id_of(d.secret_ref or "") is not None]


def _mcp_refs(servers: Mapping[str, McpServer]) -> list[tuple[str, str]]:
    """(server, ref) of every encrypted MCP header value, as rows name them: `mcp:NAME`."""
    return [(f"mcp:{m.name}", ref) for _, m in sorted(servers.items()) for _, ref in sorted(m.headers.items())
            if key_id_of(ref) is not None]


@secrets_group.command("generate-key")
@json_option
@handle_errors
def generate_key_cmd(as_json: bool) -> None:
    """Print a fresh random key for SHIELDES_ENCRYPTION_KEY."""
    key = generate_key()
    if cli_context().as_json:
        emit({"key": key, "key_id": Keyring(key).current_key_id}, as_json=True)
    else:
        click.echo(key)


@secrets_group.command("status")
@json_option
@handle_errors
def status(as_json: bool) -> None:
    """Which key id each encrypted provider key is stored under, and whether it needs rotating."""
    keyring = _keyring()
    view = run_read(read_config())
    rows = [
        {"provider": d.name, "key_id": key_id_of(d.secret_ref or ""),
         "current": not keyring.needs_rotation(d.secret_ref) if keyring.current_key_id else False}
        for d in _encrypted(view.state.providers)
    ]
    rows += [{"provider": name, "key_id": key_id_of(ref),
              "current": not keyring.needs_rotation(ref) if keyring.current_key_id else False}
             for name, ref in _mcp_refs(view.state.mcp_servers)]
    emit(rows, as_json=cli_context().as_json, columns=("provider", "key_id", "current"))


def _decrypted(keyring: Keyring, ref: str, whose: str) -> str:
    """The plaintext of `ref`, or the refusal naming whose secret it is (one of many stored)."""
    try:
        return keyring.decrypt(ref)
    except SecretError as exc:
        raise SecretError(f"{whose}: {exc.message}", code=exc.code) from None


@secrets_group.command("rotate")
@click.option("--dry-run", is_flag=True, help="show what would be re-encrypted; append nothing")
@json_option
@handle_errors
def rotate(dry_run: bool, as_json: bool) -> None:
    """Re-encrypt every stored provider key under SHIELDES_ENCRYPTION_KEY.

    Old ciphertexts are read with SHIELDES_ENCRYPTION_KEY_OLD (or the current key). Every key is
    decrypted before anything is written, so a missing old key refuses the whole rotation."""
    ctx = cli_context()
    keyring = _keyring()
    if keyring.current_key_id is None:
        raise InvalidRequest("set SHIELDES_ENCRYPTION_KEY to the new key (and SHIELDES_ENCRYPTION_KEY_OLD to the "
                             "old one) before rotating; `shieldes secrets generate-key` makes a new key")
    view = run_read(read_config())
    todo = [d for d in _encrypted(view.state.providers) if keyring.needs_rotation(d.secret_ref)]
    # refuses before any write
    plaintexts = {d.name: _decrypted(keyring, d.secret_ref or "", f"provider {d.name!r}") for d in todo}
    servers = {  # MCP servers with a header to re-encrypt: every header, the others kept as they are
        m.name: {h: keyring.encrypt(_decrypted(keyring, r, f"MCP server {m.name!r} header {h!r}"))
                 if keyring.needs_rotation(r) else r for h, r in m.headers.items()}
        for _, m in sorted(view.state.mcp_servers.items()) if any(keyring.needs_rotation(r) for r in m.headers.values())
    }
    rows: list[dict[str, Any]] = []
    for d in todo:
        row: dict[str, Any] = {"provider": d.name, "from_key_id": key_id_of(d.secret_ref or ""),
                               "to_key_id": keyring.current_key_id, "rotated": not dry_run}
        if not dry_run:
            written = run(write(UpdateProvider(d.name, secret_ref=keyring.encrypt(plaintexts[d.name]))))
            row["position"] = written.position
        rows.append(row)
    for server, headers in servers.items():
        row = {"provider": f"mcp:{server}", "from_key_id": ",".join(sorted(
            {str(key_id_of(r)) for r in view.state.mcp_servers[server].headers.values() if keyring.needs_rotation(r)})),
            "to_key_id": keyring.current_key_id, "rotated": not dry_run}
        if not dry_run:
            row["position"] = run(write(SetMcpHeaders(server, headers))).position
        rows.append(row)
    emit(rows, as_json=ctx.as_json, columns=("provider", "from_key_id", "to_key_id", "rotated"))
