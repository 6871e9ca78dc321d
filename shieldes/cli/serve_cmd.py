"""`shieldes serve`: run one node, or N worker processes sharing the port (SO_REUSEPORT)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import secrets
import signal
import subprocess
import sys
import tempfile
from collections.abc import Coroutine
from functools import partial
from pathlib import Path
from typing import Any

import click

from shieldes import db, logformat
from shieldes.cli.common import cli_context
from shieldes.cli.oneline import OneLineCommand, handle_errors
from shieldes.cli.workers import Supervisor, Worker, stop_with_parent
from shieldes.errors import ShieldesError
from shieldes.malloc import IdleTrim, keep_freed_memory
from shieldes.open_files import FEW_OPEN_FILES, raise_soft_limit
from shieldes.secrets import GENERATED_SECRET_PREFIX
from shieldes.settings import Settings
from shieldes.snapshots.codec import mac_key
from shieldes.snapshots.prefetch import SnapshotPrefetch

log = logging.getLogger(__name__)


def _run(coro: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:  # uvloop is optional (not on Windows)
        asyncio.run(coro)
    else:
        uvloop.run(coro)


async def serve_node(settings: Settings, *, reuse_port: bool = False, ready_file: Path | None = None,
                     report: bool = True) -> None:
    """Run a node until SIGTERM/SIGINT, then shut it down gracefully."""
    # With a database named up front, the newest snapshot is fetched and decoded while the node's
    # modules are imported (the embedded one is started by the node first). The cyclic GC is off
    # until the node is up: both build many long-lived objects and no cycles worth collecting.
    gc.disable()
    prefetch = SnapshotPrefetch(db.libpq_url(settings.database_url), mac_key(settings.cluster_secret)) \
        if settings.database_url else None
    from shieldes.gateway.app import tune_gc
    from shieldes.node import Node

    node = Node(settings, reuse_port=reuse_port, prefetch=prefetch, report=report)
    stop = node.stop_requested  # a signal, or the node superseded by a newer boot of its node id
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await node.start()
    except BaseException:
        await node.stop()
        raise
    finally:
        gc.enable()
    tune_gc()  # a process-wide choice, so the process owner makes it: after startup, before load
    keep_freed_memory()  # (the same: large request bodies reuse the heap instead of faulting it in)
    in_flight = node.in_flight
    trim = IdleTrim(settings.memory_trim_interval, node.activity, lambda: in_flight.count)
    trim.start()  # (and when it stops reusing it, hands it back)
    say = partial(logformat.announcement, settings.log_format)
    scheme = "https" if settings.tls_cert else "http"
    click.echo(say(f"shieldes node {node.node_id} listening on {scheme}://{settings.host}:{node.port}"), err=True)
    if ready_file is not None:  # a worker of `serve --workers` (cli/workers.py)
        ready_file.touch()
    await stop.wait()
    await trim.stop()
    click.echo(say(f"shieldes node {node.node_id}: shutting down (draining, flushing usage)"), err=True)
    await node.stop()


def _raise_open_files() -> None:
    """Every connection is an open file: serve under the highest limit the process may have."""
    limits = raise_soft_limit()
    if limits is None:
        return
    before, after = limits
    if after != before:
        log.info("open files limit raised from %d to %d (the hard limit)", before, after)
    if after < FEW_OPEN_FILES:
        log.warning("open files limit is %d (the hard limit): each stream holds two (client and upstream), "
                    "so about %d concurrent streams fit; raise it (`ulimit -Hn`, systemd LimitNOFILE=, "
                    "docker run --ulimit nofile=N:N)", after, after // 2)


def _workers(settings: Settings, n: int) -> None:
    """Start N processes, each a full node `<node-id>-wK` on the same port; forward signals."""
    # Resolve the database once (this starts the embedded Postgres if needed) and share it; this
    # process holds it until the workers are gone, then releases it (the last user stops it).
    database = db.acquire(settings, f"serve --workers {n}")
    try:
        _run_workers(settings, n, database.url)
    finally:
        database.release()


def _run_workers(settings: Settings, n: int, url: str) -> None:
    env = dict(os.environ)
    env["SHIELDES_DATABASE_URL"] = url
    if not settings.cluster_secret:
        # the workers are one cluster: without a shared gossip secret each would enforce limits as
        # limit / workers; a secret known only to them is enough, since they are all ours
        env["SHIELDES_CLUSTER_SECRET"] = GENERATED_SECRET_PREFIX + secrets.token_urlsafe(32)
        log.info("SHIELDES_CLUSTER_SECRET is not set: generated one for these %d workers", n)
    env["SHIELDES_HOST"] = settings.host
    env["SHIELDES_LOG_FORMAT"] = settings.log_format  # `serve --json` too
    env["SHIELDES_PORT"] = str(settings.port)

    def start(worker: Worker) -> subprocess.Popen[bytes]:
        k = worker.number
        gossip = settings.gossip_port + k - 1 if settings.gossip_port else 0
        worker_env = dict(env, SHIELDES_NODE_ID=f"{settings.node_id}-w{k}", SHIELDES_GOSSIP_PORT=str(gossip))
        if settings.metrics_port is not None:  # each worker's own /metrics, scraped one by one
            worker_env["SHIELDES_METRICS_PORT"] = str(settings.metrics_port + k - 1 if settings.metrics_port else 0)
        cmd = [sys.executable, "-m", "shieldes", "serve", "--reuse-port", "--ready-file", str(worker.ready_file)]
        if k > 1:  # the workers share their settings and database: worker 1's start-up report is theirs
            cmd.append("--no-report")
        return subprocess.Popen(cmd, env=worker_env)

    with tempfile.TemporaryDirectory(prefix="shieldes-workers-") as tmp:
        code = Supervisor(start, [Worker(k, Path(tmp) / f"w{k}.ready") for k in range(1, n + 1)]).run()
    if code:
        sys.exit(code)


@click.command("serve", cls=OneLineCommand)
@click.option("--port", type=click.IntRange(0, 65535), help="HTTP port (SHIELDES_PORT, default 8080)")
@click.option("--gossip-port", type=click.IntRange(0, 65535), help="gossip port (SHIELDES_GOSSIP_PORT)")
@click.option("--metrics-port", type=click.IntRange(0, 65535),
              help="also serve /metrics, /health and /ready on this port (SHIELDES_METRICS_PORT); with "
                   "--workers N, worker K on this port + K - 1")
@click.option("--node-id", help="unique node name (SHIELDES_NODE_ID, default host-pid)")
@click.option("--host", help="address to bind (SHIELDES_HOST, default 0.0.0.0)")
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True,
              help="processes sharing the port, each a full node named <node-id>-wK")
@click.option("--reuse-port", is_flag=True, hidden=True)
@click.option("--ready-file", type=click.Path(path_type=Path), hidden=True)  # (a worker says it serves)
@click.option("--no-report", is_flag=True, hidden=True)  # (a worker past the first: worker 1 reports for all)
@click.option("--json", "as_json", is_flag=True,
              help="log in JSON, one object a line (SHIELDES_LOG_FORMAT=json); a refusal to start as JSON")
@handle_errors
def serve(port: int | None, gossip_port: int | None, metrics_port: int | None, node_id: str | None, host: str | None,
          workers: int, reuse_port: bool, ready_file: Path | None, no_report: bool, as_json: bool) -> None:
    """Run a gateway node: the OpenAI-compatible HTTP API on --port."""
    ctx = cli_context()
    updates: dict[str, Any] = {"log_format": "json"} if ctx.as_json else {}
    if port is not None:
        updates["port"] = port
    if gossip_port is not None:
        updates["gossip_port"] = gossip_port
    if metrics_port is not None:
        updates["metrics_port"] = metrics_port
    if node_id:
        updates["node_id"] = node_id
    if host:
        updates["host"] = host
    settings = ctx.settings.model_copy(update=updates)
    logformat.configure(settings.log_format, getattr(logging, settings.log_level.upper()))
    _raise_open_files()
    if workers > 1:
        if settings.port == 0:
            raise ShieldesError("--workers needs a fixed --port (the workers share it)")
        if settings.metrics_port is None:
            log.warning("serve --workers %d without --metrics-port (SHIELDES_METRICS_PORT): a scrape of /metrics on "
                        "port %d reaches one worker at a time, so its series jump between workers; set it to "
                        "scrape each worker on a port of its own", workers, settings.port)
        gc.enable()  # a supervisor that runs for as long as its workers (the CLI starts with it off)
        _workers(settings, workers)
        return
    if ready_file is not None:  # a worker of `serve --workers`
        stop_with_parent()
    with contextlib.suppress(KeyboardInterrupt):
        _run(serve_node(settings, reuse_port=reuse_port, ready_file=ready_file, report=not no_report))
