"""Gateway benchmark: one load generator (wrk if installed, else a Python aiohttp generator)
against (1) the fake upstream directly, (2) a bare aiohttp pass-through proxy, (3) a shieldes node
with auth, rate limits, budgets and usage accounting on. JSON and streaming chat completions;
RPS, p50/p99 latency and server CPU per request (the proxy process only, from /proc); with
`--messages` Anthropic Messages, with `--responses` a Responses API event stream; `--only` picks modes;
`--token-delay` paces the upstream's text frames as real upstreams do (one read per token).

    python bench/bench_gateway.py [--duration 6] [--connections 32] [--repeat 3] [--out FILE]

With `--workers N` the node runs as `serve --workers N` and the bare proxy also runs as N processes
sharing a port (SO_REUSEPORT), so the report puts the machine's own cost of N processes (bare proxy,
1 against N) next to the node's (the `--baseline` node runs one worker: with the same tree, the
1-worker figure).

With `--baseline DIR` a node of another source tree runs beside it on a database of its own, in the
same Postgres server: that tree's own CLI (`python -m shieldes` with PYTHONPATH=DIR) migrates it and
adds the same providers and a key with the same limits and budget (bench/baseline_tree.py), so a
tree from before a migration runs on the schema its own code wants.

Needs Postgres: SHIELDES_BENCH_DATABASE_URL (a server URL; a fresh database is created in it, two
with --baseline, dropped at the end), else an embedded Postgres under $TMPDIR/shieldes-bench-pg.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import baseline_tree  # noqa: E402

BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello to the benchmark please"}]}
# Anthropic Messages (--messages): what Claude Code sends, relayed natively to an anthropic deployment.
MESSAGES_BODY = {"model": "claude-sonnet-4-5", "max_tokens": 256,
                 "messages": [{"role": "user", "content": "Say hello to the benchmark please"}]}
# Responses API (--responses): what Codex CLI and the Agents SDK stream, relayed to a native deployment.
RESPONSES_BODY = {"model": "gpt-4o", "input": "Say hello to the benchmark please", "stream": True}
CHAT_PATH, MESSAGES_PATH, RESPONSES_PATH = "/v1/chat/completions", "/v1/messages", "/v1/responses"


# --- a coding agent's turn (--agent-turns N): the conversation so far, N tool calls and their results,
# a long system prompt and a tool, as Claude Code, Codex CLI and chat-based agents send it each turn


def _file(i: int) -> str:
    return f"def handler_{i}(request):\n    return respond(request, status=200)\n" * 12


def agent_chat(body: dict[str, Any], turns: int) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a careful coding agent. " * 150}]
    for i in range(turns):
        messages.append({"role": "user", "content": f"Look at src/mod{i}.py and fix the failing test, please."})
        messages.append({"role": "assistant", "content": None, "tool_calls": [{"id": f"call_{i}", "type": "function",
                         "function": {"name": "shell", "arguments": f'{{"command": "cat src/mod{i}.py"}}'}}]})
        messages.append({"role": "tool", "tool_call_id": f"call_{i}", "content": _file(i)})
    messages += body["messages"]
    tool = {"type": "function", "function": {"name": "shell", "description": "run a shell command", "parameters": {
        "type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}}
    return {**body, "messages": messages, "tools": [tool]}


def agent_messages(body: dict[str, Any], turns: int) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    for i in range(turns):
        ask = {"type": "text", "text": f"Look at src/mod{i}.py and fix the failing test, please."}
        messages.append({"role": "user", "content": [ask] if i == 0 else [
            {"type": "tool_result", "tool_use_id": f"toolu_{i - 1}", "content": _file(i - 1)}, ask]})
        messages.append({"role": "assistant", "content": [{"type": "text", "text": "Let me read it."}, {
            "type": "tool_use", "id": f"toolu_{i}", "name": "shell", "input": {"command": f"cat src/mod{i}.py"}}]})
    messages.append({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": f"toolu_{turns - 1}", "content": _file(turns - 1)},
        {"type": "text", "text": body["messages"][0]["content"]}]})
    tool = {"name": "shell", "description": "run a shell command",
            "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}
    return {**body, "system": [{"type": "text", "text": "You are a careful coding agent. " * 150}],
            "messages": messages, "tools": [tool]}


def agent_responses(body: dict[str, Any], turns: int) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    for i in range(turns):
        items.append({"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": f"Look at src/mod{i}.py and fix the failing test, please."}]})
        items.append({"type": "function_call", "call_id": f"call_{i}", "name": "shell",
                      "arguments": f'{{"command": "cat src/mod{i}.py"}}'})
        items.append({"type": "function_call_output", "call_id": f"call_{i}", "output": _file(i)})
    items.append({"type": "message", "role": "user", "content": [{"type": "input_text", "text": body["input"]}]})
    tool = {"type": "function", "name": "shell", "description": "run a shell command", "parameters": {
        "type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}
    return {**body, "instructions": "You are a careful coding agent. " * 150, "input": items, "tools": [tool],
            "store": body.get("store", False)}
def with_image(body: dict[str, Any], path: str, kib: int) -> dict[str, Any]:
    """`body` with a `kib` KiB image (random bytes, base64) in its last user turn, where each API
    puts one: a screenshot an agent attached, carried in every turn after it."""
    data = base64.b64encode(random.Random(kib).randbytes(kib * 1024)).decode()
    if path == RESPONSES_PATH:
        text = body["input"] if isinstance(body["input"], str) else "Say hello to the benchmark please"
        items = [] if isinstance(body["input"], str) else body["input"][:-1]
        image = {"type": "input_image", "image_url": "data:image/png;base64," + data}
        return {**body, "input": [*items, {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": text}, image]}]}
    *before, last = body["messages"]
    if path == MESSAGES_PATH:
        parts = last["content"] if isinstance(last["content"], list) else [{"type": "text", "text": last["content"]}]
        image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}
    else:
        parts = [{"type": "text", "text": last["content"]}]
        image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + data}}
    return {**body, "messages": [*before, {**last, "content": [*parts, image]}]}


# the field that caps a stream's length in each API (--per-read)
TOKEN_LIMIT = {CHAT_PATH: "max_tokens", MESSAGES_PATH: "max_tokens", RESPONSES_PATH: "max_output_tokens"}


def per_read_modes(modes: list[tuple[str, dict[str, Any], str]], low: int, high: int,
                   ) -> list[tuple[str, dict[str, Any], str]]:
    """Each stream mode twice, as `MODE@LOW` and `MODE@HIGH`: streams of LOW and of HIGH tokens."""
    return [(f"{mode}@{n}", {**body, TOKEN_LIMIT[path]: n}, path)
            for mode, body, path in modes if body.get("stream") for n in (low, high)]


def connections_for(mode: str, connections: int, low: int, high: int, paced: bool) -> int:
    """Connections for a saturation run of `mode`. With --per-read and paced tokens, the streams of
    LOW tokens run from proportionally fewer connections, so both lengths run at about the same
    stream rate: the node's per-second work (usage flush, request-log batches) then falls on as many
    streams in each, and the slope between them is the relay's cost per token, not the rate's."""
    if not paced or not mode.endswith(f"@{low}"):
        return connections
    return max(1, round(connections * low / high))


def per_read_line(mode: str, low: int, high: int, cpu: dict[tuple[str, str], float], node: str, bare: str,
                  lean: str) -> str:
    """What a stream costs each target once (its CPU at LOW tokens) and per token beyond (the slope
    from LOW to HIGH tokens: with --token-delay every token is a read of its own)."""
    def split(label: str) -> tuple[float, float]:
        at_low, at_high = cpu[(f"{mode}@{low}", label)], cpu[(f"{mode}@{high}", label)]
        return at_low, (at_high - at_low) / (high - low)

    (n_low, n_read), (b_low, b_read), (l_low, l_read) = split(node), split(bare), split(lean)
    return (f"{mode}: per stream of {low} tokens node {n_low:.0f} us, bare proxy {b_low:.0f} ({n_low / b_low:.2f}x), "
            f"bare proxy on the node's client {l_low:.0f}; per token beyond: node {n_read:.1f} us, bare proxy "
            f"{b_read:.1f} ({n_read / b_read:.2f}x), bare proxy on the node's client {l_read:.1f}")


ANTHROPIC_VERSION = {"anthropic-version": "2023-06-01"}
TICKS = os.sysconf("SC_CLK_TCK")


# --- the bare pass-through proxy (what any aiohttp proxy must do at least) -------------------------


def run_proxy(port: int, upstream: str, lean: bool = False, reuse_port: bool = False) -> None:
    """`lean`: forward with the node's own upstream client (shieldes/providers/transport.py)
    instead of an aiohttp ClientSession: what is left between the two proxies and a node is the
    gateway's own work. `reuse_port`: share the port with other processes (SO_REUSEPORT)."""
    import aiohttp
    from aiohttp import web

    from shieldes.providers.transport import UpstreamClient
    from shieldes.providers.upstream_connection import Timeouts

    timeouts = Timeouts(connect=5, idle=600)

    def forwarded(request: web.Request) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if "anthropic-version" in request.headers:
            headers["anthropic-version"] = request.headers["anthropic-version"]
        return headers

    async def forward_lean(request: web.Request) -> web.StreamResponse:
        client: UpstreamClient = request.app["client"]
        body = await request.read()
        up = await client.post(upstream + request.path, body, forwarded(request), timeouts)
        resp = web.StreamResponse(status=up.status, headers={"Content-Type": up.headers["content-type"]})
        await resp.prepare(request)
        while chunk := await up.read_chunk():
            await resp.write(chunk)
        up.release()
        await resp.write_eof()
        return resp

    async def forward(request: web.Request) -> web.StreamResponse:
        session: aiohttp.ClientSession = request.app["session"]
        body = await request.read()
        async with session.post(upstream + request.path, data=body, headers=forwarded(request)) as up:
            resp = web.StreamResponse(status=up.status, headers={"Content-Type": up.headers["Content-Type"]})
            await resp.prepare(request)
            async for chunk in up.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp

    async def session_ctx(app: web.Application) -> Any:
        app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        app["client"] = UpstreamClient()
        yield
        await app["session"].close()
        await app["client"].close()

    app = web.Application(client_max_size=64 * 1024 * 1024)  # bodies as large as the node takes (--image-kb)
    app.cleanup_ctx.append(session_ctx)
    for path in (CHAT_PATH, MESSAGES_PATH, RESPONSES_PATH):
        app.router.add_post(path, forward_lean if lean else forward)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, reuse_port=reuse_port or None)


def run_proxies(n: int, port: int, upstream: str) -> None:
    """N bare proxies sharing `port` (SO_REUSEPORT), children of this process as `serve --workers N`
    runs its workers: the machine's own cost of N processes, measured the same way."""
    cmd = [sys.executable, str(Path(__file__)), "proxy", "--port", str(port), "--upstream", upstream, "--reuse-port"]
    from shieldes.cli.workers import Supervisor, Worker  # as `serve --workers N` supervises its workers

    def start(worker: Worker) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(cmd)
        worker.ready_file.touch()  # a proxy counts as ready once started
        return proc

    with tempfile.TemporaryDirectory(prefix="shieldes-bench-procs-") as tmp:
        sys.exit(Supervisor(start, [Worker(k, Path(tmp) / f"p{k}.ready") for k in range(1, n + 1)]).run())


# --- processes -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listening on port {port} after {timeout}s")


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and its live descendants (`serve --workers N` runs the workers as
    children of the parent)."""
    return sum(cpu_split(pid))


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process and its live descendants."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):  # exited meanwhile
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
    tree, user, system = [pid], 0.0, 0.0
    while tree:
        p = tree.pop()
        fields = stats.get(p)
        if fields is not None:
            user += int(fields[11]) / TICKS
            system += int(fields[12]) / TICKS
            tree.extend(q for q, f in stats.items() if int(f[1]) == p)
    return user, system


def pinned(cmd: list[str], cpus: str | None) -> list[str]:
    """`cmd` bound to the CPU list `cpus` (taskset syntax, e.g. "0" or "0,1"); unchanged if None."""
    return ["taskset", "-c", cpus, *cmd] if cpus else cmd


def spawn(args: list[str], env: dict[str, str] | None = None, src: Path = ROOT,
          cpus: str | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        pinned([sys.executable, *args], cpus),
        cwd=src,
        env={**os.environ, "PYTHONPATH": str(src), **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


LITELLM_KEY = "sk-bench-litellm-master-key-0123456789"
LEAN_LABEL = "bare proxy with the node's upstream client"


def spawn_litellm(binary: str, port: int, upstream: str) -> subprocess.Popen[bytes]:
    """LiteLLM's proxy (one uvicorn worker) routing gpt-4o to the same fake upstream."""
    config = Path(tempfile.mkdtemp(prefix="shieldes-bench-litellm-")) / "config.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: gpt-4o\n"
        "    litellm_params:\n"
        "      model: openai/gpt-4o\n"
        f"      api_base: {upstream}/v1\n"
        "      api_key: sk-bench-upstream\n"
    )
    return subprocess.Popen(
        [binary, "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"],
        env={**os.environ, "LITELLM_MASTER_KEY": LITELLM_KEY, "LITELLM_LOG": "ERROR"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def drop_scratch(db_url: str) -> None:
    """Drop a database prepare_database made (its server stays up for the next run)."""
    baseline_tree.drop(db_url)


# the bench key's limits and budget, high enough never to refuse, set so every check runs
KEY_LIMITS = baseline_tree.KeyLimits(rpm=10**9, tpm=10**12, budget_usd=1e6, budget_period="30d")


def bench_server() -> str:
    """The Postgres server the bench makes its databases in (maintenance database URL)."""
    from shieldes import db

    server = os.environ.get("SHIELDES_BENCH_DATABASE_URL") or db.embedded_database_url(
        Path(tempfile.gettempdir()) / "shieldes-bench-pg"
    )
    return db.libpq_url(server)


async def prepare_database(server: str | None = None) -> tuple[str, str]:
    """A fresh migrated database with one provider (the fake upstream) and one key with limits and
    a budget (so every check runs); returns (database url, key secret)."""
    from shieldes import db
    from shieldes.config_writer import execute
    from shieldes.events.pg_store import PostgresEventStore, open_pool
    from shieldes.projections.commands import CreateKey

    url = baseline_tree.create_database(server or bench_server())
    db.upgrade(url)
    from shieldes.secrets import display_prefix, hash_key, new_id, new_virtual_key

    secret = new_virtual_key()
    pool = open_pool(url, size=2)
    await pool.open(wait=True)
    store = PostgresEventStore(pool)
    await execute(
        store,
        CreateKey(
            new_id("key"),
            "bench",
            hash_key(secret),
            display_prefix(secret),
            rpm=KEY_LIMITS.rpm,
            tpm=KEY_LIMITS.tpm,
            budget_usd=KEY_LIMITS.budget_usd,
            budget_period=KEY_LIMITS.budget_period,
        ),
        actor="bench",
    )
    await pool.close()
    return url, secret


async def add_provider(url: str, upstream: str) -> None:
    from shieldes.config_writer import execute
    from shieldes.events.pg_store import PostgresEventStore, open_pool
    from shieldes.projections.shared_commands import AddProvider

    pool = open_pool(url, size=2)
    await pool.open(wait=True)
    store = PostgresEventStore(pool)
    # native: /v1/responses goes to the upstream's own Responses API (chat is not affected)
    await execute(store, AddProvider("fake", "openai", upstream, None, ("gpt-4o",), responses="native"),
                  actor="bench")
    await execute(store, AddProvider("fake-claude", "anthropic", upstream, None, ("claude-sonnet-4-5",)),
                  actor="bench")
    await pool.close()


# --- load generation -------------------------------------------------------------------------------


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


def _ms(value: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", value)
    if not m:
        return float("nan")
    n, unit = float(m.group(1)), m.group(2)
    return n / 1000 if unit == "us" else n * 1000 if unit == "s" else n


def request_headers(url: str, key: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json", **(ANTHROPIC_VERSION if url.endswith(MESSAGES_PATH) else {})}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return headers


def run_wrk(url: str, body: dict[str, Any], key: str | None, duration: int, conns: int,
            cpus: str | None = None, pause_ms: float | None = None) -> Result:
    lua = Path(tempfile.mkstemp(suffix=".lua")[1])
    headers = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in request_headers(url, key).items())
    # wrk's delay(): each connection waits this long before its next request (not counted in latency)
    pause = f"function delay() return {pause_ms:.3f} end\n" if pause_ms else ""
    lua.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(json.dumps(body))}\n{headers}{pause}')
    out = subprocess.run(
        pinned(["wrk", "-t", str(min(2, conns)), "-c", str(conns), "-d", f"{duration}s", "--timeout", "30s",
                "--latency", "-s", str(lua), url], cpus),  # (wrk wants a connection per thread at least)
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lua.unlink()
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    reqs = re.search(r"(\d+) requests in", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    if errs:
        errors += sum(int(g) for g in errs.groups())
    assert p50 and p99 and reqs and rps, out
    return Result(float(rps.group(1)), _ms(p50.group(1)), _ms(p99.group(1)), int(reqs.group(1)), errors)


async def run_python(url: str, body: dict[str, Any], key: str | None, duration: int, conns: int,
                     pause_ms: float | None = None) -> Result:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    headers = request_headers(url, key)
    deadline = time.perf_counter() + duration

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            async with session.post(url, data=json.dumps(body), headers=headers) as r:
                await r.read()
                if r.status != 200:
                    errors += 1
            latencies.append(time.perf_counter() - t0)
            if pause_ms:
                await asyncio.sleep(pause_ms / 1000)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        await asyncio.gather(*(worker(s) for _ in range(conns)))
    latencies.sort()
    q = statistics.quantiles(latencies, n=100)
    return Result(len(latencies) / duration, q[49] * 1000, q[98] * 1000, len(latencies), errors)


def stop_all(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    """SIGTERM to every process, then wait for each (killed if it takes over 30 s)."""
    for p in procs.values():
        p.send_signal(signal.SIGTERM)
    for p in procs.values():
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()


def load(url: str, body: dict[str, Any], key: str | None, duration: int, conns: int,
         cpus: str | None = None, pause_ms: float | None = None) -> Result:
    """`conns` connections, each sending its next request as soon as the last is answered, or
    `pause_ms` after it (a paced load, well below what the machine can serve)."""
    if shutil.which("wrk"):
        return run_wrk(url, body, key, duration, conns, cpus, pause_ms)
    return asyncio.run(run_python(url, body, key, duration, conns, pause_ms))


# --- main ------------------------------------------------------------------------------------------


def round_by_round(mode: str, what: str, node_cpu: list[float], other_cpu: list[float]) -> str:
    """The node's CPU per request against another target's, saturation round by saturation round
    (the two run back to back within a round, so a machine that drifts between rounds moves both):
    the spread a single ratio of medians hides."""
    ratios = [n / o for n, o in zip(node_cpu, other_cpu, strict=True)]
    listed = ", ".join(f"{r:.2f}x" for r in ratios)
    return (f"{mode}: node CPU per request against {what}, round by round: {listed} "
            f"(median {statistics.median(ratios):.2f}x, spread {max(ratios) - min(ratios):.2f})")


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd")
    proxy = sub.add_parser("proxy")
    proxy.add_argument("--port", type=int, required=True)
    proxy.add_argument("--upstream", required=True)
    proxy.add_argument("--lean", action="store_true", help="forward with the node's upstream client")
    proxy.add_argument("--procs", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)")
    proxy.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=int, default=6)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--moderate", type=int, default=2, help="connections for the moderate-load latency run"
    )
    parser.add_argument("--rounds", type=int, default=3, help="moderate-load rounds (median p50 reported)")
    parser.add_argument("--moderate-seconds", type=int, default=3, metavar="S",
                        help="length of each target's moderate-load round (a test of the bench's wiring sets 1)")
    parser.add_argument(
        "--moderate-rate", type=float, metavar="RPS",
        help="pace the moderate load at about RPS requests per second in all (each connection pauses "
        "between requests) instead of sending back to back: 2 connections back to back keep a 2-core "
        "machine near saturation on streams, where the fake upstream alone takes about a core",
    )
    parser.add_argument(
        "--workers", type=int, default=1,
        help="`serve --workers N` for the node under test (CPU per request counts every worker)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1,
        help="interleaved saturation rounds per target; RPS, latency and CPU per request are medians over them",
    )
    parser.add_argument(
        "--pin-servers", metavar="CPUS",
        help="taskset CPU list for the servers under test (bare proxy, nodes, LiteLLM), e.g. 0",
    )
    parser.add_argument(
        "--pin-load", metavar="CPUS",
        help="taskset CPU list for wrk and the fake upstream, e.g. 1 (apart from --pin-servers)",
    )
    parser.add_argument(
        "--cluster", action="store_true",
        help="the node under test runs in a cluster with an idle gossiping peer, so every request takes the "
        "cluster path (limits and budgets split between nodes); the baseline likewise, with an idle peer of "
        "its own tree on its own database",
    )
    parser.add_argument(
        "--messages", action="store_true",
        help="also Anthropic Messages, JSON and stream (what Claude Code sends), relayed natively to an "
        "anthropic deployment",
    )
    parser.add_argument(
        "--responses", action="store_true",
        help="also a Responses API event stream (what Codex CLI and the Agents SDK send), relayed to a native "
        "deployment: created, in_progress, output_item.added, content_part.added, one output_text.delta per "
        "word (20), the done events, completed with usage",
    )
    parser.add_argument(
        "--responses-store", choices=("omit", "true", "false"), default="omit",
        help="the responses-stream mode's `store`: left out (the API's default, true: each response written to "
             "Postgres by the stored responses' writer), or sent as true or false (nothing written; the bare "
             "proxy stores nothing either way)",
    )
    parser.add_argument(
        "--only", metavar="MODES",
        help="run only these modes (comma-separated: json, stream, messages, messages-stream, "
        "responses-stream, responses-stored), e.g. `--responses --only responses-stream` for a short run",
    )
    parser.add_argument(
        "--agent-turns", type=int, default=0, metavar="N",
        help="every body carries a coding agent's conversation of N tool calls and results (a long system "
        "prompt, a tool; about 1.1 kB per turn), as Claude Code, Codex CLI and chat agents send each turn",
    )
    parser.add_argument(
        "--image-kb", type=int, default=0, metavar="N",
        help="every body carries an N KiB image (base64) in its last user turn, as agents send screenshots",
    )
    parser.add_argument(
        "--token-delay", type=float, default=0.0, metavar="SECONDS",
        help="the fake upstream waits SECONDS before each stream frame carrying generated text, as real "
             "upstreams send tokens as the model writes them (each then reaches the proxies in a read of its "
             "own); 0, the default, sends a stream's frames at once, mostly in one read",
    )
    parser.add_argument(
        "--per-read", metavar="LOW,HIGH",
        help="split each stream's CPU into what a stream costs once and what each token adds: every stream "
             "mode runs with LOW and with HIGH tokens (e.g. 4,84; with --token-delay each token is a read of "
             "its own, and the LOW streams run from connections x LOW / HIGH connections so both lengths run "
             "at the same stream rate), and the slope between the two is the cost per token",
    )
    parser.add_argument("--split", action="store_true",
                        help="also print each saturation round's CPU per request as user and system (kernel) time; "
                        "bench/bench_syscalls.py counts the syscalls behind the system time")
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--baseline", type=Path,
        help="source tree of another shieldes version (e.g. `git archive <commit> | tar -x -C DIR`), "
        "run as a fourth target in the same run for a before/after comparison, on a database of its own "
        "that its own CLI migrates and sets up (the same providers, and a key with the same limits and "
        "budget); a tree whose CLI lacks a command or flag the setup needs ends the run with one line naming it",
    )
    parser.add_argument(
        "--litellm", metavar="BIN",
        help="path of a `litellm` executable (pip install 'litellm[proxy]', ideally in its own venv): "
        "LiteLLM's proxy on the same fake upstream runs as one more target",
    )
    args = parser.parse_args()
    if args.cmd == "proxy":
        if args.procs > 1:
            run_proxies(args.procs, args.port, args.upstream)
        else:
            run_proxy(args.port, args.upstream, args.lean, args.reuse_port)
        return
    if (args.messages or args.responses) and args.litellm:
        parser.error("--messages and --responses cannot be combined with --litellm: the LiteLLM target serves "
                     "chat completions only")

    modes: list[tuple[str, dict[str, Any], str]] = [
        ("json", BODY, CHAT_PATH), ("stream", {**BODY, "stream": True}, CHAT_PATH)]
    if args.messages:
        modes += [("messages", MESSAGES_BODY, MESSAGES_PATH),
                  ("messages-stream", {**MESSAGES_BODY, "stream": True}, MESSAGES_PATH)]
    if args.responses:
        stored = {"omit": {}, "true": {"store": True}, "false": {"store": False}}[args.responses_store]
        modes.append(("responses-stream", {**RESPONSES_BODY, **stored}, RESPONSES_PATH))
        if args.agent_turns:  # an agent's turn stored (else store: false, as Codex sends it; the small turn is stored)
            modes.append(("responses-stored", {**RESPONSES_BODY, "store": True}, RESPONSES_PATH))
    if args.agent_turns:
        grow = {CHAT_PATH: agent_chat, MESSAGES_PATH: agent_messages, RESPONSES_PATH: agent_responses}
        modes = [(m, grow[p](b, args.agent_turns), p) for m, b, p in modes]
        print("agent turns:", args.agent_turns, ", ".join(f"{m} {len(json.dumps(b)) // 1024} kB" for m, b, _ in modes),
              flush=True)
    if args.token_delay:
        print(f"streams: the upstream sends a token every {args.token_delay * 1000:g} ms", flush=True)
    if args.image_kb:
        modes = [(m, with_image(b, p, args.image_kb), p) for m, b, p in modes]
        print("image:", args.image_kb, "KiB;", ", ".join(f"{m} {len(json.dumps(b)) // 1024} kB" for m, b, _ in modes),
              flush=True)
    if args.only:
        wanted = args.only.split(",")
        unknown = sorted(set(wanted) - {m for m, _, _ in modes})
        if unknown:
            parser.error(f"--only: no mode {', '.join(unknown)} in this run; the modes are "
                         f"{', '.join(m for m, _, _ in modes)} (--messages and --responses add theirs)")
        modes = [m for m in modes if m[0] in wanted]
    low = high = 0
    if args.per_read:
        try:
            low, high = (int(n) for n in args.per_read.split(","))
        except ValueError:
            parser.error(f"--per-read: {args.per_read!r} is not two numbers of tokens, e.g. 4,84")
        if not 0 < low < high:
            parser.error("--per-read: LOW,HIGH must be token counts with 0 < LOW < HIGH, e.g. 4,84")
        if not any(body.get("stream") for _, body, _ in modes):
            parser.error("--per-read splits streams: run it with a stream mode (stream, messages-stream, "
                         "responses-stream)")
        modes = per_read_modes(modes, low, high)

    up_port, proxy_port, node_port, base_port = free_port(), free_port(), free_port(), free_port()
    lean_port, procs_port = free_port(), free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    server = bench_server()
    db_url, secret = asyncio.run(prepare_database(server))
    asyncio.run(add_provider(db_url, upstream))
    base: baseline_tree.BaselineDatabase | None = None
    if args.baseline:  # its own database, migrated and set up by its own tree's CLI
        try:
            base = baseline_tree.prepare(args.baseline.resolve(), server, upstream, KEY_LIMITS,
                                         responses=any(path == RESPONSES_PATH for _, _, path in modes))
        except baseline_tree.BaselineUnfit as exc:
            drop_scratch(db_url)
            raise SystemExit(f"error: {exc}") from None
        print(f"databases: the node's {baseline_tree.database_name(db_url)}, the baseline's "
              f"{baseline_tree.database_name(base.url)} (migrated by {args.baseline} to revision {base.revision})",
              flush=True)
    cluster_env = {"SHIELDES_CLUSTER_SECRET": "bench-" + "s" * 32, "SHIELDES_GOSSIP_PORT": "0"} if args.cluster else {}
    node_env = {"SHIELDES_DATABASE_URL": db_url, **cluster_env}
    procs = {
        "upstream": spawn(["-m", "tests.fake_upstream", "--port", str(up_port),
                           "--completion-tokens", str(max(20, high)), "--token-delay", str(args.token_delay)],
                          cpus=args.pin_load),
        "proxy": spawn([str(Path(__file__)), "proxy", "--port", str(proxy_port), "--upstream", upstream],
                       cpus=args.pin_servers),
        "lean": spawn([str(Path(__file__)), "proxy", "--port", str(lean_port), "--upstream", upstream, "--lean"],
                      cpus=args.pin_servers),
        **({"proxies": spawn([str(Path(__file__)), "proxy", "--port", str(procs_port), "--upstream", upstream,
                              "--procs", str(args.workers)], cpus=args.pin_servers)} if args.workers > 1 else {}),
        "node": spawn(
            [
                "-m",
                "shieldes",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(node_port),
                "--node-id",
                "bench",
                "--workers",
                str(args.workers),
            ],
            env=node_env,
            cpus=args.pin_servers,
        ),
    }
    serve = ["-m", "shieldes", "serve", "--host", "127.0.0.1"]
    base_env = {"SHIELDES_DATABASE_URL": base.url, **cluster_env} if base else {}
    if args.baseline:
        procs["baseline"] = spawn(
            [*serve, "--port", str(base_port), "--node-id", "bench-baseline"],
            env=base_env,
            src=args.baseline.resolve(),
            cpus=args.pin_servers,
        )
    peer_port = free_port()
    if args.cluster:  # one more node, never loaded: the nodes under test split every limit with it
        procs["peer"] = spawn([*serve, "--port", str(peer_port), "--node-id", "bench-peer"], env=node_env,
                              cpus=args.pin_servers)
    base_peer_port = free_port()
    if args.cluster and args.baseline:  # the baseline's own idle peer: its tree, its database
        procs["baseline-peer"] = spawn([*serve, "--port", str(base_peer_port), "--node-id", "bench-baseline-peer"],
                                       env=base_env, src=args.baseline.resolve(), cpus=args.pin_servers)
    litellm_port = free_port()
    if args.litellm:
        procs["litellm"] = spawn_litellm(args.litellm, litellm_port, upstream)
    try:
        for port in (up_port, proxy_port, lean_port, node_port, *([base_port] if args.baseline else []),
                     *([procs_port] if args.workers > 1 else []),
                     *([litellm_port] if args.litellm else []), *([peer_port] if args.cluster else []),
                     *([base_peer_port] if args.cluster and args.baseline else [])):
            wait_port(port)
        workers_label = f", {args.workers} workers" if args.workers > 1 else ""
        workers_label += ", in a cluster" if args.cluster else ""
        targets = [
            ("fake upstream directly", "upstream", up_port, None),
            ("bare aiohttp pass-through proxy", "proxy", proxy_port, None),
            (f"shieldes node (auth+limits+budget+accounting){workers_label}", "node", node_port, secret),
        ]
        if base is not None:
            targets.append((f"shieldes node, baseline ({args.baseline.name})", "baseline", base_port, base.secret))
        targets.append((LEAN_LABEL, "lean", lean_port, None))
        procs_label = f"bare aiohttp proxy, {args.workers} processes sharing the port"
        if args.workers > 1:
            targets.append((procs_label, "proxies", procs_port, None))
        if args.litellm:
            targets.append(("LiteLLM proxy (master key, no database)", "litellm", litellm_port, LITELLM_KEY))
        sats: dict[tuple[str, str], tuple[Result, float]] = {}
        mods: dict[tuple[str, str], list[Result]] = {}
        # Saturation: the targets take turns, `--repeat` rounds; each figure is the median over rounds.
        sat_runs: dict[tuple[str, str], list[tuple[Result, float]]] = {}
        for _ in range(args.repeat):
            for mode, body, path in modes:
                for label, proc, port, key in targets:
                    url = f"http://127.0.0.1:{port}{path}"
                    load(url, body, key, 1, 4, args.pin_load)  # warm-up
                    pid = procs[proc].pid
                    user0, sys0 = cpu_split(pid)
                    conns = connections_for(mode, args.connections, low, high, args.token_delay > 0) \
                        if args.per_read else args.connections
                    sat = load(url, body, key, args.duration, conns, args.pin_load)
                    user1, sys1 = cpu_split(pid)
                    cpu_us = (user1 + sys1 - user0 - sys0) / max(1, sat.requests) * 1e6
                    split = (f" (user {(user1 - user0) / max(1, sat.requests) * 1e6:.0f}, system "
                             f"{(sys1 - sys0) / max(1, sat.requests) * 1e6:.0f})") if args.split else ""
                    sat_runs.setdefault((mode, label), []).append((sat, cpu_us))
                    print(
                        f"{mode:15} {label:48} {sat.rps:8.0f} rps  p50 {sat.p50_ms:6.2f} ms"
                        f"  p99 {sat.p99_ms:6.2f} ms"
                        f"  cpu {cpu_us:6.0f} us/req{split}  errors {sat.errors}"
                        + (f"  connections {conns}" if conns != args.connections else ""),
                        flush=True,
                    )
        for k, runs_ in sat_runs.items():
            sats[k] = (
                Result(
                    statistics.median(r.rps for r, _ in runs_),
                    statistics.median(r.p50_ms for r, _ in runs_),
                    statistics.median(r.p99_ms for r, _ in runs_),
                    sum(r.requests for r, _ in runs_),
                    sum(r.errors for r, _ in runs_),
                ),
                statistics.median(c for _, c in runs_),
            )
        # Moderate load: the targets take turns, several short rounds, median p50 (a shared machine is noisy).
        pause_ms = 1000 * args.moderate / args.moderate_rate if args.moderate_rate else None
        for _ in range(args.rounds):
            for mode, body, path in modes:
                for label, _proc, port, key in targets:
                    url = f"http://127.0.0.1:{port}{path}"
                    mods.setdefault((mode, label), []).append(
                        load(url, body, key, args.moderate_seconds, args.moderate, args.pin_load, pause_ms))
        rows = []
        for mode, *_ in modes:
            for label, *_rest in targets:
                sat, cpu_us = sats[(mode, label)]
                runs = mods[(mode, label)]
                mod = Result(
                    statistics.median(r.rps for r in runs),
                    statistics.median(r.p50_ms for r in runs),
                    statistics.median(r.p99_ms for r in runs),
                    sum(r.requests for r in runs),
                    sum(r.errors for r in runs),
                )
                rows.append((mode, label, sat, cpu_us, mod))
                print(
                    f"{mode:15} {label:48} moderate p50 {mod.p50_ms:5.2f} ms at {mod.rps:.0f} rps "
                    f"(median of {len(runs)})",
                    flush=True,
                )
    finally:
        stop_all(procs)
        drop_scratch(db_url)
        if base:
            drop_scratch(base.url)
    generator = "wrk 4.1 (-t2)" if shutil.which("wrk") else "Python aiohttp load generator"
    table = [
        f"Load generator: {generator}; saturation at {args.connections} connections, moderate load at "
        f"{args.moderate} connections"
        + (f" paced at about {args.moderate_rate:.0f} requests/s (each pausing {pause_ms:.1f} ms between "
           "requests)" if pause_ms else " back to back")
        + f" (median of {args.rounds} interleaved {args.moderate_seconds} s rounds); {args.duration}s per "
        f"saturation run, median of {args.repeat} interleaved run(s); machine: {os.cpu_count()} cores shared "
        "with other work"
        + (f"; servers pinned to CPU {args.pin_servers}" if args.pin_servers else "")
        + (f", wrk and the fake upstream to CPU {args.pin_load}" if args.pin_load else "") + ".",
        "",
        "| mode | target | RPS | p50 ms | p99 ms | server CPU us/req | moderate-load p50 ms | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, label, sat, cpu_us, mod in rows:
        table.append(
            f"| {mode} | {label} | {sat.rps:.0f} | {sat.p50_ms:.2f} | {sat.p99_ms:.2f} | {cpu_us:.0f} | "
            f"{mod.p50_ms:.2f} | {sat.errors + mod.errors} |"
        )
    for mode in dict.fromkeys(m for m, *_ in rows):
        by = {label: (sat, mod) for m, label, sat, _, mod in rows if m == mode}
        bare, node = by[targets[1][0]], by[targets[2][0]]
        cpu = {label: c for m, label, _, c, _ in rows if m == mode}
        table.append("")
        table.append(
            f"{mode}: shieldes throughput = {node[0].rps / bare[0].rps * 100:.0f}% of the bare proxy "
            f"(by CPU per request: {cpu[targets[1][0]] / cpu[targets[2][0]] * 100:.0f}%); "
            f"added p50 at moderate load = {node[1].p50_ms - bare[1].p50_ms:+.2f} ms vs the bare proxy, "
            f"{node[1].p50_ms - by[targets[0][0]][1].p50_ms:+.2f} ms vs the upstream directly."
        )
        rounds = {label: [c for _, c in sat_runs[(mode, label)]] for label in by}  # CPU per request, by round
        if args.repeat > 1:
            table.append(round_by_round(mode, "the bare proxy's", rounds[targets[2][0]], rounds[targets[1][0]]))
        lean = by[LEAN_LABEL]
        table.append(
            f"{mode}: against a bare proxy with the node's own upstream client (aiohttp server, no gateway "
            f"work): node CPU per request {cpu[targets[2][0]] / cpu[LEAN_LABEL]:.2f}x, throughput "
            f"{node[0].rps / lean[0].rps * 100:.0f}%, "
            f"added moderate-load p50 {node[1].p50_ms - lean[1].p50_ms:+.2f} ms."
        )
        if args.litellm:
            lite = targets[-1][0]
            table.append(
                f"{mode}: shieldes vs LiteLLM: {node[0].rps / by[lite][0].rps:.1f}x the throughput, "
                f"{cpu[lite] / cpu[targets[2][0]]:.1f}x less CPU per request, "
                f"moderate-load p50 {node[1].p50_ms:.2f} vs {by[lite][1].p50_ms:.2f} ms."
            )
        if args.baseline:
            base = targets[3][0]
            table.append(
                f"{mode}: baseline node throughput = {by[base][0].rps / bare[0].rps * 100:.0f}% of the bare proxy "
                f"(by CPU per request: {cpu[targets[1][0]] / cpu[base] * 100:.0f}%)."
            )
            if args.repeat > 1:
                table.append(round_by_round(mode, "the baseline node's", rounds[targets[2][0]], rounds[base]))
        if args.workers > 1:
            n = args.workers
            bare_cpu, bare_rps = cpu[procs_label] / cpu[targets[1][0]], by[procs_label][0].rps / bare[0].rps
            line = (f"{mode}: {n} processes against 1: bare proxy CPU per request {(bare_cpu - 1) * 100:+.0f}% "
                    f"({cpu[procs_label]:.0f} vs {cpu[targets[1][0]]:.0f} us), RPS {bare_rps:.2f}x")
            if args.baseline:  # the baseline runs one worker: with the same tree, the 1-worker figure
                base = targets[3][0]
                node_cpu, node_rps = cpu[targets[2][0]] / cpu[base], node[0].rps / by[base][0].rps
                beyond = (node_cpu / bare_cpu - 1) * 100
                line += (f"; node {n} workers against the baseline's 1: CPU per request {(node_cpu - 1) * 100:+.0f}% "
                         f"({cpu[targets[2][0]]:.0f} vs {cpu[base]:.0f} us), RPS {node_rps:.2f}x; what the "
                         f"workers add beyond the machine's share: CPU per request {beyond:+.0f}%, "
                         f"RPS {node_rps / bare_rps:.2f}x")
            table.append(line + ".")
    if args.per_read:
        table.append("")
        cpu_of = {(mode, label): cpu_us for mode, label, _, cpu_us, _ in rows}
        for mode in dict.fromkeys(m.rpartition("@")[0] for m, *_ in rows):
            table.append(per_read_line(mode, low, high, cpu_of, targets[2][0], targets[1][0], LEAN_LABEL))
        short = connections_for(f"@{low}", args.connections, low, high, args.token_delay > 0)
        table.append(f"(streams of {low} tokens from {short} connections, of {high} from {args.connections}"
                     + (": both at about the same stream rate)" if short != args.connections else ")"))
    text = "\n".join(table)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
