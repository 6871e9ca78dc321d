"""Several real node processes (`python -m shieldes serve`) on one Postgres, a fake upstream process,
admin commands written straight to the log (the same path the CLI takes)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai

from shieldes.config_writer import execute
from shieldes.events.pg_store import PostgresEventStore, open_pool
from shieldes.projections.commands import Command, CreateKey
from shieldes.projections.shared_commands import AddProvider
from shieldes.secrets import display_prefix, hash_key, new_id, new_virtual_key
from tests import pg
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
SECRET = "cluster-test-secret"
UPSTREAM_KEY_ENV = "SHIELDES_CLUSTER_TEST_UPSTREAM_KEY"
MESSAGES = [{"role": "user", "content": "hello there"}]




def until(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll a condition (no fixed sleeps): returns its first truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.005)


def get_json(url: str, timeout: float = 2.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return 0, None


@dataclass
class NodeProc:
    node_id: str
    port: int
    gossip_port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> dict[str, Any] | None:
        """/ready's body once this node answers it (another process on the port does not count)."""
        status, body = get_json(self.base + "/ready", timeout=1.0)
        return body if status == 200 and body.get("node_id") == self.node_id else None


@dataclass
class Cluster:
    database_url: str
    tmp: Path
    env_overrides: dict[str, str] = field(default_factory=dict)
    node_env: dict[str, dict[str, str]] = field(default_factory=dict)  # node id -> its own overrides
    nodes: list[NodeProc] = field(default_factory=list)
    upstream_url: str = ""
    _upstream: subprocess.Popen[bytes] | None = None
    _ports: set[int] = field(default_factory=set)

    def port(self) -> int:
        """A free port none of this cluster's processes was given: the kernel may hand a port out
        again before the process it was picked for binds it."""
        while (port := free_port()) in self._ports:
            pass
        self._ports.add(port)
        return port

    def env(self, node: NodeProc) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHIELDES_")}
        env.update({
            "PYTHONPATH": str(ROOT),
            "SHIELDES_DATABASE_URL": self.database_url,
            "SHIELDES_NODE_ID": node.node_id,
            "SHIELDES_HOST": "127.0.0.1",
            "SHIELDES_PORT": str(node.port),
            "SHIELDES_GOSSIP_PORT": str(node.gossip_port),
            "SHIELDES_CLUSTER_SECRET": SECRET,
            "SHIELDES_DATA_DIR": str(self.tmp / "data"),
            # a slow poll: config must arrive through LISTEN/NOTIFY (or gossip head hints) to be fast
            "SHIELDES_POLL_INTERVAL": "30",
            "SHIELDES_HEARTBEAT_INTERVAL": "0.2",
            "SHIELDES_NODE_TIMEOUT": "1.5",
            "SHIELDES_GOSSIP_INTERVAL": "0.05",
            "SHIELDES_FLUSH_INTERVAL": "0.2",
            "SHIELDES_SHUTDOWN_GRACE": "2",
            "SHIELDES_BREAKER_FAILURES": "2",
            "SHIELDES_BREAKER_COOLDOWN": "30",
            UPSTREAM_KEY_ENV: "sk-upstream",
        })
        env.update(self.env_overrides)
        env.update(self.node_env.get(node.node_id, {}))
        return env

    def start_upstream(self) -> None:
        port = self.port()
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self._upstream = subprocess.Popen(
            [sys.executable, "-m", "tests.fake_upstream", "--port", str(port), "--completion-tokens", "5"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.upstream_url = f"http://127.0.0.1:{port}"
        until(lambda: get_json(self.upstream_url + "/v1/models")[0] == 200, 20, "fake upstream up")

    def add_node(self, node_id: str) -> NodeProc:
        node = NodeProc(node_id, self.port(), self.port(), self.tmp / f"{node_id}.log")
        self.nodes.append(node)
        return node

    def start(self, node: NodeProc) -> None:
        with node.log.open("ab") as out:
            node.proc = subprocess.Popen([sys.executable, "-m", "shieldes", "serve"], cwd=ROOT,
                                         env=self.env(node), stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self, node: NodeProc, timeout: float = 30.0) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            assert node.proc is not None
            if node.proc.poll() is not None:
                raise AssertionError(f"node {node.node_id} exited: {node.log.read_text()[-2000:]}")
            return node.ready()

        result: dict[str, Any] = until(ready, timeout, f"{node.node_id} ready")
        return result

    def kill(self, node: NodeProc, sig: int = signal.SIGKILL) -> None:
        assert node.proc is not None
        node.proc.send_signal(sig)
        node.proc.wait(timeout=15)

    def stop_all(self) -> None:
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait()
        if self._upstream is not None:
            self._upstream.kill()
            self._upstream.wait()

    # --- admin, the CLI's path: decide + append straight to Postgres -----------------------------

    def admin(self, *commands: Command) -> int:
        """Run admin commands; returns the log position of the last event written."""

        async def run() -> int:
            pool = open_pool(self.database_url, size=1, name="test-admin")
            await pool.open(wait=True)
            try:
                store = PostgresEventStore(pool)
                last = 0
                for command in commands:
                    written = await execute(store, command, actor="test")
                    last = written[-1].position
                return last
            finally:
                await pool.close()

        return asyncio.run(run())

    def create_key(self, name: str, **kw: Any) -> tuple[str, int]:
        secret = new_virtual_key()
        position = self.admin(CreateKey(new_id("key"), name, hash_key(secret), display_prefix(secret), **kw))
        return secret, position

    def cli(self, *args: str) -> int:
        """Run `shieldes --json ARGS` as a real process (what an operator types); returns the
        position of the newest config event afterwards."""
        env = {**os.environ, "SHIELDES_DATABASE_URL": self.database_url, "PYTHONPATH": str(ROOT),
               "SHIELDES_ACTOR": "operator"}
        done = subprocess.run([sys.executable, "-m", "shieldes", "--json", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        import psycopg

        with psycopg.connect(self.database_url) as conn:
            row = conn.execute("SELECT config_position FROM log_head").fetchone()
        assert row is not None
        return int(row[0])

    def wait_position(self, position: int, timeout: float = 5.0) -> float:
        """Wait until every running node has applied `position`; returns the seconds it took."""
        started = time.monotonic()
        for node in self.nodes:
            if node.proc is None or node.proc.poll() is not None:
                continue
            until(lambda n=node: (get_json(n.base + "/ready")[1] or {}).get("position", 0) >= position,
                  timeout, f"{node.node_id} at position {position}")
        return time.monotonic() - started


async def burst(targets: list[str], key: str, limit_in_flight: int = 0) -> list[int]:
    """One request per target through the async SDK, all at once (or `limit_in_flight` at a time)."""
    clients = {b: openai.AsyncOpenAI(base_url=b + "/v1", api_key=key, max_retries=0, timeout=20)
               for b in set(targets)}
    gate = asyncio.Semaphore(limit_in_flight or len(targets))

    async def one(base: str) -> int:
        async with gate:
            try:
                await clients[base].chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, max_tokens=5)  # type: ignore[arg-type]
            except openai.APIStatusError as exc:
                return exc.status_code
            return 200

    try:
        return list(await asyncio.gather(*(one(b) for b in targets)))
    finally:
        for c in clients.values():
            await c.close()


@contextmanager
def ready_nodes(pg_server: str, tmp: Path, names: tuple[str, ...] = ("a", "b"),
                env_overrides: dict[str, str] | None = None) -> Iterator[Cluster]:
    """A fresh database, the fake upstream as provider `openai` (gpt-4o-mini), and node processes
    `names`, all ready; every process stopped and the database dropped afterwards."""
    url = pg.fresh_database(pg_server)
    c = Cluster(url, tmp, env_overrides=env_overrides or {})
    try:
        c.start_upstream()
        c.admin(AddProvider("openai", "openai", c.upstream_url, f"env:{UPSTREAM_KEY_ENV}", ("gpt-4o-mini",)))
        for name in names:
            c.start(c.add_node(name))
        for node in c.nodes:
            c.wait_ready(node)
        yield c
    finally:
        c.stop_all()
        pg.drop_database(pg_server, url)
