"""`shieldes serve` as a real process: refuses a database not at head, serves (one access log line
per request on stderr), and on SIGTERM drains and flushes every usage delta before exiting 0."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import openai

from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import UPSTREAM_KEY, UPSTREAM_KEY_ENV, Harness, harness

ROOT = Path(__file__).resolve().parents[2]


def serve(database_url: str, *args: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SHIELDES_DATABASE_URL": database_url,
        UPSTREAM_KEY_ENV: UPSTREAM_KEY,
        "SHIELDES_FLUSH_INTERVAL": "3600",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "shieldes", "serve", "--host", "127.0.0.1", *args],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_serve_refuses_a_database_without_the_schema(empty_database_url: str) -> None:
    proc = serve(empty_database_url, "--port", "0")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "shieldes db upgrade" in err and "Traceback" not in err


def test_serve_on_a_port_in_use_says_so_in_one_line(database_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = serve(database_url, "--port", str(port), "--gossip-port", "0")
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"error: cannot listen for HTTP on 127.0.0.1:{port} (") and "SHIELDES_PORT" in line, err


async def test_sigterm_drains_and_flushes(database_url: str) -> None:
    # The harness node only supplies config and the upstream; the served process is the subject.
    async with harness(database_url, upstream=FakeUpstream(api_key=UPSTREAM_KEY)) as h:
        secret = await h.create_key("proc")
        await _run_process(h, secret)


async def _run_process(h: Harness, secret: str) -> None:
    proc = serve(h.database_url, "--port", "0", "--node-id", "proc-node")
    assert proc.stderr is not None
    line = ""
    while "listening on" not in line:
        line = await asyncio.to_thread(proc.stderr.readline)
        assert line or proc.poll() is None, "serve exited before listening"
    port = int(re.search(r":(\d+)\s*$", line.strip()).group(1))  # type: ignore[union-attr]
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=secret, max_retries=0)
    for _ in range(3):
        await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "a b"}])
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.to_thread(proc.communicate, timeout=60)
    assert proc.returncode == 0, err
    access = [line for line in err.splitlines() if " shieldes.access: " in line]
    assert len(access) == 3, err
    for line in access:  # the access log's own line, as logging's text format would write it
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO shieldes\.access: POST "
                            r"/v1/chat/completions 200 [\d.]+ms key=proc model=gpt-4o deployment=openai "
                            r"attempts=1 error=- rid=[0-9a-f]{24}", line), line
    rows = h.sql(
        "SELECT sum(requests), sum(prompt_tokens), sum(completion_tokens) FROM usage_deltas"
        " WHERE stream = 'usage:proc-node'"
    )
    assert rows == [(3, 6, 15)]


async def test_serve_json_writes_every_stderr_line_as_a_json_object(database_url: str) -> None:
    """`serve --json` (SHIELDES_LOG_FORMAT=json): the process log, the access lines and the lines
    serve prints itself (listening, shutting down) are each one JSON object (docs/observability.md)."""
    async with harness(database_url, upstream=FakeUpstream(api_key=UPSTREAM_KEY)) as h:
        secret = await h.create_key("js")
        proc = serve(h.database_url, "--port", "0", "--node-id", "json-node", "--json")
        assert proc.stderr is not None
        line = ""
        while "listening on" not in line:
            line = await asyncio.to_thread(proc.stderr.readline)
            assert line or proc.poll() is None, "serve exited before listening"
        listening = json.loads(line)
        port = int(re.search(r":(\d+)$", listening["message"]).group(1))  # type: ignore[union-attr]
        client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=secret, max_retries=0)
        await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "a b"}])
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(proc.communicate, timeout=60)
        assert proc.returncode == 0, err
        objects = [json.loads(x) for x in err.splitlines() if x.strip()]  # every line parses
        assert {"ts", "level", "logger", "message"} <= set(listening)
        assert any(o["logger"] == "shieldes.access" and o["key_name"] == "js" for o in objects), err
        assert any("shutting down" in o["message"] for o in objects), err


async def test_sigterm_closes_responses_websockets_once_their_answer_has_ended(database_url: str) -> None:
    """A draining node does not wait out its grace for open WebSockets: an idle one is closed at
    once, a busy one once its answer has ended, both with 1001 (going away), and the node exits."""
    async with harness(database_url, upstream=FakeUpstream(api_key=UPSTREAM_KEY, completion_tokens=10)) as h:
        secret = await h.create_key("ws")
        h.upstream.inject("/v1/chat/completions", token_delay=0.15, times=None)  # an answer of about 1.5 s
        proc = serve(h.database_url, "--port", "0", "--node-id", "ws-node")
        port = await asyncio.to_thread(_port, proc)
        url, auth = f"ws://127.0.0.1:{port}/v1/responses", {"Authorization": f"Bearer {secret}"}
        async with aiohttp.ClientSession() as s, s.ws_connect(url, headers=auth) as idle, \
                s.ws_connect(url, headers=auth) as busy:
            await busy.send_json({"type": "response.create", "model": "gpt-4o", "input": "hi"})
            assert json.loads(await busy.receive_str(timeout=10))["type"] == "response.created"
            stopping = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            closed = await idle.receive(timeout=10)
            assert closed.type == aiohttp.WSMsgType.CLOSE and idle.close_code == aiohttp.WSCloseCode.GOING_AWAY
            events = []
            while (msg := await busy.receive(timeout=10)).type == aiohttp.WSMsgType.TEXT:
                events.append(json.loads(msg.data))
            assert events[-1]["type"] == "response.completed" and len(events) > 10
            assert msg.type == aiohttp.WSMsgType.CLOSE and busy.close_code == aiohttp.WSCloseCode.GOING_AWAY
        _, err = await asyncio.to_thread(proc.communicate, timeout=60)
        assert proc.returncode == 0, err
        assert time.monotonic() - stopping < 10  # (the default grace is 30 s: nothing waited it out)
        assert "still running after" not in err


def _port(proc: subprocess.Popen[str]) -> int:
    assert proc.stderr is not None
    line = ""
    while "listening on" not in line:
        line = proc.stderr.readline()
        assert line or proc.poll() is None, "serve exited before listening"
    return int(re.search(r":(\d+)\s*$", line.strip()).group(1))  # type: ignore[union-attr]
