"""`shieldes cluster status`: nodes, leader and epoch, log positions and gossip health, from Postgres.

Everything shown comes from the database (cluster_nodes heartbeats, leader_epoch, pg_locks), so
the command works from any machine that can reach Postgres, even with every node down.
"""

from __future__ import annotations

import click

from shieldes.cli.common import cli_context, json_option, run_read
from shieldes.cli.oneline import OneLineGroup, handle_errors
from shieldes.cli.output import emit
from shieldes.cli.timefmt import table_time


@click.group("cluster", cls=OneLineGroup)
def cluster_group() -> None:
    """Cluster membership, leader and gossip health."""


@cluster_group.command("status")
@json_option
@handle_errors
def status(as_json: bool) -> None:
    """Nodes (alive/dead, addresses, version, heartbeat age, log position and lag), the leader and its
    epoch, gossip traffic, convergence time and the longest push deadline, and per deployment its
    health, effective weight, traffic share and quota use."""
    ctx = cli_context()
    api = ctx.remote()
    if api is not None:  # the node answers from the same tables, and says which node and when
        data = {k: v for k, v in api.get("/cluster").items() if k not in ("answered_by", "now")}
    else:
        from shieldes.cluster.status import cluster_status

        data = run_read(cluster_status(ctx.database_url(), ctx.settings.node_timeout))
    if ctx.as_json:
        emit(data, as_json=True)
        return
    leader = data["leader"]
    who = leader["node_id"] or f"none (last: {leader['last_leader'] or '-'})"
    click.echo(f"log head {data['log_head']}  nodes alive {data['nodes_alive']}/{len(data['nodes'])}  "
               f"healthy {data['nodes_healthy']}  leader {who}  epoch {leader['epoch']}")
    rate, size, conv = data["gossip_messages_per_s"], data["gossip_bytes_per_s"], data["convergence_ms"]
    gossip = "-" if rate is None else f"{rate:g} msg/s, {size:g} B/s"
    click.echo(f"gossip {gossip}  convergence {'-' if conv is None else f'{conv:g} ms'}")
    rows = [
        {
            "node": n["node_id"], "status": n["status"], "http": n["http_address"],
            "gossip": n["gossip_address"], "version": n["version"], "started": table_time(n["started_at"]),
            "heartbeat": f"{n['heartbeat_age_s']:.1f}s", "position": n["position"], "lag": n["lag"],
            # a node without gossip measured none of these: `-`, not 0
            "msgs in/out": _pair(n["gossip"]["received"], n["gossip"]["sent"]),
            "bytes in/out": _pair(n["gossip"]["received_bytes"], n["gossip"]["sent_bytes"]),
            "rejected": _known(n["gossip"]["rejected"]),
            # the longest deadline its pushes get now: above the base, some peer answers slowly
            "push deadline": "-" if (d := n["gossip"].get("push_deadline_max_s")) is None else f"{d:g}s",
        }
        for n in data["nodes"]
    ]
    emit(rows, as_json=False)
    if data["deployments"]:
        click.echo("")
        emit([{"deployment": d["name"], "region": d["region"] or "-", "healthy": "yes" if d["healthy"] else "no",
               # null: none measured yet (no request, or no successful one; no traffic in the last 60 s)
               "latency": f"{d['latency_ms']:g} ms" if d["latency_ms"] else "-",
               "errors": f"{d['error_rate']:.1%}" if d["error_rate"] is not None else "-", "weight": d["weight"],
               "share 60s": f"{d['traffic_share']:.0%}" if d["traffic_share"] is not None else "-",
               "requests 60s": d["requests_60s"],
               "quota used": ", ".join(f"{q} {d['quota'][q + '_used']:.0%}" for q in ("rpm", "tpm")
                                       if d["quota"][q] is not None) or "-"}
              for d in data["deployments"]], as_json=False)


def _known(value: object) -> object:
    """A figure nothing measured (null in --json) prints `-`."""
    return "-" if value is None else value


def _pair(received: int | None, sent: int | None) -> str:
    return "-" if received is None or sent is None else f"{received}/{sent}"
