"""What is configured and what is missing, as pure functions of the config and this node's
environment: the node's startup report and `shieldes doctor` read the same findings."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

from shieldes.projections.state import ConfigState, Deployment
from shieldes.secrets import Keyring, SecretError, resolve_secret

ADD_PROVIDER = ("shieldes provider add NAME --type openai --base-url URL --api-key KEY "
                "--models MODEL[,MODEL...]")


@dataclass(frozen=True)
class Finding:
    """One check's outcome; `fix` says what to do when `ok` is False, or for a `warning` (ok: it
    fails nothing, but is worth a look)."""

    check: str
    subject: str
    ok: bool
    detail: str
    fix: str | None = None
    warning: bool = False

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"check": self.check, "subject": self.subject, "ok": self.ok,
                                  "detail": self.detail, "fix": self.fix}
        if self.warning:
            out["warning"] = True
        return out


def unknown_setting_findings(names: Iterable[str], known: Collection[str], prefix: str = "SHIELDES_"
                             ) -> list[Finding]:
    """A warning for each name in `names` (the environment's and .env's) that starts with `prefix`
    but is not in `known`: pydantic-settings ignores it, so a misspelt setting would silently keep
    its default. Names are matched as Settings reads them, in any case; each is named once, with
    the closest known name when one is close."""
    # matched without the prefix, which every name shares and would make any two look alike
    choices = {name[len(prefix):]: name for name in known if name.startswith(prefix)}
    out = []
    seen = set()
    for name in sorted(set(names)):
        upper = name.upper()
        if not upper.startswith(prefix) or upper in known or upper in seen:
            continue
        seen.add(upper)
        close = [choices[c] for c in difflib.get_close_matches(upper[len(prefix):], sorted(choices), n=1, cutoff=0.75)]
        hint = f"did you mean {close[0]}?" if close else "see docs/configuration.md for the settings"
        out.append(Finding("settings", name, True, f"{name} is set but is no shieldes setting: it is ignored; {hint}",
                           f"rename it to {close[0]}" if close else "remove it or correct its name", warning=True))
    return out


def referenced_env_names(config: ConfigState) -> frozenset[str]:
    """The variables the config names by `env:` (provider keys, MCP header values): an operator's
    own, read by the node as references, whatever their prefix, so never an unknown setting."""
    refs = [d.secret_ref for d in config.providers.values()]
    refs += [ref for server in config.mcp_servers.values() for ref in server.headers.values()]
    return frozenset(ref[4:].upper() for ref in refs if ref is not None and ref.startswith("env:"))


def unknown_setting_lines(names: Iterable[str], known: Collection[str]) -> list[str]:
    """The node's start-up warnings of unknown_setting_findings."""
    return [f.detail for f in unknown_setting_findings(names, known)]


def credential_finding(dep: Deployment, keyring: Keyring, environ: Mapping[str, str]) -> Finding:
    """Can this node read deployment `dep`'s provider key?"""
    ref = dep.secret_ref
    if ref is None:
        return Finding("credentials", dep.name, True, "no provider key configured (none sent upstream)")
    try:
        resolve_secret(ref, keyring, environ)
    except SecretError as exc:
        if ref.startswith("env:"):
            fix = (f"set {ref[4:]} in the environment of every node (then restart them), or store the key "
                   f"with `shieldes provider update {dep.name} --api-key KEY`")
        else:
            fix = ("set SHIELDES_ENCRYPTION_KEY (or SHIELDES_ENCRYPTION_KEY_OLD during a rotation) on this node to "
                   "the key the provider key was stored with")
        return Finding("credentials", dep.name, False, exc.message, fix)
    where = f"environment variable {ref[4:]}" if ref.startswith("env:") else "stored encrypted"
    return Finding("credentials", dep.name, True, f"provider key readable ({where})")


def credential_findings(config: ConfigState, keyring: Keyring,
                        environ: Mapping[str, str]) -> list[Finding]:
    return [credential_finding(d, keyring, environ)
            for d in sorted(config.providers.values(), key=lambda d: d.name)]


def mcp_header_findings(config: ConfigState, keyring: Keyring, environ: Mapping[str, str]) -> list[Finding]:
    """Can this node read every registered MCP server's header values?"""
    out = []
    for server in sorted(config.mcp_servers.values(), key=lambda m: m.name):
        for name, ref in sorted(server.headers.items()):
            try:
                resolve_secret(ref, keyring, environ)
            except SecretError as exc:
                fix = (f"set {ref[4:]} in the environment of every node (then restart them)" if ref.startswith("env:")
                       else "set SHIELDES_ENCRYPTION_KEY (or SHIELDES_ENCRYPTION_KEY_OLD during a rotation) on this "
                            "node to the key the header was stored with")
                out.append(Finding("mcp headers", f"{server.name} {name}", False, exc.message, fix))
                continue
            out.append(Finding("mcp headers", f"{server.name} {name}", True, "readable"))
    return out


def price_findings(config: ConfigState, priced: Callable[[str], bool], *, allow_unpriced: bool = False
                   ) -> list[Finding]:
    """One finding per served model: is there a price (shipped default, `pricing set` for it or for
    a pattern matching it)? A provider's pattern is no model: the names it serves are not known.
    What an unpriced model does depends on SHIELDES_ALLOW_UNPRICED (`allow_unpriced`): refused to
    keys and teams with a budget (fail closed), or served to them at $0, beyond their budget."""
    if allow_unpriced:
        unpriced = ("no price: its usage is counted at $0, and keys and teams with a budget are served it "
                    "without limit (SHIELDES_ALLOW_UNPRICED is on)")
    else:
        unpriced = ("no price: keys and teams with a budget are refused it (403 model_not_priced); other keys' "
                    "usage of it is counted at $0")
    out = []
    for model in config.exact_models():
        if priced(model):
            out.append(Finding("prices", model, True, "priced"))
        else:
            out.append(Finding(
                "prices", model, False, unpriced,
                f"shieldes pricing set {model} --input USD_PER_1M --output USD_PER_1M",
            ))
    return out


# Failed admin sign-ins are bounded per address and per node, but a bound slows guessing, it does
# not stop it (many addresses, many nodes), and a session token lets the OIDC client secret (which
# signs sessions) be guessed offline, with no bound at all. Tokens shieldes makes carry 256 bits;
# the bootstrap token and the client secret are chosen by the operator, and a short one can be guessed.
MIN_SECRET_CHARS = 32


def weak_secret_lines(admin_token: str | None, oidc_client_secret: str | None) -> list[str]:
    """A warning for each operator-chosen admin secret shorter than MIN_SECRET_CHARS."""
    out = []
    for value, name, guessed in ((admin_token, "SHIELDES_ADMIN_TOKEN",
                                  "by anyone who can reach /admin/ (failed sign-ins are only slowed down)"),
                                 (oidc_client_secret, "SHIELDES_OIDC_CLIENT_SECRET",
                                  "offline from one console session, which it signs")):
        if value and len(value) < MIN_SECRET_CHARS:
            out.append(f"{name} is {len(value)} characters: it can be guessed {guessed}; use at least "
                       f"{MIN_SECRET_CHARS} random characters, e.g. "
                       "`openssl rand -base64 32`, on every node")
    return out


OIDC_SETTINGS = ("SHIELDES_OIDC_ISSUER", "SHIELDES_OIDC_CLIENT_ID", "SHIELDES_OIDC_CLIENT_SECRET")


def partial_oidc_lines(issuer: str | None, client_id: str | None, client_secret: str | None) -> list[str]:
    """A warning when some but not all of the three SSO settings are set: SSO is then off, which a
    node would otherwise not say."""
    given = dict(zip(OIDC_SETTINGS, (issuer, client_id, client_secret), strict=True))
    unset = [name for name, value in given.items() if not value]
    if len(unset) in (0, len(given)):
        return []
    set_ = [name for name in given if name not in unset]
    return [f"SSO sign-in is off: {' and '.join(set_)} {'is' if len(set_) == 1 else 'are'} set but "
            f"{' and '.join(unset)} {'is' if len(unset) == 1 else 'are'} not; set all three on every node to offer "
            "\"Sign in with SSO\" on the console (docs/admin-api.md), or unset the others"]


def startup_report(config: ConfigState, *, keyring: Keyring, environ: Mapping[str, str],
                   priced: Callable[[str], bool], peers: int, gossip: bool, bootstrap_token: bool = False,
                   oidc: bool = False) -> tuple[list[str], list[str]]:
    """(what is configured, what is missing) as log lines for a node that just caught up."""
    providers = sorted(config.providers.values(), key=lambda d: d.name)
    active = len(config.key_ids_by_hash)  # live keys only: O(1), where counting would read every key
    configured = [
        f"providers: {', '.join(f'{d.name} ({d.kind})' for d in providers) or 'none'}",
        f"models: {', '.join(config.all_models()) or 'none'}",
        f"virtual keys: {active} active ({len(config.keys) - active} revoked), teams: {len(config.teams)}",
        f"cluster: {peers} other node(s) alive, gossip {'on' if gossip else 'off (SHIELDES_CLUSTER_SECRET unset)'}",
        admin_line(bootstrap_token, sum(not t.revoked for t in config.admin_tokens.values()), oidc,
                   any_tokens=bool(config.admin_tokens)),
    ]
    missing = []
    if not providers:
        missing.append(f"no providers yet: requests get 404 until you run `{ADD_PROVIDER}`")
    elif not active:
        missing.append("no virtual keys yet: create one with `shieldes key create --name NAME`")
    for f in credential_findings(config, keyring, environ):
        if not f.ok:
            missing.append(f"provider {f.subject!r} cannot be called from this node: {f.detail}; {f.fix}")
    if config.mcp_servers:
        configured.append(f"mcp servers: {', '.join(sorted(config.mcp_servers))}")
    for f in mcp_header_findings(config, keyring, environ):
        if not f.ok:
            server, header = f.subject.split(" ", 1)
            missing.append(f"MCP server {server!r} cannot be used from this node (/mcp/{server} answers 502): its "
                           f"header {header!r} cannot be read: {f.detail}; {f.fix}")
    unpriced = [f.subject for f in price_findings(config, priced) if not f.ok]
    if unpriced:
        missing.append(f"no price for {', '.join(unpriced)}: keys and teams with a budget are refused it "
                       "(403 model_not_priced, unless SHIELDES_ALLOW_UNPRICED serves it to them at $0) and other "
                       "usage of it is counted at $0; set one with `shieldes pricing set MODEL --input X --output Y`")
    if peers and not gossip:
        missing.append("SHIELDES_CLUSTER_SECRET is not set while other nodes are alive: each node enforces "
                       "limits as limit / nodes; set the same secret on every node")
    return configured, missing


def admin_line(bootstrap_token: bool, active_tokens: int, oidc: bool, *, any_tokens: bool) -> str:
    """How to reach the admin API and the web console on this node, or how to turn them on: a new
    operator learns here that /ui/ exists and what signs in to it."""
    if not (bootstrap_token or any_tokens or oidc):
        return ("admin API and console: off; set SHIELDES_ADMIN_TOKEN on the node, or create a token with "
                "`shieldes admin-token create --name NAME --role admin`, then open /ui/ and sign in with it")
    ways = [way for on, way in ((bootstrap_token, "SHIELDES_ADMIN_TOKEN"),
                                (active_tokens > 0, f"{active_tokens} admin token(s)"),
                                (oidc, "single sign-on")) if on]
    return f"admin API and console: /admin/v1/ and /ui/, sign in with {' or '.join(ways) or 'no active token'}"
