"""A rolling upgrade from a real previous release's tree, with every kind of traffic on both releases.

bench/upgrade_check.py runs chat requests through a rollout; this script runs what clients of a
gateway send during one (docs/deploy.md, *Rolling upgrades*):

- OLD: a database at the old tree's schema head (its own `shieldes db upgrade`), a provider, prices
  and keys through the old CLI, two nodes of the old tree (real processes, PYTHONPATH=OLD), traffic
  on both: chat JSON (tagged with x-litellm-tags) and stream, Responses stored and continued by
  previous_response_id on the other node, Messages (anthropic SDK), embeddings; a key created and
  revoked with the old CLI while they serve.
- MIGRATE: this tree's `shieldes db upgrade` while they serve.
- MIXED: a node of this tree joins; continuations cross old -> new and new -> old; a key created by
  this tree's CLI is served by old nodes, a key created through an old node's admin API is served by
  the new node and revoked by this tree's CLI; a budget spent down and an rpm limit hammered on all
  three; `shieldes compact --retain 0s` of this tree while the old leader runs its own compaction
  and snapshots.
- NEW KILLED: a second node of this tree, which flushes seldom, killed (SIGKILL) holding usage it
  had only gossiped while an old node leads: the old leader appends it on its behalf, and every
  node's budget view and live usage then equal the log and what the clients were told.
- ROLL: the old nodes replaced under their ids by nodes of this tree: one drained and stopped
  (SIGTERM), the other killed (SIGKILL) holding usage it had only gossiped, which a leader of this
  tree appends on its behalf.

It reports every error a client saw and every error line of every node's log, and checks: each
node's live usage per key equals the log's at every quiet point; usage_daily per key equals what
the clients were told (requests, tokens) and its cost equals the prices times the tokens; every
stored response is still readable at the end; the budget and the rpm limit held (docs/cluster.md
bounds). PASS/FAIL per check, exit 1 on any FAIL.

Run (an old tree from git history; not in the suite, CI's checkout may lack the history):
    git archive d68b268 | tar -x -C /tmp/old-d68b268
    python bench/rolling_upgrade.py --old-tree /tmp/old-d68b268 [--database-url URL] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import openai
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.rolling_cluster import (  # noqa: E402
    AGENT,
    BUDGET_USD,
    CLAUDE,
    EMBED,
    KINDS,
    MODEL,
    PER_SEARCH,
    PRICE_IN,
    PRICE_OUT,
    RPM_LIMIT,
    UPSTREAM_KEY,
    Cluster,
    Tally,
    Traffic,
    agree,
    hammer,
    logged_usage,
    served_by_all,
)
from bench.upgrade_check import Checks, Node, asql, sql, until  # noqa: E402
from shieldes import db  # noqa: E402
from shieldes.embedded import EmbeddedPostgres  # noqa: E402
from shieldes.snapshots.codec import TOOLS_SCHEMA  # noqa: E402
from tests import pg  # noqa: E402
from tests.fake_upstream import FakeUpstream  # noqa: E402


async def scenario(c: Cluster, checks: Checks, traffic: Traffic, up: FakeUpstream) -> None:
    url, old_tree = c.url, c.old_tree
    # node-b flushes seldom: when it is killed (below) usage only gossiped is what the leader must append
    a, b = await c.start("node-a", old_tree), await c.start("node-b", old_tree, SHIELDES_FLUSH_INTERVAL="6")
    for node in (a, b):
        await c.ready(node)
        traffic.targets[node.node_id] = node
    traffic.start()
    await traffic.serve("old")
    # the old CLI while its nodes serve: a key created, served by both, revoked, refused by both
    created = await c.cli_ok(old_tree, "key", "create", "--name", "k-old-cli")
    traffic.keys["k-old-cli"] = created["key"]
    served = await served_by_all(c, traffic, "k-old-cli", 200, [a, b])
    await c.cli_ok(old_tree, "key", "revoke", "k-old-cli")
    refused = await served_by_all(c, traffic, "k-old-cli", 401, [a, b])
    checks.add("old CLI key create + revoke on old nodes", served and refused,
               f"served by both: {served}; refused (401) by both after the revoke: {refused}")
    await until(lambda: asql(url, "SELECT 1 FROM snapshots LIMIT 1"), 120, "a snapshot by an old node")
    await agree(c, checks, traffic, "old release, before the migration")

    # this tree's migration under the old nodes' feet
    traffic.phase = "migrate"
    errors_before, before = len(traffic.errors), (await asql(url, "SELECT max(position) FROM events"))[0][0]
    started = time.monotonic()
    code, _, err = await c.cli(ROOT, "db", "upgrade")
    took = time.monotonic() - started
    revision = (await asql(url, "SELECT version_num FROM alembic_version"))[0][0]
    migrated = sum(traffic.ok[("migrate", k)] for k in KINDS)
    checks.add("this tree's `db upgrade` while old nodes serve", code == 0 and revision == db.SCHEMA_HEAD,
               f"-> {revision} in {took:.1f} s, {migrated} requests served meanwhile"
               + (f"; {err.strip()[-500:]}" if code else ""))
    await traffic.serve("after-migrate")

    async def old_appends() -> bool:
        rows = await asql(url, "SELECT DISTINCT metadata->>'node_id' FROM events WHERE type = 'usage.recorded' "
                               "AND position > %s", (before,))
        return {a.node_id, b.node_id} <= {r[0] for r in rows}

    async def old_rows() -> dict[str, int]:
        rows = await asql(url, "SELECT node_id, count(*) FROM request_log WHERE user_agent = %s GROUP BY 1",
                          (AGENT + "after-migrate",))
        return {str(r[0]): int(r[1]) for r in rows}

    with contextlib.suppress(TimeoutError):
        await until(old_appends, 30, "usage appended by both old nodes after the migration")
        await until(lambda: _both(old_rows(), a.node_id, b.node_id), 30, "request_log rows of both old nodes")
    rows, appended = await old_rows(), await old_appends()
    tagged = await asql(url, "SELECT count(*) FROM request_log WHERE user_agent = %s AND tags IS NOT NULL "
                             "AND cardinality(tags) > 0", (AGENT + "after-migrate",)) \
        if await _has_column(url, "request_log", "tags") else [("n/a",)]
    checks.add("old nodes serve and count after the migration",
               len(traffic.errors) == errors_before and appended and all(rows.get(n.node_id) for n in (a, b)),
               f"{len(traffic.errors) - errors_before} errors; usage appended by both: {appended}; request_log "
               f"rows {rows} ({tagged[0][0]} with tags)")
    for what in ("usage", "key list"):  # not checks: the old release's own words on a newer schema
        code, out, err = await c.cli(old_tree, *what.split())
        print(f"INFO  old CLI `{what}` on the migrated database: exit {code}: "
              f"{(err.strip() or out.strip()).splitlines()[-1:] if (err or out).strip() else ''}", flush=True)
    await agree(c, checks, traffic, "old release on the migrated schema")

    # a node of this tree joins, from a snapshot an old leader wrote
    n = await c.start("node-c", ROOT)
    body = await c.ready(n)
    loaded = re.search(r"projection loaded at position (\d+) from (snapshot (\d+)|an empty state) plus (\d+) tail",
                       n.log.read_text())
    author = (await asql(url, "SELECT node_id, schema_version FROM snapshots WHERE id = %s",
                         (int(loaded.group(3)),)))[0] if loaded and loaded.group(3) else (None, None)
    checks.add("new node ready from an old leader's snapshot + tail", author[0] in (a.node_id, b.node_id),
               f"{loaded.group(0) if loaded else 'no load line'}; snapshot by {author[0]} (schema {author[1]}); "
               f"ready at {body.get('position')}")
    traffic.targets[n.node_id] = n
    await traffic.serve("mixed")
    # config both ways: this tree's CLI -> old nodes; an old node's admin API -> the new node, revoked by the new CLI
    code, out, err = await c.cli(ROOT, "key", "create", "--name", "k-new-cli", "--budget", "5", "--rpm", "600")
    if code:
        checks.add("new CLI key create, served by old nodes", False, err.strip()[-500:])
    else:
        traffic.keys["k-new-cli"] = json.loads(out)["key"]
        ok = await served_by_all(c, traffic, "k-new-cli", 200, [a, b, n])
        checks.add("new CLI key create, served by old nodes", ok, f"200 from {a.node_id}, {b.node_id}, "
                   f"{n.node_id}: {ok}")
    status, made = await c.admin(a, "POST", "/keys", {"name": "k-old-api", "budget": 5, "rpm": 600})
    if status not in (200, 201):
        checks.add("old node's admin API key create, served by the new node, revoked by the new CLI", False,
                   f"HTTP {status}: {json.dumps(made)[:500]}")
    else:
        traffic.keys["k-old-api"] = made["key"]
        served = await served_by_all(c, traffic, "k-old-api", 200, [n, b])
        code, _, err = await c.cli(ROOT, "key", "revoke", "k-old-api")
        refused = code == 0 and await served_by_all(c, traffic, "k-old-api", 401, [a, b, n])
        checks.add("old node's admin API key create, served by the new node, revoked by the new CLI",
                   served and refused, f"served by {n.node_id} and {b.node_id}: {served}; revoked (exit {code}) and "
                   f"refused by all three: {refused}" + (f"; {err.strip()[-300:]}" if code else ""))
    # limits on all three at once: a $0.2 budget spent down, an rpm of 20 hammered (before `across`
    # raises that rpm with the new CLI)
    async with traffic.quiet():
        budget = await hammer(c, traffic, "k-budget", [a, b, n], 25)
        rpm = await hammer(c, traffic, "k-rpm", [a, b, n], 12)
    await across(c, checks, traffic, a, b, n)
    await agree(c, checks, traffic, "old and new nodes side by side")
    spent = (await asyncio.to_thread(logged_usage, url)).get("k-budget", (0, 0, 0, 0, 0))
    one = max(PRICE_IN * 20 + PRICE_OUT * 5, 1) * 1000  # nano-USD of the costliest hammer request, at most
    checks.add("budget held across releases", spent[3] <= BUDGET_USD * 1e9 + 3 * one and budget[429] > 0,
               f"spent ${spent[3] / 1e9:.6f} of ${BUDGET_USD} in {spent[0]} requests (bound + 3 requests); "
               f"statuses {dict(budget)}")
    checks.add("rpm limit held across releases", RPM_LIMIT <= rpm[200] <= RPM_LIMIT + 3,
               f"{rpm[200]} admitted of {sum(rpm.values())} within a minute for rpm {RPM_LIMIT} on 3 nodes "
               f"(bound L + N = {RPM_LIMIT + 3}); statuses {dict(rpm)}")
    await killed_new(c, checks, traffic)
    # the old leader compacts (every 7 s, 3 s retention) the usage the new node appended; `shieldes
    # compact` is refused while a leader runs, so the leader's own runs are the ones that count here
    seen = {nd.node_id: compactions(nd.log) for nd in (a, b)}

    async def old_leader_compacted() -> bool:
        return any(compactions(nd.log) > seen[nd.node_id] for nd in (a, b))

    await traffic.serve("after-compact")
    compacted = True
    try:
        await until(old_leader_compacted, 60, "a compaction by the old leader")
    except TimeoutError:
        compacted = False
    checks.add("the old leader compacts beside the new node", compacted,
               f"compactions in the old nodes' logs: {seen} before the new node's traffic, "
               f"{ {nd.node_id: compactions(nd.log) for nd in (a, b)} } after")
    await agree(c, checks, traffic, "after the old leader compacted the new node's usage")

    # the roll: each old node drained, SIGTERM, back on this tree under its id
    # the roll: each old node drained and stopped (node-a SIGTERM, node-b SIGKILL with usage it had only
    # gossiped, which a leader of this tree appends on its behalf), then back on this tree under its id
    for old in (a, b):
        if old is b:
            detail, ok, _ = await crash(c, traffic, b)
        else:
            traffic.targets.pop(old.node_id)
            await traffic.idle([old.node_id])
            status = await c.stop(old)
            detail, ok = f"SIGTERM exit {status}", status == 0
        back = await c.start(old.node_id, ROOT)
        await c.ready(back)
        traffic.targets[back.node_id] = back
        await traffic.serve(f"rolled-{old.node_id}")
        checks.add(f"{old.node_id}: old -> new", ok, f"{detail}; back on this tree, serving")
    await agree(c, checks, traffic, "all nodes on this tree")
    await traffic.stop()
    await end_checks(c, checks, traffic, up)


BUDGETED = ("k-chat", "k-responses", "k-messages", "k-search")


async def killed_new(c: Cluster, checks: Checks, traffic: Traffic) -> None:
    """A node of this tree that holds usage it has only gossiped, killed (SIGKILL) while an old node
    leads: the old leader appends that usage on its behalf, and afterwards every node's budget view
    and live usage equal the log and what the clients were told (nothing lost, nothing twice)."""
    d = await c.start("node-d", ROOT, SHIELDES_FLUSH_INTERVAL="6")  # flushes seldom: gossip holds its usage
    await c.ready(d)
    traffic.targets[d.node_id] = d
    await traffic.serve("mixed-new-killed")
    detail, ok, appenders = await crash(c, traffic, d)
    by_old = bool(appenders) and set(appenders.values()) == {"old"}
    checks.add("a new node killed (SIGKILL) with gossiped usage while an old node leads", ok and by_old,
               f"{detail}; appended by the old release: {by_old}")
    async with traffic.quiet():
        told = _told(traffic)
        views: list[str] = []

        async def held() -> bool:
            views[:] = await _budget_views(c, c.live(), told)
            return not views

        with contextlib.suppress(TimeoutError):
            await until(held, 30, "every node's budget view at what the clients were told")
    checks.add("budgets after the new node was killed = what the clients were told", not views,
               f"{len(told)} budgeted keys on {', '.join(n.node_id for n in c.live())}"
               + (f"; differ: {'; '.join(views)[:1500]}" if views else ""))
    await agree(c, checks, traffic, "after a new node was killed while an old node leads")


def _told(traffic: Traffic) -> dict[str, int]:
    """Each budgeted key's spend as the clients were told it, in nano-USD."""
    return {k: (t.prompt * PRICE_IN + t.completion * PRICE_OUT) * 1000 + round(t.searches * PER_SEARCH * 1e9)
            for k, t in traffic.got.items() if k in BUDGETED}


async def _budget_views(c: Cluster, nodes: list[Node], told: dict[str, int]) -> list[str]:
    """Where a node's budget view of a key (durable + gossiped spend) differs from `told`."""
    differ = []
    for node in nodes:
        for key, nusd in told.items():
            status, row = await c.admin(node, "GET", f"/keys/{key}")
            seen = round((row.get("spend_usd_in_period") or 0) * 1e9) if status == 200 else None
            if seen != nusd:
                differ.append(f"{node.node_id} ({node.release}) {key}: {seen} != {nusd}")
    return differ


async def crash(c: Cluster, traffic: Traffic, old: Node) -> tuple[str, bool, dict[str, str]]:
    """SIGKILL `old` (a node of either release) once it holds usage it has not flushed and every
    other node's budget view (durable + gossiped) shows what the clients were told; then wait for a
    leader to append it. Returns what happened, whether it did, and the release of each node that
    appended on its behalf."""
    async def holds_unflushed() -> bool:
        return bool((await c.admin(old, "GET", "/node"))[1].get("unflushed_usage_deltas"))

    await until(holds_unflushed, 30, f"{old.node_id} holding unflushed usage")
    async with traffic.quiet():
        traffic.targets.pop(old.node_id)
        told = _told(traffic)
        others = [n for n in c.live() if n is not old]

        async def gossiped() -> bool:
            return not await _budget_views(c, others, told)

        try:
            await until(gossiped, 30, "the other nodes' budget views at what the clients were told")
        except TimeoutError as exc:
            return f"{exc}", False, {}
        unflushed = (await c.admin(old, "GET", "/node"))[1].get("unflushed_usage_deltas")
        before = (await asql(c.url, "SELECT coalesce(max(position), 0) FROM events"))[0][0]
        assert old.proc is not None
        old.proc.kill()
        await old.proc.wait()

        async def appended() -> list[tuple[Any, ...]]:
            return await asql(c.url, "SELECT metadata->>'appended_by', count(*) FROM events WHERE type = "
                                     "'usage.recorded' AND position > %s AND data->>'node_id' = %s AND metadata ? "
                                     "'appended_by' GROUP BY 1", (before, old.node_id))

        try:
            rows = await until(appended, 60, f"{old.node_id}'s gossiped usage appended on its behalf")
        except TimeoutError as exc:
            return f"SIGKILL with {unflushed} unflushed deltas; {exc}", False, {}
    by = {str(r[0]): int(r[1]) for r in rows}
    releases = {n: c.nodes[n].release for n in by if n in c.nodes}
    return (f"SIGKILL holding {unflushed} unflushed deltas, gossiped; appended on its behalf by {by} "
            f"({releases})"), True, releases


async def across(c: Cluster, checks: Checks, traffic: Traffic, a: Node, b: Node, n: Node) -> None:
    """What one release starts and the other finishes: background responses, conversations, deletes,
    a streamed response continued, input items, a team and a key's new limit."""
    key = "k-responses"

    def told(r: Any) -> None:
        traffic.tally(key, r.usage.input_tokens, r.usage.output_tokens)

    async def background(start: Node, poll: Node) -> str:
        async with traffic.oa(start, key) as s1, traffic.oa(poll, key) as s2:
            r = await s1.responses.create(model=MODEL, input="in the background", background=True)

            async def done() -> Any:
                got = await s2.responses.retrieve(r.id)
                return got if got.status not in ("queued", "in_progress") else None

            got = await until(done, 60, f"background {r.id} done, seen from {poll.node_id}")
        if got.status == "completed":
            told(got)
            traffic.stored.append((r.id, start.node_id, start.release))
        return f"{start.release}->{poll.release}: {got.status}"

    async def conversation() -> str:
        async with traffic.oa(n, key) as on_new, traffic.oa(a, key) as on_old:
            conv = await on_new.conversations.create(items=[{"role": "user", "content": "remember seven"}])
            r1 = await on_old.responses.create(model=MODEL, input="what number?", conversation=conv.id)
            told(r1)
            r2 = await on_new.responses.create(model=MODEL, input="and again?", conversation=conv.id)
            told(r2)
            async with traffic.oa(b, key) as other:
                items = await other.conversations.items.list(conv.id, limit=100)
        return f"conversation made on new, used on old and new: {len(items.data)} items seen on old {b.node_id}"

    async def deletes() -> str:
        said = []
        for made_on, deleted_on, read_on in ((a, n, b), (n, a, n)):
            async with traffic.oa(made_on, key) as m, traffic.oa(deleted_on, key) as d, traffic.oa(read_on, key) as r:
                made = await m.responses.create(model=MODEL, input="to be deleted")
                told(made)
                await d.responses.delete(made.id)
                try:
                    await r.responses.retrieve(made.id)
                    said.append(f"{made_on.release}-made, {deleted_on.release}-deleted: still readable")
                except openai.NotFoundError:
                    said.append(f"{made_on.release}-made, {deleted_on.release}-deleted: 404 on {read_on.release}")
        if any("readable" in x for x in said):
            raise AssertionError("; ".join(said))
        return "; ".join(said)

    async def streamed() -> str:
        async with traffic.oa(b, key) as old, traffic.oa(n, key) as new:
            stream = await old.responses.create(model=MODEL, input="stream me", stream=True)
            final = [e.response async for e in stream if e.type == "response.completed"]
            told(final[-1])
            traffic.stored.append((final[-1].id, b.node_id, b.release))
            r2 = await new.responses.create(model=MODEL, input="go on", previous_response_id=final[-1].id)
            told(r2)
            traffic.stored.append((r2.id, n.node_id, n.release))
            items = await new.responses.input_items.list(final[-1].id)
        return f"streamed on old, continued on new; its input items read on new: {len(items.data)}"

    async def team() -> str:
        await c.cli_ok(ROOT, "team", "create", "t-roll", "--budget", "5")
        made = await c.cli_ok(ROOT, "key", "create", "--name", "k-team", "--team", "t-roll", "--rpm", "600")
        traffic.keys["k-team"] = made["key"]
        if not await served_by_all(c, traffic, "k-team", 200, [a, b, n]):
            raise AssertionError("a key of a team made by the new CLI not served by every node")
        await c.cli_ok(ROOT, "key", "update", "k-rpm", "--rpm", "100000")
        if not await served_by_all(c, traffic, "k-rpm", 200, [a, b, n]):
            raise AssertionError("k-rpm's new limit (new CLI) not applied by every node")
        return "team + key by the new CLI served by all; a key's rpm raised by the new CLI applied by all"

    for name, step in (("background responses", lambda: _pair(background(a, n), background(n, b))),
                       ("a conversation", conversation), ("deletes", deletes), ("a streamed response", streamed),
                       ("a team and a key update", team)):
        try:
            detail = await step()
            checks.add(f"across releases: {name}", True, detail)
        except (openai.APIError, AssertionError, TimeoutError, RuntimeError, KeyError, IndexError) as exc:
            checks.add(f"across releases: {name}", False, f"{type(exc).__name__}: {str(exc)[:800]}")


async def _pair(one: Any, two: Any) -> str:
    return f"{await one}; {await two}"


def compactions(log: Path) -> int:
    return log.read_text(errors="replace").count("shieldes.snapshots.compaction: compaction (epoch")


async def _both(pending: Any, *nodes: str) -> bool:
    rows = await pending
    return all(rows.get(n) for n in nodes)


async def _has_column(url: str, table: str, column: str) -> bool:
    rows = await asql(url, "SELECT 1 FROM information_schema.columns WHERE table_name = %s AND column_name = %s",
                      (table, column))
    return bool(rows)


async def end_checks(c: Cluster, checks: Checks, traffic: Traffic, up: FakeUpstream) -> None:
    url = c.url
    logged = await asyncio.to_thread(logged_usage, url)
    lines, same, priced = [], True, True
    for name, t in sorted(traffic.got.items()):
        row = logged.get(name, (0, 0, 0, 0, 0))
        cost = (t.prompt * PRICE_IN + t.completion * PRICE_OUT) * 1000 + round(t.searches * PER_SEARCH * 1e9)
        same &= row[:3] == (t.requests, t.prompt, t.completion)
        priced &= abs(row[3] - cost) <= t.requests  # rounding: a nano-USD a request at most
        lines.append(f"{name}: log {row[0]} req {row[1]}+{row[2]} tok ${row[3] / 1e9:.6f}, clients "
                     f"{t.requests} req {t.prompt}+{t.completion} tok (priced ${cost / 1e9:.6f})")
    checks.add("usage_daily per key = what the clients were told", same, "; ".join(lines))
    checks.add("usage_daily cost = prices x tokens (+ searches)", priced, f"{len(lines)} keys")
    searched = traffic.got.get("k-search", Tally())
    print(f"INFO  web searches: clients told of {searched.searches}, usage_daily holds "
          f"{logged.get('k-search', (0, 0, 0, 0, 0))[4]} (a release before 0022 bills them, does not count them)",
          flush=True)
    told = sum(t.requests for t in traffic.got.values())
    print(f"INFO  upstream served {len(up.requests)} requests; clients were told of {told}", flush=True)
    # every stored response readable at the end, from every node
    nodes = c.live()
    lost: list[str] = []
    for i, (rid, by, release) in enumerate(traffic.stored):
        node = nodes[i % len(nodes)]
        status, _ = await get_json_auth(c.session, f"{node.base}/v1/responses/{rid}", traffic.keys["k-responses"])
        if status != 200:
            lost.append(f"{rid} (stored by {by}, {release}) -> {status} on {node.node_id}")
    by_release = Counter(release for _, _, release in traffic.stored)
    checks.add("no stored response lost", not lost, f"{len(traffic.stored)} stored ({dict(by_release)}), "
               f"continued across {dict(traffic.crossings)}" + (f"; lost: {lost[:5]}" if lost else ""))
    snaps = await asql(url, "SELECT node_id, schema_version, count(*) FROM snapshots GROUP BY 1, 2 ORDER BY 1, 2")
    runs = {p.name: compactions(p) for p in c.logs}
    print(f"INFO  snapshots kept (node, schema, count): {snaps}; compactions per node log: {runs}", flush=True)


async def get_json_auth(session: aiohttp.ClientSession, url: str, key: str) -> tuple[int, Any]:
    try:
        async with session.get(url, headers={"Authorization": f"Bearer {key}"},
                               timeout=aiohttp.ClientTimeout(total=30)) as resp:
            return resp.status, await resp.json(content_type=None)
    except (TimeoutError, aiohttp.ClientError, ValueError):
        return 0, None


def old_head(tree: Path) -> str:
    return max(p.name.split("_")[0] for p in (tree / "alembic" / "versions").glob("[0-9]*.py"))


def error_lines(logs: list[Path]) -> list[str]:
    found = []
    for path in logs:
        for line in path.read_text(errors="replace").splitlines():
            if re.search(r"\b(ERROR|CRITICAL)\b|Traceback", line):
                found.append(f"{path.name}: {line[:400]}")
    return found


async def setup(c: Cluster, up: FakeUpstream) -> dict[str, str]:
    old = c.old_tree
    await c.cli_ok(old, "db", "upgrade")
    print(f"schema {sql(c.url, 'SELECT version_num FROM alembic_version')[0][0]} by the old tree's `db upgrade`",
          flush=True)
    await c.cli_ok(old, "provider", "add", "openai", "--type", "openai", "--base-url", up.url + "/v1",
                   "--api-key-env", "SHIELDES_ROLLING_UPSTREAM_KEY", "--models", f"{MODEL},{EMBED}")
    await c.cli_ok(old, "provider", "add", "claude", "--type", "anthropic", "--base-url", up.url,
                   "--api-key-env", "SHIELDES_ROLLING_UPSTREAM_KEY", "--models", CLAUDE)
    for model in (MODEL, EMBED):
        await c.cli_ok(old, "pricing", "set", model, "--input", str(PRICE_IN), "--output", str(PRICE_OUT))
    await c.cli_ok(old, "pricing", "set", CLAUDE, "--input", str(PRICE_IN), "--output", str(PRICE_OUT),
                   "--per-web-search", str(PER_SEARCH))
    keys = {}
    limits = {"k-chat": ("--budget", "50", "--rpm", "6000"), "k-stream": ("--tpm", "10000000"),
              "k-responses": ("--budget", "50"), "k-messages": ("--budget", "50", "--budget-period", "1d"),
              "k-embeddings": (), "k-search": ("--budget", "50"),
              "k-budget": ("--budget", str(BUDGET_USD)), "k-rpm": ("--rpm", str(RPM_LIMIT))}
    for name, args in limits.items():
        keys[name] = (await c.cli_ok(old, "key", "create", "--name", name, *args))["key"]
    return keys


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old-tree", type=Path, required=True, help="the previous release's tree (git archive)")
    parser.add_argument("--database-url", help="a Postgres server to make a scratch database in "
                        "(default: a private embedded one)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (node logs)")
    args = parser.parse_args()
    old_tree = args.old_tree.resolve()
    tmp = Path(tempfile.mkdtemp(prefix="shieldes-rolling-"))
    print(f"rolling upgrade {old_tree} -> {ROOT}; load average {os.getloadavg()[0]:.2f}", flush=True)
    lease = None if args.database_url else EmbeddedPostgres(tmp / "pg").acquire("rolling-upgrade")
    server = args.database_url or (lease.url if lease else "")
    name = f"rolling_{os.getpid()}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = pg.with_database(server, name)
    checks = Checks()
    up = FakeUpstream(completion_tokens=5, api_key=UPSTREAM_KEY, models=(MODEL, EMBED, CLAUDE))
    await up.start()
    started, cpu = time.monotonic(), time.process_time()
    traffic = Traffic({})
    c: Cluster | None = None
    try:
        async with aiohttp.ClientSession() as session:
            c = Cluster(url, tmp, old_tree, old_head(old_tree) >= TOOLS_SCHEMA, session)
            try:
                traffic.keys.update(await setup(c, up))
                await scenario(c, checks, traffic, up)
            except (TimeoutError, RuntimeError, KeyError, aiohttp.ClientError) as exc:
                checks.add("scenario ran to the end", False, f"{type(exc).__name__}: {str(exc)[:3000]}")
            finally:
                await traffic.stop()
                await c.stop_all()
        errors = error_lines(c.logs)
        checks.add("no error line in any node's log", not errors,
                   f"{len(c.logs)} node logs" + ("".join(f"\n      {e}" for e in errors[:40]) if errors else ""))
        checks.add("no client saw an error", not traffic.errors,
                   f"{sum(traffic.ok.values())} operations ok, {len(traffic.errors)} failed"
                   + "".join(f"\n      {e}" for e in traffic.errors[:40]))
    finally:
        if c is not None:
            await c.stop_all()
        await up.stop()
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        if lease is not None:
            lease.release()
    return checks.finish(tmp, args.keep, cpu, f" in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
