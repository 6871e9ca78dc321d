"""Composition root: one Node built from Settings, its parts started and stopped in order.

start(): database URL (embedded Postgres by default) -> pool -> schema check (refuses a database
not at the alembic head, naming the command to run) -> projector catch-up -> log poller ->
usage flusher -> providers' upstream client -> HTTP. stop(): stop accepting, let in-flight
requests and streams finish (bounded by Settings.shutdown_grace), final usage flush, close.

Every part is an object with `start()`/`stop()` held as an attribute, so a cluster layer can add
its own (LISTEN/NOTIFY listener, gossip, membership, leader) with `node.add_part(part)`; extra
parts start after the flusher and before HTTP, and stop in reverse order.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, Protocol

from psycopg_pool import AsyncConnectionPool

from shieldes import __version__, db
from shieldes.checks import (
    partial_oidc_lines,
    referenced_env_names,
    startup_report,
    unknown_setting_lines,
    weak_secret_lines,
)
from shieldes.client_address import parse_networks
from shieldes.cluster.gauges import RoutingGauges
from shieldes.cluster.leader import Leader
from shieldes.cluster.membership import claim_boot_epoch
from shieldes.cluster.meter import ClusterMeter
from shieldes.cluster.runtime import ClusterRuntime
from shieldes.dbwait import DbWait
from shieldes.events.pg_store import PostgresEventStore, open_pool
from shieldes.gateway import client_trace, ops_metrics
from shieldes.gateway.admin.context import AdminContext
from shieldes.gateway.admin.oidc import OidcLogin
from shieldes.gateway.admin.sign_in_limit import SignInCollector, SignInLimit
from shieldes.gateway.app import build_app
from shieldes.gateway.config_check import ConfigWatch
from shieldes.gateway.metrics import Metrics
from shieldes.gateway.metrics_port import MetricsListener
from shieldes.gateway.observe import IN_FLIGHT, InFlight, Observer
from shieldes.gateway.server import HttpServer
from shieldes.gateway.service import Gateway
from shieldes.gateway.tls import ServedCertificate
from shieldes.log_poller import DB_CALL_TIMEOUT, LogPoller, database_answers
from shieldes.loop_lag import LoopLagProbe
from shieldes.projections.keytable import warm
from shieldes.projections.projector import Projection, Projector
from shieldes.providers.registry import build_providers, close_providers, open_client
from shieldes.providers.transport import UpstreamClient
from shieldes.requestlog.capture import Capture
from shieldes.requestlog.writer import RequestLogWriter, upkeep_loop
from shieldes.responses.conversation_store import ConversationTable
from shieldes.responses.conversations import Conversations
from shieldes.responses.runs import BackgroundRuns
from shieldes.responses.service import ResponseStore
from shieldes.responses.store import ResponseTable
from shieldes.secrets import NodeKeyring
from shieldes.settings import Settings
from shieldes.settings_env import dotenv_names, known_env_names
from shieldes.snapshots.codec import mac_key
from shieldes.snapshots.loader import load_projection
from shieldes.snapshots.prefetch import SnapshotPrefetch
from shieldes.snapshots.scheduler import CompactionScheduler, SnapshotScheduler
from shieldes.tasks import cancel_and_wait
from shieldes.tracing import Tracing
from shieldes.usage.flusher import Flusher
from shieldes.usage.meter import Meter

log = logging.getLogger(__name__)


class Part(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Node:
    """One gateway node. Public attributes after start(): settings, node_id, boot_epoch, database_url,
    pool, store, projector, meter, flusher, poller, gateway, responses, metrics, upstream client, request_log,
    tracing, http, port."""

    def __init__(self, settings: Settings, *, reuse_port: bool = False,
                 prefetch: SnapshotPrefetch | None = None, report: bool = True) -> None:
        self.settings = settings
        self.report = report  # log what is configured and missing at start (one worker of several does)
        self._prefetch = prefetch  # the newest snapshot, decoding since before this module was imported
        self.node_id = settings.node_id
        self.reuse_port = reuse_port
        self.metrics = Metrics()
        self.boot_epoch = 0  # this boot's identity: gossip component, usage flushes (node, boot epoch, seq)
        self.keyring = NodeKeyring(settings)  # provider-key decryption, shared by gateway and reports
        self.database_url = ""
        self.database: db.Lease | db.ExternalDatabase | None = None  # released (last user stops it) in stop()
        self.pool: AsyncConnectionPool[Any] | None = None
        self.store: PostgresEventStore | None = None
        self.projector: Projector | None = None
        self.meter: Meter | None = None
        self.flusher: Flusher | None = None
        self.poller: LogPoller | None = None
        self.gateway: Gateway | None = None
        self.responses: ResponseStore | None = None
        self.background: BackgroundRuns | None = None
        self.upstream: UpstreamClient | None = None
        self.http: HttpServer | None = None
        self.metrics_listener: MetricsListener | None = None
        self.request_log: RequestLogWriter | None = None
        self.tracing: Tracing | None = None
        self.extra_parts: list[Part] = []
        self.admin: AdminContext | None = None  # the admin API's and console's parts (started with the node)
        self.cluster: ClusterRuntime | None = None  # listener, membership, gossip, leader
        # the bound of every request's wait on Postgres (conversations, stored responses, admin writes)
        self.db_wait = DbWait(settings.db_request_timeout)
        self.db_read_wait = DbWait(settings.db_admin_read_timeout)  # the admin API's reads: a longer bound
        self._warm: asyncio.Task[Any] | None = None
        self.loop_lag: LoopLagProbe | None = None
        self.state = "new"  # new | starting | running | stopping | stopped
        self.stopped = asyncio.Event()
        # set by SIGTERM/SIGINT (cli/serve_cmd.py) or by the node itself: a newer boot of its node id took over
        self.stop_requested = asyncio.Event()

    def add_part(self, part: Part) -> None:
        """Register a part (cluster listener, gossip, ...) before start()."""
        self.extra_parts.append(part)

    @property
    def port(self) -> int:
        return self.http.port if self.http is not None else self.settings.port

    @property
    def in_flight(self) -> InFlight:
        """The requests being handled, and how many were ever begun (once started)."""
        assert self.http is not None, "the node is not started"
        return self.http.app[IN_FLIGHT]

    def activity(self) -> int:
        """Requests begun plus reads of request bytes, ever: the same over an interval, and nothing
        in flight, the node was idle through it (a body still arriving is not idle)."""
        http = self.http
        assert http is not None, "the node is not started"
        return http.app[IN_FLIGHT].started + (http.front.reads if http.front is not None else 0)

    async def _open_database(self) -> None:
        s = self.settings
        notice = db.legacy_data_dir_notice(s)
        if notice:
            log.warning("%s", notice)
        database = self.database = await asyncio.to_thread(db.acquire, s, f"serve {self.node_id}")
        self.database_url = database.url
        self.pool = open_pool(self.database_url, size=s.db_pool_size, name=f"shieldes-{self.node_id}")
        try:
            await self.pool.open(wait=True, timeout=DB_CALL_TIMEOUT)
            async with self.pool.connection() as conn:
                revision = await db.async_schema_revision(conn)
        except Exception as exc:
            await self._close_pool()
            raise db.translate(exc, self.database_url) from exc
        try:
            db.require_head(revision)
        except Exception:
            await self._close_pool()
            raise
        self.store = PostgresEventStore(self.pool, node_timeout=self.settings.node_timeout)

    async def _load(self) -> Projection:
        """Newest verified snapshot + the tail; falls back to older snapshots or a full replay."""
        assert self.pool is not None
        prefetch, self._prefetch = self._prefetch, None  # the first load only: a reload reads afresh
        return await load_projection(self.pool, node_id=self.node_id,
                                     snapshot_key=mac_key(self.settings.cluster_secret), prefetch=prefetch)

    async def start(self) -> None:
        s = self.settings
        self.state = "starting"
        # first: a missing optional extra is refused before anything is started
        self.tracing = Tracing(s.otel_endpoint, service_name=s.otel_service_name, node_id=self.node_id,
                               scheme="https" if s.tls_cert else "http",
                               trusted_proxies=parse_networks(s.trusted_proxies)) if s.otel_endpoint else None
        # a wrong file is refused before the log is loaded
        tls = ServedCertificate.of(s.tls_cert, s.tls_key, s.tls_reload_interval)
        await self._open_database()
        assert self.store is not None
        assert self.pool is not None
        try:
            # newest verified snapshot + the tail; falls back to older snapshots or a full replay
            self.projector = Projector(self.store, await self._load(), reload=self._load)
            await self.projector.catch_up()
        except Exception as exc:
            await self._close_pool()
            raise db.translate(exc, self.database_url) from exc
        # A fresh boot epoch, above any this node id used in the log or in cluster_nodes.
        used = self.projector.usage.node_seqs.get(self.node_id, {})
        try:
            self.boot_epoch = await claim_boot_epoch(self.pool, self.node_id, max(used, default=0) + 1,
                                                     __version__)
        except Exception as exc:
            await self._close_pool()
            raise db.translate(exc, self.database_url) from exc
        self.meter = ClusterMeter(self.node_id, self.boot_epoch, buffer_max=s.usage_buffer_max)
        watch = ConfigWatch(os.environ)
        watch.check(self.projector.config)
        self.poller = LogPoller(self.projector, self.meter, s.poll_interval, reload=self._load, config_watch=watch)
        projector, meter = self.projector, self.meter
        self.metrics.watch_log(meter.buffered, lambda: projector.lag)
        self.flusher = Flusher(self.store, self.meter, s.flush_interval, on_flushed=self.poller.kick)
        self.poller.flush_now = self.flusher.wake
        await self.poller.start()
        await self.flusher.start()
        assert self.pool is not None
        self.cluster = ClusterRuntime(s, database_url=self.database_url, pool=self.pool,
                                      projector=self.projector, meter=self.meter, wake=self.poller.kick,
                                      registry=self.metrics.registry, boot_epoch=self.boot_epoch)
        self.cluster.stop_node = self.stop_requested.set
        self._leader_duties(self.cluster.leader)
        await self.cluster.start()
        for part in self.extra_parts:
            await part.start()
        # trace context upstream: the attempt span's with tracing on, else the client's own as it came
        self.upstream = open_client(self.tracing.inject_headers if self.tracing else client_trace.inject,
                                    self.settings.max_upstream_body_bytes)
        self.gateway = Gateway(s, self.projector, self.meter, build_providers(self.upstream, s), self.metrics,
                               keyring=self.keyring)
        self.gateway.tracing = self.tracing
        self.cluster.attach_gateway(self.gateway)
        self.cluster.request_totals = self.metrics.request_totals
        ops_metrics.register(self.metrics.registry, self.gateway, self.cluster, s.usage_buffer_max)
        self.metrics.registry.register(RoutingGauges(self.cluster))
        admin = AdminContext(s, self.node_id, self.projector, self.gateway, self.pool, self.readiness,
                             database_url=self.database_url, cluster=self.cluster,
                             oidc=OidcLogin.from_settings(s), db_wait=self.db_wait,
                             db_read_wait=self.db_read_wait,
                             sign_in=SignInLimit(s.admin_sign_in_failures, s.admin_sign_in_failures_total),
                             trusted_proxies=parse_networks(s.trusted_proxies))
        self.admin = admin
        self.metrics.registry.register(SignInCollector(admin.sign_in))
        self.responses = ResponseStore(ResponseTable(self.pool), s, self.db_wait)
        responses = self.responses
        self.metrics.watch_stored_responses(lambda: responses.pending, lambda: responses.pending_bytes,
                                            lambda: responses.stalls, lambda: responses.dropped)
        self.metrics.watch_stored_histories(lambda: responses.continued, lambda: responses.histories_weight)
        await self.responses.start()
        self.background = BackgroundRuns(ResponseTable(self.pool), self.node_id, s.responses_background_max,
                                         s.db_request_timeout)
        await self.background.start(self.boot_epoch)
        self.metrics.watch_background_responses(self.background.running)
        capture = self._capture()
        self.request_log = self._request_log(capture)
        if self.request_log is not None:
            await self.request_log.start()
        observer = Observer(self.metrics, self.node_id, sink=self.request_log.add if self.request_log else None,
                            capture=capture, access=s.access_log, tracing=self.tracing,
                            trusted_proxies=admin.trusted_proxies)
        self.http = HttpServer(build_app(self.gateway, self.readiness, admin, self.responses,
                                         Conversations(ConversationTable(self.pool), self.db_wait), self.background,
                                         observer),
                               s.host, s.port, reuse_port=self.reuse_port, grace=s.shutdown_grace,
                               tls=tls.front if tls is not None else None)
        await self.http.start()
        if s.metrics_port is not None:  # this process's own /metrics (one per `serve --workers` worker)
            self.metrics_listener = MetricsListener(s.host, s.metrics_port, self.metrics.render_for, self.readiness)
            await self.metrics_listener.start()
        if tls is not None:
            self.metrics.watch_tls("api", tls)
        if self.cluster.gossip is not None and self.cluster.gossip.certificates is not None:
            self.metrics.watch_tls("gossip", self.cluster.gossip.certificates)
        in_flight = self.http.app[IN_FLIGHT]
        self.loop_lag = LoopLagProbe(self.metrics.loop_lag.observe, lambda: in_flight.count)
        self.loop_lag.start()
        self.cluster.http_started(self.port)
        self.state = "running"
        log.info("node %s serving on %s:%d (boot epoch %d, log position %d)",
                 self.node_id, s.host, self.port, self.boot_epoch, self.projector.position)
        if self.report:
            self._report()
        # keys loaded from a snapshot's columns index their ids and names on first use: do it now,
        # off the event loop, instead of in the first requests (searched until then, not wrong)
        config = self.projector.config
        self._warm = asyncio.create_task(asyncio.to_thread(warm, config.keys, config.key_ids_by_name))

    def _report(self) -> None:
        """Say at startup what is configured and, loudly, what is missing."""
        assert self.projector is not None and self.gateway is not None and self.cluster is not None
        config, prices = self.projector.config, self.gateway.prices
        configured, missing = startup_report(
            config, keyring=self.keyring(), environ=os.environ,
            priced=lambda m: prices.priced(config.pricing, m),
            peers=len(self.cluster.membership.alive_peers()), gossip=self.cluster.gossip is not None,
            bootstrap_token=bool(self.settings.admin_token), oidc=OidcLogin.from_settings(self.settings) is not None,
        )
        missing += weak_secret_lines(self.settings.admin_token, self.settings.oidc_client_secret)
        missing += partial_oidc_lines(self.settings.oidc_issuer, self.settings.oidc_client_id,
                                      self.settings.oidc_client_secret)
        known = known_env_names() | referenced_env_names(config)  # (an `env:` reference is the operator's own name)
        missing += unknown_setting_lines([*os.environ, *dotenv_names()], known)
        for line in configured:
            log.info("configured %s", line)
        for line in missing:
            log.warning("MISSING: %s", line)

    def _request_log(self, capture: Capture | None) -> RequestLogWriter | None:
        s = self.settings
        if not s.request_log:
            return None
        assert self.pool is not None
        writer = RequestLogWriter(self.pool, self.node_id, capacity=s.request_log_buffer,
                                  interval=s.request_log_interval, capture=capture)
        self.metrics.watch_request_log(lambda: len(writer.buffer), lambda: writer.dropped, lambda: writer.written)
        return writer

    def _capture(self) -> Capture | None:
        s, gateway = self.settings, self.gateway
        if s.capture_bodies == "off":
            return None
        known = gateway.known_secrets if gateway is not None else tuple
        return Capture(s.capture_bodies, s.capture_max_bytes, s.capture_redact, known)

    def _leader_duties(self, leader: Leader) -> None:
        """Snapshots and compaction run only on the leader, fenced by the epoch it was elected with."""
        s, pool, projector = self.settings, self.pool, self.projector
        assert pool is not None and projector is not None
        leader.add_leader_task("snapshots", lambda: SnapshotScheduler(
            pool, lambda: projector, settings=s, node_id=self.node_id, leader_epoch=leader.epoch,
            moved=projector.wait_for).run())
        leader.add_leader_task("compaction", lambda: CompactionScheduler(
            pool, settings=s, node_id=self.node_id, leader_epoch=leader.epoch).run())
        if s.request_log:
            leader.add_leader_task("request-log-upkeep", lambda: upkeep_loop(
                pool, s.request_log_retention, s.request_log_upkeep_interval))

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """/ready: 503 only while starting (not yet caught up with the log) or draining; a node that
        serves answers 200, with `degraded: true` while the database is unreachable (it serves from
        memory then: an outage must not empty a load balancer). /health is liveness."""
        p, poller, meter = self.projector, self.poller, self.meter
        flusher = self.flusher
        # an answer from the database (a page read, a flush) after the last failed poll means it is
        # back, even while a poll begun during the outage still waits for its read to be cancelled
        answered_at = max(p.read_at if p else 0.0, flusher.ok_at if flusher is not None else 0.0)
        polled_ok = poller is not None and database_answers(
            poller.db_ok, poller.failed_at, poller.polling_since, answered_at, time.monotonic(),
            poller.first_read_timeout)
        db_ok = polled_ok and (flusher is None or flusher.healthy)
        lag = p.lag if p else 0
        serving = self.state == "running"
        if not serving:
            status = self.state
        elif not db_ok:
            status = "degraded"
        elif lag:
            status = "catching_up"
        else:
            status = "ready"
        info = {
            "ready": serving,
            "degraded": serving and not db_ok,
            "status": status,
            "node_id": self.node_id,
            "position": p.position if p else 0,
            "lag": lag,
            "database": "ok" if db_ok else "unreachable",
            "unflushed_usage_deltas": meter.buffered() if meter else 0,
            "unreadable_events": [u.as_dict() for u in p.projection.unreadable] if p else [],
            "cluster": self.cluster.status() if self.cluster else None,
        }
        return serving, info

    async def stop(self) -> None:
        """Graceful: stop accepting, drain requests and streams, final flush, close everything."""
        if self.state in ("stopping", "stopped"):
            await self.stopped.wait()
            return
        self.state = "stopping"
        if self.cluster is not None:
            self.cluster.draining()
        await cancel_and_wait(self._warm)
        if self.loop_lag is not None:
            await self.loop_lag.stop()
        # The request log's and the traces' last writes run while the rest stops, each bounded on
        # its own, so a database outage does not add their timeouts to the usage flush's.
        side: list[asyncio.Task[Any]] = []
        try:
            if self.http is not None:  # background runs finish (or fail) within the grace, as requests do
                await asyncio.gather(self.http.stop(), self._drain_background())
            else:
                await self._drain_background()
            await self.db_wait.stop()  # operations that outlived their request's wait, cancelled
            await self.db_read_wait.stop()
            if self.upstream is not None:
                await self.upstream.close()
            if self.gateway is not None:
                await close_providers(self.gateway.providers)
            if self.request_log is not None:  # every drained request has its record by now
                side.append(asyncio.create_task(
                    self.request_log.stop(timeout=max(5.0, self.settings.shutdown_grace))))
            if self.tracing is not None:  # export the last spans (bounded by the exporter's timeout)
                side.append(asyncio.create_task(asyncio.to_thread(self.tracing.shutdown)))
            if self.responses is not None:
                await self.responses.stop()  # after the last stream ended: its response is queued
            for part in reversed(self.extra_parts):
                await part.stop()
            if self.poller is not None:
                await self.poller.stop()
            if self.flusher is not None:
                await self.flusher.stop(timeout=max(5.0, self.settings.shutdown_grace))
            await asyncio.gather(*side, return_exceptions=True)
            if self.cluster is not None:
                await self.cluster.stop()  # leave the cluster last
        finally:
            if self.metrics_listener is not None:  # scraped while the node drained, as its readiness was
                await self.metrics_listener.stop()
                self.metrics_listener = None
            await asyncio.gather(*side, return_exceptions=True)
            await self._close_pool()
            self.state = "stopped"
            self.stopped.set()

    async def _drain_background(self) -> None:
        if self.background is not None:
            await self.background.drain(self.settings.shutdown_grace)
            await self.background.stop()

    async def _close_pool(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None
        if self.database is not None:
            database, self.database = self.database, None
            try:
                if await asyncio.to_thread(database.release):
                    log.info("stopped the embedded Postgres: this node was its last user")
            except Exception as exc:
                log.warning("could not stop the embedded Postgres: %s", exc)
