"""The extra admissions a paused or partitioned node may add, with real node processes and a fixed
schedule (the nemesis draws its faults at random; these are the same faults, placed where they hurt).

Three nodes, a key with an rpm limit and a key with a budget. Node c claims a share of each, then is
SIGSTOPped (or its gossip with both peers is cut both ways, a black hole) with requests queued at it
(sent while it is stopped: they wait in its listen backlog); the others are loaded until they refuse,
past the point where they drop c from the split (SHIELDES_NODE_TIMEOUT) and forget its claims
(3 x SHIELDES_NODE_TIMEOUT); c is resumed (gossip restored) and every node is loaded until all
refuse. The bounds are docs/cluster.md's, computed by the checker's formulas (nemesis_check.py,
quoted by the docs) with P = 1: right after each admission, the key's sliding minute is at most
L + (N - 1)·⌈L/N⌉ + 1 + P·⌈L/N⌉, and the real spend at most B + (N - 1 + P)·max(⌈B/4N⌉, e) + C·e.
Everything admitted is accounted once: the log holds exactly what the upstream served (no SIGKILL
here, so nothing may be missing), every node sees the log's spend and no reservation is left."""

from __future__ import annotations

import asyncio
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import openai
import psycopg
import pytest

from shieldes.projections.shared_commands import AddProvider, SetPricing
from shieldes.usage.admission import NUSD
from tests import pg
from tests.cluster import nemesis_check as check
from tests.cluster.harness import UPSTREAM_KEY_ENV, Cluster, NodeProc, get_json
from tests.cluster.nemesis import (
    ADMIN_TOKEN,
    COMPLETION_TOKENS,
    MODEL,
    PRICE_IN,
    PRICE_OUT,
    GossipRelay,
    Links,
    RelayLoop,
    cost_nusd,
    logged_usage,
    read_node,
    stop_nodes_and_relays,
    tag_of,
    wait_for,
)
from tests.cluster.nemesis_check import Fault, KeySpec, NodeReadout, Served
from tests.fake_upstream import FakeUpstream, count_words

pytestmark = pytest.mark.cluster

RPM = 30
BUDGET_USD = 0.20
NODE_TIMEOUT = 1.5  # the harness's SHIELDES_NODE_TIMEOUT
QUEUED_RATE, QUEUED_BUDGET = 12, 3  # requests sent to c while it is cut off


@dataclass
class Sent:
    key: str
    node: str
    sent_at: float
    status: int = -1
    answered_at: float | None = None


@dataclass
class Run:
    """The clients' side: every request sent, by tag (its message says `nemesis <tag>`)."""

    secrets: dict[str, str]
    nodes: dict[str, NodeProc]
    sent: dict[str, Sent] = field(default_factory=dict)
    _n: int = 0
    _clients: dict[tuple[str, str], openai.AsyncOpenAI] = field(default_factory=dict)

    async def one(self, key: str, node: str) -> int:
        client = self._clients.get((key, node))
        if client is None:
            client = self._clients[(key, node)] = openai.AsyncOpenAI(
                base_url=self.nodes[node].base + "/v1", api_key=self.secrets[key], max_retries=0, timeout=30)
        self._n += 1
        tag = f"{key}.{node}.{self._n}"
        sent = self.sent[tag] = Sent(key, node, time.time())
        try:
            await client.chat.completions.create(model=MODEL, max_tokens=COMPLETION_TOKENS,
                                                 messages=[{"role": "user", "content": f"nemesis {tag}"}])
            sent.status, sent.answered_at = 200, time.time()
        except openai.APIStatusError as exc:
            sent.status = exc.status_code
        except (openai.APIConnectionError, openai.APITimeoutError):
            sent.status = 0
        return sent.status

    async def until_refused(self, nodes: tuple[str, ...], *, quiet: float, not_before: float,
                            timeout: float) -> None:
        """Both keys, one request at a time per node and key, until every one of them has been refused
        for `quiet` seconds (and not before `not_before`, a monotonic time)."""
        deadline = time.monotonic() + timeout
        last_ok = {(k, n): time.monotonic() for k in self.secrets for n in nodes}

        async def worker(key: str, node: str) -> None:
            while True:
                now = time.monotonic()
                if now > deadline:
                    return
                if now >= not_before and all(now - t >= quiet for t in last_ok.values()):
                    return
                if await self.one(key, node) == 200:
                    last_ok[(key, node)] = time.monotonic()
                await asyncio.sleep(0.05)

        await asyncio.gather(*(worker(k, n) for k, n in last_ok))

    async def close(self) -> None:
        for c in self._clients.values():
            await c.close()


def node_cluster_alive(node: NodeProc) -> int:
    return int(((get_json(node.base + "/ready")[1] or {}).get("cluster") or {}).get("alive") or 0)


async def settled(cluster: Cluster, url: str) -> list[NodeReadout]:
    """No request in flight: every node flushed, at the log head, holding no reservation."""

    def head() -> int:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT max(position) FROM events").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def read() -> list[NodeReadout] | None:
        target = head()
        outs = [read_node(n) for n in cluster.nodes]
        ready = [o for o in outs if o is not None]
        if len(ready) < len(outs) or any(o.position < target for o in ready) or target != head():
            return None
        if any(o.reserved_nusd or o.peers_reserved_nusd for o in ready):
            return None
        return ready

    result: list[NodeReadout] = await wait_for(read, 30, "every node flushed, caught up and idle")
    return result


async def scenario(server_url: str, tmp: Path, fault: str) -> None:
    url = await asyncio.to_thread(pg.fresh_database, server_url)
    upstream = await FakeUpstream(completion_tokens=COMPLETION_TOKENS, models=(MODEL,)).start()
    cluster = Cluster(url, tmp, env_overrides={"SHIELDES_ADMIN_TOKEN": ADMIN_TOKEN})
    links = Links()
    relay_loop = RelayLoop()
    relays: list[GossipRelay] = []
    run: Run | None = None
    try:
        # each node's gossip goes through a relay that can drop it (tests/cluster/nemesis.py)
        for i, node_id in enumerate(("a", "b", "c")):
            node = cluster.add_node(node_id)
            host = f"127.0.0.{21 + i}"
            cluster.node_env[node_id] = {"SHIELDES_ADVERTISE_HOST": host}
            relay = GossipRelay(node_id, f"{host}:{node.gossip_port}", f"127.0.0.1:{node.gossip_port}", links)
            await relay_loop.run(relay.start())
            relays.append(relay)
        secrets = await asyncio.to_thread(setup, cluster, upstream.url)
        for node in cluster.nodes:
            cluster.start(node)
        for node in cluster.nodes:
            await asyncio.to_thread(cluster.wait_ready, node, 60)
        await wait_for(lambda: all(node_cluster_alive(n) == 3 for n in cluster.nodes), 30, "3 nodes gossiping")
        a, b, c = cluster.nodes
        assert c.proc is not None
        run = Run(secrets, {n.node_id: n for n in cluster.nodes})
        # the run takes about 20 s: keep most of it inside one minute (the check slides anyway)
        left = 60 - time.time() % 60
        if left < 25:
            await asyncio.sleep(left + 0.1)
        # the budget into its last quarter (where it is split), from a and b
        spent = 0
        while spent < 0.8 * BUDGET_USD * NUSD:
            for n in ("a", "b"):
                assert await run.one("budget", n) == 200
            spent = sum(cost_nusd(count_words(r.body["messages"]), COMPLETION_TOKENS)
                        for r in upstream.requests_to("/v1/chat/completions")
                        if tag_of(r.body["messages"]).startswith("budget."))
        # c claims a share of each limit and uses one unit of it
        assert await run.one("rate", "c") == 200
        assert await run.one("budget", "c") == 200

        started = time.time()
        if fault == "pause":
            c.proc.send_signal(signal.SIGSTOP)
        else:
            for peer in ("a", "b"):
                links.blocked[frozenset((peer, "c"))] = "blackhole"
            # pushes the relays forwarded before the cut have ended: what c hears now is nothing
            await wait_for(lambda: links.dropped >= 8, 10, "gossip to and from c dropped")
        queued = [asyncio.create_task(run.one("rate", "c")) for _ in range(QUEUED_RATE)]
        queued += [asyncio.create_task(run.one("budget", "c")) for _ in range(QUEUED_BUDGET)]
        queued_rate = await asyncio.gather(*queued[:QUEUED_RATE]) if fault == "partition" else None
        # the others, past the moment they drop c from the split and forget its claims
        forget = time.monotonic() + 3 * NODE_TIMEOUT + 1.0
        await run.until_refused(("a", "b"), quiet=1.0, not_before=forget, timeout=20)
        if fault == "pause":
            assert node_cluster_alive(a) == 2 and node_cluster_alive(b) == 2  # c left the split
            c.proc.send_signal(signal.SIGCONT)
        else:
            links.blocked.clear()
        ended = time.time()
        statuses_of_queue = await asyncio.gather(*queued)
        if queued_rate is None:
            queued_rate = statuses_of_queue[:QUEUED_RATE]
        await wait_for(lambda: all(node_cluster_alive(n) == 3 for n in cluster.nodes), 30, "3 nodes gossiping again")
        await run.until_refused(("a", "b", "c"), quiet=1.5, not_before=0.0, timeout=15)
        faults = [Fault(fault, ("c",), started, ended)]

        readouts = await settled(cluster, url)
        sent = dict(run.sent)
        served, biggest = [], 0
        for rec in upstream.requests_to("/v1/chat/completions"):
            s = sent[tag_of(rec.body["messages"])]
            served.append(Served(s.key, s.node, s.sent_at, rec.at, cost_nusd(count_words(rec.body["messages"]),
                                                                                 COMPLETION_TOKENS), s.answered_at))
            biggest = max(biggest, len(rec.raw))
        await asyncio.to_thread(cluster.stop_all)  # SIGTERM: the final flushes
        logged = await asyncio.to_thread(logged_usage, url)
    finally:
        if run is not None:
            await run.close()
        await stop_nodes_and_relays(cluster, relays, relay_loop)
        await upstream.stop()
        await asyncio.to_thread(pg.drop_database, server_url, url)

    # what admission held for one request: the body's bytes / 4 and max_tokens, at the prices
    estimate = cost_nusd(biggest // 4 + 1, COMPLETION_TOKENS)
    specs = [KeySpec("rate", rpm=RPM),
             KeySpec("budget", budget_nusd=round(BUDGET_USD * NUSD), estimate_nusd=estimate,
                     concurrency=QUEUED_BUDGET + 2)]  # c's queue, and a request at a time on a and b
    slack = check.budget_slack(round(BUDGET_USD * NUSD), 3, 1, estimate, QUEUED_BUDGET + 2)
    assert queued_rate is not None
    statuses = {s.status for s in sent.values()}
    assert statuses <= {200, 429}, statuses
    mine = {k: [s for s in served if s.key == k] for k in ("rate", "budget")}
    during = [s for s in mine["rate"] if s.node != "c" and started < s.sent_at < ended]
    after = [s for s in mine["rate"] if s.node == "c" and s.sent_at > started]
    print(f"{fault}: rate admitted {len(mine['rate'])} (a and b while c was cut off: {len(during)}, c's "
          f"queued and later: {len(after)}), sliding minute at most {check.rate_figures(served, specs[0])[0]},"
          f" bound {check.rate_bound(RPM, 3, 1)}; budget spent ${sum(s.cost_nusd for s in mine['budget']) / NUSD:.4f}"
          f" of ${BUDGET_USD}, bound +${slack / NUSD:.4f}; c admitted {queued_rate.count(200)} of its queue")
    assert during, "a and b admitted nothing while c was cut off"
    # c cannot finish a round while cut off (nor before it hears its peers again once resumed): of the
    # requests queued at it, it admits at most its unused claim, one share: ceil(L / N) at most (a round
    # may have ended just before the cut, the acknowledgements of its last claim already under way)
    assert 0 < queued_rate.count(200) <= math.ceil(RPM / 3), queued_rate
    violations = []
    for spec in specs:
        violations += check.check_rate(served, spec, 3, faults, gossip_window=0.1)
        violations += check.check_budget(served, spec, 3, faults, {})
    violations += check.check_usage(served, logged, ["rate", "budget"], faults, {})
    violations += check.check_reservations(readouts)
    violations += check.check_convergence(readouts, logged)
    assert not violations, "\n".join(violations)
    # accounted once, exactly: what the clients got is what the upstream served and the log holds
    for key in ("rate", "budget"):
        answered = sum(1 for s in sent.values() if s.key == key and s.status == 200)
        assert answered == len(mine[key]) == logged[key].requests, (key, answered, len(mine[key]), logged[key])


def setup(cluster: Cluster, upstream_url: str) -> dict[str, str]:
    cluster.admin(AddProvider("openai", "openai", upstream_url, f"env:{UPSTREAM_KEY_ENV}", (MODEL,)),
                  SetPricing(MODEL, PRICE_IN, PRICE_OUT))
    rate, _ = cluster.create_key("rate", rpm=RPM)
    budget, _ = cluster.create_key("budget", budget_usd=BUDGET_USD)
    return {"rate": rate, "budget": budget}


@pytest.mark.parametrize("fault", ["pause", "partition"])
def test_a_node_paused_or_cut_off_adds_at_most_its_share(fault: str, pg_server: str,
                                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    asyncio.run(scenario(pg_server, tmp_path_factory.mktemp("churn-bounds"), fault))
