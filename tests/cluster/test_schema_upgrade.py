"""A rolling upgrade across a schema revision, with the real previous release (docs/deploy.md,
*Rolling upgrades: migrations first*).

Release R is this repository's tree just before its newest migration was added (taken from git
history with `git archive`, so its code, its migrations and its CLI are the previous release's);
R + 1 is this tree. The operator's steps, as the docs give them: R's `db upgrade` makes the
database; R's CLI adds a provider and keys; two nodes of R serve as a cluster under load. Then
R + 1's `db upgrade` runs while they serve (the new migration), a node of R + 1 joins, and each
node of R in turn is stopped (SIGTERM) and started again on R + 1 under its node id. What the docs
promise and this test checks: the nodes of R keep serving and counting after the migration (their
usage reaches the log), nodes of both releases agree on every key's usage (each node's live spend
equals the log's while they run side by side), and nothing is lost or counted twice: at the end the
log holds exactly what the upstream served and the clients got."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import psycopg
import pytest

from tests import pg
from tests.cluster.harness import ROOT, SECRET, NodeProc, free_port, get_json, until
from tests.resilience.threaded_upstream import threaded_upstream

pytestmark = pytest.mark.cluster

ADMIN_TOKEN = "schema-upgrade-admin"
UPSTREAM_KEY_ENV = "SHIELDES_SCHEMA_UPGRADE_UPSTREAM_KEY"
MODEL = "gpt-4o-mini"
KEYS = {"rated": ("--rpm", "6000"), "budgeted": ("--budget", "50")}


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()


def previous_release() -> tuple[str, str, str]:
    """(commit of release R, R's schema head, this tree's): the parent of the commit that added this
    tree's newest migration."""
    versions = sorted((ROOT / "alembic" / "versions").glob("[0-9]*.py"))
    newest = versions[-1]
    try:
        added = git("log", "--diff-filter=A", "--format=%H", "-1", "--", str(newest.relative_to(ROOT)))
        parent = git("rev-parse", f"{added}^")
    except (subprocess.CalledProcessError, FileNotFoundError, OSError):
        pytest.skip("needs this repository's git history (release R is built from it)")
    if not added:
        pytest.skip("the newest migration is not committed yet: no release before it in git history")
    return parent, versions[-2].name.split("_")[0], newest.name.split("_")[0]


def unpack(commit: str, into: Path) -> Path:
    """R's tree (its code and migrations), as `git archive` gives it."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "shieldes", "alembic", "alembic.ini"],
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


@dataclass
class Rollout:
    database_url: str
    tmp: Path
    upstream_url: str
    served: Any = None  # () -> the requests the upstream served (each message names its key)
    nodes: dict[str, NodeProc] = field(default_factory=dict)
    trees: dict[str, Path] = field(default_factory=dict)  # node id -> the tree its process runs
    got: Counter[str] = field(default_factory=Counter)  # key name -> 200s the clients got
    secrets: dict[str, str] = field(default_factory=dict)

    def env(self, tree: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHIELDES_")}
        return env | {"PYTHONPATH": str(tree), "SHIELDES_DATABASE_URL": self.database_url,
                      UPSTREAM_KEY_ENV: "sk-upstream", "SHIELDES_ACTOR": "operator"}

    def cli(self, tree: Path, *args: str) -> Any:
        done = subprocess.run([sys.executable, "-m", "shieldes", "--json", *args], cwd=tree, env=self.env(tree),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"shieldes {' '.join(args)} ({tree}): {done.stderr[-2000:]}"
        return json.loads(done.stdout) if done.stdout.strip() else None

    def start(self, node_id: str, tree: Path) -> NodeProc:
        old = self.nodes.get(node_id)
        node = NodeProc(node_id, free_port(), old.gossip_port if old else free_port(),
                        self.tmp / f"{node_id}-{tree.name}.log")
        env = self.env(tree) | {
            "SHIELDES_NODE_ID": node_id, "SHIELDES_HOST": "127.0.0.1", "SHIELDES_PORT": str(node.port),
            "SHIELDES_GOSSIP_PORT": str(node.gossip_port), "SHIELDES_CLUSTER_SECRET": SECRET,
            "SHIELDES_ADMIN_TOKEN": ADMIN_TOKEN, "SHIELDES_DATA_DIR": str(self.tmp / f"data-{node_id}"),
            "SHIELDES_POLL_INTERVAL": "1", "SHIELDES_HEARTBEAT_INTERVAL": "0.2", "SHIELDES_NODE_TIMEOUT": "1.5",
            "SHIELDES_GOSSIP_INTERVAL": "0.05", "SHIELDES_FLUSH_INTERVAL": "0.2", "SHIELDES_SHUTDOWN_GRACE": "5",
        }
        with node.log.open("ab") as out:  # (cwd: `python -m` puts it first on sys.path)
            node.proc = subprocess.Popen([sys.executable, "-m", "shieldes", "serve"], cwd=tree, env=env,
                                         stdout=out, stderr=subprocess.STDOUT)
        self.nodes[node_id], self.trees[node_id] = node, tree

        def ready() -> bool:
            assert node.proc is not None
            assert node.proc.poll() is None, f"{node_id} exited: {node.log.read_text()[-3000:]}"
            return node.ready() is not None

        until(ready, 60, f"{node_id} ready")
        return node

    def stop(self, node_id: str) -> None:
        proc = self.nodes[node_id].proc
        assert proc is not None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, self.nodes[node_id].log.read_text()[-3000:]

    def stop_all(self) -> None:
        for node in self.nodes.values():
            if node.proc is not None and node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        for node in self.nodes.values():
            if node.proc is not None:
                try:
                    node.proc.wait(30)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait()

    def load(self, rounds: int = 3) -> None:
        """Requests of every key to every running node; each must be served."""
        for _ in range(rounds):
            for node in self.nodes.values():
                if node.proc is None or node.proc.poll() is not None:
                    continue
                for key, secret in self.secrets.items():
                    client = openai.OpenAI(base_url=node.base + "/v1", api_key=secret, max_retries=0, timeout=20)
                    try:
                        client.chat.completions.create(model=MODEL, max_tokens=5,
                                                       messages=[{"role": "user", "content": f"upgrade {key}"}])
                    finally:
                        client.close()
                    self.got[key] += 1

    def logged(self) -> dict[str, tuple[int, int]]:
        """Per key name, (requests, nano-USD) in the log (`usage_daily`)."""
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute("SELECT key_name, sum(requests), sum(cost_usd) FROM usage_daily GROUP BY 1").fetchall()
        return {str(k): (int(r), round(float(c) * 1e9)) for k, r, c in rows}

    def live_spend(self, node: NodeProc) -> dict[str, int] | None:
        """The node's spend per key (its log position and unflushed usage), once it flushed everything."""
        def get(path: str) -> Any:
            req = urllib.request.Request(node.base + path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            with urllib.request.urlopen(req, timeout=3) as resp:
                return json.loads(resp.read())

        try:
            if get("/admin/v1/node").get("unflushed_usage_deltas"):
                return None
            return {row["key"]: round(row["cost_usd"] * 1e9) for row in get("/admin/v1/usage/live")["data"]}
        except OSError:
            return None

    def agree(self) -> None:
        """Every running node at the log head, each seeing every key's spend as the log holds it."""
        def head() -> int:
            with psycopg.connect(self.database_url) as conn:
                row = conn.execute("SELECT max(position) FROM events").fetchone()
            return int(row[0]) if row and row[0] is not None else 0

        def agreed() -> bool:
            target = head()
            running = [n for n in self.nodes.values() if n.proc is not None and n.proc.poll() is None]
            if any(((get_json(n.base + "/ready")[1] or {}).get("position") or 0) < target for n in running):
                return False
            want = {k: v[1] for k, v in self.logged().items() if v[1]}
            spends = [self.live_spend(n) for n in running]
            return head() == target and all(s is not None and {k: v for k, v in s.items() if v} == want
                                             for s in spends)

        until(agreed, 20, "every node at the log head with the log's spend per key")

    def own_appends_after(self, position: int) -> Counter[str]:
        """Usage appends each node wrote itself after `position`."""
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute("SELECT metadata->>'node_id', count(*) FROM events WHERE type = 'usage.recorded'"
                                " AND position > %s AND NOT metadata ? 'appended_by' GROUP BY 1",
                                (position,)).fetchall()
        return Counter({str(n): int(c) for n, c in rows})


@pytest.fixture
def rollout(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Rollout, Path, str, str]]:
    commit, old_head, new_head = previous_release()
    tmp = tmp_path_factory.mktemp("schema-upgrade")
    old_tree = unpack(commit, tmp / "release-r")
    url = pg.fresh_database(pg_server, migrated=False)
    with threaded_upstream(completion_tokens=5, models=(MODEL,)) as up:
        r = Rollout(url, tmp, up.url, served=lambda: up.requests_to("/v1/chat/completions"))
        try:
            yield r, old_tree, old_head, new_head
        finally:
            r.stop_all()
            pg.drop_database(pg_server, url)


def schema(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert row is not None
    return str(row[0])


@pytest.mark.timeout(240)  # seven node starts, two migrations from scratch and eight CLI processes
def test_nodes_of_the_previous_release_serve_and_count_through_a_schema_upgrade_and_a_rolling_restart(
        rollout: tuple[Rollout, Path, str, str]) -> None:
    r, old_tree, old_head, new_head = rollout
    started = time.monotonic()
    # release R: its schema, its CLI, two of its nodes
    r.cli(old_tree, "db", "upgrade")
    assert schema(r.database_url) == old_head != new_head
    r.cli(old_tree, "provider", "add", "openai", "--type", "openai", "--base-url", r.upstream_url + "/v1",
          "--api-key-env", UPSTREAM_KEY_ENV, "--models", MODEL)
    r.cli(old_tree, "pricing", "set", MODEL, "--input", "100", "--output", "1000")
    for name, limits in KEYS.items():
        r.secrets[name] = r.cli(old_tree, "key", "create", "--name", name, *limits)["key"]
    for node_id in ("n1", "n2"):
        r.start(node_id, old_tree)
    r.load()
    r.agree()
    # R + 1's migration while R's nodes serve
    with psycopg.connect(r.database_url) as conn:
        before = int(conn.execute("SELECT max(position) FROM events").fetchone()[0])  # type: ignore[index]
    r.cli(ROOT, "db", "upgrade")
    assert schema(r.database_url) == new_head
    # R's nodes keep serving and counting: their own usage appends land in the migrated log
    r.load()
    until(lambda: all(r.own_appends_after(before)[n] for n in ("n1", "n2")), 10,
          "usage appended by both nodes of R after the migration")
    r.agree()
    # a node of R + 1 joins; both releases side by side agree on every key's usage
    r.start("n3", ROOT)
    r.load()
    r.agree()
    # each node of R in turn: SIGTERM (a graceful stop loses nothing), back on R + 1 under its node id
    for node_id in ("n1", "n2"):
        r.stop(node_id)
        r.load(rounds=1)
        r.start(node_id, ROOT)
        r.load(rounds=1)
        r.agree()
    assert all(tree == ROOT for tree in r.trees.values())
    r.stop_all()
    # nothing lost, nothing twice: the log holds exactly what the clients got and the upstream served
    logged = r.logged()
    served = Counter(rec.body["messages"][-1]["content"].removeprefix("upgrade ") for rec in r.served())
    assert {k: v[0] for k, v in logged.items()} == dict(r.got) == dict(served), (logged, r.got, served)
    print(f"release R {old_head} -> R + 1 {new_head}: {sum(r.got.values())} requests, "
          f"{time.monotonic() - started:.1f} s")
