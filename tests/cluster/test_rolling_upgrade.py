"""Rolling upgrades, old and new side by side: an old-release node, a new node and the new CLI.

The new CLI refuses a change the old node cannot read while it is alive (naming it) and accepts it
once it is gone; an old node that meets an unreadable event anyway keeps serving, keeps applying
the rest (a revocation after it) and says so in /ready and `cluster status`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from shieldes.events.catalog import CONFIG_STREAM
from shieldes.events.pg_store import PostgresEventStore, open_pool
from shieldes.events.store import AppendOptions, NewEvent
from shieldes.projections.shared_commands import AddProvider
from tests import pg
from tests.cluster.harness import ROOT, UPSTREAM_KEY_ENV, Cluster, get_json, until
from tests.cluster.test_three_nodes import chat

pytestmark = pytest.mark.cluster
NEW_TYPE = "rate_limit.set"  # the type the old release lacks in this test


def cli(c: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHIELDES_DATABASE_URL": c.database_url, "PYTHONPATH": str(ROOT),
           "SHIELDES_NODE_TIMEOUT": "1.5"}
    return subprocess.run([sys.executable, "-m", "shieldes", "--json", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def start_old(c: Cluster, node_id: str) -> None:
    node = c.add_node(node_id)
    env = c.env(node) | {"SHIELDES_TEST_OLD_RELEASE_LACKS": NEW_TYPE}
    with node.log.open("ab") as out:
        node.proc = subprocess.Popen([sys.executable, "-m", "tests.cluster.old_release", "serve"], cwd=ROOT,
                                     env=env, stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture()
def cluster(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    url = pg.fresh_database(pg_server)
    c = Cluster(url, tmp_path_factory.mktemp("upgrade"))
    try:
        c.start_upstream()
        c.admin(AddProvider("openai", "openai", c.upstream_url, f"env:{UPSTREAM_KEY_ENV}", ("gpt-4o-mini",)))
        start_old(c, "old1")
        c.start(c.add_node("new1"))
        for node in c.nodes:
            c.wait_ready(node)
        yield c
    finally:
        c.stop_all()
        pg.drop_database(pg_server, url)


def test_old_and_new_release_side_by_side(cluster: Cluster) -> None:
    # first: an old node that meets an event it cannot read skips it and keeps applying the rest
    old, new = cluster.nodes
    created = json.loads(cli(cluster, "key", "create", "--name", "app").stdout)

    async def write_unreadable() -> int:
        # a writer that does not check (a previous release's CLI): a negative node_timeout sees no live
        # node (0 would still see a heartbeat committed after this transaction began: now() is its start)
        pool = open_pool(cluster.database_url, size=1, name="t")
        await pool.open(wait=True)
        try:
            result = await PostgresEventStore(pool, node_timeout=-3600).append(
                CONFIG_STREAM, [NewEvent(NEW_TYPE, 1, {"key_id": created["id"], "rpm": 1000, "tpm": None})],
                AppendOptions(metadata={"actor": "old-cli"}))
            return result.last_position
        finally:
            await pool.close()

    position = asyncio.run(write_unreadable())
    cluster.wait_position(position)
    status, body = get_json(old.base + "/ready")
    assert status == 200 and body["unreadable_events"][0]["type"] == NEW_TYPE
    assert body["unreadable_events"][0]["position"] == position
    assert (get_json(new.base + "/ready")[1] or {})["unreadable_events"] == []
    assert "cannot apply event rate_limit.set" in old.log.read_text()

    # the revocation after it still reaches the old node
    assert chat(old.base, created["key"]) == 200
    revoked = cli(cluster, "key", "revoke", "app")
    assert revoked.returncode == 0, revoked.stderr
    until(lambda: chat(old.base, created["key"]) == 401, 20, "revocation applied on the old node")
    def unreadable_per_node() -> dict[str, int]:
        rows = json.loads(cli(cluster, "cluster", "status").stdout)["nodes"]
        return {n["node_id"]: n["unreadable_events"] for n in rows}

    until(lambda: unreadable_per_node() == {"old1": 1, "new1": 0}, 20, "cluster status names the old node")

    # then: the new CLI refuses what the live old node cannot read, and accepts it once it is gone
    assert cli(cluster, "key", "create", "--name", "plain").returncode == 0  # readable by both: accepted
    refused = cli(cluster, "key", "create", "--name", "limited", "--rpm", "5")
    assert refused.returncode != 0
    line = refused.stderr.strip()  # --json: the refusal is one JSON line
    assert "\n" not in line
    line = json.loads(line)["error"]["message"]
    assert line.startswith("node old1 is alive and reads rate_limit.set not at all")
    assert "upgrade node old1" in line
    assert "limited" not in {k["name"] for k in json.loads(cli(cluster, "key", "list").stdout)}

    cluster.kill(old, signal.SIGTERM)  # the old node leaves (graceful: deregisters)
    accepted = cli(cluster, "key", "create", "--name", "limited", "--rpm", "5")
    assert accepted.returncode == 0, accepted.stderr
    secret = json.loads(accepted.stdout)["key"]
    until(lambda: chat(new.base, secret) == 200, 20, "new node serves the new key")


ADMIN = "rolling-upgrade-admin-token"


def live_requests(base: str, key_name: str) -> int | None:
    """Requests of a key as the node counts them (its durable totals + its unflushed usage)."""
    status, body = get_json_auth(base + "/admin/v1/usage/live")
    assert status == 200, body
    return next((int(r["requests"]) for r in body["data"] if r["key"] == key_name), None)


def get_json_auth(url: str) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {ADMIN}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_an_old_node_restarted_after_the_upgraded_leader_snapshots_in_a_newer_format(
        pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A rolling upgrade: the upgraded node writes a snapshot in a layout the old release cannot read,
    then the old node restarts (same node id). It skips that snapshot (logged), loads from the log
    instead and counts every request the log holds: its totals equal the log's, nothing lost or twice."""
    url = pg.fresh_database(pg_server)
    c = Cluster(url, tmp_path_factory.mktemp("formats"), env_overrides={"SHIELDES_ADMIN_TOKEN": ADMIN})
    try:
        c.start_upstream()
        c.admin(AddProvider("openai", "openai", c.upstream_url, f"env:{UPSTREAM_KEY_ENV}", ("gpt-4o-mini",)))
        new = c.add_node("new1")
        c.start(new)
        c.wait_ready(new)
        old = c.add_node("old1")
        c.node_env["old1"] = {"SHIELDES_TEST_OLD_RELEASE_SNAPSHOT_FORMATS": "2,3"}

        def start_old() -> None:
            with old.log.open("ab") as out:
                old.proc = subprocess.Popen([sys.executable, "-m", "tests.cluster.old_release", "serve"], cwd=ROOT,
                                            env=c.env(old), stdout=out, stderr=subprocess.STDOUT)
            c.wait_ready(old)

        start_old()
        key, position = c.create_key("formats")
        c.wait_position(position)
        for node in (old, new, old, new, new):
            assert chat(node.base, key) == 200

        def logged() -> int:
            with psycopg.connect(url) as conn:
                row = conn.execute("SELECT coalesce(sum(requests), 0) FROM usage_daily WHERE key_name = 'formats'"
                                   ).fetchone()
            return int(row[0]) if row else 0

        until(lambda: logged() == 5, 20, "the usage flushed")
        made = cli(c, "snapshot", "create")  # the upgraded release's CLI: the newest layout
        assert made.returncode == 0, made.stderr
        with psycopg.connect(url) as conn:
            newest = conn.execute("SELECT format FROM snapshots ORDER BY position DESC LIMIT 1").fetchone()
        assert newest is not None and newest[0] not in (2, 3), newest
        assert chat(new.base, key) == 200  # and one more after the snapshot, in the tail
        until(lambda: logged() == 6, 20, "the usage flushed")

        c.kill(old, signal.SIGTERM)
        start_old()
        assert "skipping snapshot" in old.log.read_text()
        until(lambda: live_requests(old.base, "formats") == 6, 20, "the old node's totals equal the log's")
        assert live_requests(new.base, "formats") == 6
        assert chat(old.base, key) == 200
    finally:
        c.stop_all()
        pg.drop_database(pg_server, url)
