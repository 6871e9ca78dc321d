"""Registering an MCP server: the pure checks of `shieldes mcp add` (name, URL, upstream headers)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from shieldes.errors import CommandRejected, SubjectNotFound
from shieldes.events.catalog import McpServerAdded, McpServerUpdated
from shieldes.mcp.access import check_server_name
from shieldes.projections.commands import check_base_url
from shieldes.projections.state import ConfigState

if TYPE_CHECKING:
    from shieldes.settings import Settings

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
# headers the gateway itself sets or relays per request: a registered value would fight them
RESERVED = frozenset({"host", "content-length", "content-type", "accept", "connection", "transfer-encoding",
                      "mcp-session-id", "mcp-protocol-version", "last-event-id", "te", "upgrade",
                      "keep-alive", "proxy-authorization", "x-request-id"})
MAX_HEADERS = 32


def parse_header(spec: str) -> tuple[str, str]:
    """`Name: value` as given to `--header` (the value may itself hold colons)."""
    name, colon, value = spec.partition(":")
    name, value = name.strip(), value.strip()
    if not colon or not name:
        raise CommandRejected(f"invalid --header {_shown(spec)}: use 'Name: value', e.g. "
                              "--header 'Authorization: Bearer TOKEN'")
    if not value:
        raise CommandRejected(f"--header {name!r} has an empty value; give the value after the colon")
    return name, value


def _shown(spec: str) -> str:
    """A refused header spec without its value (it may be a secret)."""
    name, colon, _ = spec.partition(":")
    words = name.split()
    if not colon or len(words) != 1:  # the value may be all there is (a bare token): show none of it
        return "(it has no 'Name:' part)"
    return repr(words[0][:40] + ": ...")


def check_header_name(name: str) -> str:
    if not _HEADER_NAME.match(name):
        raise CommandRejected(f"invalid header name {name[:40]!r}: use letters, digits and - (e.g. Authorization)")
    if name.lower() in RESERVED:
        raise CommandRejected(f"header {name!r} is set by the gateway for each request and cannot be registered; "
                              "register the server's own headers (Authorization, X-Api-Key, ...)")
    return name


def check_url(url: str) -> str:
    """The server's Streamable HTTP endpoint, e.g. https://mcp.example.com/mcp."""
    try:
        return check_base_url(url)
    except CommandRejected as exc:
        raise CommandRejected(exc.message.replace("--base-url", "--url").replace("[/PATH]", "/PATH")) from None


def mcp_server_added(state: ConfigState, name: str, url: str, headers: Mapping[str, str]) -> McpServerAdded:
    check_server_name(name)
    if name in state.mcp_servers:
        raise CommandRejected(f"MCP server {name!r} already exists; remove it first (`shieldes mcp remove "
                              f"{name}`) or pick another name")
    return McpServerAdded(name, check_url(url), check_headers(headers))


def mcp_server_updated(state: ConfigState, name: str, headers: Mapping[str, str]) -> McpServerUpdated:
    server = state.mcp_servers.get(name)
    if server is None:
        raise SubjectNotFound(f"no MCP server named {name!r}; see `shieldes mcp list`", code="mcp_server_not_found")
    return McpServerUpdated(name, server.url, check_headers(headers))


def mcp_server_changed(state: ConfigState, name: str, url: str | None,
                       headers: Mapping[str, str] | None) -> McpServerUpdated:
    """`mcp update`: a new URL and/or a new set of headers (a rotated token), in place."""
    server = state.mcp_servers.get(name)
    if server is None:
        raise SubjectNotFound(f"no MCP server named {name!r}; see `shieldes mcp list`", code="mcp_server_not_found")
    if url is None and headers is None:
        raise CommandRejected("nothing to change: pass --url, or the new set of --header / --header-env")
    return McpServerUpdated(name, server.url if url is None else check_url(url),
                            dict(server.headers) if headers is None else check_headers(headers))


def check_headers(headers: Mapping[str, str]) -> dict[str, str]:
    if len(headers) > MAX_HEADERS:
        raise CommandRejected(f"at most {MAX_HEADERS} --header options per server")
    seen: set[str] = set()
    for h, ref in headers.items():
        check_header_name(h)
        if h.lower() in seen:
            raise CommandRejected(f"header {h!r} is given twice; give each header once")
        seen.add(h.lower())
        if not ref.startswith(("env:", "enc:")):  # the caller stores values encrypted, never as given
            raise CommandRejected(f"header {h!r} must be stored as env:VAR or encrypted")
    return dict(headers)


def header_refs(values: Mapping[str, str], env_vars: Mapping[str, str], encryption_key: str | None) -> dict[str, str]:
    """The registered headers as stored: each value encrypted (as `provider add --api-key`), or an
    `env:VAR` reference read on each node (as `--api-key-env`). Refused before anything is encrypted."""
    from shieldes import secrets

    both = {h.lower() for h in values} & {h.lower() for h in env_vars}
    if both:
        raise CommandRejected(f"header {sorted(both)[0]!r} is given both as a value and from an environment "
                              "variable; give it once")
    for h, v in values.items():
        check_header_name(h)
        if not v.strip():
            raise CommandRejected(f"header {h!r} has an empty value; give its value")
        if any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in v):
            raise CommandRejected(f"header {h!r} has a control character (a line break?) in its value; give it "
                                  "on one line")
    if values and encryption_key is None:  # (not the provider's wording: --api-key-env is no option here)
        raise CommandRejected(f"storing the value of header {next(iter(values))!r} needs SHIELDES_ENCRYPTION_KEY; "
                              "set it (`shieldes secrets generate-key` makes one), or give the header with "
                              "--header-env 'Name: VAR' instead (each node reads the variable)")
    out = {check_header_name(h): secrets.env_ref(var) for h, var in env_vars.items()}
    for h, v in values.items():
        out[h] = secrets.encrypt_secret(v.strip(), encryption_key)
    return out


def stored_headers(settings: Settings, values: Mapping[str, str], env_vars: Mapping[str, str]) -> dict[str, str]:
    """header_refs under the encryption key (made on first use with the embedded database, as for
    provider keys); none is needed when no value is given."""
    from shieldes import secrets

    key = secrets.encryption_key_for(settings, create=True) if values else None
    return header_refs(values, env_vars, key)
