"""A shieldes export's MCP servers -> the commands `shieldes mcp add|update` would give (pure, but
for encrypting a header value written in plaintext by hand).

A server missing here is added; one present takes the file's URL and headers (the file lists the
whole set: a header it leaves out is removed), in the one `mcp_server.updated` event `mcp update`
appends, so /mcp/NAME answers throughout. Header values follow the rule of provider keys: `env:VAR`
is kept as a reference, `"encrypted"` (a value the export left out) keeps the value stored here
and is refused where there is none, a plaintext value is stored encrypted. Servers only here are
kept (an import removes nothing), with a note.
"""

from __future__ import annotations

from collections.abc import Mapping

from shieldes.errors import CommandRejected
from shieldes.importers.plan import Change, Plan
from shieldes.importers.spec import ImportRejected, ImportSpec, McpServerSpec, SecretSpec
from shieldes.mcp.servers import check_url, header_refs
from shieldes.projections.shared_commands import AddMcpServer, UpdateMcpServer
from shieldes.projections.state import ConfigState, McpServer
from shieldes.secrets import SecretError, env_ref, resolve_secret


def plan_mcp_servers(plan: Plan, state: ConfigState, spec: ImportSpec, encryption_key: str | None) -> None:
    for given in spec.mcp_servers:
        old = state.mcp_servers.get(given.name)
        try:
            url = check_url(given.url)
        except CommandRejected as exc:
            raise ImportRejected(f"{given.origin}: {exc.message}") from None
        headers = {name: _header_ref(given, name, secret, old, encryption_key) for name, secret in given.headers}
        if old is None:
            plan.commands.append(AddMcpServer(given.name, url, headers))
            plan.changes.append(Change("mcp_server", given.name, "add", _describe(url, headers)))
            continue
        diffs = [f"url {old.url} -> {url}"] if old.url != url else []
        diffs += header_diffs(old.headers, headers)
        if not diffs:
            plan.changes.append(Change("mcp_server", given.name, "unchanged", _describe(old.url, old.headers)))
            continue
        if not spec.updates_providers:  # another gateway's file never repoints what is here (as providers)
            raise ImportRejected(
                f"MCP server {given.name!r} already exists here ({_describe(old.url, old.headers)}) but {given.origin} "
                f"has {_describe(url, headers)}; importing would repoint it. Remove it first (`shieldes mcp remove "
                f"{given.name}`) or rename the entry in the file, and import again")
        plan.commands.append(UpdateMcpServer(given.name, url if old.url != url else None,
                                             headers if dict(old.headers) != headers else None))
        plan.changes.append(Change("mcp_server", given.name, "update", "; ".join(diffs)))
    named = {m.name for m in spec.mcp_servers}
    for name in sorted(set(state.mcp_servers) - named) if spec.updates_providers else ():
        plan.notes.append(f"MCP server {name!r} is here and not in the file: kept (an import removes nothing); "
                          f"run `shieldes mcp remove {name}` if it should go")


def header_diffs(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """What changes between two stored header sets, values named by reference only."""
    out = []
    for name in sorted(set(old) | set(new), key=str.lower):
        was, now = old.get(name), new.get(name)
        if was == now:
            continue
        if was is None:
            out.append(f"header {name} added ({_label(now)})")
        elif now is None:
            out.append(f"header {name} removed")
        elif _label(was) == _label(now):  # both encrypted: a new value written in the file
            out.append(f"header {name} gets a new encrypted value")
        else:
            out.append(f"header {name} {_label(was)} -> {_label(now)}")
    return out


def _header_ref(given: McpServerSpec, name: str, secret: SecretSpec, old: McpServer | None,
                encryption_key: str | None) -> str:
    where = f"{given.origin} header {name!r}"
    here = old.headers.get(name) if old is not None else None
    if secret.env_var is not None:
        try:
            return env_ref(secret.env_var)
        except SecretError as exc:
            raise ImportRejected(f"{where}: {exc.message}") from None
    if secret.encrypted:  # the export left the value out: keep the one stored here
        if here is not None and here.startswith("enc:"):
            return here
        if old is None:
            raise ImportRejected(
                f"{where} had an encrypted value where the file was exported, and the file does not hold it; "
                f"write \"env:VAR\" (a variable set on every node) as its value in the file, or remove the entry "
                f"and register the server with `shieldes mcp add {given.name} --url {given.url} --header "
                f"'{name}: VALUE'`")
        raise ImportRejected(
            f"{where} is {_label(here) if here else 'not set'} on MCP server {given.name!r} here, but the file says "
            f"\"encrypted\" (a value it does not hold); write \"env:VAR\" as its value in the file, or set it with "
            f"`shieldes mcp update {given.name} --header '{name}: VALUE' ...` and export the file again")
    value = secret.plaintext or ""
    if not encryption_key:
        raise ImportRejected(f"{where} holds a plaintext value; set SHIELDES_ENCRYPTION_KEY to store it encrypted, "
                             "or write \"env:VAR\" (a variable set on every node) instead")
    # Encryption is randomized: keep the stored token when it already holds this value (idempotence).
    if here is not None and here.startswith("enc:"):
        try:
            if resolve_secret(here, encryption_key) == value.strip():
                return here
        except SecretError:
            pass
    return header_refs({name: value}, {}, encryption_key)[name]


def _label(ref: str | None) -> str:
    return "none" if ref is None else ref if ref.startswith("env:") else "encrypted"


def _describe(url: str, headers: Mapping[str, str]) -> str:
    shown = ",".join(f"{h}={_label(ref)}" for h, ref in sorted(headers.items(), key=lambda kv: kv[0].lower()))
    return f"{url} headers={shown or 'none'}"
