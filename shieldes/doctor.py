"""`shieldes doctor`: every check an operator would run by hand, each with what to do when it fails.

The database checks come first; the others need the config, so they are skipped (and say so) when
the database cannot be read. Deployments are probed with a cheap authenticated `GET .../models`
under a short timeout; nothing is generated upstream.
"""

from __future__ import annotations

import asyncio
import os
import time
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import psycopg

from shieldes import db
from shieldes.checks import Finding, credential_finding, price_findings, referenced_env_names, unknown_setting_findings
from shieldes.cloud_credentials import node_credential_finding
from shieldes.cluster.membership import NODES_SQL, NodeRecord
from shieldes.config_writer import load_config
from shieldes.dbwait import DbWait
from shieldes.errors import DatabaseStalled, SchemaNotAtHead
from shieldes.events.codec import Codec
from shieldes.events.pg_store import PostgresEventStore, open_pool
from shieldes.projections.state import ConfigState, Deployment
from shieldes.providers.http import is_azure, join_endpoint
from shieldes.providers.proxies import proxy_for, variable_name
from shieldes.secrets import Keyring, SecretError, fingerprint, keyring_for, local_key_path, resolve_secret
from shieldes.settings import Settings
from shieldes.settings_env import dotenv_names, known_env_names
from shieldes.usage.pricing import price_for

PROBE_TIMEOUT = 5.0
STALLED_FIX = ("check the database: is it up and answering, a session holding locks (pg_stat_activity), free disk "
               "space; then run `shieldes doctor` again")
MAX_SKEW = 2.0  # seconds: liveness and budget periods assume node and database clocks agree this well
ANTHROPIC_VERSION = "2023-06-01"


async def database_findings(url: str) -> tuple[list[Finding], bool]:
    """Reachability, schema and clock skew; the bool says whether the config can be read."""
    where, subject = db.describe_url(url), "postgres"
    try:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        error = db.translate(exc, url)
        fix = "start Postgres or fix SHIELDES_DATABASE_URL; `shieldes db status` shows the embedded one"
        return [Finding("database", subject, False, error.message, fix)], False
    try:
        before = time.time()
        row = await (await conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8")).fetchone()
        after = time.time()
        revision = await db.async_schema_revision(conn)
    finally:
        await conn.close()
    out = [Finding("database", subject, True, f"reachable at {where}")]
    try:
        db.require_head(revision)
    except SchemaNotAtHead as exc:
        out.append(Finding("schema", subject, False, exc.message, "shieldes db upgrade"))
        return out, False
    out.append(Finding("schema", subject, True, f"at revision {revision}"))
    skew = float(row[0]) - (before + after) / 2 if row else 0.0
    ok = abs(skew) <= MAX_SKEW + (after - before) / 2
    out.append(Finding(
        "clock", subject, ok, f"this machine's clock is {abs(skew):.3f}s {'behind' if skew > 0 else 'ahead of'} "
        "the database's", None if ok else "synchronize the clocks (NTP: chrony or systemd-timesyncd) on both",
    ))
    return out, True


def probe_request(dep: Deployment, api_key: str | None) -> tuple[str, dict[str, str]]:
    """The cheapest authenticated call a deployment answers: its models list."""
    headers: dict[str, str] = {}
    if dep.kind == "anthropic":
        headers["anthropic-version"] = ANTHROPIC_VERSION
        if api_key:
            headers["x-api-key"] = api_key
    elif api_key:
        if is_azure(dep.base_url):
            headers["api-key"] = api_key
        else:
            headers["Authorization"] = "Bearer " + api_key
    return join_endpoint(dep.base_url, "/models"), headers


def probe_finding(dep: Deployment, status: int | None, error: str | None, *, key_sent: bool = True,
                  proxy: str | None = None, no_proxy: str = "NO_PROXY") -> Finding:
    """`key_sent`: the probe carried the provider key. Without one (none configured, or one this
    machine cannot read: the credentials check says why), an answer says nothing about a key.
    `proxy`: the variable naming the egress proxy the probe went through (HTTPS_PROXY, http_proxy),
    `no_proxy` the exceptions' variable, each as the operator spelt it."""
    if status is None and proxy is not None:  # the proxy, not the upstream, may be what failed
        return Finding("upstream", dep.name, False, f"cannot reach {dep.base_url} through the proxy {proxy} "
                       f"names: {error}", f"check {proxy} (and {no_proxy}) in this node's environment and that the "
                       f"proxy answers; then the URL (`shieldes provider update {dep.name} --base-url ...`)")
    if status is None:
        return Finding("upstream", dep.name, False, f"cannot reach {dep.base_url}: {error}",
                       f"check the URL (`shieldes provider update {dep.name} --base-url ...`) and this node's "
                       "network access to it")
    unread = not key_sent and dep.secret_ref is not None
    if status in (401, 403):
        if unread:
            return Finding("upstream", dep.name, False, f"reachable, but it asks for the provider key (HTTP {status}), "
                           "which this node cannot read", "fix the credentials check of this provider above")
        if not key_sent:
            return Finding("upstream", dep.name, False, f"reachable, but it asks for a key (HTTP {status}) and the "
                           "provider has none", f"give it one with `shieldes provider update {dep.name} "
                           "--api-key-env VAR` (or --api-key KEY)")
        return Finding("upstream", dep.name, False, f"reachable, but it refused the provider key (HTTP {status})",
                       f"store a valid key with `shieldes provider update {dep.name} --api-key KEY`")
    if status >= 500:
        return Finding("upstream", dep.name, False, f"reachable, but it answered HTTP {status}",
                       "check the provider's status page; requests fail over to other deployments meanwhile")
    if status >= 300:
        detail = f"reachable (HTTP {status} to a models listing)"
    elif key_sent:
        detail = "reachable, key accepted"
    elif unread:
        detail = "reachable; the key was not checked: this node cannot read it (see the credentials check)"
    else:
        detail = "reachable without a key (none configured)"
    return Finding("upstream", dep.name, True, detail)


async def probe(session: aiohttp.ClientSession, dep: Deployment, keyring: Keyring,
                environ: Mapping[str, str], proxies: Mapping[str, str] | None = None) -> Finding:
    """Reach the deployment the way a node does (the same egress proxy, providers/proxies.py)."""
    try:
        api_key = resolve_secret(dep.secret_ref, keyring, environ)
    except SecretError:
        api_key = None  # the credentials check reports it; reachability is still worth knowing
    through: str | None = None  # the proxy variable in play, named if the probe fails
    try:
        url, headers = probe_request(dep, api_key)  # a base URL stored before it was checked may not parse
        parts = urlsplit(url)
        if (proxies or {}).get(parts.scheme):
            through = variable_name(parts.scheme, environ)
        proxy = proxy_for(parts.scheme, parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80),
                          proxies or {})
        if proxy is None:
            through = None  # loopback, or NO_PROXY names the host
        via: dict[str, Any] = {}
        if proxy is not None:
            via["proxy"] = f"http://{proxy.where}"
            if proxy.authorization:
                via["proxy_headers"] = {"Proxy-Authorization": proxy.authorization}
        async with session.get(url, headers=headers, allow_redirects=False, **via) as resp:
            return probe_finding(dep, resp.status, None, key_sent=bool(api_key))
    except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
        return probe_finding(dep, None, str(exc) or type(exc).__name__, proxy=through,
                             no_proxy=variable_name("no", environ))


def secret_findings(nodes: list[NodeRecord], settings: Settings) -> list[Finding]:
    """Alive nodes agree on the cluster secret and the encryption key, and with this machine."""
    alive = [n for n in nodes if n.alive]
    if not alive:
        return [Finding("cluster", "secrets", True, "no node is running: nothing to compare")]
    out = []
    for purpose, local, what in (
        ("cluster", settings.cluster_secret, "SHIELDES_CLUSTER_SECRET"),
        ("encryption", None, "SHIELDES_ENCRYPTION_KEY"),
    ):
        published = {n.node_id: (n.info.get("secrets") or {}) for n in alive}
        if not any(purpose in p for p in published.values()):
            continue  # nodes of a version that does not publish fingerprints
        prints = {node: p.get(purpose) for node, p in published.items()}
        distinct = set(prints.values())
        if len(distinct) > 1:
            groups = ", ".join(f"{node}: {'unset' if fp is None else fp}" for node, fp in sorted(prints.items()))
            out.append(Finding("cluster", what, False, f"nodes disagree ({groups})",
                               f"set the same {what} on every node and restart the odd ones"))
            continue
        theirs = distinct.pop()
        generated = purpose == "cluster" and all(p.get("cluster_generated") for p in published.values())
        mine = fingerprint(local, purpose) if purpose == "cluster" else keyring_for(settings).current_key_id
        if generated or mine == theirs:
            state = ("generated by `serve --workers`" if generated else "unset" if theirs is None
                     else _key_source(settings) if purpose == "encryption" else "set")
            out.append(Finding("cluster", what, True, f"the same on all {len(alive)} node(s) and here ({state})"))
        elif purpose == "encryption" and theirs is None and _local_key_file(settings):
            # the local key was just made (the first `--api-key`): the nodes, on this machine's data
            # dir, read the same file and say so at their next heartbeat; not a mismatch
            out.append(Finding("cluster", what, True, f"{_key_source(settings)}, made after the running node(s) "
                               "started: they read it at their next heartbeat"))
        else:
            out.append(Finding("cluster", what, False,
                               f"this machine's {what} differs from the one the running nodes use",
                               f"export the nodes' {what} here (commands and nodes must share it)"))
    if len(alive) > 1 and any(not (n.info.get("secrets") or {}).get("cluster") for n in alive):
        out.append(Finding("cluster", "gossip", False, "several nodes run without SHIELDES_CLUSTER_SECRET: "
                           "no gossip, each node enforces limits as limit / nodes",
                           "set the same SHIELDES_CLUSTER_SECRET on every node"))
    return out


def _local_key_file(settings: Settings) -> bool:
    """Whether this machine's key is the embedded database's local key file (shared with the nodes
    that run on that database, which is on this machine)."""
    return not settings.encryption_key and not settings.database_url and local_key_path(settings.data_dir).exists()


def _key_source(settings: Settings) -> str:
    """Where this machine's encryption key comes from: the setting, or the embedded database's
    local key file (so an operator knows which one to copy to other machines)."""
    if settings.encryption_key:
        return "set"
    return f"the local key file {local_key_path(settings.data_dir)}"


async def run_checks(url: str, settings: Settings, *, environ: Mapping[str, str] | None = None) -> list[Finding]:
    env = os.environ if environ is None else environ
    findings, read = await _database_checks(url, settings)
    names = [*env, *dotenv_names()]  # a misspelt SHIELDES_* name is ignored by Settings: a warning, failing nothing
    if read is None:
        findings.append(Finding("config", "-", False, "skipped: the checks below the database need it",
                                "fix the database findings above, then run `shieldes doctor` again"))
        return findings + unknown_setting_findings(names, known_env_names())
    config, nodes = read
    key = keyring_for(settings)
    if not config.providers:
        findings.append(Finding("providers", "-", False, "no providers yet: every model answers 404",
                                "shieldes provider add NAME --type openai --base-url URL --api-key KEY --models M"))
    # vertex, bedrock and --auth entra deployments sign in with the cloud's credentials: got here as a
    # node gets them, every deployment's at once (each bounded: cloud_credentials.CHECK_TIMEOUT)
    deps = sorted(config.providers.values(), key=lambda d: d.name)
    clouds = await asyncio.gather(*(node_credential_finding(d) for d in deps))
    findings += [cloud or credential_finding(dep, key, env) for dep, cloud in zip(deps, clouds, strict=True)]
    timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT, connect=min(PROBE_TIMEOUT, 3.0))
    async with aiohttp.ClientSession(timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()) as session:
        proxies = urllib.request.getproxies_environment()
        findings += await asyncio.gather(*(probe(session, d, key, env, proxies) for d in deps))
    findings += price_findings(config, lambda m: price_for(config.pricing, m) is not None,
                               allow_unpriced=settings.allow_unpriced)
    findings += secret_findings(nodes, settings)
    return findings + unknown_setting_findings(names, known_env_names() | referenced_env_names(config))


async def _database_checks(url: str, settings: Settings
                           ) -> tuple[list[Finding], tuple[ConfigState, list[NodeRecord]] | None]:
    """The database's findings and, when it can be read, the config and the nodes. A database that
    stalls (a paused server, a lock held, a full disk) is a finding after
    SHIELDES_DB_ADMIN_READ_TIMEOUT, as for the admin reads: this is the command their errors name."""
    wait = DbWait(settings.db_admin_read_timeout)
    findings: list[Finding] = []
    try:
        findings, usable = await wait.within(database_findings(url), "the database checks")
        return findings, (await wait.within(_read(url, settings.node_timeout), "reading the config")
                          if usable else None)
    except DatabaseStalled:
        findings.append(Finding(
            "database", "postgres", False, f"{db.describe_url(url)} did not answer within {wait.seconds:g} s (a "
            "stalled server, a lock held or a full disk)", STALLED_FIX))
        return findings, None
    finally:  # the stalled query's cancellation ends before the loop does
        await wait.stop()


async def _read(url: str, node_timeout: float) -> tuple[ConfigState, list[NodeRecord]]:
    pool = open_pool(url, size=1, name="shieldes-doctor")
    try:
        await pool.open(wait=True, timeout=10)
        view = await load_config(PostgresEventStore(pool), Codec())
        async with pool.connection() as conn:
            cur = await conn.execute(NODES_SQL, (node_timeout,))
            nodes = [NodeRecord(*row) for row in await cur.fetchall()]
    except (psycopg.Error, OSError) as exc:
        raise db.translate(exc, url) from exc
    finally:
        await pool.close()
    return view.state, nodes


def report(findings: list[Finding]) -> dict[str, Any]:
    failed = [f for f in findings if not f.ok]
    return {"ok": not failed, "failed": len(failed), "checks": [f.as_dict() for f in findings]}
