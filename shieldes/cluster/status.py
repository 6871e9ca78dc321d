"""The cluster as the database records it: nodes (heartbeats), the leader and its epoch, log
positions, gossip traffic and convergence, and how the nodes route (per deployment and region).
Shared by `shieldes cluster status`, the admin API and each node's cluster gauges on /metrics
(`summarize`, from the `cluster_nodes` rows the node reads every heartbeat)."""

from __future__ import annotations

from typing import Any

from shieldes import db
from shieldes.cluster.leader import LEADER_LOCK
from shieldes.cluster.membership import NODES_SQL, NodeRecord, starting
from shieldes.events.log_reads import head_position
from shieldes.routing.strategies import merge_reports


def node_status(n: NodeRecord) -> str:
    """`dead` (no heartbeat within the node timeout), `starting` (registered, catching up or hearing
    its peers: its HTTP socket does not listen yet), `draining` (stopped accepting on SIGTERM, finishing
    what it holds) or `alive` (serving). A row of a release before `state` counts as serving once it
    left its first registration (`starting`)."""
    if not n.alive:
        return "dead"
    if starting(n.info):
        return "starting"
    return "draining" if n.info.get("state") == "draining" else "alive"


def node_row(n: NodeRecord, head: int) -> dict[str, Any]:
    reported = n.info.get("gossip")  # None: the node runs no gossip (or never reported it): nothing measured
    gossip = reported or {}
    peers = gossip.get("peers") or {}

    def count(*names: str) -> int | None:
        return sum(int(gossip.get(k, 0)) for k in names) if reported is not None else None

    return {
        "node_id": n.node_id,
        "status": node_status(n),
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
        # counters are null (not 0) for a node without gossip: nothing was measured
        "gossip": {
            "sent": count("sent"),
            "sent_bytes": count("sent_bytes"),
            "received": count("received"),
            "received_bytes": count("received_bytes"),
            "rejected": count("rejected_signature", "rejected_stale", "rejected_malformed"),
            "send_errors": count("send_errors"),
            "full_sent": count("full_sent"),  # whole states (first contact, anti-entropy, older peers)
            "deltas_sent": count("deltas_sent"),
            "messages_per_s": gossip.get("messages_per_s"),  # sent + received, over the last 10 s
            "bytes_per_s": gossip.get("bytes_per_s"),
            "convergence_ms": gossip.get("convergence_ms"),  # cluster/measures.py
            "peers": peers,
            "push_timeouts": count("push_timeouts"),
            # per push target: its current deadline, smoothed round trip and timeouts (push_deadline.py)
            "targets": gossip.get("targets") or {},
            "push_deadline_max_s": max((float(t["deadline_s"]) for t in (gossip.get("targets") or {}).values()),
                                       default=None),
        },
        "region": n.info.get("region"),
    }


def _healthy(n: NodeRecord, head: int) -> bool:
    """Serving, listening for config changes and less than 1,000 events behind the log."""
    return node_status(n) == "alive" and n.info.get("listener") == "listening" and max(0, head - n.position) < 1000


def _sent(n: NodeRecord) -> int:
    return sum(int(r.get("requests_60s") or 0) for r in (n.info.get("deployments") or {}).values())


def _share(part: float, whole: float) -> float | None:
    """None when nothing was sent: a share of no requests is unknown, not 0."""
    return round(part / whole, 4) if whole else None


def regions(alive: list[NodeRecord]) -> list[dict[str, Any]]:
    """Requests sent in the last 60 s per deployment region (`none`: deployments without one), and
    how many of them came from nodes of another region (spill-over)."""
    rows: dict[str, list[int]] = {}
    for n in alive:
        home = n.info.get("region")
        for r in (n.info.get("deployments") or {}).values():
            region = r.get("region") or "none"
            sent = int(r.get("requests_60s") or 0)
            row = rows.setdefault(region, [0, 0])
            row[0] += sent
            row[1] += sent if home and r.get("region") and home != region else 0
    total = sum(r[0] for r in rows.values())
    return [{"region": name, "requests_60s": r[0], "from_other_regions_60s": r[1],
             "traffic_share": _share(r[0], total)} for name, r in sorted(rows.items())]


def summarize(nodes: list[NodeRecord], head: int) -> dict[str, Any]:
    """Everything but the leader (which needs the database) from the `cluster_nodes` rows."""
    alive = [n for n in nodes if n.alive]
    healthy = [n for n in alive if _healthy(n, head)]
    # not serving by their own account, and not failing: on their way in or out
    passing = [n for n in alive if node_status(n) in ("starting", "draining")]
    sent = {n.node_id: _sent(n) for n in alive}
    gossip = [n.info.get("gossip") or {} for n in alive]
    rates = [g for g in gossip if g.get("messages_per_s") is not None]
    converged = [float(g["convergence_ms"]) for g in gossip if g.get("convergence_ms") is not None]
    return {
        "log_head": head,
        "nodes_alive": len(alive),
        "nodes_total": len(nodes),
        "nodes_healthy": len(healthy),
        "nodes_starting": sum(node_status(n) == "starting" for n in alive),
        "nodes_draining": sum(node_status(n) == "draining" for n in alive),
        "nodes_failed": len(nodes) - len(healthy) - len(passing),
        # each message is counted once by its sender and once by its receiver
        "gossip_messages_per_s": round(sum(float(g["messages_per_s"]) for g in rates) / 2, 3) if rates else None,
        "gossip_bytes_per_s": round(sum(float(g["bytes_per_s"]) for g in rates) / 2, 1) if rates else None,
        "convergence_ms": max(converged) if converged else None,
        "deployments": merge_reports(n.info.get("deployments") or {} for n in alive),
        "regions": regions(alive),
        "load": [{"node_id": k, "requests_60s": v, "share": _share(v, sum(sent.values()))}
                 for k, v in sorted(sent.items())],
        "nodes": [node_row(n, head) for n in nodes],
    }


async def cluster_status(url: str, node_timeout: float) -> dict[str, Any]:
    """Asynchronous, so that a caller's bound on a stalled database (DbWait) cancels the read
    rather than leaving a thread blocked on it."""
    conn = await db.async_connection(url, timeout=10)
    try:
        db.require_head(await db.async_schema_revision(conn))
        head = await head_position(conn)
        nodes = [NodeRecord(*row) for row in await (await conn.execute(NODES_SQL, (node_timeout,))).fetchall()]
        epoch_row = await (await conn.execute(
            "SELECT epoch, node_id, acquired_at FROM leader_epoch WHERE id = 1"
        )).fetchone()
        held_row = await (await conn.execute(
            "SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND classid = %s AND objid = %s AND objsubid = 1",
            (LEADER_LOCK >> 32, LEADER_LOCK & 0xFFFF_FFFF),
        )).fetchone()
    finally:
        await conn.close()
    epoch, leader_id, acquired = epoch_row if epoch_row else (0, None, None)
    held = bool(held_row and held_row[0])
    out = summarize(nodes, head)
    out["leader"] = {
        "node_id": leader_id if held else None,
        "epoch": epoch,
        "acquired_at": acquired.isoformat() if acquired else None,
        "lock_held": held,
        "last_leader": leader_id,
    }
    return out
