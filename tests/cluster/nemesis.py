"""The nemesis: three real `shieldes serve` nodes under load from the openai SDK (chat completions
on limited keys) and from agents (nemesis_agents.py: Responses turns continued by id on any node,
WebSocket sessions, Anthropic Messages) while a seeded schedule SIGKILLs a node and restarts it with
the same node id, restarts one gracefully (SIGTERM), SIGSTOPs and SIGCONTs one, cuts Postgres and
blocks gossip between two nodes; then everything it recorded goes to the checkers
(nemesis_check.py, nemesis_agent_check.py).

The nodes reach Postgres through a TCP proxy (cut = every connection dropped and new ones closed),
and each other's gossip through a relay per node: a node advertises 127.0.0.<11+i> as its gossip
host (SHIELDES_ADVERTISE_HOST) where the relay listens and forwards to the node's real port, so the
relay knows who sends (the message's node id) and can drop one pair's messages either way, as a
black hole (the caller times out) or a refusal.

    SHIELDES_NEMESIS_SEED=1234 python -m pytest tests/cluster/test_nemesis.py   # replay a run
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import openai
import psycopg
import zstandard

from shieldes.cluster import gossip_pb2, gossip_pb2_grpc
from shieldes.projections.shared_commands import AddProvider, SetPricing
from shieldes.usage.admission import NUSD
from tests import pg
from tests.cluster.harness import UPSTREAM_KEY_ENV, Cluster, NodeProc, get_json
from tests.cluster.nemesis_agent_check import AGENT_APIS, Turn, agent_figures, check_agents
from tests.cluster.nemesis_agents import AgentLoad
from tests.cluster.nemesis_check import Fault, KeySpec, Logged, NodeReadout, Served
from tests.fake_upstream import FakeUpstream, count_words
from tests.resilience.support import TcpProxy

ADMIN_TOKEN = "nemesis-admin-token"
MODEL = "gpt-4o-mini"
PRICE_IN, PRICE_OUT = 100.0, 1000.0  # USD per 1M tokens
COMPLETION_TOKENS = 5
SEED_ENV = "SHIELDES_NEMESIS_SEED"
GOSSIP_INTERVAL = "0.1"
STREAM_TOKEN_DELAY = 0.06  # seconds before each streamed token at the fake upstream


def seed_from_env() -> int:
    value = os.environ.get(SEED_ENV)
    return int(value) if value else random.SystemRandom().randrange(1, 1 << 31)


def cost_nusd(prompt: int, completion: int) -> int:
    return round((prompt * PRICE_IN + completion * PRICE_OUT) * NUSD / 1_000_000)


@dataclass(frozen=True)
class LoadKey:
    spec: KeySpec
    pace: float  # seconds between a worker's requests
    workers_per_node: int = 1


def default_keys(minutes: float = 0.0) -> list[LoadKey]:
    """Two rate-limited keys (one saturated at once, one over most of each window), budgets (one
    spent early, one during the first faults; for a long run one that lasts most of it) and one key
    with no limit at all."""
    estimate = cost_nusd(30, COMPLETION_TOKENS)  # bytes / 4 of the request body, and max_tokens

    def budget(name: str, usd: float) -> LoadKey:
        return LoadKey(KeySpec(name, budget_nusd=round(usd * NUSD), estimate_nusd=estimate, concurrency=3),
                       pace=0.25)

    keys = [
        LoadKey(KeySpec("rate-low", rpm=30), pace=0.1),
        LoadKey(KeySpec("rate-high", rpm=400), pace=0.1),
        budget("budget-small", 0.2),
        budget("budget-large", 0.8),
        LoadKey(KeySpec("free"), pace=0.1),
    ]
    if minutes:  # about 10 requests a second of $0.0052 each: spent after ~70% of the run
        keys.append(budget("budget-long", round(0.052 * 60 * minutes * 0.7, 2)))
    return keys


# --- the schedule --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    kind: str  # kill | term | pause | pg_cut | partition
    nodes: tuple[str, ...]
    duration: float  # pause / cut / partition length (kill: unused)
    gap: float  # seconds to wait before this step
    mode: str = ""  # partition: blackhole | refuse


def plan(seed: int, node_ids: list[str], *, minutes: float = 0.0, outage: float = 3.0) -> list[Step]:
    """The short schedule (minutes=0): each fault once, in a seeded order on seeded nodes; the long
    one: random faults until `minutes` are filled (the Postgres cut lasts `outage` seconds)."""
    rnd = random.Random(seed)

    def step(kind: str, gap: float) -> Step:
        if kind in ("kill", "term"):
            return Step(kind, (rnd.choice(node_ids),), 0.0, gap)
        if kind == "pause":
            return Step(kind, (rnd.choice(node_ids),), round(rnd.uniform(1.5, 3.0 if not minutes else 8.0), 2), gap)
        if kind == "pg_cut":
            return Step(kind, (), outage, gap)
        pair = tuple(sorted(rnd.sample(node_ids, 2)))
        return Step(kind, pair, round(rnd.uniform(2.0, 3.0 if not minutes else 12.0), 2), gap,
                    rnd.choice(["blackhole", "refuse"]))

    kinds = ["kill", "term", "pause", "pg_cut", "partition"]
    if not minutes:
        rnd.shuffle(kinds)
        return [step(k, round(rnd.uniform(0.5, 2.0), 2)) for k in kinds]
    steps: list[Step] = []
    total = 0.0
    while total < minutes * 60:
        s = step(rnd.choice(kinds), round(rnd.uniform(2.0, 15.0), 2))
        steps.append(s)
        total += s.gap + s.duration + (6.0 if s.kind in ("kill", "term") else 0.0)
    return steps


# --- gossip relays ------------------------------------------------------------------------------


def sender_of(envelope: gossip_pb2.Envelope) -> str:
    try:
        raw = zstandard.ZstdDecompressor().decompress(envelope.payload, max_output_size=8 * 1024 * 1024)
        return str(gossip_pb2.State.FromString(raw).node_id)
    except Exception:
        return ""


class Links:
    """Which pairs of nodes cannot gossip, and how: `blackhole` (messages vanish, the sender times out)
    or `refuse` (the sender's push fails at once, as if nothing listened). `blocked` cuts a pair both
    ways; `one_way` cuts only (sender, receiver), the answers to the other way's pushes still flow."""

    def __init__(self) -> None:
        self.blocked: dict[frozenset[str], str] = {}
        self.one_way: dict[tuple[str, str], str] = {}
        self.dropped = 0

    def mode(self, sender: str, receiver: str) -> str | None:
        return self.blocked.get(frozenset((sender, receiver))) or self.one_way.get((sender, receiver))


class RelayLoop:
    """The gossip relays' own event loop, on a thread of its own. On the harness's loop they waited
    behind the load workers, the fake upstream and the Postgres proxy: with busy loops beside the
    nodes that loop lagged 0.1-1.4 s per 50 ms tick and stalled 2-10 s when the workers started,
    so pushes sat in the relay until their deadline passed while the nodes themselves answered
    within milliseconds (docs/guarantees.md, the crash-loss bound under overload)."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="gossip-relays", daemon=True)
        self._thread.start()

    async def run(self, coro: Any) -> Any:
        """Run `coro` on the relays' loop; awaited from the harness's."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def call(self, coro: Any) -> Any:
        """Run `coro` on the relays' loop from blocking code."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


class GossipRelay(gossip_pb2_grpc.GossipServicer):
    def __init__(self, receiver: str, listen: str, target: str, links: Links) -> None:
        self.receiver, self.listen, self.target, self.links = receiver, listen, target, links
        self._server: grpc.aio.Server | None = None
        self._channel: grpc.aio.Channel | None = None

    async def start(self) -> None:
        self._server = grpc.aio.server()
        gossip_pb2_grpc.add_GossipServicer_to_server(self, self._server)  # type: ignore[no-untyped-call]
        assert self._server.add_insecure_port(self.listen)
        await self._server.start()
        self._channel = grpc.aio.insecure_channel(self.target)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)
        if self._channel is not None:
            await self._channel.close()

    async def Push(self, request: gossip_pb2.Envelope, context: Any) -> gossip_pb2.Ack:
        mode = self.links.mode(sender_of(request), self.receiver)
        if mode is not None:
            self.links.dropped += 1
            if mode == "blackhole":
                await asyncio.sleep((context.time_remaining() or 1.0) + 0.1)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "link blocked")
        assert self._channel is not None
        stub = gossip_pb2_grpc.GossipStub(self._channel)  # type: ignore[no-untyped-call]
        try:
            ack: gossip_pb2.Ack = await stub.Push(request, timeout=context.time_remaining() or 1.0)
        except grpc.aio.AioRpcError as exc:  # the node is down or stopped: the sender sees the same
            await context.abort(exc.code(), exc.details() or "")
        return ack


# --- load ------------------------------------------------------------------------------------------


@dataclass
class Sent:
    key: str
    node: str
    sent_at: float
    status: int = -1  # HTTP status, 0 for a connection error or timeout
    answered_at: float | None = None  # the answer (status 200) reached the client


@dataclass
class Load:
    keys: list[LoadKey]
    secrets: dict[str, str]
    nodes: list[NodeProc]
    sent: dict[str, Sent] = field(default_factory=dict)  # request id -> what the client saw
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def _worker(self, lk: LoadKey, node: NodeProc, n: int) -> None:
        client = openai.AsyncOpenAI(base_url=node.base + "/v1", api_key=self.secrets[lk.spec.name],
                                    max_retries=0, timeout=5)
        i = 0
        try:
            while not self._stop.is_set():
                i += 1
                rid = f"{lk.spec.name}.{node.node_id}.{n}.{i}"
                sent = self.sent[rid] = Sent(lk.spec.name, node.node_id, time.time())
                try:
                    await client.chat.completions.create(
                        model=MODEL, max_tokens=COMPLETION_TOKENS,
                        messages=[{"role": "user", "content": f"nemesis {rid}"}])
                    sent.status, sent.answered_at = 200, time.time()
                except openai.APIStatusError as exc:
                    sent.status = exc.status_code
                except (openai.APIConnectionError, openai.APITimeoutError):
                    sent.status = 0
                await asyncio.sleep(lk.pace if sent.status == 200 else max(lk.pace, 0.2))
        finally:
            await client.close()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker(lk, node, n))
                       for lk in self.keys for node in self.nodes for n in range(lk.workers_per_node)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def statuses(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for s in self.sent.values():
            out[s.status] = out.get(s.status, 0) + 1
        return out


# --- the run ---------------------------------------------------------------------------------------


@dataclass
class History:
    seed: int
    nodes: list[str]
    keys: list[KeySpec]
    served: list[Served]
    faults: list[Fault]
    logged: dict[str, Logged]
    readouts: list[NodeReadout]
    statuses: dict[int, int]
    own_appends: dict[str, list[float]]  # node -> recorded_at of each usage append it wrote itself
    gossip_window: float
    notes: list[str] = field(default_factory=list)  # what could not be read (a violation too)
    turns: list[Turn] = field(default_factory=list)  # the agent clients' requests
    reads: dict[str, dict[str, int]] = field(default_factory=dict)  # stored response -> node -> GET status
    upstream_usage: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # agent tag -> usage served


async def stop_nodes_and_relays(cluster: Cluster, relays: list[GossipRelay], relay_loop: RelayLoop) -> None:
    """Every node stopped (a paused one resumed first, so that it can take its SIGTERM), then the
    gossip relays and their loop."""
    for node in cluster.nodes:
        if node.proc is not None and node.proc.poll() is None:
            node.proc.send_signal(signal.SIGCONT)
    await asyncio.to_thread(cluster.stop_all)
    for relay in relays:
        await relay_loop.run(relay.stop())
    relay_loop.close()


async def wait_for(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll a blocking condition off the event loop until it holds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(cond)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        await asyncio.sleep(0.05)


def node_json(node: NodeProc, path: str) -> Any:
    import urllib.request

    req = urllib.request.Request(node.base + path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    try:
        with urllib.request.urlopen(req, timeout=3) as resp:
            return json.loads(resp.read())
    except OSError:
        return None


class Nemesis:
    def __init__(self, server_url: str, tmp: Path, seed: int, *, steps: list[Step] | None = None,
                 keys: list[LoadKey] | None = None, warmup: float = 2.0, log: Callable[[str], None] = print,
                 env: dict[str, str] | None = None, agent_workers: int = 2) -> None:
        self.server_url, self.tmp, self.seed = server_url, tmp, seed
        self.node_ids = ["n1", "n2", "n3"]
        self.steps = steps if steps is not None else plan(seed, self.node_ids)
        self.keys = keys or default_keys()
        self.warmup, self.log = warmup, log
        self.env = env or {}
        self.agent_workers = agent_workers  # per API (0: chat load only)
        self.faults: list[Fault] = []
        self.links = Links()

    async def run(self) -> History:
        self.log(f"nemesis seed {self.seed} (replay with {SEED_ENV}={self.seed}); "
                 f"schedule: {[(s.kind, s.nodes, s.duration, s.mode) for s in self.steps]}")
        url = await asyncio.to_thread(pg.fresh_database, self.server_url)
        proxy = await TcpProxy(url).start()
        upstream = await FakeUpstream(completion_tokens=COMPLETION_TOKENS, models=(MODEL,)).start()
        # streams take a while, as a model's do, so faults find some under way (JSON answers do not wait)
        upstream.inject("/v1/chat/completions", token_delay=STREAM_TOKEN_DELAY, times=None)
        env = {"SHIELDES_ADMIN_TOKEN": ADMIN_TOKEN, "SHIELDES_GOSSIP_INTERVAL": GOSSIP_INTERVAL,
               "SHIELDES_POLL_INTERVAL": "1",
               "SHIELDES_HOST": "127.0.0.1", **self.env}
        cluster = Cluster(proxy.url_for(url), self.tmp, env_overrides=env)
        relays: list[GossipRelay] = []
        relay_loop = RelayLoop()
        load: Load | None = None
        agents: AgentLoad | None = None
        try:
            for i, node_id in enumerate(self.node_ids):
                node = cluster.add_node(node_id)
                host = f"127.0.0.{11 + i}"
                cluster.node_env[node_id] = {"SHIELDES_ADVERTISE_HOST": host}
                relay = GossipRelay(node_id, f"{host}:{node.gossip_port}", f"127.0.0.1:{node.gossip_port}", self.links)
                await relay_loop.run(relay.start())
                relays.append(relay)
            secrets = await asyncio.to_thread(self._setup, cluster, upstream.url)
            for node in cluster.nodes:
                cluster.start(node)
            for node in cluster.nodes:
                await asyncio.to_thread(cluster.wait_ready, node, 60)
            await wait_for(lambda: all((get_json(n.base + "/ready")[1] or {}).get("cluster", {}).get("alive") == 3
                                       for n in cluster.nodes), 30, "3 nodes gossiping")
            load = Load(self.keys, secrets, cluster.nodes)
            load.start()
            agents = AgentLoad(MODEL, COMPLETION_TOKENS, {api: secrets[agent_key(api)] for api in AGENT_APIS},
                               cluster.nodes, self.seed)
            agents.start(self.agent_workers)
            await asyncio.sleep(self.warmup)
            for step in self.steps:
                await asyncio.sleep(step.gap)
                await self._inject(step, cluster, proxy)
            await asyncio.sleep(1.0)
            await load.stop()
            await agents.stop()
            stopped = load, agents
            load = agents = None
            return await self._collect(url, cluster, upstream, *stopped, secrets)
        finally:
            if load is not None:
                await load.stop()
            if agents is not None:
                await agents.stop()
            await stop_nodes_and_relays(cluster, relays, relay_loop)
            await upstream.stop()
            await proxy.stop()
            await asyncio.to_thread(pg.drop_database, self.server_url, url)

    def _setup(self, cluster: Cluster, upstream_url: str) -> dict[str, str]:
        os.environ[UPSTREAM_KEY_ENV] = "sk-upstream"
        cluster.admin(AddProvider("openai", "openai", upstream_url, f"env:{UPSTREAM_KEY_ENV}", (MODEL,)),
                      SetPricing(MODEL, PRICE_IN, PRICE_OUT))
        out = {}
        for s in self.specs():
            out[s.name], _ = cluster.create_key(
                s.name, rpm=s.rpm, budget_usd=s.budget_nusd / NUSD if s.budget_nusd is not None else None)
        return out

    def specs(self) -> list[KeySpec]:
        """The chat load's keys, then one without limits per agent API."""
        return [lk.spec for lk in self.keys] + [KeySpec(agent_key(api)) for api in AGENT_APIS]

    async def _inject(self, step: Step, cluster: Cluster, proxy: TcpProxy) -> None:
        started = time.time()
        self.log(f"  {time.strftime('%H:%M:%S')} {step.kind} {','.join(step.nodes)} {step.duration or ''} {step.mode}")
        if step.kind in ("kill", "term"):  # term: a graceful restart, as a rolling deploy does
            node = next(n for n in cluster.nodes if n.node_id == step.nodes[0])
            await asyncio.to_thread(cluster.kill, node, signal.SIGKILL if step.kind == "kill" else signal.SIGTERM)
            gone = time.time() if step.kind == "kill" else started
            cluster.start(node)  # the same node id, a new boot
            await asyncio.to_thread(cluster.wait_ready, node, 60)
            self.faults.append(Fault(step.kind, step.nodes, gone, time.time()))
            return
        if step.kind == "pause":
            node = next(n for n in cluster.nodes if n.node_id == step.nodes[0])
            assert node.proc is not None
            node.proc.send_signal(signal.SIGSTOP)
            await asyncio.sleep(step.duration)
            node.proc.send_signal(signal.SIGCONT)
        elif step.kind == "pg_cut":
            proxy.cut()
            await asyncio.sleep(step.duration)
            proxy.restore()
        elif step.kind == "partition":
            pair = frozenset(step.nodes)
            self.links.blocked[pair] = step.mode
            await asyncio.sleep(step.duration)
            del self.links.blocked[pair]
        self.faults.append(Fault(step.kind, step.nodes, started, time.time()))

    async def _collect(self, url: str, cluster: Cluster, upstream: FakeUpstream, load: Load, agents: AgentLoad,
                       secrets: dict[str, str]) -> History:
        notes: list[str] = []
        served = []
        turns = {t.tag: t for t in agents.turns}
        upstream_usage: dict[str, list[tuple[int, int]]] = {}
        for rec in upstream.requests_to("/v1/chat/completions"):
            tag = tag_of(rec.body["messages"])
            cost = cost_nusd(count_words(rec.body["messages"]), COMPLETION_TOKENS)
            if tag in load.sent:
                sent = load.sent[tag]
                served.append(Served(sent.key, sent.node, sent.sent_at, rec.at, cost, sent.answered_at))
                continue
            turn = turns[tag]
            upstream_usage.setdefault(tag, []).append((count_words(rec.body["messages"]), COMPLETION_TOKENS))
            served.append(Served(agent_key(turn.api), turn.node, turn.sent_at, rec.at, cost,
                                 turn.ended_at if turn.status == 200 else None))
        reads = await read_stored(cluster.nodes, agents.turns, secrets)
        readouts = await self._quiesce(url, cluster, notes)
        await asyncio.to_thread(cluster.stop_all)  # SIGTERM: the final flush loses nothing
        logged = await asyncio.to_thread(logged_usage, url)
        own_appends = await asyncio.to_thread(own_usage_appends, url)
        # a gossip interval and the push in flight
        gossip_window = 2 * float(self.env.get("SHIELDES_GOSSIP_INTERVAL", GOSSIP_INTERVAL))
        return History(self.seed, self.node_ids, self.specs(), served, self.faults, logged,
                       readouts, load.statuses(), own_appends, gossip_window, notes, agents.turns, reads,
                       upstream_usage)

    async def _quiesce(self, url: str, cluster: Cluster, notes: list[str]) -> list[NodeReadout]:
        """No request in flight: wait until every node flushed, caught up with the log head and let go
        of every reservation, then read each node out (what could not converge is noted)."""

        def head() -> int:
            with psycopg.connect(url) as conn:
                row = conn.execute("SELECT max(position) FROM events").fetchone()
            return int(row[0]) if row and row[0] is not None else 0

        def settled() -> list[NodeReadout] | None:
            target = head()
            outs = [read_node(n) for n in cluster.nodes]
            if any(o is None for o in outs):
                return None
            ready = [o for o in outs if o is not None]
            if any(o.position < target for o in ready):
                return None
            if target != head():  # a flush landed meanwhile
                return None
            if any(o.reserved_nusd or o.peers_reserved_nusd for o in ready):
                return None
            return ready

        try:
            result: list[NodeReadout] = await wait_for(settled, 20, "every node flushed, caught up, idle")
            return result
        except AssertionError as exc:
            notes.append(str(exc))
            return [o for o in (await asyncio.to_thread(lambda: [read_node(n) for n in cluster.nodes])) if o]


def agent_key(api: str) -> str:
    return f"agent-{api}"


def tag_of(messages: list[dict[str, Any]]) -> str:
    """The tag of a request's turn: the last `nemesis <tag>` of its messages (its own, after the history)."""
    return str(re.findall(r"nemesis (\S+?)\"", json.dumps(messages))[-1])


async def read_stored(nodes: list[NodeProc], turns: list[Turn], secrets: dict[str, str]) -> dict[str, dict[str, int]]:
    """GET /v1/responses/{id} of every stored response a client received, from every node."""
    gate = asyncio.Semaphore(16)
    out: dict[str, dict[str, int]] = {}

    async def read(client: openai.AsyncOpenAI, node: str, rid: str) -> None:
        async with gate:
            try:
                await client.responses.retrieve(rid)
                status = 200
            except openai.APIStatusError as exc:
                status = exc.status_code
            except (openai.APIConnectionError, openai.APITimeoutError):
                status = 0
            out.setdefault(rid, {})[node] = status

    clients = {(n.node_id, api): openai.AsyncOpenAI(base_url=n.base + "/v1", api_key=secrets[agent_key(api)],
                                                    max_retries=0, timeout=10) for n in nodes for api in AGENT_APIS}
    try:
        await asyncio.gather(*(read(clients[(n.node_id, t.api)], n.node_id, t.response_id) for t in turns
                               if t.stored and t.status == 200 and t.response_id for n in nodes))
    finally:
        for c in clients.values():
            await c.close()
    return out


def read_node(node: NodeProc) -> NodeReadout | None:
    status = node_json(node, "/admin/v1/node")
    live = node_json(node, "/admin/v1/usage/live")
    if not status or not live or status.get("unflushed_usage_deltas"):
        return None
    return NodeReadout(
        node.node_id, int(status.get("position") or 0),
        {row["key"]: round(row["cost_usd"] * NUSD) for row in live["data"]},
        {k: round(v * NUSD) for k, v in status.get("reserved_usd", {}).items()},
        {k: round(v * NUSD) for k, v in status.get("peers_reserved_usd", {}).items()},
    )


def logged_usage(url: str) -> dict[str, Logged]:
    """Per key name, what the log holds (the documented view `usage_daily`)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT key_name, sum(requests), sum(cost_usd) FROM usage_daily "
                            "GROUP BY key_name").fetchall()
    return {str(name): Logged(int(req), round(float(cost) * NUSD)) for name, req, cost in rows}


def own_usage_appends(url: str) -> dict[str, list[float]]:
    """Per node, when each usage append it wrote itself began (recorded_at is the transaction's
    start), in log order; the leader's appends on behalf of a dead boot name it in `appended_by`."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT metadata->>'node_id', extract(epoch FROM recorded_at) FROM events "
                            "WHERE type = 'usage.recorded' AND NOT metadata ? 'appended_by' "
                            "ORDER BY position").fetchall()
    out: dict[str, list[float]] = {}
    for node, at in rows:
        out.setdefault(str(node), []).append(float(at))
    return out


def check_all(h: History) -> list[str]:
    """Every property the checker knows, per key; the notes of what never settled come first."""
    from tests.cluster import nemesis_check as check

    n = len(h.nodes)
    out = list(h.notes)
    for spec in h.keys:
        out += check.check_rate(h.served, spec, n, h.faults, h.gossip_window)
        out += check.check_budget(h.served, spec, n, h.faults, h.own_appends)
    out += check.check_usage(h.served, h.logged, [k.name for k in h.keys], h.faults, h.own_appends)
    out += check_agents(h.turns, h.reads, h.faults, h.upstream_usage)
    out += check.check_reservations(h.readouts)
    out += check.check_convergence(h.readouts, h.logged)
    return out


def summary(h: History) -> list[tuple[str, Any]]:
    """The figures a run measured (bench/nemesis.py prints them)."""
    from tests.cluster import nemesis_check as check

    rows: list[tuple[str, Any]] = [
        ("seed", h.seed),
        ("faults", ", ".join(f"{f.kind}({','.join(f.nodes)}) {f.start:.2f}-{f.end:.2f}" for f in h.faults)),
        ("client outcomes", dict(sorted(h.statuses.items()))), ("served upstream", len(h.served)),
        *agent_figures(h.turns),
    ]
    for spec in h.keys:
        mine = [s for s in h.served if s.key == spec.name]
        got = h.logged.get(spec.name, Logged(0, 0))
        line = f"served {len(mine)}, in the log {got.requests}"
        if spec.rpm is not None:
            slide, fixed, any_minute = check.rate_figures(h.served, spec)
            line += (f"; rpm {spec.rpm}: sliding minute at most {slide}, most in one fixed window {fixed}, "
                     f"most within any 60 s {any_minute}")
        if spec.budget_nusd is not None:
            over = check.budget_overshoot(h.served, spec)
            line += (f"; budget ${spec.budget_nusd / NUSD:g} overshoot ${over / NUSD:.4f} "
                     f"({over / spec.budget_nusd:+.1%}, {over / max(1, spec.estimate_nusd):.1f} estimates)")
        rows.append((spec.name, line))
    return rows
