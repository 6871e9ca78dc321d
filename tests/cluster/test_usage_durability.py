"""Usage stays exact while nodes lapse and die, with real node processes: a node paused past the
node timeout while the leader compacts reloads instead of counting rollups twice, usage a
SIGKILLed node had gossiped but not flushed is appended by the leader on its behalf, and so is
usage it served while Postgres was cut (gossip does not need the database)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from shieldes.projections.shared_commands import AddProvider
from tests import pg
from tests.cluster.harness import ROOT, SECRET, UPSTREAM_KEY_ENV, Cluster, NodeProc, get_json, until
from tests.cluster.pg_proxy import ProxyThread
from tests.cluster.test_churn import HEARTBEAT_INTERVAL, NODE_TIMEOUT, SLACK, chat

pytestmark = pytest.mark.cluster
ADMIN = "usage-durability-admin-token"
COMPACT_INTERVAL = 0.3  # the leader compacts everything it can this often (the `duo` fixture)
COMPACTED_WITHIN = 10.0  # seconds for a compaction to follow a flush: many rounds of COMPACT_INTERVAL
# a silent boot is over after 3 node timeouts; the leader appends its orphan at its next tick
TAKEOVER_BOUND = 3 * NODE_TIMEOUT + HEARTBEAT_INTERVAL


def _start_leader_a_then_b(c: Cluster) -> None:
    """The upstream, then node a until it leads, then b, until both gossip."""
    c.start_upstream()
    c.admin(AddProvider("openai", "openai", c.upstream_url, f"env:{UPSTREAM_KEY_ENV}", ("gpt-4o-mini",)))
    a = c.add_node("a")
    c.start(a)
    c.wait_ready(a)
    until(lambda: (get_json(a.base + "/ready")[1] or {}).get("cluster", {}).get("leader"), 15, "a leads")
    c.start(c.add_node("b"))
    for node in c.nodes:
        c.wait_ready(node)
    until(lambda: all((get_json(n.base + "/ready")[1] or {}).get("cluster", {}).get("alive") == 2
                      for n in c.nodes), 15, "2 nodes gossiping")


@pytest.fixture
def duo(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Nodes a (the leader, compacting everything it can every 0.3 s) and b."""
    url = pg.fresh_database(pg_server)
    c = Cluster(url, tmp_path_factory.mktemp("durability"), env_overrides={
        "SHIELDES_ADMIN_TOKEN": ADMIN, "SHIELDES_COMPACT_INTERVAL": str(COMPACT_INTERVAL),
        "SHIELDES_COMPACT_RETAIN_SECONDS": "0",
    })
    try:
        _start_leader_a_then_b(c)
        yield c
    finally:
        for node in c.nodes:  # a stopped node must be running again to stop
            if node.proc is not None and node.proc.poll() is None:
                node.proc.send_signal(signal.SIGCONT)
        c.stop_all()
        pg.drop_database(pg_server, url)


def sql(c: Cluster, query: str, *args: Any) -> Any:
    with psycopg.connect(c.database_url) as conn:
        row = conn.execute(query, args).fetchone()
    return row[0] if row else None


def logged_requests(c: Cluster, key_name: str) -> int:
    """Requests of a key as the log holds them (raw flushes and rollups alike)."""
    return int(sql(c, "SELECT coalesce(sum(requests), 0) FROM usage_daily WHERE key_name = %s", key_name))


def node_requests(node: NodeProc, key_name: str) -> int | None:
    """Requests of a key as the node's own state counts them (durable totals + its unflushed usage)."""
    req = urllib.request.Request(node.base + "/admin/v1/usage/live", headers={"Authorization": f"Bearer {ADMIN}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        rows = json.loads(resp.read())["data"]
    return next((int(r["requests"]) for r in rows if r["key"] == key_name), None)


def position(node: NodeProc) -> int:
    return int((get_json(node.base + "/ready")[1] or {}).get("position", 0))


def test_a_node_paused_past_compaction_reloads_instead_of_counting_twice(duo: Cluster) -> None:
    a, b = duo.nodes
    key, at = duo.create_key("lapse")
    duo.wait_position(at)
    first_hour = int(time.time() // 3600)  # (the UTC hour the usage below is recorded in, at the earliest)
    for node in (a, b, a, b):
        assert chat(node.base, key, "gpt-4o-mini", 5) == 200
    until(lambda: logged_requests(duo, "lapse") == 4, 10, "the first 4 requests in the log")
    duo.wait_position(int(sql(duo, "SELECT position FROM log_head")))
    paused_at = position(b)
    assert b.proc is not None
    b.proc.send_signal(signal.SIGSTOP)  # b's heartbeat lapses; it no longer holds compaction back
    until(lambda: sql(duo, "SELECT heartbeat_at < now() - interval '1.5 s' FROM cluster_nodes WHERE node_id = 'b'"),
          10, "b's heartbeat lapsed")
    for n in range(5, 8):  # three more flushes by a: its flushes from before the pause are no longer its newest
        assert chat(a.base, key, "gpt-4o-mini", 5) == 200
        until(lambda n=n: logged_requests(duo, "lapse") == n, 10, f"request {n} in the log")  # type: ignore[misc]
    # The leader compacted past b's position: it stored its horizon there before folding, and folded
    # the usage b had applied (a's flushes from before the pause: no longer a's newest, so not kept
    # as its watermark). A compaction runs every COMPACT_INTERVAL once a's heartbeat (every 0.2 s)
    # reports its position past its newest flush: rounds of well under a second, bounded with room
    # for a loaded machine.
    until(lambda: sql(duo, "SELECT horizon FROM log_head") > paused_at and sql(
        duo, "SELECT count(*) FROM events WHERE type = 'usage.recorded' AND stream = 'usage:a' AND position <= %s",
        paused_at) == 0, COMPACTED_WITHIN, "the horizon above b's position and a's usage from before the pause folded")
    if int(time.time() // 3600) == first_hour:
        # all of it in one UTC hour: rollups of one hour merge, so a rollup above b's position holds
        # usage b had applied, which b would count twice if it read on (across an hour's turn the
        # sets stay apart and none does: what b would read is then only new to it)
        until(lambda: sql(duo, "SELECT count(*) FROM events WHERE type = 'usage.rolled_up' AND position > %s "
                               "AND (data->>'first_position')::bigint <= %s", paused_at, paused_at) > 0,
              COMPACTED_WITHIN, "a rollup above b's position holding usage b had applied")
    b.proc.send_signal(signal.SIGCONT)
    head = int(sql(duo, "SELECT position FROM log_head"))
    until(lambda: position(b) >= head, 15, "b caught up")
    assert logged_requests(duo, "lapse") == 7
    # b counts each request once: it reloaded (snapshot + tail) instead of adding the rollups
    until(lambda: node_requests(b, "lapse") == 7, 10, "b's count equal to the log's")
    assert node_requests(a, "lapse") == 7
    assert "reloading the state" in b.log.read_text()


def start_node(c: Cluster, node: NodeProc, **env: str) -> None:
    with node.log.open("ab") as out:
        node.proc = subprocess.Popen([sys.executable, "-m", "shieldes", "serve"], cwd=ROOT,
                                     env=c.env(node) | env, stdout=out, stderr=subprocess.STDOUT)


def gossip_received(node: NodeProc) -> float:
    with urllib.request.urlopen(node.base + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    line = next(x for x in text.splitlines() if x.startswith('shieldes_gossip_messages_total{direction="received"}'))
    return float(line.split()[-1])


def heard_after_settling(a: NodeProc) -> None:
    """a accepted two more messages of its only peer: one sent after the requests settled."""
    seen = gossip_received(a)
    until(lambda: gossip_received(a) >= seen + 2, 10, "a heard b after the requests")


def test_usage_a_killed_node_had_gossiped_is_appended_by_the_leader(duo: Cluster) -> None:
    a, b = duo.nodes
    key, at = duo.create_key("takeover")
    duo.wait_position(at)
    # b flushes only every 60 s: what it serves stays unflushed, known to a through gossip only
    duo.kill(b, signal.SIGTERM)
    start_node(duo, b, SHIELDES_FLUSH_INTERVAL="60")
    duo.wait_ready(b)
    until(lambda: (get_json(a.base + "/ready")[1] or {}).get("cluster", {}).get("alive") == 2, 15, "b back")
    for _ in range(5):
        assert chat(b.base, key, "gpt-4o-mini", 5) == 200
    heard_after_settling(a)
    assert logged_requests(duo, "takeover") == 0
    killed = time.monotonic()
    duo.kill(b)  # SIGKILL: b never flushes them
    # a stops hearing b (3 node timeouts) and, as leader, appends b's gossiped flush on its behalf
    # at its next maintenance tick (one heartbeat): docs/cluster.md, a dead node's usage
    until(lambda: logged_requests(duo, "takeover") == 5, TAKEOVER_BOUND + SLACK, "b's 5 requests in the log")
    took = time.monotonic() - killed
    assert took < TAKEOVER_BOUND + SLACK, f"appended {took:.2f}s after the kill, bound {TAKEOVER_BOUND}s"
    by = sql(duo, "SELECT metadata->>'appended_by' FROM events WHERE type = 'usage.recorded' AND stream = 'usage:b'")
    assert by == "a"
    until(lambda: node_requests(a, "takeover") == 5, 10, "a counts them once")

    # b restarted with the same id, then paused past the node timeout: a takes its gossiped usage
    # over, b resumes and flushes that same seq (and one more request): each counts once
    start_node(duo, b, SHIELDES_FLUSH_INTERVAL="60")
    duo.wait_ready(b)
    until(lambda: (get_json(a.base + "/ready")[1] or {}).get("cluster", {}).get("alive") == 2, 15, "b back")
    for _ in range(3):
        assert chat(b.base, key, "gpt-4o-mini", 5) == 200
    heard_after_settling(a)
    assert b.proc is not None
    paused = time.monotonic()
    b.proc.send_signal(signal.SIGSTOP)
    until(lambda: logged_requests(duo, "takeover") == 8, TAKEOVER_BOUND + SLACK, "b's 3 requests appended by a")
    took = time.monotonic() - paused
    assert took < TAKEOVER_BOUND + SLACK, f"appended {took:.2f}s after the pause, bound {TAKEOVER_BOUND}s"
    b.proc.send_signal(signal.SIGCONT)
    # settled while b may not yet know a appended its seq: the rest goes out under b's next seq
    assert chat(b.base, key, "gpt-4o-mini", 5) == 200
    duo.kill(b, signal.SIGTERM)  # b's final flush: the seq a took is a duplicate, the rest is new
    assert logged_requests(duo, "takeover") == 9
    assert chat(a.base, key, "gpt-4o-mini", 5) == 200  # a's own flush makes it catch up (usage does not NOTIFY)
    until(lambda: node_requests(a, "takeover") == 10 == logged_requests(duo, "takeover"), 10, "a counts each once")


# --- Postgres cut ----------------------------------------------------------------------------------


@pytest.fixture
def cut_duo(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, ProxyThread]]:
    """Nodes a (the leader) and b (flushing only every 60 s: what it serves is known to a through gossip
    only), both reaching Postgres through a proxy the test can cut."""
    url = pg.fresh_database(pg_server)
    proxy = ProxyThread(url)
    c = Cluster(proxy.url_for(url), tmp_path_factory.mktemp("cut"), env_overrides={"SHIELDES_ADMIN_TOKEN": ADMIN},
                node_env={"b": {"SHIELDES_FLUSH_INTERVAL": "60"}})
    try:
        _start_leader_a_then_b(c)
        yield c, proxy
    finally:
        proxy.restore()  # the final flushes and deregistrations reach Postgres
        c.stop_all()
        proxy.stop()
        pg.drop_database(pg_server, url)


def metric(node: NodeProc, pattern: str) -> float:
    req = urllib.request.Request(node.base + "/metrics", headers={"Authorization": f"Bearer {ADMIN}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        text = resp.read().decode()
    found = re.search("^" + re.escape(pattern) + r" ([0-9.e+-]+)$", text, re.MULTILINE)
    assert found is not None, pattern
    return float(found.group(1))


def test_usage_a_node_served_while_postgres_was_cut_is_appended_by_the_leader_after_its_kill(
        cut_duo: tuple[Cluster, ProxyThread]) -> None:
    """Gossip is node to node: while Postgres is cut, b's pushes are still taken by a (a checks
    their boot epochs against what it already knows, not against the database), so usage b served
    in the cut survives b's SIGKILL in it: a, leader again once Postgres is back, appends it."""
    c, proxy = cut_duo
    a, b = c.nodes
    key, at = c.create_key("cut")
    c.wait_position(at)
    refused = 'shieldes_gossip_rejected_total{reason="stale"}'
    refused_before = metric(a, refused)
    proxy.cut()
    until(lambda: all(metric(n, "shieldes_cluster_listener_connected") == 0 for n in c.nodes), 15,
          "both nodes lost Postgres")
    answered = metric(b, 'shieldes_gossip_messages_total{direction="sent"}')
    for _ in range(5):
        assert chat(b.base, key, "gpt-4o-mini", 5) == 200
    heard_after_settling(a)  # b's pushes are taken in the cut: a holds the 5 requests
    until(lambda: metric(b, 'shieldes_gossip_messages_total{direction="sent"}') >= answered + 2, 10,
          "b's pushes answered in the cut")
    assert metric(a, refused) == refused_before
    c.kill(b)  # SIGKILL in the cut: b never flushes them
    proxy.restore()
    until(lambda: logged_requests(c, "cut") == 5, 30, "b's 5 requests in the log")
    by = sql(c, "SELECT metadata->>'appended_by' FROM events WHERE type = 'usage.recorded' AND stream = 'usage:b'")
    assert by == "a"


@pytest.fixture
def busy_cut_duo(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, ProxyThread]]:
    """Nodes a (the leader: a snapshot every 0.5 s, compacting everything it can every 0.3 s) and b, both
    reaching Postgres through a proxy the test can cut."""
    url = pg.fresh_database(pg_server)
    proxy = ProxyThread(url)
    c = Cluster(proxy.url_for(url), tmp_path_factory.mktemp("cutmaint"), env_overrides={
        "SHIELDES_ADMIN_TOKEN": ADMIN, "SHIELDES_COMPACT_INTERVAL": str(COMPACT_INTERVAL),
        "SHIELDES_COMPACT_RETAIN_SECONDS": "0", "SHIELDES_SNAPSHOT_EVERY_SECONDS": "0.5",
        "SHIELDES_SNAPSHOT_EVERY_EVENTS": "2", "SHIELDES_POLL_INTERVAL": "0.5",
    })
    try:
        _start_leader_a_then_b(c)
        yield c, proxy
    finally:
        proxy.restore()
        c.stop_all()
        proxy.stop()
        pg.drop_database(pg_server, url)


def test_postgres_cut_during_snapshots_and_compaction_loses_nothing_and_counts_nothing_twice(
        busy_cut_duo: tuple[Cluster, ProxyThread]) -> None:
    """Postgres cut again and again while the leader snapshots and compacts under load: a cut that
    lands in a snapshot or a compaction leaves the log whole (each of their writes is one transaction,
    retried at the next tick). Afterwards the log holds every request served once, every stored
    snapshot verifies against the log, and both nodes, b restarted from the newest snapshot, count
    exactly the log's usage."""
    c, proxy = busy_cut_duo
    a, b = c.nodes
    key, at = c.create_key("maint")
    c.wait_position(at)
    served = [0]
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            for node in (a, b):
                served[0] += chat(node.base, key, "gpt-4o-mini", 5, timeout=5) == 200

    def interrupted() -> int:  # (in the leader's log: either node may have won the election)
        text = a.log.read_text(errors="replace") + b.log.read_text(errors="replace")
        return sum(text.count(m) for m in ("snapshot failed", "compaction failed", "preparing partitions failed"))

    def maintained() -> bool:  # a snapshot and a compaction since the last restore
        return bool(sql(c, "SELECT count(*) FROM snapshots")) and bool(
            sql(c, "SELECT count(*) FROM events WHERE type = 'usage.rolled_up'"))

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    try:
        until(maintained, 30, "the leader snapshots and compacts")
        deadline = time.monotonic() + 45
        cuts = 0
        # cuts of 0.2-0.8 s until the leader's maintenance failed at least 3 times (at least 8 cuts). Where
        # a cut lands is timing: in five runs of seven here they landed in a snapshot's or a compaction's
        # write 3 times within the 45 s, in the other two never; such a run goes on to the same checks.
        while (cuts < 8 or interrupted() < 3) and time.monotonic() < deadline:
            time.sleep(0.3 + (cuts % 4) * 0.15)
            proxy.cut()
            time.sleep(0.2 + (cuts % 3) * 0.3)
            proxy.restore()
            cuts += 1
    finally:
        proxy.restore()
        stop.set()
        thread.join(timeout=30)
    assert served[0] > 0
    # everything flushed (a flush waits out the cut), then the maintenance runs on a whole log again
    until(lambda: logged_requests(c, "maint") == served[0], 30, "every request served in the log")
    # a snapshot taken after the cuts is one at a higher position (a snapshot needs the position to have
    # moved); the count of kept snapshots does not tell, once it is at SHIELDES_SNAPSHOTS_KEPT
    newest = sql(c, "SELECT coalesce(max(position), 0) FROM snapshots")
    until(lambda: sql(c, "SELECT coalesce(max(position), 0) FROM snapshots") > newest or
          sql(c, "SELECT coalesce(max(position), 0) FROM snapshots") >= sql(c, "SELECT position FROM log_head"), 30,
          "a snapshot after the cuts")
    env = {**os.environ, "SHIELDES_DATABASE_URL": c.database_url, "PYTHONPATH": str(ROOT),
           "SHIELDES_CLUSTER_SECRET": SECRET}
    verify = subprocess.run([sys.executable, "-m", "shieldes", "audit", "verify"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    for node in (a, b):
        until(lambda n=node: node_requests(n, "maint") == served[0], 20, f"{node.node_id} counts the log's usage")
    c.kill(b, signal.SIGTERM)
    b.log.write_text("")
    c.start(b)
    c.wait_ready(b)
    assert re.search(r"projection loaded at position \d+ from snapshot \d+", b.log.read_text()), b.log.read_text()
    until(lambda: node_requests(b, "maint") == served[0], 20, "b restarted counts the log's usage")
