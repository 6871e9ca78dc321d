"""A rolling upgrade from a real previous release: its code, its schema, its CLI, under load.

docs/deploy.md promises that migrations are additive (nodes of the previous release keep serving
while `shieldes db upgrade` runs and after), that new nodes load what old nodes wrote, and that old
nodes keep reading what new ones write. tests/cluster/test_rolling_upgrade.py checks the last with
a simulated old release; this script checks all of it against the code of a git revision:

1. `git worktree add --detach` the old revision into a temp dir; a private embedded Postgres
   migrated by the OLD tree's `shieldes db upgrade`; a fake OpenAI upstream (tests/fake_upstream.py,
   in this process, recording what it served); a provider and two keys (a budget and a rate limit
   each) created with the OLD CLI; two OLD nodes as a cluster (gossip secret set).
2. Load through the openai SDK from the start to the end, every request tagged with its phase in
   its User-Agent (the request log keeps it) and its key's name in `user` (the upstream sees it).
3. While the old nodes serve: the NEW tree's `shieldes db upgrade`.
4. A NEW node joins (ready from a snapshot an old leader wrote plus the tail), takes traffic; the
   NEW CLI creates a key and revokes it while the old nodes live, and the old nodes follow. Then
   each old node in turn leaves the load, gets SIGTERM and comes back on the NEW code with its id.
5. At the end: usage in the log (usage_daily) equals what the client got and what the upstream
   served, per key; every node at the same log position; no traceback in any node's log; the
   request_log rows of every phase present (per node).

Each check prints PASS/FAIL with its figures; the exit status is 1 on any FAIL.

Run: python bench/upgrade_check.py [--from REV] [--keep]   (REV default bd0cb52; --keep leaves the
temp dir with the node logs). Needs the git history of this checkout, so it is not in the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import openai
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shieldes import db  # noqa: E402
from shieldes.embedded import EmbeddedPostgres  # noqa: E402
from tests import pg  # noqa: E402
from tests.fake_upstream import FakeUpstream  # noqa: E402

SECRET = "upgrade-check-secret"
UPSTREAM_KEY = "sk-upgrade-check"
MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "one two three four"}]
AGENT = "upgrade-check/"  # + phase: the User-Agent of every request of that phase
PER_PHASE = 30  # successful requests per phase at least


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Checks:
    results: list[tuple[str, bool, str]] = field(default_factory=list)

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.results.append((name, ok, detail))
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)
        return ok

    def failed(self) -> int:
        return sum(1 for _, ok, _ in self.results if not ok)

    def finish(self, tmp: Path, keep: bool, cpu: float, took: str = "") -> int:
        """Print the tally (and where the node logs are, if kept or anything failed); the exit status."""
        print(f"\n{len(self.results) - self.failed()} passed, {self.failed()} failed{took}; "
              f"this process {time.process_time() - cpu:.1f} s CPU; load average {os.getloadavg()[0]:.2f}")
        if keep or self.failed():
            print(f"node logs: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        return 1 if self.failed() else 0


@dataclass
class Node:
    node_id: str
    tree: Path
    release: str  # "old" | "new"
    port: int
    gossip_port: int
    log: Path
    proc: asyncio.subprocess.Process | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Env:
    database_url: str
    tmp: Path

    def cli_env(self, tree: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHIELDES_")}
        return env | {"PYTHONPATH": str(tree), "SHIELDES_DATABASE_URL": self.database_url,
                      "SHIELDES_ACTOR": "upgrade-check", "SHIELDES_UPGRADE_UPSTREAM_KEY": UPSTREAM_KEY}

    def node_env(self, node: Node) -> dict[str, str]:
        return self.cli_env(node.tree) | {
            "SHIELDES_NODE_ID": node.node_id, "SHIELDES_HOST": "127.0.0.1", "SHIELDES_PORT": str(node.port),
            "SHIELDES_GOSSIP_PORT": str(node.gossip_port), "SHIELDES_CLUSTER_SECRET": SECRET,
            "SHIELDES_DATA_DIR": str(self.tmp / f"data-{node.node_id}"), "SHIELDES_POLL_INTERVAL": "1",
            "SHIELDES_HEARTBEAT_INTERVAL": "0.5", "SHIELDES_NODE_TIMEOUT": "5", "SHIELDES_FLUSH_INTERVAL": "0.3",
            "SHIELDES_SHUTDOWN_GRACE": "10",
            # snapshots every few seconds under this load, so a joining node starts from one an old node wrote
            "SHIELDES_SNAPSHOT_EVERY_EVENTS": "40", "SHIELDES_SNAPSHOT_EVERY_SECONDS": "5",
        }


async def cli(env: Env, tree: Path, *args: str) -> tuple[int, str, str]:
    """`shieldes --json ARGS` of a tree, as a process (the loop keeps serving the load meanwhile)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shieldes", "--json", *args, cwd=tree, env=env.cli_env(tree),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    return proc.returncode or 0, out.decode(), err.decode()


async def cli_ok(env: Env, tree: Path, *args: str) -> Any:
    code, out, err = await cli(env, tree, *args)
    if code != 0:
        raise RuntimeError(f"shieldes {' '.join(args)} ({tree}) failed: {err.strip() or out.strip()}")
    return json.loads(out) if out.strip() else None


async def get_json(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=3)) as resp:
            return resp.status, await resp.json(content_type=None)
    except (TimeoutError, aiohttp.ClientError, ValueError):
        return 0, None


async def until(cond: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    """Poll a condition until it holds; raises TimeoutError naming it."""
    deadline = time.monotonic() + timeout
    while True:
        value = await cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        await asyncio.sleep(0.1)


def sql(url: str, query: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, connect_timeout=5) as conn:
        return list(conn.execute(query, args).fetchall())


async def asql(url: str, query: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return await asyncio.to_thread(sql, url, query, args)


@dataclass
class Tally:
    requests: int = 0
    prompt: int = 0
    completion: int = 0


@dataclass
class Load:
    """Workers cycling through the live nodes and the keys, each request tagged with the phase."""

    keys: dict[str, str]  # name -> secret
    workers: int = 3
    phase: str = "old"
    targets: dict[str, str] = field(default_factory=dict)  # node id -> base URL
    in_flight: Counter[str] = field(default_factory=Counter)
    sent: Counter[tuple[str, str]] = field(default_factory=Counter)  # (phase, node) -> requests answered
    ok: Counter[str] = field(default_factory=Counter)  # phase -> 200s
    errors: list[str] = field(default_factory=list)
    got: dict[str, Tally] = field(default_factory=dict)  # key name -> usage the client got
    _clients: dict[tuple[str, str, str], openai.AsyncOpenAI] = field(default_factory=dict)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def client(self, base: str, key: str, phase: str) -> openai.AsyncOpenAI:
        if (base, key, phase) not in self._clients:
            self._clients[(base, key, phase)] = openai.AsyncOpenAI(
                base_url=base + "/v1", api_key=self.keys[key], max_retries=0, timeout=60,
                default_headers={"User-Agent": AGENT + phase})
        return self._clients[(base, key, phase)]

    async def one(self, node: str, base: str, key: str) -> int:
        """One chat request; returns its status. The caller counts a non-200 as an error or not."""
        phase = self.phase
        self.in_flight[node] += 1
        try:
            answer = await self.client(base, key, phase).chat.completions.create(
                model=MODEL, messages=MESSAGES, max_tokens=5, user=key)  # type: ignore[arg-type]
        except openai.APIStatusError as exc:
            self.sent[(phase, node)] += 1
            return exc.status_code
        except openai.APIError as exc:
            self.errors.append(f"{phase} {node} {key}: {type(exc).__name__} {exc}")
            return 0
        finally:
            self.in_flight[node] -= 1
        self.sent[(phase, node)] += 1
        self.ok[phase] += 1
        tally = self.got.setdefault(key, Tally())
        tally.requests += 1
        if answer.usage is not None:
            tally.prompt += answer.usage.prompt_tokens
            tally.completion += answer.usage.completion_tokens
        return 200

    async def _worker(self, offset: int) -> None:
        i = offset
        names = [k for k in self.keys if k.startswith("load-")]
        while not self._stop.is_set():
            live = sorted(self.targets.items())
            if not live:
                await asyncio.sleep(0.05)
                continue
            node, base = live[i % len(live)]
            key = names[(i // len(live)) % len(names)]
            i += 1
            status = await self.one(node, base, key)
            if status not in (200, 0):
                self.errors.append(f"{self.phase} {node} {key}: HTTP {status}")

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(j)) for j in range(self.workers)]

    async def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        await asyncio.gather(*self._tasks)
        for c in self._clients.values():
            await c.close()

    async def serve_some(self, phase: str, count: int = PER_PHASE, timeout: float = 240) -> None:
        """Enter `phase` and wait for `count` successful requests in it."""
        self.phase = phase

        async def enough() -> bool:
            return self.ok[phase] >= count

        await until(enough, timeout, f"{count} requests served in phase {phase}")

    async def drain(self, node: str) -> None:
        """Take `node` out of the rotation and wait for its requests in flight."""
        self.targets.pop(node, None)

        async def idle() -> bool:
            return self.in_flight[node] == 0

        await until(idle, 60, f"requests in flight on {node} done")


async def wait_ready(session: aiohttp.ClientSession, node: Node, timeout: float) -> dict[str, Any]:
    """`/ready`'s body once the node answers 200 as itself; raises if its process exits first."""
    async def check() -> dict[str, Any] | None:
        assert node.proc is not None
        if node.proc.returncode is not None:
            raise RuntimeError(f"node {node.node_id} ({node.release}) exited with {node.proc.returncode}: "
                               + node.log.read_text()[-2000:])
        status, body = await get_json(session, node.base + "/ready")
        return body if status == 200 and isinstance(body, dict) and body.get("node_id") == node.node_id else None

    result: dict[str, Any] = await until(check, timeout, f"{node.node_id} ready")
    return result


async def stop_node(node: Node) -> int:
    """SIGTERM (a graceful leave: drains, flushes usage, deregisters), SIGKILL after 60 s; the exit status."""
    assert node.proc is not None
    if node.proc.returncode is None:
        node.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(node.proc.wait(), 60)
        except TimeoutError:
            node.proc.kill()
            await node.proc.wait()
            return -9
    return node.proc.returncode or 0


@dataclass
class Run:
    env: Env
    old_tree: Path
    new_tree: Path
    checks: Checks
    session: aiohttp.ClientSession
    nodes: dict[str, Node] = field(default_factory=dict)
    logs: list[Path] = field(default_factory=list)

    async def start(self, node_id: str, release: str) -> Node:
        tree = self.old_tree if release == "old" else self.new_tree
        node = Node(node_id, tree, release, free_port(), free_port(),
                    self.env.tmp / f"{node_id}-{release}-{len(self.logs)}.log")
        self.logs.append(node.log)
        with node.log.open("wb") as out:
            node.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "shieldes", "serve", cwd=tree, env=self.env.node_env(node),
                stdout=out, stderr=subprocess.STDOUT)
        self.nodes[node_id] = node
        return node

    async def ready(self, node: Node, timeout: float = 120) -> dict[str, Any]:
        return await wait_ready(self.session, node, timeout)

    async def stop(self, node: Node) -> int:
        return await stop_node(node)

    async def stop_all(self) -> None:
        for node in self.nodes.values():
            if node.proc is not None and node.proc.returncode is None:
                await self.stop(node)


def usage_per_key(url: str) -> dict[str, tuple[int, int, int]]:
    rows = sql(url, "SELECT key_id, sum(requests), sum(prompt_tokens), sum(completion_tokens) "
                    "FROM usage_daily GROUP BY key_id")
    return {str(r[0]): (int(r[1]), int(r[2]), int(r[3])) for r in rows}


def served_per_key(up: FakeUpstream) -> dict[str, int]:
    """Chat requests the fake upstream answered, per the `user` (our key name) each carried."""
    seen: Counter[str] = Counter()
    for r in up.requests:
        if r.path.endswith("/chat/completions") and isinstance(r.body, dict):
            seen[str(r.body.get("user") or r.body.get("safety_identifier") or "?")] += 1
    return dict(seen)


async def scenario(run: Run, load: Load, key_ids: dict[str, str], up: FakeUpstream) -> None:
    env, checks, url = run.env, run.checks, run.env.database_url
    old1, old2 = await run.start("node-a", "old"), await run.start("node-b", "old")
    for node in (old1, old2):
        await run.ready(node)
        load.targets[node.node_id] = node.base
    load.start()
    await load.serve_some("old")

    await until(lambda: asql(url, "SELECT 1 FROM snapshots LIMIT 1"), 120, "a snapshot written by an old node")
    snapshots_before = int((await asql(url, "SELECT count(*) FROM snapshots"))[0][0])

    # 3. the new schema under the old nodes' feet
    usage_before = sum(r for r, _, _ in (await asyncio.to_thread(usage_per_key, url)).values())
    load.phase = "migrate"
    errors_before = len(load.errors)
    started = time.monotonic()
    code, out, err = await cli(env, run.new_tree, "db", "upgrade")
    took = time.monotonic() - started
    revision = (await asql(url, "SELECT version_num FROM alembic_version"))[0][0]
    checks.add("new `db upgrade` while old nodes serve", code == 0 and revision == db.SCHEMA_HEAD,
               f"exit {code}, schema now {revision}, {took:.1f} s wall; {load.ok['migrate']} requests served "
               f"meanwhile" + (f"; {err.strip()[-300:]}" if code else ""))
    await load.serve_some("after-migrate")

    async def usage_grew() -> bool:
        total = sum(r for r, _, _ in (await asyncio.to_thread(usage_per_key, url)).values())
        return total >= usage_before + PER_PHASE

    grew = True
    try:
        await until(usage_grew, 60, "usage after the migration")
    except TimeoutError:
        grew = False
    async def old_rows_after() -> int:
        rows = await asql(url, "SELECT count(*) FROM request_log WHERE user_agent = %s AND node_id = ANY(%s)",
                          (AGENT + "after-migrate", [old1.node_id, old2.node_id]))
        return int(rows[0][0])

    with contextlib.suppress(TimeoutError):  # the check below says 0
        await until(old_rows_after, 60, "request_log rows by old nodes after the migration")
    old_rows = await old_rows_after()
    new_errors = load.errors[errors_before:]
    checks.add("old nodes serve through and after the migration",
               not new_errors and grew and old_rows > 0,
               f"{load.ok['migrate'] + load.ok['after-migrate']} requests ok, {len(new_errors)} errors, usage "
               f"grew past {usage_before + PER_PHASE} requests: {grew}, {old_rows} request_log rows logged after it"
               + (f"; first error: {new_errors[0]}" if new_errors else ""))

    # the old release's CLI and a restarted old node meet a schema newer than theirs: refused in one
    # line naming both revisions (docs/deploy.md: finish the rollout rather than pausing it)
    said = {what: await cli(env, run.old_tree, *what.split()) for what in ("usage", "key list")}
    # not a check: releases before the fix in shieldes.db.upgrade end here in alembic's traceback
    code, _, err = await cli(env, run.old_tree, "db", "upgrade")
    print(f"INFO  old `db upgrade` on the migrated database: exit {code}, {len(err.strip().splitlines())} "
          f"lines, the last: {(err.strip().splitlines() or [''])[-1][:200]}", flush=True)
    restarted = await run.start("node-x", "old")
    assert restarted.proc is not None
    status = await asyncio.wait_for(restarted.proc.wait(), 120)
    del run.nodes["node-x"]
    refusal = [line for line in restarted.log.read_text().splitlines() if db.SCHEMA_HEAD in line]
    one_line = {w: c != 0 and len(e.strip().splitlines()) == 1 and revision in e and "0012" in e
                for w, (c, _, e) in said.items()}
    checks.add("the old release refuses the migrated database in one line", all(one_line.values())
               and status != 0 and bool(refusal),
               f"old CLI {', '.join(f'{w}: {ok}' for w, ok in one_line.items())}; an old node restarted: "
               f"exit {status}, {refusal[-1][-160:] if refusal else f'no line naming {db.SCHEMA_HEAD}'}; CLI said: "
               f"{next(iter(said.values()))[2].strip()[:200]}")

    # 4. a new node joins from a snapshot an old node wrote
    new1 = await run.start("node-c", "new")
    body = await run.ready(new1)
    loaded = re.search(r"projection loaded at position (\d+) from (snapshot \d+|an empty state) plus (\d+) tail",
                       new1.log.read_text())
    used = re.search(r"snapshot (\d+)", loaded.group(2)) if loaded else None
    author = (await asql(url, "SELECT node_id, schema_version FROM snapshots WHERE id = %s",
                         (int(used.group(1)),)) or [(None, None)])[0] if used else (None, None)
    checks.add("new node ready from an old node's snapshot + tail",
               used is not None and author[0] in (old1.node_id, old2.node_id),
               f"{loaded.group(0) if loaded else 'no load line'} events; that snapshot written by {author[0]} "
               f"(old, schema {author[1]}); ready at position {body.get('position')}, "
               f"{snapshots_before} snapshots before the migration")
    load.targets[new1.node_id] = new1.base
    await load.serve_some("mixed")

    # the new CLI while old nodes live: a key with a budget and a rate limit, then its revocation
    code, out, err = await cli(env, run.new_tree, "key", "create", "--name", "late", "--rpm", "100",
                               "--budget", "5")
    if code != 0:
        line = err.strip()
        checks.add("new CLI key create while old nodes live", "\n" not in line and "upgrade node" in line,
                   f"refused with one line: {line[:300]}")
    else:
        created = json.loads(out)
        load.keys["late"], key_ids["late"] = created["key"], created["id"]

        async def served_everywhere() -> bool:
            return all([await load.one(n.node_id, n.base, "late") == 200 for n in (old1, old2, new1)])

        try:
            await until(served_everywhere, 30, "the new key served by every node")
            everywhere = True
        except TimeoutError:
            everywhere = False
        code, out, err = await cli(env, run.new_tree, "key", "revoke", "late")

        async def refused_everywhere() -> bool:
            return all([await load.one(n.node_id, n.base, "late") == 401 for n in (old1, old2, new1)])

        try:
            await until(refused_everywhere, 30, "the revocation applied by every node")
            revoked = True
        except TimeoutError:
            revoked = False
        # schema 0013 in use: a new node says why in request_log.error_message, an old node leaves it NULL
        async def refusals() -> dict[str, list[Any]]:
            rows = await asql(url, "SELECT node_id, error_code, error_message FROM request_log "
                                   "WHERE user_agent = %s AND status = 401", (AGENT + "mixed",))
            return {n: [r[1:] for r in rows if r[0] == n] for n in (old1.node_id, old2.node_id, new1.node_id)}

        with contextlib.suppress(TimeoutError):  # the check below says what is missing
            await until(lambda: _all_values(refusals()), 60, "the 401s in the request log")
        seen = await refusals()
        checks.add("request_log.error_message: set by the new node, NULL by old ones",
                   all(seen.values()) and all(m is None for n in (old1, old2) for _, m in seen[n.node_id])
                   and all(m for _, m in seen[new1.node_id]),
                   "; ".join(f"{n}: {len(r)} refusals, {r[0] if r else '-'}" for n, r in seen.items()))
        checks.add("new CLI key create + revoke while old nodes live", everywhere and code == 0 and revoked,
                   f"created (rpm 100, budget $5): served by old and new nodes: {everywhere}; revoked (exit {code}): "
                   f"refused (401) by old and new nodes: {revoked}")

    # the rolling step: each old node leaves and comes back on the new code with its id
    for old in (old1, old2):
        await load.drain(old.node_id)
        status = await run.stop(old)
        back = await run.start(old.node_id, "new")
        await run.ready(back)
        load.targets[back.node_id] = back.base
        await load.serve_some(f"rolled-{old.node_id}")
        checks.add(f"{old.node_id}: old -> new", status == 0,
                   f"SIGTERM exit {status}, back on the new code and serving "
                   f"({load.ok['rolled-' + old.node_id]} requests)")
    await load.stop()

    # 5. the end state
    async def flushed() -> bool:
        got = {key_ids[k]: (t.requests, t.prompt, t.completion) for k, t in load.got.items()}
        return await asyncio.to_thread(usage_per_key, url) == got

    with contextlib.suppress(TimeoutError):  # the check below says what differs
        await until(flushed, 60, "usage flushed")
    logged = await asyncio.to_thread(usage_per_key, url)
    served = served_per_key(up)
    lines, same = [], True
    for name, tally in sorted(load.got.items()):
        row = logged.get(key_ids[name], (0, 0, 0))
        upstream = served.get(name, 0)
        same &= row == (tally.requests, tally.prompt, tally.completion) and upstream == tally.requests
        lines.append(f"{name}: log {row[0]} req {row[1]}+{row[2]} tok, client {tally.requests} req "
                     f"{tally.prompt}+{tally.completion} tok, upstream served {upstream}")
    checks.add("usage in the log = what the upstream served, per key", same, "; ".join(lines))

    async def positions() -> dict[str, int] | None:
        seen = {}
        for node in run.nodes.values():
            _, body = await get_json(run.session, node.base + "/ready")
            seen[node.node_id] = int((body or {}).get("position", -1))
        head = (await asql(url, "SELECT position FROM log_head"))[0][0]
        return seen if set(seen.values()) == {head} else None

    try:
        at = await until(positions, 30, "every node at one position")
        checks.add("every node at the same position", True, json.dumps(at) + " = the log head")
    except TimeoutError:
        checks.add("every node at the same position", False, json.dumps(await positions_now(run)))

    async def rows_complete() -> bool:
        return dict(await asyncio.to_thread(request_rows, url)) == {k: v for k, v in load.sent.items() if v}

    with contextlib.suppress(TimeoutError):  # the check below says what differs
        await until(rows_complete, 60, "request_log rows")
    rows = await asyncio.to_thread(request_rows, url)
    expected = {k: v for k, v in load.sent.items() if v}
    per_phase = Counter[str]()
    for (phase, _), n in rows.items():
        per_phase[phase] += n
    checks.add("request_log rows of every phase present", rows == expected,
               ", ".join(f"{p}: {n}" for p, n in per_phase.items())
               + ("" if rows == expected else f"; expected {sorted(expected.items())}, got {sorted(rows.items())}"))


async def _all_values(pending: Awaitable[dict[str, list[Any]]]) -> bool:
    return all((await pending).values())


async def positions_now(run: Run) -> dict[str, Any]:
    seen = {}
    for node in run.nodes.values():
        _, body = await get_json(run.session, node.base + "/ready")
        seen[node.node_id] = (body or {}).get("position")
    return seen


def request_rows(url: str) -> dict[tuple[str, str], int]:
    rows = sql(url, "SELECT user_agent, node_id, count(*) FROM request_log WHERE user_agent LIKE %s "
                    "GROUP BY 1, 2", (AGENT + "%",))
    return {(str(r[0]).removeprefix(AGENT), str(r[1])): int(r[2]) for r in rows}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="rev", default="bd0cb52", help="the previous release (git rev)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (node logs)")
    args = parser.parse_args()
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.rev], check=True,
                         capture_output=True, text=True).stdout.strip()
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()
    tmp = Path(tempfile.mkdtemp(prefix="shieldes-upgrade-"))
    old_tree = tmp / "old"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old_tree), rev], check=True,
                   capture_output=True)
    print(f"upgrade {rev} -> {head} (this tree); load average {os.getloadavg()[0]:.2f}", flush=True)
    lease = EmbeddedPostgres(tmp / "pg").acquire("upgrade-check")
    checks = Checks()
    up = FakeUpstream(completion_tokens=5, api_key=UPSTREAM_KEY, models=(MODEL,))
    await up.start()
    cpu = time.process_time()
    run: Run | None = None
    try:
        with psycopg.connect(lease.url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE upgrade")
        env = Env(pg.with_database(lease.url, "upgrade"), tmp)
        await cli_ok(env, old_tree, "db", "upgrade")
        revision = sql(env.database_url, "SELECT version_num FROM alembic_version")[0][0]
        print(f"schema {revision} by the old tree's `db upgrade`", flush=True)
        await cli_ok(env, old_tree, "provider", "add", "openai", "--type", "openai", "--base-url", up.url + "/v1",
                     "--api-key-env", "SHIELDES_UPGRADE_UPSTREAM_KEY", "--models", MODEL)
        keys, key_ids = {}, {}
        for name, limits in (("load-a", ("--rpm", "6000", "--budget", "50")),
                             ("load-b", ("--tpm", "1000000", "--budget", "20", "--budget-period", "1d"))):
            created = await cli_ok(env, old_tree, "key", "create", "--name", name, *limits)
            keys[name], key_ids[name] = created["key"], created["id"]
        async with aiohttp.ClientSession() as session:
            run = Run(env, old_tree, ROOT, checks, session)
            load = Load(keys)
            try:
                await scenario(run, load, key_ids, up)
            except (TimeoutError, RuntimeError) as exc:
                checks.add("scenario ran to the end", False, str(exc)[:2000])
            finally:
                await load.stop()
                await run.stop_all()
        traced = [f"{p.name}: {p.read_text().count('Traceback')}" for p in run.logs if "Traceback" in p.read_text()]
        checks.add("no node logged a traceback", not traced,
                   f"{len(run.logs)} node logs" + (f"; {', '.join(traced)}" if traced else ""))
        checks.add("no request failed", not load.errors,
                   f"{sum(load.ok.values())} requests ok, {len(load.errors)} failed"
                   + (f"; {load.errors[:3]}" if load.errors else ""))
    finally:
        if run is not None:
            await run.stop_all()
        await up.stop()
        lease.release()
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old_tree)], check=False)
    return checks.finish(tmp, args.keep, cpu)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
