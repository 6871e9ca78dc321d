"""The parts of bench/rolling_upgrade.py: node processes of two releases on one database, the
traffic every kind of client sends them, and the comparison of each node's usage with the log's."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.upgrade_check import Checks, Node, asql, free_port, sql, stop_node, until, wait_ready  # noqa: E402

SECRET = "rolling-upgrade-secret"
ADMIN = "rolling-upgrade-admin"
UPSTREAM_KEY = "sk-rolling-upgrade"
MODEL, EMBED, CLAUDE = "gpt-4o-mini", "text-embedding-3-small", "claude-sonnet-4-5"
PRICE_IN, PRICE_OUT = 100, 1000  # USD per 1M tokens, every model
PER_SEARCH = 0.01  # USD per web search (Claude's server-side tool, run by the fake upstream)
AGENT = "rolling-upgrade/"  # + phase
KINDS = ("chat", "stream", "responses", "messages", "embeddings", "search")
PER_PHASE = 6  # successful operations of each kind in each phase, at least
RPM_LIMIT, BUDGET_USD = 20, 0.2


@dataclass
class Tally:
    requests: int = 0
    prompt: int = 0
    completion: int = 0
    searches: int = 0

    def add(self, prompt: int, completion: int, searches: int = 0) -> None:
        self.requests += 1
        self.prompt += prompt
        self.completion += completion
        self.searches += searches


@dataclass
class Cluster:
    url: str
    tmp: Path
    old_tree: Path
    old_counts_tools: bool  # the old release counts hosted tool uses in its deltas and keeps them on compaction
    session: aiohttp.ClientSession
    nodes: dict[str, Node] = field(default_factory=dict)
    logs: list[Path] = field(default_factory=list)

    def env(self, tree: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHIELDES_")}
        return env | {"PYTHONPATH": str(tree), "SHIELDES_DATABASE_URL": self.url, "SHIELDES_ACTOR": "rollout",
                      "SHIELDES_ROLLING_UPSTREAM_KEY": UPSTREAM_KEY}

    async def cli(self, tree: Path, *args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shieldes", "--json", *args, cwd=tree, env=self.env(tree),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 300)
        return proc.returncode or 0, out.decode(), err.decode()

    async def cli_ok(self, tree: Path, *args: str) -> Any:
        code, out, err = await self.cli(tree, *args)
        if code:
            raise RuntimeError(f"shieldes {' '.join(args)} ({tree}) exit {code}: {err.strip()[-1500:]}")
        return json.loads(out) if out.strip() else None

    async def start(self, node_id: str, tree: Path, **extra: str) -> Node:
        before = self.nodes.get(node_id)
        release = "old" if tree == self.old_tree else "new"
        node = Node(node_id, tree, release, free_port(), before.gossip_port if before else free_port(),
                    self.tmp / f"{node_id}-{release}-{len(self.logs)}.log")
        self.logs.append(node.log)
        env = self.env(tree) | {
            "SHIELDES_NODE_ID": node_id, "SHIELDES_HOST": "127.0.0.1", "SHIELDES_PORT": str(node.port),
            "SHIELDES_GOSSIP_PORT": str(node.gossip_port), "SHIELDES_CLUSTER_SECRET": SECRET,
            "SHIELDES_ADMIN_TOKEN": ADMIN, "SHIELDES_DATA_DIR": str(self.tmp / f"data-{node_id}"),
            "SHIELDES_LOG_FORMAT": "text", "SHIELDES_POLL_INTERVAL": "1", "SHIELDES_HEARTBEAT_INTERVAL": "0.3",
            "SHIELDES_NODE_TIMEOUT": "3", "SHIELDES_FLUSH_INTERVAL": "0.3", "SHIELDES_SHUTDOWN_GRACE": "10",
            # the leader (old, then new) snapshots and compacts often, so each release meets the other's work
            "SHIELDES_SNAPSHOT_EVERY_EVENTS": "40", "SHIELDES_SNAPSHOT_EVERY_SECONDS": "5",
            "SHIELDES_COMPACT_RETAIN_SECONDS": "3", "SHIELDES_COMPACT_INTERVAL": "7",
        } | extra
        with node.log.open("wb") as out:
            node.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "shieldes", "serve", cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.nodes[node_id] = node
        return node

    async def ready(self, node: Node, timeout: float = 180) -> dict[str, Any]:
        return await wait_ready(self.session, node, timeout)

    async def stop(self, node: Node) -> int:
        return await stop_node(node)

    async def stop_all(self) -> None:
        for node in list(self.nodes.values()):
            if node.proc is not None and node.proc.returncode is None:
                await self.stop(node)

    def live(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.proc is not None and n.proc.returncode is None]

    async def admin(self, node: Node, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.request(method, node.base + "/admin/v1" + path, json=body,
                                        headers={"Authorization": f"Bearer {ADMIN}"},
                                        timeout=aiohttp.ClientTimeout(total=30)) as resp:
            return resp.status, await resp.json(content_type=None)


@dataclass
class Traffic:
    """One worker per kind of request, each cycling through the nodes in rotation."""

    keys: dict[str, str]  # key name -> secret
    targets: dict[str, Node] = field(default_factory=dict)
    phase: str = "old"
    got: dict[str, Tally] = field(default_factory=dict)  # key name -> what the clients were told
    ok: Counter[tuple[str, str]] = field(default_factory=Counter)  # (phase, kind) -> successes
    errors: list[str] = field(default_factory=list)
    stored: list[tuple[str, str, str]] = field(default_factory=list)  # (response id, node id, release)
    crossings: Counter[str] = field(default_factory=Counter)  # "old->new" continuations that worked
    in_flight: Counter[str] = field(default_factory=Counter)
    paused: bool = False
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def oa(self, node: Node, key: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=node.base + "/v1", api_key=self.keys[key], max_retries=0, timeout=60,
                                  default_headers={"User-Agent": AGENT + self.phase,
                                                   "x-litellm-tags": f"rollout,{self.phase}"})

    def tally(self, key: str, prompt: int, completion: int, searches: int = 0) -> None:
        self.got.setdefault(key, Tally()).add(prompt, completion, searches)

    async def once(self, kind: str, i: int) -> None:
        live = sorted(self.targets.values(), key=lambda n: n.node_id)
        node, other = live[i % len(live)], live[(i + 1) % len(live)]
        key = "k-" + kind
        self.in_flight[node.node_id] += 1
        try:
            if kind == "chat":
                async with self.oa(node, key) as c:
                    a = await c.chat.completions.create(model=MODEL, max_tokens=5, messages=[
                        {"role": "user", "content": f"chat {self.phase} {i}"}])
                assert a.usage is not None
                self.tally(key, a.usage.prompt_tokens, a.usage.completion_tokens)
            elif kind == "stream":
                async with self.oa(node, key) as c:
                    s = await c.chat.completions.create(model=MODEL, max_tokens=5, stream=True,
                                                        stream_options={"include_usage": True},
                                                        messages=[{"role": "user", "content": f"stream {i}"}])
                    usage = [ch.usage async for ch in s if ch.usage is not None]
                if not usage:
                    raise AssertionError("a stream ended without its usage chunk")
                self.tally(key, usage[-1].prompt_tokens, usage[-1].completion_tokens)
            elif kind == "responses":
                async with self.oa(node, key) as c:
                    r = await c.responses.create(model=MODEL, input=f"first {self.phase} {i}", max_output_tokens=16)
                assert r.usage is not None
                self.tally(key, r.usage.input_tokens, r.usage.output_tokens)
                self.stored.append((r.id, node.node_id, node.release))
                self.in_flight[other.node_id] += 1
                try:
                    async with self.oa(other, key) as c:
                        r2 = await c.responses.create(model=MODEL, input="and then?", previous_response_id=r.id,
                                                      max_output_tokens=16)
                finally:
                    self.in_flight[other.node_id] -= 1
                assert r2.usage is not None
                self.tally(key, r2.usage.input_tokens, r2.usage.output_tokens)
                self.stored.append((r2.id, other.node_id, other.release))
                self.crossings[f"{node.release}->{other.release}"] += 1
            elif kind == "messages":
                async with anthropic.AsyncAnthropic(base_url=node.base, api_key=self.keys[key], max_retries=0,
                                                    timeout=60,
                                                    default_headers={"User-Agent": AGENT + self.phase}) as c:
                    m = await c.messages.create(model=MODEL, max_tokens=5, messages=[
                        {"role": "user", "content": f"messages {i}"}])
                self.tally(key, m.usage.input_tokens, m.usage.output_tokens)
            elif kind == "search":  # a hosted tool billed per use: web_searches in the usage deltas
                async with anthropic.AsyncAnthropic(base_url=node.base, api_key=self.keys[key], max_retries=0,
                                                    timeout=60,
                                                    default_headers={"User-Agent": AGENT + self.phase}) as c:
                    m = await c.messages.create(model=CLAUDE, max_tokens=5, messages=[
                        {"role": "user", "content": f"search {i}"}],
                        tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 1}])
                used = m.usage.server_tool_use.web_search_requests if m.usage.server_tool_use else 0
                self.tally(key, m.usage.input_tokens, m.usage.output_tokens, used)
            elif kind == "embeddings":
                async with self.oa(node, key) as c:
                    e = await c.embeddings.create(model=EMBED, input=[f"embed {i}", "two words"])
                self.tally(key, e.usage.prompt_tokens, 0)
            self.ok[(self.phase, kind)] += 1
        except (openai.APIError, anthropic.APIError, AssertionError) as exc:
            self.errors.append(f"[{self.phase}] {kind} on {node.node_id} ({node.release}): "
                               f"{type(exc).__name__}: {str(exc)[:400]}")
        finally:
            self.in_flight[node.node_id] -= 1

    async def _worker(self, kind: str) -> None:
        i = KINDS.index(kind)
        while not self._stop.is_set():
            if self.paused or not self.targets:
                await asyncio.sleep(0.05)
                continue
            await self.once(kind, i)
            i += 1
            await asyncio.sleep(0.02)  # the machine is shared: a steady trickle, not a flood

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(k)) for k in KINDS]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def serve(self, phase: str, count: int = PER_PHASE, timeout: float = 240) -> None:
        """Enter `phase`; return once every kind succeeded `count` times in it."""
        self.phase = phase

        async def enough() -> bool:
            return all(self.ok[(phase, k)] >= count for k in KINDS)

        await until(enough, timeout, f"{count} of each kind served in phase {phase} "
                                     f"(so far {dict((k, self.ok[(phase, k)]) for k in KINDS)})")

    async def idle(self, node_ids: list[str]) -> None:
        async def quiet() -> bool:
            return all(self.in_flight[n] == 0 for n in node_ids)

        await until(quiet, 90, f"requests in flight on {node_ids} done")

    @contextlib.asynccontextmanager
    async def quiet(self) -> Any:
        self.paused = True
        try:
            await self.idle(list(self.in_flight))
            yield
        finally:
            self.paused = False


def logged_usage(url: str) -> dict[str, tuple[int, int, int, int, int]]:
    """Per key name: requests, prompt, completion tokens, nano-USD and web searches in usage_daily
    (searches 0 at a schema before the views had them, 0024)."""
    searches = "sum(web_searches)" if sql(url, "SELECT 1 FROM information_schema.columns WHERE table_name = "
                                               "'usage_daily' AND column_name = 'web_searches'") else "0"
    rows = sql(url, "SELECT key_name, sum(requests), sum(prompt_tokens), sum(completion_tokens), sum(cost_usd), "
                    f"{searches} FROM usage_daily GROUP BY 1")
    return {str(r[0]): (int(r[1]), int(r[2]), int(r[3]), round(float(r[4]) * 1e9), int(r[5])) for r in rows}


async def agree(c: Cluster, checks: Checks, traffic: Traffic, when: str) -> None:
    """A quiet point: every live node at the log head sees each key's usage as the log holds it."""
    searches: dict[str, dict[str, tuple[Any, Any]]] = {}  # node -> key -> (its web searches, the log's)
    async with traffic.quiet():
        async def compare() -> tuple[bool, str]:
            head = (await asql(c.url, "SELECT coalesce(max(position), 0) FROM events"))[0][0]
            want = {k: v for k, v in (await asyncio.to_thread(logged_usage, c.url)).items() if v[0]}
            diffs = []
            searches.clear()
            for node in c.live():
                try:
                    _, status = await c.admin(node, "GET", "/node")
                    _, live = await c.admin(node, "GET", "/usage/live")
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    diffs.append(f"{node.node_id}: {exc}")
                    continue
                position = int(status.get("position") or 0)
                # web searches where the node counts them (a release before 0022 does not)
                seen = {r["key"]: (r["requests"], r["prompt_tokens"], r["completion_tokens"],
                                   round(r["cost_usd"] * 1e9), r.get("web_searches")) for r in live["data"]
                        if r["requests"]}
                mine = {k: v if seen.get(k, (None,) * 5)[4] is not None else (*v[:4], None)
                        for k, v in want.items()}
                if not c.old_counts_tools:  # a leader before 0024 compacts the counts away: INFO, below
                    searches[node.node_id] = {k: (v[4], mine.get(k, (None,) * 5)[4]) for k, v in seen.items()
                                              if v[4] != mine.get(k, (None,) * 5)[4]}
                    seen = {k: (*v[:4], None) for k, v in seen.items()}
                    mine = {k: (*v[:4], None) for k, v in mine.items()}
                if position < head or status.get("unflushed_usage_deltas") or seen != mine:
                    odd = {k: (seen.get(k), mine.get(k)) for k in seen.keys() | mine.keys()
                           if seen.get(k) != mine.get(k)}
                    diffs.append(f"{node.node_id} ({node.release}) at {position}/{head}: {odd}")
            return not diffs, "; ".join(diffs)

        result: list[tuple[bool, str]] = []

        async def agreed() -> bool:
            result.append(await compare())
            return result[-1][0]

        with contextlib.suppress(TimeoutError):
            await until(agreed, 30, "nodes agree")
        ok, detail = result[-1]
        names = ", ".join(f"{n.node_id} ({n.release})" for n in c.live())
        checks.add(f"every node's live usage = the log's ({when})", ok,
                   f"{names}" + (f"; differ: {detail[:1500]}" if not ok else ""))
        if any(searches.values()):
            print(f"INFO  web searches (node's, log's) where they differ ({when}): {searches}", flush=True)


async def served_by_all(c: Cluster, traffic: Traffic, key: str, want: int, nodes: list[Node]) -> bool:
    """Whether a chat request of `key` gets `want` (200 or 401) from each node, within 20 s."""
    async def each() -> bool:
        statuses = []
        for node in nodes:
            try:
                async with traffic.oa(node, key) as client:
                    a = await client.chat.completions.create(model=MODEL, max_tokens=5,
                                                             messages=[{"role": "user", "content": "probe"}])
                statuses.append(200)
                assert a.usage is not None
                traffic.tally(key, a.usage.prompt_tokens, a.usage.completion_tokens)
            except openai.APIStatusError as exc:
                statuses.append(exc.status_code)
        return all(s == want for s in statuses)

    try:
        await until(each, 20, f"{key} answered {want} by every node")
        return True
    except TimeoutError:
        return False


async def hammer(c: Cluster, traffic: Traffic, key: str, nodes: list[Node], rounds: int) -> Counter[int]:
    """`rounds` chat requests of `key` to each node, concurrently; the statuses."""
    seen: Counter[int] = Counter()

    async def one(node: Node, i: int) -> None:
        try:
            async with traffic.oa(node, key) as client:
                a = await client.chat.completions.create(model=MODEL, max_tokens=5,
                                                         messages=[{"role": "user", "content": f"hammer {i}"}])
            assert a.usage is not None
            traffic.tally(key, a.usage.prompt_tokens, a.usage.completion_tokens)
            seen[200] += 1
        except openai.APIStatusError as exc:
            seen[exc.status_code] += 1

    for i in range(rounds):
        await asyncio.gather(*(one(n, i) for n in nodes))
    return seen
