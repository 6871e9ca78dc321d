"""Cuts that leave a node running, with real node processes (docs/cluster.md's bounds, asserted at
the bound + SLACK): node c's gossip cut one way (its pushes vanish, its peers' pushes still reach it)
keeps a cluster-wide rpm limit within L + N and the views converge once it ends; Postgres cut under
every node keeps it within L + N (gossip needs no database); and with no notification delivered to
c's LISTEN connection and no gossip reaching it, a key revoked through another node is refused on c
within the poll interval (c polls every second, its peers every 30 s).

Each node's gossip goes through a relay that can drop it (tests/cluster/nemesis.py); a and b reach
Postgres through one proxy, c through its own (tests/cluster/pg_proxy.py)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import psycopg
import pytest

from shieldes.projections.shared_commands import AddProvider
from tests import pg
from tests.cluster.harness import MESSAGES, UPSTREAM_KEY_ENV, Cluster, NodeProc, burst, get_json, until
from tests.cluster.nemesis import GossipRelay, Links, RelayLoop
from tests.cluster.pg_proxy import ProxyThread
from tests.cluster.test_churn import HEARTBEAT_INTERVAL, NODE_TIMEOUT, SLACK

pytestmark = pytest.mark.cluster

ADMIN = "cut-bounds-admin-token"
RPM = 30
N = 3
POLL_INTERVAL = 1.0  # c's SHIELDES_POLL_INTERVAL (docs/cluster.md: updates within it without LISTEN)
GOSSIP_INTERVAL = 0.05  # the harness's
WIDE = 1000  # the rpm of a key kept far from its limit, whose count each node's 200 tells


@dataclass
class Trio:
    cluster: Cluster
    links: Links
    ab_db: ProxyThread  # a's and b's way to Postgres
    c_db: ProxyThread  # c's

    @property
    def proxies(self) -> tuple[ProxyThread, ProxyThread]:
        return self.ab_db, self.c_db


@pytest.fixture(scope="module")
def trio(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trio]:
    url = pg.fresh_database(pg_server)
    ab_db, c_db = ProxyThread(url), ProxyThread(url)
    cluster = Cluster(url, tmp_path_factory.mktemp("cut-bounds"), env_overrides={"SHIELDES_ADMIN_TOKEN": ADMIN})
    links, relay_loop, relays = Links(), RelayLoop(), []
    try:
        cluster.start_upstream()
        cluster.admin(AddProvider("openai", "openai", cluster.upstream_url, f"env:{UPSTREAM_KEY_ENV}",
                                  ("gpt-4o-mini",)))
        for i, node_id in enumerate(("a", "b", "c")):
            node = cluster.add_node(node_id)
            host = f"127.0.0.{31 + i}"
            db = c_db if node_id == "c" else ab_db
            cluster.node_env[node_id] = {"SHIELDES_ADVERTISE_HOST": host, "SHIELDES_DATABASE_URL": db.url_for(url)}
            relay = GossipRelay(node_id, f"{host}:{node.gossip_port}", f"127.0.0.1:{node.gossip_port}", links)
            relay_loop.call(relay.start())
            relays.append(relay)
        cluster.node_env["c"]["SHIELDES_POLL_INTERVAL"] = str(POLL_INTERVAL)
        for node in cluster.nodes:
            cluster.start(node)
        for node in cluster.nodes:
            cluster.wait_ready(node, 60)
        until(lambda: all(alive(n) == N for n in cluster.nodes), 30, "3 nodes gossiping")
        yield Trio(cluster, links, ab_db, c_db)
    finally:
        links.one_way.clear()
        links.blocked.clear()
        for proxy in (ab_db, c_db):
            proxy.restore()  # the final flushes and deregistrations reach Postgres
        cluster.stop_all()
        for relay in relays:
            relay_loop.call(relay.stop())
        relay_loop.close()
        for proxy in (ab_db, c_db):
            proxy.stop()
        pg.drop_database(pg_server, url)


def ready(node: NodeProc) -> dict[str, Any]:
    return get_json(node.base + "/ready")[1] or {}


def alive(node: NodeProc) -> int:
    return int((ready(node).get("cluster") or {}).get("alive") or 0)


def listener(node: NodeProc) -> str:
    return str((ready(node).get("cluster") or {}).get("listener"))


def one_minute_ahead(need: float = 15.0) -> None:
    """Limits count a sliding minute: keep a test's requests inside one fixed window, so that what
    a node says is left is exactly the limit less what the cluster admitted."""
    left = 60 - time.time() % 60
    if left < need:
        until(lambda: 60 - time.time() % 60 >= need, left + 1, "the next minute")


def left_after(node: NodeProc, key: str) -> int:
    """One request of `key` on `node`, admitted: `x-ratelimit-remaining-requests` (the limit less
    what this node counts in the window cluster-wide, this request included)."""
    client = openai.OpenAI(base_url=node.base + "/v1", api_key=key, max_retries=0, timeout=10)
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    return int(raw.headers["x-ratelimit-remaining-requests"])


def chat(node: NodeProc, key: str) -> int:
    client = openai.OpenAI(base_url=node.base + "/v1", api_key=key, max_retries=0, timeout=10)
    try:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    except openai.APIStatusError as exc:
        return exc.status_code
    return 200


def admin_post(node: NodeProc, path: str) -> int:
    req = urllib.request.Request(node.base + "/admin/v1" + path, method="POST", data=b"{}",
                                 headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def node_status(node: NodeProc) -> dict[str, Any]:
    req = urllib.request.Request(node.base + "/admin/v1/node", headers={"Authorization": f"Bearer {ADMIN}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        out: dict[str, Any] = json.loads(resp.read())
    return out


def log_head(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT config_position FROM log_head").fetchone()
    assert row is not None
    return int(row[0])


def test_a_node_whose_gossip_is_cut_one_way_stays_within_the_bound_and_converges_after(trio: Trio) -> None:
    cluster, links = trio.cluster, trio.links
    a, b, c = cluster.nodes
    one_minute_ahead()
    limited, _ = cluster.create_key("one-way", rpm=RPM)
    wide, at = cluster.create_key("one-way-wide", rpm=WIDE)
    cluster.wait_position(at)
    dropped = links.dropped
    links.one_way.update({("c", "a"): "blackhole", ("c", "b"): "blackhole"})
    try:
        until(lambda: links.dropped >= dropped + 4, 10, "c's pushes dropped")
        statuses = asyncio.run(burst([n.base for n in (a, b, c)] * RPM, limited))
        admitted = statuses.count(200)
        assert set(statuses) <= {200, 429}, statuses
        assert 0 < admitted <= RPM + N, statuses
        # c stays a participant of the split: its peers still hear it (it takes their pushes)
        assert alive(a) == alive(b) == alive(c) == N
        # what c admits now stays unknown to a and b while the cut lasts
        on_c = WIDE - left_after(c, wide)
        assert on_c == 1
        assert left_after(a, wide) == WIDE - 1
    finally:
        links.one_way.clear()
    # gossip restored: a and b count c's request within a push's deadline (at most half the node
    # timeout: the last push cut off may still be waiting for it) and a gossip interval
    started, total = time.monotonic(), 2

    def counted_on(node: NodeProc) -> bool:
        nonlocal total
        total += 1
        return left_after(node, wide) == WIDE - total

    bound = NODE_TIMEOUT / 2 + GOSSIP_INTERVAL + SLACK
    until(lambda: counted_on(a), bound, "a counts c's request")
    until(lambda: counted_on(b), bound, "b counts c's request")
    until(lambda: counted_on(c), bound, "c counts a's and b's")
    assert time.monotonic() - started < bound


def test_the_cluster_wide_limit_holds_while_postgres_is_cut(trio: Trio) -> None:
    cluster = trio.cluster
    a, b, c = cluster.nodes
    one_minute_ahead()
    limited, at = cluster.create_key("pg-cut", rpm=RPM)
    cluster.wait_position(at)
    for proxy in trio.proxies:
        proxy.cut()
    cut_at = time.monotonic()
    try:
        statuses = asyncio.run(burst([n.base for n in (a, b, c)] * RPM, limited))
        admitted = statuses.count(200)
        assert set(statuses) <= {200, 429}, statuses
        assert RPM // 2 <= admitted <= RPM + N, statuses
        # each node lost Postgres (its LISTEN connection is down and cannot come back) ...
        until(lambda: all(listener(n) != "listening" for n in cluster.nodes), 5, "every node sees Postgres gone")
        # ... and still counts its peers alive past the node timeout: membership from gossip alone
        until(lambda: time.monotonic() - cut_at > NODE_TIMEOUT + HEARTBEAT_INTERVAL, 10, "a node timeout in the cut")
        assert all(alive(n) == N for n in cluster.nodes)
        assert all(listener(n) != "listening" for n in cluster.nodes)
    finally:
        for proxy in trio.proxies:
            proxy.restore()
    until(lambda: all(listener(n) == "listening" for n in cluster.nodes), 30, "Postgres back on every node")


def test_a_key_revoked_elsewhere_is_refused_without_notify_or_gossip_within_the_poll_interval(trio: Trio) -> None:
    cluster, links = trio.cluster, trio.links
    a, _b, c = cluster.nodes
    key, at = cluster.create_key("poll-revoke")
    cluster.wait_position(at)
    assert chat(c, key) == 200
    until(lambda: listener(c) == "listening", 30, "c's LISTEN connected")
    # nothing tells c the log moved: no notification reaches it, and no gossip either way (a peer's
    # push and its answer to c's both carry the peer's log head)
    trio.c_db.drop_notifications(True)
    dropped = links.dropped
    links.blocked.update({frozenset(("a", "c")): "refuse", frozenset(("b", "c")): "refuse"})
    try:
        until(lambda: links.dropped >= dropped + 4, 10, "gossip to c dropped")
        until(lambda: node_status(c).get("unflushed_usage_deltas") == 0, 10, "c flushed (no flush wakes it later)")
        notified = trio.c_db.dropped
        started = time.monotonic()
        assert admin_post(a, "/keys/poll-revoke/revoke") == 200
        revoked = log_head(cluster.database_url)
        until(lambda: int(ready(c).get("position") or 0) >= revoked, POLL_INTERVAL + SLACK,
              "c applied the revocation")
        took = time.monotonic() - started
        assert chat(c, key) == 401
        assert chat(a, key) == 401
        # the revocation's notification did reach c's LISTEN connection, which stayed up, and was dropped
        assert trio.c_db.dropped > notified
        assert listener(c) == "listening"
        print(f"revoked on a, applied by c after {took:.2f}s (poll interval {POLL_INTERVAL}s)")
    finally:
        links.blocked.clear()
        trio.c_db.drop_notifications(False)
