"""`shieldes cluster status` as a process, against nodes' membership and leader state in Postgres."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from psycopg_pool import AsyncConnectionPool

from shieldes.cluster.leader import Leader
from shieldes.cluster.membership import Membership

ROOT = Path(__file__).resolve().parents[2]


async def shieldes(*args: str, url: str) -> tuple[int, str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), SHIELDES_DATABASE_URL=url)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shieldes", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_status_shows_nodes_leader_and_gossip(
    database_url: str, pool: AsyncConnectionPool[Any]
) -> None:
    info = {"leader": True, "gossip": {"sent": 12, "sent_bytes": 3400, "received": 10, "received_bytes": 3000,
                                       "rejected_signature": 1, "peers": {"n2": {"received": 10}},
                                       "targets": {"127.0.0.1:7002": {"deadline_s": 1.6, "rtt_ms": 410.5,
                                                                      "timeouts": 3}}}}
    n1 = Membership(pool, "n1", "127.0.0.1:8081", "127.0.0.1:7001", "0.1.0", position=lambda: 0,
                    info=lambda: info)
    n2 = Membership(pool, "n2", "127.0.0.1:8082", "127.0.0.1:7002", "0.1.0")
    leader = Leader(database_url, "n1", retry_interval=0.05)
    await n1.start()
    await n2.start()
    await leader.start()
    try:
        await asyncio.wait_for(leader.changed.wait(), 5)
        await n2.stop(deregister=False)
        async with pool.connection() as conn:  # n2 crashed long ago
            await conn.execute("UPDATE cluster_nodes SET heartbeat_at = now() - interval '1 hour' "
                               "WHERE node_id = 'n2'")
        code, out, err = await shieldes("cluster", "status", "--json", url=database_url)
        assert code == 0, err
        data = json.loads(out)
        assert data["leader"]["node_id"] == "n1" and data["leader"]["lock_held"]
        assert data["leader"]["epoch"] == leader.epoch
        assert data["nodes_alive"] == 1
        rows = {n["node_id"]: n for n in data["nodes"]}
        assert rows["n1"]["status"] == "alive" and rows["n2"]["status"] == "dead"
        assert rows["n1"]["gossip"]["sent"] == 12 and rows["n1"]["gossip"]["rejected"] == 1
        assert rows["n1"]["gossip"]["push_deadline_max_s"] == 1.6
        assert rows["n1"]["gossip"]["targets"]["127.0.0.1:7002"]["timeouts"] == 3
        assert rows["n2"]["heartbeat_age_s"] > 3000
        assert rows["n1"]["http_address"] == "127.0.0.1:8081"

        code, out, err = await shieldes("cluster", "status", url=database_url)
        assert code == 0, err
        assert "leader n1" in out and "n2" in out and "dead" in out
        assert "PUSH DEADLINE" in out.upper() and "1.6s" in out

        await leader.stop()
        code, out, _ = await shieldes("--json", "cluster", "status", url=database_url)
        data = json.loads(out)
        assert data["leader"]["node_id"] is None and data["leader"]["last_leader"] == "n1"
    finally:
        await leader.stop()
        await n1.stop()
        await n2.stop()


async def test_status_on_a_bad_database_is_one_line(empty_database_url: str) -> None:
    code, out, err = await shieldes("cluster", "status", url=empty_database_url)
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and "shieldes db upgrade" in err


async def test_figures_nothing_measured_are_unknown_not_zero(database_url: str,
                                                             pool: AsyncConnectionPool[Any]) -> None:
    """A node without gossip has sent and received nothing it could count, and a deployment no
    request reached has no latency, error rate or share: `-` in the table, null in --json."""
    info = {"listener": "listening", "gossip": None,
            "deployments": {"idle": {"requests": 0, "requests_60s": 0, "tokens_60s": 0, "weight": 1.0}}}
    n1 = Membership(pool, "solo", "127.0.0.1:8081", None, "0.1.0", position=lambda: 0, info=lambda: info)
    await n1.start()
    try:
        code, out, err = await shieldes("--json", "cluster", "status", url=database_url)
        assert code == 0, err
        data = json.loads(out)
        gossip = data["nodes"][0]["gossip"]
        counters = ("sent", "sent_bytes", "received", "received_bytes", "rejected")
        assert {k: gossip[k] for k in counters} == dict.fromkeys(counters)
        idle = data["deployments"][0]
        assert (idle["latency_ms"], idle["ttft_ms"], idle["error_rate"], idle["traffic_share"]) == (None,) * 4
        assert data["load"] == [{"node_id": "solo", "requests_60s": 0, "share": None}]

        code, out, err = await shieldes("cluster", "status", url=database_url)
        assert code == 0, err
        lines = out.splitlines()
        header = next(i for i, line in enumerate(lines) if line.startswith("NODE"))
        assert lines[header].endswith("MSGS IN/OUT  BYTES IN/OUT  REJECTED  PUSH DEADLINE"), lines[header]
        # msgs in/out, bytes in/out, rejected, push deadline
        assert lines[header + 1].split()[-4:] == ["-", "-", "-", "-"], lines[header + 1]
        dep_header = next(i for i, line in enumerate(lines) if line.startswith("DEPLOYMENT"))
        assert lines[dep_header + 1].split()[:7] == ["idle", "-", "yes", "-", "-", "1.0", "-"], lines[dep_header + 1]
    finally:
        await n1.stop()

