"""The cluster part of a node: listener, membership, gossip and leader, wired to the meter.

Start order (after the projector caught up and the flusher runs): LISTEN (wakes the node's log
poller) -> gossip server bound -> membership registered -> gossip pushes -> leader campaign.
Stop is the reverse, after the final usage flush: the node leaves the cluster last.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from psycopg_pool import AsyncConnectionPool

from shieldes import __version__
from shieldes.cluster import counters, gossip_tls
from shieldes.cluster.counters import NodeState
from shieldes.cluster.gossip import Gossip
from shieldes.cluster.health import ClusterBreaker, adopt
from shieldes.cluster.leader import Leader
from shieldes.cluster.listener import Listener
from shieldes.cluster.membership import Membership
from shieldes.cluster.meter import RATE_WINDOW, ClusterMeter
from shieldes.events.catalog import Event, UsageRecorded
from shieldes.events.compat import reads_of
from shieldes.events.store import RecordedEvent
from shieldes.projections.projector import Projector
from shieldes.settings import Settings
from shieldes.tasks import cancel_and_wait
from shieldes.usage.meter import WINDOW

log = logging.getLogger(__name__)


def _address(host: str, advertise: str | None, port: int) -> str:
    if advertise:
        return f"{advertise}:{port}"
    return f"{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"


class ClusterRuntime:
    def __init__(self, settings: Settings, *, database_url: str, pool: AsyncConnectionPool[Any],
                 projector: Projector, meter: ClusterMeter, wake: Callable[[], None],
                 registry: CollectorRegistry | None = None) -> None:
        s = self.settings = settings
        self.node_id = s.node_id
        self.projector = projector
        self.meter = meter
        self.breaker: ClusterBreaker | None = None
        self.listener = Listener(database_url, projector, poll_interval=s.poll_interval, on_wake=wake)
        self.membership = Membership(
            pool, s.node_id, _address(s.host, s.advertise_host, s.port), None, __version__,
            heartbeat_interval=s.heartbeat_interval, node_timeout=s.node_timeout,
            static_peers=s.static_peers(), position=lambda: projector.position, info=self.info,
        )
        self.leader = Leader(database_url, s.node_id, retry_interval=s.heartbeat_interval,
                             check_interval=s.heartbeat_interval)
        self.gossip: Gossip | None = None
        if s.cluster_secret:
            self.gossip = Gossip(
                node_id=s.node_id, secret=s.cluster_secret.encode(), host=s.host, port=s.gossip_port,
                interval=s.gossip_interval, timeout=max(0.5, s.gossip_interval * 4),
                targets=self.gossip_targets, snapshot=self.snapshot, on_head=self.listener.wake,
                boot_epoch=lambda: self.membership.boot_epoch, local_head=lambda: projector.position,
                on_state=self._on_state, on_sent=self._on_sent,
                tls=gossip_tls.load(s.gossip_tls_cert, s.gossip_tls_key, s.gossip_tls_ca),
            )
        self.apply_delay = Histogram(
            "shieldes_cluster_config_apply_seconds", "commit of a config event to applied on this node",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), registry=registry,
        )
        if registry is not None:
            registry.register(_Collector(self))
        self._task: asyncio.Task[None] | None = None
        self.last_apply_ms: float | None = None  # commit-to-applied delay of the newest config event
        self.request_totals: Callable[[], dict[str, int]] | None = None  # set once the gateway exists
        projector.on_event(self._on_event)

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self.listener.start()
        if self.gossip is not None:
            await self.gossip.bind()
            self.membership.gossip_address = self.gossip.address
        await self.membership.start()
        if self.gossip is not None:
            await self.gossip.start()
        elif len(self.membership.alive_peers()) or self.settings.static_peers():
            log.warning("SHIELDES_CLUSTER_SECRET is not set: gossip is off, so each node enforces rate "
                        "limits as limit / nodes alive; set the same secret on every node")
        self.meter.cluster = self
        await self.leader.start()
        self._task = asyncio.create_task(self._maintain(), name="shieldes-cluster-maintenance")

    def attach_gateway(self, breaker_holder: Any) -> None:
        """Make the gateway's circuit breaker act on the cluster's view of deployment health."""
        self.breaker = adopt(breaker_holder.breaker, self.remote_open)
        breaker_holder.breaker = self.breaker

    def http_started(self, port: int) -> None:
        self.membership.http_address = _address(self.settings.host, self.settings.advertise_host, port)

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self.leader.stop()
        self.meter.cluster = None
        if self.gossip is not None:
            await self.gossip.stop()
        await self.membership.stop()
        await self.listener.stop()

    # --- the view the meter asks for ---------------------------------------------------------

    def alive_ids(self) -> set[str]:
        alive = {self.node_id, *(n.node_id for n in self.membership.alive_peers())}
        if self.gossip is not None:
            alive.update(self.gossip.recently_seen(self.settings.node_timeout))
        return alive

    def gossip_targets(self) -> list[str]:
        """Peers alive in cluster_nodes and static peers, plus peers heard from by gossip lately
        (a node that cannot reach Postgres still gossips, and must get our acknowledgements)."""
        targets = self.membership.gossip_targets()
        if self.gossip is not None:
            for node in self.gossip.recently_seen(self.settings.node_timeout):
                address = self.gossip.stats.peers[node].address
                if address and address not in targets:
                    targets.append(address)
        return targets

    def alive_count(self) -> int:
        return len(self.alive_ids())

    def rank(self) -> int:
        return sorted(self.alive_ids()).index(self.node_id)

    def remote_outstanding(self, subject: str, window: int, name: str = RATE_WINDOW) -> int:
        if self.gossip is None:
            return 0
        return counters.window_allowance(self.gossip.view, subject, name, window, exclude=self.node_id)

    def remote_open(self, deployment: str) -> bool:
        if self.gossip is None:
            return False
        fresh = set(self.gossip.recently_seen(self.settings.node_timeout))
        return any(
            node in fresh and (h := state.health.get(deployment)) is not None and h.open
            for (node, _), state in self.gossip.view.items()
        )

    # --- gossip in and out -------------------------------------------------------------------

    def snapshot(self) -> NodeState:
        m = self.meter
        return NodeState(
            node_id=self.node_id, boot_epoch=self.membership.boot_epoch,
            log_head=max(self.projector.position, self.projector.known_head),
            windows=m.gossip_windows(), pending=m.gossip_pending(), reservations=m.gossip_reservations(),
            health=self.breaker.health() if self.breaker is not None else {},
            allowances=m.gossip_allowances(),
        )

    def _peers(self) -> list[str]:
        return sorted(self.alive_ids() - {self.node_id})

    def _on_sent(self, seq: int) -> None:
        self.meter.rounds.sent(seq)

    def _on_state(self, state: NodeState) -> None:
        self._apply_remote(state.node_id)
        seen = state.seen.get(self.node_id)
        if seen is not None:
            self.meter.rounds.peer_saw(state.node_id, seen[0], seen[1])
        self.meter.rounds.advance(self._peers(), self.membership.boot_epoch)

    def _on_event(self, recorded: RecordedEvent, event: Event) -> None:
        if recorded.is_config:
            delay = max(0.0, (datetime.now(UTC) - recorded.recorded_at).total_seconds())
            self.apply_delay.observe(delay)
            self.last_apply_ms = round(delay * 1000, 3)
        elif isinstance(event, UsageRecorded) and event.node_id != self.node_id:
            self._apply_remote(event.node_id)  # that node's gossiped usage may now be durable

    def _apply_remote(self, node: str) -> None:
        """Hand one peer's gossiped counts and not-yet-durable spend to the meter."""
        if self.gossip is None:
            return
        usage = self.projector.usage
        rate: dict[tuple[str, int], tuple[int, int]] = {}
        pending: dict[tuple[str, int], int] = {}
        today = int(time.time() // 86400)
        for (n, _), state in self.gossip.view.items():
            if n != node:
                continue
            for (subject, window, start), (req, tok) in state.windows.items():
                if window == RATE_WINDOW and subject.startswith("k:"):
                    old = rate.get((subject[2:], start), (0, 0))
                    rate[(subject[2:], start)] = (old[0] + req, old[1] + tok)
            for (epoch, seq, subject, day), (_, _, nusd) in state.pending.items():
                if seq > usage.durable_seq(node, epoch):
                    pending[(subject, day)] = pending.get((subject, day), 0) + nusd
            for subject, (reserved, released) in state.reservations.items():
                if reserved > released:  # in flight on that node right now
                    pending[(subject, today)] = pending.get((subject, today), 0) + reserved - released
        self.meter.set_remote(node, rate)
        self.meter.set_remote_pending(node, pending)

    async def _maintain(self) -> None:
        """Prune what can no longer count and forget nodes gone for good."""
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval)
            try:
                self._prune()
            except Exception:
                log.exception("cluster maintenance failed")

    def _prune(self) -> None:
        self.meter.forget_old_windows()
        alive = self.alive_ids()
        self.meter.rounds.forget(alive)
        if self.gossip is None:
            return
        current = int(time.time() // WINDOW)
        usage = self.projector.usage
        self.gossip.view = counters.prune(self.gossip.view, min_window_start={RATE_WINDOW: current - 1},
                                          durable=usage.durable_seq)
        # a node silent for a few timeouts: its windows have ended and its pending usage is lost
        keep = alive | set(self.gossip.recently_seen(self.settings.node_timeout * 3))
        self.gossip.view = counters.forget_nodes(self.gossip.view, lambda c: c[0] in keep)
        for node in {n for n, _ in self.gossip.view} | set(self.gossip.stats.peers):
            if node in keep:
                self._apply_remote(node)
            else:
                self.meter.drop_remote(node)

    # --- reporting ---------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Written to cluster_nodes.info by every heartbeat (read by `shieldes cluster status`)."""
        return {
            "leader": self.leader.is_leader,
            "leader_epoch": self.leader.epoch,
            "alive": self.alive_count(),
            "listener": self.listener.state,
            "lag": self.projector.lag,
            "gossip": self.gossip.stats.to_dict() if self.gossip is not None else None,
            "requests": self.request_totals() if self.request_totals is not None else None,
            "config_apply_ms": self.last_apply_ms,
            # rolling upgrades: writers refuse events this node cannot read (events/compat.py)
            "reads": reads_of(self.projector.projection.codec),
            "unreadable_events": self.projector.projection.unreadable_count,
        }

    def status(self) -> dict[str, Any]:
        return {
            "alive": self.alive_count(),
            "leader": self.leader.is_leader,
            "listener": self.listener.state,
            "gossip": self.gossip is not None,
        }


class _Collector:
    """Cluster figures computed at scrape time (no background bookkeeping)."""

    def __init__(self, runtime: ClusterRuntime) -> None:
        self._rt = runtime

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        rt = self._rt
        gauges = (
            ("shieldes_cluster_nodes_alive", "cluster nodes alive (this one included)", rt.alive_count()),
            ("shieldes_cluster_leader", "1 if this node is the leader", int(rt.leader.is_leader)),
            ("shieldes_cluster_leader_epoch", "fencing epoch while leading", rt.leader.epoch),
            ("shieldes_cluster_log_position", "log position applied", rt.projector.position),
            ("shieldes_cluster_log_lag", "events behind the known log head", rt.projector.lag),
            ("shieldes_cluster_listener_connected", "1 while LISTEN is up", int(rt.listener.connected)),
        )
        for name, doc, value in gauges:
            yield GaugeMetricFamily(name, doc, value=value)
        yield CounterMetricFamily("shieldes_cluster_listener_connects", "LISTEN (re)connects",
                                  value=rt.listener.connects)
        g = rt.gossip
        if g is None:
            return
        st = g.stats
        msgs = CounterMetricFamily("shieldes_gossip_messages", "gossip messages", labels=["direction"])
        msgs.add_metric(["sent"], st.sent)
        msgs.add_metric(["received"], st.received)
        yield msgs
        size = CounterMetricFamily("shieldes_gossip_bytes", "gossip payload bytes", labels=["direction"])
        size.add_metric(["sent"], st.sent_bytes)
        size.add_metric(["received"], st.received_bytes)
        yield size
        rejected = CounterMetricFamily("shieldes_gossip_rejected", "gossip messages refused",
                                       labels=["reason"])
        rejected.add_metric(["signature"], st.rejected_signature)
        rejected.add_metric(["stale"], st.rejected_stale)
        rejected.add_metric(["malformed"], st.rejected_malformed)
        yield rejected
        yield CounterMetricFamily("shieldes_gossip_send_errors", "pushes that failed", value=st.send_errors)
