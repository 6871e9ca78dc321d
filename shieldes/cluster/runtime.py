"""The cluster part of a node: listener, membership, gossip and leader, wired to the meter.

Start order (after the projector caught up and the flusher runs): LISTEN (wakes the node's log
poller) -> gossip server bound -> membership registered -> gossip pushes -> leader campaign.
Stop is the reverse, after the final usage flush: the node leaves the cluster last.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram
from psycopg_pool import AsyncConnectionPool

from shieldes import __version__
from shieldes.cluster import view, view_reads
from shieldes.cluster.dead_boots import DeadBoots
from shieldes.cluster.health import ClusterBreaker, adopt
from shieldes.cluster.leader import Leader
from shieldes.cluster.listener import Listener
from shieldes.cluster.measures import Convergence, Rates
from shieldes.cluster.membership import Membership, NodeRecord
from shieldes.cluster.meter import RATE_WINDOW, ClusterMeter
from shieldes.cluster.scrape import ClusterCollector
from shieldes.cluster.view import Health, NodeState, ViewCell
from shieldes.errors import DatabaseUnavailable
from shieldes.events.catalog import Event
from shieldes.events.compat import reads_of
from shieldes.events.store import RecordedEvent
from shieldes.projections.projector import Projector
from shieldes.routing.quota import Traffic
from shieldes.routing.strategies import deployment_report, merge_health
from shieldes.secrets import GENERATED_SECRET_PREFIX, NodeKeyring, fingerprint
from shieldes.settings import Settings
from shieldes.tasks import cancel_and_wait, sleep_to_tick
from shieldes.usage.admission import WINDOW

if TYPE_CHECKING:
    from shieldes.cluster.gossip import Gossip

log = logging.getLogger(__name__)
ORPHAN_TTL_TIMEOUTS = 12  # node timeouts an unappended dead boot's usage keeps counting for budgets
FALLBACK_TICKS = 5  # heartbeat intervals after which any node, not only the leader, appends it


def _address(host: str, advertise: str | None, port: int) -> str:
    if advertise:
        return f"{advertise}:{port}"
    return f"{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"


class ClusterRuntime:
    def __init__(self, settings: Settings, *, database_url: str, pool: AsyncConnectionPool[Any],
                 projector: Projector, meter: ClusterMeter, wake: Callable[[], None],
                 registry: CollectorRegistry | None = None, boot_epoch: int = 0) -> None:
        s = self.settings = settings
        self._keyring = NodeKeyring(settings)
        self.node_id = s.node_id
        self.projector = projector
        self.meter = meter
        self.breaker: ClusterBreaker | None = None
        self.listener = Listener(database_url, projector, poll_interval=s.poll_interval, on_wake=wake)
        self._wake = wake
        # what peers and `cluster status` read of this node's HTTP side: no address and `starting` until
        # its socket listens (it registers and gossips before: it must hear its peers before it serves),
        # `draining` from its SIGTERM on (it accepts nothing new)
        self.serving = "starting"
        self.membership = Membership(
            pool, s.node_id, None, None, __version__,
            heartbeat_interval=s.heartbeat_interval, node_timeout=s.node_timeout,
            static_peers=s.static_peers(), position=lambda: projector.position, info=self.info,
            boot_epoch=boot_epoch,
        )
        self.leader = Leader(database_url, s.node_id, retry_interval=s.heartbeat_interval)
        # a newer boot of this node id took its row (this one was paused or cut off meanwhile): this boot
        # is over; it resigns leadership at once and asks the node to stop (`stop_node`, set by the node)
        self.membership.on_superseded = self._superseded
        self.stop_node: Callable[[], None] | None = None
        self._resigning: asyncio.Task[None] | None = None
        self.cell = ViewCell()  # what this node believes about its peers (cluster/view.py)
        self.dead_boots = DeadBoots(s, self.membership, projector, self.cell, wake)
        # a silent peer whose gossip port refuses connections leaves the split after this long
        self.split_timeout = max(1.0, 8 * s.gossip_interval)
        # a round with nothing but acknowledgements is left out, but one goes at least this often: within
        # the split timeout (a crashed peer's refusal is found no later than before) and a fifth of the
        # node timeout (peers hear from this node well within it)
        self.keepalive = max(s.gossip_interval, min(self.split_timeout, s.node_timeout / 5))
        # a dead boot's usage nobody appended (no leader, database down) stops counting after this long
        self.orphan_ttl = ORPHAN_TTL_TIMEOUTS * s.node_timeout
        self.gossip: Gossip | None = None
        if s.cluster_secret:
            # gRPC and the gossip's protobuf code (~25 ms of a node's start) only where gossip runs: a node
            # without a cluster secret, alone or not, never loads them
            from shieldes.cluster.gossip import Gossip
            from shieldes.cluster.gossip_tls import GossipCertificates

            # `timeout`: the base push deadline; a target's own grows from it with its timeouts and slow
            # answers, up to half the node timeout (cluster/push_deadline.py)
            self.gossip = Gossip(
                node_id=s.node_id, secret=s.cluster_secret.encode(), host=s.host, port=s.gossip_port,
                advertise_host=s.advertise_host,
                interval=s.gossip_interval, timeout=max(0.5, s.gossip_interval * 4),
                targets=self.gossip_targets, snapshot=self.snapshot, on_head=self.listener.wake,
                boot_epoch=lambda: self.membership.boot_epoch, local_head=lambda: projector.position,
                on_state=self._on_state, on_sent=self._on_sent, view=self.cell,
                tls=GossipCertificates.of(s.gossip_tls_cert, s.gossip_tls_key, s.gossip_tls_ca,
                                          s.tls_reload_interval),
                fanout=None if s.gossip_fanout == 0 else max(0, s.gossip_fanout), node_timeout=s.node_timeout,
                fanout_from=max(0, -s.gossip_fanout),
                on_ack=self._on_ack, keepalive=self.keepalive,
            )
        self.apply_delay = Histogram(
            "shieldes_cluster_config_apply_seconds", "commit of a config event to applied on this node",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), registry=registry,
        )
        if registry is not None:
            registry.register(ClusterCollector(self))
        self._task: asyncio.Task[None] | None = None
        self.last_apply_ms: float | None = None  # commit-to-applied delay of the newest config event
        self.request_totals: Callable[[], dict[str, int]] | None = None  # set once the gateway exists
        self.traffic: Callable[[], Mapping[str, Traffic]] = dict  # what this node sends each deployment
        self.convergence = Convergence()  # cluster/measures.py
        self.gossip_rates = Rates()
        self._split_read: tuple[float, int, int] | None = None  # (when, alive, rank): alive_and_rank
        self._view_reads = view_reads.ViewReads(self.cell.value, self.node_id, self.membership.boot_epoch)
        projector.on_event(self._on_event)

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self.listener.start()
        # boot epochs known before the first message is accepted: a replayed message of an older
        # boot is refused even though this node has just (re)started
        self.cell.observe_epochs(self.projector.usage.boot_floors(), time.monotonic())
        try:
            self._observe_membership(await self.membership.refresh())
        except Exception as exc:  # the heartbeat loop retries; the log's epochs are already known
            log.warning("could not read cluster_nodes at start: %s", str(exc).splitlines()[:1])
        if self.gossip is not None:
            await self.gossip.bind()
            self.membership.gossip_address = self.gossip.address
        await self.membership.start()
        if self.gossip is not None:
            await self.gossip.start()
            await self._hear_peers()
        elif len(self.membership.alive_peers()) or self.settings.static_peers():
            log.warning("SHIELDES_CLUSTER_SECRET is not set: gossip is off, so each node enforces rate "
                        "limits as limit / nodes alive; set the same secret on every node")
        # this boot's epoch is claimed (membership.start): requests' reads of the view count its crashed boots
        self._view_reads = view_reads.ViewReads(self.cell.value, self.node_id, self.membership.boot_epoch)
        self.meter.cluster = self
        self.meter.remote = self
        await self.leader.start()
        self._task = asyncio.create_task(self._maintain(), name="shieldes-cluster-maintenance")

    async def _hear_peers(self) -> None:
        """Before serving, hear once from every peer alive in cluster_nodes (at most
        SHIELDES_NODE_TIMEOUT): their counts, claims and reservations, and what a crashed boot of
        this node admitted, arrive with their first messages; without them a restarted node would
        take itself for alone in a window its peers have filled. A peer whose row says `starting` (loading
        the log, or hearing its own peers) is not waited for: its HTTP socket does not listen, so this
        boot of it admitted nothing yet, and what an earlier boot of it admitted the others relay."""
        assert self.gossip is not None
        started = time.monotonic()
        deadline = started + self.settings.node_timeout
        while True:
            serving = {n.node_id for n in self.membership.alive_peers() if n.info.get("state") != "starting"}
            missing = (serving - {self.node_id}
                       - set(self.gossip.recently_seen(self.settings.node_timeout)))
            if not missing:
                return
            if time.monotonic() >= deadline:
                log.warning("serving without having heard from %s by gossip within %.1fs",
                            ", ".join(sorted(missing)), self.settings.node_timeout)
                return
            await asyncio.sleep(self.settings.gossip_interval / 4)

    def attach_gateway(self, breaker_holder: Any) -> None:
        """Make the gateway's circuit breaker act on the cluster's view of deployment health."""
        self.breaker = adopt(breaker_holder.breaker, self.remote_open)
        breaker_holder.breaker = self.breaker
        breaker_holder.health_views = self.health_views
        breaker_holder.cluster_size = self.requests_alive_count
        self.traffic = breaker_holder.quotas.traffic

    def http_started(self, port: int) -> None:
        """The HTTP socket listens: announce the address and `serving` now, not at the next tick."""
        self.membership.http_address = _address(self.settings.host, self.settings.advertise_host, port)
        self.serving = "serving"
        self.membership.beat_now()

    def _superseded(self, newer: int) -> None:
        """Peers already refuse this boot's gossip (a newer boot supersedes it) and the row is the new
        boot's: leave the leadership to a live boot now, and stop (draining what is in flight)."""
        self._resigning = asyncio.create_task(self.leader.stop(), name="shieldes-leader-resign")
        if self.stop_node is not None:
            self.stop_node()

    def draining(self) -> None:
        """The node stopped accepting (SIGTERM): say so at once; it stays a member until it leaves."""
        self.serving = "draining"
        self.membership.beat_now()

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        if self._resigning is not None:
            await self._resigning
        await self.leader.stop()
        self.meter.cluster = None
        self.meter.remote = None
        if self.gossip is not None:
            await self.gossip.stop()
        await self.membership.stop()
        await self.listener.stop()

    # --- the view the meter asks for ---------------------------------------------------------

    def participants(self) -> list[str]:
        """Peers this node splits limits with (view_reads.participants): gossiped in this boot, and heard,
        taking pushes or heartbeating in cluster_nodes within SHIELDES_NODE_TIMEOUT, so a slow or
        briefly paused peer keeps its part; a starting peer never takes part: not before it gossips,
        nor until a row of the boot it gossips from says it serves (it gossips to hear its peers while
        its HTTP socket does not listen yet: it admits nothing), so from this node's first heartbeat
        read after it listens; a dead one (refusing pushes) no longer than the split timeout.
        Without gossip: the alive rows of cluster_nodes (each node keeps to limit / alive)."""
        if self.gossip is None:
            return sorted(n.node_id for n in self.membership.alive_peers())
        timeout = self.settings.node_timeout
        alive = self.gossip.reachable(timeout) + [n.node_id for n in self.membership.alive_peers()]
        v = self.cell.value
        return view_reads.participants(v, now=time.monotonic(), within=timeout, exclude=self.node_id,
                                       reachable=alive, gone=self.gossip.gone(self.split_timeout),
                                       starting=view_reads.not_serving(v, self.membership.serving_boots(timeout)))

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
        """Nodes a limit is split between: this one and its participants."""
        return 1 + len(self.participants())

    def alive_and_rank(self) -> tuple[int, int]:
        """(alive_count, this node's index among the alive ids, sorted) as requests read them: at
        most a quarter of a gossip interval old. Membership moves with gossip rounds and node
        timeouts; requests read it a few times each, thousands of times a second."""
        now = time.monotonic()
        read = self._split_read
        if read is None or now - read[0] >= self.settings.gossip_interval / 4:
            ids = sorted([self.node_id, *self.participants()])
            read = self._split_read = (now, len(ids), ids.index(self.node_id))
        return read[1], read[2]

    def requests_alive_count(self) -> int:
        """alive_count as the request path reads it (alive_and_rank)."""
        return self.alive_and_rank()[0]

    def _reads(self) -> view_reads.ViewReads:
        """The memo of reads of the current view (view_reads.ViewReads), a new one once it changed."""
        reads = self._view_reads = self._view_reads.of(self.cell.value)
        return reads

    def remote_outstanding(self, subject: str, window: int, name: str = RATE_WINDOW) -> int:
        """Peers' unused claims in one window."""
        reads = self._view_reads
        if reads.view is not self.cell.value:
            reads = self._reads()
        return reads.window_allowance(subject, name, window)

    def remote_counts(self, key_id: str, window: int) -> tuple[int, int]:
        """Peers' (requests, tokens) of one key in one rate window, and what this node's crashed boots
        admitted in it (relayed by peers)."""
        reads = self._view_reads
        if reads.view is not self.cell.value:
            reads = self._reads()
        return reads.window_count("k:" + key_id, RATE_WINDOW, window)

    def remote_spend(self, subject: str, days: range) -> int:
        """Peers' spend of a budget subject not yet in this node's log, plus their reservations."""
        reads = self._view_reads
        if reads.view is not self.cell.value:
            reads = self._reads()
        return reads.pending_spend(subject, days, self.projector.usage, self.projector.position)

    def remote_open(self, deployment: str) -> bool:
        """A fresh peer's breaker rests `deployment` (view_reads.deployment_open). Read by every
        request's routing: the peers that rest it are read once per view value, and only when one
        does are the peers heard from lately listed."""
        if self.gossip is None:
            return False
        reads = self._view_reads
        if reads.view is not self.cell.value:
            reads = self._reads()
        opened = reads.opened_by(deployment)
        if not opened:
            return False
        return any(node in opened for node in self.gossip.recently_seen(self.settings.node_timeout))

    def health_views(self) -> list[Mapping[str, Health]]:
        """Deployment health as this node sees it and as every fresh peer gossiped it (routing
        strategies merge them: every node converges on the same weights within a gossip round)."""
        own: list[Mapping[str, Health]] = [self.breaker.health()] if self.breaker is not None else []
        if self.gossip is None:
            return own
        return own + view_reads.peer_health(self.cell.value, self.gossip.recently_seen(self.settings.node_timeout),
                                      exclude=self.node_id)

    # --- gossip in and out -------------------------------------------------------------------

    def snapshot(self) -> NodeState:
        m = self.meter
        return NodeState(
            node_id=self.node_id, boot_epoch=self.membership.boot_epoch,
            log_head=max(self.projector.position, self.projector.known_head),
            windows=m.gossip_windows(), pending=m.gossip_pending(), reservations=m.gossip_reservations(),
            unflushed=m.gossip_unflushed(),
            health=self.breaker.health() if self.breaker is not None else {},
            allowances=m.gossip_allowances(),
        )

    def _on_sent(self, seq: int, asking: bool) -> None:
        """Message `seq` went out. Every message counts for limit rounds; convergence times those peers
        acknowledge by their next round (news, a whole state, a round after quiet ones: quiet.py), not
        a bare answer, which they acknowledge only when they next have news or a keepalive is due."""
        self.meter.rounds.sent(seq)
        if asking:
            self.convergence.sent(seq)

    def _on_state(self, state: NodeState) -> None:
        """A peer's message: its `seen` acknowledges ours (peers of a release before bounded
        fanout; later ones acknowledge by Ack, `_on_ack`)."""
        seen = state.seen.get(self.node_id)
        if seen is not None:
            self._on_ack(state.node_id, seen[0], seen[1])
        else:  # the participants may have changed
            participants = self.participants()
            self.meter.rounds.advance(participants, self.membership.boot_epoch)
            self.convergence.settle(participants)

    def _on_ack(self, peer: str, boot_epoch: int, seq: int) -> None:
        """`peer` accepted message `seq` of this node's boot `boot_epoch`: it may end a limit round."""
        self.meter.rounds.peer_saw(peer, boot_epoch, seq)
        if boot_epoch == self.membership.boot_epoch:
            self.convergence.acked(peer, seq)
        participants = self.participants()
        self.meter.rounds.advance(participants, self.membership.boot_epoch)
        self.convergence.settle(participants)

    def _on_event(self, recorded: RecordedEvent, event: Event) -> None:
        if recorded.is_config:
            delay = max(0.0, (datetime.now(UTC) - recorded.recorded_at).total_seconds())
            self.apply_delay.observe(delay)
            self.last_apply_ms = round(delay * 1000, 3)

    def _observe_membership(self, nodes: list[NodeRecord]) -> None:
        self.cell.observe_epochs({n.node_id: n.boot_epoch for n in nodes if n.node_id != self.node_id},
                                 time.monotonic())

    async def _maintain(self) -> None:
        """Prune what can no longer count, forget nodes gone for good, learn peers' newest boots."""
        while True:
            await sleep_to_tick(self.settings.heartbeat_interval)  # (with the heartbeat's)
            try:
                self._observe_membership(self.membership.nodes)
                self._prune()
                if self.leader.is_leader:
                    await self.dead_boots.take_over()
                    await self.dead_boots.remove_rows()
                else:  # a leader that is the dead node's own next boot holds no orphan of it
                    fallback = FALLBACK_TICKS * self.settings.heartbeat_interval
                    await self.dead_boots.take_over(time.monotonic() - fallback)
            except DatabaseUnavailable as exc:  # the next tick retries; the orphans count meanwhile
                log.debug("cannot append dead boots' usage yet: %s", exc.message)
            except Exception:
                log.exception("cluster maintenance failed")

    def _prune(self) -> None:
        self.meter.forget_old_windows()
        self.meter.rounds.forget({self.node_id, *self.participants()})
        current = int(time.time() // WINDOW)
        v = view.prune(self.cell.value, min_window_start={RATE_WINDOW: current - 1},
                       durable=self.projector.usage.durable_seq)
        # silent for a few timeouts and no longer heartbeating: its claims and reservations died with
        # it (its usage not yet in the log stays, as an orphan). A peer still in cluster_nodes is alive
        # (partitioned, or this node was the one paused: forgetting its claims here would make a
        # resumed node take itself for alone)
        now = time.monotonic()
        alive = [n.node_id for n in self.membership.alive_peers()]
        v = view.forget_silent(v, now=now, after=self.settings.node_timeout * 3, keep=alive)
        self.cell.value = view.expire_orphans(v, now=now, after=self.orphan_ttl)
        if self.gossip is not None:  # and what gossip kept of them (the same horizon)
            self.gossip.forget_silent_peers(self.settings.node_timeout * 3, keep=alive, targets=self.gossip_targets())

    # --- reporting ---------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Written to cluster_nodes.info by every heartbeat (read by `shieldes cluster status`)."""
        return {
            "state": self.serving,  # starting | serving | draining (cluster/status.py)
            "leader": self.leader.is_leader,
            "leader_epoch": self.leader.epoch,
            "alive": self.alive_count(),
            "listener": self.listener.state,
            "lag": self.projector.lag,
            "gossip": self._gossip_info(),
            "deployments": self.deployment_report(),
            "region": self.settings.region,
            "requests": self.request_totals() if self.request_totals is not None else None,
            "config_apply_ms": self.last_apply_ms,
            # rolling upgrades: writers refuse events this node cannot read (events/compat.py)
            "reads": reads_of(self.projector.projection.codec),
            "unreadable_events": self.projector.projection.unreadable_count,
            # `shieldes doctor` compares these across nodes: equal fingerprints, equal secrets
            "secrets": {
                "cluster": fingerprint(self.settings.cluster_secret, "cluster"),
                "cluster_generated": (self.settings.cluster_secret or "").startswith(GENERATED_SECRET_PREFIX),
                "encryption": self._keyring.key_id(),
            },
        }

    def deployment_report(self) -> dict[str, dict[str, Any]]:
        """Per deployment: the merged health view, this node's effective weight and traffic."""
        return deployment_report(self.projector.config.providers.values(), merge_health(self.health_views()),
                                 self.traffic())

    def _gossip_info(self) -> dict[str, Any] | None:
        """Gossip counters, their rates over the last 10 s (sampled every heartbeat) and the
        measured convergence time (cluster/measures.py)."""
        if self.gossip is None:
            return None
        st = self.gossip.stats
        self.gossip_rates.sample((st.sent + st.received, st.sent_bytes + st.received_bytes))
        rates = self.gossip_rates.per_second()
        converged = self.convergence.seconds()
        return {**st.to_dict(),
                "messages_per_s": round(rates[0], 3) if rates else None,
                "bytes_per_s": round(rates[1], 1) if rates else None,
                "convergence_ms": round(converged * 1000, 3) if converged is not None else None}

    def status(self) -> dict[str, Any]:
        return {
            "alive": self.alive_count(),
            "leader": self.leader.is_leader,
            "listener": self.listener.state,
            "gossip": self.gossip is not None,
        }
