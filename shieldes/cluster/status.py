"""The cluster as the database records it: nodes (heartbeats), the leader and its epoch, log
positions and gossip traffic. Shared by `shieldes cluster status` and the admin API."""

from __future__ import annotations

from typing import Any

from shieldes import db
from shieldes.cluster.leader import LEADER_LOCK
from shieldes.cluster.membership import NODES_SQL, NodeRecord
from shieldes.routing.strategies import merge_reports


def node_row(n: NodeRecord, head: int) -> dict[str, Any]:
    gossip = n.info.get("gossip") or {}
    peers = gossip.get("peers") or {}
    return {
        "node_id": n.node_id,
        "status": "alive" if n.alive else "dead",
        "http_address": n.http_address,
        "gossip_address": n.gossip_address,
        "version": n.version,
        "boot_epoch": n.boot_epoch,
        "started_at": n.started_at.isoformat(),
        "heartbeat_age_s": round(n.heartbeat_age, 3),
        "position": n.position,
        "lag": max(0, head - n.position),
        "leader": bool(n.info.get("leader")),
        "listener": n.info.get("listener"),
        "unreadable_events": int(n.info.get("unreadable_events") or 0),  # skipped: upgrade this node
        "requests": n.info.get("requests"),  # {"total", "client_errors", "server_errors"} since boot
        "config_apply_ms": n.info.get("config_apply_ms"),  # commit-to-applied delay of the last config event
        "gossip": {
            "sent": gossip.get("sent", 0),
            "sent_bytes": gossip.get("sent_bytes", 0),
            "received": gossip.get("received", 0),
            "received_bytes": gossip.get("received_bytes", 0),
            "rejected": sum(int(gossip.get(k, 0)) for k in
                            ("rejected_signature", "rejected_stale", "rejected_malformed")),
            "send_errors": gossip.get("send_errors", 0),
            "peers": peers,
        },
    }


def cluster_status(url: str, node_timeout: float) -> dict[str, Any]:
    with db.sync_connection(url) as conn:
        db.require_head(db.schema_revision(conn))
        head_row = conn.execute("SELECT position FROM log_head WHERE id = 1").fetchone()
        head = int(head_row[0]) if head_row else 0
        nodes = [NodeRecord(*row) for row in conn.execute(NODES_SQL, (node_timeout,)).fetchall()]
        epoch_row = conn.execute(
            "SELECT epoch, node_id, acquired_at FROM leader_epoch WHERE id = 1"
        ).fetchone()
        held_row = conn.execute(
            "SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND classid = %s AND objid = %s AND objsubid = 1",
            (LEADER_LOCK >> 32, LEADER_LOCK & 0xFFFF_FFFF),
        ).fetchone()
    epoch, leader_id, acquired = epoch_row if epoch_row else (0, None, None)
    held = bool(held_row and held_row[0])
    alive = [n for n in nodes if n.alive]
    healthy = [n for n in alive if n.info.get("listener") == "listening" and max(0, head - n.position) < 1000]
    return {
        "log_head": head,
        "nodes_alive": len(alive),
        "nodes_total": len(nodes),
        "nodes_healthy": len(healthy),
        "nodes_failed": len(nodes) - len(healthy),
        "deployments": merge_reports(n.info.get("deployments") or {} for n in alive),
        "leader": {
            "node_id": leader_id if held else None,
            "epoch": epoch,
            "acquired_at": acquired.isoformat() if acquired else None,
            "lock_held": held,
            "last_leader": leader_id,
        },
        "nodes": [node_row(n, head) for n in nodes],
    }
