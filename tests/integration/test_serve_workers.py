"""`shieldes serve --workers 2` with no SHIELDES_CLUSTER_SECRET: the workers share a generated
secret, gossip, and together admit a key's whole --rpm (within the cluster bound); every 429
agrees with its headers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shieldes.usage.admission import WINDOW
from tests import cli
from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import UPSTREAM_KEY, UPSTREAM_KEY_ENV
from tests.ports import free_ports

ROOT = Path(__file__).resolve().parents[2]


async def wait_ready(url: str, proc: subprocess.Popen[str]) -> None:
    """Until `url` answers 200 (a connection refused while no worker listens yet), bounded."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as client:
        for _ in range(300):
            with contextlib.suppress(aiohttp.ClientConnectionError):
                async with client.get(url) as resp:
                    if resp.status == 200:
                        return
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never answered 200")


@pytest.mark.timeout(240)
async def test_workers_share_a_generated_secret_and_admit_the_limit(database_url: str) -> None:
    async with FakeUpstream(api_key=UPSTREAM_KEY) as up:
        await asyncio.to_thread(cli.ok, database_url, "provider", "add", "openai", "--type", "openai",
                                "--base-url", up.url, "--api-key-env", UPSTREAM_KEY_ENV, "--models", "gpt-4o-mini")
        key = (await asyncio.to_thread(cli.ok, database_url, "key", "create", "--name", "six", "--rpm", "6"))["key"]
        port, gossip, _ = free_ports(3)  # one pick: two separate picks may overlap
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHIELDES_")}
        env.update({"PYTHONPATH": str(ROOT), "SHIELDES_DATABASE_URL": database_url, UPSTREAM_KEY_ENV: UPSTREAM_KEY,
                    "SHIELDES_GOSSIP_INTERVAL": "0.05", "SHIELDES_HEARTBEAT_INTERVAL": "0.2",
                    "SHIELDES_NODE_ID": "wk", "SHIELDES_GOSIP_INTERVAL": "1"})  # (misspelt: warned about)
        proc = subprocess.Popen(
            [sys.executable, "-m", "shieldes", "serve", "--workers", "2", "--host", "127.0.0.1",
             "--port", str(port), "--gossip-port", str(gossip)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            # both workers up and each gossiping with the other
            async def gossiping() -> bool:
                rows = await asyncio.to_thread(
                    cli.sql, database_url,
                    "SELECT count(*) FROM cluster_nodes WHERE node_id LIKE 'wk-w%%'"
                    " AND (info->'gossip'->>'received')::int > 0 AND (info->'secrets'->>'cluster_generated')::bool")
                return bool(rows and rows[0][0] == 2)

            for _ in range(600):
                if await gossiping():
                    break
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the workers never gossiped with each other")
            # a worker gossips before its HTTP socket listens (`cluster status` says `starting`): wait until
            # one answers /ready
            await wait_ready(f"http://127.0.0.1:{port}/ready", proc)

            # rpm windows are fixed minutes: start early in one so the whole run stays inside it
            left = WINDOW - time.time() % WINDOW
            if left < 30:
                await asyncio.sleep(left + 0.2)
            window = int(time.time() // WINDOW)
            admitted, refused = 0, 0
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as client:
                for _ in range(60):  # bounded: each refusal either waits out a short retry or ends it
                    async with client.post(
                        f"http://127.0.0.1:{port}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
                    ) as resp:
                        body = await resp.json()
                    if resp.status == 200:
                        admitted += 1
                        continue
                    assert resp.status == 429, body
                    message = body["error"]["message"]
                    limit = resp.headers["x-ratelimit-limit-requests"]
                    remaining = int(resp.headers["x-ratelimit-remaining-requests"])
                    retry = resp.headers["retry-after"]
                    assert limit == "6" and f"{limit} requests per minute" in message
                    if remaining:
                        assert re.findall(r"\b(\d+) of 6\b", message) == [str(remaining)], (message, resp.headers)
                    else:
                        assert "all 6" in message, message
                    assert f"retry after {retry}s" in message, (message, retry)
                    if remaining == 0:
                        refused += 1
                        if refused == 2:
                            break
                        continue
                    await asyncio.sleep(float(retry))  # the protocol: another node holds the rest for now
            assert int(time.time() // WINDOW) == window, "the run crossed a rate-limit window"
            # never fewer than the limit (each worker alone would stop at 3); never past the cluster
            # bound, limit + nodes (docs/cluster.md)
            assert 6 <= admitted <= 6 + 2 and refused == 2, (admitted, refused)
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(proc.wait, 60)
        # the start-up report (what is configured, what is missing, unknown settings) once, by worker 1,
        # not once a worker; each worker says it listens
        log = proc.stderr.read() if proc.stderr else ""
        assert log.count("SHIELDES_GOSIP_INTERVAL") == 1 and "did you mean SHIELDES_GOSSIP_INTERVAL?" in log, log
        assert log.count("configured providers: openai") == 1, log
        assert len(re.findall(r"shieldes node wk-w[12] listening on", log)) == 2, log


def _workers_of(pid: int) -> dict[str, int]:
    """The worker processes of a `serve --workers` process: node id suffix (w1, ...) -> pid."""
    out = {}
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        if b"--ready-file" in cmdline:
            out[Path(cmdline[cmdline.index(b"--ready-file") + 1].decode()).stem.split(".")[0]] = int(child)
    return out


def _ready_dir_of(pid: int) -> Path:
    """The temporary directory of a `serve --workers` process's ready files."""
    child = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0]
    cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
    return Path(cmdline[cmdline.index(b"--ready-file") + 1].decode()).parent


def _all_ready(pid: int) -> bool:
    """Whether every worker of a `serve --workers` process is serving (has touched its ready file,
    which it does once it listens): a worker gossips before it listens."""
    files = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        if b"--ready-file" in cmdline:
            files.append(Path(cmdline[cmdline.index(b"--ready-file") + 1].decode()))
    return bool(files) and all(f.exists() for f in files)


def _serve_workers(database_url: str, node_id: str, port: int, gossip: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIELDES_")}
    env.update({"PYTHONPATH": str(ROOT), "SHIELDES_DATABASE_URL": database_url, UPSTREAM_KEY_ENV: UPSTREAM_KEY,
                "SHIELDES_GOSSIP_INTERVAL": "0.05", "SHIELDES_HEARTBEAT_INTERVAL": "0.2", "SHIELDES_NODE_ID": node_id})
    return subprocess.Popen(
        [sys.executable, "-m", "shieldes", "serve", "--workers", "2", "--host", "127.0.0.1",
         "--port", str(port), "--gossip-port", str(gossip)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


RESTART_DELAY = 1.0  # seconds before a worker that died is started again (docs/guarantees.md)


def _started_at(pid: int) -> float:
    """When a process started, on CLOCK_BOOTTIME (field 22 of /proc/<pid>/stat, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


async def _until(cond: object, what: str, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(cond):  # type: ignore[arg-type]
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


@pytest.mark.timeout(240)
async def test_a_crashed_worker_is_started_again_under_its_node_id(database_url: str) -> None:
    async with FakeUpstream(api_key=UPSTREAM_KEY) as up:
        await asyncio.to_thread(cli.ok, database_url, "provider", "add", "openai", "--type", "openai",
                                "--base-url", up.url, "--api-key-env", UPSTREAM_KEY_ENV, "--models", "gpt-4o-mini")
        key = (await asyncio.to_thread(cli.ok, database_url, "key", "create", "--name", "crash"))["key"]
        port, gossip, _ = free_ports(3)
        proc = _serve_workers(database_url, "wr", port, gossip)

        def epochs() -> dict[str, int]:
            rows = cli.sql(database_url, "SELECT node_id, boot_epoch FROM cluster_nodes WHERE node_id LIKE 'wr-w%%'"
                                         " AND (info->'gossip'->>'received')::int > 0")
            return {str(r[0]): int(r[1]) for r in rows}

        try:
            await _until(lambda: len(epochs()) == 2 and len(_workers_of(proc.pid)) == 2 and _all_ready(proc.pid),
                         "both workers", proc)
            before, pids = epochs(), _workers_of(proc.pid)
            killed = time.clock_gettime(time.CLOCK_BOOTTIME)  # the clock /proc's start times count in
            os.kill(pids["w1"], signal.SIGKILL)
            await _until(lambda: not Path(f"/proc/{pids['w1']}").exists(), "w1 gone (reaped by serve)", proc)
            # the other worker serves meanwhile (a connection the kernel queued at the killed worker's
            # socket is reset, as the SDKs' retries expect of a crash)
            async with aiohttp.ClientSession() as client:
                for attempt in range(5):
                    try:
                        async with client.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                                               headers={"Authorization": f"Bearer {key}"},
                                               json={"model": "gpt-4o-mini",
                                                     "messages": [{"role": "user", "content": "hi"}]}) as resp:
                            assert resp.status == 200, await resp.text()
                            break
                    except aiohttp.ClientOSError:
                        assert attempt < 4
            await _until(lambda: epochs().get("wr-w1", 0) > before["wr-w1"], "w1's next boot gossiping", proc)
            now = _workers_of(proc.pid)
            assert now["w2"] == pids["w2"] and now["w1"] != pids["w1"], (pids, now)
            # started again after the first restart delay (docs/guarantees.md), not at some later point
            took = _started_at(now["w1"]) - killed
            assert took < RESTART_DELAY + 1.0, f"w1 started again {took:.2f}s after its SIGKILL"
        finally:
            proc.send_signal(signal.SIGTERM)
            stderr = await asyncio.to_thread(lambda: proc.communicate(timeout=60)[1])
        assert proc.returncode == 0, stderr
        assert "worker 1 (pid" in stderr and "was killed by signal 9" in stderr, stderr


@pytest.mark.timeout(240)
async def test_a_worker_that_cannot_start_stops_serve(database_url: str) -> None:
    port, gossip, _ = free_ports(3)
    with socket.socket() as taken:  # worker 2's gossip port is in use: it cannot start
        taken.bind(("127.0.0.1", gossip + 1))
        taken.listen()
        proc = _serve_workers(database_url, "wf", port, gossip)
        try:
            stderr = await asyncio.to_thread(lambda: proc.communicate(timeout=120)[1])
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode != 0 and "worker 2 exited with code" in stderr, stderr


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.timeout(240)
async def test_workers_stop_when_serve_is_killed(database_url: str) -> None:
    port, gossip, _ = free_ports(3)
    proc = _serve_workers(database_url, "wo", port, gossip)
    serving = "SELECT 1 FROM cluster_nodes WHERE node_id LIKE 'wo-w%%' AND info->>'starting' IS NULL"
    pids: dict[str, int] = {}
    try:
        await _until(lambda: len(_workers_of(proc.pid)) == 2 and len(cli.sql(database_url, serving)) == 2,
                     "both workers serving", proc)
        pids = _workers_of(proc.pid)
        ready_dir = _ready_dir_of(proc.pid)
        proc.kill()  # nobody left to restart them or to hold the database for them: they stop
        proc.wait()
        deadline = time.monotonic() + 60
        while any(_running(pid) for pid in pids.values()):
            assert time.monotonic() < deadline, f"workers {pids} still running after serve was killed"
            await asyncio.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in pids.values():
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
        if pids:  # killed, serve could not remove its workers' ready files
            shutil.rmtree(ready_dir, ignore_errors=True)


@pytest.mark.timeout(240)
async def test_each_worker_is_scraped_on_its_own_metrics_port(database_url: str) -> None:
    """`serve --workers 2 --metrics-port M`: the shared port's /metrics reaches one worker at a
    time; worker K serves its own on M + K - 1, so the sum over the workers' ports counts every
    request the shared port took, and each port's /ready names its worker."""
    async with FakeUpstream(api_key=UPSTREAM_KEY) as up:
        await asyncio.to_thread(cli.ok, database_url, "provider", "add", "openai", "--type", "openai",
                                "--base-url", up.url, "--api-key-env", UPSTREAM_KEY_ENV, "--models", "gpt-4o-mini")
        key = (await asyncio.to_thread(cli.ok, database_url, "key", "create", "--name", "scraped"))["key"]
        port, gossip, _, metrics, _ = free_ports(5)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHIELDES_")}
        env.update({"PYTHONPATH": str(ROOT), "SHIELDES_DATABASE_URL": database_url, UPSTREAM_KEY_ENV: UPSTREAM_KEY,
                    "SHIELDES_NODE_ID": "wm"})
        proc = subprocess.Popen(
            [sys.executable, "-m", "shieldes", "serve", "--workers", "2", "--host", "127.0.0.1", "--port", str(port),
             "--gossip-port", str(gossip), "--metrics-port", str(metrics)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            await _until(lambda: _all_ready(proc.pid), "both workers serving", proc)
            sent = 12
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as client:
                for _ in range(sent):  # a new connection each: the kernel spreads them over the workers
                    async with client.post(
                            f"http://127.0.0.1:{port}/v1/chat/completions",
                            headers={"Authorization": f"Bearer {key}", "Connection": "close"},
                            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}) as resp:
                        assert resp.status == 200, await resp.text()
                counts, nodes = [], []
                for k in (1, 2):
                    async with client.get(f"http://127.0.0.1:{metrics + k - 1}/metrics") as resp:
                        assert resp.status == 200
                        counts.append(sum(s.value for f in text_string_to_metric_families(await resp.text())
                                          for s in f.samples if s.name == "shieldes_requests_total"
                                          and s.labels["route"] == "/v1/chat/completions"))
                    async with client.get(f"http://127.0.0.1:{metrics + k - 1}/ready") as resp:
                        assert resp.status == 200
                        nodes.append((await resp.json())["node_id"])
            assert nodes == ["wm-w1", "wm-w2"]
            assert sum(counts) == sent, counts
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(proc.wait, 60)
