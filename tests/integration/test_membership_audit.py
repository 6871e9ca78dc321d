"""Membership changes land in the cluster_membership view, which the audit role can read: joins
(with the boot they replace), graceful leaves, a silent node declared dead once, leader elections
with their epoch and the previous leader, a leader's resignation. The example queries of
docs/audit.md run as shieldes_audit."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from shieldes.cluster.leader import Leader
from shieldes.cluster.membership import Membership, claim_boot_epoch
from tests.integration.test_leader_membership import until

ROOT = Path(__file__).resolve().parents[2]


def rows(url: str, sql: str = "SELECT event, node_id, boot_epoch, leader_epoch, observed_by, details"
                               " FROM cluster_membership ORDER BY id") -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET ROLE shieldes_audit")
        return conn.execute(sql).fetchall()


def member(pool: AsyncConnectionPool[Any], node: str) -> Membership:
    return Membership(pool, node, f"{node}:8080", f"{node}:7946", "test", heartbeat_interval=0.05,
                      node_timeout=0.3)


async def test_joins_leaves_and_a_dead_node_are_recorded_once(database_url: str,
                                                               pool: AsyncConnectionPool[Any]) -> None:
    a, b = member(pool, "a"), member(pool, "b")
    await a.start()
    await b.start()
    first_b = b.boot_epoch
    await b.stop(deregister=False)  # b crashes: its row stays, its heartbeat stops
    await until(lambda: any(r[0] == "declared_dead" for r in rows(database_url)), timeout=5)
    for _ in range(3):  # a keeps noticing b's row, and records nothing more
        await a.refresh()
    b2 = member(pool, "b")
    await b2.start()  # the crashed node comes back with a new boot epoch
    await b2.stop()
    await a.stop()
    log = [(e, n, boot, obs) for e, n, boot, _, obs, _ in rows(database_url)]
    assert log == [("joined", "a", a.boot_epoch, "a"), ("joined", "b", first_b, "b"),
                   ("declared_dead", "b", first_b, "a"), ("joined", "b", b2.boot_epoch, "b"),
                   ("left", "b", b2.boot_epoch, "b"), ("left", "a", a.boot_epoch, "a")]
    details = [d for _, _, _, _, _, d in rows(database_url)]
    assert details[2]["timeout_seconds"] == 0.3 and details[2]["gossip_address"] == "b:7946"
    assert details[3]["previous_boot_epoch"] == first_b and b2.boot_epoch > first_b
    assert "previous_boot_epoch" not in details[0]


async def test_leader_changes_carry_their_epoch(database_url: str) -> None:
    a = Leader(database_url, "a", retry_interval=0.05)
    b = Leader(database_url, "b", retry_interval=0.05)
    await a.start()
    await until(lambda: a.is_leader)
    await b.start()
    first = a.epoch
    await a.stop()  # graceful: resigns, b takes over with the next epoch
    await until(lambda: b.is_leader)
    second = b.epoch
    await b.stop()
    log = [(e, n, le, d.get("previous_leader")) for e, n, _, le, _, d in rows(database_url)]
    assert log == [("leader_elected", "a", first, None), ("leader_resigned", "a", first, None),
                   ("leader_elected", "b", second, "a"), ("leader_resigned", "b", second, None)]
    assert second == first + 1


async def test_audit_role_reads_the_view_not_the_table(database_url: str, pool: AsyncConnectionPool[Any]) -> None:
    a = member(pool, "a")
    await a.start()
    await a.stop()
    assert len(rows(database_url)) == 2
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET ROLE shieldes_audit")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM cluster_membership_log")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM cluster_membership")


async def test_documented_queries_run_as_the_audit_role(database_url: str, pool: AsyncConnectionPool[Any]) -> None:
    a = member(pool, "a")
    await a.start()
    leader = Leader(database_url, "a", retry_interval=0.05)
    await leader.start()
    await until(lambda: leader.is_leader)
    await leader.stop()
    await a.stop()
    doc = (ROOT / "docs" / "audit.md").read_text()
    section = doc[doc.index("## Cluster membership"):]
    section = section[:section.index("\n## ", 3)]
    queries = re.findall(r"```sql\n(.*?)```", section, re.S)
    assert len(queries) >= 3
    for query in queries:
        assert rows(database_url, query) is not None
    assert rows(database_url, queries[0])  # the first one lists what just happened


async def test_a_node_boot_is_recorded_when_it_claims_its_epoch(database_url: str,
                                                                 pool: AsyncConnectionPool[Any]) -> None:
    """What a node runs at start (before serving): each claim is a join; a claim over a boot that
    never left names the boot it replaces."""
    first = await claim_boot_epoch(pool, "n", 0, "1.0")
    second = await claim_boot_epoch(pool, "n", 0, "1.1")  # restarted without leaving (crash)
    log = [(e, n, boot, d) for e, n, boot, _, _, d in rows(database_url)]
    assert log == [("joined", "n", first, {"version": "1.0"}),
                   ("joined", "n", second, {"version": "1.1", "previous_boot_epoch": first,
                                           "previous_heartbeat": log[1][3]["previous_heartbeat"]})]
    assert second > first


async def test_a_first_boot_replaces_no_boot(database_url: str, pool: AsyncConnectionPool[Any]) -> None:
    """A node registers its row while it loads (boot epoch not claimed yet, 0), then claims: that
    row is this boot's own, not an earlier one, so the join names no boot it replaces and the
    documented query for nodes that stopped without leaving finds none (also after a graceful stop)."""
    from shieldes.snapshots.loader import load_projection_report

    for version in ("1.0", "1.1"):  # a first boot, then one after a graceful leave (row deleted)
        await load_projection_report(pool, node_id="n")
        boot = member(pool, "n")
        boot.boot_epoch = await claim_boot_epoch(pool, "n", 0, version)
        await boot.start()
        await boot.stop()
    joins = [d for e, _, _, _, _, d in rows(database_url) if e == "joined"]
    assert joins == [{"version": "1.0"}, {"version": "1.1"}]
    doc = (ROOT / "docs" / "audit.md").read_text()
    stopped = re.findall(r"```sql\n(.*?)```", doc[doc.index("Nodes that stopped without leaving"):], re.S)[0]
    assert rows(database_url, stopped) == []
